"""Restricting a model to blocks of its latent units: the checks :meth:`mcem.Model.subset` and
the sharded E step rely on.

A model whose latents are all unit latents (``unit=True``) with one common number of units may
give a ``subset(units) -> Model`` function. These helpers check the units asked for, the model
the function returns, and that the blocks' log joints add up to the whole model's.
"""

from __future__ import annotations

import numpy as np

from .._validation import describe_array
from .latents import random_latents

__all__ = ["shard_units", "check_units", "check_submodel", "check_additive"]


def shard_units(n_units: int, shards: int) -> list[np.ndarray]:
    """Split units 0..n_units-1 into ``shards`` contiguous blocks of (nearly) equal size."""
    return [np.ascontiguousarray(b) for b in np.array_split(np.arange(n_units, dtype=np.int64), shards)]


def check_units(model, units) -> np.ndarray:
    """The model can be restricted, and ``units`` are valid unit indices: a read-only int64 copy."""
    if model.subset_fn is None:
        raise ValueError(
            f"model {model.name!r} cannot be restricted to a subset of its units: it has no "
            "subset function. Pass Model(..., subset=fn) or use model.with_subset(fn), where "
            "fn(units) returns the model of those units"
        )
    not_unit = [n for n in model.latent_names if not model.latents[n].unit]
    if not_unit or model.n_units is None:
        raise ValueError(
            f"model {model.name!r}: subsets need every latent declared with unit=True and one "
            f"common number of units; latents without a unit axis: {not_unit}, unit counts: "
            f"{sorted({s.n_units for s in model.latents.values() if s.unit})}"
        )
    u = np.asarray(units)
    if u.ndim != 1 or u.size == 0 or not np.issubdtype(u.dtype, np.integer):
        raise ValueError(
            f"units must be a non-empty 1-D integer array, got {describe_array(u)}"
        )
    if np.any(np.diff(u) <= 0) or u[0] < 0 or u[-1] >= model.n_units:
        raise ValueError(
            f"units must be strictly increasing indices in 0..{model.n_units - 1}, got "
            f"{describe_array(u)}"
        )
    u = u.astype(np.int64)
    u.setflags(write=False)
    return u


def check_submodel(model, sub, units) -> None:
    """``sub`` (a Model) declares the parameters of ``model`` and its latents for ``units``."""
    mine = {n: model.params[n].shape for n in model.param_names}
    theirs = {n: sub.params[n].shape for n in sub.param_names}
    if mine != theirs:
        raise ValueError(
            f"the subset function of model {model.name!r} returned a model with parameters "
            f"{theirs}; expected the same parameters as the whole model, {mine}"
        )
    want = {n: (len(units),) + model.latents[n].shape[1:] for n in model.latent_names}
    got = {n: sub.latents[n].shape for n in sub.latent_names}
    if want != got or not all(s.unit for s in sub.latents.values()):
        raise ValueError(
            f"the subset function of model {model.name!r} returned latents {got} for "
            f"{len(units)} units; expected unit latents of shapes {want}"
        )


def check_additive(model, sub_models, blocks, theta, exact=False, n_checks=3):
    """Check that the whole model's log joint is the sum of the blocks' at ``theta``.

    Up to a term free of the latents (what sampling the blocks separately needs), or exactly
    with ``exact=True`` (what summing the blocks' gradients in theta needs). The latents are
    ``n_checks`` random draws over their supports (a batch of shape ``(n_checks,)``).
    """
    z = random_latents(model.latents, np.random.default_rng(20061), (n_checks,))
    with np.errstate(all="ignore"):
        whole = model.log_joint_sum(theta, z, 1)
        parts = sum(
            m.log_joint_sum(theta, {n: v[:, b] for n, v in z.items()}, 1)
            for m, b in zip(sub_models, blocks, strict=True)
        )
    if not (np.all(np.isfinite(whole)) and np.all(np.isfinite(parts))):
        raise ValueError(
            f"model {model.name!r}: the log joint is not finite at the parameters {theta} and the "
            "random latents used to check model.subset; start from parameters where it is"
        )
    rest = np.asarray(whole - parts, dtype=float)
    atol = 1e-8 * (1 + np.abs(whole).max())
    ok = np.all(np.isfinite(rest)) and np.allclose(rest, 0.0 if exact else rest[0], rtol=0, atol=atol)
    if not ok and exact:
        raise ValueError(
            f"model {model.name!r}: the log joint of the whole model is not the sum of the log "
            "joints of its subsets (model.subset) at the current parameters, so gradients over "
            "blocks of units do not add up to the whole; check the subset function, or drop "
            "batch_units"
        )
    if not ok:
        raise ValueError(
            f"model {model.name!r}: the log joint of the whole model is not the sum of the log "
            "joints of its subsets (model.subset) plus a term free of the latents, so the units' "
            "posterior does not factor over blocks and the E step cannot be sharded; check the "
            "subset function (given with Model(subset=...) or with_subset, or found by mcem.model "
            "from the data: then give one with model.with_subset(fn))"
        )

"""Checks of a model's declaration: its parameters, latents and functions, and the first call
of ``log_joint`` (:meth:`mcem.Model.validate`), which learns whether it returns unit terms."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import constraints as C
from .._validation import as_real_array, with_context
from .latents import LatentSpec

__all__ = [
    "param_offsets",
    "as_float_dict",
    "check_param_specs",
    "check_latent_specs",
    "check_functions",
    "check_conditionals",
    "first_call",
]


def as_float_dict(theta, name):
    """``theta`` as a dict of real float arrays (a TypeError naming ``name`` otherwise)."""
    if not isinstance(theta, Mapping):
        raise TypeError(f"{name} must be a dict of parameter arrays, got {type(theta).__name__}")
    return {k: as_real_array(v, f"{name}[{k!r}]") for k, v in theta.items()}


def check_param_specs(params) -> dict:
    """The ``params`` declaration: a non-empty dict name -> continuous constraint."""
    if not isinstance(params, Mapping) or not params:
        raise TypeError(
            "params must be a non-empty dict mapping names to constraints, "
            f"got {type(params).__name__} {params!r}"
        )
    out = {}
    for k, c in params.items():
        if not isinstance(k, str):
            raise TypeError(f"params: names must be str, got {k!r}")
        if not isinstance(c, C.Constraint) or not c.has_bijection:
            raise TypeError(
                f"params[{k!r}] must be a continuous constraint (mcem.constraints.real, "
                f"positive, interval, simplex, positive_definite, lower_cholesky or corr_cholesky), got {c!r}"
            )
        out[k] = c
    return out


def param_offsets(params) -> tuple[dict, int]:
    """``({name: (start, stop)}, total)``: where each parameter's unconstrained coordinates lie in
    the flat vector (parameters in sorted-name order)."""
    offsets, off = {}, 0
    for n in sorted(params):
        size = params[n].unconstrained_size
        offsets[n] = (off, off + size)
        off += size
    return offsets, off


def check_latent_specs(latents) -> dict:
    """The ``latents`` declaration: a dict name -> Discrete or Continuous."""
    if not isinstance(latents, Mapping):
        raise TypeError(f"latents must be a dict of Discrete/Continuous, got {latents!r}")
    out = {}
    for k, s in latents.items():
        if not isinstance(k, str):
            raise TypeError(f"latents: names must be str, got {k!r}")
        if not isinstance(s, LatentSpec):
            raise TypeError(
                f"latents[{k!r}] must be mcem.Discrete(...) or mcem.Continuous(...), got {s!r}"
            )
        out[k] = s
    return out


def check_functions(**functions) -> None:
    """Each optional function is callable or None; value_and_grad comes with grad_params."""
    for nm, fn in functions.items():
        if fn is not None and not callable(fn):
            raise TypeError(f"{nm} must be callable or None, got {type(fn).__name__}")
    if functions.get("value_and_grad") is not None and functions.get("grad_params") is None:
        raise ValueError("value_and_grad needs grad_params as well (the other M steps use it alone)")


def check_conditionals(conditionals, latents) -> dict:
    """The ``conditionals`` declaration: a dict unit-latent name -> callable (or None)."""
    if conditionals is not None and not isinstance(conditionals, Mapping):
        raise TypeError(
            "conditionals must be a dict {latent name: fn(theta, z, data)} or None, got "
            f"{type(conditionals).__name__} {conditionals!r}"
        )
    out = dict(conditionals or {})
    for k, fn in out.items():
        if k not in latents or not latents[k].unit:
            raise ValueError(
                f"conditionals[{k!r}]: expected the name of a latent declared with unit=True, "
                f"got {k!r} (unit latents: {[n for n, s in latents.items() if s.unit]})"
            )
        if not callable(fn):
            raise TypeError(f"conditionals[{k!r}] must be callable, got {type(fn).__name__}")
    return out


def first_call(model, theta, rng=None, name="theta0") -> bool:
    """One call of ``log_joint`` at ``theta`` (checked) and the initial latents, batch ``(2,)``.

    Checks the type, shape and values returned; returns whether they are per-unit terms.
    """
    rng = np.random.default_rng(0 if rng is None else rng)
    batch = (2,)
    z = model.init_latents(rng, batch)
    try:
        out = model.log_joint_fn(theta, z, model.data)
    except Exception as exc:  # re-raised with the context a user needs
        raise with_context(
            exc,
            f"log_joint raised {type(exc).__name__} when called with {name} and latents of "
            f"batch shape {batch}",
        ) from exc
    arr = np.asarray(out)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(
            f"log_joint must return a float array, got {type(out).__name__} of dtype {arr.dtype}"
        )
    expected = [batch]
    if model.n_units is not None:
        expected.append(batch + (model.n_units,))
    if arr.shape not in expected:
        raise ValueError(
            "log_joint must return one value per batch element "
            f"(shape {expected[0]} for latents with batch shape {batch})"
            + (f" or per batch element and unit (shape {expected[1]})" if len(expected) > 1 else "")
            + f", got shape {arr.shape}"
        )
    if np.any(np.isnan(arr)):
        raise ValueError(f"log_joint returned NaN at {name} and the initial latents")
    if np.any(np.isposinf(arr)):
        raise ValueError(f"log_joint returned +inf at {name} and the initial latents")
    if np.all(np.isneginf(arr)):
        raise ValueError(
            f"log_joint is -inf at {name} and the initial latents: the starting point has zero "
            "density (check theta0 and the latents' init values)"
        )
    return arr.shape == batch + (model.n_units,) if model.n_units is not None else False

"""Pieces the Monte Carlo methods share: the E step they build and what they record of it."""

from __future__ import annotations

import numpy as np

from .. import estep_factory
from .._validation import check_choice

__all__ = ["make_estep", "estep_option_names", "diag_values", "track", "choose_mstep"]


def make_estep(model, sampler, estep_options, **defaults):
    """The MCMC E step: an :class:`mcem.EStep`, or an :class:`mcem.ShardedEStep` when the options
    hold ``shards``; ``estep_options`` are the keywords of
    :func:`mcem.estep_factory.make_estep` (n_chains, burn, ..., shards, executor)."""
    return estep_factory.make_estep(model, sampler, **{**defaults, **estep_options})


def estep_option_names() -> list:
    """The E-step keywords a Monte Carlo method passes on (:class:`mcem.EStep`'s, then
    ``shards`` and ``executor``)."""
    return estep_factory.estep_option_names()


def diag_values(diag) -> dict:
    """Scalar E-step diagnostics for the history row."""
    out = {}
    for k, v in (diag or {}).items():
        if isinstance(v, bool | np.bool_):
            out[k] = bool(v)
        elif isinstance(v, int | float | np.integer | np.floating):
            out[k] = float(v)
        elif isinstance(v, dict):
            for kk, vv in v.items():
                if isinstance(vv, int | float | np.integer | np.floating | bool | np.bool_):
                    out[f"{k}.{kk}"] = float(vv)
    return out


def track(model, theta, track_loglik):
    """The exact log-likelihood for the history where the model has one (NaN otherwise)."""
    if track_loglik and model.loglik_fn is not None:
        return model.exact_loglik(theta)
    return np.nan


def choose_mstep(model, mstep):
    """``"closed_form"``, ``"numerical"`` or ``"adam"`` for the ``mstep`` option."""
    check_choice(mstep, "mstep", {"auto", "closed_form", "numerical", "adam"})
    if mstep == "adam":
        return "adam"
    has_cf = model.sufficient_stats_fn is not None and model.mstep_fn is not None
    if mstep == "closed_form" and not has_cf:
        raise ValueError(
            "mstep='closed_form' needs a model with sufficient_stats and mstep; "
            f"model {model.name!r} lacks them. Use mstep='numerical'."
        )
    return "closed_form" if (mstep == "auto" and has_cf) or mstep == "closed_form" else "numerical"

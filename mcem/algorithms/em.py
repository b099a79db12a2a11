"""Exact EM with the model's closed-form E and M steps (``method="em"``).

Stops when the relative change of the log-likelihood is within ``tol`` (default 1e-8), or, for
a model without one, when the unconstrained parameters move by less than ``tol`` relative to
their size. A decrease of the log-likelihood, which exact EM never makes, is counted and
reported: the model's E or M step is then likely wrong.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from ..exceptions import ConvergenceWarning
from .loop import Config, Stop, checked_update, invalid

NAME = "em"
USES_ESTEP = False


class State(NamedTuple):
    t: int
    theta: dict
    decreases: int


def configure(model, *, max_iter, tol):
    if not model.has_exact_em:
        missing = [n for n, f in [("exact_estep", model.exact_estep_fn), ("mstep", model.mstep_fn)] if f is None]
        raise ValueError(
            f"method='em' needs a model with an exact E step and a closed-form M step; "
            f"model {model.name!r} lacks {missing}. Use method='mcem' or 'saem' instead."
        )
    max_iter = 500 if max_iter is None else max_iter
    tol = 1e-8 if tol is None else tol
    return Config(max_iter=max_iter, tol=tol, settings={"method": "em", "max_iter": max_iter, "tol": tol}, cache={})


def _estep(cfg, model, theta):
    """``(stats, loglik)`` at theta; the E step is deterministic, so it runs once per theta."""
    hit = cfg.cache.get("estep")
    if hit is not None and hit[0] is theta:
        return hit[1]
    out = model.exact_estep_fn(theta, model.data)
    stats, ll = (out[0], float(out[1])) if isinstance(out, tuple) and len(out) == 2 else (out, None)
    if ll is None and model.loglik_fn is not None:
        ll = model.exact_loglik(theta)
    cfg.cache["estep"] = (theta, (stats, ll))
    return stats, ll


def init(cfg, model, theta, rng):
    _, ll = _estep(cfg, model, theta)
    return State(0, theta, 0), {"loglik": np.nan if ll is None else ll}


def step(cfg, model, st):
    t = st.t + 1
    stats, ll = _estep(cfg, model, st.theta)
    new, why = checked_update(model, model.mstep_fn(stats, model.data))
    if why is not None:
        return st, None, invalid(t, why)
    _, new_ll = _estep(cfg, model, new)
    change = None if (ll is None or new_ll is None) else new_ll - ll
    decreased = change is not None and change < -1e-10 * max(1.0, abs(ll))
    if change is not None:
        ok = (not decreased) and abs(change) <= cfg.tol * max(1.0, abs(new_ll))
    else:
        u, u_prev = model.to_unconstrained(new), model.to_unconstrained(st.theta)
        ok = np.max(np.abs(u - u_prev), initial=0.0) <= cfg.tol * (1.0 + np.max(np.abs(u), initial=0.0))
    row = {"loglik": np.nan if new_ll is None else new_ll, "decreased": decreased}
    stop = None
    if ok:
        stop = Stop("tol", True,
                    f"converged: log-likelihood change {change:.3g} within tol={cfg.tol:g} (relative)"
                    if change is not None else f"converged: parameter change within tol={cfg.tol:g}")
    return State(t, new, st.decreases + int(decreased)), row, stop


def interrupted(cfg, model, st):
    return st.theta, {"loglik": _estep(cfg, model, st.theta)[1]}


def finish(cfg, model, st, stop, history):
    if st.decreases:
        note = (f"the log-likelihood decreased in {st.decreases} iteration(s); exact EM never decreases "
                "it, so the model's E or M step is likely wrong")
        warnings.warn(ConvergenceWarning("em: " + note, key="likelihood_decrease"), stacklevel=5)
        stop = Stop("likelihood_decrease" if stop.stopped_by == "tol" else stop.stopped_by, False,
                    f"{stop.message}; not converged: {note}")
    return st.theta, stop, {"loglik": _estep(cfg, model, st.theta)[1]}

"""M steps on the Monte Carlo estimate of Q, and the estimated improvement delta-Q.

Draws are dicts of latent arrays with leading ``(chain, draw)`` axes. The Monte Carlo estimate is

    Q_hat(theta) = mean_j log p(x, z_j; theta)

and every M step reports ``delta_q = Q_hat(theta_new) - Q_hat(theta_old)`` over the same draws,
with a Monte Carlo standard error that accounts for the autocorrelation of MCMC draws.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import optimize

__all__ = [
    "MStepInfo",
    "per_draw_log_joint",
    "q_hat",
    "delta_q",
    "mcse_of_mean",
    "closed_form",
    "numerical",
    "gradient_ascent",
]


class MStepInfo(NamedTuple):
    """What an M step reports: success flag, iterations, function evaluations and a message."""

    success: bool
    nit: int
    nfev: int
    message: str


def per_draw_log_joint(model, theta, draws) -> np.ndarray:
    """log p(x, z_j; theta) for every draw: shape (chain, draw) (unit terms summed)."""
    lj = np.asarray(model.log_joint(theta, draws), dtype=float)
    batch = next(iter(draws.values())).shape[:2]
    return lj.reshape(batch + (-1,)).sum(-1) if lj.ndim > 2 else lj


def q_hat(model, theta, draws) -> float:
    """The Monte Carlo estimate of Q(theta; theta_t) from draws of p(z | x; theta_t)."""
    return float(np.mean(per_draw_log_joint(model, theta, draws)))


def mcse_of_mean(d) -> float:
    """Monte Carlo standard error of the mean of a (chain, draw) array of per-draw values.

    Batch means within each chain (:func:`mcem.diagnostics.batch_means_se`) when every chain has
    at least 16 draws, so that autocorrelated MCMC draws are not treated as independent; the
    independent-draws formula below that.
    """
    d = np.asarray(d, dtype=float)
    n = d.size
    if n < 2:
        return np.inf
    if d.ndim == 2 and d.shape[1] >= 16:
        from .diagnostics import batch_means_se

        return float(batch_means_se(d))
    return float(np.std(d, ddof=1) / np.sqrt(n))


def delta_q(model, theta_new, theta_old, draws):
    """(delta_q, mcse, per-draw differences) of Q_hat between two parameter values."""
    d = per_draw_log_joint(model, theta_new, draws) - per_draw_log_joint(model, theta_old, draws)
    return float(np.mean(d)), mcse_of_mean(d), d


def closed_form(model, draws):
    """theta = mstep(mean sufficient statistics over the draws)."""
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}
    stats = model.sufficient_stats_fn(flat, model.data)
    return model.mstep_fn(stats, model.data), stats


def numerical(model, theta0, draws, *, method="L-BFGS-B", options=None):
    """Maximise Q_hat in the unconstrained space with scipy.optimize (finite-difference gradient)."""
    u0 = model.to_unconstrained(theta0)

    def f(u):
        with np.errstate(all="ignore"):
            v = -q_hat(model, model.from_unconstrained(u), draws)
        return v if np.isfinite(v) else np.inf

    res = optimize.minimize(f, u0, method=method, options=dict(options or {}))
    theta = model.from_unconstrained(res.x)
    return theta, MStepInfo(bool(res.success), int(res.get("nit", 0)), int(res.nfev), str(res.message))


def _fd_grad(f, u, h=1e-6):
    g = np.empty_like(u)
    for i in range(u.size):  # a loop over parameters, not over data
        e = np.zeros_like(u)
        e[i] = h * max(1.0, abs(u[i]))
        g[i] = (f(u + e) - f(u - e)) / (2 * e[i])
    return g


def gradient_ascent(model, theta0, q, *, n_steps=1, step_size=0.1, grad=None, max_halvings=30):
    """Generalized-EM M step: ``n_steps`` gradient-ascent steps on ``q(theta)`` (unconstrained).

    Each step backtracks (halving the step) until ``q`` does not decrease, so the returned
    parameters never lower ``q`` below its value at ``theta0``: the GEM condition.
    """
    u = model.to_unconstrained(theta0)

    def fq(v):
        with np.errstate(all="ignore"):
            val = q(model.from_unconstrained(v))
        return val if np.isfinite(val) else -np.inf

    cur = fq(u)
    nfev = 1
    for _ in range(n_steps):
        g = grad(u) if grad is not None else _fd_grad(fq, u)
        nfev += 0 if grad is not None else 2 * u.size
        step = step_size
        for _ in range(max_halvings):
            cand = u + step * g
            val = fq(cand)
            nfev += 1
            if val >= cur:
                u, cur = cand, val
                break
            step *= 0.5
    return model.from_unconstrained(u), MStepInfo(True, n_steps, nfev, "gradient ascent")

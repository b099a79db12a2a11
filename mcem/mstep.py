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

from ._validation import check_positive_int

__all__ = [
    "MStepInfo",
    "per_draw_log_joint",
    "q_hat",
    "delta_q",
    "mcse_of_mean",
    "closed_form",
    "numerical",
    "adam",
    "q_hat_grad",
    "gradient_ascent",
    "per_draw_scores",
    "update_covariance",
]


class MStepInfo(NamedTuple):
    """What an M step reports: success flag, iterations, function evaluations and a message."""

    success: bool
    nit: int
    nfev: int
    message: str


def per_draw_log_joint(model, theta, draws) -> np.ndarray:
    """log p(x, z_j; theta) for every draw: shape (chain, draw) (unit terms summed)."""
    return model.log_joint_sum(theta, draws, 2)


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


def q_hat_grad(model, theta, draws) -> np.ndarray:
    """Gradient of Q_hat in the unconstrained coordinates from the model's ``grad_params``."""
    g = model.grad_params_fn(theta, draws, model.data)
    mean = {n: np.asarray(g[n], dtype=float).mean(axis=(0, 1)) for n in model.param_names}
    return model.grad_to_unconstrained(model.to_unconstrained(theta), mean)


def numerical(model, theta0, draws, *, method="L-BFGS-B", options=None):
    """Maximise Q_hat in the unconstrained space with scipy.optimize.

    The gradient comes from the model's ``grad_params`` when it has one, from finite
    differences otherwise.
    """
    u0 = model.to_unconstrained(theta0)

    def f(u):
        with np.errstate(all="ignore"):
            v = -q_hat(model, model.from_unconstrained(u), draws)
        return v if np.isfinite(v) else np.inf

    jac = None
    batch = next(iter(draws.values())).shape[:2]
    if model.value_and_grad_fn is not None:  # both from one pass over the data

        def f(u):  # noqa: F811
            th = model.from_unconstrained(u)
            with np.errstate(all="ignore"):
                total, g = model.value_and_grad_fn(th, draws, model.data)
                total = np.asarray(total, dtype=float)
                if total.shape != batch:
                    raise ValueError(
                        f"value_and_grad must return the log joint summed over units, one value per "
                        f"draw (shape {batch}), got shape {total.shape}"
                    )
                v = -float(np.mean(total))
            if not np.isfinite(v):
                return np.inf, np.zeros_like(u)
            mean = {n: np.asarray(g[n], dtype=float).mean(axis=(0, 1)) for n in model.param_names}
            return v, -model.grad_to_unconstrained(u, mean)

        jac = True
    elif model.grad_params_fn is not None:

        def jac(u):
            return -q_hat_grad(model, model.from_unconstrained(u), draws)

    res = optimize.minimize(f, u0, jac=jac, method=method, options=dict(options or {}))
    theta = model.from_unconstrained(res.x)
    return theta, MStepInfo(bool(res.success), int(res.get("nit", 0)), int(res.nfev), str(res.message))


def adam(model, theta0, draws, rng, *, n_steps=50, lr=0.05, batch_draws=32, batch_units=None,
         beta1=0.9, beta2=0.999):
    """Stochastic M step: Adam ascent on Q_hat over random minibatches of draws and of units.

    Each step uses ``batch_draws`` draws chosen at random (over chains and draws), so the cost
    of a step does not grow with the Monte Carlo sample size. With ``batch_units`` the units are
    split once into contiguous blocks of about that many (:meth:`mcem.Model.subset`; the blocks'
    log joints must add up to the whole model's) and each step uses one block chosen at random,
    its gradient scaled by the number of blocks: an unbiased estimate of the full gradient whose
    cost does not grow with the number of units. Gradients come from the model's ``grad_params``
    when it has one, from finite differences on the minibatch otherwise. The result increases
    Q_hat in expectation, not surely: a stochastic generalized-EM step.
    """
    u = model.to_unconstrained(theta0)
    n_chain, n_draw = next(iter(draws.values())).shape[:2]
    flat = {k: v.reshape((1, n_chain * n_draw) + v.shape[2:]) for k, v in draws.items()}
    total = n_chain * n_draw
    blocks = None
    if batch_units is not None:
        blocks, subs = unit_blocks(model, batch_units, theta0)
    m1 = np.zeros_like(u)
    m2 = np.zeros_like(u)
    for t in range(1, n_steps + 1):
        idx = rng.choice(total, size=min(batch_draws, total), replace=False)
        if blocks is None:
            target, scale = model, 1.0
            batch = {k: v[:, idx] for k, v in flat.items()}
        else:
            b = int(rng.integers(len(blocks)))
            target, scale = subs[b], float(len(blocks))
            lo, hi = blocks[b][0], blocks[b][-1] + 1
            batch = {k: v[:, idx, lo:hi] for k, v in flat.items()}
        if target.grad_params_fn is not None:
            g = q_hat_grad(target, target.from_unconstrained(u), batch)
        else:
            g = _fd_grad(lambda v: q_hat(target, target.from_unconstrained(v), batch), u)
        g = scale * g
        m1 = beta1 * m1 + (1 - beta1) * g
        m2 = beta2 * m2 + (1 - beta2) * g**2
        u = u + lr * (m1 / (1 - beta1**t)) / (np.sqrt(m2 / (1 - beta2**t)) + 1e-8)
    return model.from_unconstrained(u), MStepInfo(True, n_steps, n_steps, "adam")


def unit_blocks(model, batch_units, theta):
    """Contiguous blocks of about ``batch_units`` units and their models (built once per model).

    Checks at ``theta`` and a perturbed theta that the blocks' log joints add up exactly to the
    whole model's, as a sum of gradients over blocks needs.
    """
    from .distributed import check_additive, shard_units

    if model.n_units is None:
        model.subset(np.arange(1))  # raises the error that says what is missing
    batch_units = check_positive_int(batch_units, "batch_units")
    n_blocks = -(-model.n_units // min(batch_units, model.n_units))
    cache = model.__dict__.setdefault("_unit_blocks", {})
    hit = cache.get(n_blocks)
    if hit is None or hit[0] is not model.subset_fn:  # built by this very subset function
        blocks = shard_units(model.n_units, n_blocks)
        subs = [model.subset(b) for b in blocks]
        u = model.to_unconstrained(theta)
        for th in (theta, model.from_unconstrained(u + 0.1)):
            check_additive(model, subs, blocks, th, exact=True)
        hit = cache[n_blocks] = (model.subset_fn, blocks, subs)
    return hit[1], hit[2]


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


def per_draw_scores(model, theta, draws, h=1e-5):
    """Scores of log p(x, z_j; theta) in the unconstrained coordinates, per draw: (chain, draw, p).

    From the model's ``grad_params`` when it has one (chain rule through the transforms, whose
    Jacobian is taken once by differences of the transforms alone); otherwise central finite
    differences, each evaluating all draws in one vectorised call.
    """
    u = model.to_unconstrained(theta)
    if model.grad_params_fn is not None:
        from .inference import constrained_jacobian

        g = model.grad_params_fn(theta, draws, model.data)
        batch = next(iter(draws.values())).shape[:2]
        flat = np.concatenate(
            [np.broadcast_to(np.asarray(g[n], dtype=float), batch + model.params[n].shape).reshape(batch + (-1,))
             for n in model.param_names],
            axis=-1,
        )
        return flat @ constrained_jacobian(model, u)
    out = []
    for i in range(u.size):  # a loop over parameters, not over draws or units
        step = h * max(1.0, abs(u[i]))
        e = np.zeros_like(u)
        e[i] = step
        hi = per_draw_log_joint(model, model.from_unconstrained(u + e), draws)
        lo = per_draw_log_joint(model, model.from_unconstrained(u - e), draws)
        out.append((hi - lo) / (2 * step))
    return np.stack(out, axis=-1)


def _mean_covariance(s):
    """Covariance of the mean of (chain, draw, p) values: batch means within chains (>= 16
    draws per chain), independent draws otherwise."""
    n_chain, n_draw, p = s.shape
    if n_draw >= 16:
        n_batches = max(int(np.sqrt(n_draw)), 2)
        b = n_draw // n_batches
        means = s[:, n_draw - n_batches * b :].reshape(n_chain, n_batches, b, p).mean(axis=2)
        centred = means - means.mean(axis=1, keepdims=True)
        lr = b * np.einsum("cbi,cbj->ij", centred, centred) / (n_chain * (n_batches - 1))
        return lr / (n_chain * n_batches * b)
    flat = s.reshape(-1, p)
    return np.cov(flat, rowvar=False).reshape(p, p) / flat.shape[0]


def update_covariance(model, theta, draws, h=1e-4):
    """Monte Carlo covariance of the M-step maximiser of Q_hat, in unconstrained coordinates.

    At the maximiser, theta_hat - theta* ~ -H^-1 (mean score), so the covariance is
    H^-1 V H^-1 with H the Hessian of Q_hat and V the Monte Carlo covariance of the mean
    per-draw score (batch means for MCMC draws). Booth & Hobert (1999) compare successive
    iterates with this ellipsoid; it is also the Monte Carlo error of a final estimate.
    """
    u = model.to_unconstrained(theta)
    p = u.size
    scores = per_draw_scores(model, theta, draws)
    V = _mean_covariance(scores)
    H = np.empty((p, p))
    for i in range(p):
        step = h * max(1.0, abs(u[i]))
        e = np.zeros_like(u)
        e[i] = step
        up = per_draw_scores(model, model.from_unconstrained(u + e), draws).mean(axis=(0, 1))
        dn = per_draw_scores(model, model.from_unconstrained(u - e), draws).mean(axis=(0, 1))
        H[:, i] = (up - dn) / (2 * step)
    H = 0.5 * (H + H.T)
    Hinv = np.linalg.pinv(H)
    return Hinv @ V @ Hinv


"""After the fit: standard errors (Louis 1982) and the marginal log-likelihood.

Standard errors
    With draws z_j from p(z | x; theta_hat), Louis' identity gives the observed information

        I(theta_hat) = E[-Hessian log p(x, z; theta)] - Var[score of log p(x, z; theta)],

    both expectations over the posterior and estimated by averages over the draws. Derivatives
    are taken in the unconstrained coordinates by central differences (each difference one
    vectorised call over all draws), inverted there, and mapped to the constrained parameters by
    the delta method. Where the model has an exact log-likelihood, its Hessian is used instead.
    The Monte Carlo error of the standard errors is estimated by the jackknife over batches of
    draws.

Marginal log-likelihood
    Exact where the model has it. Otherwise by importance sampling: for conditionally
    independent units, one proposal per unit (Student-t on the unconstrained scale, fitted to the
    final draws; for finite discrete units the sum over states is exact), so the estimate is a
    sum of independent one-unit estimates; for a joint latent vector, one multivariate Student-t
    proposal. Each estimate comes with its Monte Carlo standard error.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from . import mstep as M
from .exceptions import MonteCarloWarning

__all__ = ["Inference", "observed_information", "standard_errors", "marginal_loglik", "LoglikEstimate"]


class Inference(NamedTuple):
    """Standard errors and covariances of a fit.

    ``se`` and ``se_mcse`` are dicts shaped like the parameters; ``cov`` is the covariance of the
    flattened constrained parameters (order ``names``); ``cov_unconstrained`` the covariance in
    the unconstrained coordinates; ``method`` is ``"exact"`` or ``"louis"``.
    """

    se: dict
    se_mcse: dict
    cov: np.ndarray
    cov_unconstrained: np.ndarray
    information: np.ndarray
    names: list
    method: str
    positive_definite: bool


class LoglikEstimate(NamedTuple):
    """A marginal log-likelihood estimate with its Monte Carlo standard error."""

    value: float
    mcse: float
    method: str


def _flat_names(model):
    names = []
    for n in model.param_names:
        shape = model.params[n].shape
        if not shape:
            names.append(n)
        else:
            names.extend(f"{n}[{','.join(map(str, i))}]" for i in np.ndindex(shape))
    return names


def _theta_flat(model, u):
    th = model.from_unconstrained(u)
    return np.concatenate([np.asarray(th[n], dtype=float).ravel() for n in model.param_names])


def constrained_jacobian(model, u, h=1e-6):
    """d theta_flat / d u by central differences of the transforms (no data involved)."""
    cols = []
    for i in range(u.size):
        step = h * max(1.0, abs(u[i]))
        e = np.zeros_like(u)
        e[i] = step
        cols.append((_theta_flat(model, u + e) - _theta_flat(model, u - e)) / (2 * step))
    return np.stack(cols, axis=1)


def _score_arrays(model, theta, draws, h_score=1e-5, h_hess=1e-4):
    """Per-draw scores at u and at u +- h e_i: enough for any subset's Louis information."""
    u = model.to_unconstrained(theta)
    s0 = M.per_draw_scores(model, theta, draws, h=h_score)
    plus, minus, steps = [], [], []
    for i in range(u.size):
        step = h_hess * max(1.0, abs(u[i]))
        e = np.zeros_like(u)
        e[i] = step
        plus.append(M.per_draw_scores(model, model.from_unconstrained(u + e), draws, h=h_score))
        minus.append(M.per_draw_scores(model, model.from_unconstrained(u - e), draws, h=h_score))
        steps.append(step)
    return s0, np.stack(plus), np.stack(minus), np.array(steps)


def _louis(s0, plus, minus, steps, mask=None):
    """I = -mean Hessian - covariance of the scores, on the draws selected by ``mask``."""
    p = s0.shape[-1]
    if mask is None:
        flat0 = s0.reshape(-1, p)
        fp, fm = plus.reshape(p, -1, p), minus.reshape(p, -1, p)
    else:
        flat0 = s0.reshape(-1, p)[mask]
        fp, fm = plus.reshape(p, -1, p)[:, mask], minus.reshape(p, -1, p)[:, mask]
    H = ((fp.mean(axis=1) - fm.mean(axis=1)) / (2 * steps[:, None])).T  # H[:, i] = d score / d u_i
    H = 0.5 * (H + H.T)
    centred = flat0 - flat0.mean(axis=0)
    var = centred.T @ centred / max(flat0.shape[0] - 1, 1)
    return -H - var


def _exact_information(model, theta, h=1e-4):
    u = model.to_unconstrained(theta)
    p = u.size

    def ll(v):
        return model.exact_loglik(model.from_unconstrained(v))

    H = np.empty((p, p))
    steps = np.array([h * max(1.0, abs(x)) for x in u])
    for i in range(p):
        for j in range(i, p):
            ei = np.zeros(p)
            ej = np.zeros(p)
            ei[i], ej[j] = steps[i], steps[j]
            H[i, j] = H[j, i] = (
                ll(u + ei + ej) - ll(u + ei - ej) - ll(u - ei + ej) + ll(u - ei - ej)
            ) / (4 * steps[i] * steps[j])
    return -H


def observed_information(model, theta, draws=None, *, method="auto"):
    """The observed information in the unconstrained coordinates: exact or by Louis' identity."""
    if method == "auto":
        method = "exact" if model.loglik_fn is not None else "louis"
    if method == "exact":
        if model.loglik_fn is None:
            raise ValueError(f"method='exact' needs a model with an exact log-likelihood; {model.name!r} has none")
        return _exact_information(model, theta), None
    if draws is None:
        raise ValueError("Louis' identity needs posterior draws at the estimate (draws=...)")
    arrays = _score_arrays(model, theta, draws)
    return _louis(*arrays), arrays


def _invert(info, what):
    info = 0.5 * (info + info.T)
    eig = np.linalg.eigvalsh(info)
    pd = bool(eig.min() > 0)
    if not pd:
        warnings.warn(
            f"{what}: the observed information is not positive definite (smallest eigenvalue "
            f"{eig.min():.3g}); standard errors of poorly identified directions are NaN. More draws, "
            "a better optimum or fewer parameters may help.",
            MonteCarloWarning,
            stacklevel=3,
        )
    cov = np.linalg.pinv(info)
    return cov, pd


def _se_from_cov_u(model, u, cov_u):
    J = constrained_jacobian(model, u)
    cov = J @ cov_u @ J.T
    d = np.diag(cov)
    se_flat = np.where(d >= 0, np.sqrt(np.abs(d)), np.nan)
    return cov, se_flat


def _unflatten(model, flat):
    out, off = {}, 0
    for n in model.param_names:
        shape = model.params[n].shape
        size = int(np.prod(shape, dtype=int))
        out[n] = np.asarray(flat[off : off + size]).reshape(shape)
        off += size
    return out


def standard_errors(model, theta, draws=None, *, method="auto", n_batches=10) -> Inference:
    """Standard errors of ``theta`` (an MLE): exact information where possible, Louis otherwise."""
    info, arrays = observed_information(model, theta, draws, method=method)
    u = model.to_unconstrained(theta)
    cov_u, pd = _invert(info, "standard_errors")
    if not pd:
        bad = np.linalg.eigvalsh(0.5 * (info + info.T)) <= 0
        w, V = np.linalg.eigh(0.5 * (info + info.T))
        # NaN in every coordinate touched by a non-identified direction
        touched = np.any(np.abs(V[:, bad]) > 1e-8, axis=1)
        cov_u = cov_u.copy()
        cov_u[touched, :] = np.nan
        cov_u[:, touched] = np.nan
    cov, se_flat = _se_from_cov_u(model, u, cov_u)
    se_mcse = np.zeros_like(se_flat)
    used = "exact" if arrays is None else "louis"
    if arrays is not None:
        n_chain, n_draw = arrays[0].shape[:2]
        B = min(n_batches, n_draw)
        if B >= 2:
            # jackknife over contiguous batches of draws (all chains), for the MC error of the SEs
            batch_of = np.tile(np.arange(n_draw) * B // n_draw, n_chain)
            reps = []
            for b in range(B):
                info_b = _louis(*arrays, mask=batch_of != b)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cov_b = np.linalg.pinv(0.5 * (info_b + info_b.T))
                reps.append(_se_from_cov_u(model, u, cov_b)[1])
            reps = np.array(reps)
            se_mcse = np.sqrt((B - 1) / B * np.sum((reps - reps.mean(axis=0)) ** 2, axis=0))
    return Inference(
        se=_unflatten(model, se_flat),
        se_mcse=_unflatten(model, se_mcse),
        cov=cov,
        cov_unconstrained=cov_u,
        information=info,
        names=_flat_names(model),
        method=used,
        positive_definite=pd,
    )


# ---------------------------------------------------------------- marginal log-likelihood
def _unit_log_weights_discrete(model, theta):
    (name,) = model.latent_names
    spec = model.latents[name]
    states = {name: np.broadcast_to(np.arange(spec.K)[:, None], (spec.K, spec.shape[0]))}
    lp = np.asarray(model.log_joint(theta, states))  # (K, N)
    return float(logsumexp(lp, axis=0).sum())


def _enumerate_joint(model, theta):
    names = model.latent_names
    specs = [model.latents[n] for n in names]
    sizes = [int(np.prod(s.shape, dtype=int)) for s in specs]
    grids = np.meshgrid(*[np.arange(s.K) for s, k in zip(specs, sizes, strict=True) for _ in range(k)], indexing="ij")
    flat = np.stack([g.ravel() for g in grids], axis=1)  # (n_states, total elements)
    z, off = {}, 0
    for n, s, k in zip(names, specs, sizes, strict=True):
        z[n] = flat[:, off : off + k].reshape((-1,) + s.shape)
        off += k
    return float(logsumexp(model.log_joint_sum(theta, z, 1)))


def marginal_loglik(model, theta, draws=None, *, n_samples=2000, df=5.0, rng=None, max_states=100_000) -> LoglikEstimate:
    """log p(x; theta) with its Monte Carlo standard error.

    Exact when the model has ``loglik``, when its only latent is discrete with per-unit terms
    (the sum over states per unit), or when all latents are discrete with at most ``max_states``
    joint states (the sum over all of them). Otherwise importance sampling with Student-t(``df``) proposals fitted
    to ``draws`` on the unconstrained scale: per unit when the model has per-unit terms and one
    unit latent, jointly otherwise.
    """
    if model.loglik_fn is not None:
        return LoglikEstimate(model.exact_loglik(theta), 0.0, "exact")
    names = model.latent_names
    if len(names) == 1 and model.latents[names[0]].is_discrete and model.latents[names[0]].unit and model.per_unit:
        return LoglikEstimate(_unit_log_weights_discrete(model, theta), 0.0, "exact (sum over states)")
    if all(model.latents[n].is_discrete for n in names):
        n_states = np.prod([float(model.latents[n].K) ** int(np.prod(model.latents[n].shape, dtype=int)) for n in names])
        if n_states <= max_states:
            return LoglikEstimate(_enumerate_joint(model, theta), 0.0, "exact (sum over all latent states)")
    if draws is None:
        raise ValueError("importance sampling needs posterior draws at the estimate (draws=...)")
    if any(model.latents[n].is_discrete for n in names):
        raise ValueError(
            "marginal_loglik: importance sampling is implemented for continuous latents; model "
            f"{model.name!r} has discrete latents without per-unit terms"
        )
    rng = np.random.default_rng(rng)
    per_unit = len(names) == 1 and model.latents[names[0]].unit and model.per_unit
    if per_unit:
        return _is_per_unit(model, theta, draws, n_samples, df, rng)
    return _is_joint(model, theta, draws, n_samples, df, rng)


def _is_per_unit(model, theta, draws, R, df, rng):
    (name,) = model.latent_names
    spec = model.latents[name]
    sup = spec.support
    z = np.asarray(draws[name], dtype=float)
    u = sup.inverse(z).reshape((-1,) + spec.shape)  # (draws, N, *rest)
    mu = u.mean(axis=0)
    sd = u.std(axis=0, ddof=1) * 1.2 + 1e-8  # a little wider than the posterior
    t = stats.t(df)
    eps = t.rvs(size=(R,) + spec.shape, random_state=rng)
    uu = mu + sd * eps
    zz = sup.forward(uu)
    lq = t.logpdf(eps) - np.log(sd)  # density of uu
    lq = lq.reshape((R, spec.shape[0], -1)).sum(-1)
    ladj = sup.elementwise_log_abs_det_jacobian(uu).reshape((R, spec.shape[0], -1)).sum(-1)
    lp = np.asarray(model.log_joint(theta, {name: zz}))  # (R, N)
    lw = lp + ladj - lq  # weights for the density of z, via the unconstrained proposal
    per = logsumexp(lw, axis=0) - np.log(R)  # (N,)
    w = np.exp(lw - lw.max(axis=0))
    rel_var = np.var(w, axis=0, ddof=1) / (R * np.mean(w, axis=0) ** 2)  # var of log by delta method
    return LoglikEstimate(float(per.sum()), float(np.sqrt(rel_var.sum())), "importance sampling (per unit)")


def _is_joint(model, theta, draws, R, df, rng):
    names = model.latent_names
    specs = [model.latents[n] for n in names]
    parts = [s.support.inverse(np.asarray(draws[n], dtype=float)).reshape(-1, int(np.prod(s.shape, dtype=int)))
             for n, s in zip(names, specs, strict=True)]
    U = np.concatenate(parts, axis=1)
    dim = U.shape[1]
    mu = U.mean(axis=0)
    cov = np.cov(U, rowvar=False).reshape(dim, dim) * 1.2 + 1e-10 * np.eye(dim)
    prop = stats.multivariate_t(loc=mu, shape=cov, df=df)
    uu = np.atleast_2d(prop.rvs(size=R, random_state=rng)).reshape(R, dim)
    lq = prop.logpdf(uu)
    z, off, ladj = {}, 0, np.zeros(R)
    for n, s in zip(names, specs, strict=True):
        size = int(np.prod(s.shape, dtype=int))
        block = uu[:, off : off + size].reshape((R,) + s.shape)
        z[n] = s.support.forward(block)
        ladj += s.support.elementwise_log_abs_det_jacobian(block).reshape(R, -1).sum(-1)
        off += size
    lp = model.log_joint_sum(theta, z, 1)
    lw = lp + ladj - lq
    est = float(logsumexp(lw) - np.log(R))
    w = np.exp(lw - lw.max())
    return LoglikEstimate(est, float(np.sqrt(np.var(w, ddof=1) / (R * np.mean(w) ** 2))), "importance sampling (joint)")

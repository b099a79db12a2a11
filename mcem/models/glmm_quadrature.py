"""The quadrature oracle of the random-intercept GLMM, and Monte Carlo fits compared with it.

With a one-dimensional random effect per group the marginal likelihood of
:func:`mcem.models.random_intercept.random_intercept_glmm` is a product of one-dimensional integrals, which
adaptive Gauss-Hermite quadrature computes to near machine precision (Liu & Pierce 1994; Pinheiro &
Bates 1995). :func:`quadrature_loglik` evaluates it and :func:`fit_quadrature` maximises it (BFGS on
``(beta, log sigma)``), with standard errors from the numerical Hessian. This is the reference every
Monte Carlo fit of this model is compared against: :func:`compare_to_quadrature` sets a fit next to
it as an :class:`mcem.Comparison` and :func:`plot_with_oracle` draws it on the fit's figure.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

from .._validation import check_positive_int
from ..compare import Comparison, compare_to_reference, mark_reference
from ._glmm_common import (
    beta_sigma,
    check_inputs,
    glm_start,
    group_sum,
    mean_and_weight,
    normal_logpdf,
    obs_loglik,
)
from .glmm_model import _check_glmm_model, mc_covariance

__all__ = [
    "quadrature_loglik",
    "fit_quadrature",
    "QuadratureFit",
    "compare_to_quadrature",
    "plot_with_oracle",
]


def _modes(lin, d, sigma, max_iter=100, tol=1e-10):
    """Per-group mode and curvature of u -> log p(y_g | u) + log N(u; 0, sigma^2).

    Safeguarded Newton, all groups at once (the loop is over Newton iterations): each step is
    capped at 5 and halved where it would lower the (concave) integrand.
    """
    fam, y, lgy, g, st, trials = d["family"], d["y"], d["lgy"], d["group"], d["starts"], d["trials"]
    s2 = sigma**2

    def h_and_derivs(u):
        eta = lin + u[g]
        mu, w = mean_and_weight(eta, fam, trials)
        h = group_sum(obs_loglik(eta, y, fam, lgy, trials), st) - 0.5 * u**2 / s2
        return h, group_sum(y - mu, st) - u / s2, group_sum(w, st) + 1.0 / s2

    u = np.zeros(d["n_groups"])
    h, grad, curv = h_and_derivs(u)
    for _ in range(max_iter):
        step = np.clip(grad / curv, -5.0, 5.0)
        t = np.ones_like(u)
        for _ in range(40):  # backtracking, vectorised over groups
            u_new = u + t * step
            h_new, g_new, c_new = h_and_derivs(u_new)
            worse = ~(h_new >= h - 1e-12 * (1.0 + np.abs(h)))
            if not worse.any():
                break
            t = np.where(worse, 0.5 * t, t)
        u, h, grad, curv = u_new, h_new, g_new, c_new
        if np.max(np.abs(t * step)) < tol:
            break
    return u, curv


def _quad_parts(beta, sigma, d, n_nodes, adaptive):
    """Nodes U (K, G), log integrand terms (K, G) and pieces the gradient needs."""
    x, w = np.polynomial.hermite.hermgauss(n_nodes)
    lin = d["X"] @ beta + d["offset"]
    if adaptive:
        mode, curv = _modes(lin, d, sigma)
        scale = np.sqrt(2.0 / curv)
    else:
        mode = np.zeros(d["n_groups"])
        scale = np.full(d["n_groups"], np.sqrt(2.0) * sigma)
    U = mode + scale * x[:, None]  # (K, G)
    eta = lin + U[:, d["group"]]  # (K, n)
    ll = group_sum(obs_loglik(eta, d["y"], d["family"], d["lgy"], d["trials"]), d["starts"])
    a = np.log(w)[:, None] + x[:, None] ** 2 + ll + normal_logpdf(U, sigma) + np.log(scale)
    return U, eta, a


def _loglik_and_grad(beta, sigma, d, n_nodes, adaptive, grad=True):
    U, eta, a = _quad_parts(beta, sigma, d, n_nodes, adaptive)
    per = logsumexp(a, axis=0)  # (G,)
    value = float(per.sum())
    if not grad:
        return value, None
    pi = np.exp(a - per)  # (K, G) normalised node weights: a posterior over the nodes
    resid = d["y"] - mean_and_weight(eta, d["family"], d["trials"])[0]  # (K, n)
    g_obs = np.sum(pi[:, d["group"]] * resid, axis=0)  # (n,)
    g_beta = g_obs @ d["X"]
    if adaptive:
        # nodes held fixed: the exact integral does not depend on where the nodes sit
        g_logsig = float(np.sum(pi * (U**2 / sigma**2 - 1.0)))
    else:
        # nodes move with sigma (U = sigma * sqrt(2) x): chain rule through the linear predictor
        g_logsig = float(np.sum(pi * group_sum(resid, d["starts"]) * U))
    return value, np.append(g_beta, g_logsig)


def _check_nodes(n_nodes):
    return check_positive_int(n_nodes, "n_nodes")


def _theta_args(theta, p):
    if not isinstance(theta, dict) or not {"beta", "sigma"} <= set(theta):
        raise TypeError(f"theta must be a dict with 'beta' and 'sigma', got {theta!r}")
    beta = np.asarray(theta["beta"], dtype=float).reshape(-1)
    if beta.shape != (p,):
        raise ValueError(f"theta['beta'] must have shape ({p},) (one per column of X), got {beta.shape}")
    sigma = float(np.asarray(theta["sigma"], dtype=float))
    if not (np.isfinite(sigma) and sigma > 0) or not np.all(np.isfinite(beta)):
        raise ValueError(f"theta must be finite with sigma > 0, got beta={beta.tolist()}, sigma={sigma!r}")
    return beta, sigma


def quadrature_loglik(theta, X, y, group, family="logit", offset=None, n_nodes=20, adaptive=True,
                      trials=None) -> float:
    """The marginal log-likelihood log p(y; beta, sigma) by Gauss-Hermite quadrature.

    Parameters
    ----------
    theta : dict
        ``beta`` (p,) and ``sigma`` (> 0).
    X, y, group, family, offset, trials
        As in :func:`random_intercept_glmm`.
    n_nodes : int
        Quadrature nodes per group.
    adaptive : bool
        Centre and scale the nodes at each group's posterior mode and curvature (found by
        vectorised Newton steps); otherwise nodes on the N(0, sigma^2) prior.
    """
    d = check_inputs(X, y, group, family, offset, trials)
    beta, sigma = _theta_args(theta, d["X"].shape[1])
    return _loglik_and_grad(beta, sigma, d, _check_nodes(n_nodes), bool(adaptive), grad=False)[0]


class QuadratureFit(NamedTuple):
    """The quadrature maximum-likelihood fit of a random-intercept GLMM.

    ``params`` and ``se`` are dicts ``{"beta": (p,), "sigma": float}``; ``cov`` is the covariance
    of ``(beta, log sigma)`` (the inverse numerical Hessian), ``loglik`` the maximised
    log-likelihood. ``sigma2`` and ``se_sigma2`` give the variance scale (delta method).
    """

    params: dict
    se: dict
    cov: np.ndarray
    loglik: float
    converged: bool
    message: str
    nit: int
    n_nodes: int
    adaptive: bool
    seconds: float

    @property
    def sigma2(self) -> float:
        return float(self.params["sigma"]) ** 2

    @property
    def se_sigma2(self) -> float:
        return 2.0 * self.sigma2 * float(np.sqrt(self.cov[-1, -1]))


def fit_quadrature(
    X, y, group, family="logit", offset=None, n_nodes=20, adaptive=True, init=None, gtol=1e-8, trials=None
) -> QuadratureFit:
    """Maximum likelihood by Gauss-Hermite quadrature: the oracle for one-dimensional random effects.

    BFGS on ``(beta, log sigma)`` with the gradient of the quadrature formula; standard errors
    from the Hessian of the log-likelihood, by central differences of that gradient.

    Parameters
    ----------
    X, y, group, family, offset, trials
        As in :func:`random_intercept_glmm`.
    n_nodes : int
        Nodes per group (20 adaptive nodes are exact to many digits for these models).
    adaptive : bool
        Adaptive (mode-centred) or plain Gauss-Hermite quadrature.
    init : dict, optional
        Starting ``beta`` / ``sigma``; default: the GLM fit and ``sigma = 1``.
    gtol : float
        BFGS gradient tolerance.

    Returns
    -------
    QuadratureFit
    """
    t0 = time.perf_counter()
    d = check_inputs(X, y, group, family, offset, trials)
    n_nodes = _check_nodes(n_nodes)
    adaptive = bool(adaptive)
    p = d["X"].shape[1]
    start = {"beta": glm_start(d), "sigma": 1.0}
    if init is not None:
        start.update(init)
    beta0, sigma0 = _theta_args(start, p)
    v0 = np.append(beta0, np.log(sigma0))

    def f(v):
        with np.errstate(all="ignore"):
            val, g = _loglik_and_grad(v[:p], float(np.exp(v[p])), d, n_nodes, adaptive)
        if not np.isfinite(val):
            return np.inf, np.zeros_like(v)
        return -val, -g

    res = optimize.minimize(f, v0, jac=True, method="BFGS", options={"gtol": gtol, "maxiter": 1000})
    v = res.x
    H = np.empty((p + 1, p + 1))
    for i in range(p + 1):  # a loop over parameters
        h = 1e-4 * max(1.0, abs(v[i]))
        e = np.zeros(p + 1)
        e[i] = h
        H[:, i] = (f(v + e)[1] - f(v - e)[1]) / (2 * h)
    H = 0.5 * (H + H.T)  # Hessian of -loglik: the observed information
    cov = np.linalg.pinv(H)
    sd = np.sqrt(np.abs(np.diag(cov)))
    sigma = float(np.exp(v[p]))
    loglik = -float(f(v)[0])
    return QuadratureFit(
        params={"beta": v[:p].copy(), "sigma": sigma},
        se={"beta": sd[:p].copy(), "sigma": sigma * float(sd[p])},
        cov=cov,
        loglik=loglik,
        converged=bool(res.success) or bool(np.max(np.abs(res.jac)) < 1e-4),
        message=str(res.message),
        nit=int(res.nit),
        n_nodes=n_nodes,
        adaptive=adaptive,
        seconds=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- a fit against the oracle
def compare_to_quadrature(result, oracle, model=None, mc_cov=None) -> Comparison:
    """``result`` (an MCEM/SAEM fit of :func:`~mcem.models.random_intercept.random_intercept_glmm`) next to
    the quadrature MLE ``oracle`` (:func:`fit_quadrature`): a :class:`mcem.Comparison` of kind
    ``"reference"`` (:func:`mcem.compare.compare_to_reference`), one row per scalar parameter.

    ``sigma2`` (the variance, delta method) is added after ``sigma``. The Monte Carlo errors of
    the estimate come from ``mc_cov``, a covariance in ``(beta, log sigma)``; default
    :func:`~mcem.models.random_intercept.mc_covariance` on the result's final draws.
    """
    model = model if model is not None else getattr(result, "_model", None)
    if model is None:
        raise ValueError("compare_to_quadrature needs the model: pass model=...")
    _check_glmm_model(model)
    if not isinstance(oracle, QuadratureFit):
        raise TypeError(f"oracle must be a QuadratureFit (from fit_quadrature), got {type(oracle).__name__}")
    theta = result["params"]
    if mc_cov is None:
        mc_cov = mc_covariance(model, theta, result["draws"])
    beta, sigma = beta_sigma(theta)
    p = beta.size
    mcse_u = np.sqrt(np.abs(np.diag(mc_cov)))
    mcse = {"beta": mcse_u[:p], "sigma": sigma * float(mcse_u[p]), "sigma2": 2 * sigma**2 * float(mcse_u[p])}
    return compare_to_reference(
        result, {**oracle.params, "sigma2": oracle.sigma2}, {**oracle.se, "sigma2": oracle.se_sigma2},
        model=model, mcse=mcse, derived={"sigma2": ("sigma", lambda s: s**2, lambda s: 2 * s)}, name="MLE (AGQ)",
        method="quadrature", seconds=float(oracle.seconds),
    )


def plot_with_oracle(result, oracle, **kwargs):
    """``result.plot()`` with the quadrature MLE drawn as dotted black lines on the ``beta`` and
    ``sigma`` path panels (:func:`mcem.compare.mark_reference`). Returns the figure."""
    return mark_reference(result.plot(**kwargs), oracle.params, "quadrature MLE")

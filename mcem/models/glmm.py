"""Random-intercept generalized linear mixed models (logit and Poisson links), and a quadrature oracle.

The model, for observations i = 1..n in groups g(i) in 0..G-1::

    y_i | u  ~ Bernoulli(logits = x_i' beta + u_g(i) + offset_i)          family="logit"
    y_i | u  ~ Poisson(exp(x_i' beta + u_g(i) + offset_i))                 family="poisson"
    u_g      ~ N(0, sigma^2), independent

    params   beta   real, shape (p,)
             sigma  positive
    latent   u      Continuous(real, shape=G, unit=True)

:func:`random_intercept_glmm` builds it as an :class:`mcem.Model` with a per-group log joint
(observations are sorted by group once, then summed per group with ``np.add.reduceat``: no loop
over groups or observations), a summed fast path for Q evaluations and the analytic gradient in
``beta`` and ``sigma`` for the numerical M step.

The oracle: with a one-dimensional random effect per group the marginal likelihood is a product
of one-dimensional integrals, which adaptive Gauss-Hermite quadrature computes to near machine
precision (Liu & Pierce 1994; Pinheiro & Bates 1995). :func:`quadrature_loglik` evaluates it and
:func:`fit_quadrature` maximises it (BFGS on ``(beta, log sigma)``), with standard errors from the
numerical Hessian. This is the reference every Monte Carlo fit of this model is compared against.
"""

from __future__ import annotations

import numbers
import time
from typing import NamedTuple

import functools

import numpy as np
from scipy import optimize
from scipy.special import expit, gammaln, logsumexp

from .. import constraints as C
from .._validation import check_choice, check_positive_int, describe_array
from ..model import Continuous, Model

__all__ = [
    "FAMILIES",
    "random_intercept_glmm",
    "quadrature_loglik",
    "fit_quadrature",
    "QuadratureFit",
    "mc_covariance",
    "compare_to_quadrature",
    "Comparison",
    "plot_with_oracle",
    "simulate_random_intercept",
]

#: Supported response families (the link is canonical: logit for Bernoulli, log for Poisson).
FAMILIES = ("logit", "poisson")
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


# --------------------------------------------------------------------------- input checks
def _numeric(a, name):
    arr = np.asarray(a)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return arr


def _check_finite(arr, name):
    if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} must be finite, got {int(np.isnan(arr).sum())} NaN and "
            f"{int(np.isinf(arr).sum())} inf value(s) in an array of shape {arr.shape}"
        )


def _check_inputs(X, y, group, family, offset):
    """Validate and copy the data; sort observations by group. Returns the data dict."""
    check_choice(family, "family", set(FAMILIES))
    X = _numeric(X, "X")
    _check_finite(X, "X")
    X = np.array(X, dtype=float)  # a private copy: the user's array is never written
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_obs, n_features) or 1-D (n_obs,), got shape {X.shape}")
    n, p = X.shape
    if n == 0 or p == 0:
        raise ValueError(f"X is empty: expected at least one observation and one column, got shape {X.shape}")
    y = _numeric(y, "y")
    _check_finite(y, "y")
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X's {n} rows, got shape {y.shape}")
    y = np.array(y, dtype=float)
    if family == "logit":
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise ValueError(
                f"y must hold 0/1 (or boolean) responses for family='logit', got "
                f"{int(bad.sum())} other value(s), e.g. {y[bad][:5].tolist()}"
            )
    else:
        bad = (y < 0) | (y != np.round(y))
        if bad.any():
            raise ValueError(
                f"y must hold non-negative integer counts for family='poisson', got "
                f"{int(bad.sum())} other value(s), e.g. {y[bad][:5].tolist()}"
            )
    g = _numeric(group, "group")
    _check_finite(g, "group")
    if g.shape != (n,):
        raise ValueError(f"group must have shape ({n},) to match X's {n} rows, got shape {g.shape}")
    if g.dtype == bool or not np.all(g == np.round(g)):
        raise ValueError(
            f"group must hold integer labels 0..G-1, got {describe_array(g[g != np.round(g)] if g.dtype != bool else g)}"
        )
    g = g.astype(np.int64)
    if g.min() < 0:
        raise ValueError(f"group must hold integer labels 0..G-1, got negative label(s) {np.unique(g[g < 0])[:5].tolist()}")
    G = int(g.max()) + 1
    counts = np.bincount(g, minlength=G)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"group labels must be 0..G-1 with every group non-empty (G = max label + 1 = {G}); "
            f"{empty.size} group(s) have no observation, e.g. {empty[:5].tolist()}. Relabel the groups "
            "consecutively (np.unique(group, return_inverse=True)[1])"
        )
    if offset is None:
        off = np.zeros(n)
    else:
        off = _numeric(offset, "offset")
        _check_finite(off, "offset")
        off = np.array(np.broadcast_to(off, (n,)) if off.ndim == 0 else off, dtype=float)
        if off.shape != (n,):
            raise ValueError(f"offset must have shape ({n},) to match X's {n} rows, got shape {off.shape}")
    order = np.argsort(g, kind="stable")
    gs = g[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(gs)) + 1])
    ys = y[order]
    return {
        "X": X[order],
        "y": ys,
        "group": gs,
        "offset": off[order],
        "starts": starts,
        "counts": counts.astype(float),
        "ysum": np.bincount(gs, weights=ys, minlength=G),
        "lgy": gammaln(ys + 1.0) if family == "poisson" else np.zeros(n),
        "order": order,
        "family": family,
        "n_groups": G,
    }


# --------------------------------------------------------------------------- shared pieces
def _softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _obs_loglik(eta, y, family, lgy):
    """log p(y_i | eta_i) per observation (broadcast over leading axes of ``eta``)."""
    if family == "logit":
        return y * eta - _softplus(eta)
    with np.errstate(over="ignore"):
        return y * eta - np.exp(eta) - lgy


def _mean(eta, family):
    if family == "logit":
        return expit(eta)
    with np.errstate(over="ignore"):
        return np.exp(eta)


def _group_sum(a, starts):
    """Sum the last axis (observations sorted by group) per group."""
    return np.add.reduceat(a, starts, axis=-1)


def _normal_logpdf(u, sigma):
    return -0.5 * (u / sigma) ** 2 - np.log(sigma) - _HALF_LOG_2PI


def _beta_sigma(theta):
    return np.asarray(theta["beta"], dtype=float), float(theta["sigma"])


def _glm_start(d, max_iter=25):
    """beta of the GLM without random effects (Newton / IRLS, a loop over iterations only)."""
    X, y, off, fam = d["X"], d["y"], d["offset"], d["family"]
    p = X.shape[1]
    beta = np.zeros(p)
    if fam == "poisson":
        # start at the intercept-like level log(mean y) spread by least squares
        target = np.log(np.maximum(y, 0.5)) - off
        beta = np.linalg.lstsq(X, target, rcond=None)[0]
    for _ in range(max_iter):
        eta = X @ beta + off
        mu = _mean(eta, fam)
        w = mu * (1 - mu) if fam == "logit" else mu
        H = (X * w[:, None]).T @ X + 1e-8 * np.eye(p)
        step = np.linalg.solve(H, X.T @ (y - mu))
        step = np.clip(step, -2.0, 2.0)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    if not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) > 30:  # separation: give up quietly
        return np.zeros(p)
    return beta


# --------------------------------------------------------------------------- the model
_CHUNK = 1 << 16  # elements (draws x observations) per block of the vectorised evaluations


def _eta_blocks(lin, u, group):
    """Yield ``(rows, eta)`` over blocks of the flattened batch: eta = lin + u[rows][:, group].

    Working in blocks of about ``_CHUNK`` elements keeps the temporaries in cache (a single
    (draws x observations) array of many draws is slow to allocate and to traverse); ``eta`` is
    a fresh array the caller may overwrite.
    """
    B, n = u.shape[0], lin.shape[0]
    step = max(1, _CHUNK // n)
    for a in range(0, B, step):
        b = min(B, a + step)
        eta = np.take(u[a:b], group, axis=1)
        eta += lin
        yield slice(a, b), eta


def _log1p_exp_neg_abs(eta, out):
    """log(1 + exp(-|eta|)) into ``out`` (SIMD log/exp; absolute error ~1e-16)."""
    np.abs(eta, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    out += 1.0
    return np.log(out, out=out)


def _flat_u(z, G):
    u = np.asarray(z["u"], dtype=float)
    return u, u.reshape(-1, G)


# module-level (picklable) pieces of the model; G, family and p come from the data
def _ri_log_joint(theta, z, data):
    G, fam = data["n_groups"], data["family"]
    beta, sigma = _beta_sigma(theta)
    u, uf = _flat_u(z, G)
    lin = data["X"] @ beta + data["offset"]
    y, g, st = data["y"], data["group"], data["starts"]
    out = np.empty(uf.shape)
    tmp = None
    for rows, eta in _eta_blocks(lin, uf, g):
        if tmp is None or tmp.shape != eta.shape:
            tmp = np.empty_like(eta)
        if fam == "logit":
            _log1p_exp_neg_abs(eta, tmp)  # softplus(eta) = max(eta, 0) + tmp
            np.add(tmp, np.maximum(eta, 0.0), out=tmp)
        else:
            with np.errstate(over="ignore"):
                np.exp(eta, out=tmp)
            tmp += data["lgy"]
        eta *= y
        eta -= tmp
        out[rows] = _group_sum(eta, st)
    return out.reshape(u.shape) + _normal_logpdf(u, sigma)


def _ri_log_joint_total(theta, z, data):
    G, fam = data["n_groups"], data["family"]
    beta, sigma = _beta_sigma(theta)
    u, uf = _flat_u(z, G)
    lin = data["X"] @ beta + data["offset"]
    # sum_i y_i eta_i = y . lin + sum_g ysum_g u_g
    linear = data["y"] @ lin + uf @ data["ysum"]
    if fam == "logit":
        curv = np.empty(uf.shape[0])
        tmp = None
        for rows, eta in _eta_blocks(lin, uf, data["group"]):
            if tmp is None or tmp.shape != eta.shape:
                tmp = np.empty_like(eta)
            # sum softplus = sum max(eta, 0) + sum log(1 + exp(-|eta|)), and
            # sum max(eta, 0) = (sum eta + sum |eta|) / 2
            s_eta = eta.sum(axis=1)
            np.abs(eta, out=tmp)
            s_abs = tmp.sum(axis=1)
            curv[rows] = 0.5 * (s_eta + s_abs) + _log1p_exp_neg_abs(eta, tmp).sum(axis=1)
        const = 0.0
    else:
        # sum_i exp(lin_i + u_g) = sum_g exp(u_g) sum_{i in g} exp(lin_i): O(G) per draw
        with np.errstate(over="ignore"):
            curv = np.exp(uf) @ _group_sum(np.exp(lin), data["starts"])
        const = data["lgy"].sum()
    prior = -0.5 * np.sum(uf**2, axis=-1) / sigma**2 - G * (np.log(sigma) + _HALF_LOG_2PI)
    return (linear - curv - const + prior).reshape(u.shape[:-1])


def _ri_grad_params(theta, z, data):
    G, fam, p = data["n_groups"], data["family"], data["X"].shape[1]
    beta, sigma = _beta_sigma(theta)
    u, uf = _flat_u(z, G)
    lin = data["X"] @ beta + data["offset"]
    y, Xs = data["y"], data["X"]
    gb = np.empty((uf.shape[0], p))
    for rows, eta in _eta_blocks(lin, uf, data["group"]):
        if fam == "logit":  # 1 / (1 + exp(-eta)): SIMD exp, faster than scipy's expit
            np.negative(eta, out=eta)
            with np.errstate(over="ignore"):
                np.exp(eta, out=eta)
            eta += 1.0
            np.reciprocal(eta, out=eta)
        else:
            with np.errstate(over="ignore"):
                np.exp(eta, out=eta)
        np.subtract(y, eta, out=eta)  # residuals y - mean
        gb[rows] = eta @ Xs
    return {
        "beta": gb.reshape(u.shape[:-1] + (p,)),
        "sigma": np.sum(u**2, axis=-1) / sigma**3 - G / sigma,
    }


def _ri_value_and_grad(theta, z, data):
    G, fam, p = data["n_groups"], data["family"], data["X"].shape[1]
    if fam != "logit":  # the Poisson total is O(G) per draw: nothing to share
        return _ri_log_joint_total(theta, z, data), _ri_grad_params(theta, z, data)
    # logit: one pass over the linear predictor for both; with t = exp(-|eta|),
    # softplus(eta) = max(eta, 0) + log1p(t) and sigmoid(eta) = (1 or t) / (1 + t)
    beta, sigma = _beta_sigma(theta)
    u, uf = _flat_u(z, G)
    lin = data["X"] @ beta + data["offset"]
    y, Xs = data["y"], data["X"]
    curv = np.empty(uf.shape[0])
    gb = np.empty((uf.shape[0], p))
    for rows, eta in _eta_blocks(lin, uf, data["group"]):
        t = np.abs(eta)
        curv[rows] = 0.5 * (eta.sum(axis=1) + t.sum(axis=1))
        np.negative(t, out=t)
        np.exp(t, out=t)
        curv[rows] += np.log1p(t).sum(axis=1)
        r = t + 1.0
        np.reciprocal(r, out=r)
        np.multiply(t, r, out=t)
        mean = np.where(eta >= 0.0, r, t)
        np.subtract(y, mean, out=mean)
        gb[rows] = mean @ Xs
    linear = data["y"] @ lin + uf @ data["ysum"]
    prior = -0.5 * np.sum(uf**2, axis=-1) / sigma**2 - G * (np.log(sigma) + _HALF_LOG_2PI)
    total = (linear - curv + prior).reshape(u.shape[:-1])
    grads = {"beta": gb.reshape(u.shape[:-1] + (p,)),
             "sigma": np.sum(u**2, axis=-1) / sigma**3 - G / sigma}
    return total, grads


def random_intercept_glmm(X, y, group, family="logit", offset=None, init=None) -> Model:
    """The random-intercept GLMM as an :class:`mcem.Model`.

    Parameters
    ----------
    X : array (n_obs, p) or (n_obs,)
        Fixed-effect design matrix (include a column of ones for an intercept).
    y : array (n_obs,)
        Responses: 0/1 for ``family="logit"``, non-negative integer counts for ``"poisson"``.
    group : array of int (n_obs,)
        Group labels 0..G-1; every group must have at least one observation.
    family : {"logit", "poisson"}
    offset : array (n_obs,), optional
        Known term added to the linear predictor (for Poisson rates, log exposure).
    init : dict, optional
        Initial ``beta`` and/or ``sigma``; default: the GLM fit without random effects for
        ``beta`` and ``sigma = 1``.

    Returns
    -------
    Model
        Parameters ``beta`` (real, ``(p,)``) and ``sigma`` (positive); latent ``u``
        (``Continuous(shape=G, unit=True)``). ``log_joint`` returns per-group terms; the model
        also has ``log_joint_total``, ``grad_params`` and ``n_obs``. ``model.data`` holds the
        observations sorted by group (``order`` maps back to the input order).
    """
    d = _check_inputs(X, y, group, family, offset)
    p, G, n = d["X"].shape[1], d["n_groups"], d["X"].shape[0]
    fam = d["family"]
    if init is not None and not isinstance(init, dict):
        raise TypeError(f"init must be a dict with 'beta' and/or 'sigma', got {type(init).__name__}")
    start = {"sigma": 1.0, **(init or {})}
    if "beta" not in start:
        start["beta"] = _glm_start(d)

    model = Model(
        _ri_log_joint,
        params={"beta": C.real(shape=p), "sigma": C.positive},
        latents={"u": Continuous(C.real, shape=G, unit=True)},
        data=d,
        init=start,
        grad_params=_ri_grad_params,
        log_joint_total=_ri_log_joint_total,
        value_and_grad=_ri_value_and_grad,
        n_obs=n,
        name=f"random_intercept_glmm({fam}, p={p}, G={G})",
    )
    # refers to model.data, so that pickling the model carries the data once
    model.subset_fn = functools.partial(_glmm_subset, model.data, fam, start)
    return model


def _glmm_subset(d, family, start, units):
    """The GLMM of the groups ``units``: their observations (sorted by group), relabelled."""
    rows = np.isin(d["group"], units)
    labels = np.searchsorted(units, d["group"][rows])
    return random_intercept_glmm(d["X"][rows], d["y"][rows], labels, family=family,
                                 offset=d["offset"][rows], init=start)


# --------------------------------------------------------------------------- quadrature
def _modes(lin, d, sigma, max_iter=100, tol=1e-10):
    """Per-group mode and curvature of u -> log p(y_g | u) + log N(u; 0, sigma^2).

    Safeguarded Newton, all groups at once (the loop is over Newton iterations): each step is
    capped at 5 and halved where it would lower the (concave) integrand.
    """
    fam, y, lgy, g, st = d["family"], d["y"], d["lgy"], d["group"], d["starts"]
    s2 = sigma**2

    def h_and_derivs(u):
        eta = lin + u[g]
        mu = _mean(eta, fam)
        w = mu * (1 - mu) if fam == "logit" else mu
        h = _group_sum(_obs_loglik(eta, y, fam, lgy), st) - 0.5 * u**2 / s2
        return h, _group_sum(y - mu, st) - u / s2, _group_sum(w, st) + 1.0 / s2

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
    ll = _group_sum(_obs_loglik(eta, d["y"], d["family"], d["lgy"]), d["starts"])
    a = np.log(w)[:, None] + x[:, None] ** 2 + ll + _normal_logpdf(U, sigma) + np.log(scale)
    return U, eta, a


def _loglik_and_grad(beta, sigma, d, n_nodes, adaptive, grad=True):
    U, eta, a = _quad_parts(beta, sigma, d, n_nodes, adaptive)
    per = logsumexp(a, axis=0)  # (G,)
    value = float(per.sum())
    if not grad:
        return value, None
    pi = np.exp(a - per)  # (K, G) normalised node weights: a posterior over the nodes
    resid = d["y"] - _mean(eta, d["family"])  # (K, n)
    g_obs = np.sum(pi[:, d["group"]] * resid, axis=0)  # (n,)
    g_beta = g_obs @ d["X"]
    if adaptive:
        # nodes held fixed: the exact integral does not depend on where the nodes sit
        g_logsig = float(np.sum(pi * (U**2 / sigma**2 - 1.0)))
    else:
        # nodes move with sigma (U = sigma * sqrt(2) x): chain rule through the linear predictor
        g_logsig = float(np.sum(pi * _group_sum(resid, d["starts"]) * U))
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


def quadrature_loglik(theta, X, y, group, family="logit", offset=None, n_nodes=20, adaptive=True) -> float:
    """The marginal log-likelihood log p(y; beta, sigma) by Gauss-Hermite quadrature.

    Parameters
    ----------
    theta : dict
        ``beta`` (p,) and ``sigma`` (> 0).
    X, y, group, family, offset
        As in :func:`random_intercept_glmm`.
    n_nodes : int
        Quadrature nodes per group.
    adaptive : bool
        Centre and scale the nodes at each group's posterior mode and curvature (found by
        vectorised Newton steps); otherwise nodes on the N(0, sigma^2) prior.
    """
    d = _check_inputs(X, y, group, family, offset)
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
    X, y, group, family="logit", offset=None, n_nodes=20, adaptive=True, init=None, gtol=1e-8
) -> QuadratureFit:
    """Maximum likelihood by Gauss-Hermite quadrature: the oracle for one-dimensional random effects.

    BFGS on ``(beta, log sigma)`` with the gradient of the quadrature formula; standard errors
    from the Hessian of the log-likelihood, by central differences of that gradient.

    Parameters
    ----------
    X, y, group, family, offset
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
    d = _check_inputs(X, y, group, family, offset)
    n_nodes = _check_nodes(n_nodes)
    adaptive = bool(adaptive)
    p = d["X"].shape[1]
    start = {"beta": _glm_start(d), "sigma": 1.0}
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


# --------------------------------------------------------------------------- Monte Carlo error
def _check_glmm_model(model):
    data = getattr(model, "data", None)
    if not isinstance(data, dict) or data.get("family") not in FAMILIES or "starts" not in data:
        raise TypeError(
            f"model must be made by random_intercept_glmm, got {getattr(model, 'name', type(model).__name__)!r}"
        )
    return data


def mc_covariance(model, theta, draws):
    """Monte Carlo covariance of the M-step maximiser of Q_hat, in ``(beta, log sigma)``.

    The analytic counterpart of :func:`mcem.mstep.update_covariance` for this model:
    ``H^-1 V H^-1`` with ``V`` the batch-means covariance of the mean per-draw score (from the
    model's ``grad_params``) and ``H`` the analytic Hessian of Q_hat,
    ``-X' diag(mean_j w_ij) X`` for ``beta`` (w the GLM weights) and ``-2 mean_j sum_g u_g^2 /
    sigma^2`` for ``log sigma`` (the cross terms vanish). Two passes over the draws instead of
    finite differences. The order matches ``model.to_unconstrained`` (``beta`` then ``sigma``).
    """
    from ..mstep import _mean_covariance

    d = _check_glmm_model(model)
    theta = model.check_theta(theta, "theta")
    u = np.asarray(draws["u"], dtype=float)
    if u.ndim != 3 or u.shape[-1] != d["n_groups"]:
        raise ValueError(
            f"draws['u'] must have shape (chain, draw, {d['n_groups']}), got shape {u.shape}"
        )
    beta, sigma = _beta_sigma(theta)
    g = model.grad_params_fn(theta, {"u": u}, d)
    scores = np.concatenate([g["beta"], (sigma * g["sigma"])[..., None]], axis=-1)  # (c, m, p+1)
    V = _mean_covariance(scores)
    lin = d["X"] @ beta + d["offset"]
    uf = u.reshape(-1, d["n_groups"])
    wsum = np.zeros(lin.shape[0])
    for _, eta in _eta_blocks(lin, uf, d["group"]):
        mu = _mean(eta, d["family"])
        wsum += (mu * (1.0 - mu) if d["family"] == "logit" else mu).sum(axis=0)
    p = beta.size
    H = np.zeros((p + 1, p + 1))
    H[:p, :p] = -(d["X"] * (wsum / uf.shape[0])[:, None]).T @ d["X"]
    H[p, p] = -2.0 * np.mean(np.sum(uf**2, axis=1)) / sigma**2
    Hinv = np.linalg.inv(H)
    return Hinv @ V @ Hinv


# --------------------------------------------------------------------------- comparison
class Comparison(NamedTuple):
    """A Monte Carlo fit next to the quadrature oracle: one row per scalar parameter.

    Each row: ``name``, ``estimate``, ``se`` (Louis) with its Monte Carlo error ``se_mcse``,
    ``mcse`` (Monte Carlo error of the estimate, from :func:`mc_covariance`), ``mle`` and ``se_mle`` (quadrature), ``diff``
    (estimate - mle) and ``diff_mcse`` (diff / mcse). ``str()`` gives the table.
    """

    rows: list
    seconds: float
    seconds_oracle: float
    total_draws: int

    def row(self, name) -> dict:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(f"no row {name!r}; rows are {[r['name'] for r in self.rows]}")

    def __str__(self):
        head = f"{'parameter':<10}{'MCEM':>10}{'SE':>9}{'MC SE':>10}{'MLE (AGQ)':>11}{'SE':>9}{'diff/MCSE':>11}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r['name']:<10}{r['estimate']:>10.4f}{r['se']:>9.4f}{r['mcse']:>10.5f}"
                f"{r['mle']:>11.4f}{r['se_mle']:>9.4f}{r['diff_mcse']:>11.2f}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"MCEM {self.seconds:.1f} s, {self.total_draws} draws; quadrature {self.seconds_oracle:.2f} s"
        )
        return "\n".join(lines)


def compare_to_quadrature(result, oracle, model=None, mc_cov=None) -> Comparison:
    """Rows of estimates, standard errors and Monte Carlo errors of ``result`` (an MCEM/SAEM fit
    of :func:`random_intercept_glmm`) next to the quadrature MLE ``oracle`` (:func:`fit_quadrature`).

    ``sigma2`` (the variance, delta method) is added after ``sigma``. ``mc_cov`` defaults to
    :func:`mc_covariance` on the result's final draws.
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
    inf = result.inference(model)
    se, se_mc = inf.se, inf.se_mcse
    beta, sigma = _beta_sigma(theta)
    p = beta.size
    mcse_u = np.sqrt(np.abs(np.diag(mc_cov)))
    rows = []

    def add(name, est, s, s_mc, mc, mle, se_mle):
        diff = est - mle
        rows.append(dict(name=name, estimate=est, se=s, se_mcse=s_mc, mcse=mc, mle=mle, se_mle=se_mle,
                         diff=diff, diff_mcse=diff / mc if mc > 0 else np.inf))

    for j in range(p):
        label = "beta" if p == 1 else f"beta[{j}]"
        add(label, float(beta[j]), float(np.ravel(se["beta"])[j]), float(np.ravel(se_mc["beta"])[j]),
            float(mcse_u[j]), float(oracle.params["beta"][j]), float(oracle.se["beta"][j]))
    s_se, s_mc = float(se["sigma"]), float(se_mc["sigma"])
    add("sigma", sigma, s_se, s_mc, sigma * float(mcse_u[p]), float(oracle.params["sigma"]),
        float(oracle.se["sigma"]))
    add("sigma2", sigma**2, 2 * sigma * s_se, 2 * sigma * s_mc, 2 * sigma**2 * float(mcse_u[p]),
        oracle.sigma2, oracle.se_sigma2)
    return Comparison(rows, float(result.get("seconds", np.nan)), float(oracle.seconds),
                      int(result.get("total_draws", 0)))


def plot_with_oracle(result, oracle, **kwargs):
    """``result.plot()`` with the quadrature MLE drawn as dotted black lines on the ``beta`` and
    ``sigma`` path panels. Returns the figure."""
    fig = result.plot(**kwargs)
    targets = {"beta": np.ravel(oracle.params["beta"]), "sigma": [float(oracle.params["sigma"])]}
    for ax in fig.axes:
        vals = targets.get(ax.get_title())
        if vals is None:
            continue
        for j, v in enumerate(vals):
            ax.axhline(v, color="k", ls=":", lw=1.2, label="quadrature MLE" if j == 0 else "_nolegend_")
        ax.legend(fontsize="x-small")
    return fig


# --------------------------------------------------------------------------- simulation
def simulate_random_intercept(n_groups, n_per_group, beta, sigma, family="logit", rng=None,
                              x_scale=1.0, offset=None):
    """Simulated data from the model: ``X`` (intercept + standard-normal covariates), ``y``, ``group``.

    ``beta[0]`` is the intercept; the other ``len(beta) - 1`` columns are N(0, ``x_scale``^2).
    ``offset``: None or an array of length ``n_groups * n_per_group`` added to the linear
    predictor. Returns a dict with ``X``, ``y``, ``group``, ``offset`` and the true ``u``.
    """
    rng = np.random.default_rng(rng)
    check_choice(family, "family", set(FAMILIES))
    G = check_positive_int(n_groups, "n_groups")
    m = check_positive_int(n_per_group, "n_per_group")
    beta = np.asarray(beta, dtype=float).reshape(-1)
    if not isinstance(sigma, numbers.Real) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    n = G * m
    X = np.column_stack([np.ones(n), x_scale * rng.standard_normal((n, beta.size - 1))])
    group = np.repeat(np.arange(G), m)
    u = sigma * rng.standard_normal(G)
    off = np.zeros(n) if offset is None else np.asarray(offset, dtype=float).reshape(n)
    eta = X @ beta + u[group] + off
    if family == "logit":
        y = (rng.random(n) < expit(eta)).astype(float)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
    return {"X": X, "y": y, "group": group, "offset": off, "u": u}

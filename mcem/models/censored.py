"""Censored normal (Tobit) regression, and the motorette data of Schmee & Hahn (1979).

Model: for units ``i = 1..n`` with covariate rows ``x_i`` (p columns) and responses ``y_i``::

    y_i = x_i^T beta + sigma eps_i,    eps_i ~ N(0, 1),

where ``y_i`` is observed for the uncensored units and only known to exceed the censoring point
``c_i`` for the right-censored ones. The motorette data (:func:`motorette`) use
``y = log10(hours)`` and ``x = (1, 1000 / (temp + 273.2))``, as in Schmee & Hahn (1979) and
Tanner (1996, sec. 4.5).

Latent: the *excess* ``e_j = y_j - c_j > 0`` of each censored unit over its censoring point,
``Continuous(positive, shape=n_censored, unit=True)`` (the positivity transform is the sampler's:
the random-walk kernels move ``log e``). The complete-data log joint is the normal log density
of all n responses, with ``y_j = c_j + e_j`` for the censored ones; a translation, so no Jacobian.

Exact EM (truncated-normal moments): with ``mu_j = x_j^T beta``, ``a_j = (c_j - mu_j) / sigma``
and the inverse Mills ratio ``h_j = phi(a_j) / (1 - Phi(a_j))``,

    E[y_j | y_j > c_j]   = mu_j + sigma h_j
    E[y_j^2 | y_j > c_j] = mu_j^2 + 2 mu_j sigma h_j + sigma^2 (1 + a_j h_j).

The sufficient statistics are ``X^T y`` and ``y^T y`` (completed), and the M step is least
squares: ``beta = (X^T X)^{-1} X^T y``, ``sigma^2 = (y^T y - beta^T X^T y) / n`` (the ML
divisor). The exact posterior sampler draws the censored responses from their truncated normals
(inverse CDF of the upper tail in log space, ``-ndtri_exp(log u + log_ndtr(-a))``, the law
of ``scipy.stats.truncnorm`` at a fraction of its per-call cost). :func:`tobit_mle` maximises the censored
likelihood ``sum_obs log phi((y - mu)/sigma)/sigma + sum_cens log(1 - Phi((c - mu)/sigma))``
directly with scipy: the oracle.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np
from scipy import optimize, stats
from scipy.special import log_ndtr, ndtri_exp

from .. import constraints as C
from .._validation import as_generator
from ..datasets import load_motorette
from ..core import Continuous, Model
from ._common import bind, ready_model

__all__ = ["tobit", "tobit_mle", "tobit_loglik", "motorette", "motorette_data", "SCHMEE_HAHN_1979"]

_LOG_2PI = float(np.log(2 * np.pi))

#: Estimates reported by Schmee & Hahn (1979) for the motorette data (their iterative
#: least-squares method), the literature benchmark; the MLE is :func:`tobit_mle`.
SCHMEE_HAHN_1979 = {"beta": (-6.019, 4.311), "sigma": 0.2592}


def _check_inputs(y, X, censored):
    y_arr = np.asarray(y)
    X_arr = np.asarray(X)
    c_arr = np.asarray(censored)
    if y_arr.dtype == object or not np.issubdtype(y_arr.dtype, np.number):
        raise TypeError(f"y must be a 1-D numeric array, got dtype {y_arr.dtype}")
    y_arr = np.array(y_arr, dtype=float)
    if y_arr.ndim != 1 or y_arr.size == 0:
        raise ValueError(f"y must be a non-empty 1-D array, got shape {y_arr.shape}")
    if X_arr.dtype == object or not (np.issubdtype(X_arr.dtype, np.number) or X_arr.dtype == bool):
        raise TypeError(f"X must be a 2-D numeric array (n, p), got dtype {X_arr.dtype}")
    X_arr = np.array(X_arr, dtype=float)
    if X_arr.ndim == 1:
        X_arr = X_arr[:, None]
    if X_arr.ndim != 2 or X_arr.shape[0] != y_arr.size:
        raise ValueError(f"X must have shape (n, p) with n = len(y) = {y_arr.size}, got shape {X_arr.shape}")
    if c_arr.shape != y_arr.shape:
        raise ValueError(f"censored must have the shape of y {y_arr.shape}, got shape {c_arr.shape}")
    if c_arr.dtype != bool:
        if not np.issubdtype(c_arr.dtype, np.number) or not np.all(np.isin(c_arr, (0, 1))):
            raise ValueError(f"censored must be boolean or 0/1 (1 = right-censored), got {np.unique(c_arr)!r}")
        c_arr = c_arr.astype(bool)
    for name, a in (("y", y_arr), ("X", X_arr)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite, got {int((~np.isfinite(a)).sum())} NaN/inf value(s)")
    n, p = X_arr.shape
    if np.linalg.matrix_rank(X_arr) < p:
        raise ValueError(f"X must have full column rank {p}, got rank {np.linalg.matrix_rank(X_arr)}")
    if np.all(c_arr):
        raise ValueError("censored: every unit is censored; need at least one observed response")
    if (~c_arr).sum() < 2:
        raise ValueError("censored: need at least two observed (uncensored) responses for sigma")
    return y_arr, X_arr, c_arr


def tobit_loglik(beta, sigma, y, X, censored) -> float:
    """The censored-data log-likelihood (natural logs, density of y on its own scale)."""
    y, X, cens = _check_inputs(y, X, censored)
    return _censored_loglik(np.asarray(beta, dtype=float), float(sigma), y, X, cens)


def _censored_loglik(beta, sigma, y, X, cens):
    r = (y - X @ beta) / sigma
    obs = -0.5 * (_LOG_2PI + r[~cens] ** 2) - np.log(sigma)
    return float(obs.sum() + log_ndtr(-r[cens]).sum())


def tobit_mle(y, X, censored) -> dict:
    """Maximise the censored normal likelihood directly with scipy (the oracle for EM/MCEM).

    Parameters
    ----------
    y : (n,) responses; for censored units the censoring points.
    X : (n, p) covariates (include a column of ones for an intercept).
    censored : (n,) bool or 0/1, True where ``y`` is a right-censoring point.

    Returns
    -------
    dict
        ``params`` ({"beta": (p,), "sigma"}), ``se`` (inverse observed information by finite
        differences of the analytic gradient, mapped from log sigma), ``loglik``, ``success``,
        ``message``.
    """
    y, X, cens = _check_inputs(y, X, censored)
    p = X.shape[1]

    def negll(v):
        return -_censored_loglik(v[:p], np.exp(v[p]), y, X, cens)

    def grad(v):
        beta, s = v[:p], np.exp(v[p])
        r = (y - X @ beta) / s
        g_r = np.where(cens, np.exp(stats.norm.logpdf(r) - log_ndtr(-r)), r)  # d loglik / d r
        gb = X.T @ g_r / s
        gl = np.sum(g_r * r) - (~cens).sum()  # d / d log sigma
        return -np.concatenate([gb, [gl]])

    obs = ~cens
    b0 = np.linalg.lstsq(X[obs], y[obs], rcond=None)[0]
    s0 = max(np.std(y[obs] - X[obs] @ b0), 1e-3)
    v0 = np.concatenate([b0, [np.log(s0)]])
    res = optimize.minimize(negll, v0, jac=grad, method="BFGS", options={"gtol": 1e-9, "maxiter": 1000})
    v = res.x
    # observed information in (beta, log sigma) by central differences of the gradient
    H = np.empty((p + 1, p + 1))
    for i in range(p + 1):
        h = 1e-5 * max(1.0, abs(v[i]))
        e = np.zeros(p + 1)
        e[i] = h
        H[:, i] = (grad(v + e) - grad(v - e)) / (2 * h)
    cov_v = np.linalg.inv(0.5 * (H + H.T))
    s = float(np.exp(v[p]))
    J = np.diag(np.concatenate([np.ones(p), [s]]))
    cov = J @ cov_v @ J
    se = np.sqrt(np.diag(cov))
    return {
        "params": {"beta": v[:p].copy(), "sigma": s},
        "se": {"beta": se[:p], "sigma": float(se[p])},
        "cov": cov,
        "loglik": -float(res.fun),
        "success": bool(res.success),
        "message": str(res.message),
    }


def tobit(y, X, censored, init=None, name="tobit") -> Model:
    """Right-censored normal regression as an :class:`mcem.Model` with exact EM extras.

    Parameters
    ----------
    y : (n,) array
        Responses; for censored units, the censoring point ``c_i`` (the response exceeds it).
    X : (n, p) array
        Covariates (include a column of ones for an intercept).
    censored : (n,) bool or 0/1 array
        True (1) where unit i is right-censored.
    init : dict, optional
        Starting ``{"beta": (p,), "sigma": float}``; default least squares on the uncensored
        units.

    Returns
    -------
    Model
        Parameters ``beta`` (real, shape (p,)) and ``sigma`` (positive); latent ``excess``
        (``Continuous(positive, shape=n_censored, unit=True)``), the amount by which each
        censored response exceeds its censoring point, in the order of the censored units in
        ``y``. ``log_joint`` returns the total (one value per batch element) and
        ``conditionals["excess"]`` the per-unit terms; ``exact_estep``, ``mstep``,
        ``sufficient_stats``, ``loglik``, ``posterior_sampler`` and ``grad_params`` are provided.
    """
    y, X, cens = _check_inputs(y, X, censored)
    n, p = X.shape
    obs = ~cens
    parts = _Parts(y[obs], X[obs], y[cens], X[cens], np.linalg.inv(X.T @ X), X[obs].T @ y[obs],
                   float(y[obs] @ y[obs]))
    if init is None:
        b0 = np.linalg.lstsq(parts.X_obs, parts.y_obs, rcond=None)[0]
        s0 = max(float(np.std(parts.y_obs - parts.X_obs @ b0)), 1e-3)
        init = {"beta": b0, "sigma": s0}
    # start the chains at a plausible excess (one residual standard deviation)
    s_init = np.asarray(init.get("sigma", 1.0), dtype=float) if isinstance(init, dict) else np.array(1.0)
    e0 = np.full(parts.c.size, float(s_init) if s_init.size == 1 and s_init > 0 else 1.0)
    return ready_model(
        *bind(parts, _log_joint, _exact_estep, _mstep, _sufficient_stats, _posterior_sampler, _grad_params),
        _loglik,
        params={"beta": C.real(shape=p), "sigma": C.positive},
        latents={"excess": Continuous(C.positive, shape=parts.c.size, unit=True, init=e0)},
        data={"y": y, "X": X, "censored": cens}, init=init, n_obs=n, name=name,
        conditionals={"excess": partial(_conditional, parts)},
    )


# --------------------------------------------------------------------------- the model's functions
class _Parts(NamedTuple):
    """Derived once from the data (observed and censored units apart), taken first by the
    model's functions; the censored part may be empty."""

    y_obs: np.ndarray
    X_obs: np.ndarray
    c: np.ndarray  # the censoring points
    X_c: np.ndarray
    XtX_inv: np.ndarray
    Xty_obs: np.ndarray
    yty_obs: float


def _obs_terms(parts, beta, sigma):
    """Sum of the observed units' log densities: shape of the batch of theta (scalar)."""
    r = (parts.y_obs - parts.X_obs @ beta) / sigma
    return -0.5 * float(np.sum(r * r)) - parts.y_obs.size * (0.5 * _LOG_2PI + np.log(sigma))


def _conditional(parts, theta, z, data):
    beta, sigma = theta["beta"], float(theta["sigma"])
    r = (parts.c + z["excess"] - parts.X_c @ beta) / sigma
    return -0.5 * (_LOG_2PI + r * r) - np.log(sigma)


def _log_joint(parts, theta, z, data):
    beta, sigma = theta["beta"], float(theta["sigma"])
    return _conditional(parts, theta, z, data).sum(axis=-1) + _obs_terms(parts, beta, sigma)


def _moments(parts, theta):
    beta, sigma = np.asarray(theta["beta"], dtype=float), float(theta["sigma"])
    mu = parts.X_c @ beta
    a = (parts.c - mu) / sigma
    h = np.exp(stats.norm.logpdf(a) - log_ndtr(-a))  # inverse Mills ratio, stable in the tail
    m1 = mu + sigma * h
    m2 = mu * mu + 2 * mu * sigma * h + sigma * sigma * (1 + a * h)
    return m1, m2


def _loglik(theta, data):
    beta, sigma = np.asarray(theta["beta"], float), float(theta["sigma"])
    return _censored_loglik(beta, sigma, data["y"], data["X"], data["censored"])


def _exact_estep(parts, theta, data):
    m1, m2 = _moments(parts, theta)
    stats_ = {"Xty": parts.Xty_obs + parts.X_c.T @ m1, "yty": parts.yty_obs + float(m2.sum())}
    return stats_, _loglik(theta, data)


def _sufficient_stats(parts, zz, data):
    e = np.asarray(zz["excess"], dtype=float).reshape(-1, parts.c.size)
    yc = parts.c + e  # (draws, n_c)
    return {
        "Xty": parts.Xty_obs + parts.X_c.T @ yc.mean(axis=0),
        "yty": parts.yty_obs + float(np.mean(np.sum(yc * yc, axis=1))),
    }


def _mstep(parts, stats_, data):
    Xty = np.asarray(stats_["Xty"], dtype=float)
    beta = parts.XtX_inv @ Xty
    s2 = (float(stats_["yty"]) - float(beta @ Xty)) / data["y"].size
    return {"beta": beta, "sigma": np.array(np.sqrt(max(s2, 1e-300)))}


def _posterior_sampler(parts, theta, data, rng, batch=()):
    rng = as_generator(rng)
    beta, sigma = np.asarray(theta["beta"], dtype=float), float(theta["sigma"])
    mu = parts.X_c @ beta
    a = (parts.c - mu) / sigma
    shape = tuple(batch) + (parts.c.size,)
    # inverse CDF of the upper tail in log space: t = -Phi^-1(u Phi(-a)) > a, exact and
    # stable far into the tail (scipy.stats.truncnorm gives the same law, at many times the
    # per-call cost, and the exact kernel calls this once per MCMC step)
    u = 1.0 - rng.random(shape)  # in (0, 1]
    t_std = -ndtri_exp(np.log(u) + log_ndtr(-a))
    draw = mu + sigma * np.maximum(t_std, a)
    return {"excess": np.maximum(draw - parts.c, np.finfo(float).tiny)}


def _grad_params(parts, theta, z, data):
    beta, sigma = np.asarray(theta["beta"], dtype=float), theta["sigma"]
    e = np.asarray(z["excess"], dtype=float)
    rc = parts.c + e - parts.X_c @ beta  # (..., n_c)
    ro = parts.y_obs - parts.X_obs @ beta
    gb = (rc @ parts.X_c + ro @ parts.X_obs) / sigma**2
    ss = np.sum(rc * rc, axis=-1) + float(ro @ ro)
    gs = ss / sigma**3 - data["y"].size / sigma
    return {"beta": gb, "sigma": gs}


def motorette_data(data=None) -> dict:
    """The motorette design: ``y = log10(hours)``, ``X = (1, 1000 / (temp + 273.2))``,
    ``censored`` (True where ``cens == 0``), from :func:`mcem.datasets.load_motorette` by default."""
    if data is None:
        data = load_motorette()
    for k in ("temp", "time", "cens"):
        if k not in data:
            raise ValueError(f"data must have columns 'temp', 'time' and 'cens', missing {k!r}")
    temp = np.asarray(data["temp"], dtype=float)
    time = np.asarray(data["time"], dtype=float)
    if np.any(time <= 0):
        raise ValueError("data['time'] must be positive failure or censoring times")
    cens = np.asarray(data["cens"])
    if not np.all(np.isin(cens, (0, 1))):
        raise ValueError(f"data['cens'] must be 0/1 (1 = failure observed), got {np.unique(cens)!r}")
    X = np.column_stack([np.ones_like(temp), 1000.0 / (temp + 273.2)])
    return {"y": np.log10(time), "X": X, "censored": cens == 0}


def motorette(data=None, init=None) -> Model:
    """The Schmee & Hahn (1979) motorette model: :func:`tobit` on :func:`motorette_data`.

    ``beta = (b0, b1)`` in ``log10(hours) = b0 + b1 * 1000 / (temp + 273.2) + sigma * eps``.
    """
    d = motorette_data(data)
    return tobit(d["y"], d["X"], d["censored"], init=init, name="motorette_tobit")

"""The exact likelihood of the theophylline model by adaptive two-dimensional Gauss-Hermite quadrature.

The marginal likelihood of :func:`mcem.models.theophylline.theophylline_model` is a product over
subjects of two-dimensional integrals over the random effects ``b_i = (b_i1, b_i2)``::

    L_i = int prod_j N(y_ij; f(D_i, t_ij; lKe, lKa + b_1, lCl + b_2), sigma^2) N(b; 0, diag(omega^2)) db

:func:`theophylline_loglik` finds every subject's posterior mode ``m_i`` and the Hessian ``H_i``
of the log integrand there (Newton steps with the Gauss-Newton Hessian and step halving, all
subjects at once), and places a K x K product grid of Gauss-Hermite nodes at
``m_i + sqrt(2) L_i x`` with ``L_i L_i' = (-H_i)^-1`` (adaptive quadrature: Liu & Pierce 1994;
Pinheiro & Bates 1995). :func:`fit_theophylline_quadrature` maximises it by BFGS on
``(lKe, lKa, lCl, log omega, log sigma)`` with the gradient of the quadrature formula, and takes
standard errors from the Hessian (central differences of that gradient). Every step is
vectorised over subjects and nodes; the loops are over Newton or BFGS iterations only.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

from .._validation import check_positive_int
from .theophylline import HALF_LOG_2PI, NLME_START, _fol_parts, theophylline_data

__all__ = ["theophylline_loglik", "fit_theophylline_quadrature", "PARAMETER_NAMES"]

#: The scalar parameters in the order of the quadrature fit's vector and covariance.
PARAMETER_NAMES = ("lKe", "lKa", "lCl", "omega_ka", "omega_cl", "sigma")


def _vector(theta) -> np.ndarray:
    """``theta`` (a dict of the model's parameters) as ``(lKe, lKa, lCl, omega_ka, omega_cl, sigma)``."""
    if not isinstance(theta, dict) or not {"lKe", "lKa", "lCl", "omega", "sigma"} <= set(theta):
        raise TypeError(f"theta must be a dict with lKe, lKa, lCl, omega and sigma, got {theta!r}")
    omega = np.asarray(theta["omega"], dtype=float).reshape(-1)
    if omega.shape != (2,):
        raise ValueError(f"theta['omega'] must hold (omega_ka, omega_cl), got shape {omega.shape}")
    v = np.array([float(theta["lKe"]), float(theta["lKa"]), float(theta["lCl"]), *omega, float(theta["sigma"])])
    if not np.all(np.isfinite(v)) or np.any(v[3:] <= 0):
        raise ValueError(f"theta must be finite with omega > 0 and sigma > 0, got {dict(zip(PARAMETER_NAMES, v))}")
    return v


def _as_theta(v) -> dict:
    return {"lKe": float(v[0]), "lKa": float(v[1]), "lCl": float(v[2]), "omega": np.array(v[3:5], dtype=float),
            "sigma": float(v[5])}


def _pieces(v, B, d, second=False):
    """At random effects ``B`` (..., G, 2): the concentrations and residuals per observation."""
    s = d["subject"]
    lka = v[1] + B[..., s, 0]
    lcl = v[2] + B[..., s, 1]
    parts = _fol_parts(d["dose"], d["time"], v[0], lka, lcl, second=second)
    return parts, d["conc"] - parts[0]


def _gsum(a, d):
    return np.add.reduceat(a, d["starts"], axis=-1)


def _log_integrand(v, B, d, r=None):
    """log p(y_i | b_i) + log N(b_i; 0, diag(omega^2)) per subject: shape ``B.shape[:-1]``."""
    if r is None:
        r = _pieces(v, B, d)[1]
    om, sig = v[3:5], v[5]
    obs = -0.5 * _gsum(r * r, d) / sig**2 - d["counts"] * (np.log(sig) + HALF_LOG_2PI)
    return obs + np.sum(-0.5 * (B / om) ** 2 - np.log(om) - HALF_LOG_2PI, axis=-1)


def _b_derivatives(v, B, d, exact):
    """h_i(b), its gradient (G, 2) and Hessian (G, 2, 2) in b_i: Gauss-Newton, or ``exact``."""
    (f, _, dka, *rest), r = _pieces(v, B, d, second=exact)
    sig2, om2 = v[5] ** 2, v[3:5] ** 2
    j1, j2 = f * dka, -f  # d f / d b_1, d f / d b_2
    h = _log_integrand(v, B, d, r)
    grad = np.stack([_gsum(r * j1, d), _gsum(r * j2, d)], axis=-1) / sig2 - B / om2
    h11, h12, h22 = (_gsum(a * c, d) for a, c in ((j1, j1), (j1, j2), (j2, j2)))
    if exact:  # + sum_j r_j d^2 f / db db'
        h11 = h11 - _gsum(r * f * (dka**2 + rest[0]), d)
        h12 = h12 + _gsum(r * f * dka, d)
        h22 = h22 - _gsum(r * f, d)
    H = -np.stack([np.stack([h11, h12], -1), np.stack([h12, h22], -1)], -2) / sig2
    H[..., 0, 0] -= 1.0 / om2[0]
    H[..., 1, 1] -= 1.0 / om2[1]
    return h, grad, H


def _modes(v, d, max_iter=100, tol=1e-10):
    """Each subject's posterior mode of b and the Hessian of the log integrand there.

    Newton steps with the Gauss-Newton Hessian (negative definite, so every step goes uphill),
    capped at 3 and halved per subject where they would lower the integrand. The returned
    Hessian is the exact one where it is negative definite, else the Gauss-Newton one.
    """
    B = np.zeros((d["n_subjects"], 2))
    h, grad, H = _b_derivatives(v, B, d, exact=False)
    for _ in range(max_iter):
        step = np.clip(np.linalg.solve(-H, grad[..., None])[..., 0], -3.0, 3.0)
        t = np.ones(B.shape[0])
        for _ in range(40):  # backtracking, vectorised over subjects
            B_new = B + t[:, None] * step
            h_new, g_new, H_new = _b_derivatives(v, B_new, d, exact=False)
            worse = ~(h_new >= h - 1e-12 * (1.0 + np.abs(h)))
            if not worse.any():
                break
            t = np.where(worse, 0.5 * t, t)
        B, h, grad, H = B_new, h_new, g_new, H_new
        if np.max(np.abs(t[:, None] * step)) < tol:
            break
    Hx = _b_derivatives(v, B, d, exact=True)[2]
    neg_def = (Hx[:, 0, 0] < 0) & (np.linalg.det(Hx) > 0)
    return B, np.where(neg_def[:, None, None], Hx, H)


def _grid(n_nodes):
    x, w = np.polynomial.hermite.hermgauss(n_nodes)
    X = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)  # (K^2, 2)
    logw = (np.log(w)[:, None] + np.log(w)[None, :]).reshape(-1) + np.sum(X**2, axis=-1)
    return X, logw


def _loglik_and_grad(v, d, n_nodes, grad=True):
    """The quadrature log-likelihood at ``v`` (natural scale) and its gradient in
    ``(lKe, lKa, lCl, log omega_ka, log omega_cl, log sigma)`` (nodes held where they sit)."""
    mode, H = _modes(v, d)
    L = np.linalg.cholesky(np.linalg.inv(-H))  # (G, 2, 2)
    X, logw = _grid(n_nodes)
    B = mode + np.sqrt(2.0) * np.einsum("gab,kb->kga", L, X)  # (K^2, G, 2)
    (f, dke, dka), r = _pieces(v, B, d)
    a = logw[:, None] + _log_integrand(v, B, d, r) + np.log(2.0 * np.abs(np.linalg.det(L)))
    per = logsumexp(a, axis=0)  # (G,)
    value = float(per.sum())
    if not grad:
        return value, None
    pi = np.exp(a - per)  # (K^2, G): the normalised weights of the nodes
    sig2 = v[5] ** 2
    w = r * f / sig2
    om2 = v[3:5] ** 2
    scores = [_gsum(w * dke, d), _gsum(w * dka, d), -_gsum(w, d),
              B[..., 0] ** 2 / om2[0] - 1.0, B[..., 1] ** 2 / om2[1] - 1.0,
              _gsum(r * r, d) / sig2 - d["counts"]]
    return value, np.array([np.sum(pi * s) for s in scores])


def theophylline_loglik(theta, data=None, n_nodes=20) -> float:
    """The marginal log-likelihood of the theophylline model by adaptive Gauss-Hermite quadrature
    with ``n_nodes`` x ``n_nodes`` nodes per subject.

    ``theta``: a dict with ``lKe``, ``lKa``, ``lCl``, ``omega`` (``(omega_ka, omega_cl)``) and
    ``sigma``; ``data`` as in :func:`~mcem.models.theophylline.theophylline_model` (default R's
    ``Theoph``). With 20 nodes the value is exact to about 1e-8 at the maximum.
    """
    d = theophylline_data(data)
    return _loglik_and_grad(_vector(theta), d, check_positive_int(n_nodes, "n_nodes"), grad=False)[0]


def _to_natural(u):
    return np.concatenate([u[:3], np.exp(u[3:])])


def fit_theophylline_quadrature(data=None, n_nodes=20, init=None, gtol=1e-7) -> dict:
    """Maximum likelihood for the theophylline model by adaptive Gauss-Hermite quadrature.

    BFGS on ``(lKe, lKa, lCl, log omega_ka, log omega_cl, log sigma)`` with the gradient of the
    quadrature formula, from ``init`` (default: the fm2Theo start with ``omega = (0.5, 0.5)``,
    ``sigma = 1``); the observed information by central differences of that gradient.

    Returns
    -------
    dict
        ``params`` (the model's parameter dict), ``se`` (the same keys; each parameter on its
        own scale, ``omega`` and ``sigma`` by the delta method), ``cov`` (6 x 6 on the natural
        scale, in the order of :data:`PARAMETER_NAMES`), ``loglik``, ``grad`` (the gradient at
        the optimum), ``converged``, ``message``, ``nit``, ``n_nodes`` and ``seconds``.
    """
    t0 = time.perf_counter()
    d = theophylline_data(data)
    n_nodes = check_positive_int(n_nodes, "n_nodes")
    start = {**NLME_START, "omega": np.array([0.5, 0.5]), "sigma": 1.0, **(init or {})}
    v0 = _vector(start)
    u0 = np.concatenate([v0[:3], np.log(v0[3:])])

    def f(u):
        with np.errstate(all="ignore"):
            try:
                val, g = _loglik_and_grad(_to_natural(u), d, n_nodes)
            except np.linalg.LinAlgError:
                return np.inf, np.zeros_like(u)
        if not np.isfinite(val):
            return np.inf, np.zeros_like(u)
        return -val, -g

    res = optimize.minimize(f, u0, jac=True, method="BFGS", options={"gtol": gtol, "maxiter": 2000})
    u = res.x
    H = np.empty((6, 6))
    for i in range(6):  # a loop over parameters
        e = np.zeros(6)
        e[i] = 1e-4 * max(1.0, abs(u[i]))
        H[:, i] = (f(u + e)[1] - f(u - e)[1]) / (2 * e[i])
    H = 0.5 * (H + H.T)  # the observed information in the unconstrained coordinates
    J = np.diag(np.concatenate([np.ones(3), np.exp(u[3:])]))  # d natural / d unconstrained
    cov = J @ np.linalg.inv(H) @ J
    v, sd = _to_natural(u), np.sqrt(np.diag(cov))
    value, grad = f(u)
    return {
        "params": _as_theta(v), "se": _as_theta(sd), "cov": cov, "loglik": -float(value), "grad": -grad,
        "converged": bool(res.success) or bool(np.max(np.abs(grad)) < 1e-4), "message": str(res.message),
        "nit": int(res.nit), "n_nodes": n_nodes, "seconds": time.perf_counter() - t0,
    }

"""The parameter-expanded M step (PX-EM, Liu, Rubin & Wu 1998) of the random-intercept GLMM.

The expanded complete-data model draws ``b_g ~ N(eta, s^2)`` and puts ``alpha b_g`` in the linear
predictor (``eta`` only where ``X`` has an intercept column, which it shifts). The observed-data
model is the same, reduced by ``u_g = alpha (b_g - eta)``, ``sigma = |alpha| s`` and the
intercept plus ``alpha eta``; at ``alpha = 1, eta = 0`` the expanded Q is Q. It is maximised over
``eta`` and ``s`` in closed form (the mean and spread of the draws) and over ``(beta, alpha)`` as a
GLM with the draws as a covariate, by Newton's method (:func:`mcem.mstep.newton_loop`). Where EM
moves the fixed effects and sigma slowly together (the attenuation of the fixed effects by the
random intercepts: an EM rate of about 0.7 for a logit model with 10 observations per group),
the expanded step goes most of the way at once.
"""

from __future__ import annotations

import numpy as np

from ..diagnostics import cov_of_mean
from ..mstep import NEWTON_HESSIAN_DRAWS, Expanded, MStepInfo, newton_loop
from ._glmm_common import beta_sigma, group_sum, obs_loglik
from ._glmm_passes import eta_blocks, flat_u, group_sizes, logistic, residual_blocks

__all__ = ["expanded_mstep", "intercept_column"]


def intercept_column(X):
    """The index of a column of ``X`` constant at a non-zero value (an intercept), or None."""
    cols = np.flatnonzero(np.all(X == X[:1], axis=0) & (X[0] != 0.0))
    return int(cols[0]) if cols.size else None


def _scores(gamma, uf, data):
    """Per-draw scores of the expanded regression's log-likelihood in ``gamma = (beta, alpha)``,
    the linear predictor being ``X beta + offset + alpha u_g``: ``(draws, p + 1)``, one pass."""
    p, X, st = gamma.size - 1, data["X"], data["starts"]
    out = np.empty((uf.shape[0], p + 1))
    for rows, resid in residual_blocks(gamma[:p], gamma[p] * uf, data):
        out[rows, :p] = resid @ X
        out[rows, p] = np.einsum("ij,ij->i", group_sum(resid, st), uf[rows])
    return out


def _neg_hessian(gamma, uf, data):
    """Minus the Hessian of the same, averaged over the (thinned) draws ``uf``."""
    p, X, fam = gamma.size - 1, data["X"], data["family"]
    lin = X @ gamma[:p] + data["offset"]
    reps = group_sizes(data)
    wsum, wu, wuu = np.zeros(lin.shape[0]), np.zeros(lin.shape[0]), 0.0
    for rows, eta in eta_blocks(lin, gamma[p] * uf, reps):
        if fam != "poisson":
            _, w, r = logistic(eta)
            w *= r
            w *= r  # the GLM weight t r^2
            if data["trials"] is not None:
                w *= data["trials"]
        else:
            with np.errstate(over="ignore"):
                w = np.exp(eta, out=eta)
        wsum += w.sum(axis=0)
        w *= np.repeat(uf[rows], reps, axis=1)
        wu += w.sum(axis=0)
        wuu += np.vdot(group_sum(w, data["starts"]), uf[rows])
    H = np.empty((p + 1, p + 1))
    H[:p, :p] = (X * wsum[:, None]).T @ X
    H[:p, p] = H[p, :p] = wu @ X
    H[p, p] = wuu
    return H / max(uf.shape[0], 1)


def _value(gamma, uf, data):
    """The expanded regression's mean log-likelihood (only where Newton's cheap tests fail)."""
    p = gamma.size - 1
    lin = data["X"] @ gamma[:p] + data["offset"]
    total = 0.0
    for _, eta in eta_blocks(lin, gamma[p] * uf, group_sizes(data)):
        total += float(np.sum(obs_loglik(eta, data["y"], data["family"], data["lgy"], data["trials"])))
    return total / max(uf.shape[0], 1)


def _factor(H):
    try:
        return np.linalg.cholesky(H) if np.all(np.isfinite(H)) else None
    except np.linalg.LinAlgError:
        return None


def expanded_mstep(data, theta, z):
    """The parameter-expanded M step at ``theta`` from the draws ``z`` (see the module docstring):
    :class:`mcem.mstep.Expanded` with the draws carried over as ``u`` and the log Jacobian
    ``G log |alpha|``, or None where the step cannot be made."""
    G, p = data["n_groups"], data["X"].shape[1]
    beta, _ = beta_sigma(theta)
    u, uf = flat_u(z, G)
    B = uf.shape[0]
    if B < 1:
        return None
    col = data["intercept"]
    shift = float(np.mean(uf)) if col is not None else 0.0
    spread = float(np.mean((uf - shift) ** 2))
    sub = uf[np.unique(np.linspace(0, B - 1, min(B, NEWTON_HESSIAN_DRAWS)).round().astype(int))]

    def factor(x):
        with np.errstate(all="ignore"):
            return _factor(_neg_hessian(x, sub, data))

    def value(x):
        with np.errstate(all="ignore"):
            v = _value(x, uf, data)
        return v if np.isfinite(v) else np.nan

    seen = {}

    def grad(x):  # the per-draw scores of the last point kept (the optimism needs them)
        s = _scores(x, uf, data)
        seen.clear()
        seen[x.tobytes()] = s
        return s.mean(axis=0)

    gamma, nit, nfev, ok, message = newton_loop(np.append(beta, 1.0), grad, factor, value)
    alpha = float(gamma[p])
    if not (ok or nit > 0) or not np.all(np.isfinite(gamma)) or alpha == 0.0 or spread <= 0.0:
        return None
    scores = seen.get(gamma.tobytes())
    opt = np.nan if scores is None else _optimism(gamma, scores, u, uf, sub, shift, spread, col, data)
    beta_new = gamma[:p].copy()
    if col is not None:
        beta_new[col] += alpha * shift / data["X"][0, col]
    new = {"beta": beta_new, "sigma": abs(alpha) * np.sqrt(spread)}
    return Expanded(new, {"u": alpha * (u - shift)}, G * float(np.log(abs(alpha))),
                    MStepInfo(ok, nit, nfev, "expanded " + message), opt)


def _optimism(gamma, scores, u, uf, sub, shift, spread, col, data):
    """``tr(H^-1 Cov(mean score))`` of the expanded fit at its maximum: the regression's part with
    its Hessian, the normal's mean and log spread in closed form (information ``G / s^2`` and
    ``2 G``; no cross terms: Q separates), each score's covariance from batch means over chains."""
    G = data["n_groups"]
    batch = u.shape[:-1] if u.ndim == 3 else (1, uf.shape[0])
    centred = uf - shift
    parts = [scores, (np.sum(centred**2, axis=1) / spread - G)[:, None]]
    info = [_neg_hessian(gamma, sub, data), np.array([[2.0 * G]])]
    if col is not None:
        parts.append((np.sum(centred, axis=1) / spread)[:, None])
        info.append(np.array([[G / spread]]))
    total = 0.0
    for s, H in zip(parts, info):
        V = cov_of_mean(s.reshape(batch + (s.shape[-1],)))
        total += float(np.trace(np.linalg.solve(H, V)))
    return total if np.isfinite(total) else np.nan

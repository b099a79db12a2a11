"""A multivariate normal sample with values missing at random: exact EM and its Monte Carlo twin.

Model (N rows of dimension d; NaN marks a missing value)::

    x_n ~ N(mu, Sigma)  independently;  the missingness does not depend on the missing values
    (missing at random), so it can be ignored for likelihood inference on (mu, Sigma).

    mu       real, shape (d,)
    Sigma    positive_definite(d)
    latent   x_mis: Continuous(real, shape=(R, d), unit=True), R = rows with at least one NaN

Latent layout. Unit r is the r-th row that has a missing value (in the order of X, see
``model.data["rows"]``); ``x_mis[r, j]`` is the value of the missing cell (row, j), on the data's
scale, so posterior draws are imputations. The entries at
the row's *observed* positions are padding: each is an independent standard normal, unrelated to
the data and the parameters. Its density is a factor that integrates to one, so the marginal
likelihood and the theta-dependence of Q are unchanged, the posterior stays proper and every row is
one fixed-size unit (a per-unit random-walk Metropolis moves all rows at once; exact draws fill the
padding with N(0, 1)). ``model.data["mask"]`` (R, d) is True at the missing cells.

The data reach the model as observed values plus a mask, not as NaN: ``data["X"]`` is X centred at
the observed column means with 0 in the missing cells (so NaN never enters a computation).

Exact EM. For each missingness pattern (missing block M, observed block O) the conditional law is::

    x_M | x_O ~ N(mu_M + Sigma_MO Sigma_OO^-1 (x_O - mu_O),  Sigma_MM - Sigma_MO Sigma_OO^-1 Sigma_OM)

The E step fills each row with its conditional mean and adds the conditional covariance to the
second moment; sufficient statistics ``T1 = sum_n x_n`` and ``T2 = sum_n x_n x_n^T`` (of the centred
data). M step: ``mu = T1 / N``, ``Sigma = T2 / N - mu mu^T``. The observed-data log-likelihood is
``sum_n log N(x_{n,O} | mu_O, Sigma_OO)``. Rows are processed a missingness pattern at a time (a loop
over patterns, never over rows).

Input rules: NaN is the only missing-value marker (inf is an error); every column needs at least
one observed value; a row with every value missing is rejected (under MAR it carries no information
about mu or Sigma; drop it first); data without any NaN are rejected too (the MLE is then the sample
mean and the biased sample covariance, no EM needed).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np

from .. import constraints as C
from ..core import Continuous, Model
from ._common import Memo, bind, float_matrix, ready_model

__all__ = ["missing_normal", "initial_params"]

_LOG_2PI = float(np.log(2 * np.pi))


def _check_X(X):
    arr = float_matrix(X)
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"X needs at least 2 rows and 2 columns, got shape {arr.shape}")
    n_inf = int(np.isinf(arr).sum())
    if n_inf:
        raise ValueError(f"X must be finite or NaN (NaN marks a missing value), got {n_inf} inf value(s)")
    miss = np.isnan(arr)
    empty_cols = np.flatnonzero(miss.all(axis=0))
    if empty_cols.size:
        raise ValueError(
            f"X has column(s) {empty_cols.tolist()} with every value missing; mu and Sigma of a "
            "column without data cannot be estimated: drop the column(s)"
        )
    empty_rows = np.flatnonzero(miss.all(axis=1))
    if empty_rows.size:
        shown = empty_rows[:10].tolist()
        more = f" (and {empty_rows.size - 10} more)" if empty_rows.size > 10 else ""
        raise ValueError(
            f"X has {empty_rows.size} row(s) with every value missing: rows {shown}{more}; under "
            "missing at random they carry no information about mu or Sigma: drop them first"
        )
    if not miss.any():
        raise ValueError(
            "X has no missing value (NaN); the MLE of complete data is X.mean(axis=0) and "
            "np.cov(X, rowvar=False, bias=True), no EM needed"
        )
    return arr, miss


def initial_params(X):
    """Observed column means and a diagonal covariance of observed column variances."""
    X, miss = _check_X(X)
    mu = np.nanmean(X, axis=0)
    var = np.nanvar(X, axis=0)
    var = np.where(np.isfinite(var) & (var > 0), var, 1.0)
    return {"mu": mu, "Sigma": np.diag(var)}


def _cholesky_logdet(S):
    L = np.linalg.cholesky(S)
    return L, 2.0 * np.sum(np.log(np.diagonal(L)))


def missing_normal(X, *, init=None) -> Model:
    """A multivariate normal with missing-at-random values as an :class:`mcem.Model` (exact EM).

    Parameters
    ----------
    X : array (N, d)
        Data with NaN in the missing cells. Not modified.
    init : dict, optional
        Initial ``mu`` (d,) and ``Sigma`` (d, d); default :func:`initial_params`.

    Returns
    -------
    Model
        Parameters ``mu`` and ``Sigma``; latent ``x_mis`` of shape (R, d) with unit axis 0 (see
        the module docstring for the layout); ``exact_estep``, ``mstep``, ``sufficient_stats``,
        ``loglik``, ``posterior_sampler``, ``grad_params`` and per-unit ``conditionals``.
        ``data`` holds ``X`` (centred, 0 where missing), ``shift`` (the observed column means),
        ``mask`` (R, d), ``rows`` (the indices in X of the R latent units) and ``n_complete``.
    """
    X, miss = _check_X(X)
    N, d = X.shape
    if init is None:
        init = initial_params(X)
    shift = np.nanmean(X, axis=0)
    Xc = np.where(miss, 0.0, X - shift)
    has_miss = miss.any(axis=1)
    rows = np.flatnonzero(has_miss)
    R = rows.size
    mask = miss[rows]  # (R, d)
    Xcomp = Xc[~has_miss]
    patterns, which = np.unique(mask, axis=0, return_inverse=True)
    which = np.asarray(which).ravel()
    data = {"X": Xc, "shift": shift, "mask": mask, "rows": rows, "n_complete": Xcomp.shape[0]}
    parts = _Parts(
        Xc[rows], Xcomp.sum(axis=0), Xcomp.T @ Xcomp, patterns,
        tuple(np.flatnonzero(which == p) for p in range(patterns.shape[0])), Memo(_pattern_blocks, ("mu", "Sigma")),
    )
    return ready_model(
        *bind(parts, _log_joint, _exact_estep, _mstep, _sufficient_stats, _loglik, _posterior_sampler, _grad_params),
        params={"mu": C.real(shape=d), "Sigma": C.positive_definite(d)},
        latents={"x_mis": Continuous(C.real, shape=(R, d), unit=True, init=_initial_latent(mask, shift))},
        data=data, init=init, n_obs=N, conditionals={"x_mis": partial(_conditional, parts)},
        name=f"missing_normal(d={d}, {int(miss.sum())} missing in {R} rows, {patterns.shape[0]} patterns)",
    )


def _initial_latent(mask, shift):
    """Chains start at the observed column means in the missing cells, 0 in the padding."""
    return np.where(mask, shift, 0.0)


# --------------------------------------------------------------------------- the model's functions
class _Parts(NamedTuple):
    """Derived once from the data, taken first by the model's functions."""

    Xu: np.ndarray  # (R, d): the rows with missing values, centred, 0 in the missing cells
    comp_T1: np.ndarray  # sum of the complete rows (centred)
    comp_T2: np.ndarray  # their sum of outer products
    patterns: np.ndarray  # (P, d): the distinct missingness masks
    groups: tuple  # the latent units of each pattern
    blocks: Memo  # of _pattern_blocks


def _centred(theta, data):
    return np.asarray(theta["mu"], dtype=float) - data["shift"], np.asarray(theta["Sigma"], dtype=float)


def _complete_loglik(parts, m, L, logdet, data):
    """log density of the complete rows (free of the latents)."""
    n_comp, d = data["n_complete"], m.size
    if n_comp == 0:
        return 0.0
    T1, T2 = parts.comp_T1, parts.comp_T2
    S = T2 - np.outer(T1, m) - np.outer(m, T1) + n_comp * np.outer(m, m)
    Linv = np.linalg.solve(L, np.eye(d))
    return -0.5 * (n_comp * (d * _LOG_2PI + logdet) + float(np.sum((Linv @ S) * Linv)))


def _pattern_blocks(theta, data, parts):
    """Per pattern: (rows, missing mask, centred conditional means (n_p, |M|), covariance, its Cholesky).

    Memoised per model for the last theta: the exact sampler asks for them once per draw."""
    m, S = _centred(theta, data)
    out = []
    for pat, idx in zip(parts.patterns, parts.groups, strict=True):  # a loop over missingness patterns
        o = ~pat
        S_oo = S[np.ix_(o, o)]
        S_mo = S[np.ix_(pat, o)]
        K = np.linalg.solve(S_oo, S_mo.T).T  # Sigma_MO Sigma_OO^-1
        mean = m[pat] + (parts.Xu[idx][:, o] - m[o]) @ K.T
        cov = S[np.ix_(pat, pat)] - K @ S_mo.T
        cov = 0.5 * (cov + cov.T)
        out.append((idx, pat, mean, cov, np.linalg.cholesky(cov)))
    return out


def _loglik(parts, theta, data):
    m, S = _centred(theta, data)
    L, logdet = _cholesky_logdet(S)
    total = _complete_loglik(parts, m, L, logdet, data)
    for pat, idx in zip(parts.patterns, parts.groups, strict=True):  # a loop over missingness patterns
        o = ~pat
        Lo, ld = _cholesky_logdet(S[np.ix_(o, o)])
        w = np.linalg.solve(Lo, (parts.Xu[idx][:, o] - m[o]).T)
        total += -0.5 * (idx.size * (o.sum() * _LOG_2PI + ld) + float(np.sum(w * w)))
    return total


def _exact_estep(parts, theta, data):
    d = parts.Xu.shape[1]
    T1, T2 = parts.comp_T1.copy(), parts.comp_T2.copy()
    filled = parts.Xu.copy()
    extra = np.zeros((d, d))
    for idx, pat, mean, cov, _ in parts.blocks(theta, data, parts):
        sub = filled[idx]
        sub[:, pat] = mean
        filled[idx] = sub
        extra[np.ix_(pat, pat)] += idx.size * cov
    T1 += filled.sum(axis=0)
    T2 += filled.T @ filled + extra
    return {"T1": T1, "T2": T2}, _loglik(parts, theta, data)


def _fill(parts, z, data):
    """Centred complete rows (..., R, d): the observed values, the latents in the missing cells."""
    return np.where(data["mask"], np.asarray(z, dtype=float) - data["shift"], parts.Xu)


def _sufficient_stats(parts, z, data):
    Xf = _fill(parts, np.asarray(z["x_mis"], dtype=float).reshape((-1,) + parts.Xu.shape), data)
    B = Xf.shape[0]
    return {
        "T1": parts.comp_T1 + Xf.sum(axis=(0, 1)) / B,
        "T2": parts.comp_T2 + np.einsum("bni,bnj->ij", Xf, Xf) / B,
    }


def _mstep(parts, stats, data):
    N = data["X"].shape[0]
    T1, T2 = np.asarray(stats["T1"], dtype=float), np.asarray(stats["T2"], dtype=float)
    m = T1 / N
    S = T2 / N - np.outer(m, m)
    return {"mu": m + data["shift"], "Sigma": 0.5 * (S + S.T)}


def _unit_terms(parts, theta, z, data):
    """Per unit: log N(full row | mu, Sigma) + the padding's N(0, 1) log density. (..., R)."""
    zz = np.asarray(z["x_mis"], dtype=float)
    m, S = _centred(theta, data)
    d = m.size
    L, logdet = _cholesky_logdet(S)
    r = _fill(parts, zz, data) - m
    w = np.linalg.solve(L, np.moveaxis(r, -1, 0).reshape(d, -1)).reshape((d,) + r.shape[:-1])
    row = -0.5 * (np.sum(w * w, axis=0) + logdet + d * _LOG_2PI)
    pad = -0.5 * np.sum(np.where(data["mask"], 0.0, zz * zz + _LOG_2PI), axis=-1)
    return row + pad, (m, L, logdet)


def _log_joint(parts, theta, z, data):
    terms, (m, L, logdet) = _unit_terms(parts, theta, z, data)
    return terms.sum(axis=-1) + _complete_loglik(parts, m, L, logdet, data)


def _conditional(parts, theta, z, data):
    return _unit_terms(parts, theta, z, data)[0]


def _grad_params(parts, theta, z, data):
    N = data["X"].shape[0]
    Xf = _fill(parts, np.asarray(z["x_mis"], dtype=float), data)
    m, S = _centred(theta, data)
    d = m.size
    P = np.linalg.inv(S)
    batch = Xf.shape[:-2]
    sum1 = parts.comp_T1 + Xf.sum(axis=-2)  # (..., d)
    sum2 = parts.comp_T2 + np.einsum("...ni,...nj->...ij", Xf, Xf)
    scatter = sum2 - sum1[..., :, None] * m - m[:, None] * sum1[..., None, :] + N * np.outer(m, m)
    g_mu = (sum1 - N * m) @ P
    g_S = 0.5 * (P @ scatter @ P - N * np.broadcast_to(P, batch + (d, d)))
    return {"mu": g_mu, "Sigma": g_S}


def _posterior_sampler(parts, theta, data, rng, batch=()):
    shift = data["shift"]
    batch = tuple(batch)
    out = rng.standard_normal(batch + parts.Xu.shape)  # padding: N(0, 1)
    for idx, pat, mean, _, Lc in parts.blocks(theta, data, parts):
        eps = rng.standard_normal(batch + (idx.size, int(pat.sum())))
        vals = mean + eps @ Lc.T  # (..., n_p, |M|)
        sub = out[..., idx, :]
        sub[..., pat] = vals + shift[pat]
        out[..., idx, :] = sub
    return {"x_mis": out}

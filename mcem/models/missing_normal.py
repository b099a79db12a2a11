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

import numpy as np

from .. import constraints as C
from ..model import Continuous, Model

__all__ = ["missing_normal", "initial_params"]

_LOG_2PI = float(np.log(2 * np.pi))


def _check_X(X):
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"X must be a numeric array of shape (n_samples, n_features), got dtype {arr.dtype}")
    arr = np.array(arr, dtype=float)  # a private copy: the user's array is never written
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {arr.shape}")
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
    Xu = Xc[rows]  # (R, d): the rows with missing values, 0 in the missing cells
    mask = miss[rows]  # (R, d)
    Xcomp = Xc[~has_miss]
    n_comp = Xcomp.shape[0]
    comp_T1 = Xcomp.sum(axis=0)
    comp_T2 = Xcomp.T @ Xcomp
    patterns, which = np.unique(mask, axis=0, return_inverse=True)
    which = np.asarray(which).ravel()
    groups = [np.flatnonzero(which == p) for p in range(patterns.shape[0])]

    data = {"X": Xc, "shift": shift, "mask": mask, "rows": rows, "n_complete": n_comp}

    def centred(theta):
        return np.asarray(theta["mu"], dtype=float) - shift, np.asarray(theta["Sigma"], dtype=float)

    def complete_loglik(m, L, logdet):
        """log density of the complete rows (free of the latents)."""
        if n_comp == 0:
            return 0.0
        S = comp_T2 - np.outer(comp_T1, m) - np.outer(m, comp_T1) + n_comp * np.outer(m, m)
        Linv = np.linalg.solve(L, np.eye(d))
        return -0.5 * (n_comp * (d * _LOG_2PI + logdet) + float(np.sum((Linv @ S) * Linv)))

    cache = {"key": None, "value": None}

    def pattern_blocks(m, S):
        """Per pattern: (rows, missing mask, centred conditional means (n_p, |M|), covariance, its Cholesky).

        Cached for the last (m, S): the exact sampler asks for them once per draw."""
        key = (m.tobytes(), S.tobytes())
        if key == cache["key"]:
            return cache["value"]
        out = []
        for pat, idx in zip(patterns, groups, strict=True):  # a loop over missingness patterns
            o = ~pat
            S_oo = S[np.ix_(o, o)]
            S_mo = S[np.ix_(pat, o)]
            K = np.linalg.solve(S_oo, S_mo.T).T  # Sigma_MO Sigma_OO^-1
            mean = m[pat] + (Xu[idx][:, o] - m[o]) @ K.T
            cov = S[np.ix_(pat, pat)] - K @ S_mo.T
            cov = 0.5 * (cov + cov.T)
            out.append((idx, pat, mean, cov, np.linalg.cholesky(cov)))
        cache["key"], cache["value"] = key, out
        return out

    def loglik(theta, data=None):
        m, S = centred(theta)
        L, logdet = _cholesky_logdet(S)
        total = complete_loglik(m, L, logdet)
        for pat, idx in zip(patterns, groups, strict=True):  # a loop over missingness patterns
            o = ~pat
            Lo, ld = _cholesky_logdet(S[np.ix_(o, o)])
            w = np.linalg.solve(Lo, (Xu[idx][:, o] - m[o]).T)
            total += -0.5 * (idx.size * (o.sum() * _LOG_2PI + ld) + float(np.sum(w * w)))
        return total

    def exact_estep(theta, data):
        m, S = centred(theta)
        T1, T2 = comp_T1.copy(), comp_T2.copy()
        filled = Xu.copy()
        extra = np.zeros((d, d))
        for idx, pat, mean, cov, _ in pattern_blocks(m, S):
            sub = filled[idx]
            sub[:, pat] = mean
            filled[idx] = sub
            extra[np.ix_(pat, pat)] += idx.size * cov
        T1 += filled.sum(axis=0)
        T2 += filled.T @ filled + extra
        return {"T1": T1, "T2": T2}, loglik(theta)

    def _fill(z):
        """Centred complete rows (..., R, d): the observed values, the latents in the missing cells."""
        return np.where(mask, np.asarray(z, dtype=float) - shift, Xu)

    def sufficient_stats(z, data):
        Xf = _fill(np.asarray(z["x_mis"], dtype=float).reshape(-1, R, d))
        B = Xf.shape[0]
        return {
            "T1": comp_T1 + Xf.sum(axis=(0, 1)) / B,
            "T2": comp_T2 + np.einsum("bni,bnj->ij", Xf, Xf) / B,
        }

    def mstep(stats, data):
        T1, T2 = np.asarray(stats["T1"], dtype=float), np.asarray(stats["T2"], dtype=float)
        m = T1 / N
        S = T2 / N - np.outer(m, m)
        return {"mu": m + shift, "Sigma": 0.5 * (S + S.T)}

    def unit_terms(theta, z):
        """Per unit: log N(full row | mu, Sigma) + the padding's N(0, 1) log density. (..., R)."""
        zz = np.asarray(z["x_mis"], dtype=float)
        m, S = centred(theta)
        L, logdet = _cholesky_logdet(S)
        r = _fill(zz) - m
        w = np.linalg.solve(L, np.moveaxis(r, -1, 0).reshape(d, -1)).reshape((d,) + r.shape[:-1])
        row = -0.5 * (np.sum(w * w, axis=0) + logdet + d * _LOG_2PI)
        pad = -0.5 * np.sum(np.where(mask, 0.0, zz * zz + _LOG_2PI), axis=-1)
        return row + pad, (m, L, logdet)

    def log_joint(theta, z, data):
        terms, (m, L, logdet) = unit_terms(theta, z)
        return terms.sum(axis=-1) + complete_loglik(m, L, logdet)

    def conditional(theta, z, data):
        return unit_terms(theta, z)[0]

    def grad_params(theta, z, data):
        Xf = _fill(np.asarray(z["x_mis"], dtype=float))
        m, S = centred(theta)
        P = np.linalg.inv(S)
        batch = Xf.shape[:-2]
        sum1 = comp_T1 + Xf.sum(axis=-2)  # (..., d)
        sum2 = comp_T2 + np.einsum("...ni,...nj->...ij", Xf, Xf)
        scatter = sum2 - sum1[..., :, None] * m - m[:, None] * sum1[..., None, :] + N * np.outer(m, m)
        g_mu = (sum1 - N * m) @ P
        g_S = 0.5 * (P @ scatter @ P - N * np.broadcast_to(P, batch + (d, d)))
        return {"mu": g_mu, "Sigma": g_S}

    def posterior_sampler(theta, data, rng, batch=()):
        m, S = centred(theta)
        batch = tuple(batch)
        out = rng.standard_normal(batch + (R, d))  # padding: N(0, 1)
        for idx, pat, mean, _, Lc in pattern_blocks(m, S):
            eps = rng.standard_normal(batch + (idx.size, int(pat.sum())))
            vals = mean + eps @ Lc.T  # (..., n_p, |M|)
            sub = out[..., idx, :]
            sub[..., pat] = vals + shift[pat]
            out[..., idx, :] = sub
        return {"x_mis": out}

    return Model(
        log_joint,
        params={"mu": C.real(shape=d), "Sigma": C.positive_definite(d)},
        latents={"x_mis": Continuous(C.real, shape=(R, d), unit=True, init=_initial_latent(mask, shift))},
        data=data,
        init=init,
        exact_estep=exact_estep,
        mstep=mstep,
        sufficient_stats=sufficient_stats,
        loglik=loglik,
        posterior_sampler=posterior_sampler,
        grad_params=grad_params,
        n_obs=N,
        conditionals={"x_mis": conditional},
        name=f"missing_normal(d={d}, {int(miss.sum())} missing in {R} rows, {len(groups)} patterns)",
    )


def _initial_latent(mask, shift):
    """Chains start at the observed column means in the missing cells, 0 in the padding."""
    return np.where(mask, shift, 0.0)

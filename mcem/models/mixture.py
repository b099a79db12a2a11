"""The Gaussian mixture: exact EM (the oracle for every Monte Carlo path) on the generic Model.

Parameterisation (K components, d dimensions)::

    weights       simplex(K)
    means         real, shape (K, d)
    covariances   "full": positive_definite(d, batch=K), shape (K, d, d)
                  "tied": positive_definite(d), shape (d, d), one matrix for every component
                  "diag": positive, shape (K, d)
                  "spherical": positive, shape (K,)
    latent label  Discrete(K, shape=N, unit=True)

    log p(x_n, z_n = k; theta) = log w_k + log N(x_n | mu_k, Sigma_k)

:func:`gaussian_mixture` builds the :class:`mcem.Model` (with the exact E step, the closed-form M
step from sufficient statistics, the exact log-likelihood and the exact label sampler); the
scikit-learn estimator :class:`~mcem.models.mixture_estimator.GaussianMixture` is built on it.
Everything works in log space, so points far from every component do not underflow.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import constraints as C
from .._validation import as_generator, as_real_array, check_choice, check_positive_float, check_positive_int
from ..core import Discrete, Model
from ._common import Memo, bind, ready_model
from .mixture_stats import _estep, _FeatureCache, _log_densities, _normalise, _pick, _stats_from_resp

__all__ = ["gaussian_mixture", "component_log_density", "initial_params", "kmeans_plusplus", "params_from_resp"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_EPS = 10 * np.finfo(float).eps


def _check_X(X, name="X", d=None):
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array of shape (n_samples, n_features), got dtype {arr.dtype}")
    arr = np.array(arr, dtype=float)  # a private copy: the user's array is never written
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: expected at least one sample and one feature, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} must be finite, got {int(np.isnan(arr).sum())} NaN and "
            f"{int(np.isinf(arr).sum())} inf value(s)"
        )
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} must have {d} features (as in fit), got {arr.shape[1]}")
    with np.errstate(over="ignore"):
        second = 4.0 * np.sum(np.square(arr))  # (x - mu)^2 summed over the data stays below this
    if not np.isfinite(second):
        raise ValueError(
            f"{name} is out of range: its largest magnitude {np.max(np.abs(arr)):.3g} makes the sums of "
            "squares overflow float64 (the mixture needs second moments); rescale the data, for "
            "example X / X.std(axis=0)"
        )
    return arr


def _check_start(value, name, shape, what):
    """A float copy of a user start of shape ``shape`` with finite values; errors name ``name``."""
    arr = as_real_array(value, name)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} ({what}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {int(np.isnan(arr).sum())} NaN and "
                         f"{int(np.isinf(arr).sum())} inf value(s)")
    return arr


def _check_weights(w, K):
    """Starting weights: in [0, 1], summing to 1 within scikit-learn's 1e-8; returned normalised."""
    w = _check_start(w, "weights_init", (K,), "n_components,")
    if np.any(w < 0) or np.any(w > 1):
        raise ValueError(f"weights_init must lie in [0, 1], got values from {w.min():.5g} to {w.max():.5g}")
    if abs(w.sum() - 1.0) > 1e-8:  # scikit-learn's tolerance
        raise ValueError(f"weights_init must sum to 1, got sum {w.sum():.10g}")
    return w / w.sum()


def _covariances_from_precisions(P, covariance_type, K, d):
    """The covariances of the precisions ``P`` (shaped by ``covariance_type``), checked."""
    shape, what = {
        "full": ((K, d, d), "n_components, n_features, n_features"),
        "tied": ((d, d), "n_features, n_features"),
        "diag": ((K, d), "n_components, n_features"),
        "spherical": ((K,), "n_components,"),
    }[covariance_type]
    P = _check_start(P, "precisions_init", shape, f"{what} for covariance_type={covariance_type!r}")
    if covariance_type in ("diag", "spherical"):
        if np.any(P <= 0):
            raise ValueError(f"precisions_init must be positive for covariance_type={covariance_type!r}, "
                             f"got smallest value {P.min():.5g}")
        return 1.0 / P
    mats = P.reshape(-1, d, d)
    symmetric = np.all(np.isclose(mats, np.swapaxes(mats, -1, -2)), axis=(-1, -2))
    smallest = np.linalg.eigvalsh(0.5 * (mats + np.swapaxes(mats, -1, -2)))[:, 0]
    bad = np.flatnonzero(~symmetric | (smallest <= 0))
    if bad.size:
        b = int(bad[0])
        which = f"precisions_init[{b}]" if covariance_type == "full" else "precisions_init"
        why = "is not symmetric" if not symmetric[b] else f"has smallest eigenvalue {smallest[b]:.5g}"
        raise ValueError(f"precisions_init must hold symmetric positive-definite matrices for covariance_type="
                         f"{covariance_type!r}; {which} {why}")
    cov = np.linalg.inv(mats)
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    return cov.reshape(shape)


def precision_cholesky(covariances, covariance_type):
    """Factors P with P P^T = Sigma^-1 ("full", "tied": upper triangular, scikit-learn's
    ``precisions_cholesky_``), or inverse standard deviations ("diag", "spherical"); and log|P|
    (per component, or per feature for "diag")."""
    if covariance_type in ("full", "tied"):
        L = np.linalg.cholesky(covariances)  # (K, d, d)
        prec_chol = np.swapaxes(np.linalg.inv(L), -1, -2)  # (L^-1)^T
        log_det = -np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)
        return prec_chol, log_det
    prec = 1.0 / np.sqrt(covariances)
    return prec, np.log(prec)


def component_log_density(X, weights, means, covariances, covariance_type="full"):
    """log w_k + log N(x_n | mu_k, Sigma_k) for every sample and component: shape (N, K).

    Each component's quadratic form is computed directly (``|P_k'(x_n - mu_k)|^2`` with ``P_k``
    the Cholesky factor of the precision), a loop over components of BLAS products over all
    samples; the fitted model's fast path is :mod:`mcem.models.mixture_stats`.
    """
    X = np.asarray(X, dtype=float)
    prec_chol, log_det = precision_cholesky(covariances, covariance_type)
    lp, _ = _log_densities(None, X, np.asarray(weights, dtype=float), np.asarray(means, dtype=float),
                           prec_chol, log_det, covariance_type)
    return lp.T


def _mstep(stats, data):
    cov_type, reg = data["covariance_type"], data["reg_covar"]
    S0, S1, S2 = (np.asarray(stats[k], dtype=float) for k in ("S0", "S1", "S2"))
    d = S1.shape[1]
    nk = S0 + _EPS
    weights = nk / nk.sum()
    m = S1 / nk[:, None]
    if cov_type == "full":
        cov = S2 / nk[:, None, None] - m[:, :, None] * m[:, None, :]
        cov = 0.5 * (cov + np.swapaxes(cov, -1, -2)) + reg * np.eye(d)
    elif cov_type == "tied":  # within-component scatter pooled over the components
        cov = (S2 - m.T @ (nk[:, None] * m)) / nk.sum()
        cov = 0.5 * (cov + cov.T) + reg * np.eye(d)
    elif cov_type == "diag":
        cov = np.maximum(S2 / nk[:, None] - m**2, 0.0) + reg
    else:
        cov = np.maximum((S2 / nk - np.sum(m**2, axis=1)) / d, 0.0) + reg
    return {"weights": weights, "means": m + data["shift"], "covariances": cov}


def _components(theta, data, features):
    """log w_k + log N(x_n | mu_k, Sigma_k) laid out (K, N), read-only (memoised per model by a
    :class:`Memo`): one matrix product with the feature matrix of the centred data, or the direct
    form for components the product would not compute to :data:`~.mixture_stats.QUAD_TOL`."""
    cov_type = data["covariance_type"]
    prec_chol, log_det = precision_cholesky(theta["covariances"], cov_type)
    means_c = np.asarray(theta["means"], dtype=float) - data["shift"]
    lp, _ = _log_densities(features(data), data["Xc"], np.asarray(theta["weights"], dtype=float), means_c,
                          prec_chol, log_det, cov_type)
    lp.flags.writeable = False
    return lp


class _Parts(NamedTuple):
    """What the model's functions take first: K, the memo of :func:`_components`, 0..N-1 and the
    feature matrix of the centred data (built on first use)."""

    n_components: int
    comp: Memo
    rows: np.ndarray
    features: _FeatureCache


def _comp(parts, theta, data):
    return parts.comp(theta, data, parts.features)


def _log_joint(parts, theta, z, data):
    return _pick(_comp(parts, theta, data), z["label"], parts.rows)


def _exact_estep(parts, theta, data):
    return _estep(_comp(parts, theta, data), parts.features(data), data["Xc"], data["covariance_type"])


def _sufficient_stats(parts, z, data):
    N, K = data["X"].shape[0], parts.n_components
    labels = np.asarray(z["label"]).reshape(-1, N)
    R = np.empty((K, N))
    for k in range(K):  # the fraction of draws in each component, a pass per component
        np.add.reduce(labels == k, axis=0, dtype=float, out=R[k])
    if labels.shape[0] > 1:
        R /= labels.shape[0]
    return _stats_from_resp(R, parts.features(data), data["Xc"], data["covariance_type"])


def _loglik(parts, theta, data):
    return _normalise(_comp(parts, theta, data), resp=False)[1]


def _posterior_sampler(parts, theta, data, rng, batch=()):
    R, _ = _normalise(_comp(parts, theta, data))
    u = rng.random(tuple(batch) + (R.shape[1],))
    labels = np.zeros(u.shape, dtype=np.int64)
    cdf = R[0]
    for k in range(parts.n_components - 1):  # the label is the number of CDF values below u
        labels += u > cdf
        if k + 2 < parts.n_components:
            cdf += R[k + 1]
    return {"label": labels}


def gaussian_mixture(X, n_components, covariance_type="full", reg_covar=1e-6, init=None) -> Model:
    """The Gaussian mixture as an :class:`mcem.Model` with exact EM extras.

    Parameters
    ----------
    X : array (N, d)
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
    reg_covar : float
        Added to the diagonal of every covariance in the M step.
    init : dict, optional
        Initial parameters (``weights``, ``means``, ``covariances``); default: the k-means++
        start of :func:`initial_params` with seed 0 (equal components would be a saddle point).

    Returns
    -------
    Model
        ``model.data`` holds ``X``, ``Xc`` (X centred at its mean), ``shift`` (that mean),
        ``covariance_type`` and ``reg_covar``.
    """
    X = _check_X(X)
    K = check_positive_int(n_components, "n_components")
    check_choice(covariance_type, "covariance_type", set(COVARIANCE_TYPES))
    reg_covar = check_positive_float(reg_covar, "reg_covar", allow_zero=True)
    if X.shape[0] < K:
        raise ValueError(f"X must have at least n_components={K} samples, got {X.shape[0]}")
    N, d = X.shape
    if init is None:
        init = initial_params(X, K, covariance_type, reg_covar, rng=0)
    shift = X.mean(axis=0)
    data = {
        "X": X,
        "Xc": X - shift,
        "shift": shift,
        "covariance_type": covariance_type,
        "reg_covar": reg_covar,
    }
    cov_c = {
        "full": C.positive_definite(d, batch=K),
        "tied": C.positive_definite(d),
        "diag": C.positive(shape=(K, d)),
        "spherical": C.positive(shape=K),
    }[covariance_type]
    params = {"weights": C.simplex(K), "means": C.real(shape=(K, d)), "covariances": cov_c}
    parts = _Parts(K, Memo(_components, ("weights", "means", "covariances")), np.arange(N), _FeatureCache())
    return ready_model(
        *bind(parts, _log_joint, _exact_estep, _sufficient_stats, _loglik, _posterior_sampler), _mstep,
        params=params, latents={"label": Discrete(K, shape=N, unit=True)}, data=data, init=init,
        n_obs=N, name=f"gaussian_mixture(K={K}, {covariance_type})",
    )


def kmeans_plusplus(X, n_clusters, rng=None):
    """k-means++ seeding (Arthur & Vassilvitskii 2007): indices of the chosen centres."""
    rng = as_generator(rng)
    X = np.asarray(X, dtype=float)
    N = X.shape[0]
    idx = [int(rng.integers(N))]
    d2 = np.sum((X - X[idx[0]]) ** 2, axis=1)
    for _ in range(1, n_clusters):
        total = d2.sum()
        if total <= 0:
            nxt = int(rng.integers(N))
        else:
            nxt = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
            nxt = min(nxt, N - 1)
        idx.append(nxt)
        d2 = np.minimum(d2, np.sum((X - X[nxt]) ** 2, axis=1))
    return np.array(idx)


def initial_params(X, n_components, covariance_type="full", reg_covar=1e-6, rng=None):
    """Initial parameters from k-means++ centres: hard-assign every point, then one M step."""
    X = _check_X(X)
    K = n_components
    centres = X[kmeans_plusplus(X, K, rng)]
    d2 = (X**2).sum(1)[:, None] - 2 * X @ centres.T + (centres**2).sum(1)[None, :]
    labels = np.argmin(d2, axis=1)
    R = np.zeros((X.shape[0], K))
    R[np.arange(X.shape[0]), labels] = 1.0
    return params_from_resp(X, R, covariance_type, max(reg_covar, 1e-6))


def params_from_resp(X, resp, covariance_type="full", reg_covar=1e-6):
    """The M step from responsibilities ``resp`` (n_samples, K): weights, means and covariances
    (shaped by ``covariance_type``) with ``reg_covar`` added to the covariance diagonals."""
    X = np.asarray(X, dtype=float)
    shift = X.mean(axis=0)
    stats = _stats_from_resp(np.asarray(resp, dtype=float).T, None, X - shift, covariance_type)
    return _mstep(stats, {"covariance_type": covariance_type, "reg_covar": reg_covar, "shift": shift})

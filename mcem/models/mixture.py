"""The Gaussian mixture: exact EM (the oracle for every Monte Carlo path) on the generic Model.

Parameterisation (K components, d dimensions)::

    weights       simplex(K)
    means         real, shape (K, d)
    covariances   "full": positive_definite(d, batch=K), shape (K, d, d)
                  "diag": positive, shape (K, d)
                  "spherical": positive, shape (K,)
    latent label  Discrete(K, shape=N, unit=True)

    log p(x_n, z_n = k; theta) = log w_k + log N(x_n | mu_k, Sigma_k)

:func:`gaussian_mixture` builds the :class:`mcem.Model` (with the exact E step, the closed-form M
step from sufficient statistics, the exact log-likelihood and the exact label sampler), and
:class:`GaussianMixture` is a scikit-learn-style estimator on top of it. Everything works in log
space, so points far from every component do not underflow.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

from .. import constraints as C
from .._validation import as_generator, check_choice, check_mapping, check_positive_float, check_positive_int
from ..fit import fit as _fit
from ..core import Discrete, Model
from ._common import Memo, bind, ready_model

__all__ = ["GaussianMixture", "gaussian_mixture", "component_log_density", "kmeans_plusplus"]

COVARIANCE_TYPES = ("full", "diag", "spherical")
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


def _precision_cholesky(covariances, covariance_type):
    """Factors P with P P^T = Sigma^-1 ("full"), or inverse standard deviations; and log|P|."""
    if covariance_type == "full":
        L = np.linalg.cholesky(covariances)  # (K, d, d)
        d = L.shape[-1]
        eye = np.broadcast_to(np.eye(d), L.shape)
        prec_chol = np.swapaxes(np.linalg.solve(L, eye), -1, -2)  # (L^-1)^T
        log_det = -np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)
        return prec_chol, log_det
    prec = 1.0 / np.sqrt(covariances)
    return prec, np.log(prec)


def component_log_density(X, weights, means, covariances, covariance_type="full"):
    """log w_k + log N(x_n | mu_k, Sigma_k) for every sample and component: shape (N, K)."""
    N, d = X.shape
    K = means.shape[0]
    prec_chol, log_det = _precision_cholesky(covariances, covariance_type)
    if covariance_type == "full":
        maha = np.empty((N, K))
        for k in range(K):  # a loop over components, each a BLAS product over all samples
            y = X @ prec_chol[k] - means[k] @ prec_chol[k]
            maha[:, k] = np.einsum("ij,ij->i", y, y)
    elif covariance_type == "diag":
        p2 = prec_chol**2  # (K, d)
        maha = (
            np.sum(means**2 * p2, axis=1)[None, :]
            - 2.0 * X @ (means * p2).T
            + (X**2) @ p2.T
        )
        log_det = log_det.sum(-1)
    else:  # spherical
        p2 = prec_chol**2  # (K,)
        maha = (
            np.sum(means**2, axis=1)[None, :] * p2
            - 2.0 * (X @ means.T) * p2
            + np.outer(np.einsum("ij,ij->i", X, X), p2)
        )
        log_det = d * log_det
    np.maximum(maha, 0.0, out=maha)
    with np.errstate(divide="ignore"):
        logw = np.log(weights)
    return -0.5 * (d * np.log(2 * np.pi) + maha) + log_det + logw


def _stats_from_resp(R, Xc, covariance_type):
    """Weighted sufficient statistics of centred data Xc given responsibilities R (N, K)."""
    S0 = R.sum(axis=0)
    S1 = R.T @ Xc
    if covariance_type == "full":
        S2 = np.stack([(R[:, k, None] * Xc).T @ Xc for k in range(R.shape[1])])
    elif covariance_type == "diag":
        S2 = R.T @ (Xc**2)
    else:
        S2 = R.T @ np.einsum("ij,ij->i", Xc, Xc)
    return {"S0": S0, "S1": S1, "S2": S2}


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
    elif cov_type == "diag":
        cov = np.maximum(S2 / nk[:, None] - m**2, 0.0) + reg
    else:
        cov = np.maximum((S2 / nk - np.sum(m**2, axis=1)) / d, 0.0) + reg
    return {"weights": weights, "means": m + data["shift"], "covariances": cov}


def _components(theta, data):
    """log w_k + log N(x_n | mu_k, Sigma_k), shape (N, K) (memoised per model by a :class:`Memo`)."""
    return component_log_density(
        data["X"], theta["weights"], theta["means"], theta["covariances"], data["covariance_type"]
    )


class _Parts(NamedTuple):
    """What the model's functions take first: K, the memo of :func:`_components`, 0..N-1."""

    n_components: int
    comp: Memo
    rows: np.ndarray


def _log_joint(parts, theta, z, data):
    return parts.comp(theta, data)[parts.rows, z["label"]]


def _exact_estep(parts, theta, data):
    lp = parts.comp(theta, data)
    lse = logsumexp(lp, axis=1)
    R = np.exp(lp - lse[:, None])
    return _stats_from_resp(R, data["Xc"], data["covariance_type"]), float(lse.sum())


def _sufficient_stats(parts, z, data):
    N, K = data["X"].shape[0], parts.n_components
    labels = np.asarray(z["label"]).reshape(-1, N)
    R = np.empty((N, K))
    for k in range(K):
        R[:, k] = np.mean(labels == k, axis=0)
    return _stats_from_resp(R, data["Xc"], data["covariance_type"])


def _loglik(parts, theta, data):
    return float(logsumexp(parts.comp(theta, data), axis=1).sum())


def _posterior_sampler(parts, theta, data, rng, batch=()):
    lp = parts.comp(theta, data)
    R = np.exp(lp - logsumexp(lp, axis=1, keepdims=True))
    cdf = np.cumsum(R, axis=1)
    u = rng.random(tuple(batch) + (data["X"].shape[0], 1))
    return {"label": np.minimum((u > cdf).sum(axis=-1), parts.n_components - 1)}


def gaussian_mixture(X, n_components, covariance_type="full", reg_covar=1e-6, init=None) -> Model:
    """The Gaussian mixture as an :class:`mcem.Model` with exact EM extras.

    Parameters
    ----------
    X : array (N, d)
    n_components : int
    covariance_type : {"full", "diag", "spherical"}
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
        "diag": C.positive(shape=(K, d)),
        "spherical": C.positive(shape=K),
    }[covariance_type]
    params = {"weights": C.simplex(K), "means": C.real(shape=(K, d)), "covariances": cov_c}
    parts = _Parts(K, Memo(_components, ("weights", "means", "covariances")), np.arange(N))
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
    shift = X.mean(axis=0)
    stats = _stats_from_resp(R, X - shift, covariance_type)
    return _mstep(stats, {"covariance_type": covariance_type, "reg_covar": max(reg_covar, 1e-6), "shift": shift})


class GaussianMixture:
    """A Gaussian mixture fitted by exact EM, MCEM or SAEM, with a scikit-learn-style face.

    Parameters
    ----------
    n_components : int
    covariance_type : {"full", "diag", "spherical"}
    reg_covar : float
        Non-negative regularisation added to the covariance diagonals.
    method : str
        Passed to :func:`mcem.fit` (``"em"`` by default; ``"mcem"``, ``"saem"``, ``"gem"``).
    max_iter : int
        Passed to :func:`mcem.fit`.
    tol : float, optional
        Passed to :func:`mcem.fit`, where it means one thing per kind of method: for exact EM the
        relative change of the log-likelihood, for the Monte Carlo methods the accepted Monte
        Carlo error in standard errors. ``None`` (the default) passes each method its own
        default (``1e-8`` for exact EM, ``0.1`` for MCEM and SAEM), so that switching the method
        never hands a Monte Carlo run the exact-EM tolerance.
    init_params : {"k-means++", "random"}
    weights_init, means_init, covariances_init : array, optional
        User starting values (override ``init_params`` for the ones given).
    rng : None, int or numpy.random.Generator
    fit_options : dict, optional
        Further keyword arguments for :func:`mcem.fit`.

    Attributes
    ----------
    weights_ : ndarray (K,)
        Fitted mixture weights.
    means_ : ndarray (K, d)
        Fitted component means.
    covariances_ : ndarray
        Fitted covariances, shaped by ``covariance_type``.
    converged_ : bool
        Whether the fit met its convergence rule.
    n_iter_ : int
        Number of iterations.
    lower_bound_ : float
        The exact log-likelihood at the fitted parameters.
    result_ : FitResult
        The full result of :func:`mcem.fit`.
    model_ : Model
        The model that was fitted.
    """

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        reg_covar=1e-6,
        method="em",
        max_iter=None,
        tol=None,
        init_params="k-means++",
        weights_init=None,
        means_init=None,
        covariances_init=None,
        rng=None,
        fit_options=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.method = method
        self.max_iter = max_iter
        self.tol = tol
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.covariances_init = covariances_init
        self.rng = rng
        self.fit_options = fit_options

    def _theta0(self, X, rng):
        check_choice(self.init_params, "init_params", {"k-means++", "random"})
        if self.init_params == "k-means++":
            theta = initial_params(X, self.n_components, self.covariance_type, self.reg_covar, rng)
        else:
            N = X.shape[0]
            R = rng.dirichlet(np.ones(self.n_components), size=N)
            shift = X.mean(axis=0)
            theta = _mstep(
                _stats_from_resp(R, X - shift, self.covariance_type),
                {"covariance_type": self.covariance_type, "reg_covar": max(self.reg_covar, 1e-6), "shift": shift},
            )
        for key, given in [
            ("weights", self.weights_init),
            ("means", self.means_init),
            ("covariances", self.covariances_init),
        ]:
            if given is not None:
                theta[key] = np.array(given, dtype=float)
        return theta

    def fit(self, X, y=None):
        """Fit the mixture to X (n_samples, n_features); returns self."""
        X = _check_X(X)
        K = check_positive_int(self.n_components, "n_components")
        fit_options = check_mapping(self.fit_options, "fit_options")
        rng = as_generator(self.rng)
        init_rng, fit_rng = rng.spawn(2)
        model = gaussian_mixture(X, K, self.covariance_type, self.reg_covar)
        theta0 = self._theta0(X, init_rng)
        res = _fit(
            model,
            theta0,
            method=self.method,
            max_iter=self.max_iter,
            tol=self.tol,
            rng=fit_rng,
            **fit_options,
        )
        self.model_ = model
        self.result_ = res
        self.weights_ = res.params["weights"]
        self.means_ = res.params["means"]
        self.covariances_ = res.params["covariances"]
        self.converged_ = res.converged
        self.n_iter_ = res.n_iter
        self.n_features_in_ = X.shape[1]
        self.lower_bound_ = model.exact_loglik(res.params)
        return self

    def _check_fitted(self):
        if not hasattr(self, "weights_"):
            raise RuntimeError("this GaussianMixture is not fitted yet; call fit(X) first")

    def _comp(self, X):
        self._check_fitted()
        X = _check_X(X, d=self.n_features_in_)
        return component_log_density(X, self.weights_, self.means_, self.covariances_, self.covariance_type)

    def score_samples(self, X):
        """Log density of every sample under the fitted mixture, shape (n_samples,)."""
        return logsumexp(self._comp(X), axis=1)

    def score(self, X, y=None):
        """Mean log-likelihood per sample."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X):
        """Posterior component probabilities (responsibilities), shape (n_samples, K)."""
        lp = self._comp(X)
        return np.exp(lp - logsumexp(lp, axis=1, keepdims=True))

    def predict(self, X):
        """The most probable component of every sample."""
        return np.argmax(self._comp(X), axis=1)

    def _n_parameters(self):
        K, d = self.means_.shape
        cov = {"full": K * d * (d + 1) // 2, "diag": K * d, "spherical": K}[self.covariance_type]
        return cov + K * d + K - 1

    def bic(self, X):
        """Bayesian information criterion on X (lower is better)."""
        X = _check_X(X, d=getattr(self, "n_features_in_", None))
        return -2.0 * self.score(X) * X.shape[0] + self._n_parameters() * np.log(X.shape[0])

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        X = _check_X(X, d=getattr(self, "n_features_in_", None))
        return -2.0 * self.score(X) * X.shape[0] + 2 * self._n_parameters()

    def __repr__(self):
        return (
            f"GaussianMixture(n_components={self.n_components}, covariance_type={self.covariance_type!r}, "
            f"method={self.method!r})"
        )

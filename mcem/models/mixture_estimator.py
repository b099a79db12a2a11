"""The Gaussian mixture as a scikit-learn estimator: :class:`GaussianMixture`.

It has the parameters, attributes and methods of :class:`sklearn.mixture.GaussianMixture`, with
their meanings, and fits the model of :func:`mcem.models.gaussian_mixture` with any method of
:func:`mcem.fit`: exact EM (the default, which reproduces scikit-learn's estimates from the same
start), MCEM, SAEM, VB-EM or GEM. ``tol`` is scikit-learn's, a per-sample log-likelihood, and is
translated for each method (see the class docstring).
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.cluster import KMeans
from sklearn.cluster import kmeans_plusplus as _sk_kmeans_plusplus
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import (as_generator, check_bool, check_choice, check_mapping, check_positive_float,
                           check_positive_int)
from ..fit import fit as _fit
from ..history import History
from ..result import FitResult
from .mixture import (COVARIANCE_TYPES, _check_start, _check_weights, _check_X, _covariances_from_precisions,
                      component_log_density, gaussian_mixture, params_from_resp, precision_cholesky)

__all__ = ["GaussianMixture", "METHODS", "INIT_PARAMS"]

#: The fitting methods of the estimator (``method=``), all of :func:`mcem.fit`'s but "auto".
METHODS = ("em", "mcem", "saem", "vbem", "gem")
#: The starts of scikit-learn (``init_params=``).
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
#: What ``fit_options`` may not hold: the estimator sets these itself.
_OWN_OPTIONS = {"method": "its parameter method", "max_iter": "its parameter max_iter",
                "tol": "its parameter tol (translated for each method)", "rng": "its parameter random_state (or rng)",
                "theta0": "its parameters weights_init, means_init and precisions_init", "model": "X"}
#: The smallest diagonal of a starting covariance (a start's singleton cluster is not singular).
_START_FLOOR = 1e-6


def _nearest(X, centres, chosen=None):
    """One-hot responsibilities of the nearest centre; ``chosen`` rows (the centres' own points)
    keep their own component, so that no component starts empty."""
    d2 = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * X @ centres.T + np.einsum("ij,ij->i", centres, centres)[None, :]
    labels = np.argmin(d2, axis=1)
    if chosen is not None:
        labels[chosen] = np.arange(len(chosen))
    R = np.zeros((X.shape[0], centres.shape[0]))
    R[np.arange(X.shape[0]), labels] = 1.0
    return R


def _seed(rng):
    return int(rng.integers(np.iinfo(np.int32).max))


def start_responsibilities(X, n_components, init_params, rng):
    """The starting responsibilities (n_samples, K) of ``init_params`` (scikit-learn's choices).

    ``"kmeans"``: the labels of :class:`sklearn.cluster.KMeans` (one run); ``"k-means++"``: the
    k-means++ centres of :func:`sklearn.cluster.kmeans_plusplus`, every point assigned to the
    nearest; ``"random_from_data"``: K distinct data points as centres, every point assigned to
    the nearest; ``"random"``: uniform random responsibilities, normalised. (scikit-learn gives
    only the K chosen points a responsibility and starts from covariances ``reg_covar``; its
    first E step then assigns every point to the nearest centre, which is the start here.)
    """
    K = n_components
    if init_params == "kmeans":
        labels = KMeans(n_clusters=K, n_init=1, random_state=_seed(rng)).fit(X).labels_
        R = np.zeros((X.shape[0], K))
        R[np.arange(X.shape[0]), labels] = 1.0
        return R
    if init_params == "random":
        R = rng.random((X.shape[0], K))
        return R / R.sum(axis=1, keepdims=True)
    if init_params == "k-means++":
        centres, idx = _sk_kmeans_plusplus(X, K, random_state=_seed(rng))
    else:
        idx = rng.choice(X.shape[0], size=K, replace=False)
        centres = X[idx]
    return _nearest(X, centres, idx)


class _Monitor:
    """The per-iteration callback of one fit: scikit-learn's stopping rule (the per-sample
    log-likelihood gain below ``tol``) for the exact methods, the verbose lines, and the user's
    own callback from ``fit_options``."""

    def __init__(self, n, tol, rule, verbose, interval, ll0, user=None):
        self.n, self.tol, self.rule = n, tol, rule
        self.verbose, self.interval, self.user = verbose, interval, user
        self.prev, self.met, self.gain = ll0, False, np.nan
        self.t_init = self.t_iter = time.perf_counter()

    def __call__(self, row):
        ll = float(row.get("loglik", np.nan))
        it = int(row["iter"])
        change = (ll - self.prev) / self.n
        self.prev = ll
        if self.verbose and it % self.interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {it}")
            else:
                now = time.perf_counter()
                print(f"  Iteration {it}\t time lapse {now - self.t_iter:.5f}s\t ll change {change:.5f}")
                self.t_iter = now
        met = self.rule and bool(abs(change) < self.tol)
        if met:
            self.met, self.gain = True, change
        asked = bool(self.user(row)) if self.user is not None else False
        return met or asked

    def end(self, converged, lower_bound):
        if self.verbose == 1:
            print(f"Initialization {'converged' if converged else 'did not converge'}.")
        elif self.verbose >= 2:
            print(f"Initialization {'converged' if converged else 'did not converge'}. time lapse "
                  f"{time.perf_counter() - self.t_init:.5f}s\t lower bound {lower_bound:.5f}.")


class GaussianMixture(DensityMixin, BaseEstimator):
    """A Gaussian mixture fitted by exact EM, MCEM, SAEM, VB-EM or GEM: a scikit-learn estimator.

    The parameters, attributes and methods are those of :class:`sklearn.mixture.GaussianMixture`
    with their meanings, plus ``method``, ``fit_options``, ``rng`` and the attributes
    ``result_`` and ``model_``. With ``method="em"`` and the same start (``weights_init``,
    ``means_init``, ``precisions_init``) the estimates are scikit-learn's.

    **The tolerance.** ``tol`` is scikit-learn's: a per-sample log-likelihood (default 1e-3).
    Exact EM, and VB-EM and GEM with their exact E step (the categorical q of the labels is their
    exact posterior), stop when the per-sample log-likelihood gain of an iteration is below
    ``tol``, as scikit-learn does. The Monte Carlo methods stop when their Monte Carlo error
    costs at most ``tol`` per sample in expected log-likelihood: an error of d standard errors
    costs about d^2 / 2 in total log-likelihood near the maximum, so they get
    :func:`mcem.fit`'s ``tol`` (in standard errors) ``min(sqrt(2 * n_samples * tol), 0.1)``,
    never looser than mcem's default 0.1. ``result_.settings`` records the rule used:
    ``"tol_per_sample"`` (this ``tol``) and ``"tol"`` (the one the rule applied, in its units).

    A fit that does not converge (``max_iter``, a degenerate estimate) issues mcem's
    :class:`~mcem.ConvergenceWarning`; of several starts only the kept fit's warnings are issued.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        One general covariance per component, one shared by all, one diagonal per component,
        or one variance per component.
    tol : float, default=1e-3
        The convergence threshold, a per-sample log-likelihood (see above).
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonal of the covariances by the closed-form
        M step (exact EM, and MCEM and SAEM by default); the numerical M steps (VB-EM, GEM,
        ``fit_options={"mstep": "numerical"}``) maximise the likelihood itself, without it.
    max_iter : int, default=100
        The iteration cap of every fit (0: the start is the result). SAEM usually needs more
        (its burn-in and averaging; e.g. ``max_iter=1000``).
    n_init : int, default=1
        The number of starts; the fit with the largest log-likelihood is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How the start is drawn (:func:`start_responsibilities`): k-means labels, k-means++
        centres or random data points with every point assigned to the nearest, or random
        responsibilities; the start is the M step from those responsibilities, with
        ``max(reg_covar, 1e-6)`` added to the covariance diagonals.
    weights_init : array of shape (n_components,), optional
        The starting weights (in [0, 1], summing to 1).
    means_init : array of shape (n_components, n_features), optional
        The starting means.
    precisions_init : array, optional
        The starting precisions (inverse covariances), shaped by ``covariance_type``:
        ``(n_components,)`` spherical, ``(n_features, n_features)`` tied, ``(n_components,
        n_features)`` diag, ``(n_components, n_features, n_features)`` full.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        The only source of randomness: the starts, the Monte Carlo methods and :meth:`sample`
        (an int gives the same draws every call, as in scikit-learn).
    warm_start : bool, default=False
        Start the next ``fit`` from the current estimates (then ``n_init`` is ignored).
    verbose : int, default=0
        1 prints the starts and the iterations, 2 also the time and the per-sample
        log-likelihood change of an iteration.
    verbose_interval : int, default=10
        Iterations between two printed lines.
    method : {"em", "mcem", "saem", "vbem", "gem"}, default="em"
        The fitting method of :func:`mcem.fit`.
    fit_options : dict, optional
        Further keyword arguments for :func:`mcem.fit` (for example ``sampler`` or ``m_max``
        of MCEM; a ``callback`` is called after the estimator's own). A ``stop`` rule other than
        MCEM's and SAEM's ``"precision"`` keeps its own default ``tol``.
    rng : None, int or numpy.random.Generator
        Another name of ``random_state`` (mcem's name); give at most one of the two.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        Shaped by ``covariance_type`` (as ``precisions_init``).
    precisions_ : ndarray
        The inverse covariances, shaped by ``covariance_type``.
    precisions_cholesky_ : ndarray
        Upper-triangular P with ``P @ P.T == precisions_`` ("full", "tied"; per component), or
        the inverse standard deviations ("diag", "spherical").
    converged_ : bool
        Whether the kept fit met its convergence rule (an estimate at the edge of the parameter
        space, a collapsed component, is not converged).
    n_iter_ : int
        The iterations (M steps) of the kept fit; scikit-learn makes one more M step after the
        same test.
    lower_bound_ : float
        The per-sample mean log-likelihood of the training data at the estimates (exact for
        every method; scikit-learn's is at the parameters one M step earlier, within ``tol``).
    lower_bounds_ : ndarray of shape ``(n_iter_,)``
        The per-sample log-likelihood after each iteration of the kept fit.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` was a DataFrame with string column names.
    result_ : FitResult
        The :func:`mcem.fit` result of the kept fit (history, settings, standard errors, ...).
    model_ : Model
        The :func:`mcem.models.gaussian_mixture` model that was fitted.
    """

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        method="em",
        fit_options=None,
        rng=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.method = method
        self.fit_options = fit_options
        self.rng = rng

    # ------------------------------------------------------------------ checks
    def _generator(self):
        if self.random_state is not None and self.rng is not None:
            raise ValueError("random_state and rng are two names of one argument; give one of them, got "
                             f"random_state={self.random_state!r} and rng={self.rng!r}")
        seed = self.random_state if self.random_state is not None else self.rng
        name = "random_state" if self.random_state is not None else "rng"
        if isinstance(seed, np.random.RandomState):  # scikit-learn's generator: it seeds ours (and advances)
            seed = int(seed.randint(np.iinfo(np.int32).max))
        return as_generator(seed, name)

    def _options(self, X):
        """The validated parameters, as a dict; errors name the parameter."""
        n, d = X.shape
        K = check_positive_int(self.n_components, "n_components")
        if n < K:
            raise ValueError(f"X must have at least n_components={K} samples, got {n}")
        cov_type = check_choice(self.covariance_type, "covariance_type", set(COVARIANCE_TYPES))
        verbose = self.verbose
        if isinstance(verbose, bool | np.bool_):
            verbose = int(verbose)
        fit_options = check_mapping(self.fit_options, "fit_options")
        for key, own in _OWN_OPTIONS.items():
            if key in fit_options:
                raise ValueError(f"fit_options must not hold {key!r}: the estimator sets it from {own}")
        user_cb = fit_options.pop("callback", None)
        if user_cb is not None and not callable(user_cb):
            raise TypeError(f"fit_options['callback'] must be callable or None, got {type(user_cb).__name__}")
        opts = dict(
            K=K, cov_type=cov_type,
            tol=check_positive_float(self.tol, "tol", allow_zero=True),
            reg=check_positive_float(self.reg_covar, "reg_covar", allow_zero=True),
            max_iter=check_positive_int(self.max_iter, "max_iter", minimum=0),
            n_init=check_positive_int(self.n_init, "n_init"),
            init_params=check_choice(self.init_params, "init_params", set(INIT_PARAMS)),
            warm_start=check_bool(self.warm_start, "warm_start"),
            verbose=check_positive_int(verbose, "verbose", minimum=0),
            interval=check_positive_int(self.verbose_interval, "verbose_interval"),
            method=check_choice(self.method, "method", set(METHODS)),
            fit_options=fit_options, callback=user_cb,
            weights=None if self.weights_init is None else _check_weights(self.weights_init, K),
            means=None if self.means_init is None else _check_start(
                self.means_init, "means_init", (K, d), "n_components, n_features"),
            covariances=None if self.precisions_init is None else _covariances_from_precisions(
                self.precisions_init, cov_type, K, d),
        )
        opts["rng"] = self._generator()
        return opts

    # ------------------------------------------------------------------ fitting
    def _start(self, X, rng, o):
        """The starting parameters: the user's where given, the ``init_params`` start otherwise."""
        given = {"weights": o["weights"], "means": o["means"], "covariances": o["covariances"]}
        theta = {}
        if any(v is None for v in given.values()):
            R = start_responsibilities(X, o["K"], o["init_params"], rng)
            theta = params_from_resp(X, R, o["cov_type"], max(o["reg"], _START_FLOOR))
        theta.update({k: np.array(v) for k, v in given.items() if v is not None})
        return theta

    def _warm(self, K, d, cov_type):
        theta = {"weights": self.weights_, "means": self.means_, "covariances": self.covariances_}
        shape = {"full": (K, d, d), "tied": (d, d), "diag": (K, d), "spherical": (K,)}[cov_type]
        if self.means_.shape != (K, d) or self.covariances_.shape != shape:
            raise ValueError(f"warm_start: the current estimates (means_ of shape {self.means_.shape}, "
                             f"covariances_ of shape {self.covariances_.shape}) do not fit n_components={K}, "
                             f"covariance_type={cov_type!r} and X with {d} features; fit with warm_start=False")
        return {k: np.array(v) for k, v in theta.items()}

    def _fit_once(self, model, theta0, rng, o, n):
        """One fit from ``theta0``: ``(FitResult, warnings, monitor)``."""
        method, fit_options = o["method"], o["fit_options"]
        exact = method in ("em", "vbem") or (method == "gem" and fit_options.get("estep", "auto") != "mc")
        theta0 = model.check_theta(theta0)
        ll0 = model.exact_loglik(theta0)
        monitor = _Monitor(n, o["tol"], exact, o["verbose"], o["interval"], ll0, o["callback"])
        if exact:
            mc_tol = 0.0  # the relative rule only at an exact fixed point: the monitor applies scikit-learn's
        elif fit_options.get("stop", "precision") == "precision":
            mc_tol = min(math.sqrt(2.0 * n * o["tol"]), 0.1)
        else:
            mc_tol = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if o["max_iter"] == 0:
                res = self._no_iteration(model, theta0, ll0, method)
            else:
                res = _fit(model, theta0, method=method, max_iter=o["max_iter"], tol=mc_tol, rng=rng,
                           callback=monitor, **fit_options)
        res["settings"]["tol_per_sample"] = o["tol"]
        if exact:
            res["settings"]["tol"] = o["tol"]
            res["settings"]["stop"] = "per_sample_gain"
            if monitor.met or res["stopped_by"] == "tol":
                self._per_sample_converged(res, monitor)
        return res, caught, monitor

    @staticmethod
    def _per_sample_converged(res, monitor):
        """The result of an exact fit stopped by scikit-learn's rule: converged unless the estimate
        is degenerate or the log-likelihood decreased (the loop's notes are kept)."""
        if monitor.met:
            base = f"converged: per-sample log-likelihood gain {monitor.gain:.3g} below tol={monitor.tol:g}"
        else:  # the method's own rule with tol 0: no change at all
            base = "converged: per-sample log-likelihood gain 0 (a fixed point in floating point)"
        _, sep, rest = res["message"].partition("; ")  # the first clause says why the run stopped
        msg = base + sep + rest
        decreased = np.nansum(res["history"]["decreased"]) > 0 if "decreased" in res["history"].columns else False
        res["message"] = msg
        res["stopped_by"] = "likelihood_decrease" if decreased else "tol"  # as exact EM reports it
        res["converged"] = not res["degenerate"] and not decreased

    @staticmethod
    def _no_iteration(model, theta0, ll0, method):
        """The result of ``max_iter=0``: the start itself."""
        params = {k: np.array(v) for k, v in theta0.items()}
        res = FitResult(
            params=params, converged=False, n_iter=0, message="max_iter=0: the result is the start",
            stopped_by="max_iter", method=method, loglik=ll0,
            history=History([{"iter": 0, "params": params, "loglik": ll0, "seconds": 0.0}]), seconds=0.0,
            settings={"method": method, "max_iter": 0}, model_name=model.name, degenerate=[],
        )
        object.__setattr__(res, "_model", model)  # as a result of mcem.fit: for standard errors
        return res

    def fit(self, X, y=None):
        """Fit the mixture to ``X`` (n_samples, n_features) ``n_init`` times and keep the fit of
        largest log-likelihood; ``y`` is ignored. Returns self."""
        self.fit_predict(X, y)
        return self

    def fit_predict(self, X, y=None):
        """Fit as :meth:`fit` and return the most probable component of every sample of ``X``."""
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        o = self._options(X)
        X = _check_X(X)
        n, d = X.shape
        warm = o["warm_start"] and hasattr(self, "converged_")
        streams = o["rng"].spawn(1 if warm else o["n_init"])
        model, best = None, None
        for i, stream in enumerate(streams):
            init_rng, fit_rng = stream.spawn(2)
            if o["verbose"]:
                print(f"Initialization {i}")
            theta0 = self._warm(o["K"], d, o["cov_type"]) if warm else self._start(X, init_rng, o)
            if model is None:
                model = gaussian_mixture(X, o["K"], o["cov_type"], o["reg"], init=theta0)
            res, caught, monitor = self._fit_once(model, theta0, fit_rng, o, n)
            lower = res["loglik"] / n
            monitor.end(res["converged"], lower)
            if best is None or lower > best[1]:
                best = (res, lower, caught)
        res, lower, caught = best
        for w in caught:  # the warnings of the kept fit only
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        p = res["params"]
        self.weights_, self.means_, self.covariances_ = p["weights"], p["means"], p["covariances"]
        self.precisions_cholesky_, _ = precision_cholesky(self.covariances_, o["cov_type"])
        self.precisions_ = (self.precisions_cholesky_ @ np.swapaxes(self.precisions_cholesky_, -1, -2)
                            if o["cov_type"] in ("full", "tied") else self.precisions_cholesky_**2)
        self.converged_ = bool(res["converged"])
        self.n_iter_ = int(res["n_iter"])
        self.lower_bound_ = float(lower)
        self.lower_bounds_ = res["history"]["loglik"][1:] / n
        self.result_ = res
        self.model_ = model
        return np.argmax(component_log_density(X, self.weights_, self.means_, self.covariances_, o["cov_type"]),
                         axis=1)

    # ------------------------------------------------------------------ prediction
    def _weighted_log_prob(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return component_log_density(X, self.weights_, self.means_, self.covariances_, self.covariance_type)

    def score_samples(self, X):
        """The log density of every sample of ``X`` under the fitted mixture, shape (n_samples,)."""
        return logsumexp(self._weighted_log_prob(X), axis=1)

    def score(self, X, y=None):
        """The mean log-likelihood per sample of ``X`` (``y`` is ignored)."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X):
        """The posterior probabilities of the components (responsibilities), (n_samples, K)."""
        lp = self._weighted_log_prob(X)
        return np.exp(lp - logsumexp(lp, axis=1, keepdims=True))

    def predict(self, X):
        """The most probable component of every sample of ``X``."""
        return np.argmax(self._weighted_log_prob(X), axis=1)

    def sample(self, n_samples=1):
        """Draw ``n_samples`` points from the fitted mixture: ``(X, y)``, the points sorted by
        their component ``y`` (as scikit-learn does), with ``random_state`` as the source."""
        check_is_fitted(self)
        n_samples = check_positive_int(n_samples, "n_samples")
        rng = self._generator()
        counts = rng.multinomial(n_samples, self.weights_ / self.weights_.sum())
        y = np.repeat(np.arange(len(counts)), counts)
        K, d = self.means_.shape
        z = rng.standard_normal((n_samples, d))
        cov = self.covariances_
        if self.covariance_type == "full":
            noise = np.einsum("nij,nj->ni", np.linalg.cholesky(cov)[y], z)
        elif self.covariance_type == "tied":
            noise = z @ np.linalg.cholesky(cov).T
        elif self.covariance_type == "diag":
            noise = z * np.sqrt(cov)[y]
        else:
            noise = z * np.sqrt(cov)[y, None]
        return self.means_[y] + noise, y

    def _n_parameters(self):
        K, d = self.means_.shape
        cov = {"full": K * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": K * d,
               "spherical": K}[self.covariance_type]
        return cov + K * d + K - 1

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        s = self.score_samples(X)
        return -2.0 * s.sum() + self._n_parameters() * np.log(s.shape[0])

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        return -2.0 * self.score_samples(X).sum() + 2 * self._n_parameters()

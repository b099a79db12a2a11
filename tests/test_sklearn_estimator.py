"""GaussianMixture as a scikit-learn estimator: scikit-learn's own estimator checks, pickling,
clone, GridSearchCV and Pipeline, its parameters and attributes against
sklearn.mixture.GaussianMixture, the tolerance's translations, verbose output, sample, warm
start and bad input."""

import pickle
import re
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import mcem
from mcem.models.mixture import params_from_resp
from mcem.models.mixture_estimator import GaussianMixture

COV_TYPES = ["full", "tied", "diag", "spherical"]


def blobs(seed=0, n=(60, 40), d=2):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-2.0, 1.0, (n[0], d)), rng.normal(2.0, 0.7, (n[1], d))])


def random_start(X, cov_type, seed=1, K=2):
    """A start from random responsibilities (weights exactly [0.5, 0.5]), as the estimator's
    ``*_init`` arguments."""
    rng = np.random.default_rng(seed)
    R = rng.random((len(X), K))
    th = params_from_resp(X, R / R.sum(1, keepdims=True), cov_type, 1e-6)
    cov = th["covariances"]
    prec = np.linalg.inv(cov) if cov_type in ("full", "tied") else 1.0 / cov
    return dict(covariance_type=cov_type, weights_init=np.full(K, 1.0 / K), means_init=th["means"],
                precisions_init=prec)


# ----------------------------------------------------------------------------- scikit-learn's checks
@pytest.mark.parametrize("kwargs", [{}] + [dict(n_components=2, covariance_type=ct) for ct in COV_TYPES],
                         ids=["default"] + COV_TYPES)
def test_check_estimator_passes(kwargs):
    results = check_estimator(GaussianMixture(**kwargs), on_fail=None, on_skip=None)
    failed = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] == "failed"]
    assert not failed, failed
    assert sum(r["status"] == "passed" for r in results) >= 40


def test_pickle_and_joblib_fitted_and_unfitted(tmp_path):
    X = blobs()
    new = blobs(5)
    unfitted = GaussianMixture(2, random_state=0)
    again = pickle.loads(pickle.dumps(unfitted))
    assert again.get_params() == unfitted.get_params()
    est = GaussianMixture(2, covariance_type="tied", random_state=0).fit(X)
    for loaded in (pickle.loads(pickle.dumps(est)), joblib.load(joblib.dump(est, tmp_path / "gm.joblib")[0])):
        for method in ("predict", "predict_proba", "score_samples"):
            np.testing.assert_array_equal(getattr(loaded, method)(new), getattr(est, method)(new))
        assert loaded.lower_bound_ == est.lower_bound_
        np.testing.assert_array_equal(loaded.sample(7)[0], est.sample(7)[0])
        assert loaded.model_.exact_loglik(loaded.result_.params) / len(X) == pytest.approx(est.lower_bound_, rel=1e-14)


def test_clone_gives_the_parameters_and_no_fit():
    X = blobs()
    est = GaussianMixture(3, covariance_type="diag", tol=1e-4, method="em", rng=4, fit_options={"progress": False})
    fitted = clone(est).fit(X)
    copy = clone(fitted)
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "weights_")
    with pytest.raises(NotFittedError):
        copy.predict(X)
    np.testing.assert_array_equal(copy.fit(X).means_, fitted.means_)  # the same seed, the same fit


def test_grid_search_scores_are_the_held_out_mean_log_likelihoods():
    X = blobs(2)
    grid = {"n_components": [1, 2], "covariance_type": ["full", "spherical"]}
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(GaussianMixture(random_state=0), grid, cv=cv).fit(X)
    # the oracle: the same folds fitted and scored by hand
    for i, params in enumerate(search.cv_results_["params"]):
        for j, (train, test) in enumerate(cv.split(X)):
            est = GaussianMixture(random_state=0, **params).fit(X[train])
            want = est.score(X[test])
            assert search.cv_results_[f"split{j}_test_score"][i] == pytest.approx(want, rel=1e-12)
    assert search.best_params_["n_components"] == 2  # two clusters of 50 and 40 points
    assert search.best_estimator_.n_features_in_ == 2


def test_pipeline_scales_then_fits():
    X = blobs(3) * [1.0, 100.0] + [0.0, 5e3]
    pipe = make_pipeline(StandardScaler(), GaussianMixture(2, random_state=0)).fit(X)
    Z = StandardScaler().fit_transform(X)
    alone = GaussianMixture(2, random_state=0).fit(Z)
    np.testing.assert_allclose(pipe[-1].means_, alone.means_, rtol=1e-12)
    np.testing.assert_array_equal(pipe.predict(X), alone.predict(Z))
    np.testing.assert_allclose(pipe.score_samples(X), alone.score_samples(Z), rtol=1e-12)
    np.testing.assert_array_equal(make_pipeline(StandardScaler(), GaussianMixture(2, random_state=0)).fit_predict(X),
                                  alone.predict(Z))


# ----------------------------------------------------------------------------- the same as scikit-learn
@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning", "ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_the_same_iterations_as_scikit_learn_from_the_same_start(cov_type):
    """tol=0, 12 iterations: every attribute and method equals scikit-learn's to rounding."""
    X = mcem.datasets.load_faithful()
    kw = random_start(X, cov_type)
    ours = GaussianMixture(2, tol=0.0, max_iter=12, **kw).fit(X)
    sk = SkGaussianMixture(2, tol=0.0, max_iter=12, **kw).fit(X)
    assert ours.n_iter_ == sk.n_iter_ == 12 and not ours.converged_
    for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        got, want = getattr(ours, attr), getattr(sk, attr)
        assert got.shape == want.shape, attr
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max(), err_msg=attr)
    # scikit-learn's lower bound of iteration t is the log-likelihood before its M step
    np.testing.assert_allclose(ours.lower_bounds_[:-1], sk.lower_bounds_[1:], rtol=1e-12)
    new = blobs(4) * [1.0, 10.0] + [3.5, 70.0]
    for method in ("score_samples", "predict_proba", "predict", "bic", "aic", "score"):
        np.testing.assert_allclose(getattr(ours, method)(new), getattr(sk, method)(new), rtol=1e-9, err_msg=method)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_em_reproduces_scikit_learn_estimates(cov_type):
    """Both run to convergence (tol 1e-10 per sample) from the same start."""
    X = mcem.datasets.load_faithful()
    kw = random_start(X, cov_type, seed=3)
    ours = GaussianMixture(2, tol=1e-10, max_iter=3000, **kw).fit(X)
    sk = SkGaussianMixture(2, tol=1e-10, max_iter=3000, **kw).fit(X)
    assert ours.converged_ and sk.converged_
    for attr in ("weights_", "means_", "covariances_", "precisions_"):
        np.testing.assert_allclose(getattr(ours, attr), getattr(sk, attr), rtol=2e-5, err_msg=attr)
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-10)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_em_with_the_default_tol_stops_where_scikit_learn_stops(cov_type):
    X = mcem.datasets.load_faithful()
    kw = random_start(X, cov_type, seed=5)
    kw["means_init"] = kw["means_init"] + [[-1.0, -10.0], [1.0, 10.0]]  # a start that takes a few iterations
    ours = GaussianMixture(2, **kw).fit(X)
    sk = SkGaussianMixture(2, **kw).fit(X)
    assert ours.converged_ and sk.converged_ and sk.n_iter_ > 3
    assert abs(ours.n_iter_ - sk.n_iter_) <= 1
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-8)
    settings = ours.result_.settings
    assert settings["tol"] == settings["tol_per_sample"] == 1e-3 and settings["stop"] == "per_sample_gain"
    assert ours.result_.stopped_by == "tol" and "below tol=0.001" in ours.result_.message


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
@pytest.mark.parametrize("method, options, exact", [
    ("em", {}, True), ("vbem", {}, True), ("gem", {}, True), ("gem", {"estep": "mc"}, False),
    ("mcem", {}, False), ("saem", {}, False),
])
def test_tol_is_translated_for_each_method(method, options, exact):
    X = blobs(6, n=(30, 20), d=1)
    n = len(X)
    for tol in (1e-3, 1e-6):
        est = GaussianMixture(2, method=method, tol=tol, max_iter=1, random_state=0, fit_options=options).fit(X)
        s = est.result_.settings
        assert s["tol_per_sample"] == tol and s["method"] == method and s["max_iter"] == 1
        want = tol if exact else min(np.sqrt(2 * n * tol), 0.1)
        assert s["tol"] == pytest.approx(want, rel=1e-15), (tol, s["tol"])
        assert (s.get("stop") == "per_sample_gain") == exact


def test_the_kept_fit_of_several_starts_is_the_best():
    X = mcem.datasets.load_faithful()
    one = GaussianMixture(3, init_params="random", random_state=2).fit(X)
    many = GaussianMixture(3, init_params="random", n_init=4, random_state=2, verbose=2)
    many.fit(X)
    assert many.lower_bound_ >= one.lower_bound_  # the first start of both is the same
    assert many.lower_bound_ == pytest.approx(many.score(X), rel=1e-12)


# ----------------------------------------------------------------------------- parameters and attributes
def test_lower_bound_is_the_per_sample_log_likelihood_at_the_estimates():
    X = blobs()
    est = GaussianMixture(2, covariance_type="tied", tol=1e-8, random_state=0).fit(X)
    assert est.lower_bound_ == pytest.approx(est.score(X), rel=1e-13)
    assert est.lower_bounds_.shape == (est.n_iter_,) and est.lower_bounds_[-1] == pytest.approx(est.lower_bound_)
    assert est.result_["loglik"] == pytest.approx(est.lower_bound_ * len(X), rel=1e-13)
    assert est.model_.name.startswith("gaussian_mixture(K=2, tied)")


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_precisions_and_their_cholesky_factors(cov_type):
    est = GaussianMixture(2, covariance_type=cov_type, random_state=0).fit(blobs())
    cov, P, U = est.covariances_, est.precisions_, est.precisions_cholesky_
    if cov_type in ("full", "tied"):
        np.testing.assert_allclose(P @ cov, np.broadcast_to(np.eye(2), cov.shape), atol=1e-12)
        np.testing.assert_allclose(U @ np.swapaxes(U, -1, -2), P, rtol=1e-12)
        assert np.allclose(np.tril(U, -1), 0.0)  # upper triangular, as scikit-learn's
    else:
        np.testing.assert_allclose(P * cov, 1.0, rtol=1e-12)
        np.testing.assert_allclose(U**2, P, rtol=1e-12)


def test_max_iter_zero_keeps_the_start():
    X = blobs()
    kw = random_start(X, "diag")
    est = GaussianMixture(2, max_iter=0, **kw).fit(X)
    np.testing.assert_array_equal(est.means_, kw["means_init"])
    np.testing.assert_allclose(est.precisions_, kw["precisions_init"], rtol=1e-14)
    assert est.n_iter_ == 0 and not est.converged_ and est.lower_bounds_.shape == (0,)
    assert est.lower_bound_ == pytest.approx(est.score(X), rel=1e-13)


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
def test_warm_start_continues_where_the_last_fit_stopped():
    X = mcem.datasets.load_faithful()
    kw = random_start(X, "full")
    ten = GaussianMixture(2, tol=0.0, max_iter=10, **kw).fit(X)
    warm = GaussianMixture(2, tol=0.0, max_iter=5, warm_start=True, **kw)
    warm.fit(X)
    first = warm.means_.copy()
    warm.fit(X)
    assert not np.allclose(first, warm.means_)
    np.testing.assert_allclose(warm.means_, ten.means_, rtol=1e-12)
    np.testing.assert_allclose(warm.covariances_, ten.covariances_, rtol=1e-12)


def test_random_state_and_rng_are_one_argument():
    X = blobs()
    a = GaussianMixture(2, init_params="random_from_data", random_state=7).fit(X)
    b = GaussianMixture(2, init_params="random_from_data", rng=7).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    c = GaussianMixture(2, init_params="random_from_data", random_state=np.random.RandomState(3)).fit(X)
    assert np.isfinite(c.lower_bound_)
    with pytest.raises(ValueError, match=r"random_state and rng are two names of one argument; give one of them"):
        GaussianMixture(2, random_state=1, rng=1).fit(X)


def test_feature_names_from_a_data_frame():
    X = blobs()
    df = pd.DataFrame(X, columns=["a", "b"])
    est = GaussianMixture(2, random_state=0).fit(df)
    np.testing.assert_array_equal(est.feature_names_in_, ["a", "b"])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):  # as scikit-learn warns
        np.testing.assert_array_equal(est.predict(df), est.predict(X))
    assert not hasattr(GaussianMixture(2, random_state=0).fit(X), "feature_names_in_")


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_start_finds_two_separated_clusters(init_params):
    X = blobs(8)
    est = GaussianMixture(2, init_params=init_params, tol=1e-8, max_iter=1000, random_state=1).fit(X)
    assert est.converged_
    order = np.argsort(est.means_[:, 0])
    np.testing.assert_allclose(est.weights_[order], [0.6, 0.4], atol=0.02)
    np.testing.assert_allclose(est.means_[order], [[-2, -2], [2, 2]], atol=0.4)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_sample_draws_from_the_fitted_mixture(cov_type):
    est = GaussianMixture(2, covariance_type=cov_type, random_state=0).fit(blobs(9))
    n = 40_000
    Xs, y = est.sample(n)
    assert Xs.shape == (n, 2) and y.shape == (n,) and np.all(np.diff(y) >= 0)
    np.testing.assert_array_equal(est.sample(n)[0], Xs)  # an int seed: the same draws, as in scikit-learn
    w = np.bincount(y, minlength=2) / n
    assert np.all(np.abs(w - est.weights_) < 4 * np.sqrt(est.weights_ * (1 - est.weights_) / n))
    c = est.covariances_
    cov = {"full": lambda: c, "tied": lambda: np.stack([c] * 2), "diag": lambda: np.stack([np.diag(v) for v in c]),
           "spherical": lambda: c[:, None, None] * np.eye(2)}[cov_type]()
    for k in range(2):
        pts = Xs[y == k]
        se = np.sqrt(np.diag(cov[k]) / len(pts))
        assert np.all(np.abs(pts.mean(0) - est.means_[k]) < 4 * se)
        # the variance of a normal sample has standard error var * sqrt(2 / n)
        np.testing.assert_allclose(np.cov(pts.T), cov[k], atol=4 * np.sqrt(2.0 / len(pts)) * np.diag(cov[k]).max())
    gen = GaussianMixture(2, covariance_type=cov_type, random_state=np.random.default_rng(0)).fit(blobs(9))
    assert not np.array_equal(gen.sample(5)[0], gen.sample(5)[0])  # a Generator advances


def test_verbose_prints_the_lines_of_scikit_learn(capsys):
    X = mcem.datasets.load_faithful()
    kw = random_start(X, "full", seed=5)
    kw["means_init"] = kw["means_init"] + [[-1.0, -10.0], [1.0, 10.0]]
    for verbose in (1, 2):
        GaussianMixture(2, verbose=verbose, verbose_interval=2, **kw).fit(X)
        ours = capsys.readouterr().out.splitlines()
        SkGaussianMixture(2, verbose=verbose, verbose_interval=2, **kw).fit(X)
        theirs = capsys.readouterr().out.splitlines()
        pattern = [r"Initialization 0", r"  Iteration \d+", r"Initialization converged\."] if verbose == 1 else [
            r"Initialization 0", r"  Iteration \d+\t time lapse \d+\.\d{5}s\t ll change -?\d+\.\d{5}",
            r"Initialization converged\. time lapse \d+\.\d{5}s\t lower bound -?\d+\.\d{5}\."]
        for lines in (ours, theirs):
            assert re.fullmatch(pattern[0], lines[0]) and re.fullmatch(pattern[2], lines[-1]), lines
            assert all(re.fullmatch(pattern[1], line) for line in lines[1:-1]), lines
        iters = [int(re.search(r"Iteration (\d+)", line).group(1)) for line in ours[1:-1]]
        assert iters == list(range(2, len(iters) * 2 + 1, 2)) and len(iters) >= 2
        if verbose == 2:  # the per-sample changes: ours are scikit-learn's one iteration later
            ch = [float(line.split("ll change ")[1]) for line in ours[1:-1]]
            est = GaussianMixture(2, **kw).fit(X)
            np.testing.assert_allclose(ch, np.diff(np.r_[est.model_.exact_loglik(est.result_.history[0]["params"])
                                                         / len(X), est.lower_bounds_])[1::2], atol=1e-5)


# ----------------------------------------------------------------------------- bad input
X_OK = blobs(10, n=(6, 4))
X_NAN, X_INF = X_OK.copy(), X_OK.copy()
X_NAN[3, 1], X_INF[2, 0] = np.nan, -np.inf
BAD = [
    (dict(n_components=0), X_OK, ValueError, r"n_components must be an int >= 1, got 0"),
    (dict(n_components=1.5), X_OK, ValueError, r"n_components must be an int >= 1, got 1.5"),
    (dict(covariance_type="ties"), X_OK, ValueError,
     r"covariance_type must be one of \['diag', 'full', 'spherical', 'tied'\], got 'ties'"),
    (dict(init_params="kmeans||"), X_OK, ValueError,
     r"init_params must be one of \['k-means\+\+', 'kmeans', 'random', 'random_from_data'\], got 'kmeans\|\|'"),
    (dict(method="auto"), X_OK, ValueError,
     r"method must be one of \['em', 'gem', 'mcem', 'saem', 'vbem'\], got 'auto'"),
    (dict(tol=-1.0), X_OK, ValueError, r"tol must be a finite non-negative number, got -1.0"),
    (dict(max_iter=-1), X_OK, ValueError, r"max_iter must be an int >= 0, got -1"),
    (dict(n_init=0), X_OK, ValueError, r"n_init must be an int >= 1, got 0"),
    (dict(warm_start="yes"), X_OK, TypeError, r"warm_start must be True or False, got str 'yes'"),
    (dict(verbose_interval=0), X_OK, ValueError, r"verbose_interval must be an int >= 1, got 0"),
    (dict(fit_options={"tol": 0.1}), X_OK, ValueError,
     r"fit_options must not hold 'tol': the estimator sets it from its parameter tol \(translated for each method\)"),
    (dict(n_components=2, weights_init=[0.3, 0.3]), X_OK, ValueError, r"weights_init must sum to 1, got sum 0.6"),
    (dict(n_components=2, weights_init=[1.5, -0.5]), X_OK, ValueError, r"weights_init must lie in \[0, 1\]"),
    (dict(n_components=2, means_init=np.zeros((2, 3))), X_OK, ValueError,
     r"means_init must have shape \(2, 2\) \(n_components, n_features\), got shape \(2, 3\)"),
    (dict(n_components=2, precisions_init=np.eye(2)), X_OK, ValueError,
     r"precisions_init must have shape \(2, 2, 2\) \(n_components, n_features, n_features for "
     r"covariance_type='full'\), got shape \(2, 2\)"),
    (dict(n_components=2, precisions_init=np.stack([np.eye(2), -np.eye(2)])), X_OK, ValueError,
     r"precisions_init must hold symmetric positive-definite matrices for covariance_type='full'; "
     r"precisions_init\[1\] has smallest eigenvalue -1"),
    (dict(n_components=2, covariance_type="tied", precisions_init=[[1.0, 0.5], [0.0, 1.0]]), X_OK, ValueError,
     r"precisions_init must hold symmetric positive-definite matrices for covariance_type='tied'; "
     r"precisions_init is not symmetric"),
    (dict(n_components=2, covariance_type="diag", precisions_init=[[1.0, 0.0], [1.0, 1.0]]), X_OK, ValueError,
     r"precisions_init must be positive for covariance_type='diag', got smallest value 0"),
    (dict(n_components=2, covariance_type="spherical", precisions_init=[1.0, np.nan]), X_OK, ValueError,
     r"precisions_init must be finite, got 1 NaN"),
    (dict(n_components=2, means_init=[["a", "b"], ["c", "d"]]), X_OK, TypeError, r"means_init must be numeric"),
    (dict(n_components=11), X_OK, ValueError, r"X must have at least n_components=11 samples, got 10"),
    (dict(), X_OK[:, 0], ValueError, r"Expected 2D array, got 1D array instead"),
    (dict(), X_OK + 1j, ValueError, r"Complex data not supported"),
    (dict(), X_NAN, ValueError, r"Input X contains NaN"),
    (dict(), X_INF, ValueError, r"Input X contains infinity"),
    (dict(), X_OK[:1], ValueError, r"Found array with 1 sample\(s\) \(shape=\(1, 2\)\) while a minimum of 2"),
]


@pytest.mark.parametrize("kwargs, X, exc, match", BAD, ids=[m[:40] for *_, m in BAD])
def test_bad_input_gets_a_clear_error(kwargs, X, exc, match):
    est = GaussianMixture(**kwargs)
    with pytest.raises(exc, match=match):
        est.fit(X)
    assert all(est.get_params()[k] is v for k, v in kwargs.items())  # the parameters stay as given


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score", "score_samples", "bic", "aic"])
def test_not_fitted_error_before_fit(method):
    with pytest.raises(NotFittedError, match="This GaussianMixture instance is not fitted yet"):
        getattr(GaussianMixture(2), method)(X_OK)


def test_not_fitted_error_before_sample_and_bad_n_samples():
    with pytest.raises(NotFittedError):
        GaussianMixture(2).sample(3)
    est = GaussianMixture(2, random_state=0).fit(X_OK)
    with pytest.raises(ValueError, match=r"n_samples must be an int >= 1, got 0"):
        est.sample(0)
    with pytest.raises(ValueError, match=r"X has 3 features, but GaussianMixture is expecting 2 features as input"):
        est.predict(np.zeros((4, 3)))


def test_user_arrays_are_not_written():
    X = blobs()
    kw = random_start(X, "full")
    before = {k: np.array(v, copy=True) for k, v in kw.items() if k != "covariance_type"}
    X0 = X.copy()
    est = GaussianMixture(2, **kw).fit(X)
    for k, v in before.items():
        np.testing.assert_array_equal(kw[k], v)
        assert getattr(est, k) is kw[k]  # parameters stay as given (scikit-learn's clone needs it)
    np.testing.assert_array_equal(X, X0)


def test_warnings_of_the_kept_fit_only():
    X = mcem.datasets.load_faithful()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GaussianMixture(2, n_init=3, max_iter=2, tol=0.0, random_state=0).fit(X)
    hits = [w for w in caught if issubclass(w.category, mcem.ConvergenceWarning) and "max_iter=2" in str(w.message)]
    assert len(hits) == 1, [str(w.message) for w in caught]

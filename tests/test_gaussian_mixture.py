"""The Gaussian mixture oracle: exact EM against naive reference computations."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp

import mcem
from mcem.models import GaussianMixture, gaussian_mixture
from mcem.models.mixture import initial_params


def make_data(seed, N, K, d, spread=4.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(K, d))
    labels = rng.integers(K, size=N)
    scales = rng.uniform(0.5, 1.5, size=(K, d))
    return centres[labels] + scales[labels] * rng.normal(size=(N, d))


def naive_component_logpdf(X, theta, cov_type):
    """log w_k + log N(x | mu_k, Sigma_k) with scipy, one component at a time."""
    w, mu, cov = theta["weights"], theta["means"], theta["covariances"]
    K, d = mu.shape
    out = np.empty((X.shape[0], K))
    for k in range(K):
        S = {"full": cov[k], "diag": np.diag(cov[k]) if cov.ndim == 2 else None,
             "spherical": cov[k] * np.eye(d) if cov.ndim == 1 else None}[cov_type]
        out[:, k] = np.log(w[k]) + stats.multivariate_normal(mu[k], S).logpdf(X)
    return out


def naive_loglik(X, theta, cov_type):
    return logsumexp(naive_component_logpdf(X, theta, cov_type), axis=1).sum()


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    N=st.integers(30, 200),
    K=st.integers(1, 4),
    d=st.integers(1, 3),
    cov_type=st.sampled_from(["full", "diag", "spherical"]),
)
def test_exact_em_never_decreases_loglik(seed, N, K, d, cov_type):
    X = make_data(seed, N, K, d)
    model = gaussian_mixture(X, K, cov_type, reg_covar=0.0)
    theta0 = initial_params(X, K, cov_type, rng=seed)
    res = mcem.fit(model, theta0, method="em", max_iter=30, tol=0.0, rng=seed)
    ll = res.history["loglik"]
    assert np.all(np.isfinite(ll))
    # A component collapsing onto one point is the mixture likelihood's singularity: there the
    # variance is rounding noise (about 1e-14) and no finite-precision EM can be monotone.
    cov = res.history.params("covariances")
    smallest = np.linalg.eigvalsh(cov).min() if cov_type == "full" else cov.min()
    assume(smallest > 1e-6 * X.var())
    drops = ll[1:] - ll[:-1]
    assert np.all(drops >= -1e-10 * np.abs(ll[:-1])), drops.min()
    # the recorded log-likelihood is the naive one at the recorded parameters
    last = res.history[-1]["params"]
    np.testing.assert_allclose(ll[-1], naive_loglik(X, last, cov_type), rtol=1e-10)


@pytest.mark.parametrize("cov_type", ["full", "diag", "spherical"])
def test_em_fixed_point_solves_score_equations(cov_type):
    X = make_data(3, 400, 3, 2)
    model = gaussian_mixture(X, 3, cov_type, reg_covar=0.0)
    res = mcem.fit(model, initial_params(X, 3, cov_type, rng=3), max_iter=5000, tol=1e-14)
    assert res.converged
    th = res.params
    # naive responsibilities and the mixture score equations at the fixed point
    lp = naive_component_logpdf(X, th, cov_type)
    R = np.exp(lp - logsumexp(lp, axis=1, keepdims=True))
    nk = R.sum(0)
    N, d = X.shape
    np.testing.assert_allclose(th["weights"], nk / N, rtol=1e-6)
    for k in range(3):
        diff = X - th["means"][k]
        np.testing.assert_allclose((R[:, k, None] * diff).sum(0) / nk[k], 0, atol=1e-6)
        scatter = (R[:, k, None] * diff).T @ diff / nk[k]
        expect = {"full": scatter, "diag": np.diag(scatter),
                  "spherical": np.trace(scatter) / d}[cov_type]
        np.testing.assert_allclose(th["covariances"][k], expect, rtol=1e-5, atol=1e-8)
    # and the gradient of the naive log-likelihood in the unconstrained coordinates vanishes
    u0 = model.to_unconstrained(th)
    h = 1e-5
    grad = np.array([
        (naive_loglik(X, model.from_unconstrained(u0 + h * e), cov_type)
         - naive_loglik(X, model.from_unconstrained(u0 - h * e), cov_type)) / (2 * h)
        for e in np.eye(u0.size)
    ])
    assert np.max(np.abs(grad)) < 1e-3 * N, grad


def test_estimator_predict_score_match_direct_computation():
    X = make_data(5, 300, 2, 2)
    gm = GaussianMixture(2, rng=0).fit(X)
    theta = {"weights": gm.weights_, "means": gm.means_, "covariances": gm.covariances_}
    lp = naive_component_logpdf(X, theta, "full")
    ref = logsumexp(lp, axis=1)
    np.testing.assert_allclose(gm.score_samples(X), ref, rtol=1e-10)
    np.testing.assert_allclose(gm.score(X), ref.mean(), rtol=1e-10)
    np.testing.assert_allclose(gm.predict_proba(X), np.exp(lp - ref[:, None]), atol=1e-10)
    np.testing.assert_array_equal(gm.predict(X), lp.argmax(1))
    n_par = 2 * 3 + 2 * 2 + 1
    np.testing.assert_allclose(gm.bic(X), -2 * ref.sum() + n_par * np.log(300), rtol=1e-12)
    np.testing.assert_allclose(gm.aic(X), -2 * ref.sum() + 2 * n_par, rtol=1e-12)
    np.testing.assert_allclose(gm.lower_bound_, ref.sum(), rtol=1e-10)
    assert gm.converged_ and gm.n_iter_ >= 1


def test_far_away_points_do_not_underflow():
    X = make_data(7, 200, 2, 2)
    gm = GaussianMixture(2, rng=1).fit(X)
    far = np.array([[1e4, -1e4], [3e3, 0.0]])
    s = gm.score_samples(far)
    assert np.all(np.isfinite(s)) and np.all(s < -1e5)
    p = gm.predict_proba(far)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert np.all(np.isfinite(p))


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
def test_same_seed_same_fit_and_input_untouched():
    X = make_data(8, 150, 3, 2)
    X_copy = X.copy()
    a = GaussianMixture(3, rng=11).fit(X)
    b = GaussianMixture(3, rng=11).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(X, X_copy)
    c = GaussianMixture(3, init_params="random", rng=2).fit(X)
    assert np.isfinite(c.lower_bound_)


def test_k_means_plus_plus_uses_rng_only():
    X = make_data(9, 100, 3, 2)
    np.random.seed(0)
    t1 = initial_params(X, 3, rng=4)
    np.random.seed(1)
    t2 = initial_params(X, 3, rng=4)
    np.testing.assert_array_equal(t1["means"], t2["means"])


def test_gaussian_mixture_bad_input():
    X = make_data(1, 50, 2, 2)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"X must be finite, got 1 NaN"):
        gaussian_mixture(bad, 2)
    with pytest.raises(ValueError, match=r"X must be 2-D"):
        gaussian_mixture(X[None], 2)
    with pytest.raises(ValueError, match="X is empty"):
        gaussian_mixture(np.zeros((0, 2)), 2)
    with pytest.raises(ValueError, match="n_components must be an int >= 1, got 0"):
        gaussian_mixture(X, 0)
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        gaussian_mixture(X, 2, "tied")
    with pytest.raises(ValueError, match="reg_covar must be a finite non-negative"):
        gaussian_mixture(X, 2, reg_covar=-1)
    with pytest.raises(TypeError, match="X must be a numeric array"):
        gaussian_mixture(np.array([["a", "b"]]), 2)
    gm = GaussianMixture(2, rng=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        gm.predict(X)
    gm.fit(X)
    with pytest.raises(ValueError, match="must have 2 features"):
        gm.predict(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="init_params must be one of"):
        GaussianMixture(2, init_params="kmeans").fit(X)


@pytest.mark.parametrize("method", ["mcem", "saem"])
def test_estimator_with_a_monte_carlo_method_stops_by_its_own_rule(method):
    """The estimator passes no exact-EM tolerance to a Monte Carlo method: with the method and a
    seed as the only settings the fit stops by its rule, within 0.3 standard errors of exact EM."""
    X = mcem.datasets.load_faithful()
    exact = GaussianMixture(2, rng=0).fit(X)
    mc = GaussianMixture(2, method=method, rng=0).fit(X)
    assert exact.converged_ and mc.converged_ and mc.result_.stopped_by == "tol", mc.result_.message
    assert mc.result_.settings["tol"] == 0.1 and exact.result_.settings["tol"] == 1e-8
    se = exact.result_.standard_errors()
    # the same seed gives the same k-means++ start, so the components carry the same labels
    for got, want, s in [(mc.means_, exact.means_, se["means"]), (mc.weights_, exact.weights_, se["weights"])]:
        assert np.all(np.abs(got - want) < 0.3 * s), (got, want, s)

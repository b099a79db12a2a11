"""The Gaussian mixture oracle: exact EM against naive reference computations, and the
estimator's Monte Carlo methods against exact EM (the scikit-learn face is in
test_sklearn_estimator.py)."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp

import mcem
from mcem.models.mixture import gaussian_mixture, initial_params, params_from_resp
from mcem.models.mixture_estimator import GaussianMixture


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
        S = {"full": lambda: cov[k], "tied": lambda: cov, "diag": lambda: np.diag(cov[k]),
             "spherical": lambda: cov[k] * np.eye(d)}[cov_type]()
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
    cov_type=st.sampled_from(["full", "tied", "diag", "spherical"]),
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
    smallest = np.linalg.eigvalsh(cov).min() if cov_type in ("full", "tied") else cov.min()
    assume(smallest > 1e-6 * X.var())
    drops = ll[1:] - ll[:-1]
    assert np.all(drops >= -1e-10 * np.abs(ll[:-1])), drops.min()
    # the recorded log-likelihood is the naive one at the recorded parameters
    last = res.history[-1]["params"]
    np.testing.assert_allclose(ll[-1], naive_loglik(X, last, cov_type), rtol=1e-10)


@pytest.mark.parametrize("cov_type", ["full", "tied", "diag", "spherical"])
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
    pooled = np.zeros((d, d))
    for k in range(3):
        diff = X - th["means"][k]
        np.testing.assert_allclose((R[:, k, None] * diff).sum(0) / nk[k], 0, atol=1e-6)
        scatter = (R[:, k, None] * diff).T @ diff / nk[k]
        pooled += nk[k] * scatter / N
        if cov_type != "tied":
            expect = {"full": scatter, "diag": np.diag(scatter), "spherical": np.trace(scatter) / d}[cov_type]
            np.testing.assert_allclose(th["covariances"][k], expect, rtol=1e-5, atol=1e-8)
    if cov_type == "tied":  # one covariance: the within-component scatter pooled over the components
        np.testing.assert_allclose(th["covariances"], pooled, rtol=1e-5, atol=1e-8)
    # and the gradient of the naive log-likelihood in the unconstrained coordinates vanishes
    u0 = model.to_unconstrained(th)
    h = 1e-5
    grad = np.array([
        (naive_loglik(X, model.from_unconstrained(u0 + h * e), cov_type)
         - naive_loglik(X, model.from_unconstrained(u0 - h * e), cov_type)) / (2 * h)
        for e in np.eye(u0.size)
    ])
    assert np.max(np.abs(grad)) < 1e-3 * N, grad


@pytest.mark.parametrize("cov_type", ["full", "tied", "diag", "spherical"])
def test_estimator_predict_score_match_direct_computation(cov_type):
    X = make_data(5, 300, 2, 2)
    gm = GaussianMixture(2, covariance_type=cov_type, rng=0).fit(X)
    theta = {"weights": gm.weights_, "means": gm.means_, "covariances": gm.covariances_}
    lp = naive_component_logpdf(X, theta, cov_type)
    ref = logsumexp(lp, axis=1)
    np.testing.assert_allclose(gm.score_samples(X), ref, rtol=1e-10)
    np.testing.assert_allclose(gm.score(X), ref.mean(), rtol=1e-10)
    np.testing.assert_allclose(gm.predict_proba(X), np.exp(lp - ref[:, None]), atol=1e-10)
    np.testing.assert_array_equal(gm.predict(X), lp.argmax(1))
    n_cov = {"full": 2 * 3, "tied": 3, "diag": 2 * 2, "spherical": 2}[cov_type]
    n_par = n_cov + 2 * 2 + 1
    np.testing.assert_allclose(gm.bic(X), -2 * ref.sum() + n_par * np.log(300), rtol=1e-12)
    np.testing.assert_allclose(gm.aic(X), -2 * ref.sum() + 2 * n_par, rtol=1e-12)
    np.testing.assert_allclose(gm.lower_bound_, ref.mean(), rtol=1e-10)  # per sample, as scikit-learn's
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
    with pytest.raises(ValueError, match=r"covariance_type must be one of \['diag', 'full', 'spherical', 'tied'\]"):
        gaussian_mixture(X, 2, "pooled")
    with pytest.raises(ValueError, match="reg_covar must be a finite non-negative"):
        gaussian_mixture(X, 2, reg_covar=-1)
    with pytest.raises(TypeError, match="X must be a numeric array"):
        gaussian_mixture(np.array([["a", "b"]]), 2)


def test_tied_density_statistics_and_m_step_against_naive_formulas():
    X = make_data(11, 120, 3, 3)
    rng = np.random.default_rng(0)
    R = rng.dirichlet(np.ones(3), size=len(X))
    th = params_from_resp(X, R, "tied", 0.01)
    nk = R.sum(0) + 10 * np.finfo(float).eps
    means = R.T @ X / nk[:, None]
    pooled = sum((R[:, k, None] * (X - means[k])).T @ (X - means[k]) for k in range(3)) / nk.sum()
    np.testing.assert_allclose(th["weights"], nk / nk.sum(), rtol=1e-12)
    np.testing.assert_allclose(th["means"], means, rtol=1e-10)
    np.testing.assert_allclose(th["covariances"], pooled + 0.01 * np.eye(3), rtol=1e-10)
    model = gaussian_mixture(X, 3, "tied")
    np.testing.assert_allclose(model.exact_loglik(th), naive_loglik(X, th, "tied"), rtol=1e-12)
    assert model.params["covariances"].shape == (3, 3)
    with pytest.raises(ValueError, match=r"theta0\['covariances'\]"):
        mcem.fit(model, {**th, "covariances": -np.eye(3)})


def _faithful_fits(method, **kw):
    X = mcem.datasets.load_faithful()
    exact = GaussianMixture(2, tol=1e-10, max_iter=1000, rng=0).fit(X)
    mc = GaussianMixture(2, method=method, rng=0, **kw).fit(X)
    return X, exact, mc


@pytest.mark.parametrize("method, max_iter", [("mcem", 100), ("saem", 400)])
def test_monte_carlo_methods_agree_with_exact_em_within_their_monte_carlo_error(method, max_iter):
    """The default tol (1e-3 per sample) gives the Monte Carlo rule 0.1 standard errors; the fit
    stops within its reported Monte Carlo error of exact EM's fixed point: 4 of its standard
    deviations (``mc_ratio`` standard errors) plus the distance the rule still allows (tol / 2)."""
    X, exact, mc = _faithful_fits(method, max_iter=max_iter)
    res = mc.result_
    assert exact.converged_ and mc.converged_ and res.stopped_by == "tol", res.message
    assert res.settings["tol"] == 0.1 and res.settings["tol_per_sample"] == 1e-3
    assert 0 < res["mc_ratio"] <= 0.1
    allowed = 4 * res["mc_ratio"] + res.settings["tol"] / 2
    se = exact.result_.standard_errors()
    # the same seed gives the same k-means start, so the components carry the same labels
    for name, got, want in [("means", mc.means_, exact.means_), ("weights", mc.weights_, exact.weights_),
                            ("covariances", mc.covariances_, exact.covariances_)]:
        err = np.abs(got - want) / se[name]
        assert np.all(err < allowed), (name, err, allowed)
    # exact EM's estimate is the maximum: the Monte Carlo one is below it, by less than tol per sample
    assert 0 <= exact.lower_bound_ - mc.lower_bound_ < 1e-3


def test_vbem_is_exact_em_on_the_mixture():
    """The categorical q holds the exact posterior, so VB-EM's iterations are EM's, with the M step
    solved numerically (without reg_covar: it maximises the likelihood itself): the same path of
    iterates, to the precision of the numerical M step."""
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(-2.5, 1.0, (35, 1)), rng.normal(2.0, 0.8, (25, 1))])
    kw = dict(covariance_type="diag", tol=1e-10, reg_covar=0.0, weights_init=[0.5, 0.5], means_init=[[-0.5], [0.5]],
              precisions_init=[[0.5], [0.5]])
    em = GaussianMixture(2, **kw).fit(X)
    vb = GaussianMixture(2, method="vbem", **kw).fit(X)
    assert em.converged_ and vb.converged_ and vb.result_.settings["stop"] == "per_sample_gain"
    assert vb.n_iter_ == em.n_iter_ > 5
    assert vb.lower_bound_ == pytest.approx(em.lower_bound_, rel=1e-12)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(vb.result_.history.params(name), em.result_.history.params(name), rtol=1e-6,
                                   err_msg=name)
    np.testing.assert_allclose(vb.lower_bounds_, em.lower_bounds_, rtol=1e-7)  # first order in those errors
    assert vb.result_["kl"]["value"] == 0.0

"""The Gaussian hidden Markov model: Baum-Welch against a reference EM written here as plain loops
over time, the log-likelihood against enumeration of every path, and the exact sampler against
the smoothed marginals."""

import itertools
import pickle

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import mcem
from mcem.kernels.ffbs import forward_backward
from mcem.models.hmm import gaussian_hmm, initial_params


def simulate(rng, T, A, mu, sigma):
    K = len(mu)
    s = np.empty(T, dtype=int)
    s[0] = rng.integers(K)
    for t in range(1, T):
        s[t] = rng.choice(K, p=A[s[t - 1]])
    return mu[s] + sigma[s] * rng.normal(size=T)


A_TRUE = np.array([[0.9, 0.07, 0.03], [0.1, 0.85, 0.05], [0.05, 0.05, 0.9]])
MU_TRUE = np.array([-2.0, 0.0, 2.5])
SIGMA_TRUE = np.array([0.6, 0.5, 0.8])


def reference_em_step(y, A, mu, sigma):
    """One Baum-Welch iteration with the textbook scaled forward-backward (uniform start).
    Returns the new (A, mu, sigma) and the log-likelihood at the old parameters."""
    T, K = len(y), len(mu)
    E = stats.norm.pdf(y[:, None], mu[None, :], sigma[None, :])
    alpha, c = np.zeros((T, K)), np.zeros(T)
    a = np.full(K, 1.0 / K) * E[0]
    c[0] = a.sum()
    alpha[0] = a / c[0]
    for t in range(1, T):
        a = (alpha[t - 1] @ A) * E[t]
        c[t] = a.sum()
        alpha[t] = a / c[t]
    beta = np.ones((T, K))
    for t in range(T - 2, -1, -1):
        beta[t] = A @ (E[t + 1] * beta[t + 1]) / c[t + 1]
    gamma = alpha * beta
    xi = np.zeros((K, K))
    for t in range(T - 1):
        xi += alpha[t][:, None] * A * (E[t + 1] * beta[t + 1])[None, :] / c[t + 1]
    n = gamma.sum(0)
    new_mu = gamma.T @ y / n
    new_sigma = np.sqrt((gamma * (y[:, None] - new_mu) ** 2).sum(0) / n)
    return xi / xi.sum(1, keepdims=True), new_mu, new_sigma, np.log(c).sum()


@pytest.fixture(scope="module")
def data():
    return simulate(np.random.default_rng(0), 120, A_TRUE, MU_TRUE, SIGMA_TRUE)


def em_step(model, theta):
    stats_, ll = model.exact_estep_fn(theta, model.data)
    return model.mstep_fn(stats_, model.data), ll


def test_baum_welch_matches_the_reference_em(data):
    model = gaussian_hmm(data, 3)
    theta = dict(model.init)
    A, mu, sigma = theta["A"], theta["mu"], theta["sigma"]
    for _ in range(5):
        A, mu, sigma, ll_ref = reference_em_step(data, A, mu, sigma)
        theta, ll = em_step(model, theta)
        np.testing.assert_allclose(ll, ll_ref, rtol=1e-12)
        for got, want in ((theta["A"], A), (theta["mu"], mu), (theta["sigma"], sigma)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_em_increases_the_loglik(data):
    model = gaussian_hmm(data, 3)
    theta, lls = dict(model.init), []
    for _ in range(30):
        theta, ll = em_step(model, theta)
        lls.append(ll)
        np.testing.assert_allclose(model.exact_loglik(theta), reference_em_step(data, **theta)[3], rtol=1e-12)
    assert np.all(np.diff(lls) >= -1e-9 * abs(lls[-1])), np.diff(lls)
    assert lls[-1] > lls[0] + 1.0


def test_loglik_and_marginals_against_enumeration():
    rng = np.random.default_rng(1)
    T, K = 6, 3
    y = simulate(rng, T, A_TRUE, MU_TRUE, SIGMA_TRUE)
    model = gaussian_hmm(y, K)
    theta = {"A": rng.dirichlet(np.ones(K), size=K), "mu": rng.normal(size=K), "sigma": rng.uniform(0.5, 2, K)}
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    lp = np.array([np.log(1 / K) + sum(np.log(theta["A"][p[t - 1], p[t]]) for t in range(1, T))
                   + sum(stats.norm.logpdf(y[t], theta["mu"][p[t]], theta["sigma"][p[t]]) for t in range(T))
                   for p in paths])
    np.testing.assert_allclose(model.log_joint(theta, {"s": paths}), lp, rtol=1e-12)
    ll = logsumexp(lp)
    np.testing.assert_allclose(model.exact_loglik(theta), ll, rtol=1e-12)
    w = np.exp(lp - ll)
    st, ll2 = model.exact_estep_fn(theta, model.data)
    np.testing.assert_allclose(ll2, ll, rtol=1e-12)
    occupancy = np.array([[w @ (paths[:, t] == k) for k in range(K)] for t in range(T)])
    np.testing.assert_allclose(st["S0"], occupancy.sum(0), atol=1e-12)
    counts = sum(np.bincount(paths[:, t - 1] * K + paths[:, t], weights=w, minlength=K * K) for t in range(1, T))
    np.testing.assert_allclose(st["N"], counts.reshape(K, K), atol=1e-12)


def test_posterior_sampler_and_sufficient_stats_against_the_exact_e_step(data):
    model = gaussian_hmm(data, 3)
    theta = {"A": A_TRUE, "mu": MU_TRUE + 0.5, "sigma": SIGMA_TRUE * 1.5}  # A not symmetric
    n = 4000
    draws = model.posterior_sampler_fn(theta, model.data, np.random.default_rng(2), (n,))["s"]
    assert draws.shape == (n, len(data))
    exact, _ = model.exact_estep_fn(theta, model.data)
    # the draws are independent: the standard error of a mean over them is sd / sqrt(n)
    per_draw = [model.sufficient_stats_fn({"s": draws[i:i + 1]}, model.data) for i in range(n)]
    for key in ("N", "S0", "S1", "S2"):
        x = np.stack([p[key] for p in per_draw])
        mc = model.sufficient_stats_fn({"s": draws}, model.data)[key]
        np.testing.assert_allclose(mc, x.mean(0), rtol=1e-12, atol=1e-12)
        se = x.std(0) / np.sqrt(n)
        assert np.all(np.abs(mc - exact[key]) < 4 * se + 1e-8), (key, mc, exact[key], se)
    # the marginals p(s_t = k | y) themselves
    fb = forward_backward(np.full(3, -np.log(3)), np.log(theta["A"]),
                          stats.norm.logpdf(data[None, :, None], theta["mu"], theta["sigma"]))
    freq = np.stack([(draws == k).mean(0) for k in range(3)], -1)
    se = np.sqrt(fb.gamma[0] * (1 - fb.gamma[0]) / n)
    assert np.all(np.abs(freq - fb.gamma[0]) < 4 * se + 2e-3)


def test_sufficient_stats_of_one_path_are_its_counts(data):
    model = gaussian_hmm(data, 3)
    s = np.random.default_rng(3).integers(0, 3, size=len(data))
    got = model.sufficient_stats_fn({"s": s[None, None]}, model.data)
    yc = data - data.mean()
    N = np.zeros((3, 3))
    for t in range(1, len(s)):
        N[s[t - 1], s[t]] += 1
    np.testing.assert_array_equal(got["N"], N)
    np.testing.assert_allclose(got["S1"], [yc[s == k].sum() for k in range(3)], rtol=1e-12)
    np.testing.assert_allclose(got["S2"], [(yc[s == k] ** 2).sum() for k in range(3)], rtol=1e-12)


def test_fit_em_converges_to_a_fixed_point_of_baum_welch(data):
    model = gaussian_hmm(data, 3)
    res = mcem.fit(model, method="em", rng=0)
    assert res.converged
    th = res.params
    A, mu, sigma, _ = reference_em_step(data, th["A"], th["mu"], th["sigma"])
    np.testing.assert_allclose(mu, th["mu"], atol=1e-4)
    np.testing.assert_allclose(A, th["A"], atol=1e-4)
    assert model.exact_loglik(th) > model.exact_loglik(model.init)
    assert np.all(np.diff(th["mu"]) > 0)  # the ordered start keeps the states ordered here


def test_the_chain_splits_the_log_joint(data):
    model = gaussian_hmm(data, 3)
    theta = model.init
    chain = model.chains["s"]
    s = np.random.default_rng(4).integers(0, 3, size=(2, 5, len(data)))
    prior = chain.prior(theta, model.data)
    total = prior.log_prob(s) + chain.emission(theta, {"s": s}, model.data).sum(-1)
    np.testing.assert_allclose(model.log_joint(theta, {"s": s}), total, rtol=1e-12)
    assert chain.gaussian is False and model.name == "gaussian_hmm"
    again = pickle.loads(pickle.dumps(model))
    assert again.exact_loglik(theta) == model.exact_loglik(theta)


def test_defaults_and_bad_input():
    y = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    th = initial_params(y, 2)
    np.testing.assert_allclose(th["mu"], np.quantile(y, [0.25, 0.75]))
    np.testing.assert_allclose(th["A"], [[0.9, 0.1], [0.1, 0.9]])
    np.testing.assert_allclose(th["sigma"], np.std(y) / 2)
    model = gaussian_hmm(y, 2, init={"mu": np.array([0.0, 1.0])})
    np.testing.assert_allclose(model.init["mu"], [0.0, 1.0])
    np.testing.assert_allclose(model.init["A"], th["A"])
    y_copy = y.copy()
    gaussian_hmm(y, 2)
    np.testing.assert_array_equal(y, y_copy)
    with pytest.raises(ValueError, match="y must be 1-D"):
        gaussian_hmm(np.zeros((4, 2)), 2)
    with pytest.raises(ValueError, match="finite"):
        gaussian_hmm(np.array([1.0, np.nan, 2.0]), 2)
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_hmm(np.array([1.0]), 2)
    with pytest.raises(TypeError, match="numeric"):
        gaussian_hmm(np.array(["a", "b"]), 2)
    with pytest.raises(ValueError, match="K"):
        gaussian_hmm(y, 0)


def test_hmmlearn_loglik_agrees(data):
    hmm = pytest.importorskip("hmmlearn.hmm")
    model = gaussian_hmm(data, 3)
    th = model.init
    ref = hmm.GaussianHMM(n_components=3, covariance_type="diag", init_params="", params="")
    ref.startprob_ = np.full(3, 1 / 3)
    ref.transmat_ = th["A"]
    ref.means_ = th["mu"][:, None]
    ref.covars_ = (th["sigma"] ** 2)[:, None]
    np.testing.assert_allclose(ref.score(data[:, None]), model.exact_loglik(th), rtol=1e-10)

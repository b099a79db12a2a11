"""Latents with a chain distribution in the model language: the compiled Chain, the samplers
``sampler="auto"`` picks, the exact log-likelihood, the locality check, and the fits against
exact EM (Baum-Welch) with ``rng`` as the only argument."""

import itertools
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import mcem
from mcem import constraints as C
from mcem import dist
from mcem.estep import EStep

from _mc import assert_mean


@mcem.model
def hmm(m, y, K):
    A = m.param("A", constraint=C.simplex(K, batch=(K,)))
    mu = m.param("mu", shape=K, init=np.quantile(y, (np.arange(K) + 0.5) / K))
    sigma = m.param("sigma", shape=K, constraint=C.positive)
    s = m.latent("s", dist.MarkovChain(np.full(K, 1.0 / K), A, length=len(y)))
    m.observe("y", dist.Normal(mu[s], sigma[s]), y)


@mcem.model
def hmm_repeated(m, y, t, K, T):
    """Two observations per time step, filed under their time step by unit_index."""
    A = m.param("A", constraint=C.simplex(K, batch=(K,)))
    mu = m.param("mu", shape=K, init=np.arange(K, dtype=float))
    s = m.latent("s", dist.MarkovChain(np.full(K, 1.0 / K), A, length=T))
    m.observe("y", dist.Normal(mu[s[..., t]], 1.0), y, unit_index={"s": t})


def simulate_hmm(T, seed=1):
    rng = np.random.default_rng(seed)
    A = np.array([[0.95, 0.05], [0.1, 0.9]])
    s = np.zeros(T, dtype=int)
    for t in range(1, T):
        s[t] = rng.choice(2, p=A[s[t - 1]])
    return np.array([0.0, 2.0])[s] + np.array([0.7, 1.0])[s] * rng.standard_normal(T)


def brute_force_loglik(y, theta, K):
    """log p(y) by a sum over all K^T paths (tiny T)."""
    T = len(y)
    lA = np.log(theta["A"])
    total = []
    for path in itertools.product(range(K), repeat=T):
        p = np.array(path)
        lp = -np.log(K) + lA[p[:-1], p[1:]].sum()
        lp += stats.norm.logpdf(y, theta["mu"][p], theta["sigma"][p]).sum()
        total.append(lp)
    return logsumexp(total)


def test_hmm_compiles_to_a_chain_with_ffbs_and_the_forward_likelihood():
    y = simulate_hmm(7, seed=3)
    model = hmm(y=y, K=3)
    assert set(model.chains) == {"s"} and model.chains["s"].gaussian is False
    kernel = EStep(model).kernel
    assert type(kernel.kernels["s"]).__name__ == "FFBS"
    theta = {"A": np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]]),
             "mu": np.array([-0.5, 0.5, 2.0]), "sigma": np.array([0.8, 1.0, 1.3])}
    exact = brute_force_loglik(y, theta, 3)
    assert model.exact_loglik(theta) == pytest.approx(exact, abs=1e-9)
    est = mcem.inference.marginal_loglik(model, theta)
    assert est.mcse == 0.0 and est.value == pytest.approx(exact, abs=1e-9)


def test_ffbs_draws_match_the_exact_posterior_of_the_compiled_hmm():
    """Marginal posterior state probabilities of the compiled model against enumeration."""
    y = simulate_hmm(6, seed=4)
    model = hmm(y=y, K=2)
    theta = {"A": np.array([[0.8, 0.2], [0.3, 0.7]]), "mu": np.array([0.0, 2.0]), "sigma": np.array([0.7, 1.0])}
    paths = np.array(list(itertools.product(range(2), repeat=6)))
    lj = model.log_joint_sum(theta, {"s": paths}, 1)
    w = np.exp(lj - logsumexp(lj))
    truth = (w[:, None] * paths).sum(0)
    es = EStep(model, n_chains=4)
    st = es.init(theta, 0)
    out = es.run(theta, st, 2000, 1)
    assert_mean(out.draws["s"].astype(float), truth, floor=0.01)


def test_unit_index_files_several_observations_under_one_time_step():
    rng = np.random.default_rng(0)
    T = 5
    t = np.repeat(np.arange(T), 2)
    y = rng.normal(size=2 * T)
    model = hmm_repeated(y=y, t=t, K=2, T=T)
    assert "s" in model.chains
    theta = {"A": np.array([[0.8, 0.2], [0.4, 0.6]]), "mu": np.array([-0.3, 0.9])}
    paths = np.array(list(itertools.product(range(2), repeat=T)))
    lA = np.log(theta["A"])
    lj = [-np.log(2) + lA[p[:-1], p[1:]].sum()
          + stats.norm.logpdf(y, theta["mu"][p[t]], 1.0).sum() for p in paths]
    assert model.exact_loglik(theta) == pytest.approx(logsumexp(lj), abs=1e-9)


@mcem.model
def coupled(m, y):
    """y_t depends on x_t and x_{t+1}: not filed under one time step."""
    sigma = m.param("sigma", constraint=C.positive)
    x = m.latent("x", dist.GaussianRandomWalk(1.0, length=len(y) + 1))
    m.observe("y", dist.Normal(x[..., :-1] + x[..., 1:], sigma), y)


def test_terms_involving_two_time_steps_fall_back_with_a_warning():
    y = np.linspace(0, 1, 6)
    with pytest.warns(UserWarning, match="several time steps"):
        model = coupled(y=y)
    assert model.chains == {}
    assert type(EStep(model).kernel.kernels["x"]).__name__ != "KalmanSmoother"


def test_chain_kernel_on_a_latent_that_is_not_a_chain_is_refused():
    from mcem.kernels import FFBS

    model = mcem.Model(lambda th, z, d: -0.5 * (z["s"] - th["m"]).sum(-1) ** 2, params={"m": C.real},
                       latents={"s": mcem.Discrete(2, shape=(4,))})
    with pytest.raises(ValueError, match="forms a chain"):
        EStep(model, sampler=FFBS())


@pytest.mark.slow
def test_hmm_mcem_and_saem_reach_baum_welch_with_rng_only():
    """T = 500, two states: MCEM and SAEM with defaults stop by their own rule within 0.1
    standard errors of the exact-EM (Baum-Welch) maximum likelihood estimate."""
    y = simulate_hmm(500, seed=1)
    model = hmm(y=y, K=2)
    th = model.default_theta()
    ref = mcem.models.gaussian_hmm(y, 2, init=th)
    em = mcem.fit(ref, method="em", rng=0, tol=1e-10, max_iter=5000)
    assert em.converged
    se = em.standard_errors()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        fits = {m: mcem.fit(model, method=m, rng=1) for m in ("mcem", "saem")}
    for name, fit in fits.items():
        assert fit.converged, name
        assert fit["loglik"] == pytest.approx(em["loglik"], abs=0.05)
        for k in ("A", "mu", "sigma"):
            d = np.abs(fit.params[k] - em.params[k]) / se[k]
            assert np.nanmax(d) < 0.1, (name, k, d)


@mcem.model
def level(m, y):
    level0 = m.param("level0", init=float(y[0]))
    sigma_obs = m.param("sigma_obs", constraint=C.positive, init=float(np.std(np.diff(y))))
    sigma_level = m.param("sigma_level", constraint=C.positive, init=float(np.std(np.diff(y))))
    x = m.latent("x", dist.GaussianRandomWalk(sigma_level, init_loc=level0, init_scale=sigma_level, length=len(y)))
    m.observe("y", dist.Normal(x, sigma_obs), y)


def kalman_loglik(y, level0, s_obs, s_level):
    """The local-level log-likelihood by a Kalman filter (a loop over t), x_0 ~ N(level0, s_level^2)."""
    a, P, ll = level0, s_level**2, 0.0
    for t, yt in enumerate(y):
        if t > 0:
            P = P + s_level**2
        F = P + s_obs**2
        ll += stats.norm.logpdf(yt, a, np.sqrt(F))
        K = P / F
        a, P = a + K * (yt - a), P * (1 - K)
    return ll


def test_local_level_compiles_to_the_simulation_smoother_and_the_kalman_likelihood():
    y = 1000.0 + np.cumsum(np.random.default_rng(5).normal(0, 30, 40)) + np.random.default_rng(6).normal(0, 100, 40)
    model = level(y=y)
    assert model.chains["x"].gaussian is True
    assert type(EStep(model).kernel.kernels["x"]).__name__ == "KalmanSmoother"
    theta = {"level0": np.array(990.0), "sigma_obs": np.array(110.0), "sigma_level": np.array(25.0)}
    assert model.exact_loglik(theta) == pytest.approx(kalman_loglik(y, 990.0, 110.0, 25.0), abs=1e-8)


@mcem.model
def level_and_anchor(m, y, w):
    level0 = m.param("level0", init=float(y[0]))
    sigma_obs = m.param("sigma_obs", constraint=C.positive, init=float(np.std(np.diff(y))))
    sigma_level = m.param("sigma_level", constraint=C.positive, init=float(np.std(np.diff(y))))
    x = m.latent("x", dist.GaussianRandomWalk(sigma_level, init_loc=level0, init_scale=sigma_level, length=len(y)))
    m.observe("y", dist.Normal(x, sigma_obs), y)
    m.observe("w", dist.Normal(level0, 50.0), w)  # free of the chain: a constant rest of the log joint


@pytest.mark.parametrize("with_rest", [False, True])
def test_a_chain_as_the_only_latent_is_sampled_in_blocks(with_rest):
    """The simulation smoother's independent draws come in one block per E step; the trace is
    the complete-data log joint of each draw (with the terms free of the chain)."""
    y = 1000.0 + np.cumsum(np.random.default_rng(5).normal(0, 30, 40)) + np.random.default_rng(6).normal(0, 100, 40)
    model = level_and_anchor(y=y, w=np.array([900.0, 1100.0, 950.0])) if with_rest else level(y=y)
    es = EStep(model, n_chains=2)
    assert es._block
    theta = {"level0": np.array(990.0), "sigma_obs": np.array(110.0), "sigma_level": np.array(25.0)}
    res = es.run(theta, es.init(theta, 0), 50, 1)
    assert res.draws["x"].shape == (2, 50, 40)
    np.testing.assert_allclose(res.loglik_trace, model.log_joint_sum(theta, res.draws, 2), rtol=1e-10)


def dense_posterior(y, level0, s_obs, s_level):
    """Mean and covariance of the local-level path given y, from dense matrices."""
    T = len(y)
    L = np.tril(np.ones((T, T)))  # x = level0 + L eta, eta ~ N(0, s_level^2 I)
    S = s_level**2 * L @ L.T
    G = S + s_obs**2 * np.eye(T)
    mean = level0 + S @ np.linalg.solve(G, y - level0)
    return mean, S - S @ np.linalg.solve(G, S)


def test_conditional_smc_leaves_the_exact_gaussian_posterior_invariant():
    """CSMC on a chain whose posterior is known exactly (the local level): draws' means within
    4 MCSE of the dense posterior mean, and the variances agree."""
    from mcem.kernels import CSMC

    rng = np.random.default_rng(2)
    y = np.cumsum(rng.normal(0, 0.5, 15)) + rng.normal(0, 1.0, 15)
    model = level(y=y)
    theta = {"level0": np.array(0.2), "sigma_obs": np.array(1.0), "sigma_level": np.array(0.5)}
    es = EStep(model, sampler={"x": CSMC(n_particles=8)}, n_chains=4)
    st = es.init(theta, 0)
    draws = es.run(theta, st, 1500, 1).draws["x"]
    mean, cov = dense_posterior(y, 0.2, 1.0, 0.5)
    assert_mean(draws, mean, floor=0.01)
    assert_mean((draws - mean) ** 2, np.diag(cov), floor=0.01)  # the variances, within 4 MCSE


def test_stochastic_volatility_uses_csmc_and_a_particle_likelihood_that_matches_the_grid():
    from mcem.models import stochvol

    y, _ = stochvol.simulate(120, mu=-1.0, phi=0.9, sigma=0.35, rng=11)
    model = stochvol.stochastic_volatility(y)
    assert model.chains["h"].gaussian is False and model.loglik_fn is None
    assert type(EStep(model).kernel.kernels["h"]).__name__ == "CSMC"
    theta = {"mu": np.array(-1.0), "phi": np.array(0.9), "sigma": np.array(0.35)}
    es = EStep(model, n_chains=4)
    draws = es.run(theta, es.init(theta, 0), 100, 1).draws
    est = mcem.inference.marginal_loglik(model, theta, draws, rng=3)
    assert est.method.startswith("particle") and 0 < est.mcse <= 0.05
    grid = stochvol.grid_loglik(y, -1.0, 0.9, 0.35, n_grid=400)
    assert abs(est.value - grid) < 4 * est.mcse + 0.01


def test_describe_names_the_chain_and_its_sampler():
    text = hmm(y=simulate_hmm(12), K=2).describe()
    assert "s: Discrete(2 states), shape (12,) (a chain over axis 0: the whole path at once by forward" in text
    assert "also: exact log-likelihood" in text


def test_a_hand_written_model_declares_its_chain_and_gets_ffbs_and_the_exact_likelihood():
    """Model(chains=...) with a plain numpy log joint: FFBS is chosen and fit.loglik's
    marginal_loglik is the forward algorithm's value (brute force over all paths)."""
    y = simulate_hmm(6, seed=8)
    K = 2

    def emission(theta, z, data):
        s = np.asarray(z["s"])
        return stats.norm.logpdf(data, theta["mu"][s], theta["sigma"][s])

    def prior(theta, data):
        return dist.MarkovChain(np.full(K, 0.5), theta["A"], length=len(data))

    def log_joint(theta, z, data):
        return prior(theta, data).log_prob(z["s"]) + emission(theta, z, data).sum(-1)

    model = mcem.Model(log_joint, data=y, params={"A": C.simplex(K, batch=(K,)), "mu": C.real(shape=(K,)),
                                                  "sigma": C.positive(shape=(K,))},
                       latents={"s": mcem.Discrete(K, shape=(6,))},
                       chains={"s": mcem.Chain(prior, emission)})
    assert type(EStep(model).kernel.kernels["s"]).__name__ == "FFBS"
    theta = {"A": np.array([[0.8, 0.2], [0.3, 0.7]]), "mu": np.array([0.0, 2.0]), "sigma": np.array([0.7, 1.0])}
    est = mcem.inference.marginal_loglik(model, theta)
    assert est.mcse == 0.0 and est.value == pytest.approx(brute_force_loglik(y, theta, K), abs=1e-9)
    with pytest.raises(TypeError, match="chains\\['s'\\] must be an mcem.Chain"):
        mcem.Model(log_joint, data=y, params={"mu": C.real}, latents={"s": mcem.Discrete(K, shape=(6,))},
                   chains={"s": prior})


def test_a_chain_model_evaluated_with_numpy_gives_the_same_chain_and_likelihood():
    """@mcem.model(jit=False): the emission terms come from the numpy evaluation; the chain,
    its sampler and the exact log-likelihood agree with the compiled model."""
    y = simulate_hmm(9, seed=5)
    numpy_hmm = mcem.model(hmm.fn, jit=False)
    a, b = hmm(y=y, K=2), numpy_hmm(y=y, K=2)
    assert set(b.chains) == {"s"} and b.compiled_by.startswith("numpy")
    assert type(EStep(b).kernel.kernels["s"]).__name__ == "FFBS"
    theta = {"A": np.array([[0.6, 0.4], [0.25, 0.75]]), "mu": np.array([0.3, 1.9]), "sigma": np.array([0.8, 1.2])}
    assert b.exact_loglik(theta) == pytest.approx(a.exact_loglik(theta), abs=1e-10)
    assert b.exact_loglik(theta) == pytest.approx(brute_force_loglik(y, theta, 2), abs=1e-9)
    z = {"s": np.random.default_rng(0).integers(0, 2, size=(3, 9))}
    np.testing.assert_allclose(b.chains["s"].emission(theta, z, b.data), a.chains["s"].emission(theta, z, a.data),
                               rtol=1e-12)


def test_csmc_centered_prior_band_is_prior_band_bit_for_bit():
    """The proposal's prior bands, with the part free of the center computed once per chain prior,
    are prior_band's numbers exactly (scalar and bivariate chains, batches of centers, and a new
    prior after another: nothing stale)."""
    from mcem.distributions.chains import LinearGaussian
    from mcem.kernels.csmc import _CenteredPrior
    from mcem.kernels.gaussian_chain import prior_band

    rng = np.random.default_rng(4)
    lgs = [dist.AR1(0.9, 0.3, loc=-1.0, length=7).linear_gaussian(),
           dist.AR1(-0.5, 1.7, loc=2.0, length=7).linear_gaussian(),
           LinearGaussian(np.array([0.3, -1.0]), np.array([[2.0, 0.3], [0.3, 1.0]]),
                          np.array([[0.8, 0.1], [-0.2, 0.5]]), np.array([0.1, 0.4]),
                          np.array([[0.5, -0.1], [-0.1, 0.3]]))]
    for lg in lgs + lgs[:1]:
        d = np.size(lg.m0)
        for shape in ((3, 7, d), (7, d)):
            center = rng.normal(size=shape) * 3.0
            got, ref = _CenteredPrior.of(lg, 7).band(center), prior_band(lg, 7, center=center)
            for a, b in zip(got, ref, strict=True):
                assert np.shape(a) == np.shape(b)
                np.testing.assert_array_equal(a, b)


def test_csmc_reuses_the_refresh_approximation_with_the_same_draws():
    """The E step's draws with the refresh's Gaussian approximation kept for the first adapting
    step and the prior band's center-free part kept per theta are those of the plain
    construction (gaussian_proposal, prior_band at every Newton step), bit for bit, over runs
    at two thetas."""
    from mcem.kernels import CSMC, csmc
    from mcem.kernels.gaussian_chain import prior_band
    from mcem.models import stochvol

    class Plain(CSMC):
        def _adapted_proposal(self, target, z, rng):
            return csmc.gaussian_proposal(target, z, rng, self.spread)

    class PlainPrior:
        @staticmethod
        def of(lg, T):
            return type("P", (), {"band": staticmethod(lambda center: prior_band(lg, T, center=center))})()

    y, _ = stochvol.simulate(30, rng=5)
    model = stochvol.stochastic_volatility(y)
    thetas = [{"mu": np.array(-1.0), "phi": np.array(0.9), "sigma": np.array(0.35)},
              {"mu": np.array(-0.8), "phi": np.array(0.95), "sigma": np.array(0.25)}]

    def run(kernel):
        es = EStep(model, sampler={"h": kernel}, n_chains=3, burn=3, warm_burn=2)
        st, out = es.init(thetas[0], 0), []
        for i, th in enumerate(thetas * 2):
            res = es.run(th, st, 2, i + 1)
            st = res.state
            out += [res.draws["h"], res.loglik_trace, st.kernel_state.sites["h"].scale]
        return out

    fast = run(CSMC())
    orig = csmc._CenteredPrior
    csmc._CenteredPrior = PlainPrior
    try:
        plain = run(Plain())
    finally:
        csmc._CenteredPrior = orig
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_array_equal(a, b)


def test_grid_loglik_forward_in_probabilities_matches_the_log_space_forward_backward():
    """The grid likelihood by the scaled forward recursion equals forward_backward's (log space)
    to rounding, and where the mass at a step would underflow the log-space pass is taken."""
    from mcem.kernels.ffbs import forward_backward
    from mcem.models import stochvol

    def reference(y, mu, phi, sigma, n_grid, width=6.0):
        sd = sigma / np.sqrt(1.0 - phi**2)
        g = mu + sd * np.linspace(-width, width, n_grid)
        lt = -0.5 * ((g[None, :] - mu - phi * (g[:, None] - mu)) / sigma) ** 2
        lt -= np.logaddexp.reduce(lt, axis=1, keepdims=True)
        li = -0.5 * ((g - mu) / sd) ** 2
        li -= np.logaddexp.reduce(li)
        le = -0.5 * (np.log(2 * np.pi) + g[None, :] + y[:, None] ** 2 * np.exp(-g[None, :]))
        return float(forward_backward(li, lt, le[None]).loglik[0]), (li, lt, le)

    y, _ = stochvol.simulate(60, rng=2)
    rng = np.random.default_rng(1)
    for _ in range(20):
        mu, phi, sigma = rng.normal(-1.0, 1.0), np.tanh(rng.normal(1.5, 1.0)), np.exp(rng.normal(-1.5, 0.8))
        ref, _ = reference(y, mu, phi, sigma, 50)
        assert stochvol.grid_loglik(y, mu, phi, sigma, n_grid=50) == pytest.approx(ref, rel=1e-12, abs=1e-9)
    # returns of 0 hold the chain at the grid's bottom; then one far beyond its top, which the
    # persistent chain cannot reach in one step: in probabilities the mass at that step is 0
    y_out = np.r_[np.zeros(40), 1e80]
    ref, args = reference(y_out, -1.0, 0.999, 0.5, 50)
    assert stochvol._forward_loglik(*args) is None and np.isfinite(ref)
    assert stochvol.grid_loglik(y_out, -1.0, 0.999, 0.5, n_grid=50) == ref

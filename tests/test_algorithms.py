"""MCEM, SAEM and generalized EM against their oracles."""

import warnings

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import expit, gammaln, logsumexp

import mcem
from mcem import constraints as C
from mcem import dist
from mcem.models import gaussian_mixture
from mcem.models.mixture import initial_params
from mcem import mstep
from mcem.mstep import mcse_of_mean, update_covariance

# ---------------------------------------------------------------- genetic linkage (DLR 1977)
COUNTS = np.array([125, 18, 20, 34])
THETA_HAT = (15 + np.sqrt(15**2 + 4 * 197 * 68)) / (2 * 197)  # root of 197 t^2 - 15 t - 68


def linkage_model():
    """Split the first cell 125 = x1 + x2, x2 | theta ~ Binomial(125, (t/4) / (1/2 + t/4))."""
    y1, y2, y3, y4 = COUNTS

    def log_joint(theta, z, data):
        t = theta["t"]
        x2 = z["x2"]
        return (x2 * np.log(t / 4) + (y1 - x2) * np.log(0.5) - gammaln(x2 + 1) - gammaln(y1 - x2 + 1)
                + (y2 + y3) * np.log((1 - t) / 4) + y4 * np.log(t / 4))

    def sufficient_stats(z, data):
        return {"x2": np.mean(z["x2"])}

    def mstep(stats, data):
        return {"t": (stats["x2"] + y4) / (stats["x2"] + y4 + y2 + y3)}

    def loglik(theta, data):
        t = theta["t"]
        p = np.array([0.5 + t / 4, (1 - t) / 4, (1 - t) / 4, t / 4])
        return float(np.sum(COUNTS * np.log(p)))

    return mcem.Model(log_joint, params={"t": C.unit_interval},
                      latents={"x2": mcem.Discrete(y1 + 1)}, sufficient_stats=sufficient_stats,
                      mstep=mstep, loglik=loglik, init={"t": 0.2}, name="linkage")


def test_mcem_reaches_the_linkage_mle():
    res = mcem.fit(linkage_model(), method="mcem", rng=3)  # the defaults: stop="precision", tol=0.1
    assert res.converged and res.stopped_by == "tol", res.message
    x2 = res.draws["x2"].astype(float)
    xbar = x2.mean()
    # delta method: t = (x + 34) / (x + 72), dt/dx = 38 / (x + 72)^2
    se_t = 38 / (xbar + 72) ** 2 * mcse_of_mean(x2)
    assert abs(res.params["t"] - THETA_HAT) < 4 * se_t + 2e-3, (res.params["t"], THETA_HAT, se_t)
    assert res.history["m"][-1] >= res.history["m"][1]


# ---------------------------------------------------------------- Gaussian mixture
def mixture(seed=0, N=300):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal([0, 0], 1.0, (N // 2, 2)), rng.normal([3.5, 2.5], 0.8, (N - N // 2, 2))])
    return X


def _batch_se(model, draws, n_batches=10):
    """MC standard error of the closed-form M step: spread of M steps on batches of draws."""
    n = draws["label"].shape[1]
    size = n // n_batches
    thetas = []
    for b in range(n_batches):
        part = {"label": draws["label"][:, b * size:(b + 1) * size]}
        flat = {"label": part["label"].reshape(-1, part["label"].shape[-1])}
        thetas.append(model.mstep_fn(model.sufficient_stats_fn(flat, model.data), model.data))
    return {k: np.std([t[k] for t in thetas], axis=0, ddof=1) / np.sqrt(n_batches) for k in thetas[0]}


def test_mcem_reaches_the_exact_em_fixed_point_on_the_mixture():
    X = mixture()
    model = gaussian_mixture(X, 2)
    th0 = initial_params(X, 2, rng=0)
    em = mcem.fit(model, th0, method="em", tol=1e-13, max_iter=2000)
    res = mcem.fit(model, th0, method="mcem", sampler="gibbs", rng=1)
    assert res.converged and res.stopped_by == "tol", res.message
    se = _batch_se(model, res.draws)
    for k in ("weights", "means"):
        err = np.abs(res.params[k] - em.params[k])
        assert np.all(err < 5 * se[k] + 2e-3), (k, err, se[k])
    assert res["loglik"] == pytest.approx(em["loglik"], abs=0.05)
    assert res.total_draws > 0 and "delta_q" in res.history.columns


def test_saem_reaches_the_exact_em_fixed_point_on_the_mixture():
    X = mixture(1)
    model = gaussian_mixture(X, 2)
    th0 = initial_params(X, 2, rng=1)
    em = mcem.fit(model, th0, method="em", tol=1e-13, max_iter=2000)
    res = mcem.fit(model, th0, method="saem", sampler="gibbs", rng=2)  # the defaults: the precision rule
    assert res.converged and res.stopped_by == "tol", res.message
    assert res.settings["average"] and res.get("mc_ratio") <= 0.1
    # the Polyak-Ruppert average lands within three Monte Carlo errors at the default target
    se = em.standard_errors()
    for k in ("means", "weights"):
        err = np.abs(res.params[k] - em.params[k]) / se[k]
        assert np.all(err < 0.3), (k, err)


def test_gem_with_small_steps_never_decreases_the_loglik():
    X = mixture(2, N=200)
    model = gaussian_mixture(X, 2)
    th0 = initial_params(X, 2, rng=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.ConvergenceWarning)
        res = mcem.fit(model, th0, method="gem", step_size=0.01, n_steps=2, max_iter=40)
    ll = res.history["loglik"]
    assert np.all(np.diff(ll) >= -1e-10 * np.abs(ll[:-1]))
    assert ll[-1] > ll[0] + 1.0
    # the enumerated Q gives the exact log-likelihood
    assert ll[-1] == pytest.approx(model.exact_loglik(res.params), rel=1e-12)


def test_fixed_small_sample_size_says_monte_carlo_error_dominates():
    with pytest.warns(mcem.MonteCarloWarning, match="Monte Carlo error dominates"):
        res = mcem.fit(linkage_model(), method="mcem", schedule="fixed", m_init=4, n_chains=2,
                       max_iter=25, stop="ascent", tol=1e-6, rng=0)
    assert not res.converged and "Monte Carlo error dominates" in res.message
    assert np.all(res.history["m"][1:] == 4)


def test_ascent_schedule_grows_m_near_the_mle():
    res = mcem.fit(linkage_model(), method="mcem", rng=5, stop="ascent", tol=5e-4, m_init=8, n_chains=2)
    m = res.history["m"][1:]
    assert res.converged
    assert m[-1] > 4 * m[0]


# ---------------------------------------------------------------- random-intercept logistic GLMM
from test_ppl import glmm as logit_ri  # noqa: E402  (the random-intercept logit model)


def quadrature_mle(X, y, group, G, n_nodes=60):
    """MLE by Gauss-Hermite quadrature of each group's one-dimensional integral."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)  # weight exp(-x^2 / 2)
    lw = np.log(weights / np.sqrt(2 * np.pi))

    def nll(v):
        beta, sigma = v[:-1], np.exp(v[-1])
        eta = (X @ beta)[:, None] + sigma * nodes[None, :]
        ll_obs = y[:, None] * eta - np.logaddexp(0, eta)  # (n_obs, nodes)
        per_group = np.zeros((G, n_nodes))
        np.add.at(per_group, group, ll_obs)
        return -logsumexp(per_group + lw, axis=1).sum()

    r = optimize.minimize(nll, np.zeros(X.shape[1] + 1), method="BFGS")
    return r.x, r


def test_mcem_matches_quadrature_on_random_intercept_logit():
    rng = np.random.default_rng(7)
    G, n = 40, 8
    group = np.repeat(np.arange(G), n)
    X = np.column_stack([np.ones(G * n), rng.normal(size=G * n)])
    u = rng.normal(scale=1.0, size=G)
    y = (rng.random(G * n) < expit(X @ np.array([-0.5, 1.0]) + u[group])).astype(int)
    v_hat, r = quadrature_mle(X, y, group, G)
    se_mle = np.sqrt(np.diag(r.hess_inv))
    model = logit_ri(X=X, y=y, group=group, n_groups=G)
    res = mcem.fit(model, method="mcem", rng=11, tol=2e-3, m_max=2000)
    est = np.r_[res.params["beta"], np.log(res.params["sigma"])]
    # Monte Carlo standard error of the final M step (H^-1 V H^-1, batch means); 5 of them,
    # since successive MCEM iterates pass the noise on through the EM map
    se_mc = np.sqrt(np.diag(update_covariance(model, res.params, res.draws)))
    assert np.all(se_mc < 0.05 * se_mle)
    assert np.all(np.abs(est - v_hat) < 5 * se_mc + 0.005), (est, v_hat, se_mc)


def test_ascent_rule_next_sample_size_formula():
    from scipy.stats import norm

    from mcem.schedules import Ascent

    s = Ascent(10, m_max=10**6, alpha=0.25, beta=0.1)
    m, dq, se = 200, 0.05, 0.02
    want = se**2 * m * (norm.ppf(0.75) + norm.ppf(0.9)) ** 2 / dq**2
    assert s.next(1, m, {"delta_q": dq, "mcse": se}) == max(m, int(np.ceil(want)))
    assert s.next(1, m, {"delta_q": 1e-4, "mcse": 0.02}) > 10_000
    assert Ascent(10, m_max=500).next(1, m, {"delta_q": 1e-4, "mcse": 0.02}) == 500
    assert s.append_size(90) == 30


def test_delta_q_standard_error_accounts_for_autocorrelation():
    from scipy.signal import lfilter

    rng = np.random.default_rng(4)
    rho, n = 0.8, 4000
    d = lfilter([1.0], [1.0, -rho], rng.normal(size=(4, n)), axis=1)
    expect = 1 / (1 - rho) / np.sqrt(4 * n)  # long-run sd of AR(1) / sqrt(draws)
    assert mcse_of_mean(d) == pytest.approx(expect, rel=0.15)
    iid = rng.normal(size=(4, 10))
    assert mcse_of_mean(iid) == pytest.approx(iid.std(ddof=1) / np.sqrt(40))


def test_update_covariance_matches_replicate_m_steps():
    """The Monte Carlo covariance of the M step agrees with the spread over independent E steps."""
    model = linkage_model()
    theta = {"t": np.array(0.6)}
    est = []
    for seed in range(40):
        es = mcem.EStep(model, "gibbs", n_chains=2, burn=5)
        r = es.run(theta, es.init(theta, seed), 50, np.random.default_rng(seed + 100))
        new, _ = mstep.closed_form(model, r.draws)
        est.append(model.to_unconstrained(new)[0])
        if seed == 0:
            cov = mstep.update_covariance(model, new, r.draws)
    sd_rep = np.std(est, ddof=1)
    # the sd of a sample sd from 40 replicates is about sd / sqrt(78): allow 4 of those
    assert np.sqrt(cov[0, 0]) == pytest.approx(sd_rep, rel=4 / np.sqrt(78))


def test_booth_hobert_schedule_grows_m_and_reaches_the_mle():
    res = mcem.fit(linkage_model(), method="mcem", schedule="booth-hobert", m_init=20, n_chains=2,
                   stop="relative", tol=2e-3, rng=6, max_iter=60)
    m = res.history["m"][1:]
    assert m[-1] > m[0] and np.all(np.diff(m) >= 0)
    assert np.all(np.isfinite(res.history["ellipsoid_stat"][1:]))
    assert abs(res.params["t"] - THETA_HAT) < 0.01


def lowlevel_logit_ri(X, y, group, G, with_grad):
    """The random-intercept logit written by hand, optionally with its gradient in theta."""
    onehot = np.zeros((G, len(y)))
    onehot[group, np.arange(len(y))] = 1.0

    def parts(theta, z):
        u = z["u"]
        eta = X @ theta["beta"] + u[..., group]
        return u, eta, expit(eta)

    def log_joint(theta, z, data):
        u, eta, _ = parts(theta, z)
        s = theta["sigma"]
        ll_obs = y * eta - np.logaddexp(0, eta)
        return ll_obs @ onehot.T - 0.5 * (u / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)

    def grad_params(theta, z, data):
        u, _, p = parts(theta, z)
        s = theta["sigma"]
        return {"beta": (y - p) @ X, "sigma": np.sum(u**2, axis=-1) / s**3 - G / s}

    return mcem.Model(log_joint, params={"beta": C.real(shape=X.shape[1]), "sigma": C.positive},
                      latents={"u": mcem.Continuous(shape=G, unit=True)}, data=None,
                      init={"sigma": 1.0}, grad_params=grad_params if with_grad else None)


def _glmm_draws(seed=3, G=25, n=6):
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(G), n)
    X = np.column_stack([np.ones(G * n), rng.normal(size=G * n)])
    y = (rng.random(G * n) < expit(X @ np.array([0.3, -0.8]) + rng.normal(size=G)[group])).astype(int)
    draws = {"u": rng.normal(scale=0.9, size=(4, 50, G))}
    return X, y, group, G, draws


def test_model_gradient_drives_the_numerical_mstep():
    X, y, group, G, draws = _glmm_draws()
    with_g = lowlevel_logit_ri(X, y, group, G, True)
    without = lowlevel_logit_ri(X, y, group, G, False)
    theta = {"beta": np.array([0.1, -0.2]), "sigma": np.array(1.3)}
    u = with_g.to_unconstrained(theta)
    fd = np.array([(mstep.q_hat(without, without.from_unconstrained(u + 1e-6 * e), draws)
                    - mstep.q_hat(without, without.from_unconstrained(u - 1e-6 * e), draws)) / 2e-6
                   for e in np.eye(u.size)])
    np.testing.assert_allclose(mstep.q_hat_grad(with_g, theta, draws), fd, rtol=1e-5, atol=1e-5)
    a, ia = mstep.numerical(with_g, theta, draws)
    b, ib = mstep.numerical(without, theta, draws)
    assert ia.success and ia.nfev < ib.nfev
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_adam_mstep_approaches_the_maximiser_of_q_hat():
    X, y, group, G, draws = _glmm_draws(4)
    model = lowlevel_logit_ri(X, y, group, G, True)
    theta = {"beta": np.array([0.0, 0.0]), "sigma": np.array(1.0)}
    best, _ = mstep.numerical(model, theta, draws)
    sgd, info = mstep.adam(model, theta, draws, np.random.default_rng(0), n_steps=400, lr=0.02,
                           batch_draws=40)
    q0, qb, qs = (mstep.q_hat(model, t, draws) for t in (theta, best, sgd))
    assert qs > q0 + 0.95 * (qb - q0)  # 95% of the attainable increase
    res = mcem.fit(linkage_model(), method="mcem", mstep="adam", rng=2, tol=2e-3, stop="relative",
                   schedule="fixed", m_init=200, n_chains=2,
                   optimizer_options={"n_steps": 100, "lr": 0.05}, max_iter=60)
    assert abs(res.params["t"] - THETA_HAT) < 0.01


def test_unit_blocks_gradients_add_up_to_the_whole():
    """Reference: the full gradient of Q_hat is the sum over blocks of units of theirs."""
    X, y, group, G, draws = _glmm_draws(5)
    model = mcem.models.random_intercept_glmm(X, y, group)
    theta = {"beta": np.array([0.2, -0.4]), "sigma": np.array(0.8)}
    blocks, subs = mstep.unit_blocks(model, 7, theta)
    assert [len(b) for b in blocks] == [7, 6, 6, 6] and np.array_equal(np.concatenate(blocks), np.arange(G))
    whole = mstep.q_hat_grad(model, theta, draws)
    parts = sum(mstep.q_hat_grad(m, theta, {"u": draws["u"][..., b]}) for m, b in zip(subs, blocks))
    assert np.allclose(parts, whole, rtol=1e-6, atol=1e-6)
    assert mstep.unit_blocks(model, 7, theta)[1] is subs  # built once per model


def test_adam_over_units_and_draws_approaches_the_maximiser_of_q_hat():
    X, y, group, G, draws = _glmm_draws(4)
    draws = {"u": draws["u"] * 0.3 + 1.5 * np.sign(np.arange(G) - G / 2)}  # unit-specific draws
    model = mcem.models.random_intercept_glmm(X, y, group)
    theta = {"beta": np.array([0.0, 0.0]), "sigma": np.array(1.0)}
    best, _ = mstep.numerical(model, theta, draws)
    sgd, info = mstep.adam(model, theta, draws, np.random.default_rng(0), n_steps=600, lr=0.02,
                           batch_draws=40, batch_units=5)
    q0, qb, qs = (mstep.q_hat(model, t, draws) for t in (theta, best, sgd))
    assert qs > q0 + 0.95 * (qb - q0)  # 95% of the attainable increase
    # through fit: options reach the M step
    res = mcem.fit(model, method="mcem", mstep="adam", rng=2, schedule="fixed", m_init=40,
                   n_chains=2, max_iter=3, optimizer_options={"batch_units": 5, "n_steps": 20})
    assert res.settings["mstep"] == "adam" and res.n_iter == 3


def test_unit_minibatches_need_additive_blocks():
    X, y, group, G, draws = _glmm_draws(4)
    model = mcem.models.random_intercept_glmm(X, y, group)
    theta = model.default_theta()
    assert mstep.unit_blocks(model, 5, theta)  # cached on the model: copies must not reuse it
    with pytest.raises(ValueError, match="no subset function"):
        mstep.adam(lowlevel_logit_ri(X, y, group, G, True), theta, draws, np.random.default_rng(0),
                   batch_units=5)
    shifted = model.with_subset(lambda units: mcem.models.random_intercept_glmm(
        X[np.isin(group, units)], y[np.isin(group, units)],
        np.searchsorted(units, group[np.isin(group, units)]), init={"beta": np.zeros(2)}))
    assert mstep.unit_blocks(shifted, 5, theta)  # the same model: additive
    halved = model.with_subset(lambda units: mcem.models.random_intercept_glmm(
        X[np.isin(group, units)][::2], y[np.isin(group, units)][::2],
        np.searchsorted(units, group[np.isin(group, units)])[::2], init={"beta": np.zeros(2)}))
    with pytest.raises(ValueError, match="gradients over blocks of units do not add up"):
        mstep.adam(halved, theta, draws, np.random.default_rng(0), batch_units=5)


def test_saem_with_a_memory_of_draws_reaches_the_linkage_mle():
    """Without sufficient statistics SAEM maximises a weighted memory of past Q estimates."""
    res = mcem.fit(linkage_model(), method="saem", mstep="numerical", rng=8, n_chains=4,
                   draws_per_chain=5, max_iter=150, burn_iter=20, average=True, tol=1e-12)
    assert res.settings["mstep"] == "numerical"
    assert 1 < res.history["memory"][-1] < 150  # old draws are dropped once their weight is tiny
    # after burn-in the averaged iterate carries the noise of roughly all draws since then
    path = res.history.params("t")[21:]
    se = path.std() / np.sqrt(len(path) / 10)
    assert abs(res.params["t"] - THETA_HAT) < 5 * se + 2e-3, (res.params["t"], se)


def test_user_and_geometric_schedules_set_the_sample_size():
    res = mcem.fit(linkage_model(), method="mcem", schedule=[8, 16, 32], n_chains=2, max_iter=4,
                   tol=1e-9, rng=0)
    assert res.history["m"][1:].tolist() == [8, 16, 32, 32]
    res = mcem.fit(linkage_model(), method="mcem", schedule=lambda t: 4 * (t + 1), n_chains=2,
                   max_iter=3, tol=1e-9, rng=0)
    assert res.history["m"][1:].tolist() == [4, 8, 12]
    res = mcem.fit(linkage_model(), method="mcem", schedule="geometric", m_init=10, n_chains=2,
                   max_iter=4, tol=1e-9, rng=0)
    assert res.history["m"][1:].tolist() == [10, 12, 16, 20]
    with pytest.raises(ValueError, match="schedule must be 'ascent'"):
        mcem.fit(linkage_model(), method="mcem", schedule="fast")
    with pytest.raises(ValueError, match="every sample size in the list must be an int >= 1, got 0"):
        mcem.fit(linkage_model(), method="mcem", schedule=[8, 0])  # refused before the run starts
    with pytest.raises(ValueError, match="the sample size for iteration 1 must be an int >= 1"):
        mcem.fit(linkage_model(), method="mcem", schedule=lambda t: 8 if t == 0 else 0)  # asked as it runs


def test_mcem_same_seed_same_result_and_history_columns():
    a = mcem.fit(linkage_model(), method="mcem", rng=21, max_iter=6, tol=1e-9)
    b = mcem.fit(linkage_model(), method="mcem", rng=21, max_iter=6, tol=1e-9)
    np.testing.assert_array_equal(a.history.params("t"), b.history.params("t"))
    for col in ("m", "delta_q", "mcse", "lower", "upper", "mstep_success", "acceptance_mean"):
        assert col in a.history.columns, col


def _normal_means_model(x):
    """z_i ~ N(mu_i, 1), x_i | z_i ~ N(z_i, 1): p = len(x) parameters, closed-form M step."""

    def lj(theta, z, data):
        return -0.5 * (data - z["z"]) ** 2 - 0.5 * (z["z"] - theta["mu"]) ** 2

    return mcem.Model(lj, params={"mu": C.real(shape=x.size)},
                      latents={"z": mcem.Continuous(shape=x.size, unit=True)}, data=x,
                      sufficient_stats=lambda z, d: {"zbar": z["z"].mean(axis=0)},
                      mstep=lambda s, d: {"mu": s["zbar"]})


def test_cross_fitted_optimism_is_the_bias_of_delta_q_against_fresh_draws():
    """p = 20 parameters, m = 200 exact posterior draws: delta-Q_hat on the draws the M step
    maximised exceeds delta-Q on fresh draws by tr(H^-1 Sigma) = p * (1/2) / m = 0.05 on
    average (Q is quadratic here, so the first-order theory is exact), and the cross-fitted
    estimate recovers that whole bias (not half of it)."""
    from mcem.algorithms.mcem import optimism as _optimism

    p, m, R = 20, 200, 400
    x = np.linspace(-1.0, 1.0, p)
    model = _normal_means_model(x)
    theta_t = {"mu": x + 0.3}
    post_mean, post_sd = (x + theta_t["mu"]) / 2, np.sqrt(0.5)
    rng = np.random.default_rng(7)
    bias, est = [], []
    for _ in range(R):
        draws = {"z": rng.normal(post_mean, post_sd, size=(4, m // 4, p))}
        new, _ = mstep.closed_form(model, draws)
        fresh = {"z": rng.normal(post_mean, post_sd, size=(1, 5000, p))}
        dq_in = mstep.q_hat(model, new, draws) - mstep.q_hat(model, theta_t, draws)
        dq_fresh = mstep.q_hat(model, new, fresh) - mstep.q_hat(model, theta_t, fresh)
        bias.append(dq_in - dq_fresh)
        est.append(_optimism(model, "closed_form", new, draws, None))
    bias, est = np.array(bias), np.array(est)
    se_bias = bias.std(ddof=1) / np.sqrt(R)
    theory = p * 0.5 / m
    assert abs(bias.mean() - theory) < 4 * se_bias, (bias.mean(), theory, se_bias)
    se = np.sqrt(se_bias**2 + est.var(ddof=1) / R)
    assert abs(est.mean() - bias.mean()) < 4 * se, (est.mean(), bias.mean(), se)


def test_cross_fitted_optimism_on_the_linkage_model_with_a_discrete_latent():
    """The same identity on the one-parameter linkage model (exact binomial posterior draws),
    at the MLE, where the step itself is pure Monte Carlo noise."""
    from mcem.algorithms.mcem import optimism as _optimism

    model = linkage_model()
    t = THETA_HAT
    p2 = (t / 4) / (0.5 + t / 4)
    theta_t = {"t": np.array(t)}
    rng = np.random.default_rng(0)
    bias, est = [], []
    for _ in range(1200):
        draws = {"x2": rng.binomial(125, p2, size=(2, 20))}  # exact posterior draws at t
        new, _ = mstep.closed_form(model, draws)
        fresh = {"x2": rng.binomial(125, p2, size=(1, 4000))}
        bias.append(mstep.q_hat(model, new, draws) - mstep.q_hat(model, theta_t, draws)
                    - (mstep.q_hat(model, new, fresh) - mstep.q_hat(model, theta_t, fresh)))
        est.append(_optimism(model, "closed_form", new, draws, None))
    bias, est = np.array(bias), np.array(est)
    se = np.sqrt(bias.var(ddof=1) / bias.size + est.var(ddof=1) / est.size)
    assert bias.mean() > 4 * bias.std(ddof=1) / np.sqrt(bias.size)  # the optimism is real
    # first-order theory: allow 4 Monte Carlo SEs plus 5% of the bias for the O(1/m^2) terms
    assert abs(bias.mean() - est.mean()) < 4 * se + 0.05 * bias.mean(), (bias.mean(), est.mean(), se)


def test_mcem_with_optimism_correction_records_it():
    res = mcem.fit(linkage_model(), method="mcem", rng=3, correct_optimism=True)
    assert res.converged and np.all(res.history["optimism"][1:] >= 0)
    assert abs(res.params["t"] - THETA_HAT) < 0.01


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
def test_published_rule_stalls_and_auto_correction_grows_m_and_stops():
    """Factor analysis, 20 parameters, random-walk draws: delta-Q's in-sample optimism keeps the
    published rule's lower bound mostly above zero (m hardly grows, no stop by max_iter);
    correct_optimism="auto" corrects the sample-size decisions, m grows and the run stops near
    the exact MLE. (The default rule, stop="precision", removes the optimism from its
    significance test; it is tested on factor analysis in test_models_gaussian.)"""
    from mcem.models.linear_gaussian import factor_analysis

    rng = np.random.default_rng(2024)
    lam = np.array([[0.9, 0.0], [0.8, 0.3], [0.7, 0.0], [0.0, 0.8], [0.2, 0.9], [0.0, 0.7]])
    X = np.linspace(-1, 1, 6) + rng.normal(size=(150, 2)) @ lam.T + rng.normal(size=(150, 6)) * 0.7
    model = factor_analysis(X, 2, loadings="lower")
    best = mcem.fit(model, method="em", tol=1e-14, max_iter=20_000)["loglik"]
    opts = dict(method="mcem", rng=1, sampler="rwm", thin=2, m_init=100, stop="ascent", tol=0.03, m_max=2000,
                max_iter=60)
    published = mcem.fit(model, **opts)
    assert published.stopped_by == "max_iter" and published.history["m"].max() <= 1000
    res = mcem.fit(model, correct_optimism="auto", **opts)
    assert res.converged and res.stopped_by == "tol", res.message
    assert res.history["m"].max() >= 1000 and np.all(res.history["optimism"][1:] >= 0)
    # a gap of k^2 / 2 in log-likelihood is k standard errors along the worst direction
    assert 0 <= best - model.exact_loglik(res.params) < 0.125
    with pytest.raises(ValueError, match="correct_optimism must be True, False or 'auto', got 'yes'"):
        mcem.fit(model, method="mcem", correct_optimism="yes")


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
def test_streamed_mcem_follows_the_same_path_without_keeping_draws():
    import tracemalloc

    X = mixture(0, N=5000)
    model = gaussian_mixture(X, 2)
    runs, peaks = {}, {}
    for stream in (False, True):
        tracemalloc.start()
        runs[stream] = mcem.fit(model, method="mcem", sampler="gibbs", rng=1, stream=stream,
                                schedule="fixed", m_init=200, max_iter=6, tol=1e-12)
        peaks[stream] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    a, b = runs[False], runs[True]
    np.testing.assert_allclose(a.history.params("means"), b.history.params("means"), rtol=1e-10)
    np.testing.assert_allclose(a.history["delta_q"], b.history["delta_q"], rtol=1e-8)
    np.testing.assert_allclose(a.history["mcse"], b.history["mcse"], rtol=1e-8)
    assert b.draws is None and peaks[True] < 0.3 * peaks[False], peaks
    with pytest.raises(ValueError, match="stream=True needs the closed-form M step"):
        mcem.fit(model, method="mcem", stream=True, correct_optimism=True)


@pytest.mark.parametrize("sampler", ["rwm", "gibbs"])
def test_delta_q_reuses_the_e_steps_trace_only_where_it_is_the_log_joint(sampler):
    """The E step's trace stands for the per-draw log joints at theta in delta-Q (one pass fewer)
    where it equals them; a trace that leaves out a term is computed afresh instead."""
    from mcem.derivatives import per_draw_log_joint

    rng = np.random.default_rng(0)
    if sampler == "gibbs":
        X = rng.normal(size=(60, 1)) + np.repeat([[-2.0], [2.0]], 30, axis=0)
        model = gaussian_mixture(X, 2)
        theta = {"weights": np.array([0.4, 0.6]), "means": np.array([[-1.0], [1.5]]),
                 "covariances": np.ones((2, 1, 1))}
        new = {**theta, "means": np.array([[-1.8], [1.9]])}
    else:
        g = np.repeat(np.arange(30), 5)
        Xd = np.c_[np.ones(g.size), rng.normal(size=g.size)]
        y = (rng.random(g.size) < 0.5).astype(float)
        model = mcem.models.random_intercept_glmm(Xd, y, g)
        theta, new = {"beta": np.array([0.1, 0.2]), "sigma": 1.0}, {"beta": np.array([0.0, 0.4]), "sigma": 0.8}
    es = mcem.EStep(model, sampler, n_chains=3)
    res = es.run(theta, es.init(theta, 0), 6, rng=1)
    fresh = per_draw_log_joint(model, theta, res.draws)
    np.testing.assert_allclose(res.loglik_trace, fresh, rtol=1e-12)
    got = mstep.trace_at(model, theta, res.draws, res.loglik_trace)
    np.testing.assert_array_equal(got, res.loglik_trace)
    assert mstep.trace_at(model, theta, res.draws, res.loglik_trace + 1e-3) is None  # a term left out
    assert mstep.trace_at(model, new, res.draws, res.loglik_trace) is None  # another theta's
    with_trace = mstep.delta_q(model, new, theta, res.draws, old=got)
    afresh = mstep.delta_q(model, new, theta, res.draws)
    assert with_trace[0] == pytest.approx(afresh[0], rel=1e-12, abs=1e-12)
    assert with_trace[1] == pytest.approx(afresh[1], rel=1e-9)

"""Gaussian latent models with exact EM: factor analysis and the normal with missing values.

Oracles: naive densities (scipy.stats, row by row), direct maximisation of the marginal
likelihood with scipy.optimize, the closed-form MLEs of probabilistic PCA (Tipping & Bishop 1999)
and of the bivariate normal with a monotone missing pattern (Anderson 1957), and scikit-learn's
FactorAnalysis. Monte Carlo EM is compared with exact EM within its Monte Carlo error.
"""

import warnings

import numpy as np
import pytest
from _mc import assert_mean
from scipy import optimize, stats

import mcem
from mcem.models.linear_gaussian import LowerTrapezoidal, factor_analysis, implied_covariance
from mcem.models.missing import missing_normal

LAMBDA2 = np.array([[0.9, 0.0], [0.8, 0.3], [0.7, 0.0], [0.0, 0.8], [0.2, 0.9], [0.0, 0.7]])
PSI2 = np.array([0.4, 0.5, 0.6, 0.4, 0.3, 0.5])
LAMBDA1 = np.array([[0.9], [0.8], [0.7], [0.6], [0.8]])
PSI1 = np.array([0.4, 0.5, 0.6, 0.4, 0.5])
SIGMA3 = np.array([[1.0, 0.6, 0.3], [0.6, 1.5, 0.5], [0.3, 0.5, 0.8]])


def sim_fa(seed, N, lam=LAMBDA2, psi=PSI2):
    rng = np.random.default_rng(seed)
    d, q = lam.shape
    mu = np.linspace(-1.0, 1.0, d)
    return mu + rng.normal(size=(N, q)) @ lam.T + rng.normal(size=(N, d)) * np.sqrt(psi)


def sim_mar(seed, N):
    """Trivariate normal; x0 always observed, x1 and x2 missing more often when x0 is large (MAR)."""
    rng = np.random.default_rng(seed)
    X = rng.multivariate_normal([1.0, -1.0, 2.0], SIGMA3, size=N)
    p = 1 / (1 + np.exp(-(X[:, 0] - 2.0)))
    X[rng.random(N) < p, 1] = np.nan
    X[rng.random(N) < 0.5 * p, 2] = np.nan
    return X


def sim_mcar(seed, N, d=4, frac=0.2):
    """Values missing completely at random in every column (many patterns), no empty row."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    X = rng.multivariate_normal(np.arange(d, dtype=float), A @ A.T + np.eye(d), size=N)
    miss = rng.random((N, d)) < frac
    miss[miss.all(axis=1), 0] = False
    X[miss] = np.nan
    return X


def random_theta(model, rng):
    u = rng.normal(scale=0.3, size=model.n_unconstrained)
    return model.from_unconstrained(model.to_unconstrained(model.default_theta()) + u)


def em_rate(model, theta, h=1e-5):
    """Spectral radius of the Jacobian of the exact EM map at theta (unconstrained coordinates)."""
    u0 = model.to_unconstrained(theta)

    def em_map(u):
        stats_, _ = model.exact_estep_fn(model.from_unconstrained(u), model.data)
        return model.to_unconstrained(model.mstep_fn(stats_, model.data))

    J = np.empty((u0.size, u0.size))
    for i in range(u0.size):
        e = np.zeros(u0.size)
        e[i] = h
        J[:, i] = (em_map(u0 + e) - em_map(u0 - e)) / (2 * h)
    return float(np.max(np.abs(np.linalg.eigvals(J))))


def mstep_se(model, draws, fn, n_batches):
    """Monte Carlo SE of fn(closed-form M step on all draws): batch means over the draw axis."""
    (name,) = draws
    z = draws[name]
    size = z.shape[1] // n_batches
    vals = []
    for b in range(n_batches):
        part = z[:, b * size : (b + 1) * size]
        s = model.sufficient_stats_fn({name: part.reshape((-1,) + part.shape[2:])}, model.data)
        vals.append(fn(model.mstep_fn(s, model.data)))
    return np.std(vals, axis=0, ddof=1) / np.sqrt(n_batches)


def assert_mcem_at_em_fixed_point(model, em, res, fns, n_batches):
    """Every quantity within 5 Monte Carlo SEs (+ 2e-3) of exact EM.

    The SE is that of one M step (batch means of the final draws) inflated by 1/sqrt(1 - rho^2),
    rho the spectral radius of the EM map: MCEM iterates theta_{t+1} = M(theta_t) + e_t pass the
    noise on, and their stationary spread is sum_k J^k V J^k' <= V / (1 - rho^2).
    """
    rho = em_rate(model, em.params)
    infl = 1 / np.sqrt(1 - rho**2)
    for k, fn in fns.items():
        se = mstep_se(model, res.draws, fn, n_batches) * infl
        err = np.abs(fn(res.params) - fn(em.params))
        assert np.all(err < 5 * se + 2e-3), (k, err, se, rho)
    assert res["loglik"] <= em["loglik"] + 1e-9
    assert res["loglik"] == pytest.approx(em["loglik"], abs=0.1)


def fit_em(model, theta0=None, **kw):
    kw = {"tol": 1e-14, "max_iter": 20_000, **kw}
    return mcem.fit(model, theta0, method="em", **kw)


# ============================================================== factor analysis
def test_fa_loglik_and_posterior_match_naive_densities():
    X = sim_fa(0, 40)
    rng = np.random.default_rng(1)
    for noise in ("diagonal", "isotropic"):
        model = factor_analysis(X, 2, noise=noise)
        th = random_theta(model, rng)
        naive = stats.multivariate_normal(th["mu"], implied_covariance(th)).logpdf(X).sum()
        assert model.exact_loglik(th) == pytest.approx(naive, rel=1e-12)
        # log p(x, f) - log p(f | x) = log p(x) at any f: checks log_joint, the posterior moments
        # and the log-likelihood against each other
        lam, psi = th["Lambda"], np.broadcast_to(th["psi"], (6,))
        G = np.linalg.inv(np.eye(2) + lam.T @ (lam / psi[:, None]))
        Ef = (X - th["mu"]) @ (lam / psi[:, None]) @ G
        f = rng.normal(size=(3, 40, 2))
        post = stats.multivariate_normal(np.zeros(2), G).logpdf(f - Ef)  # (3, 40)
        lj = model.log_joint(th, {"f": f})
        assert lj.shape == (3, 40)
        np.testing.assert_allclose((lj - post).sum(axis=-1), naive, rtol=1e-10)
        # the model's posterior sampler has these moments
        draws = model.posterior_sampler_fn(th, model.data, np.random.default_rng(2), (4000,))["f"]
        assert draws.shape == (4000, 40, 2)
        assert_mean(draws.reshape(4, 1000, 40, 2), Ef, floor=1e-3)
        resid = (draws - Ef).reshape(-1, 2)
        np.testing.assert_allclose(resid.T @ resid / resid.shape[0], G, atol=0.01)


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
@pytest.mark.parametrize("noise", ["diagonal", "isotropic"])
@pytest.mark.parametrize("loadings", ["full", "lower"])
@pytest.mark.parametrize("seed", [0, 1])
def test_fa_exact_em_never_decreases_loglik(noise, loadings, seed):
    model = factor_analysis(sim_fa(seed, 80), 2, noise=noise, loadings=loadings)
    rng = np.random.default_rng(seed + 10)
    th0 = model.default_theta()
    step = rng.normal(size=(6, 2))
    th0["Lambda"] = th0["Lambda"] + (np.tril(step) if loadings == "lower" else step)
    th0["mu"] = rng.normal(size=6)
    res = mcem.fit(model, th0, method="em", max_iter=60, tol=0.0)
    ll = res.history["loglik"]
    assert np.all(np.isfinite(ll)) and len(ll) == 61
    assert np.all(np.diff(ll) >= -1e-10 * np.abs(ll[:-1]))
    assert ll[-1] > ll[0] + 1.0
    assert "decreased" not in res.message


def naive_fa_nll(v, X, d, q):
    mu, lam, psi = v[:d], v[d : d + d * q].reshape(d, q), np.exp(v[d + d * q :])
    return -stats.multivariate_normal(mu, lam @ lam.T + np.diag(psi)).logpdf(X).sum()


def test_fa_em_fixed_point_is_the_mle_by_direct_maximisation():
    X = sim_fa(1, 300)
    d, q = 6, 2
    em_full = fit_em(factor_analysis(X, q))
    em_lower = fit_em(factor_analysis(X, q, loadings="lower"))
    assert em_full.converged and em_lower.converged
    # a start unrelated to EM's principal-components start
    v0 = np.r_[np.zeros(d), np.full(d * q, 0.5), np.zeros(d)]
    opt = optimize.minimize(naive_fa_nll, v0, args=(X, d, q), method="BFGS", options={"gtol": 1e-7})
    lam = opt.x[d : d + d * q].reshape(d, q)
    direct = {"Sigma": lam @ lam.T + np.diag(np.exp(opt.x[d + d * q :])), "psi": np.exp(opt.x[d + d * q :]),
              "mu": opt.x[:d]}
    for em in (em_full, em_lower):
        # rotation: compare Lambda Lambda^T (through the implied covariance), psi and mu
        np.testing.assert_allclose(implied_covariance(em.params), direct["Sigma"], atol=2e-4)
        np.testing.assert_allclose(em.params["psi"], direct["psi"], atol=2e-4)
        np.testing.assert_allclose(em.params["mu"], direct["mu"], atol=2e-4)
        np.testing.assert_allclose(em.params["mu"], X.mean(axis=0), atol=1e-8)  # the MLE of mu
        assert em["loglik"] >= -opt.fun - 1e-6
        assert em["loglik"] == pytest.approx(-opt.fun, abs=1e-5)
    np.testing.assert_allclose(em_lower.params["Lambda"][0, 1], 0.0)
    np.testing.assert_allclose(
        em_lower.params["Lambda"] @ em_lower.params["Lambda"].T,
        em_full.params["Lambda"] @ em_full.params["Lambda"].T, atol=1e-5,
    )


def test_fa_matches_scikit_learn():
    skd = pytest.importorskip("sklearn.decomposition")
    X = sim_fa(2, 250)
    em = fit_em(factor_analysis(X, 2))
    fa = skd.FactorAnalysis(2, tol=1e-12, max_iter=20_000).fit(X)
    assert em["loglik"] == pytest.approx(fa.score(X) * X.shape[0], abs=1e-4)
    np.testing.assert_allclose(em.params["psi"], fa.noise_variance_, atol=5e-4)
    np.testing.assert_allclose(
        em.params["Lambda"] @ em.params["Lambda"].T, fa.components_.T @ fa.components_, atol=5e-4
    )


@pytest.mark.parametrize("loadings", ["full", "lower"])
def test_probabilistic_pca_reaches_the_tipping_bishop_closed_form(loadings):
    X = sim_fa(3, 200)
    q = 2
    S = np.cov(X, rowvar=False, bias=True)
    evals, evecs = np.linalg.eigh(S)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    s2 = evals[q:].mean()
    WWt = evecs[:, :q] @ np.diag(evals[:q] - s2) @ evecs[:, :q].T
    model = factor_analysis(X, q, noise="isotropic", loadings=loadings)
    rng = np.random.default_rng(0)
    th0 = {"mu": rng.normal(size=6), "Lambda": np.tril(rng.normal(size=(6, q))), "psi": np.array(2.0)}
    res = fit_em(model, th0)
    assert res.converged
    assert float(res.params["psi"]) == pytest.approx(s2, rel=1e-6)
    np.testing.assert_allclose(res.params["Lambda"] @ res.params["Lambda"].T, WWt, atol=1e-5)
    np.testing.assert_allclose(res.params["mu"], X.mean(axis=0), atol=1e-5)


def test_fa_sufficient_stats_of_posterior_draws_average_to_the_exact_e_step():
    X = sim_fa(4, 50)
    model = factor_analysis(X, 2)
    th = random_theta(model, np.random.default_rng(4))
    exact, _ = model.exact_estep_fn(th, model.data)
    f = model.posterior_sampler_fn(th, model.data, np.random.default_rng(5), (400,))["f"]
    per_draw = [model.sufficient_stats_fn({"f": f[i : i + 1]}, model.data) for i in range(400)]
    for k in exact:
        vals = np.stack([s[k] for s in per_draw]).reshape((4, 100) + np.shape(exact[k]))
        assert_mean(vals, exact[k], floor=1e-6)
    # averaging over a batch axis = the mean of the per-draw statistics
    joint = model.sufficient_stats_fn({"f": f}, model.data)
    for k in exact:
        mean = np.mean([s[k] for s in per_draw], axis=0)
        np.testing.assert_allclose(joint[k], mean, rtol=1e-10, atol=1e-10)


def _fd_check_grad(model, th, z, h=1e-6):
    g = model.grad_params_fn(th, z, model.data)
    batch = np.asarray(next(iter(z.values()))).shape[:1]
    for name in model.param_names:
        v = np.asarray(th[name], dtype=float)
        assert g[name].shape == batch + v.shape
        num = np.zeros(batch + v.shape)
        for idx in np.ndindex(v.shape):  # a loop over parameter elements, in a test
            up, dn = {**th, name: v.copy()}, {**th, name: v.copy()}
            up[name][idx] += h
            dn[name][idx] -= h
            diff = model.log_joint_sum(up, z, 1) - model.log_joint_sum(dn, z, 1)
            num[(slice(None),) + idx] = diff / (2 * h)
        if name == "Sigma":  # symmetric perturbations of a symmetric matrix: compare g + g^T
            num = num + np.swapaxes(num, -1, -2) - num * np.eye(v.shape[0])
            ana = g[name] + np.swapaxes(g[name], -1, -2) - g[name] * np.eye(v.shape[0])
        else:
            ana = g[name]
        np.testing.assert_allclose(ana, num, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("noise,loadings", [("diagonal", "full"), ("isotropic", "lower")])
def test_fa_grad_params_matches_finite_differences(noise, loadings):
    model = factor_analysis(sim_fa(5, 30), 2, noise=noise, loadings=loadings)
    th = random_theta(model, np.random.default_rng(6))
    z = {"f": np.random.default_rng(7).normal(size=(2, 30, 2))}
    _fd_check_grad(model, th, z)


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::mcem.MonteCarloWarning")
@pytest.mark.parametrize("sampler,thin,n_batches", [("exact", 1, 10), ("rwm", 3, 5)])
def test_fa_mcem_reaches_the_exact_em_fixed_point(sampler, thin, n_batches):
    X = sim_fa(0, 200, LAMBDA1, PSI1)
    model = factor_analysis(X, 1)
    em = fit_em(model)
    # a fixed Monte Carlo sample size, run well past the EM transient (EM rate about 0.87 here);
    # random-walk draws are thinned and batched coarsely so that batch means see their correlation
    res = mcem.fit(model, method="mcem", sampler=sampler, rng=3, schedule="fixed", m_init=400,
                   max_iter=40, tol=1e-12, thin=thin)
    assert res.history["m"][-1] == 400 and res.n_iter == 40
    fns = {"LLt": lambda t: t["Lambda"] @ t["Lambda"].T, "psi": lambda t: t["psi"], "mu": lambda t: t["mu"]}
    assert_mcem_at_em_fixed_point(model, em, res, fns, n_batches)


def test_fa_lower_loadings_are_identified_and_full_loadings_are_not():
    X = sim_fa(1, 300)
    lower = factor_analysis(X, 2, loadings="lower")
    em = fit_em(lower)
    inf = em.inference()
    assert inf.method == "exact" and inf.positive_definite
    assert inf.se["Lambda"][0, 1] == 0.0  # the fixed zero
    assert np.all(np.isfinite(inf.se["Lambda"])) and np.all(inf.se["psi"] > 0)
    full = factor_analysis(X, 2)
    em_full = fit_em(full)
    with pytest.warns(mcem.MonteCarloWarning, match="not positive definite"):
        inf_full = em_full.inference()
    assert not inf_full.positive_definite
    # the rotation (one direction for q = 2) is the information's null space
    eig = np.linalg.eigvalsh(inf_full.information)
    assert np.sum(np.abs(eig) < 1e-3 * eig.max()) == 1


def test_lower_trapezoidal_constraint():
    c = LowerTrapezoidal(4, 2)
    assert c.unconstrained_shape == (7,)
    u = np.arange(7.0)
    x = c.forward(u)
    assert x.shape == (4, 2) and x[0, 1] == 0 and c.check(x)
    np.testing.assert_array_equal(c.inverse(x), u)
    np.testing.assert_array_equal(c.forward(np.stack([u, 2 * u]))[1], 2 * x)
    assert not c.check(np.ones((4, 2)))
    assert not c.check(np.where(x == 0, 0.0, np.nan))


def test_fa_bad_input_and_untouched_data():
    X = sim_fa(0, 20)
    X_copy = X.copy()
    model = factor_analysis(X, 2)
    with pytest.warns(mcem.ConvergenceWarning, match="max_iter=5"):
        fit_em(model, max_iter=5)
    np.testing.assert_array_equal(X, X_copy)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="X must be finite.*missing_normal"):
        factor_analysis(Xn, 2)
    with pytest.raises(ValueError, match="n_factors must be smaller than the number of features d=6, got 6"):
        factor_analysis(X, 6)
    with pytest.raises(ValueError, match="n_factors must be an int >= 1, got 0"):
        factor_analysis(X, 0)
    with pytest.raises(ValueError, match="noise must be one of"):
        factor_analysis(X, 2, noise="spherical")
    with pytest.raises(ValueError, match="loadings must be one of"):
        factor_analysis(X, 2, loadings="upper")
    with pytest.raises(ValueError, match=r"X must be 2-D .* got shape \(20,\)"):
        factor_analysis(X[:, 0], 1)
    with pytest.raises(TypeError, match="X must be a numeric array"):
        factor_analysis(np.array([["a", "b"], ["c", "d"]]), 1)
    with pytest.raises(ValueError, match=r"init\['psi'\] must lie in positive"):
        factor_analysis(X, 2, init={"psi": -np.ones(6)})
    with pytest.raises(ValueError, match=r"init\['Lambda'\] must lie in lower_trapezoidal"):
        factor_analysis(X, 2, loadings="lower", init={"Lambda": np.ones((6, 2))})


# ============================================================== normal with missing values
def naive_observed_loglik(X, mu, Sigma):
    """Sum over rows of log N(x_obs | mu_obs, Sigma_obs,obs), row by row on purpose (the oracle)."""
    total = 0.0
    for row in X:
        o = ~np.isnan(row)
        r = row[o] - mu[o]
        S = Sigma[np.ix_(o, o)]
        sign, logdet = np.linalg.slogdet(S)
        if sign <= 0:
            return -np.inf
        total += -0.5 * (o.sum() * np.log(2 * np.pi) + logdet + r @ np.linalg.solve(S, r))
    return total


def test_mn_loglik_and_posterior_match_naive_densities():
    X = sim_mcar(0, 60)
    model = missing_normal(X)
    rng = np.random.default_rng(1)
    th = random_theta(model, rng)
    naive = naive_observed_loglik(X, th["mu"], th["Sigma"])
    scipy_naive = sum(
        stats.multivariate_normal(th["mu"][~np.isnan(r)], th["Sigma"][np.ix_(~np.isnan(r), ~np.isnan(r))])
        .logpdf(r[~np.isnan(r)]) for r in X
    )
    assert naive == pytest.approx(scipy_naive, rel=1e-12)
    assert model.exact_loglik(th) == pytest.approx(naive, rel=1e-12)
    rows, mask = model.data["rows"], model.data["mask"]
    z = rng.normal(size=(3,) + mask.shape)
    # log p(x, z) - log p(z | x) = log p(x), with the padding cells N(0, 1)
    log_post = np.zeros(3)
    for r, (i, m) in enumerate(zip(rows, mask, strict=True)):  # row by row: the oracle
        o = ~m
        S = th["Sigma"]
        K = S[np.ix_(m, o)] @ np.linalg.inv(S[np.ix_(o, o)])
        mean = th["mu"][m] + K @ (X[i, o] - th["mu"][o])
        cov = S[np.ix_(m, m)] - K @ S[np.ix_(o, m)]
        log_post += stats.multivariate_normal(mean, cov).logpdf(z[:, r, m])
        log_post += stats.norm.logpdf(z[:, r, o]).sum(axis=-1)
    lj = model.log_joint(th, {"x_mis": z})
    assert lj.shape == (3,)
    np.testing.assert_allclose(lj - log_post, naive, rtol=1e-10)
    # the per-unit conditional terms sum to the log joint less the complete rows' term
    cond = model.conditionals["x_mis"](th, {"x_mis": z}, model.data)
    assert cond.shape == (3, rows.size)
    complete = naive_observed_loglik(np.delete(X, rows, axis=0), th["mu"], th["Sigma"])
    np.testing.assert_allclose(cond.sum(axis=-1) + complete, lj, rtol=1e-10)


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mn_exact_em_never_decreases_loglik(seed):
    X = sim_mcar(seed, 100, d=4, frac=0.3)
    model = missing_normal(X)
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(4, 4))
    th0 = {"mu": rng.normal(size=4) * 3, "Sigma": A @ A.T + 0.1 * np.eye(4)}
    res = mcem.fit(model, th0, method="em", max_iter=40, tol=0.0)
    ll = res.history["loglik"]
    assert len(ll) == 41 and np.all(np.isfinite(ll))
    assert np.all(np.diff(ll) >= -1e-10 * np.abs(ll[:-1]))
    assert ll[-1] > ll[0] + 1.0


def test_mn_em_fixed_point_is_the_mle_by_direct_maximisation():
    X = sim_mcar(3, 80, d=3, frac=0.25)
    d = 3
    em = fit_em(missing_normal(X))
    assert em.converged
    tril = np.tril_indices(d)

    def nll(v):
        L = np.zeros((d, d))
        L[tril] = v[d:]
        return -naive_observed_loglik(X, v[:d], L @ L.T + 1e-12 * np.eye(d))

    v0 = np.r_[np.zeros(d), np.eye(d)[tril]]
    opt = optimize.minimize(nll, v0, method="BFGS", options={"gtol": 1e-6})
    L = np.zeros((d, d))
    L[tril] = opt.x[d:]
    np.testing.assert_allclose(em.params["mu"], opt.x[:d], atol=1e-4)
    np.testing.assert_allclose(em.params["Sigma"], L @ L.T, atol=1e-4)
    assert em["loglik"] >= -opt.fun - 1e-7
    assert em["loglik"] == pytest.approx(-opt.fun, abs=1e-6)


def test_mn_monotone_bivariate_pattern_has_anderson_closed_form():
    """x1 complete, x2 missing for some rows: the MLE is the regression estimator (Anderson 1957)."""
    rng = np.random.default_rng(8)
    N = 150
    X = rng.multivariate_normal([0.5, 2.0], [[1.0, 0.7], [0.7, 2.0]], size=N)
    X[X[:, 0] > 0.8, 1] = np.nan  # MAR: depends on the observed x1 only
    cc = ~np.isnan(X[:, 1])
    x1, y = X[cc, 0], X[cc, 1]
    b = np.cov(x1, y, bias=True)[0, 1] / np.var(x1)
    resid_var = np.var(y - b * x1)
    mu1, s11 = X[:, 0].mean(), X[:, 0].var()
    mu2 = y.mean() + b * (mu1 - x1.mean())
    want_Sigma = np.array([[s11, b * s11], [b * s11, resid_var + b**2 * s11]])
    res = fit_em(missing_normal(X))
    np.testing.assert_allclose(res.params["mu"], [mu1, mu2], atol=1e-5)
    np.testing.assert_allclose(res.params["Sigma"], want_Sigma, atol=1e-5)
    # complete-case estimates are biased under MAR; the MLE moves away from them
    assert abs(res.params["mu"][1] - y.mean()) > 0.1


def test_mn_sufficient_stats_of_posterior_draws_average_to_the_exact_e_step():
    X = sim_mcar(4, 60)
    model = missing_normal(X)
    th = random_theta(model, np.random.default_rng(4))
    exact, _ = model.exact_estep_fn(th, model.data)
    z = model.posterior_sampler_fn(th, model.data, np.random.default_rng(5), (400,))["x_mis"]
    mask = model.data["mask"]
    assert z.shape == (400,) + mask.shape
    # padding cells are standard normal
    pad = z[:, ~mask]
    assert abs(pad.mean()) < 4 / np.sqrt(pad.size) and abs(pad.var() - 1) < 0.05
    per_draw = [model.sufficient_stats_fn({"x_mis": z[i : i + 1]}, model.data) for i in range(400)]
    for k in exact:
        vals = np.stack([s[k] for s in per_draw]).reshape((4, 100) + np.shape(exact[k]))
        assert_mean(vals, exact[k], floor=1e-6)


def test_mn_grad_params_matches_finite_differences():
    model = missing_normal(sim_mcar(5, 30, d=3))
    th = random_theta(model, np.random.default_rng(6))
    z = {"x_mis": np.random.default_rng(7).normal(size=(2,) + model.data["mask"].shape)}
    _fd_check_grad(model, th, z)


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::mcem.MonteCarloWarning")
@pytest.mark.parametrize("sampler,thin,n_batches", [("exact", 1, 10), ("rwm", 3, 5)])
def test_mn_mcem_reaches_the_exact_em_fixed_point(sampler, thin, n_batches):
    model = missing_normal(sim_mar(0, 200))
    em = fit_em(model)  # EM rate about 0.5 here: 20 iterations leave no transient
    res = mcem.fit(model, method="mcem", sampler=sampler, rng=4, schedule="fixed", m_init=400,
                   max_iter=20, tol=1e-12, thin=thin)
    assert res.n_iter == 20
    assert_mcem_at_em_fixed_point(model, em, res, {"mu": lambda t: t["mu"], "Sigma": lambda t: t["Sigma"]},
                                  n_batches)


def test_mn_auto_sampler_is_exact_and_default_mcem_converges():
    model = missing_normal(sim_mar(1, 120))
    em = fit_em(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        res = mcem.fit(model, method="mcem", rng=0, m_init=200, tol=0.01)
    assert res.converged and res.settings["sampler"] == "auto"
    assert isinstance(mcem.EStep(model).kernel, mcem.kernels.Exact)  # "auto" picks the exact sampler
    assert res["loglik"] == pytest.approx(em["loglik"], abs=0.02)


def test_mn_data_layout_and_untouched_input():
    X = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0], [np.nan, 8.0, 9.5], [1.5, 2.0, np.nan],
                  [0.0, 1.0, 2.0]])
    X_copy = X.copy()
    model = missing_normal(X)
    np.testing.assert_array_equal(X, X_copy)  # NaN stays where it was
    np.testing.assert_array_equal(model.data["rows"], [0, 2, 3])
    np.testing.assert_array_equal(model.data["mask"], np.isnan(X[[0, 2, 3]]))
    assert model.data["n_complete"] == 2
    assert np.all(np.isfinite(model.data["X"]))
    assert model.latents["x_mis"].shape == (3, 3) and model.latents["x_mis"].unit
    # the chains start at the observed column means in the missing cells
    z0 = model.init_latents(np.random.default_rng(0), (2,))["x_mis"]
    assert z0[0, 0, 1] == pytest.approx(np.nanmean(X[:, 1]))
    assert np.all(z0[:, ~model.data["mask"]] == 0.0)  # padding


def test_mn_bad_input():
    X = sim_mar(0, 20)
    bad = X.copy()
    bad[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"column\(s\) \[2\] with every value missing"):
        missing_normal(bad)
    bad = X.copy()
    bad[[3, 7]] = np.nan
    with pytest.raises(ValueError, match=r"2 row\(s\) with every value missing: rows \[3, 7\]"):
        missing_normal(bad)
    with pytest.raises(ValueError, match="X has no missing value"):
        missing_normal(np.nan_to_num(X))
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"finite or NaN .* 1 inf value"):
        missing_normal(bad)
    with pytest.raises(ValueError, match="X must be 2-D"):
        missing_normal(X[:, 1])
    with pytest.raises(ValueError, match="at least 2 rows and 2 columns"):
        missing_normal(X[:, :1])
    with pytest.raises(TypeError, match="X must be a numeric array"):
        missing_normal([["a", None], ["b", "c"]])
    with pytest.raises(ValueError, match=r"init\['Sigma'\] must lie in positive_definite\(3\)"):
        missing_normal(X, init={"Sigma": -np.eye(3)})


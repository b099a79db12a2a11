"""Standard errors (Louis) and marginal log-likelihoods against closed forms and quadrature."""

import warnings

import numpy as np
import pytest
from scipy.special import expit, logsumexp
from test_algorithms import COUNTS, THETA_HAT, linkage_model, quadrature_mle
from test_ppl import glmm

import mcem
from mcem import constraints as C
from mcem.inference import marginal_loglik, standard_errors


def linkage_without_loglik():
    m = linkage_model()
    return mcem.Model(m.log_joint_fn, params=m.params, latents=m.latents,
                      sufficient_stats=m.sufficient_stats_fn, mstep=m.mstep_fn, init={"t": 0.5})


def test_louis_standard_error_of_the_linkage_mle():
    # closed-form observed information of 125 log(2 + t) + 38 log(1 - t) + 34 log(t)
    t = THETA_HAT
    info = 125 / (2 + t) ** 2 + 38 / (1 - t) ** 2 + 34 / t**2
    se_exact = 1 / np.sqrt(info)
    model = linkage_without_loglik()
    es = mcem.EStep(model, "gibbs", n_chains=4, burn=5)
    theta = {"t": np.array(t)}
    draws = es.run(theta, es.init(theta, 0), 1000, np.random.default_rng(1)).draws
    inf = standard_errors(model, theta, draws)
    assert inf.method == "louis" and inf.positive_definite
    se, mc = float(inf.se["t"]), float(inf.se_mcse["t"])
    assert 0 < mc < 0.1 * se
    assert abs(se - se_exact) < 4 * mc + 1e-4, (se, se_exact, mc)
    # the exact path uses the exact log-likelihood's Hessian
    exact = standard_errors(linkage_model(), theta)
    assert exact.method == "exact"
    np.testing.assert_allclose(exact.se["t"], se_exact, rtol=1e-5)


def test_fit_result_standard_errors_and_summary_for_mcem():
    res = mcem.fit(linkage_model(), method="mcem", rng=3)
    se = res.standard_errors()
    assert set(se) == {"t"} and se["t"].shape == ()
    louis = res.inference(method="louis")
    assert abs(louis.se["t"] - se["t"]) < 4 * louis.se_mcse["t"] + 2e-3
    text = str(res.summary())
    assert "std err" in text and "t  " in text and "Log-likelihood" in text


def test_gaussian_mixture_louis_matches_the_exact_hessian():
    X = mcem.datasets.load_faithful()
    model = mcem.models.gaussian_mixture(X, 2)
    em = mcem.fit(model, tol=1e-12, max_iter=1000)
    exact = em.inference(method="exact")
    es = mcem.EStep(model, "gibbs", n_chains=4, burn=20)
    draws = es.run(em.params, es.init(em.params, 0), 1000, np.random.default_rng(2)).draws
    louis = standard_errors(model, em.params, draws, method="louis")
    for k in exact.se:
        err = np.abs(louis.se[k] - exact.se[k])
        assert np.all(err < 4 * louis.se_mcse[k] + 0.01 * exact.se[k]), (k, err, louis.se_mcse[k])
    # the delta method gives symmetric covariance SEs and equal weight SEs
    np.testing.assert_allclose(exact.se["weights"][0], exact.se["weights"][1], rtol=1e-6)


def test_glmm_standard_errors_and_loglik_against_quadrature():
    rng = np.random.default_rng(7)
    G, n = 40, 8
    group = np.repeat(np.arange(G), n)
    X = np.column_stack([np.ones(G * n), rng.normal(size=G * n)])
    y = (rng.random(G * n) < expit(X @ np.array([-0.5, 1.0]) + rng.normal(size=G)[group])).astype(int)
    v_hat, _ = quadrature_mle(X, y, group, G)
    nodes, w = np.polynomial.hermite_e.hermegauss(60)
    lw = np.log(w / np.sqrt(2 * np.pi))

    def ll(v):
        eta = (X @ v[:-1])[:, None] + np.exp(v[-1]) * nodes[None, :]
        per = np.zeros((G, nodes.size))
        np.add.at(per, group, y[:, None] * eta - np.logaddexp(0, eta))
        return logsumexp(per + lw, axis=1).sum()

    h = 1e-4
    p = v_hat.size
    H = np.empty((p, p))
    for i in range(p):
        for j in range(p):
            ei, ej = np.eye(p)[i] * h, np.eye(p)[j] * h
            H[i, j] = (ll(v_hat + ei + ej) - ll(v_hat + ei - ej) - ll(v_hat - ei + ej) + ll(v_hat - ei - ej)) / (4 * h * h)
    se_quad = np.sqrt(np.diag(np.linalg.inv(-H)))

    model = glmm(X=X, y=y, group=group, n_groups=G)
    theta = {"beta": v_hat[:2], "sigma": np.exp(v_hat[2])}
    es = mcem.EStep(model, n_chains=4, burn=300)
    draws = es.run(theta, es.init(theta, 0), 1500, np.random.default_rng(3)).draws
    inf = standard_errors(model, theta, draws)
    se_u = np.sqrt(np.diag(inf.cov_unconstrained))  # (beta0, beta1, log sigma) like v_hat
    mc_u = np.r_[inf.se_mcse["beta"], inf.se_mcse["sigma"] / np.exp(v_hat[2])]
    assert np.all(np.abs(se_u - se_quad) < 4 * mc_u + 0.02 * se_quad), (se_u, se_quad, mc_u)
    est = marginal_loglik(model, theta, draws, n_samples=4000, rng=5)
    assert est.method == "importance sampling (per unit)"
    assert abs(est.value - ll(v_hat)) < 4 * est.mcse + 1e-3, (est, ll(v_hat))


def test_joint_importance_sampling_matches_a_conjugate_marginal():
    """y ~ N(z1 + z2, 1), z ~ N(0, s^2 I) jointly: p(y) = N(0, 1 + 2 s^2), no unit structure."""
    y = 0.7

    def log_joint(theta, z, data):
        s = theta["s"]
        zz = z["z"]
        return (-0.5 * (y - zz.sum(-1)) ** 2 - 0.5 * np.sum(zz**2, -1) / s**2
                - 2 * np.log(s) - 1.5 * np.log(2 * np.pi))

    model = mcem.Model(log_joint, params={"s": C.positive}, latents={"z": mcem.Continuous(shape=2)})
    theta = {"s": np.array(0.8)}
    es = mcem.EStep(model, "rwm", n_chains=4, burn=200)
    draws = es.run(theta, es.init(theta, 0), 500, np.random.default_rng(0)).draws
    est = marginal_loglik(model, theta, draws, n_samples=5000, rng=1)
    v = 1 + 2 * 0.8**2
    truth = -0.5 * np.log(2 * np.pi * v) - 0.5 * y**2 / v
    assert est.method == "importance sampling (joint)"
    assert abs(est.value - truth) < 4 * est.mcse + 1e-3, (est, truth)


def test_mixture_loglik_is_exact_and_aic_bic():
    X = mcem.datasets.load_faithful()
    model = mcem.models.gaussian_mixture(X, 2)
    res = mcem.fit(model, method="mcem", sampler="gibbs", rng=1)
    est = res.marginal_loglik()
    assert est.mcse == 0 and est.value == pytest.approx(model.exact_loglik(res.params))
    k = 2 * 3 + 2 * 2 + 1
    assert res.df_model == k and res.nobs == 272
    assert res.aic == pytest.approx(-2 * est.value + 2 * k)
    assert res.bic == pytest.approx(-2 * est.value + k * np.log(272))
    # without the exact log-likelihood the sum over label states gives the same number
    bare = mcem.Model(model.log_joint_fn, params=model.params, latents=model.latents, data=model.data)
    assert marginal_loglik(bare, res.params).value == pytest.approx(est.value, rel=1e-12)


def test_non_identified_parameters_warn_and_give_nan():
    """y_i ~ N(u_i, 1), u_i ~ N(a + b, 1): only a + b is identified."""
    yv = np.array([0.2, 1.4, -0.3, 0.9])

    def log_joint(theta, z, data):
        u = z["u"]
        return -0.5 * (yv - u) ** 2 - 0.5 * (u - theta["a"] - theta["b"]) ** 2 - np.log(2 * np.pi)

    model = mcem.Model(log_joint, params={"a": C.real, "b": C.real},
                       latents={"u": mcem.Continuous(shape=4, unit=True)})
    theta = {"a": np.array(0.2), "b": np.array(0.35)}
    es = mcem.EStep(model, n_chains=4, burn=100)
    draws = es.run(theta, es.init(theta, 0), 200, np.random.default_rng(0)).draws
    with pytest.warns(mcem.MonteCarloWarning, match="not positive definite"):
        inf = standard_errors(model, theta, draws)
    assert not inf.positive_definite
    assert np.isnan(inf.se["a"]) and np.isnan(inf.se["b"])


def test_loaded_result_needs_the_model_for_louis(tmp_path):
    res = mcem.fit(linkage_without_loglik(), method="mcem", rng=4, max_iter=8, tol=1e-9)
    path = tmp_path / "fit.mcem"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res.save(path)
    loaded = mcem.load_result(path)
    with pytest.raises(ValueError, match="pass model="):
        loaded.standard_errors()
    se = loaded.standard_errors(model=linkage_without_loglik())
    np.testing.assert_allclose(se["t"], res.standard_errors()["t"])
    assert COUNTS.sum() == 197


def test_per_unit_importance_sampling_on_a_positive_latent_uses_the_jacobian():
    """Gamma-Poisson: y_i ~ Poisson(lam_i), lam_i ~ Gamma(a, b): p(y_i) is negative binomial."""
    from scipy import stats

    from mcem import dist

    @mcem.model
    def pumps(m, y):
        a = m.param("a", constraint=C.positive, init=1.5)
        b = m.param("b", constraint=C.positive, init=0.8)
        lam = m.latent("lam", dist.Gamma(a, b), shape=y.size, unit=True)
        m.observe("y", dist.Poisson(lam), y, unit_index=np.arange(y.size))

    yv = np.array([5, 1, 5, 14, 3, 19, 1, 1, 4, 22])
    model = pumps(y=yv)
    theta = {"a": np.array(1.5), "b": np.array(0.3)}
    es = mcem.EStep(model, n_chains=4, burn=300)
    draws = es.run(theta, es.init(theta, 0), 1000, np.random.default_rng(0)).draws
    est = marginal_loglik(model, theta, draws, n_samples=4000, rng=2)
    truth = stats.nbinom(1.5, 0.3 / 1.3).logpmf(yv).sum()
    assert abs(est.value - truth) < 4 * est.mcse + 1e-3, (est, truth)


def test_loglik_by_enumerating_a_small_discrete_latent():
    model = linkage_without_loglik()
    theta = {"t": np.array(0.4)}
    t = 0.4
    p = np.array([0.5 + t / 4, (1 - t) / 4, (1 - t) / 4, t / 4])
    # the complete-data density leaves out factors free of theta: compare two values of theta
    est = marginal_loglik(model, theta)
    est2 = marginal_loglik(model, {"t": np.array(0.6)})
    p2 = np.array([0.5 + 0.15, 0.1, 0.1, 0.15])
    assert est.method.startswith("exact") and est.mcse == 0
    assert est2.value - est.value == pytest.approx(np.sum(COUNTS * (np.log(p2) - np.log(p))), rel=1e-10)


def test_analytic_scores_from_grad_params_match_finite_differences():
    from test_algorithms import _glmm_draws, lowlevel_logit_ri

    from mcem import mstep

    X, y, group, G, draws = _glmm_draws(5)
    with_g = lowlevel_logit_ri(X, y, group, G, True)
    without = lowlevel_logit_ri(X, y, group, G, False)
    theta = {"beta": np.array([0.2, -0.5]), "sigma": np.array(0.9)}
    np.testing.assert_allclose(mstep.per_draw_scores(with_g, theta, draws),
                               mstep.per_draw_scores(without, theta, draws), rtol=1e-5, atol=1e-6)
    a, b = standard_errors(with_g, theta, draws), standard_errors(without, theta, draws)
    for k in a.se:
        np.testing.assert_allclose(a.se[k], b.se[k], rtol=1e-4)

"""VB-EM (method="vbem") against its oracles.

* The exact categorical q contains the posterior, so VB-EM on a Gaussian mixture is exact EM:
  the same iterates (to 1e-6) and the bound's terms against a naive computation.
* A Gaussian random-intercept model's posterior is Gaussian and, with one effect per unit,
  mean-field: VB-EM's estimate is the maximum-likelihood estimate (computed here from the closed
  marginal likelihood) and the KL is 0 within its Monte Carlo error.
* A logit GLMM: the bound lies below the quadrature log-likelihood at VB-EM's estimate, the gap
  is the KL the fit reports within Monte Carlo error, and the variance component is below the
  MLE's (VB's known bias).
* Every reported ELBO against a brute-force Monte Carlo average written here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import logsumexp

import mcem
from mcem import constraints as C
from mcem import dist
from mcem.models import glmm_quadrature as gq
from mcem.models.glmm_model import random_intercept_glmm, simulate_random_intercept


def _mixture_data(seed=1):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-1.0, 1.0, (120, 2)), rng.normal(1.0, 0.8, (100, 2))])


def test_vbem_on_the_mixture_is_exact_em():
    gm = mcem.models.gaussian_mixture(_mixture_data(), 2, reg_covar=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.ConvergenceWarning)  # max_iter, on purpose
        em = mcem.fit(gm, method="em", max_iter=30, tol=0)
        vb = mcem.fit(gm, method="vbem", max_iter=30, tol=0, rng=0)
    for it in (1, 5, 30):
        for k in em.params:
            a, b = em.history.params(k)[it], vb.history.params(k)[it]
            assert np.max(np.abs(a - b)) < 1e-6, (it, k)
    np.testing.assert_allclose(vb.history["loglik"], em.history["loglik"], rtol=0, atol=1e-6)
    # converged runs agree too
    em = mcem.fit(gm, method="em", tol=1e-13, max_iter=2000)
    vb = mcem.fit(gm, method="vbem", tol=1e-13, max_iter=2000, rng=0)
    assert em.converged and vb.converged
    for k in em.params:
        assert np.max(np.abs(em.params[k] - vb.params[k])) < 1e-6, k
    assert vb.elbo["value"] == pytest.approx(vb.llf, abs=1e-9)
    assert vb.kl["value"] == 0.0 and vb.family == "categorical"
    (resp,) = [p["resp"] for p in vb.phi.values()]
    assert resp.shape == (220, 2)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)


def test_categorical_bound_terms_against_a_naive_computation():
    X = _mixture_data(2)
    gm = mcem.models.gaussian_mixture(X, 2, reg_covar=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.ConvergenceWarning)  # max_iter, on purpose
        vb = mcem.fit(gm, method="vbem", max_iter=4, tol=0, rng=0)
    h = vb.history

    def naive(th):  # log w_k + log N(x_n; mu_k, Sigma_k), (N, K)
        return np.column_stack([np.log(th["weights"][k]) + stats.multivariate_normal(
            th["means"][k], th["covariances"][k]).logpdf(X) for k in range(2)])

    for t in range(1, 5):
        old = {k: h.params(k)[t - 1] for k in vb.params}
        new = {k: h.params(k)[t] for k in vb.params}
        lj_old, lj_new = naive(old), naive(new)
        r = np.exp(lj_old - logsumexp(lj_old, axis=1, keepdims=True))
        post_new = lj_new - logsumexp(lj_new, axis=1, keepdims=True)
        kl = float(np.sum(r * (np.log(r) - post_new)))
        ll = float(logsumexp(lj_new, axis=1).sum())
        assert h["kl"][t] == pytest.approx(kl, rel=1e-8, abs=1e-10)
        assert h["loglik"][t] == pytest.approx(ll, rel=1e-12)
        assert h["elbo"][t] == pytest.approx(ll - kl, rel=1e-12)
        assert h["q"][t] + h["h"][t] == pytest.approx(ll, rel=1e-12)
        assert h["kl"][t] >= 0


def test_vbem_model_language_mixture_uses_exact_scores():
    x = np.concatenate([np.random.default_rng(3).normal(-1.5, 1.0, 80), np.random.default_rng(4).normal(2.0, 1.0, 70)])

    @mcem.model
    def mix(m, x):
        w = m.param("w", constraint=C.simplex(2), init=[0.4, 0.6])
        mu = m.param("mu", shape=2, init=[-1.0, 1.0])
        s = m.param("s", constraint=C.positive, init=1.0)
        z = m.latent("z", dist.Categorical(probs=w), shape=x.shape[0], unit=True)
        m.observe("x", dist.Normal(mu[z], s), x, unit_index=np.arange(x.shape[0]))

    model = mix(x=x)
    assert model.unit_scores_fn is not None
    vb = mcem.fit(model, method="vbem", tol=1e-12, rng=0)

    def negll(v):  # the exact mixture likelihood, maximised directly
        w = np.array([1.0 / (1.0 + np.exp(-v[0])), 0.0])
        w[1] = 1.0 - w[0]
        lp = np.log(w)[:, None] + stats.norm.logpdf(x[None, :], v[1:3, None], np.exp(v[3]))
        return -float(logsumexp(lp, axis=0).sum())

    th = vb.params
    v0 = [np.log(th["w"][0] / th["w"][1]), *th["mu"], np.log(th["s"])]
    res = optimize.minimize(negll, v0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    assert -res.fun == pytest.approx(vb.llf, abs=1e-7)
    np.testing.assert_allclose(th["mu"], res.x[1:3], atol=1e-4)


# ---------------------------------------------------------------------- continuous latents
def _lmm_fn(m, X, y, group, n_groups):
    beta = m.param("beta", shape=X.shape[1], init=0.0)
    sigma = m.param("sigma", constraint=C.positive, init=1.0)
    tau = m.param("tau", constraint=C.positive, init=1.0)
    u = m.latent("u", dist.Normal(0.0, sigma), shape=n_groups, unit=True)
    m.observe("y", dist.Normal(X @ beta + u[..., group], tau), y, unit_index=group)


def _lmm_mle(X, y, group, G):
    """The MLE of the random-intercept LMM from its closed marginal likelihood (dense per group)."""
    idx = [np.flatnonzero(group == g) for g in range(G)]

    def negll(v):
        beta, s2, t2 = v[:2], np.exp(2 * v[2]), np.exp(2 * v[3])
        total = 0.0
        for ii in idx:  # a reference loop over groups, test only
            n = ii.size
            cov = t2 * np.eye(n) + s2 * np.ones((n, n))
            total += stats.multivariate_normal(X[ii] @ beta, cov).logpdf(y[ii])
        return -total

    res = optimize.minimize(negll, np.zeros(4), method="BFGS", options={"gtol": 1e-8})
    H = optimize.approx_fprime(res.x, lambda v: optimize.approx_fprime(v, negll, 1e-6), 1e-5)
    cov = np.linalg.inv(0.5 * (H + H.T))
    jac = np.diag([1, 1, np.exp(res.x[2]), np.exp(res.x[3])])
    se = np.sqrt(np.diag(jac @ cov @ jac))
    return {"beta": res.x[:2], "sigma": np.exp(res.x[2]), "tau": np.exp(res.x[3])}, se, -res.fun


@pytest.fixture(scope="module")
def lmm():
    rng = np.random.default_rng(7)
    G, n = 60, 5
    group = np.repeat(np.arange(G), n)
    X = np.column_stack([np.ones(G * n), rng.standard_normal(G * n)])
    y = X @ [1.0, -0.5] + 0.8 * rng.standard_normal(G)[group] + 0.6 * rng.standard_normal(G * n)
    model = mcem.model(_lmm_fn)(X=X, y=y, group=group, n_groups=G)
    return model, _lmm_mle(X, y, group, G), mcem.fit(model, method="vbem", rng=1)


def test_vbem_on_a_gaussian_lmm_is_the_mle(lmm):
    """q holds the exact posterior (one Gaussian effect per unit): VB-EM's estimate is the MLE."""
    model, (mle, se, ll), vb = lmm
    assert vb.converged, vb.message
    est = np.concatenate([vb.params["beta"], [vb.params["sigma"], vb.params["tau"]]])
    ref = np.concatenate([mle["beta"], [mle["sigma"], mle["tau"]]])
    assert np.max(np.abs(est - ref) / se) < 0.25, (est - ref) / se
    # KL(q || posterior) is 0: the bound is the log-likelihood within its Monte Carlo error
    assert abs(vb.kl["value"]) < 4 * vb.kl["mcse"] + 1e-3
    assert vb.loglik_is["value"] == pytest.approx(ll, abs=4 * vb.loglik_is["mcse"] + 0.02)


@pytest.fixture(scope="module")
def logit_glmm():
    d = simulate_random_intercept(100, 8, [-0.5, 1.0], 1.2, rng=3)
    model = random_intercept_glmm(d["X"], d["y"], d["group"])
    vb = mcem.fit(model, method="vbem", rng=0, final_draws=8000)
    return d, model, vb


def test_vbem_logit_glmm_bound_gap_is_the_reported_kl(logit_glmm):
    d, model, vb = logit_glmm
    assert vb.converged, vb.message
    ll = gq.quadrature_loglik(vb.params, d["X"], d["y"], d["group"], n_nodes=30)
    elbo, kl = vb.elbo, vb.kl
    assert elbo["value"] + 4 * elbo["mcse"] < ll  # a lower bound, significantly
    gap = ll - elbo["value"]
    assert kl["value"] > 0
    # KL = (importance-sampled log p) - ELBO from the same draws, so gap - KL is the error of the
    # importance estimate alone (the quadrature is exact to many digits)
    assert abs(gap - kl["value"]) < 4 * vb.loglik_is["mcse"] + 1e-3
    assert kl["mcse"] < 0.1 * kl["value"]
    # VB's known bias: the variance component below the MLE's
    mle = gq.fit_quadrature(d["X"], d["y"], d["group"])
    assert vb.params["sigma"] < mle.params["sigma"]


def _brute_force_elbo(model, theta, phi, rng, n=20000):
    """E_q[log p(x, z; theta) - log q(z)] by plain Monte Carlo (real-valued latents)."""
    vals = []
    for _ in range(4):  # batches of draws
        z, lq = {}, 0.0
        for name, p in phi.items():
            mean, sd = p["mean"], p["sd"]
            draw = mean + sd * rng.standard_normal((n // 4,) + mean.shape)
            z[name] = draw
            lq = lq + stats.norm.logpdf(draw, mean, sd).reshape(n // 4, -1).sum(1)
        vals.append(model.log_joint_sum(theta, z, 1) - lq)
    v = np.concatenate(vals)
    return v.mean(), v.std(ddof=1) / np.sqrt(v.size)


def test_reported_elbos_against_brute_force(logit_glmm, lmm):
    rng = np.random.default_rng(11)
    d, model, vb = logit_glmm
    lmm_model, _, vb2 = lmm
    for m, res in ((model, vb), (lmm_model, vb2)):
        value, se = _brute_force_elbo(m, res.params, res.phi, rng)
        assert abs(res.elbo["value"] - value) < 4 * np.hypot(res.elbo["mcse"], se)
    # the history's bound (on each iteration's fresh draws) against brute force at one iterate is
    # covered by the final one; its path must rise overall
    e = vb.history["elbo"]
    assert e[-1] > e[1]


def test_fullrank_bound_is_at_least_meanfield_on_correlated_effects():
    """Random intercept and slope per unit: the posterior of the pair is correlated, so the
    full-rank family reaches a higher bound than the diagonal one."""
    rng = np.random.default_rng(5)
    G, n = 30, 6
    group = np.repeat(np.arange(G), n)
    x = rng.standard_normal(G * n) + 1.5

    def fn(m, x, y, group, n_groups):
        a = m.param("a", init=0.0)
        b = m.param("b", init=0.0)
        s = m.param("s", constraint=C.positive, init=1.0)
        u = m.latent("u", dist.Normal(0.0, 1.0), shape=(n_groups, 2), unit=True)
        eta = a + s * u[..., group, 0] + (b + 0.5 * u[..., group, 1]) * x
        m.observe("y", dist.Bernoulli(logits=eta), y, unit_index=group)

    y = (rng.random(G * n) < 0.5).astype(float)
    model = mcem.model(fn)(x=x, y=y, group=group, n_groups=G)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mf = mcem.fit(model, method="vbem", rng=0, max_iter=40)
        fr = mcem.fit(model, method="vbem", family="fullrank", rng=0, max_iter=40)
    assert fr.phi["u"]["chol"].shape == (G, 2, 2)
    assert fr.elbo["value"] > mf.elbo["value"] - 4 * np.hypot(fr.elbo["mcse"], mf.elbo["mcse"])
    for res in (mf, fr):  # the bound lies below the log-likelihood: KL >= 0
        assert res.kl["value"] > -4 * res.kl["mcse"]


def test_vbem_bad_input():
    gm = mcem.models.gaussian_mixture(_mixture_data(), 2)
    with pytest.raises(ValueError, match="family"):
        mcem.fit(gm, method="vbem", family="diagonal")
    d = simulate_random_intercept(10, 3, [0.0], 1.0, rng=0)
    model = random_intercept_glmm(d["X"], d["y"], d["group"])
    with pytest.raises(ValueError, match="m .draws per iteration. must be at least 2"):
        mcem.fit(model, method="vbem", m=1)

    @mcem.model
    def both(m, x):
        p = m.param("p", constraint=C.unit_interval, init=0.5)
        s = m.param("s", constraint=C.positive, init=1.0)
        z = m.latent("z", dist.Bernoulli(probs=p), shape=x.shape[0], unit=True)
        v = m.latent("v", dist.Normal(0.0, s), shape=x.shape[0], unit=True)
        i = np.arange(x.shape[0])
        m.observe("x", dist.Normal(v + z, 1.0), x, unit_index={"z": i, "v": i})

    with pytest.raises(ValueError, match=r"discrete latent\(s\) \['z'\] next to continuous \['v'\]"):
        mcem.fit(both(x=np.zeros(5)), method="vbem")


def test_vbem_resume_is_identical(tmp_path, logit_glmm):
    _, model, _ = logit_glmm
    path = tmp_path / "vb.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.ConvergenceWarning)  # max_iter, on purpose
        full = mcem.fit(model, method="vbem", rng=4, max_iter=6, tol=0)
        part = mcem.fit(model, method="vbem", rng=4, max_iter=6, tol=0, checkpoint=path, checkpoint_every=0,
                        callback=lambda row: row["iter"] >= 3)
        rest = mcem.resume(path, model)
    assert part.n_iter == 3
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], rest.params[k])
    np.testing.assert_array_equal(full.history["elbo"], rest.history["elbo"])

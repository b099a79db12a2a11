"""The probabilistic-programming front end compiles to the same Model contract."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

import mcem
from mcem import constraints as C
from mcem import dist


@mcem.model
def glmm(m, X, y, group, n_groups):
    beta = m.param("beta", shape=X.shape[1], init=0.0)
    sigma = m.param("sigma", constraint=C.positive, init=1.0)
    u = m.latent("u", dist.Normal(0.0, sigma), shape=n_groups, unit=True)
    m.observe("y", dist.Bernoulli(logits=X @ beta + u[..., group]), y, unit_index=group)


@mcem.model
def crossed(m, y, female, male, nf, nm):
    b = m.param("b", init=0.0)
    sf = m.param("sf", constraint=C.positive, init=1.0)
    sm = m.param("sm", constraint=C.positive, init=1.0)
    f = m.latent("f", dist.Normal(0.0, sf), shape=nf, unit=True)
    g = m.latent("g", dist.Normal(0.0, sm), shape=nm, unit=True)
    m.observe("y", dist.Bernoulli(logits=b + f[..., female] + g[..., male]), y,
              unit_index={"f": female, "g": male})


def glmm_data(seed=0, G=6, n=5):
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(G), n)
    X = np.column_stack([np.ones(G * n), rng.normal(size=G * n)])
    y = rng.integers(0, 2, size=G * n)
    return X, y, group, G


def naive_glmm_log_joint(theta, u, X, y, group):
    p = expit(X @ theta["beta"] + u[group])
    return stats.norm(0, theta["sigma"]).logpdf(u).sum() + stats.bernoulli(p).logpmf(y).sum()


def test_glmm_compiles_with_per_unit_terms_matching_naive():
    X, y, group, G = glmm_data()
    model = glmm(X=X, y=y, group=group, n_groups=G)
    assert isinstance(model, mcem.Model)
    assert set(model.params) == {"beta", "sigma"} and model.params["beta"].shape == (2,)
    assert model.latents["u"].unit and model.n_units == G
    assert model.per_unit
    theta = {"beta": np.array([0.4, -0.7]), "sigma": np.array(1.3)}
    u = np.random.default_rng(1).normal(size=(3, 2, G))
    lj = model.log_joint(theta, {"u": u})
    assert lj.shape == (3, 2, G)
    for idx in np.ndindex(3, 2):
        np.testing.assert_allclose(lj[idx].sum(), naive_glmm_log_joint(theta, u[idx], X, y, group), rtol=1e-12)
    # unit terms: the conditional of unit g involves only its prior and its observations
    cond = model.conditionals["u"](theta, {"u": u}, model.data)
    p = expit(X @ theta["beta"] + u[0, 0][group])
    ll_obs = stats.bernoulli(p).logpmf(y)
    for g in range(G):
        expect = stats.norm(0, 1.3).logpdf(u[0, 0, g]) + ll_obs[group == g].sum()
        np.testing.assert_allclose(cond[0, 0, g], expect, rtol=1e-12)
    assert model.default_theta()["sigma"] == 1.0


def test_crossed_effects_give_one_conditional_per_site():
    rng = np.random.default_rng(2)
    female = np.array([0, 0, 1, 1, 2, 2])
    male = np.array([0, 1, 0, 1, 0, 1])
    y = rng.integers(0, 2, size=6)
    model = crossed(y=y, female=female, male=male, nf=3, nm=2)
    assert not model.per_unit and set(model.conditionals) == {"f", "g"}
    theta = {"b": np.array(0.2), "sf": np.array(0.8), "sm": np.array(1.4)}
    z = {"f": rng.normal(size=(4, 3)), "g": rng.normal(size=(4, 2))}
    total = model.log_joint(theta, z)
    assert total.shape == (4,)
    for b in range(4):
        f, g = z["f"][b], z["g"][b]
        ll = stats.bernoulli(expit(0.2 + f[female] + g[male])).logpmf(y)
        ref = stats.norm(0, 0.8).logpdf(f).sum() + stats.norm(0, 1.4).logpdf(g).sum() + ll.sum()
        np.testing.assert_allclose(total[b], ref, rtol=1e-12)
        cf = model.conditionals["f"](theta, z, model.data)[b]
        cg = model.conditionals["g"](theta, z, model.data)[b]
        for i in range(3):
            np.testing.assert_allclose(cf[i], stats.norm(0, 0.8).logpdf(f[i]) + ll[female == i].sum(), rtol=1e-12)
        for j in range(2):
            np.testing.assert_allclose(cg[j], stats.norm(0, 1.4).logpdf(g[j]) + ll[male == j].sum(), rtol=1e-12)


def test_observation_without_unit_index_falls_back_to_total():
    @mcem.model
    def pooled(m, y, n):
        mu = m.param("mu")
        u = m.latent("u", dist.Normal(mu, 1.0), shape=n, unit=True)
        m.observe("y", dist.Normal(u.sum(-1), 1.0), y)  # involves every unit at once

    model = pooled(y=np.array(0.5), n=3)
    assert not model.per_unit and model.conditionals == {}
    out = model.log_joint({"mu": np.array(0.0)}, {"u": np.zeros((2, 3))})
    np.testing.assert_allclose(out, 3 * stats.norm.logpdf(0) + stats.norm.logpdf(0.5))


def test_discrete_and_positive_latents_get_their_supports():
    @mcem.model
    def mix(m, x):
        w = m.param("w", constraint=C.simplex(2))
        mu = m.param("mu", shape=2, init=[-1.0, 1.0])
        z = m.latent("z", dist.Categorical(probs=w), shape=x.shape[0], unit=True)
        m.observe("x", dist.Normal(mu[z], 1.0), x, unit_index=np.arange(x.shape[0]))

    model = mix(x=np.array([0.1, 2.0, -1.5]))
    assert isinstance(model.latents["z"], mcem.Discrete) and model.latents["z"].K == 2
    theta = {"w": np.array([0.3, 0.7]), "mu": np.array([-1.0, 1.0])}
    z = np.array([[0, 1, 0], [1, 1, 1]])
    out = model.log_joint(theta, {"z": z})
    x = np.array([0.1, 2.0, -1.5])
    ref = np.log(theta["w"][z]) + stats.norm.logpdf(x, theta["mu"][z], 1.0)
    np.testing.assert_allclose(out, ref, rtol=1e-12)

    @mcem.model
    def rates(m, y):
        a = m.param("a", constraint=C.positive, init=2.0)
        lam = m.latent("lam", dist.Gamma(a, 1.0), shape=y.size, unit=True)
        m.observe("y", dist.Poisson(lam), y, unit_index=np.arange(y.size))

    model = rates(y=np.array([1, 4, 0]))
    assert model.latents["lam"].support == C.positive(shape=3)
    assert np.all(model.latents["lam"].initial(np.random.default_rng(0), (2,)) > 0)


def test_front_end_errors():
    @mcem.model
    def twice(m, y):
        m.param("a")
        m.param("a")

    with pytest.raises(ValueError, match="the name 'a' is used twice"):
        twice(y=np.zeros(2))

    @mcem.model
    def infinite(m, y):
        rate = m.param("rate", constraint=C.positive)
        m.latent("k", dist.Poisson(rate), shape=2)

    with pytest.raises(ValueError, match="a discrete latent needs finitely many states"):
        infinite(y=np.zeros(2))

    @mcem.model
    def no_latent(m, y):
        m.param("a")

    with pytest.raises(ValueError, match="declares no latent variable"):
        no_latent(y=np.zeros(2))

    X, y, group, G = glmm_data()
    with pytest.raises(IndexError, match=r"model 'glmm' raised IndexError when run on its data: index 3"):
        glmm(X=X, y=y, group=group, n_groups=3)

    @mcem.model
    def wrong_index(m, y, group):
        s = m.param("s", constraint=C.positive)
        u = m.latent("u", dist.Normal(0.0, s), shape=2, unit=True)
        m.observe("y", dist.Normal(u[..., group % 2], 1.0), y, unit_index=group)

    with pytest.raises(ValueError, match=r"unit_index\['u'\] must lie in 0..1, got values from 0 to 2"):
        wrong_index(y=np.zeros(3), group=np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="glmm: missing a required argument: 'n_groups'"):
        glmm(X=X, y=y, group=group)
    bad = X.copy()
    bad[0, 1] = np.inf
    with pytest.raises(ValueError, match=r"data\['X'\] must be finite"):
        glmm(X=bad, y=y, group=group, n_groups=G)

    @mcem.model
    def bad_init(m, y):
        m.param("s", constraint=C.positive, init=-1.0)

    with pytest.raises(ValueError, match="param 's': init must lie in positive"):
        bad_init(y=np.zeros(2))

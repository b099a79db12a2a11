"""Closed-form M steps found by the model language (:mod:`mcem.lang.structure`).

Each recognised kind of site gives the same M step as the numerical maximisation of Q_hat
without it (tight L-BFGS-B) and as the update written out here; sites that do not qualify
are left to the numerical M step; SAEM with closed-form statistics (all or part of the
parameters) ends near the exact MLE; ``Model.describe`` lists the closed forms.
"""

from __future__ import annotations

import copy
import functools
import warnings

import numpy as np
import pytest
from scipy import optimize, special, stats

import mcem
from mcem import constraints as C
from mcem import dist
from mcem import mstep as M
from mcem.exceptions import ConvergenceWarning, MonteCarloWarning

OPT = {"gtol": 1e-10, "ftol": 1e-14, "maxiter": 10_000}
AGREE = dict(rtol=1e-5, atol=1e-5)  # closed form vs numerical optimum
EXACT = dict(rtol=1e-10, atol=1e-12)  # closed form vs the update written here
CH, DR = 2, 25  # chains and draws of the draws an M step is given

G = 6  # units of the small models
RNG = np.random.default_rng(7)
GROUP = np.repeat(np.arange(G), 3)
XG = RNG.standard_normal(G * 3)
YG = RNG.standard_normal(G * 3) + 0.5
XU = RNG.standard_normal(G)  # one row per unit
YU = RNG.standard_normal(G)
NMIX = 8
XMIX = np.concatenate([RNG.normal(-1.0, 0.5, 4), RNG.normal(1.5, 0.5, 4)])

# Gaussian random intercept and logit GLMM: also fitted by SAEM below.
GRI, NRI = 30, 4
GROUP_RI = np.repeat(np.arange(GRI), NRI)
Y_RI = (RNG.normal(0.5, 1.0, GRI)[GROUP_RI] + RNG.standard_normal(GRI * NRI))
GGL, NGL = 30, 6
GROUP_GL = np.repeat(np.arange(GGL), NGL)
X_GL = np.column_stack([np.ones(GGL * NGL), RNG.standard_normal(GGL * NGL)])
Y_GL = (RNG.random(GGL * NGL) < special.expit(X_GL @ [-0.3, 0.8] + RNG.standard_normal(GGL)[GROUP_GL])).astype(float)


# ------------------------------------------------------------------------------ models
def slopes_fn(m, y, x, group, n_groups):
    """Normal(mu, s) with vector mu, s (broadcast over the units) and an observation scale."""
    mu = m.param("mu", shape=2, init=0.0)
    s = m.param("s", shape=2, constraint=C.positive, init=1.0)
    s_e = m.param("s_e", constraint=C.positive, init=1.0)
    u = m.latent("u", dist.Normal(mu, s), shape=(n_groups, 2), unit=True)
    m.observe("y", dist.Normal(u[..., group, 0] + x * u[..., group, 1], s_e), y, unit_index=group)


def ri_fn(m, y, group, n_groups):
    mu = m.param("mu", init=0.0)
    s = m.param("s", constraint=C.positive, init=1.0)
    u = m.latent("u", dist.Normal(mu, s), shape=n_groups, unit=True)
    m.observe("y", dist.Normal(u[..., group], 1.0), y, unit_index=group)


def mvn_cov_fn(m, y, x):
    Sigma = m.param("Sigma", constraint=C.positive_definite(2), init=np.eye(2))
    b = m.latent("b", dist.MultivariateNormal(np.zeros(2), covariance_matrix=Sigma), shape=(x.size, 2), unit=True)
    m.observe("y", dist.Normal(b[..., 0] + x * b[..., 1], 1.0), y, unit_index=np.arange(x.size))


def mvn_tril_fn(m, y, x):
    mu = m.param("mu", shape=2, init=0.0)
    L = m.param("L", constraint=C.lower_cholesky(2), init=np.eye(2))
    b = m.latent("b", dist.MultivariateNormal(mu, scale_tril=L), shape=(x.size, 2), unit=True)
    m.observe("y", dist.Normal(b[..., 0] + x * b[..., 1], 1.0), y, unit_index=np.arange(x.size))


def mvn_batched_fn(m, y, x):
    """Three covariances, one per column of the latent: each has its own maximiser."""
    L = m.param("L", constraint=C.lower_cholesky(2, batch=(3,)), init=np.broadcast_to(np.eye(2), (3, 2, 2)))
    b = m.latent("b", dist.MultivariateNormal(np.zeros(2), scale_tril=L), shape=(x.size, 3, 2), unit=True)
    m.observe("y", dist.Normal(b[..., 0].sum(-1) + x * b[..., 1].sum(-1), 1.0), y, unit_index=np.arange(x.size))


def mixture_fn(m, x):
    w = m.param("w", constraint=C.simplex(3), init=[0.3, 0.3, 0.4])
    mu = m.param("mu", shape=3, init=[-1.0, 0.0, 1.0])
    s = m.param("s", constraint=C.positive, init=1.0)
    z = m.latent("z", dist.Categorical(probs=w), shape=x.size, unit=True)
    m.observe("x", dist.Normal(mu[z], s), x, unit_index=np.arange(x.size))


def bernoulli_fn(m, y):
    p = m.param("p", constraint=C.unit_interval, init=0.3)
    mm = m.param("m", shape=2, init=[0.0, 1.0])
    z = m.latent("z", dist.Bernoulli(probs=p), shape=y.size, unit=True)
    m.observe("y", dist.Normal(mm[z], 1.0), y, unit_index=np.arange(y.size))


def bernoulli_sub_fn(m, y):
    """p on (0.2, 0.5): the sample frequency can fall outside, the constrained maximiser is not it."""
    p = m.param("p", constraint=C.interval(0.2, 0.5), init=0.3)
    mm = m.param("m", shape=2, init=[0.0, 1.0])
    z = m.latent("z", dist.Bernoulli(probs=p), shape=y.size, unit=True)
    m.observe("y", dist.Normal(mm[z], 1.0), y, unit_index=np.arange(y.size))


def offset_fn(m, y, group, n_groups):
    """The observation's loc depends on beta: its scale s_e is not closed form, s_u is."""
    beta = m.param("beta", init=0.0)
    s_u = m.param("s_u", constraint=C.positive, init=1.0)
    s_e = m.param("s_e", constraint=C.positive, init=1.0)
    u = m.latent("u", dist.Normal(0.0, s_u), shape=n_groups, unit=True)
    m.observe("y", dist.Normal(u[..., group] + beta, s_e), y, unit_index=group)


def glmm_fn(m, X, y, group, n_groups):
    beta = m.param("beta", shape=2, init=0.0)
    sigma = m.param("sigma", constraint=C.positive, init=1.0)
    u = m.latent("u", dist.Normal(0.0, sigma), shape=n_groups, unit=True)
    m.observe("y", dist.Bernoulli(logits=X @ beta + u[..., group]), y, unit_index=group)


def not_closed_fn(m, y, group, n_groups):
    """s in two sites; v's loc is 2 * mu (a parameter through a latent-free expression)."""
    s = m.param("s", constraint=C.positive, init=1.0)
    mu = m.param("mu", init=0.0)
    t = m.param("t", constraint=C.positive, init=1.0)
    u = m.latent("u", dist.Normal(0.0, s), shape=n_groups, unit=True)
    m.observe("y", dist.Normal(u[..., group], s), y, unit_index=group)
    m.latent("v", dist.Normal(2.0 * mu, t), shape=3)


BUILD = {
    "slopes": (slopes_fn, dict(y=YG, x=XG, group=GROUP, n_groups=G)),
    "ri": (ri_fn, dict(y=Y_RI, group=GROUP_RI, n_groups=GRI)),
    "mvn_cov": (mvn_cov_fn, dict(y=YU, x=XU)),
    "mvn_tril": (mvn_tril_fn, dict(y=YU, x=XU)),
    "mvn_batched": (mvn_batched_fn, dict(y=YU, x=XU)),
    "mixture": (mixture_fn, dict(x=XMIX)),
    "bernoulli": (bernoulli_fn, dict(y=XMIX)),
    "bernoulli_sub": (bernoulli_sub_fn, dict(y=XMIX)),
    "offset": (offset_fn, dict(y=YG, group=GROUP, n_groups=G)),
    "glmm": (glmm_fn, dict(X=X_GL, y=Y_GL, group=GROUP_GL, n_groups=GGL)),
    "not_closed": (not_closed_fn, dict(y=YG, group=GROUP, n_groups=G)),
}


@functools.cache
def built(name):
    fn, data = BUILD[name]
    return mcem.model(fn)(**data)


def without_closed_form(model):
    """The same compiled model, every parameter maximised numerically."""
    ref = copy.copy(model)
    ref.partial_mstep = ref.sufficient_stats_fn = ref.mstep_fn = None
    return ref


def flat(draws):
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}


def closed_part(model, draws):
    """What the model's closed form sets from ``draws``."""
    cf = model.structure
    return cf.update(cf.stats(flat(draws)))


def assert_close(got, want, tol, names=None):
    for n in names or want:
        np.testing.assert_allclose(np.asarray(got[n], dtype=float), np.asarray(want[n], dtype=float),
                                   err_msg=n, **tol)


# ------------------------------------------------------------------------------ draws and the updates written out
def normal_draws(shape, loc=0.4, scale=1.3, seed=0):
    return np.random.default_rng(seed).normal(loc, scale, (CH, DR) + shape)


def states(shape, probs, seed=0):
    return np.random.default_rng(seed).choice(len(probs), size=(CH, DR) + shape, p=probs)


def rms(x, axis=None):
    return np.sqrt(np.mean(np.square(x), axis=axis))


def naive_slopes(z):
    u = z["u"]
    mu = u.mean(axis=(0, 1, 2))
    r = YG - u[..., GROUP, 0] - XG * u[..., GROUP, 1]
    return {"mu": mu, "s": rms(u - mu, axis=(0, 1, 2)), "s_e": rms(r)}


def naive_ri(z):
    mu = z["u"].mean()
    return {"mu": mu, "s": rms(z["u"] - mu)}


def naive_mvn_cov(z):
    b = z["b"].reshape(-1, 2)
    return {"Sigma": b.T @ b / len(b)}


def naive_mvn_tril(z):
    b = z["b"].reshape(-1, 2)
    mu = b.mean(axis=0)
    return {"mu": mu, "L": np.linalg.cholesky((b - mu).T @ (b - mu) / len(b))}


def naive_mixture(z):
    k = z["z"]
    counts = np.array([(k == j).sum() for j in range(3)], dtype=float)
    sums = np.array([np.sum(np.where(k == j, XMIX, 0.0)) for j in range(3)])
    mu = np.divide(sums, counts, out=np.full(3, np.nan), where=counts > 0)  # NaN: a state no draw visits
    return {"w": counts / counts.sum(), "mu": mu, "s": rms(XMIX - mu[k])}


def naive_bernoulli(z):
    k = z["z"]
    mm = np.array([np.sum(np.where(k == j, XMIX, 0.0)) / np.sum(k == j) for j in range(2)])
    return {"p": k.mean(), "m": mm}


def naive_offset(z):
    r = YG - z["u"][..., GROUP]
    beta = r.mean()
    return {"s_u": rms(z["u"]), "beta": beta, "s_e": rms(r - beta)}


def naive_glmm(z):
    return {"sigma": rms(z["u"])}


# name: (draws, parameters set in closed form, complete?, update written out, lines of describe)
CASES = {
    "slopes": (lambda: {"u": normal_draws((G, 2))}, {"mu", "s", "s_e"}, True, naive_slopes,
               ["closed form: mu, s from the mean and second moment of site 'u'",
                "closed form: s_e from the mean square of site 'y'"]),
    "ri": (lambda: {"u": normal_draws((GRI,))}, {"mu", "s"}, True, naive_ri,
           ["closed form: mu, s from the mean and second moment of site 'u'"]),
    "mvn_cov": (lambda: {"b": normal_draws((G, 2)) * [1.0, 0.5] + 0.3 * normal_draws((G, 1), seed=1)},
                {"Sigma"}, True, naive_mvn_cov, ["closed form: Sigma from the mean and covariance of site 'b'"]),
    "mvn_tril": (lambda: {"b": normal_draws((G, 2)) * [1.0, 0.5] + 0.3 * normal_draws((G, 1), seed=1)},
                 {"mu", "L"}, True, naive_mvn_tril, ["closed form: mu, L from the mean and covariance of site 'b'"]),
    "mixture": (lambda: {"z": states((NMIX,), [0.5, 0.3, 0.2])}, {"w"}, False, naive_mixture,
                ["closed form: w from the state frequencies of site 'z'",
                 "numerical (L-BFGS-B, exact gradient): ['mu', 's']"]),
    "bernoulli": (lambda: {"z": states((NMIX,), [0.6, 0.4])}, {"p"}, False, naive_bernoulli,
                  ["closed form: p from the state frequencies of site 'z'",
                   "numerical (L-BFGS-B, exact gradient): ['m']"]),
    "offset": (lambda: {"u": normal_draws((G,))}, {"s_u"}, False, naive_offset,
               ["closed form: s_u from the mean square of site 'u'",
                "numerical (L-BFGS-B, exact gradient): ['beta', 's_e']"]),
    "glmm": (lambda: {"u": normal_draws((GGL,), loc=0.0)}, {"sigma"}, False, naive_glmm,
             ["closed form: sigma from the mean square of site 'u'",
              "numerical (L-BFGS-B, exact gradient): ['beta']"]),
}


def _needs(name):
    if name == "mvn_tril" and not hasattr(C, "lower_cholesky"):
        pytest.skip("mcem.constraints.lower_cholesky is not available")


# ------------------------------------------------------------------------------ 1. recognised kinds
@pytest.mark.parametrize("name", list(CASES))
def test_closed_form_equals_numerical_m_step_and_the_update_written_out(name):
    _needs(name)
    make, names, complete, naive, _ = CASES[name]
    model, draws = built(name), make()
    assert model.structure is not None, f"{name}: no closed form found"
    assert set(model.structure.names) == names
    want = naive(draws)
    assert_close(closed_part(model, draws), want, EXACT, names)

    theta0 = model.default_theta()
    ref, _ = M.numerical(without_closed_form(model), theta0, draws, options=OPT)
    if complete:  # sufficient statistics and their update, the M step of EM and SAEM
        assert model.partial_mstep is None and model.sufficient_stats_fn is not None
        got, _ = M.closed_form(model, draws)
        assert set(got) == set(model.param_names)
    else:  # closed form for some, numerical for the rest
        assert model.partial_mstep is model.structure and model.sufficient_stats_fn is None
        got, info = M.numerical(model, theta0, draws, options=OPT)
        assert info.success and info.message.startswith("closed form for")
    assert_close(got, ref, AGREE, model.param_names)
    assert_close(got, want, AGREE)  # the numerical part too, where it has a formula


@pytest.mark.parametrize("name", list(CASES))
def test_describe_lists_each_closed_form(name):
    _needs(name)
    text = built(name).describe()
    lines = [line.strip() for line in text.splitlines()]
    expected = CASES[name][4]
    if CASES[name][2]:  # complete
        expected = expected + ["closed form for every parameter from sufficient statistics (SAEM approximates them)"]
    for line in expected:
        assert line in lines, f"{line!r} not in\n{text}"
    assert sum(line.startswith("closed form: ") for line in lines) == len(built(name).structure.describe())


def test_describe_without_closed_form_says_numerical():
    text = built("not_closed").describe()
    assert "closed form" not in text
    assert "numerical for every parameter (L-BFGS-B, exact gradient)" in text


# ------------------------------------------------------------------------------ 2. sites that do not qualify
def test_shared_scale_and_a_loc_computed_from_a_parameter_are_not_closed_form():
    model = built("not_closed")
    assert model.structure is None and model.partial_mstep is None and model.sufficient_stats_fn is None
    draws = {"u": normal_draws((G,)), "v": normal_draws((3,), loc=1.0, seed=2)}
    got, info = M.numerical(model, model.default_theta(), draws, options=OPT)
    assert info.success
    u, v = draws["u"], draws["v"]
    # s of both sites: s^2 = mean over draws of (sum u^2 + sum (y - u)^2) / (G + N)
    ss = np.sum(u * u, axis=-1) + np.sum((YG - u[..., GROUP]) ** 2, axis=-1)
    mu = v.mean() / 2.0
    want = {"s": np.sqrt(ss.mean() / (G + YG.size)), "mu": mu, "t": rms(v - 2.0 * mu)}
    assert_close(got, want, AGREE)


@pytest.mark.parametrize("name, numerical_names", [("offset", {"beta", "s_e"}), ("mixture", {"mu", "s"})])
def test_observation_whose_loc_has_a_parameter_keeps_its_scale_numerical(name, numerical_names):
    model = built(name)
    assert not numerical_names & set(model.structure.names)
    assert {n for n in model.param_names if n not in model.partial_mstep.names} == numerical_names
    draws = CASES[name][0]()
    got, _ = M.numerical(model, model.default_theta(), draws, options=OPT)
    ref, _ = M.numerical(without_closed_form(model), model.default_theta(), draws, options=OPT)
    assert_close(got, ref, AGREE, model.param_names)
    assert_close(got, CASES[name][3](draws), AGREE, sorted(numerical_names))


def test_probability_on_a_sub_interval_is_not_set_to_the_sample_frequency():
    model = built("bernoulli_sub")
    draws = {"z": states((NMIX,), [0.9, 0.1])}  # frequency of 1 about 0.1, below the interval
    assert draws["z"].mean() < 0.2
    got, _ = M.numerical(model, model.default_theta(), draws, options=OPT)
    ref, _ = M.numerical(without_closed_form(model), model.default_theta(), draws, options=OPT)
    # Q is concave in p: the constrained maximiser is the frequency clipped into [0.2, 0.5]
    assert_close(got, {"p": 0.2, "m": naive_bernoulli(draws)["m"]}, AGREE)
    assert_close(got, ref, AGREE, model.param_names)


def test_batched_covariances_are_not_pooled():
    _needs("mvn_tril")
    model = built("mvn_batched")
    b = normal_draws((G, 3, 2)) * np.array([[1.0, 0.5], [2.0, 1.0], [0.5, 3.0]])
    draws = {"b": b}
    bb = b.reshape(-1, 3, 2)
    want = {"L": np.linalg.cholesky(np.einsum("nki,nkj->kij", bb, bb) / len(bb))}
    got, _ = (M.closed_form(model, draws) if model.sufficient_stats_fn is not None
              else M.numerical(model, model.default_theta(), draws, options=OPT))
    assert np.shape(got["L"]) == (3, 2, 2)
    assert_close(got, want, AGREE)


def test_a_state_no_draw_visits_leaves_the_other_parameters_to_the_numerical_m_step():
    model = built("mixture")
    draws = {"z": states((NMIX,), [0.6, 0.4, 0.0])}  # state 2 never drawn: w[2] = 0, the simplex's edge
    got, _ = M.numerical(model, model.default_theta(), draws, options=OPT)
    ref, _ = M.numerical(without_closed_form(model), model.default_theta(), draws, options=OPT)
    assert all(np.all(np.isfinite(v)) for v in got.values()), got
    want = naive_mixture(draws)
    assert_close(got, want, AGREE, ["w", "s"])
    np.testing.assert_allclose(got["mu"][:2], want["mu"][:2], **AGREE)  # mu[2]: no draw informs it
    assert_close(got, ref, AGREE, model.param_names)


# ------------------------------------------------------------------------------ 3. SAEM
def gaussian_ri_mle():
    """Exact MLE of y_ij = u_i + e_ij, u_i ~ N(mu, s^2), e_ij ~ N(0, 1): y_i ~ N(mu 1, I + s^2 J)."""
    Y = Y_RI.reshape(GRI, NRI)

    def nll(v):
        cov = np.eye(NRI) + np.exp(2 * v[1]) * np.ones((NRI, NRI))
        return -stats.multivariate_normal(np.full(NRI, v[0]), cov).logpdf(Y).sum()

    r = optimize.minimize(nll, [0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12})
    mle = {"mu": r.x[0], "s": np.exp(r.x[1])}
    # balanced design: the group means are N(mu, s^2 + 1/n), independent of the residuals
    ybar = Y.mean(axis=1)
    np.testing.assert_allclose([mle["mu"], mle["s"]], [ybar.mean(), np.sqrt(ybar.var() - 1 / NRI)], rtol=1e-6)
    return mle


def logit_glmm_mle():
    """MLE of the logit GLMM by 60-point Gauss-Hermite quadrature of each group's likelihood."""
    t, w = np.polynomial.hermite_e.hermegauss(60)
    logw = np.log(w / w.sum())

    def nll(v):
        eta = (X_GL @ v[:2])[:, None] + np.exp(v[2]) * t[None, :]
        lp = (Y_GL[:, None] * eta - np.logaddexp(0.0, eta)).reshape(GGL, NGL, t.size).sum(axis=1)
        return -special.logsumexp(lp + logw, axis=1).sum()

    r = optimize.minimize(nll, np.zeros(3), method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-15})
    assert r.success
    return {"beta": r.x[:2], "sigma": np.exp(r.x[2])}


@pytest.mark.parametrize("name, path", [("ri", "closed_form"), ("glmm", "numerical")])
def test_saem_with_closed_form_statistics_ends_near_the_mle(name, path):
    model = built(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=60 is below what tol=0.1 takes
        warnings.simplefilter("ignore", MonteCarloWarning)
        fit = mcem.fit(model, method="saem", rng=0, max_iter=60)
    # complete closed form: statistics approximated, M step in closed form; otherwise the closed
    # part's statistics are approximated and the rest maximised numerically
    assert fit.settings["mstep"] == path
    assert (model.partial_mstep is not None) == (path == "numerical")
    mle = gaussian_ri_mle() if name == "ri" else logit_glmm_mle()
    se = fit.standard_errors()
    # Monte Carlo error of the Polyak-Ruppert average: at most mc_ratio standard errors
    mc = fit["mc_ratio"]
    assert np.isfinite(mc) and mc < 0.5
    for n in model.param_names:
        err = np.abs(np.asarray(fit.params[n]) - mle[n])
        assert np.all(err <= 4 * mc * np.asarray(se[n])), (n, fit.params[n], mle[n], se[n], mc)

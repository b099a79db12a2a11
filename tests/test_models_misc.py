"""The small model library: crossed logit (salamander), Tobit (motorette), genetic linkage, pumps.

For each model: the log joint against a naive scipy.stats computation, the exact extras (E step,
log-likelihood, posterior sampler) against independent references, the example script against
its oracle within Monte Carlo error, and bad input.

Monte Carlo error of a final MCEM estimate: near the fixed point an MCEM iterate is
``theta_{t+1} - theta* = J (theta_t - theta*) + eps_t``, with ``J = I - I_comp^-1 I_obs`` the
Jacobian of the EM map (the fraction of missing information) and ``eps_t`` the Monte Carlo error
of one M step (covariance ``mcem.mstep.update_covariance``). The stationary covariance solves the
discrete Lyapunov equation ``S = J S J^T + Cov(eps)``; with much missing information (variance
components) it is several times ``Cov(eps)``. :func:`mcem_mcse` returns its square-root diagonal,
mapped to the constrained parameters.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.linalg import solve_discrete_lyapunov
from scipy.special import digamma, expit, logsumexp, roots_hermite

import mcem
from mcem import mstep as M
from mcem.inference import constrained_jacobian
from mcem.models.crossed import (
    BOOTH_HOBERT_1999,
    crossed_logit,
    crossed_logit_loglik,
    salamander,
    salamander_design,
)
from mcem.models.linkage import LINKAGE_COUNTS, genetic_linkage, linkage_mle
from mcem.models.pumps import PUMP_FAILURES, PUMP_TIMES, _solve_alpha, pump_failures, pumps_mle
from mcem.models.censored import motorette, motorette_data, tobit, tobit_loglik, tobit_mle

from _mc import assert_mean

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MC_WARN = pytest.mark.filterwarnings("ignore::mcem.MonteCarloWarning")


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def flat(theta, names):
    return np.concatenate([np.ravel(np.asarray(theta[n], dtype=float)) for n in names])


def mcem_mcse(model, result):
    """Monte Carlo standard errors of a final MCEM estimate (flattened, sorted parameter names)."""
    theta, draws = result.params, result.draws
    u = model.to_unconstrained(theta)
    p = u.size
    cov_eps = M.update_covariance(model, theta, draws)
    s = M.per_draw_scores(model, theta, draws)
    var_score = np.atleast_2d(np.cov(s.reshape(-1, p), rowvar=False))
    H = np.empty((p, p))
    for i in range(p):  # d (mean score) / d u_i, central differences
        h = 1e-4 * max(1.0, abs(u[i]))
        e = np.zeros(p)
        e[i] = h
        up = M.per_draw_scores(model, model.from_unconstrained(u + e), draws).mean(axis=(0, 1))
        dn = M.per_draw_scores(model, model.from_unconstrained(u - e), draws).mean(axis=(0, 1))
        H[:, i] = (up - dn) / (2 * h)
    i_comp = -0.5 * (H + H.T)
    i_obs = i_comp - var_score
    J_em = np.eye(p) - np.linalg.solve(i_comp, i_obs)
    S = solve_discrete_lyapunov(J_em, cov_eps)
    Jc = constrained_jacobian(model, u)
    return np.sqrt(np.diag(Jc @ S @ Jc.T))


def assert_within_mc(model, result, oracle, floor):
    """The default rule's promise: within 0.3 standard errors of the oracle (three Monte Carlo
    standard errors at its target of 0.1), plus ``floor`` for an oracle quoted to a few digits."""
    names = model.param_names
    est = flat(result.params, names)
    ref = flat(oracle, names)
    se = flat(result.standard_errors(), names)
    err = np.abs(est - ref)
    assert np.all(err < 0.3 * se + floor), {"estimate": est, "oracle": ref, "se": se, "err/se": err / se}
    return mcem_mcse(model, result)


# =========================================================================== genetic linkage
def test_linkage_log_joint_matches_scipy_multinomial():
    model = genetic_linkage()
    y1, y2, y3, y4 = LINKAGE_COUNTS
    n = sum(LINKAGE_COUNTS)
    x2 = np.arange(y1 + 1)
    for t in (0.2, 0.6268, 0.9):
        lj = model.log_joint({"theta": np.array(t)}, {"x2": x2})
        p = [0.5, t / 4, (1 - t) / 4, (1 - t) / 4, t / 4]
        ref = stats.multinomial.logpmf(np.column_stack([y1 - x2, x2, np.full_like(x2, y2),
                                                        np.full_like(x2, y3), np.full_like(x2, y4)]), n, p)
        np.testing.assert_allclose(lj, ref, rtol=1e-12, atol=1e-10)
        # summing out the latent gives the observed multinomial likelihood
        obs = stats.multinomial.logpmf(LINKAGE_COUNTS, n, [0.5 + t / 4, (1 - t) / 4, (1 - t) / 4, t / 4])
        assert logsumexp(lj) == pytest.approx(obs, abs=1e-10)
        assert model.exact_loglik({"theta": t}) == pytest.approx(obs, abs=1e-10)


def test_linkage_closed_forms():
    assert linkage_mle() == pytest.approx(0.6268214980, abs=1e-9)
    model = genetic_linkage()
    em = mcem.fit(model, method="em", tol=1e-15)
    assert em.params["theta"] == pytest.approx(0.6268214980, abs=1e-7)  # the log-likelihood is flat
    # exact E step against the posterior sampler
    theta = {"theta": np.array(0.4)}
    stats_, ll = model.exact_estep_fn(theta, model.data)
    draws = model.posterior_sampler_fn(theta, model.data, np.random.default_rng(0), (4, 2000))["x2"]
    assert_mean(draws, stats_["x2"], floor=0.0)
    assert ll == pytest.approx(model.exact_loglik(theta))


@MC_WARN
def test_linkage_example_reaches_the_mle(tmp_path, capsys):
    demo = load_example("genetic_linkage")
    out = demo.run(seed=1, out=str(tmp_path / "linkage.png"))
    text = capsys.readouterr().out
    assert "closed form" in text and "MCEM" in text and "0.62682150" in text
    assert (tmp_path / "linkage.png").stat().st_size > 10_000
    res = out["result"]
    assert res.converged, res.message
    assert_within_mc(out["model"], res, {"theta": out["oracle"]}, floor=1e-4)
    assert out["se"]["theta"] == pytest.approx(0.0515, abs=5e-4)


def test_linkage_bad_input():
    with pytest.raises(ValueError, match="counts must have shape"):
        genetic_linkage((1, 2, 3))
    with pytest.raises(ValueError, match="non-negative integers"):
        genetic_linkage((125, 18, 20.5, 34))
    with pytest.raises(TypeError, match="counts must be 4"):
        genetic_linkage(("a", "b", "c", "d"))
    with pytest.raises(ValueError, match="init must be a number in"):
        genetic_linkage(init=1.5)


# =========================================================================== pumps
def test_pumps_log_joint_matches_scipy():
    model = pump_failures()
    y, t = np.array(PUMP_FAILURES), np.array(PUMP_TIMES)
    rng = np.random.default_rng(1)
    lam = rng.gamma(1.0, 1.0, size=(3, 5, 10))
    theta = {"alpha": np.array(0.8), "beta": np.array(1.3)}
    lj = model.log_joint(theta, {"lambda": lam})
    assert lj.shape == (3, 5, 10)  # per-unit terms
    ref = stats.poisson.logpmf(y, lam * t) + stats.gamma.logpdf(lam, 0.8, scale=1 / 1.3)
    np.testing.assert_allclose(lj, ref, rtol=1e-11, atol=1e-11)
    # marginal: integrate each pump's rate numerically
    total = 0.0
    for yi, ti in zip(y, t):  # a reference computation, ten one-dimensional integrals
        f = lambda x, yi=yi, ti=ti: np.exp(stats.poisson.logpmf(yi, x * ti) + stats.gamma.logpdf(x, 0.8, scale=1 / 1.3))  # noqa: E731
        total += np.log(integrate.quad(f, 0, np.inf, limit=200)[0])
    assert model.exact_loglik(theta) == pytest.approx(total, abs=1e-7)


def test_pumps_exact_steps():
    model = pump_failures()
    theta = {"alpha": np.array(0.8), "beta": np.array(1.3)}
    stats_, ll = model.exact_estep_fn(theta, model.data)
    draws = model.posterior_sampler_fn(theta, model.data, np.random.default_rng(2), (4, 4000))["lambda"]
    assert_mean(draws.mean(axis=-1), stats_["mean_lambda"], floor=0.0)
    assert_mean(np.log(draws).mean(axis=-1), stats_["mean_log_lambda"], floor=0.0)
    for s in (1e-3, 0.3, 2.0, 50.0):
        a = _solve_alpha(s)
        assert np.log(a) - digamma(a) == pytest.approx(s, rel=1e-10)
    oracle = pumps_mle()
    assert oracle["success"]
    em = mcem.fit(model, method="em", tol=1e-14, max_iter=5000)
    np.testing.assert_allclose(flat(em.params, ["alpha", "beta"]),
                               [oracle["params"]["alpha"], oracle["params"]["beta"]], rtol=1e-5)
    assert em["loglik"] == pytest.approx(oracle["loglik"], abs=1e-9)


@MC_WARN
def test_pumps_example_reaches_the_mle(tmp_path, capsys):
    demo = load_example("pump_failures")
    out = demo.run(seed=1, out=str(tmp_path / "pumps.png"))
    assert "oracle" in capsys.readouterr().out
    assert (tmp_path / "pumps.png").stat().st_size > 10_000
    res = out["result"]
    assert res.converged, res.message
    assert_within_mc(out["model"], res, out["oracle"]["params"], floor=1e-3)
    for k in ("alpha", "beta"):
        assert out["se"][k] == pytest.approx(out["oracle"]["se"][k], rel=0.05)


def test_pumps_bad_input():
    with pytest.raises(ValueError, match="same length"):
        pump_failures([1, 2], [1.0])
    with pytest.raises(ValueError, match="times must be positive"):
        pump_failures([1, 2], [1.0, 0.0])
    with pytest.raises(ValueError, match="failures must be non-negative integer"):
        pumps_mle([1, -2], [1.0, 2.0])
    with pytest.raises(TypeError, match="failures must be a 1-D numeric"):
        pump_failures(["a", "b"], [1.0, 2.0])


# =========================================================================== tobit / motorette
def test_tobit_log_joint_matches_scipy():
    d = motorette_data()
    model = motorette()
    y, X, cens = d["y"], d["X"], d["censored"]
    theta = {"beta": np.array([-6.0, 4.3]), "sigma": np.array(0.26)}
    rng = np.random.default_rng(3)
    e = rng.exponential(0.3, size=(2, 3, cens.sum()))
    lj = model.log_joint(theta, {"excess": e})
    mu = X @ theta["beta"]
    ref = (stats.norm.logpdf(y[~cens], mu[~cens], 0.26).sum()
           + stats.norm.logpdf(y[cens] + e, mu[cens], 0.26).sum(axis=-1))
    np.testing.assert_allclose(lj, ref, rtol=1e-12)
    # the per-unit conditionals carry every latent-dependent term
    e2 = e + rng.exponential(0.1, size=e.shape)
    c1 = model.conditionals["excess"](theta, {"excess": e}, model.data)
    c2 = model.conditionals["excess"](theta, {"excess": e2}, model.data)
    np.testing.assert_allclose(model.log_joint(theta, {"excess": e2}) - lj, (c2 - c1).sum(-1), atol=1e-10)
    # censored likelihood
    ll_ref = stats.norm.logpdf(y[~cens], mu[~cens], 0.26).sum() + stats.norm.logsf(y[cens], mu[cens], 0.26).sum()
    assert model.exact_loglik(theta) == pytest.approx(ll_ref, abs=1e-10)
    assert tobit_loglik(theta["beta"], 0.26, y, X, cens) == pytest.approx(ll_ref, abs=1e-10)


def test_tobit_exact_steps_and_oracle():
    d = motorette_data()
    model = motorette()
    theta = {"beta": np.array([-5.0, 3.9]), "sigma": np.array(0.3)}
    mu = d["X"][d["censored"]] @ theta["beta"]
    c = d["y"][d["censored"]]
    draws = model.posterior_sampler_fn(theta, model.data, np.random.default_rng(4), (4, 3000))["excess"]
    a = (c - mu) / 0.3
    ref = stats.truncnorm(a, np.inf, loc=mu, scale=0.3)
    assert_mean(c + draws, ref.mean(), floor=0.0)
    assert_mean((c + draws) ** 2, ref.var() + ref.mean() ** 2, floor=0.0)
    assert np.all(draws > 0)
    # exact E step = the sufficient statistics of infinitely many exact draws
    stats_, ll = model.exact_estep_fn(theta, model.data)
    full = {"excess": draws.reshape(-1, c.size)}
    mc = model.sufficient_stats_fn(full, model.data)
    np.testing.assert_allclose(mc["Xty"], stats_["Xty"], rtol=2e-3)
    assert mc["yty"] == pytest.approx(stats_["yty"], rel=2e-3)
    # exact EM reaches the direct maximiser, which reproduces Schmee & Hahn (1979)
    oracle = tobit_mle(**d)
    em = mcem.fit(model, method="em", tol=1e-14, max_iter=5000)
    np.testing.assert_allclose(em.params["beta"], oracle["params"]["beta"], atol=1e-5)
    assert em.params["sigma"] == pytest.approx(oracle["params"]["sigma"], abs=1e-6)
    np.testing.assert_allclose(oracle["params"]["beta"], [-6.019, 4.311], atol=1e-3)
    assert oracle["params"]["sigma"] == pytest.approx(0.2592, abs=1e-4)


@MC_WARN
def test_motorette_example_reaches_the_mle(tmp_path, capsys):
    demo = load_example("motorette_tobit")
    out = demo.run(seed=1, out=str(tmp_path / "motorette.png"))
    assert "Schmee-Hahn" in capsys.readouterr().out
    assert (tmp_path / "motorette.png").stat().st_size > 10_000
    res = out["result"]
    assert res.converged, res.message
    assert_within_mc(out["model"], res, out["oracle"]["params"], floor=1e-3)
    np.testing.assert_allclose(out["se"]["beta"], out["oracle"]["se"]["beta"], rtol=0.05)


@MC_WARN
def test_tobit_mcmc_path_reaches_the_mle():
    """The per-unit random-walk sampler on the conditionals (no exact sampler) gets there too."""
    d = motorette_data()
    model = tobit(d["y"], d["X"], d["censored"])
    res = mcem.fit(model, method="mcem", rng=2, sampler="rwm", tol=3e-3)
    oracle = tobit_mle(**d)
    assert_within_mc(model, res, oracle["params"], floor=1e-3)


def test_tobit_bad_input():
    d = motorette_data()
    with pytest.raises(ValueError, match="X must have shape"):
        tobit(d["y"], d["X"][:5], d["censored"])
    with pytest.raises(ValueError, match="censored must be boolean or 0/1"):
        tobit(d["y"], d["X"], np.full(40, 2))
    with pytest.raises(ValueError, match="every unit is censored"):
        tobit(d["y"], d["X"], np.ones(40, bool))
    with pytest.raises(ValueError, match="full column rank"):
        tobit(d["y"], np.column_stack([d["X"], d["X"][:, 1]]), d["censored"])
    with pytest.raises(ValueError, match="must have columns 'temp', 'time' and 'cens'"):
        motorette({"temp": [1.0], "time": [2.0]})


# =========================================================================== crossed logit
# A crossed design small enough for quadrature: 6 females x 3 males, 4 matings per pair,
# covariate x = female parity; y simulated from beta = (0.3, -0.8), sigma2_f = sigma2_m = 1.5.
TINY_Y = [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0,
          0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1,
          1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
# Its MLE, by BFGS on the 30-node nested Gauss-Hermite log-likelihood (log-variances inside).
TINY_MLE = {"beta": np.array([0.19415797, -1.51399475]), "sigma2_f": np.exp(0.04269417),
            "sigma2_m": np.exp(-0.65753621)}
TINY_LOGLIK = -41.873687986


def tiny_design():
    female = np.repeat(np.arange(6), 12)
    male = np.tile(np.repeat(np.arange(3), 4), 6)
    X = np.column_stack([np.ones(72), female % 2])
    return np.array(TINY_Y), X, female, male


def naive_crossed_log_joint(theta, f, g, y, X, female, male):
    eta = X @ theta["beta"] + f[female] + g[male]
    return (stats.bernoulli.logpmf(y, expit(eta)).sum()
            + stats.norm.logpdf(f, 0, np.sqrt(theta["sigma2_f"])).sum()
            + stats.norm.logpdf(g, 0, np.sqrt(theta["sigma2_m"])).sum())


def test_crossed_log_joint_and_conditionals_match_scipy():
    y, X, female, male = tiny_design()
    # arbitrary labels are re-indexed: females 101..106 in reverse, males as strings
    model = crossed_logit(y, X, 106 - female, np.array(["m1", "m2", "m3"])[male])
    theta = {"beta": np.array([0.2, -1.0]), "sigma2_f": np.array(1.3), "sigma2_m": np.array(0.7)}
    rng = np.random.default_rng(5)
    z = {"f": rng.normal(size=(3, 6)), "g": rng.normal(size=(3, 3))}
    lj = model.log_joint(theta, z)
    fi, mi = model.data["female"], model.data["male"]
    ref = [naive_crossed_log_joint(theta, z["f"][c], z["g"][c], y, X, fi, mi) for c in range(3)]
    np.testing.assert_allclose(lj, ref, rtol=1e-12)
    assert list(model.data["female_labels"]) == [101, 102, 103, 104, 105, 106]
    # each conditional holds every term of its units: a change of all f (or g) at once moves
    # the log joint by the sum of the per-unit changes, and the other units' terms not at all
    for site in ("f", "g"):
        z2 = dict(z)
        z2[site] = z[site] + rng.normal(size=z[site].shape)
        c1 = model.conditionals[site](theta, z, model.data)
        c2 = model.conditionals[site](theta, z2, model.data)
        assert c1.shape == z[site].shape
        np.testing.assert_allclose(model.log_joint(theta, z2) - lj, (c2 - c1).sum(-1), atol=1e-10)
    # gradients in theta against finite differences of the log joint
    g = model.grad_params_fn(theta, z, model.data)
    h = 1e-6
    for name in ("sigma2_f", "sigma2_m"):
        up, dn = dict(theta), dict(theta)
        up[name], dn[name] = theta[name] + h, theta[name] - h
        np.testing.assert_allclose(g[name], (model.log_joint(up, z) - model.log_joint(dn, z)) / (2 * h), rtol=1e-5)
    up, dn = dict(theta), dict(theta)
    up["beta"], dn["beta"] = theta["beta"] + [h, 0], theta["beta"] - [h, 0]
    np.testing.assert_allclose(g["beta"][:, 0], (model.log_joint(up, z) - model.log_joint(dn, z)) / (2 * h), rtol=1e-5)


def test_crossed_quadrature_matches_a_full_product_grid():
    """Nested quadrature = the brute-force 4-D Gauss-Hermite grid of a 2 x 2 design."""
    female = np.repeat([0, 0, 1, 1], 3)
    male = np.repeat([0, 1, 0, 1], 3)
    y = np.array([1, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0])
    X = np.column_stack([np.ones(12), np.repeat([0.0, 1.0, 1.0, 0.0], 3)])
    model = crossed_logit(y, X, female, male)
    theta = {"beta": np.array([0.3, -0.5]), "sigma2_f": 1.2, "sigma2_m": 0.6}
    K = 8
    x, w = roots_hermite(K)
    nodes, lw = np.sqrt(2) * x, np.log(w / np.sqrt(np.pi))
    terms = []
    for a, b, c, d in itertools.product(range(K), repeat=4):  # a reference: 4096 nodes
        f = np.sqrt(1.2) * nodes[[a, b]]
        g = np.sqrt(0.6) * nodes[[c, d]]
        eta = X @ theta["beta"] + f[female] + g[male]
        terms.append(lw[[a, b, c, d]].sum() + stats.bernoulli.logpmf(y, expit(eta)).sum())
    assert crossed_logit_loglik(theta, model.data, n_nodes=K) == pytest.approx(logsumexp(terms), abs=1e-10)


def test_crossed_tiny_oracle_is_the_quadrature_maximum():
    y, X, female, male = tiny_design()
    model = crossed_logit(y, X, female, male, quadrature=20)
    assert model.exact_loglik(TINY_MLE) == pytest.approx(TINY_LOGLIK, abs=1e-4)
    u = model.to_unconstrained(TINY_MLE)
    grad = np.empty(u.size)
    for i in range(u.size):
        e = np.zeros(u.size)
        e[i] = 1e-4
        grad[i] = (model.exact_loglik(model.from_unconstrained(u + e))
                   - model.exact_loglik(model.from_unconstrained(u - e))) / 2e-4
    assert np.max(np.abs(grad)) < 1e-3, grad


@MC_WARN
def test_mcem_reaches_the_quadrature_mle_on_a_tiny_crossed_design():
    y, X, female, male = tiny_design()
    model = crossed_logit(y, X, female, male)
    res = mcem.fit(model, method="mcem", rng=1)
    assert res.converged, res.message
    se = assert_within_mc(model, res, TINY_MLE, floor=0.01)
    assert np.all(se < 0.05)  # the test has teeth: the tolerance is far below the statistical SE
    gap = TINY_LOGLIK - crossed_logit_loglik(res.params, model.data, n_nodes=20)
    assert -1e-4 < gap < 5e-3


@MC_WARN
def test_salamander_example_reproduces_booth_hobert(tmp_path, capsys):
    """The default rule (a seed the only setting); the published values are rounded to 0.01 and
    carry their own Monte Carlo error, hence the floor of 0.02."""
    demo = load_example("salamander")
    out = demo.run(seed=1, out=str(tmp_path / "salamander.png"))
    text = capsys.readouterr().out
    assert "beta_WR" in text and "Booth-Hobert" in text
    assert (tmp_path / "salamander.png").stat().st_size > 10_000
    res = out["result"]
    assert res.converged, res.message
    assert_within_mc(out["model"], res, BOOTH_HOBERT_1999, floor=0.02)
    # Louis standard errors of the right size (Booth & Hobert's are about 0.4 and 0.6)
    assert np.all((out["se"]["beta"] > 0.3) & (out["se"]["beta"] < 0.55))


def test_salamander_design():
    d = salamander_design()
    model = salamander()
    assert model.data["female_labels"].size == 60 and model.data["male_labels"].size == 60
    assert d["X"].sum(axis=0).tolist() == [90.0, 90.0, 90.0, 90.0]
    # RW = rough-butt female x whiteside male: the female column of an RW row is R
    raw = mcem.datasets.load_salamander()
    rw = raw["Cross"] == "RW"
    assert np.all(raw["TypeF"][rw] == "R") and np.all(raw["TypeM"][rw] == "W")
    np.testing.assert_array_equal(d["X"][rw], np.tile([0, 1, 0, 0], (rw.sum(), 1)))


def test_crossed_bad_input():
    y, X, female, male = tiny_design()
    with pytest.raises(ValueError, match="y must contain only 0 and 1"):
        crossed_logit(y * 2, X, female, male)
    with pytest.raises(ValueError, match="female must be a 1-D array with one id per observation"):
        crossed_logit(y, X, female[:-1], male)
    with pytest.raises(ValueError, match="X must have shape"):
        crossed_logit(y, X[:10], female, male)
    with pytest.raises(ValueError, match="full column rank"):
        crossed_logit(y, np.column_stack([X, X[:, 0]]), female, male)
    with pytest.raises(ValueError, match="product grid would have"):
        crossed_logit_loglik(TINY_MLE, crossed_logit(y, X, female, male).data, n_nodes=200)
    with pytest.raises(ValueError, match="data\\['Cross'\\] must take the values"):
        salamander_design({"Cross": ["RR", "XY"], "Female": [1, 2], "Male": [1, 2], "Mate": [0, 1]})

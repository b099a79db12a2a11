"""Random-intercept GLMM: the model against naive references, the quadrature oracle against brute
force, and the worked examples (MCEM) against the oracle within Monte Carlo error."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import expit

import mcem
from mcem.models import _glmm_passes, glmm_model, glmm_quadrature
from mcem.models import random_intercept as ri

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_data(family, rng=0, G=4, per=(2, 3, 4, 3), p=2):
    """A small unbalanced, shuffled data set with an offset."""
    rng = np.random.default_rng(rng)
    group = np.repeat(np.arange(G), per[:G])
    rng.shuffle(group)  # observations not sorted by group: the model must sort internally
    n = group.size
    X = np.column_stack([np.ones(n), rng.standard_normal((n, p - 1))])
    offset = 0.3 * rng.standard_normal(n)
    u = 0.8 * rng.standard_normal(G)
    eta = X @ np.linspace(0.4, -0.6, p) + u[group] + offset
    y = (rng.random(n) < expit(eta)).astype(float) if family == "logit" else rng.poisson(np.exp(eta)).astype(float)
    return X, y, group, offset


def naive_cond_logpmf(family, y, eta):
    return stats.bernoulli.logpmf(y, expit(eta)) if family == "logit" else stats.poisson.logpmf(y, np.exp(eta))


def brute_force_loglik(theta, X, y, group, family, offset):
    """log p(y) by scipy.integrate.quad, one group at a time (a loop is fine in a reference)."""
    beta, sigma = np.asarray(theta["beta"]), theta["sigma"]
    total = 0.0
    for g in range(group.max() + 1):
        idx = group == g
        lin = X[idx] @ beta + offset[idx]

        def f(u, lin=lin, yy=y[idx]):
            return np.exp(np.sum(naive_cond_logpmf(family, yy, lin + u)) + stats.norm.logpdf(u, 0, sigma))

        val, _ = integrate.quad(f, -12 * sigma - 5, 12 * sigma + 5, epsabs=0, epsrel=1e-12, limit=200)
        total += np.log(val)
    return total


# --------------------------------------------------------------------------- quadrature oracle
@pytest.mark.parametrize("family", ["logit", "poisson"])
def test_quadrature_loglik_matches_brute_force(family):
    X, y, group, offset = tiny_data(family)
    for theta in ({"beta": [0.2, -0.5], "sigma": 0.7}, {"beta": [-0.4, 0.9], "sigma": 2.5}):
        ref = brute_force_loglik(theta, X, y, group, family, offset)

        def err(n_nodes, adaptive=True, theta=theta):
            return abs(ri.quadrature_loglik(theta, X, y, group, family, offset, n_nodes, adaptive) - ref)

        assert err(40) < 1e-8
        assert err(20) < 1e-5  # the default; ~1e-9 unless sigma is large
        # centring and scaling the nodes at each group's mode is what makes few nodes enough
        assert err(6) < 5e-3 and err(6) < 0.05 * err(6, adaptive=False)
    assert err(120, adaptive=False) < 0.05  # plain Gauss-Hermite converges slowly at sigma = 2.5
    small = {"beta": [0.2, -0.5], "sigma": 0.7}
    plain = ri.quadrature_loglik(small, X, y, group, family, offset, n_nodes=120, adaptive=False)
    assert plain == pytest.approx(brute_force_loglik(small, X, y, group, family, offset), abs=1e-8)


@pytest.mark.parametrize("family", ["logit", "poisson"])
def test_fit_quadrature_is_the_maximum_with_hessian_standard_errors(family):
    d = ri.simulate_random_intercept(12, 6, [0.3, 0.5], 0.8, family, rng=3)
    X, y, group = d["X"], d["y"], d["group"]
    fit = ri.fit_quadrature(X, y, group, family)
    assert fit.converged
    v = np.append(fit.params["beta"], np.log(fit.params["sigma"]))

    def ll(w):
        return ri.quadrature_loglik({"beta": w[:-1], "sigma": np.exp(w[-1])}, X, y, group, family)

    assert fit.loglik == pytest.approx(ll(v), abs=1e-10)
    # the Hessian by second differences of the log-likelihood itself (not of fit's gradient)
    k, h = v.size, 1e-3
    H = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            H[i, j] = (ll(v + ei + ej) - ll(v + ei - ej) - ll(v - ei + ej) + ll(v - ei - ej)) / (4 * h * h)
    grad = np.array([(ll(v + np.eye(k)[i] * h) - ll(v - np.eye(k)[i] * h)) / (2 * h) for i in range(k)])
    assert np.max(np.abs(grad)) < 1e-4  # a stationary point ...
    assert np.all(np.linalg.eigvalsh(H) < 0)  # ... and a maximum
    np.testing.assert_allclose(fit.cov, np.linalg.inv(-H), rtol=1e-3)
    np.testing.assert_allclose(fit.se["beta"], np.sqrt(np.diag(fit.cov))[:-1], rtol=1e-12)
    assert fit.se["sigma"] == pytest.approx(fit.params["sigma"] * np.sqrt(fit.cov[-1, -1]))


def test_mcculloch_mle_reproduces_the_literature():
    mod = load_example("mcculloch1997")
    x, y, group = mod.data()
    assert x.shape == y.shape == group.shape == (150,)
    fit = ri.fit_quadrature(x, y, group, "logit")
    # quoted as beta = 6.13, sigma^2 ~ 1.7 (McCulloch 1997; Booth & Hobert 1999); quadrature: 6.132, 1.766
    assert fit.params["beta"][0] == pytest.approx(6.132, abs=2e-3)
    assert fit.sigma2 == pytest.approx(1.766, abs=2e-3)
    assert fit.loglik == pytest.approx(-44.0563, abs=1e-3)
    plain = ri.fit_quadrature(x, y, group, "logit", n_nodes=60, adaptive=False)
    assert plain.params["beta"][0] == pytest.approx(fit.params["beta"][0], abs=1e-5)
    assert plain.sigma2 == pytest.approx(fit.sigma2, abs=1e-5)


# --------------------------------------------------------------------------- the model
@pytest.mark.parametrize("family", ["logit", "poisson"])
@pytest.mark.parametrize("chunk", [1 << 16, 7])  # one block, and many blocks of draws
def test_log_joint_matches_naive_scipy(family, chunk, monkeypatch):
    monkeypatch.setattr(_glmm_passes, "CHUNK", chunk)
    X, y, group, offset = tiny_data(family, rng=1)
    G = group.max() + 1
    model = ri.random_intercept_glmm(X, y, group, family, offset=offset)
    theta = {"beta": np.array([0.3, -0.7]), "sigma": np.array(1.3)}
    u = np.random.default_rng(2).standard_normal((3, 2, G)) * 1.5
    lj = model.log_joint(theta, {"u": u})
    assert lj.shape == (3, 2, G)
    ref = np.empty((3, 2, G))
    for idx in np.ndindex(3, 2):  # naive: per observation, then per group
        eta = X @ theta["beta"] + offset + u[idx][group]
        per_obs = naive_cond_logpmf(family, y, eta)
        for g in range(G):
            ref[idx + (g,)] = per_obs[group == g].sum() + stats.norm.logpdf(u[idx + (g,)], 0, 1.3)
    np.testing.assert_allclose(lj, ref, rtol=1e-12, atol=1e-10)
    total = model.log_joint_total_fn(theta, {"u": u}, model.data)
    assert total.shape == (3, 2)
    np.testing.assert_allclose(total, ref.sum(-1), rtol=1e-12, atol=1e-9)
    assert model.per_unit and model.n_obs == y.size and model.n_units == G


@pytest.mark.parametrize("family", ["logit", "poisson"])
def test_grad_params_matches_finite_differences(family):
    X, y, group, offset = tiny_data(family, rng=4)
    model = ri.random_intercept_glmm(X, y, group, family, offset=offset)
    theta = {"beta": np.array([0.2, 0.4]), "sigma": np.array(0.9)}
    u = np.random.default_rng(5).standard_normal((2, 3, group.max() + 1))
    g = model.grad_params_fn(theta, {"u": u}, model.data)
    assert g["beta"].shape == (2, 3, 2) and g["sigma"].shape == (2, 3)

    def f(th):
        return model.log_joint_total_fn(th, {"u": u}, model.data)

    h = 1e-6
    for j in range(2):
        e = np.eye(2)[j] * h
        fd = (f({**theta, "beta": theta["beta"] + e}) - f({**theta, "beta": theta["beta"] - e})) / (2 * h)
        np.testing.assert_allclose(g["beta"][..., j], fd, rtol=1e-6, atol=1e-6)
    fd = (f({**theta, "sigma": theta["sigma"] + h}) - f({**theta, "sigma": theta["sigma"] - h})) / (2 * h)
    np.testing.assert_allclose(g["sigma"], fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family", ["logit", "poisson"])
@pytest.mark.parametrize("chunk", [1 << 16, 7])
def test_value_and_grad_is_the_total_and_the_gradient(family, chunk, monkeypatch):
    monkeypatch.setattr(_glmm_passes, "CHUNK", chunk)
    X, y, group, offset = tiny_data(family, rng=6)
    model = ri.random_intercept_glmm(X, y, group, family, offset=offset)
    theta = {"beta": np.array([0.2, -0.4]), "sigma": np.array(1.1)}
    u = np.random.default_rng(7).standard_normal((2, 5, group.max() + 1)) * 3.0  # both signs of eta
    total, g = model.value_and_grad_fn(theta, {"u": u}, model.data)
    np.testing.assert_allclose(total, model.log_joint_total_fn(theta, {"u": u}, model.data), rtol=1e-12, atol=1e-9)
    ref = model.grad_params_fn(theta, {"u": u}, model.data)
    for k in ref:
        np.testing.assert_allclose(g[k], ref[k], rtol=1e-10, atol=1e-10)
    # the numerical M step reaches the same maximiser with or without it
    from mcem import mstep

    plain = mcem.Model(model.log_joint_fn, params=model.params, latents=model.latents, data=model.data,
                       grad_params=model.grad_params_fn, log_joint_total=model.log_joint_total_fn)
    a, _ = mstep.numerical(model, theta, {"u": u})  # Newton, sigma in closed form
    b, _ = mstep.numerical(plain, theta, {"u": u}, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-11})
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_mc_covariance_matches_update_covariance():
    d = ri.simulate_random_intercept(8, 5, [0.2, -0.4], 0.9, "logit", rng=6)
    model = ri.random_intercept_glmm(d["X"], d["y"], d["group"])
    theta = {"beta": np.array([0.1, -0.3]), "sigma": np.array(0.8)}
    es = mcem.EStep(model, warn=False)
    draws = es.run(theta, es.init(theta, 0), 64, 1).draws
    ours = ri.mc_covariance(model, theta, draws)
    ref = mcem.mstep.update_covariance(model, theta, draws)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-12)


def test_default_start_sampler_and_input_left_untouched():
    d = ri.simulate_random_intercept(10, 5, [0.5, 1.0], 1.0, "logit", rng=7)
    X, y, group = d["X"].copy(), d["y"].copy(), d["group"].copy()
    model = ri.random_intercept_glmm(X, y, group)
    np.testing.assert_array_equal(X, d["X"])
    np.testing.assert_array_equal(group, d["group"])
    theta0 = model.default_theta()
    assert theta0["sigma"] == 1.0 and theta0["beta"].shape == (2,)
    # the GLM start: the score of the no-random-effects likelihood vanishes
    assert np.max(np.abs(X.T @ (y - expit(X @ theta0["beta"])))) < 1e-6
    model2 = ri.random_intercept_glmm(X, y, group, init={"sigma": 2.0})
    assert model2.default_theta()["sigma"] == 2.0
    assert "RWM" in repr(mcem.EStep(model).kernel)


# --------------------------------------------------------------------------- bad input
def _base():
    X = np.column_stack([np.ones(6), np.arange(6.0)])
    return X, np.array([0, 1, 1, 0, 1, 0.0]), np.array([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda X, y, g: (X, y * 2, g, "logit"), r"y must hold 0/1"),
        (lambda X, y, g: (X, y - 1, g, "poisson"), r"non-negative integer counts"),
        (lambda X, y, g: (X, y + 0.5, g, "poisson"), r"non-negative integer counts"),
        (lambda X, y, g: (X, y, g * 2, "logit"), r"every group non-empty.*\[1, 3\]"),
        (lambda X, y, g: (X, y, g - 1, "logit"), r"negative label"),
        (lambda X, y, g: (X, y, g + 0.5, "logit"), r"group must hold integer labels"),
        (lambda X, y, g: (X, y, g[:5], "logit"), r"group must have shape \(6,\).*got shape \(5,\)"),
        (lambda X, y, g: (X, y[:4], g, "logit"), r"y must have shape \(6,\).*got shape \(4,\)"),
        (lambda X, y, g: (np.where(X > 4, np.nan, X), y, g, "logit"), r"X must be finite, got 1 NaN"),
        (lambda X, y, g: (X, np.where(y > 0, np.nan, y), g, "poisson"), r"y must be finite, got 3 NaN"),
        (lambda X, y, g: (X[None], y, g, "logit"), r"X must be 2-D"),
        (lambda X, y, g: (X, y, g, "probit"), r"family must be one of \['logit', 'poisson'\]"),
    ],
)
def test_bad_input_raises_clear_errors(change, match):
    X, y, g, family = change(*_base())
    with pytest.raises(ValueError, match=match):
        ri.random_intercept_glmm(X, y, g, family)
    with pytest.raises(ValueError, match=match):
        ri.fit_quadrature(X, y, g, family)


def test_bad_offset_init_theta_and_types():
    X, y, g = _base()
    with pytest.raises(ValueError, match=r"offset must have shape \(6,\).*got shape \(3,\)"):
        ri.random_intercept_glmm(X, y, g, offset=np.zeros(3))
    with pytest.raises(ValueError, match=r"init has unknown parameter\(s\) \['tau'\]"):
        ri.random_intercept_glmm(X, y, g, init={"tau": 1.0})
    with pytest.raises(ValueError, match=r"init\['sigma'\] must lie in"):
        ri.random_intercept_glmm(X, y, g, init={"sigma": -1.0})
    with pytest.raises(TypeError, match=r"X must be a numeric array, got dtype <U1"):
        ri.random_intercept_glmm(np.array(["a"] * 6), y, g)
    with pytest.raises(ValueError, match=r"theta\['beta'\] must have shape \(2,\).*got \(3,\)"):
        ri.quadrature_loglik({"beta": [0, 0, 0], "sigma": 1.0}, X, y, g)
    with pytest.raises(ValueError, match=r"n_nodes must be an int >= 1, got 0"):
        ri.quadrature_loglik({"beta": [0, 0], "sigma": 1.0}, X, y, g, n_nodes=0)
    with pytest.raises(TypeError, match=r"model must be made by random_intercept_glmm"):
        ri.mc_covariance(mcem.models.gaussian_mixture(np.arange(10.0)[:, None], 2), {}, {})


# --------------------------------------------------------------------------- worked examples
def assert_matches_oracle(out):
    """MCEM, with its default rule, lands on the quadrature MLE.

    * It stops by its own rule, with a Monte Carlo error of at most 0.1 standard errors.
    * Each parameter: within 0.3 standard errors of the MLE (three Monte Carlo standard errors
      at that target).
    * Log-likelihood: the gap to the maximum is about half the squared distance in standard
      errors summed over directions; 0.3 SE in each of p directions allows 0.045 p.
    * Louis standard errors agree with the quadrature Hessian's within 4 of their Monte Carlo
      errors (jackknife) plus 10%.
    """
    res, oracle, model, comp = out["result"], out["oracle"], out["model"], out["comparison"]
    assert res.converged and res.stopped_by == "tol", res.message
    assert res["mc_ratio"] <= 0.1
    theta = {"beta": np.ravel(res.params["beta"]), "sigma": float(res.params["sigma"])}
    ll = glmm_quadrature._loglik_and_grad(theta["beta"], theta["sigma"], model.data, 20, True, grad=False)[0]
    p = theta["beta"].size + 1
    assert 0 <= oracle.loglik - ll < 0.045 * p, (oracle.loglik, ll)
    for r in comp.rows:
        assert abs(r["estimate"] - r["mle"]) < 0.3 * r["se_mle"], r
        assert abs(r["se"] - r["se_mle"]) < 4 * r["se_mcse"] + 0.1 * r["se_mle"], r


def test_mcculloch1997_example(tmp_path, capsys):
    png = tmp_path / "mcc.png"
    out = load_example("mcculloch1997").run(seed=1, out=str(png))
    text = capsys.readouterr().out
    assert "MLE (AGQ)" in text and "sigma2" in text and "literature MLE" in text
    assert png.exists() and png.stat().st_size > 10_000
    assert_matches_oracle(out)
    r = out["comparison"].row("beta")
    assert r["mle"] == pytest.approx(6.132, abs=2e-3)
    assert out["result"].settings["sampler"] == "auto" and out["result"].method == "mcem"


def test_glmm_logit_example_reduced(tmp_path, capsys):
    png = tmp_path / "logit.png"
    out = load_example("glmm_logit").run(n_groups=25, n_per_group=8, seed=2, out=str(png))
    assert "beta[2]" in capsys.readouterr().out and png.exists()
    assert_matches_oracle(out)


def test_glmm_poisson_example_reduced(tmp_path, capsys):
    png = tmp_path / "poisson.png"
    out = load_example("glmm_poisson").run(n_groups=25, n_per_group=8, seed=2, out=str(png))
    assert "beta[2]" in capsys.readouterr().out and png.exists()
    assert np.any(out["model"].data["offset"] != 0)
    assert_matches_oracle(out)


@pytest.mark.parametrize("family", ["logit", "binomial", "poisson"])
def test_exact_unit_scores_equal_central_differences_of_the_log_joint(family):
    """The ready GLMM's per-group scores (beta, then log sigma) against central differences of its
    per-unit log joint in the unconstrained parameters (what the stopping rule used before)."""
    from mcem.derivatives import central_difference

    rng = np.random.default_rng(3)
    G, n = 25, 4
    g = np.repeat(np.arange(G), n)
    X = np.c_[np.ones(G * n), rng.normal(size=G * n)]
    trials = None
    if family == "poisson":
        y = rng.poisson(1.5, G * n).astype(float)
    elif family == "binomial":
        trials = rng.integers(1, 6, G * n).astype(float)
        y = rng.binomial(trials.astype(int), 0.4).astype(float)
    else:
        y = (rng.random(G * n) < 0.4).astype(float)
    model = glmm_model.random_intercept_glmm(X, y, g, family="poisson" if family == "poisson" else "logit",
                                             trials=trials)
    theta = {"beta": np.array([0.3, -0.4]), "sigma": 0.7}
    z = {"u": rng.normal(size=(2, 3, G))}
    exact = model.unit_scores_fn(theta, z, model.data)
    v = model.to_unconstrained(theta)
    fd = central_difference(lambda w: np.asarray(model.log_joint(model.from_unconstrained(w), z)), v, 1e-5, axis=-1)
    assert exact.shape == (2, 3, G, 3)
    np.testing.assert_allclose(exact, fd, atol=1e-7, rtol=1e-7)

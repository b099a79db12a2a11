"""Honest numbers after the fit: IS log-likelihoods to a target standard error with their bias
removed, degenerate fits named, and standard errors that say why they are missing.

Oracles: adaptive Gauss-Hermite quadrature of the random-intercept GLMM, closed-form normal
marginals, and the spread of independent repeats (tolerances 4 standard errors).
"""

import warnings

import numpy as np
import pytest
from scipy import stats

import mcem
from mcem import constraints as C
from mcem.exceptions import MonteCarloWarning
from mcem.inference import degeneracy, marginal_loglik, standard_errors
from mcem.models import random_intercept as ri


# ----------------------------------------------------------------------------- models
def glmm_100_groups():
    """A logit random-intercept GLMM with 100 groups of 8, its theta, posterior draws and the
    exact log-likelihood at theta (adaptive quadrature with 40 nodes: error below 1e-12)."""
    sim = ri.simulate_random_intercept(100, 8, [-0.5, 1.0], 1.2, rng=11)
    model = mcem.models.random_intercept_glmm(sim["X"], sim["y"], sim["group"])
    theta = {"beta": np.array([-0.5, 1.0]), "sigma": np.array(1.2)}
    es = mcem.EStep(model, n_chains=4, burn=200)
    draws = es.run(theta, es.init(theta, 0), 250, 1).draws
    truth = mcem.models.quadrature_loglik(theta, sim["X"], sim["y"], sim["group"], n_nodes=40)
    return model, theta, draws, truth


def identical_units(N, y0=1.3, mu=0.0, tau=0.5):
    """y_i = y0 ~ N(u_i, 1), u_i ~ N(mu, tau^2) for N identical units: exact posterior draws and
    the exact log-likelihood N log N(y0; mu, 1 + tau^2). Each unit's estimate is a repeat."""
    y = np.full(N, y0)

    def lj(theta, z, data):
        u = z["u"]
        return (-0.5 * (data - u) ** 2 - 0.5 * ((u - theta["mu"]) / theta["tau"]) ** 2
                - np.log(theta["tau"]) - np.log(2 * np.pi))

    model = mcem.Model(lj, params={"mu": C.real, "tau": C.positive},
                       latents={"u": mcem.Continuous(shape=N, unit=True)}, data=y)
    theta = {"mu": np.array(mu), "tau": np.array(tau)}
    pv = 1 / (1 + 1 / tau**2)
    pm = pv * (y0 + mu / tau**2)
    draws = {"u": pm + np.sqrt(pv) * np.random.default_rng(0).standard_normal((2, 500, N))}
    truth = N * stats.norm(mu, np.sqrt(1 + tau**2)).logpdf(y0)
    return model, theta, draws, truth


@pytest.fixture(scope="module")
def glmm_case():
    return glmm_100_groups()


# ----------------------------------------------------------------------------- IS log-likelihood
def test_adaptive_is_loglik_reaches_the_target_and_covers_the_quadrature_truth(glmm_case):
    model, theta, draws, truth = glmm_case
    old = marginal_loglik(model, theta, draws, n_samples=2000, rng=3)
    assert old.mcse > 0.06  # the former fixed default is not good enough here
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonteCarloWarning)
        est = marginal_loglik(model, theta, draws, rng=3)
    assert est.method == "importance sampling (per unit)"
    assert 0 < est.mcse <= 0.05  # (b) the default target
    assert est.n_samples > 2000  # it grew to get there
    assert abs(est.value - truth) < 4 * est.mcse, (est, truth)  # (a)
    tight = marginal_loglik(model, theta, draws, target_se=0.02, rng=4)
    assert tight.mcse <= 0.02 and tight.n_samples > est.n_samples
    assert abs(tight.value - truth) < 4 * tight.mcse, (tight, truth)


def test_the_bias_correction_removes_the_downward_bias_of_the_log_of_a_mean():
    """E[log mean w] ~ log E[w] - Var(w) / (2 R E[w]^2): over many repeats with R = 50 samples,
    the uncorrected estimate falls short of the truth by about that much; the corrected one is
    within the spread of the repeats."""
    model, theta, draws, truth = identical_units(1000)
    reps = [marginal_loglik(model, theta, draws, n_samples=50, rng=s) for s in range(150)]
    value = np.array([e.value for e in reps])
    corr = np.array([e.bias_correction for e in reps])
    assert all(e.n_samples == 50 for e in reps)
    uncorrected = value - corr
    se_rep = value.std(ddof=1) / np.sqrt(len(reps))
    se_unc = uncorrected.std(ddof=1) / np.sqrt(len(reps))
    short = truth - uncorrected.mean()
    assert short > 4 * se_unc, (short, se_unc)  # the log of a mean is biased low ...
    assert abs(short - corr.mean()) < 4 * se_rep, (short, corr.mean(), se_rep)  # ... by about var/2
    assert abs(value.mean() - truth) < 4 * se_rep, (value.mean() - truth, se_rep)  # corrected: not
    # the reported standard error matches the spread of the repeats
    assert np.mean([e.mcse for e in reps]) == pytest.approx(value.std(ddof=1), rel=0.2)


def test_a_budget_that_cannot_reach_the_target_warns_with_the_se_reached(glmm_case):
    model, theta, draws, truth = glmm_case
    with pytest.warns(MonteCarloWarning, match=r"standard error is .* after 500 samples per unit") as rec:
        est = marginal_loglik(model, theta, draws, target_se=0.001, max_samples=500, rng=0)
    (w,) = [r.message for r in rec if getattr(r.message, "key", None) == "loglik_se"]
    assert w.value == pytest.approx(est.mcse) and w.value > 0.001 and w.worse == "high"
    assert "max_samples" in str(w) and "would reach it" in str(w)
    assert est.n_samples == 500
    assert abs(est.value - truth) < 4 * est.mcse


def test_fixed_sample_size_and_batches_give_the_same_numbers():
    model, theta, draws, truth = identical_units(30)
    one = marginal_loglik(model, theta, draws, n_samples=300, rng=5)
    many = marginal_loglik(model, theta, draws, n_samples=300, batch_size=7, rng=5)
    assert one.n_samples == many.n_samples == 300
    assert many.value == pytest.approx(one.value, abs=1e-9)
    assert many.mcse == pytest.approx(one.mcse, rel=1e-9)
    assert one.bias_correction == pytest.approx(0.5 * one.mcse**2, rel=1e-12)
    # a fixed size never warns, however far from the target
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonteCarloWarning)
        marginal_loglik(model, theta, draws, n_samples=3, target_se=1e-6, rng=5)


def test_joint_importance_sampling_reaches_the_target():
    """y ~ N(z1 + z2, 1), z ~ N(0, s^2 I) jointly: p(y) = N(0, 1 + 2 s^2)."""
    y = 0.7

    def log_joint(theta, z, data):
        s, zz = theta["s"], z["z"]
        return (-0.5 * (y - zz.sum(-1)) ** 2 - 0.5 * np.sum(zz**2, -1) / s**2
                - 2 * np.log(s) - 1.5 * np.log(2 * np.pi))

    model = mcem.Model(log_joint, params={"s": C.positive}, latents={"z": mcem.Continuous(shape=2)})
    theta = {"s": np.array(0.8)}
    v = 1 + 2 * 0.8**2
    truth = -0.5 * np.log(2 * np.pi * v) - 0.5 * y**2 / v
    es = mcem.EStep(model, "rwm", n_chains=4, burn=200)
    draws = es.run(theta, es.init(theta, 0), 300, np.random.default_rng(0)).draws
    est = marginal_loglik(model, theta, draws, target_se=0.002, rng=1)
    assert est.method == "importance sampling (joint)"
    assert est.mcse <= 0.002 and est.n_samples > 1000
    assert abs(est.value - truth) < 4 * est.mcse, (est, truth)


def test_fit_result_loglik_passes_the_new_arguments(glmm_case):
    model, theta, draws, truth = glmm_case
    res = mcem.FitResult(params=theta, draws=draws, method="mcem")
    object.__setattr__(res, "_model", model)
    est = res.marginal_loglik(target_se=0.04)
    assert est.mcse <= 0.04 and abs(est.value - truth) < 4 * est.mcse
    assert res.marginal_loglik(target_se=0.04) is est  # cached per arguments
    assert res.loglik == est.value and res.loglik_mcse == est.mcse  # stored as the result's log-likelihood
    fixed = res.marginal_loglik(n_samples=1000)
    assert fixed.n_samples == 1000 and res.llf == fixed.value
    assert res.aic == pytest.approx(-2 * fixed.value + 2 * 3)


def test_loglik_arguments_are_checked(glmm_case):
    model, theta, draws, _ = glmm_case
    with pytest.raises(ValueError, match=r"target_se must be a finite positive number, got 0"):
        marginal_loglik(model, theta, draws, target_se=0)
    with pytest.raises(ValueError, match=r"max_samples must be an int >= 2, got 1"):
        marginal_loglik(model, theta, draws, max_samples=1)
    with pytest.raises(ValueError, match=r"n_samples must be an int >= 2, got 1"):
        marginal_loglik(model, theta, draws, n_samples=1)
    with pytest.raises(ValueError, match=r"draws\['u'\] must have shape \(chain, draw, 100\), got \(5, 3\)"):
        marginal_loglik(model, theta, {"u": np.zeros((5, 3))})
    with pytest.raises(ValueError, match=r"draws has no draws of latent 'u'"):
        marginal_loglik(model, theta, {"v": np.zeros((1, 5, 100))})
    with pytest.raises(TypeError, match=r"model must be an mcem.Model, got str"):
        marginal_loglik("m", theta, draws)


# ----------------------------------------------------------------------------- degenerate fits
def collapsing_data():
    """100 standard-normal points and 3 copies of one far point: with reg_covar=0 a component
    collapses onto the copies (its variance ~1e-14)."""
    rng = np.random.default_rng(0)
    return np.vstack([rng.normal(size=(100, 2)), np.tile([[8.0, 8.0]], (3, 1))])


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_degeneracy_names_the_collapsed_component(covariance_type):
    model = mcem.models.gaussian_mixture(collapsing_data(), 2, covariance_type=covariance_type, reg_covar=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit may itself warn about the degenerate point
        res = mcem.fit(model, tol=1e-10, max_iter=500)
    k = int(np.argmin(res.params["weights"]))
    assert np.all(np.asarray(res.params["covariances"])[k] < 1e-12)
    problems = degeneracy(model, res.params)
    assert problems, "a collapsed component must be reported"
    assert all(p.startswith(f"covariances[{k}") and "at the edge of positive" in p for p in problems), problems
    assert len(problems) == (2 if covariance_type == "diag" else 1)
    # the standard errors say which parameters and why, and the summary prints the word
    with pytest.warns(MonteCarloWarning, match=rf"covariances\[{k}") as rec:
        inf = res.inference()
    keys = {getattr(r.message, "key", None) for r in rec}
    assert "boundary_estimate" in keys
    assert np.all(np.isnan(inf.se["covariances"][k]))
    assert any("edge of the parameter space" in p for p in inf.problems)
    assert res["se_problems"] == inf.problems
    text = str(res.summary())
    for line in text.splitlines():
        if "n/a" in line and line.startswith("covariances"):
            assert "(at edge)" in line or "(info not PD)" in line, line
    assert "degenerate fit" in text.replace("\n  ", " ")


def test_a_collapsed_full_covariance_is_at_the_edge():
    X = collapsing_data()
    theta = mcem.fit(mcem.models.gaussian_mixture(X, 2), tol=1e-10, max_iter=500).params
    k = int(np.argmin(theta["weights"]))
    model = mcem.models.gaussian_mixture(X, 2, reg_covar=0)
    collapsed = {**theta, "covariances": theta["covariances"].copy()}
    collapsed["covariances"][k] = np.array([[2e-14, 1e-14], [1e-14, 3e-14]])
    (p,) = degeneracy(model, collapsed)
    assert p.startswith(f"covariances[{k}] is at the edge of positive_definite(2, batch=(2,)): smallest eigenvalue")
    flat = {**theta, "covariances": theta["covariances"].copy()}
    flat["covariances"][k] = np.diag([1.0, 1e-13])  # singular in one direction
    (p,) = degeneracy(model, flat)
    assert "condition number 1e+13" in p
    assert degeneracy(model, theta) == []


def test_degeneracy_of_an_empty_component_and_non_finite_values():
    model = mcem.models.gaussian_mixture(collapsing_data(), 2)
    th = model.default_theta()
    assert degeneracy(model, {**th, "weights": np.array([1.0, 1e-17])}) == [
        "weights[1] is at the edge of simplex(2): weight 1e-17 (at 0)"]
    bad = {**th, "means": np.array([[np.nan, 0.0], [1.0, 1.0]])}
    assert degeneracy(model, bad) == ["means[0,0] is not finite (nan)"]
    with pytest.raises(ValueError, match=r"theta is missing parameter\(s\) \['weights'\]"):
        degeneracy(model, {"means": th["means"], "covariances": th["covariances"]})
    with pytest.raises(TypeError, match=r"model must be an mcem.Model, got dict"):
        degeneracy({}, th)


def _ready_made_models():
    """Every ready-made model with data like the test suite's: (name, model, fit by EM?)."""
    rng = np.random.default_rng(1)
    faithful = mcem.datasets.load_faithful()
    lam = np.array([[1.0, 0.0], [0.8, 0.5], [0.6, -0.4], [0.2, 0.9], [0.5, 0.5]])
    fa_X = rng.normal(size=(120, 2)) @ lam.T + rng.normal(size=(120, 5)) * 0.5
    mn_X = rng.multivariate_normal([1.0, -1.0, 2.0], [[1, 0.5, 0.2], [0.5, 2, 0.3], [0.2, 0.3, 1.5]], size=80)
    mn_X[rng.random(80) < 0.3, 1] = np.nan
    mn_X[rng.random(80) < 0.2, 2] = np.nan
    sim = ri.simulate_random_intercept(30, 6, [0.2, -0.7], 0.9, rng=2)
    out = [(f"gaussian_mixture {ct}", mcem.models.gaussian_mixture(faithful, 2, covariance_type=ct), True)
           for ct in ("full", "diag", "spherical")]
    out += [
        ("gaussian_mixture K=3", mcem.models.gaussian_mixture(faithful, 3), True),
        ("factor_analysis", mcem.models.factor_analysis(fa_X, 2), True),
        ("factor_analysis ppca lower", mcem.models.factor_analysis(fa_X, 2, noise="isotropic", loadings="lower"), True),
        ("missing_normal", mcem.models.missing_normal(mn_X), True),
        ("genetic_linkage", mcem.models.genetic_linkage(), True),
        ("pump_failures", mcem.models.pump_failures(), True),
        ("motorette", mcem.models.motorette(), True),
        ("random_intercept_glmm", mcem.models.random_intercept_glmm(sim["X"], sim["y"], sim["group"]), False),
        ("salamander", mcem.models.salamander(), False),
    ]
    return out


def test_no_false_alarm_on_ordinary_fits():
    for name, model, fit_em in _ready_made_models():
        assert degeneracy(model, model.default_theta()) == [], name
        if fit_em:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = mcem.fit(model, tol=1e-9, max_iter=2000)
            assert degeneracy(model, res.params) == [], name
    # the quadrature MLE of the GLMM (a fitted theta without an EM run)
    sim = ri.simulate_random_intercept(30, 6, [0.2, -0.7], 0.9, rng=2)
    model = mcem.models.random_intercept_glmm(sim["X"], sim["y"], sim["group"])
    q = mcem.models.fit_quadrature(sim["X"], sim["y"], sim["group"])
    assert degeneracy(model, q.params) == []


def test_non_positive_definite_information_names_the_parameters_and_the_remedy():
    """y_i ~ N(u_i, 1), u_i ~ N(a + b, 1), and a separate term in c: only a + b is identified;
    the flat direction a - b must be named, c's standard error must survive."""
    yv = np.array([0.2, 1.4, -0.3, 0.9])

    def log_joint(theta, z, data):
        u = z["u"]
        return (-0.5 * (yv - u) ** 2 - 0.5 * (u - theta["a"] - theta["b"]) ** 2 - np.log(2 * np.pi)
                - 0.5 * (theta["c"] - 1.0) ** 2)

    model = mcem.Model(log_joint, params={"a": C.real, "b": C.real, "c": C.real},
                       latents={"u": mcem.Continuous(shape=4, unit=True)})
    theta = {"a": np.array(0.2), "b": np.array(0.35), "c": np.array(1.0)}
    es = mcem.EStep(model, n_chains=4, burn=100)
    draws = es.run(theta, es.init(theta, 0), 400, np.random.default_rng(0)).draws
    with pytest.warns(MonteCarloWarning, match="not positive definite") as rec:
        inf = standard_errors(model, theta, draws)
    (w,) = [r.message for r in rec if getattr(r.message, "key", None) == "information_not_pd"]
    assert w.worse == "low" and w.value == pytest.approx(np.linalg.eigvalsh(inf.information).min())
    (p,) = inf.problems
    assert "moves a (" in p and "b (" in p and "c (" not in p
    assert "more draws" in p and "boundary" in p and "do not identify" in p
    assert np.isnan(inf.se["a"]) and np.isnan(inf.se["b"])
    # untouched by the flat direction: the c term sits in each of the 4 unit terms, information 4
    assert inf.se["c"] == pytest.approx(0.5, rel=1e-4)
    assert inf.flags == {"a": "info not PD", "b": "info not PD"}


def test_an_ordinary_fit_has_no_problems():
    model = mcem.models.gaussian_mixture(mcem.datasets.load_faithful(), 2)
    res = mcem.fit(model, tol=1e-10, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonteCarloWarning)
        inf = res.inference()
    assert inf.problems == [] and inf.flags == {} and res["se_problems"] == []
    assert degeneracy(model, res.params) == []
    assert "n/a" not in str(res.summary())


def test_a_unit_without_mass_under_the_proposal_gives_minus_inf_and_warns():
    model, theta, draws, _ = identical_units(5)

    def lj(theta, z, data):
        out = model.log_joint_fn(theta, z, data)
        return np.where(np.arange(5) == 0, -np.inf, out)

    dead = mcem.Model(lj, params=model.params, latents=model.latents, data=model.data)
    with pytest.warns(MonteCarloWarning, match="the proposal misses the posterior of some unit"):
        est = marginal_loglik(dead, theta, draws, rng=0)
    assert est.value == -np.inf and est.mcse == np.inf and est.n_samples == 1000

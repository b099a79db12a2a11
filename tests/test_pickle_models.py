"""Every ready model pickles with the standard library and computes the same after loading.

The list of constructors is checked against every public function of the ``mcem.models``
modules, so a new model cannot be left out: a public function must be either a constructor
here or named in ``NOT_MODELS``.
"""

import importlib
import inspect
import multiprocessing
import pickle
import pkgutil
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import mcem
import mcem.models
from mcem.models._common import Memo, ready_model

from mcem.models import censored as tobit
from mcem.models import centred_glmm, classic, crossed, glmm_model, linear_gaussian, linkage, pumps, theophylline
from mcem.models import missing as missing_normal
from mcem.models import hmm, level, stochvol
from mcem.models import mixture as gm
from mcem.models import formula_glmm

RNG = np.random.default_rng(20240611)
X2 = np.concatenate([RNG.normal(-2.0, 1.0, (15, 2)), RNG.normal(2.0, 0.7, (15, 2))])
X5 = RNG.standard_normal((40, 5)) @ RNG.standard_normal((5, 5))
X_MISSING = np.where(RNG.random(X5.shape) < 0.2, np.nan, X5)
X_MISSING[:, 0] = X5[:, 0]  # no row entirely missing
GLMM = glmm_model.simulate_random_intercept(8, 4, [0.3, -0.5], 0.9, "logit", rng=1)
GLMM_P = glmm_model.simulate_random_intercept(8, 4, [0.3, -0.5], 0.9, "poisson", rng=2)
TOBIT_X = np.column_stack([np.ones(12), np.linspace(-1, 1, 12)])
TOBIT_Y = TOBIT_X @ [0.5, 1.0] + 0.3 * RNG.standard_normal(12)
CROSSED = dict(y=[1, 0, 1, 1, 0, 0, 1, 0], X=np.ones((8, 1)), female=[0, 0, 1, 1, 2, 2, 0, 1],
               male=[0, 1, 0, 1, 0, 1, 1, 0])

#: Every ready-model constructor: small instances (several where options change the functions).
CONSTRUCTORS = {
    "mcem.models.mixture.gaussian_mixture": lambda: [
        gm.gaussian_mixture(X2, 2, ct) for ct in ("full", "tied", "diag", "spherical")
    ],
    "mcem.models.glmm_model.random_intercept_glmm": lambda: [
        glmm_model.random_intercept_glmm(GLMM["X"], GLMM["y"], GLMM["group"]),
        glmm_model.random_intercept_glmm(GLMM_P["X"], GLMM_P["y"], GLMM_P["group"], "poisson",
                                         offset=GLMM_P["offset"] + 0.1),
        glmm_model.random_intercept_glmm(GLMM["X"], GLMM["y"], GLMM["group"]).subset(np.array([1, 3, 4])),
        glmm_model.random_intercept_glmm(GLMM["X"], GLMM["y"] * 2, GLMM["group"], trials=np.full(32, 3.0)),
    ],
    "mcem.models.linear_gaussian.factor_analysis": lambda: [
        linear_gaussian.factor_analysis(X5, 2, noise=noise, loadings=loadings)
        for noise in ("diagonal", "isotropic") for loadings in ("full", "lower")
    ],
    "mcem.models.missing.missing_normal": lambda: [missing_normal.missing_normal(X_MISSING)],
    "mcem.models.crossed.crossed_logit": lambda: [
        crossed.crossed_logit(**CROSSED), crossed.crossed_logit(**CROSSED, quadrature=8)
    ],
    "mcem.models.crossed.salamander": lambda: [crossed.salamander()],
    "mcem.models.censored.tobit": lambda: [tobit.tobit(TOBIT_Y, TOBIT_X, TOBIT_Y > 1.0)],
    "mcem.models.censored.motorette": lambda: [tobit.motorette()],
    "mcem.models.linkage.genetic_linkage": lambda: [linkage.genetic_linkage()],
    "mcem.models.pumps.pump_failures": lambda: [pumps.pump_failures()],
    "mcem.models.classic.cbpp_model": lambda: [classic.cbpp_model(), classic.cbpp_model(latent="u")],
    "mcem.models.classic.epilepsy_model": lambda: [classic.epilepsy_model(), classic.epilepsy_model(latent="u")],
    "mcem.models.centred_glmm.centred_glmm": lambda: [
        centred_glmm.centred_glmm(GLMM_P["X"], GLMM_P["y"], GLMM_P["group"], "poisson", offset=GLMM_P["offset"]),
        centred_glmm.centred_glmm(GLMM["X"], GLMM["y"] * 2, GLMM["group"], trials=np.full(32, 3.0)),
    ],
    "mcem.models.hmm.gaussian_hmm": lambda: [hmm.gaussian_hmm(np.sin(np.arange(20.0)) + np.arange(20.0) % 3, 2)],
    "mcem.models.level.local_level": lambda: [level.local_level(np.cumsum(np.cos(np.arange(30.0))) + 0.3)],
    "mcem.models.stochvol.stochastic_volatility": lambda: [stochvol.stochastic_volatility(np.sin(np.arange(12.0)))],
    "mcem.models.formula_glmm.glmm": lambda: [
        formula_glmm.glmm("Reaction ~ Days + (Days | Subject)", mcem.datasets.load_sleepstudy()),
        formula_glmm.glmm("diameter ~ 1 + (1 | plate) + (1 | sample)", mcem.datasets.load_penicillin()),
        formula_glmm.glmm("incidence ~ period + (1 | herd)", mcem.datasets.load_cbpp(as_frame=True),
                          family="binomial", trials="size")],
    "mcem.models.theophylline.theophylline_model": lambda: [
        theophylline.theophylline_model(latent=latent) for latent in ("phi", "b")
    ],
}

#: The other public functions and classes of the model modules (oracles, data, helpers).
NOT_MODELS = {
    "mcem.models.crossed.crossed_logit_loglik",
    "mcem.models.crossed.salamander_design",
    "mcem.models.mixture_estimator.GaussianMixture",
    "mcem.models.formula_glmm.MixedModel",
    "mcem.models.formula_setup.column",
    "mcem.models.formula_setup.check_response",
    "mcem.models.formula_setup.labels",
    "mcem.models.formula_setup.model_spec",
    "mcem.models.formula_setup.prior_mean",
    "mcem.models.formula_gaussian.covariance",
    "mcem.models.formula_gaussian.posterior",
    "mcem.models.formula_gaussian.gaussian_hooks",
    "mcem.models.formula_ranef.RandomEffects",
    "mcem.models.formula_ranef.ranef",
    "mcem.models.formula_ranef.predict",
    "mcem.models.formula_terms.MixedDesign",
    "mcem.models.formula_terms.RandomTerm",
    "mcem.models.formula_terms.mixed_design",
    "mcem.models.mixture.component_log_density",
    "mcem.models.mixture.params_from_resp",
    "mcem.models.mixture.precision_cholesky",
    "mcem.models.mixture_estimator.start_responsibilities",
    "mcem.models.mixture.initial_params",
    "mcem.models.mixture.kmeans_plusplus",
    "mcem.models.glmm_model.mc_covariance",
    "mcem.models.glmm_expand.expanded_mstep",
    "mcem.models.glmm_expand.intercept_column",
    "mcem.models.glmm_model.simulate_random_intercept",
    "mcem.models.glmm_quadrature.QuadratureFit",
    "mcem.models.glmm_quadrature.compare_to_quadrature",
    "mcem.models.glmm_quadrature.fit_quadrature",
    "mcem.models.glmm_quadrature.plot_with_oracle",
    "mcem.models.glmm_quadrature.quadrature_loglik",
    "mcem.models.linear_gaussian.LowerTrapezoidal",
    "mcem.models.linear_gaussian.implied_covariance",
    "mcem.models.linear_gaussian.initial_params",
    "mcem.models.linkage.linkage_mle",
    "mcem.models.missing.initial_params",
    "mcem.models.pumps.pumps_loglik",
    "mcem.models.pumps.pumps_mle",
    "mcem.models.censored.motorette_data",
    "mcem.models.censored.tobit_loglik",
    "mcem.models.censored.tobit_mle",
    "mcem.models.classic.cbpp_design",
    "mcem.models.classic.epilepsy_design",
    "mcem.models.theophylline.fol_concentration",
    "mcem.models.theophylline.theophylline_data",
    "mcem.models.theophylline_quadrature.fit_theophylline_quadrature",
    "mcem.models.theophylline_quadrature.theophylline_loglik",
    "mcem.models.hmm.initial_params",
    "mcem.models.level.initial_params",
    "mcem.models.stochvol.simulate",
    "mcem.models.stochvol.grid_loglik",
    "mcem.models.stochvol.grid_mle",
}


def public_callables():
    """``module.name`` of every public function and class defined in a public mcem.models module."""
    found = {}
    for info in pkgutil.iter_modules(mcem.models.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"mcem.models.{info.name}")
        for name, obj in vars(mod).items():
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if obj.__module__ == mod.__name__:
                found[f"{mod.__name__}.{name}"] = obj
    return found


def test_the_list_of_constructors_is_complete():
    found = public_callables()
    unclassified = sorted(set(found) - set(CONSTRUCTORS) - NOT_MODELS)
    assert not unclassified, f"classify these public names (a ready model goes in CONSTRUCTORS): {unclassified}"
    assert not (set(CONSTRUCTORS) | NOT_MODELS) - set(found), "names listed here that no longer exist"
    # the constructors are exactly the functions that return a Model
    returns_model = {k for k, f in found.items() if inspect.isfunction(f)
                     and inspect.signature(f).return_annotation in ("Model", mcem.Model)}
    assert returns_model == set(CONSTRUCTORS)
    for k, build in CONSTRUCTORS.items():
        assert all(isinstance(m, mcem.Model) for m in build()), k


def _theta_and_latents(model, seed):
    """A parameter value away from the default and latents inside their support."""
    rng = np.random.default_rng(seed)
    u = model.to_unconstrained(model.default_theta())
    theta = model.from_unconstrained(u + 0.1 * rng.standard_normal(u.shape))
    z = model.init_latents(rng, (2, 3))
    for name, spec in model.latents.items():
        if isinstance(spec, mcem.Continuous):
            z[name] = spec.support.forward(spec.support.inverse(z[name]) + 0.3 * rng.standard_normal(z[name].shape))
    return theta, z


def _same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, tuple):
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    else:
        np.testing.assert_array_equal(a, b)


def _evaluate(model, theta, z, seed):
    """Everything the model computes at (theta, z); random draws from a fixed seed."""
    out = {"log_joint": model.log_joint(theta, z)}
    if model.loglik_fn is not None:
        out["loglik"] = model.exact_loglik(theta)
    for name, fn in model.conditionals.items():
        out[f"conditional {name}"] = fn(theta, z, model.data)
    if model.grad_params_fn is not None:
        out["grad_params"] = model.grad_params_fn(theta, z, model.data)
    if model.exact_estep_fn is not None:
        out["exact_estep"] = model.exact_estep_fn(theta, model.data)
    if model.posterior_sampler_fn is not None:
        out["posterior_sampler"] = model.posterior_sampler_fn(theta, model.data, np.random.default_rng(seed), (3,))
    return out


@pytest.mark.parametrize("constructor", sorted(CONSTRUCTORS))
def test_every_ready_model_pickles_and_computes_the_same(constructor):
    for k, model in enumerate(CONSTRUCTORS[constructor]()):
        loaded = pickle.loads(pickle.dumps(model))
        assert loaded is not model and loaded.name == model.name
        points = [_theta_and_latents(model, seed) + (seed,) for seed in (k, k + 10)]
        # the two parameter values in opposite orders: a memo that returned the value of the
        # previous parameter value would make them differ
        expected = [_evaluate(model, *p) for p in points[::-1]][::-1]
        for p, want in zip(points, expected, strict=True):
            _same(_evaluate(loaded, *p), want)


def test_a_fitted_gaussian_mixture_pickles_and_predicts_the_same():
    est = mcem.models.GaussianMixture(2, rng=0).fit(X2)
    loaded = pickle.loads(pickle.dumps(est))
    new = RNG.normal(0.0, 2.0, (25, 2))
    np.testing.assert_array_equal(loaded.predict(new), est.predict(new))
    np.testing.assert_array_equal(loaded.predict_proba(new), est.predict_proba(new))
    np.testing.assert_array_equal(loaded.score_samples(new), est.score_samples(new))
    assert loaded.lower_bound_ == est.lower_bound_
    assert loaded.model_.exact_loglik(loaded.result_.params) / len(X2) == est.lower_bound_


def run_estep(model, theta, seed):
    """A small E step (module level, so a spawned worker can import it)."""
    es = mcem.EStep(model, n_chains=2, burn=20, warn=False)
    return es.run(theta, es.init(theta, seed), 10, seed + 1).draws


def test_a_spawned_process_pool_runs_an_estep_on_a_ready_model():
    model = linear_gaussian.factor_analysis(X5, 2, loadings="lower")
    theta = model.default_theta()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        remote = pool.submit(run_estep, model, theta, 3).result(timeout=60)
    elapsed = time.perf_counter() - t0
    _same(remote, run_estep(model, theta, 3))  # the same draws as in this process, bit for bit
    assert remote["f"].shape == (2, 10, X5.shape[0], 2)
    if elapsed > 10:
        pytest.skip(f"the spawned pool worked but took {elapsed:.1f} s (start-up of a new interpreter)")


CALLS = []


def _counted(theta, data):
    a = float(np.sum(theta["a"]))
    CALLS.append(a)
    return a * data["scale"]


def test_memo_recomputes_for_a_new_theta_or_data_and_pickles_empty():
    memo, data = Memo(_counted, ("a",)), {"scale": 2.0}
    CALLS.clear()
    assert memo({"a": 1.0}, data) == 2.0 and memo({"a": np.array(1.0)}, data) == 2.0 and CALLS == [1.0]
    assert memo({"a": 3.0}, data) == 6.0 and CALLS == [1.0, 3.0]
    assert memo({"a": 3.0}, {"scale": 10.0}) == 30.0 and len(CALLS) == 3  # other data: recomputed
    assert memo({"a": 3.0}, data) == 6.0 and len(CALLS) == 4
    assert memo({"a": [3.0]}, data) == 6.0 and len(CALLS) == 5  # another shape is another key
    loaded = pickle.loads(pickle.dumps(memo))
    assert loaded._last is None and loaded({"a": [3.0]}, data) == 6.0 and len(CALLS) == 6
    with pytest.raises(TypeError, match="module-level functions named _<role>"):
        ready_model(lambda theta, z, data: 0.0, params={}, latents={})

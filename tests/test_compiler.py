"""The model language compiled by JAX: the same densities as the numpy evaluation, exact
derivatives (checked against central differences of the numpy path), the fallback for code JAX
cannot trace, JAX imported lazily, the user's JAX configuration untouched, and pickling."""

import functools
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import mcem
from mcem import constraints as C
from mcem import dist
from mcem.algorithms.resume import resume
from mcem.derivatives import central_difference
from mcem.diagnostics import ess
from mcem.estep import EStep
from mcem.kernels import MALA

RNG = np.random.default_rng(11)
G, NPER = 12, 5
N = G * NPER
X = np.column_stack([np.ones(N), RNG.standard_normal(N)])
GROUP = np.repeat(np.arange(G), NPER)
Y = (RNG.random(N) < 0.5).astype(float)
COUNTS = RNG.poisson(2.0, N).astype(float)


def glmm_fn(m, X, y, group, n_groups):
    beta = m.param("beta", shape=X.shape[1], init=0.0)
    sigma = m.param("sigma", constraint=C.positive, init=1.0)
    u = m.latent("u", dist.Normal(0.0, sigma), shape=n_groups, unit=True)
    m.observe("y", dist.Bernoulli(logits=X @ beta + u[..., group]), y, unit_index=group)


def poisson_fn(m, X, y, group, n_groups):
    beta = m.param("beta", shape=X.shape[1], init=0.1)
    mu = m.param("mu", init=0.2)
    sigma = m.param("sigma", constraint=C.positive, init=0.7)
    u = m.latent("u", dist.Normal(mu, sigma), shape=n_groups, unit=True)
    rate = m.np.exp(X @ beta + u[..., group])
    m.observe("y", dist.Poisson(rate), y, unit_index=group)


def mixture_fn(m, x):
    w = m.param("w", constraint=C.simplex(2), init=[0.4, 0.6])
    mu = m.param("mu", shape=2, init=[-1.0, 1.0])
    s = m.param("s", constraint=C.positive, init=1.0)
    z = m.latent("z", dist.Categorical(probs=w), shape=x.shape[0], unit=True)
    m.observe("x", dist.Normal(mu[z], s), x, unit_index=np.arange(x.shape[0]))


def factor_fn(m, y, group, n_groups):
    s = m.param("s", constraint=C.positive, init=1.2)
    t = m.param("t", constraint=C.positive, init=0.8)
    u = m.latent("u", dist.Normal(0.0, s), shape=n_groups, unit=True)
    r = (y - u[..., group]) / t
    m.factor("y", -0.5 * r * r - m.np.log(t) - 0.5 * np.log(2 * np.pi), unit_index=group)


def observe_twin_fn(m, y, group, n_groups):
    s = m.param("s", constraint=C.positive, init=1.2)
    t = m.param("t", constraint=C.positive, init=0.8)
    u = m.latent("u", dist.Normal(0.0, s), shape=n_groups, unit=True)
    m.observe("y", dist.Normal(u[..., group], t), y, unit_index=group)


def correlated_fn(m, y, x, group, n_groups):
    sd = m.param("sd", shape=2, constraint=C.positive, init=[1.0, 0.5])
    corr = m.param("corr", constraint=C.corr_cholesky(2))
    b = m.latent("b", dist.MultivariateNormal(m.np.zeros(2), scale_tril=sd[:, None] * corr),
                 shape=(n_groups, 2), unit=True)
    m.observe("y", dist.Normal(b[..., group, 0] + b[..., group, 1] * x, 1.0), y, unit_index=group)


CASES = {
    "correlated": (correlated_fn, dict(y=RNG.standard_normal(N), x=RNG.standard_normal(N), group=GROUP, n_groups=G)),
    "glmm": (glmm_fn, dict(X=X, y=Y, group=GROUP, n_groups=G)),
    "poisson": (poisson_fn, dict(X=X, y=COUNTS, group=GROUP, n_groups=G)),
    "mixture": (mixture_fn, dict(x=np.concatenate([RNG.normal(-1, 1, 15), RNG.normal(2, 1, 15)]))),
    "factor": (factor_fn, dict(y=RNG.standard_normal(N), group=GROUP, n_groups=G)),
}


@functools.cache
def build(name, jit=True):
    """One compiled model per case for the whole file (compiling is the slow part)."""
    fn, data = CASES[name]
    return mcem.model(fn, jit=jit)(**data)


def random_z(model, batch, rng):
    out = {}
    for n in model.latent_names:
        spec = model.latents[n]
        out[n] = (rng.integers(0, spec.K, size=batch + spec.shape) if spec.is_discrete
                  else 0.8 * rng.standard_normal(batch + spec.shape))
    return out


def random_theta(model, rng):
    u = model.to_unconstrained(model.default_theta()) + 0.3 * rng.standard_normal(model.n_unconstrained)
    return model.from_unconstrained(u)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_densities_equal_the_numpy_evaluation(name):
    rng = np.random.default_rng(1)
    jm, nm = build(name), build(name, jit=False)
    assert jm.grad_params_fn is not None and nm.grad_params_fn is None
    theta = random_theta(jm, rng)
    for batch in [(3,), (2, 7), (5, 33)]:  # 33 draws: padded to a bucket, then cut
        z = random_z(jm, batch, rng)
        np.testing.assert_allclose(jm.log_joint(theta, z), nm.log_joint(theta, z), rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(jm.log_joint_sum(theta, z, len(batch)), nm.log_joint_sum(theta, z, len(batch)),
                                   rtol=1e-12, atol=1e-10)
        for site in jm.conditionals:
            np.testing.assert_allclose(jm.conditionals[site](theta, z, jm.data),
                                       nm.conditionals[site](theta, z, nm.data), rtol=1e-12, atol=1e-10)
    out = jm.log_joint(theta, random_z(jm, (4,), rng))
    out += 1.0  # outputs are fresh writable numpy arrays
    assert jm.per_unit == nm.per_unit


@pytest.mark.parametrize("name", sorted(CASES))
def test_exact_gradients_match_central_differences_of_the_numpy_path(name):
    rng = np.random.default_rng(2)
    jm, nm = build(name), build(name, jit=False)
    theta = random_theta(jm, rng)
    z = random_z(jm, (2, 3), rng)
    exact = jm.grad_params(theta, z)
    elementwise = [n for n in jm.param_names if jm.params[n].elementwise]  # differences stay in the set
    fd = nm.grad_params({**theta}, z) if len(elementwise) == len(jm.param_names) else None
    for n in jm.param_names:
        assert exact[n].shape == (2, 3) + jm.params[n].shape
    if fd is not None:
        for n in elementwise:
            np.testing.assert_allclose(exact[n], fd[n], rtol=1e-5, atol=1e-5)
    cont = [n for n in jm.latent_names if not jm.latents[n].is_discrete]
    if cont:
        ge, gf = jm.grad_latents(theta, z), nm.grad_latents(theta, z)
        for n in cont:
            np.testing.assert_allclose(ge[n], gf[n], rtol=1e-5, atol=1e-5)
    # scores and the Hessian in the unconstrained coordinates
    u = jm.to_unconstrained(theta)

    def per_draw(v):
        return nm.log_joint_sum(nm.from_unconstrained(v), z, 2)

    np.testing.assert_allclose(jm.scores_fn(theta, z, jm.data), central_difference(per_draw, u, 1e-6),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jm.hessian(theta, z), nm.hessian(theta, z), rtol=1e-3, atol=1e-3)
    if jm.unit_scores_fn is not None:
        per_unit = central_difference(lambda v: nm.log_joint(nm.from_unconstrained(v), z), u, 1e-6)
        np.testing.assert_allclose(jm.unit_scores_fn(theta, z, jm.data), per_unit, rtol=1e-5, atol=1e-5)


def test_a_factor_is_the_same_term_as_the_observation_it_writes_out():
    rng = np.random.default_rng(3)
    fm = build("factor")
    om = mcem.model(observe_twin_fn)(**CASES["factor"][1])
    theta = random_theta(fm, rng)
    z = random_z(fm, (4,), rng)
    np.testing.assert_allclose(fm.log_joint(theta, z), om.log_joint(theta, z), rtol=1e-12)
    assert set(fm.conditionals) == set(om.conditionals) == {"u"}
    nf = build("factor", jit=False)
    np.testing.assert_allclose(nf.log_joint(theta, z), om.log_joint(theta, z), rtol=1e-12)


def plain_numpy_fn(m, y):
    mu = m.param("mu", init=0.0)
    v = m.latent("v", dist.Normal(mu, 1.0), shape=y.shape[0], unit=True)
    m.observe("y", dist.Normal(np.exp(v) - 1.0, 1.0), y, unit_index=np.arange(y.shape[0]))


def test_code_jax_cannot_trace_falls_back_to_numpy_with_one_warning_naming_the_line():
    y = np.linspace(-1, 1, 6)
    with pytest.warns(UserWarning, match=r"cannot be compiled by JAX at .*test_compiler.py:\d+ in plain_numpy_fn "
                                          r"\(m.observe.*np.exp") as rec:
        model = mcem.model(plain_numpy_fn)(y=y)
    assert len([w for w in rec if "cannot be compiled" in str(w.message)]) == 1
    assert "m.np.exp" in str(rec[0].message)
    assert model.grad_params_fn is None and model.compiled_by.startswith("numpy")
    z = {"v": np.zeros((2, 6))}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = mcem.model(plain_numpy_fn, jit=False)(y=y)
    np.testing.assert_allclose(model.log_joint(model.default_theta(), z), quiet.log_joint(quiet.default_theta(), z))


def test_import_mcem_does_not_import_jax_nor_does_a_model_written_without_the_language():
    # (ArviZ, which the E-step diagnostics use, imports JAX itself when it is installed.)
    code = ("import sys, numpy as np, mcem\n"
            "from mcem.models import glmm_model\n"
            "d = glmm_model.simulate_random_intercept(5, 3, [0.2], 0.5, 'logit', rng=1)\n"
            "m = glmm_model.random_intercept_glmm(d['X'], d['y'], d['group'])\n"
            "z = m.init_latents(np.random.default_rng(0), (4, 3))\n"
            "m.log_joint_sum(m.default_theta(), z, 2); m.grad_params(m.default_theta(), z)\n"
            "print('jax._src' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_the_users_global_jax_configuration_is_left_alone():
    jax = pytest.importorskip("jax")
    before = bool(jax.config.jax_enable_x64)
    model = build("glmm")
    lp = model.log_joint_sum(model.default_theta(), random_z(model, (2,), np.random.default_rng(0)), 1)
    assert lp.dtype == np.float64
    assert bool(jax.config.jax_enable_x64) == before
    # float64 even so: a difference below float32 resolution survives
    th = model.default_theta()
    th2 = {**th, "sigma": np.asarray(1.0 + 1e-12)}
    z = random_z(model, (1,), np.random.default_rng(5))
    assert model.log_joint_sum(th2, z, 1)[0] != model.log_joint_sum(th, z, 1)[0]


def test_a_compiled_model_pickles_as_its_function_and_data():
    model = mcem.model(glmm_fn)(**CASES["glmm"][1])
    back = pickle.loads(pickle.dumps(model))
    z = random_z(model, (3,), np.random.default_rng(4))
    th = model.default_theta()
    np.testing.assert_array_equal(back.log_joint(th, z), model.log_joint(th, z))
    assert back.grad_params_fn is not None


def test_growing_draw_counts_compile_a_few_bucket_sizes():
    model = build("glmm")
    jm = model.grad_params_fn.__self__
    th = model.default_theta()
    rng = np.random.default_rng(6)
    for draws in range(1, 70, 3):  # 23 different batch sizes
        model.log_joint_sum(th, random_z(model, (4, draws), rng), 2)
    f = jm._jitted[("total",)]
    assert f._cache_size() <= 1 + int(np.ceil(np.log2(4 * 70))), f._cache_size()


def test_describe_names_the_sites_the_units_and_the_derivatives():
    text = build("poisson").describe()
    assert "evaluated by: JAX" in text
    assert "observe  y: Poisson, shape (60,) (rows filed under the units of u)" in text
    assert "closed form: mu, sigma from the mean and second moment of site 'u'" in text
    assert "numerical (L-BFGS-B, exact gradient): ['beta']" in text
    assert "latents ['u']: exact gradient" in text
    assert "finite differences" in build("poisson", jit=False).describe()


def joint_fn(m, y):
    mu = m.param("mu", init=0.0)
    x = m.latent("x", dist.Normal(mu, 1.0), shape=y.shape[0])  # one joint block, no units
    m.observe("y", dist.Normal(x, 1.0), y)


def test_auto_takes_mala_for_a_joint_continuous_latent_and_it_mixes_better_than_rwm():
    y = np.linspace(-2, 2, 30)
    model = mcem.model(joint_fn)(y=y)
    auto = EStep(model, n_chains=4)
    assert isinstance(auto.kernel.kernels["x"], MALA)
    theta = {"mu": np.asarray(0.5)}
    post_mean, post_sd = (0.5 + y) / 2, np.sqrt(0.5)  # x_i | y ~ N((mu + y_i) / 2, 1/2)
    found = {}
    for name, es in (("mala", auto), ("rwm", EStep(model, sampler="rwm", n_chains=4))):
        rng = np.random.default_rng(3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mcem.MonteCarloWarning)  # RWM's chains disagree: the point
            res = es.run(theta, es.init(theta, rng), 400, rng, burn=300)
        x = res.draws["x"]  # (chain, draw, 30)
        found[name] = np.median([ess(x[..., i]) for i in range(30)])
        if name == "mala":  # the draws are from the posterior: means within 5 Monte Carlo SEs
            se = post_sd / np.sqrt(found[name])
            assert np.all(np.abs(x.mean(axis=(0, 1)) - post_mean) < 5 * se)
    assert found["mala"] > 3 * found["rwm"], found  # measured: about 18x (at twice the cost per step)


def test_saem_on_partial_statistics_resumes_bit_for_bit(tmp_path):
    model = build("glmm")
    assert model.partial_mstep is not None  # sigma in closed form, beta numerical
    opts = dict(method="saem", rng=0, burn_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (mcem.MonteCarloWarning, mcem.ConvergenceWarning))
        whole = mcem.fit(model, max_iter=12, **opts)
        mcem.fit(model, max_iter=6, checkpoint=str(tmp_path / "ck"), checkpoint_every=0, **opts)
        again = resume(str(tmp_path / "ck"), model, max_iter=12)
    for k in whole.params:
        np.testing.assert_array_equal(whole.params[k], again.params[k])

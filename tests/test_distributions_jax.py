"""Every distribution traced by JAX: log_prob with JAX parameters or values equals the numpy
path, also under jax.jit, and jax.grad equals central finite differences of the numpy path."""

import subprocess
import sys

import numpy as np
import pytest

from _mc import fd_grad

import mcem.distributions as D

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
from mcem._jax import x64  # noqa: E402

RTOL = 1e-12
TRIL = np.tril(np.ones((3, 3)))


def _pos(r, shape, lo=0.5, hi=3.0):
    return r.uniform(lo, hi, size=shape)


def _spd(A):
    """A A^T + I (batched), with numpy or JAX arrays."""
    return A @ A.swapaxes(-1, -2) + np.eye(A.shape[-1])


def _simplex(w):
    return w / w.sum(axis=-1, keepdims=True)


class Case:
    """``make(p)`` builds the distribution from the dict ``p`` of differentiable parameters
    (numpy or JAX arrays); ``params(r)`` and ``value(r)`` draw them and a value."""

    def __init__(self, make, params, value, value_grad=False):
        self.make, self.params, self.value, self.value_grad = make, params, value, value_grad


CASES = {
    "Normal": Case(
        lambda p: D.Normal(p["loc"], p["scale"]),
        lambda r: dict(loc=r.normal(size=3), scale=_pos(r, 3)),
        lambda r: 2 * r.normal(size=(4, 3)), value_grad=True),
    "HalfNormal": Case(
        lambda p: D.HalfNormal(p["scale"]),
        lambda r: dict(scale=_pos(r, 3)),
        lambda r: np.abs(r.normal(size=(4, 3))) + 0.01, value_grad=True),
    "LogNormal": Case(
        lambda p: D.LogNormal(p["loc"], p["scale"]),
        lambda r: dict(loc=r.normal(size=3), scale=_pos(r, 3)),
        lambda r: np.exp(r.normal(size=(4, 3))), value_grad=True),
    "StudentT": Case(
        lambda p: D.StudentT(p["df"], p["loc"], p["scale"]),
        lambda r: dict(df=_pos(r, 3, 1, 8), loc=r.normal(size=3), scale=_pos(r, 3)),
        lambda r: 2 * r.normal(size=(4, 3)), value_grad=True),
    "Uniform": Case(
        lambda p: D.Uniform(p["low"], p["high"]),
        lambda r: dict(low=-_pos(r, 3, 1, 2), high=_pos(r, 3, 1, 2)),
        lambda r: r.uniform(-0.9, 0.9, size=(4, 3))),
    "TruncatedNormal": Case(
        lambda p: D.TruncatedNormal(p["loc"], p["scale"], p["low"], p["high"]),
        lambda r: dict(loc=r.normal(size=3), scale=_pos(r, 3), low=-_pos(r, 3, 1, 2),
                       high=_pos(r, 3, 1, 2)),
        lambda r: r.uniform(-0.9, 0.9, size=(4, 3)), value_grad=True),
    "TruncatedNormal (half-lines, upper tail)": Case(
        lambda p: D.TruncatedNormal(p["loc"], p["scale"], np.array([-np.inf, 0.5, 6.0]),
                                    np.array([1.0, np.inf, 9.0])),
        lambda r: dict(loc=np.array([0.3, -0.2, 0.1]), scale=np.array([1.0, 0.7, 1.1])),
        lambda r: np.array([[0.2, 0.9, 6.5], [-3.0, 4.0, 8.9]]), value_grad=True),
    "Gamma": Case(
        lambda p: D.Gamma(p["concentration"], p["rate"]),
        lambda r: dict(concentration=_pos(r, 3, 0.3, 5), rate=_pos(r, 3)),
        lambda r: r.exponential(2.0, size=(4, 3)), value_grad=True),
    "Exponential": Case(
        lambda p: D.Exponential(p["rate"]),
        lambda r: dict(rate=_pos(r, 3)),
        lambda r: r.exponential(2.0, size=(4, 3)), value_grad=True),
    "InverseGamma": Case(
        lambda p: D.InverseGamma(p["concentration"], p["rate"]),
        lambda r: dict(concentration=_pos(r, 3, 0.3, 5), rate=_pos(r, 3)),
        lambda r: r.exponential(2.0, size=(4, 3)) + 0.05, value_grad=True),
    "Beta": Case(
        lambda p: D.Beta(p["a"], p["b"]),
        lambda r: dict(a=_pos(r, 3, 0.3, 5), b=_pos(r, 3, 0.3, 5)),
        lambda r: r.uniform(0.01, 0.99, size=(4, 3)), value_grad=True),
    "Bernoulli (probs)": Case(
        lambda p: D.Bernoulli(p["probs"]),
        lambda r: dict(probs=r.uniform(0.05, 0.95, size=3)),
        lambda r: r.integers(0, 2, size=(4, 3))),
    "Bernoulli (logits)": Case(
        lambda p: D.Bernoulli(logits=p["logits"]),
        lambda r: dict(logits=np.array([-30.0, 0.4, 45.0])),
        lambda r: r.integers(0, 2, size=(4, 3))),
    "Binomial (probs)": Case(
        lambda p: D.Binomial(12, p["probs"]),
        lambda r: dict(probs=r.uniform(0.05, 0.95, size=3)),
        lambda r: r.integers(0, 13, size=(4, 3))),
    "Binomial (logits)": Case(
        lambda p: D.Binomial(np.array([5, 20, 9]), logits=p["logits"]),
        lambda r: dict(logits=np.array([-40.0, 0.3, 35.0])),
        lambda r: r.integers(0, 6, size=(4, 3))),
    "Poisson (rate)": Case(
        lambda p: D.Poisson(p["rate"]),
        lambda r: dict(rate=_pos(r, 3, 0.5, 20)),
        lambda r: r.poisson(6.0, size=(4, 3))),
    "Poisson (log_rate)": Case(
        lambda p: D.Poisson(log_rate=p["log_rate"]),
        lambda r: dict(log_rate=np.array([-20.0, 0.5, 3.0])),
        lambda r: r.poisson(6.0, size=(4, 3))),
    "NegativeBinomial (mean)": Case(
        lambda p: D.NegativeBinomial(p["concentration"], p["mean"]),
        lambda r: dict(concentration=_pos(r, 3, 0.5, 5), mean=_pos(r, 3, 0.5, 20)),
        lambda r: r.poisson(6.0, size=(4, 3))),
    "NegativeBinomial (log_mean)": Case(
        lambda p: D.NegativeBinomial(p["concentration"], log_mean=p["log_mean"]),
        lambda r: dict(concentration=_pos(r, 3, 0.5, 5), log_mean=np.array([-15.0, 1.0, 30.0])),
        lambda r: r.poisson(6.0, size=(4, 3))),
    "Categorical (probs)": Case(
        lambda p: D.Categorical(_simplex(p["w"])),
        lambda r: dict(w=_pos(r, (3, 4))),
        lambda r: r.integers(0, 4, size=(5, 3))),
    "Categorical (logits)": Case(
        lambda p: D.Categorical(logits=p["logits"]),
        lambda r: dict(logits=r.normal(size=4)),
        lambda r: r.integers(0, 4, size=(5,))),
    "Multinomial (probs)": Case(
        lambda p: D.Multinomial(7, _simplex(p["w"])),
        lambda r: dict(w=_pos(r, (2, 3))),
        lambda r: r.multinomial(7, np.ones(3) / 3, size=(4, 2))),
    "Multinomial (logits)": Case(
        lambda p: D.Multinomial(7, logits=p["logits"]),
        lambda r: dict(logits=r.normal(size=(2, 3))),
        lambda r: r.multinomial(7, np.ones(3) / 3, size=(4, 2))),
    "Dirichlet": Case(
        lambda p: D.Dirichlet(p["concentration"]),
        lambda r: dict(concentration=_pos(r, (2, 3), 0.5, 4)),
        lambda r: r.dirichlet(np.ones(3), size=(4, 2))),
    "MultivariateNormal (covariance_matrix)": Case(
        lambda p: D.MultivariateNormal(p["loc"], _spd(p["A"])),
        lambda r: dict(loc=r.normal(size=3), A=r.normal(size=(3, 3))),
        lambda r: r.normal(size=(5, 3)), value_grad=True),
    "MultivariateNormal (scale_tril)": Case(
        lambda p: D.MultivariateNormal(p["loc"], scale_tril=p["L"] * TRIL),
        lambda r: dict(loc=r.normal(size=3), L=np.tril(r.normal(size=(3, 3)), -1) + 2 * np.eye(3)),
        lambda r: r.normal(size=(5, 3)), value_grad=True),
    "MultivariateNormal (precision_matrix)": Case(
        lambda p: D.MultivariateNormal(p["loc"], precision_matrix=_spd(p["A"])),
        lambda r: dict(loc=r.normal(size=3), A=r.normal(size=(3, 3))),
        lambda r: r.normal(size=(5, 3)), value_grad=True),
    "MultivariateNormal (batched matrices)": Case(
        lambda p: D.MultivariateNormal(p["loc"], _spd(p["A"])),
        lambda r: dict(loc=r.normal(size=(2, 3)), A=r.normal(size=(2, 3, 3))),
        lambda r: r.normal(size=(4, 2, 3)), value_grad=True),
    "MultivariateNormal (batched scale_tril)": Case(
        lambda p: D.MultivariateNormal(p["loc"], scale_tril=p["L"] * TRIL),
        lambda r: dict(loc=r.normal(size=3),
                       L=np.tril(r.normal(size=(2, 3, 3)), -1) + 1.5 * np.eye(3)),
        lambda r: r.normal(size=(4, 2, 3)), value_grad=True),
}


def _draw(name):
    r = np.random.default_rng(list(CASES).index(name))
    case = CASES[name]
    return case, case.params(r), case.value(r)


def _jit(f, *args):
    """``jax.jit(f)(*args)``; on CPU compiled without the backend's slower optimisations (the
    compile time dominates these tests; the arithmetic is the same)."""
    opts = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return jax.jit(f).lower(*args).compile(compiler_options=opts)(*args)


def _jnp(p):
    return {k: jnp.asarray(v) for k, v in p.items()}


def _close(actual, expected, rtol=RTOL):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_every_distribution_has_a_case():
    covered = {type(CASES[n].make(CASES[n].params(np.random.default_rng(0)))).__name__ for n in CASES}
    # chain distributions have their JAX tests in tests/test_distributions_chains.py
    listed = {n for n in D.__all__ if isinstance(getattr(D, n), type) and n != "Distribution"
              and issubclass(getattr(D, n), D.Distribution) and not getattr(getattr(D, n), "is_chain", False)}
    assert listed <= covered, f"distributions without a JAX test: {sorted(listed - covered)}"


@pytest.mark.parametrize("name", list(CASES))
def test_jax_log_prob_and_grad_equal_the_numpy_path_under_jit(name):
    case, p, x = _draw(name)
    lp = case.make(p).log_prob(x)
    assert isinstance(lp, np.ndarray) and np.all(np.isfinite(lp))

    def traced(q, v):
        d = case.make(q)
        assert d._traced and d.batch_shape == case.make(p).batch_shape
        # traced parameters and numpy data, numpy parameters and a traced value
        lps = d.log_prob(x), case.make(p).log_prob(v)
        grad = jax.grad(lambda q: jnp.sum(case.make(q).log_prob(x)))(q)
        # the value as a latent variable: the derivative in the value
        grad_v = jax.grad(lambda v: jnp.sum(case.make(p).log_prob(v)))(v) if case.value_grad else 0
        return lps, grad, grad_v

    with x64():
        lps, grad, grad_v = _jit(traced, _jnp(p), jnp.asarray(x))
    for out in lps:
        assert out.dtype == jnp.float64
        _close(out, lp)

    def total_np(q):
        return float(np.sum(case.make(q).log_prob(x)))

    for k in p:
        g = np.asarray(grad[k])
        assert np.all(np.isfinite(g)), (k, g)
        np.testing.assert_allclose(g, fd_grad(total_np, p, k), rtol=1e-6, atol=1e-6, err_msg=k)
    if case.value_grad:
        fd = fd_grad(lambda q: float(np.sum(case.make(p).log_prob(q["x"]))), {"x": x}, "x")
        np.testing.assert_allclose(np.asarray(grad_v), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["Normal", "Poisson (log_rate)", "Categorical (probs)",
                                  "MultivariateNormal (batched scale_tril)"])
def test_jax_arrays_outside_jit(name):
    case, p, x = _draw(name)
    with x64():
        out = case.make(_jnp(p)).log_prob(x)
    assert isinstance(out, jax.Array)
    _close(out, case.make(p).log_prob(x))


# values outside the support next to values inside: the caller masks them out with a where;
# the derivative must stay finite (the inner where of the double-where trick)
MASKED = {
    "LogNormal": (lambda s: D.LogNormal(0.2, s), [0.5, -1.0, 0.0]),
    "Gamma": (lambda s: D.Gamma(s, 1.5), [0.5, -1.0, 0.0]),
    "InverseGamma": (lambda s: D.InverseGamma(s, 1.5), [0.5, -1.0, 0.0]),
    "Beta": (lambda s: D.Beta(s, 2.0), [0.5, -1.0, 1.0]),
    "Poisson": (lambda s: D.Poisson(s), [2.0, -1.0, 0.5]),
    "Poisson (log_rate)": (lambda s: D.Poisson(log_rate=s), [2.0, -1.0, 0.5]),
    "NegativeBinomial": (lambda s: D.NegativeBinomial(s, 2.0), [2.0, -1.0, 0.5]),
    "Binomial": (lambda s: D.Binomial(4, logits=s), [2.0, -1.0, 7.0]),
    "TruncatedNormal": (lambda s: D.TruncatedNormal(0.0, s, 0.0), [0.5, -1.0, np.inf]),
    "Dirichlet": (lambda s: D.Dirichlet(s * np.array([1.0, 0.0]) + np.array([0.0, 2.0])), [[0.3, 0.7], [-0.5, 1.5]]),
    "Multinomial": (lambda s: D.Multinomial(3, logits=s * np.array([1.0, -1.0])), [[1, 2], [-1, 4]]),
}


@pytest.mark.parametrize("name", list(MASKED))
def test_grad_is_finite_next_to_masked_values_outside_the_support(name):
    make, values = MASKED[name]
    v = np.asarray(values, dtype=float)
    with x64():
        def f(s):
            lp = make(s).log_prob(v)
            inside = lp > -jnp.inf
            return inside, jax.grad(lambda s: jnp.sum(jnp.where(inside, make(s).log_prob(v), 0.0)))(s)

        inside, g = _jit(f, jnp.asarray(1.3))
    assert inside[0] and not np.any(inside[1:])
    # the oracle: the numpy derivative of the one value inside the support
    lp0 = lambda s: float(np.sum(make(s).log_prob(v[:1])))  # noqa: E731
    assert np.isfinite(g) and g == pytest.approx((lp0(1.3 + 1e-6) - lp0(1.3 - 1e-6)) / 2e-6, rel=1e-6, abs=1e-8)


# a traced parameter and values outside the support: -inf as on the numpy path
OUTSIDE = {
    "Normal": (lambda s: D.Normal(0.0, s), [0.5, -1.0]),
    "Uniform": (lambda s: D.Uniform(-s, s), [0.5, -2.0, 1.5]),
    "HalfNormal": (lambda s: D.HalfNormal(s), [0.5, -0.1]),
    "Exponential": (lambda s: D.Exponential(s), [0.5, -0.1]),
    "StudentT": (lambda s: D.StudentT(s), [0.5, 3.0]),
    "Bernoulli": (lambda s: D.Bernoulli(logits=s), [1, 2, -1, 0.5]),
    "Bernoulli (probs)": (lambda s: D.Bernoulli(s / 2), [0, 2, -1, 0.5]),
    "Binomial (probs)": (lambda s: D.Binomial(5, s / 2), [2, 6, -1, 2.5]),
    "Categorical": (lambda s: D.Categorical(logits=s * np.array([1.0, 0.0, -1.0])),
                    [0, 3, -1, 1.5, np.nan]),
    "TruncatedNormal": (lambda s: D.TruncatedNormal(0.0, s, -1.0, 2.0), [0.5, -1.5, 2.5]),
    "MultivariateNormal": (lambda s: D.MultivariateNormal(np.zeros(2), s * np.eye(2)),
                           [[0.5, 1.0], [0.0, -1.0]]),
}


@pytest.mark.parametrize("name", list(OUTSIDE))
def test_values_outside_the_support_are_minus_inf_on_the_jax_path(name):
    make, values = OUTSIDE[name]
    v = np.asarray(values)
    expected = make(1.3).log_prob(v)
    with x64():
        out = np.asarray(_jit(lambda s: make(s).log_prob(v), jnp.asarray(1.3)))
    np.testing.assert_array_equal(out == -np.inf, expected == -np.inf)
    _close(out[np.isfinite(out)], expected[np.isfinite(expected)])


def test_traced_parameters_skip_value_checks_but_not_structural_ones():
    with x64():
        # a negative scale is not refused while tracing (its value is unknown): log(-1) is NaN
        out = jax.jit(lambda s: D.Normal(0.0, s).log_prob(0.0))(-1.0)
        assert np.isnan(out)
        with pytest.raises(ValueError, match="do not broadcast"):
            jax.jit(lambda s: D.Normal(jnp.zeros(2), s).log_prob(0.0))(jnp.ones(3))
        with pytest.raises(ValueError, match="exactly one of probs or logits, got both"):
            jax.jit(lambda s: D.Bernoulli(s, logits=s).log_prob(1))(0.3)
        with pytest.raises(ValueError, match=r"scale_tril must have shape \(\.\.\., 2, 2\)"):
            jax.jit(lambda L: D.MultivariateNormal(jnp.zeros(2), scale_tril=L).log_prob(0.0))(
                jnp.eye(3))
        # a numpy parameter next to a traced one is still checked
        with pytest.raises(ValueError, match="Binomial: total_count must be a non-negative integer"):
            jax.jit(lambda s: D.Binomial(2.5, logits=s).log_prob(1))(0.3)
        # repr names a traced parameter by its shape
        seen = []
        jax.jit(lambda s: seen.append(repr(D.Normal(s, 1.0))) or s)(jnp.zeros(2))
        assert seen == ["Normal(loc=<traced (2,)>, scale=1.0, batch_shape=(2,))"]


def test_a_list_of_traced_parameters_is_one_jax_array():
    with x64():
        f = jax.jit(lambda a, b: D.Normal([a, b], 1.0).log_prob(np.array([0.5, -0.5])))
        _close(f(0.1, 0.2), D.Normal([0.1, 0.2], 1.0).log_prob(np.array([0.5, -0.5])))


def test_logits_far_out_are_stable_on_the_jax_path():
    logits = np.array([800.0, -800.0, 40.0, -40.0])
    with x64():
        b, bn = _jit(lambda t: (D.Bernoulli(logits=t).log_prob(1),
                                D.Binomial(10, logits=t).log_prob(0)), jnp.asarray(logits))
        g = _jit(jax.grad(lambda t: jnp.sum(D.Binomial(10, logits=t).log_prob(np.array([3, 3])))),
                 jnp.array([800.0, -800.0]))
    np.testing.assert_allclose(b, [0.0, -800.0, -4.248354255291589e-18, -40.0],
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bn, [-8000.0, 0.0, -400.0, -4.248354255291589e-17],
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g, [-7.0, 3.0])  # k - n * sigmoid(logits)


def test_importing_and_using_distributions_does_not_import_jax():
    code = (
        "import sys, numpy as np, mcem.distributions as D\n"
        "D.TruncatedNormal(0.0, 1.0, 0.0).log_prob(np.ones(3))\n"
        "D.MultivariateNormal(np.zeros(2), scale_tril=np.eye(2)).log_prob(np.ones(2))\n"
        "D.NegativeBinomial(2.0, log_mean=1.0).log_prob(3); D.Binomial(3, logits=0.1).log_prob(1)\n"
        "assert 'jax' not in sys.modules, 'jax imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

"""Constraints traced by JAX: the same numbers as numpy, exact Jacobians, jit, grad and hessian."""

import subprocess
import sys

import numpy as np
import pytest

from mcem import _jax
from mcem import constraints as C

pytest.importorskip("jax")
jax = _jax.jax()
jnp = _jax.jax_namespace().np

BIJECTIVE = [
    C.real(shape=(3,)),
    C.positive(shape=(2, 2)),
    C.interval(-1.0, 2.5, shape=(4,)),
    C.unit_interval(shape=2),
    C.simplex(4, batch=2),
    C.positive_definite(3, batch=2),
    C.lower_cholesky(3, batch=2),
    C.corr_cholesky(4),
    C.corr_cholesky(3, batch=2),
]


def _free_coords(c, x):
    """The independent coordinates of a constrained value, flattened (numpy or JAX)."""
    if isinstance(c, C.PositiveDefinite | C.LowerCholesky):
        r, k = np.tril_indices(c.d)
        return x[..., r, k].reshape(-1)
    if isinstance(c, C.CorrCholesky):
        r, k = np.tril_indices(c.d, -1)
        return x[..., r, k].reshape(-1)
    if isinstance(c, C.Simplex):
        return x[..., :-1].reshape(-1)
    return x.reshape(-1)


def _u(c, seed, batch=()):
    return 0.8 * np.random.default_rng(seed).normal(size=batch + c.unconstrained_shape)


def _close(actual, desired, tol=1e-12):
    np.testing.assert_allclose(np.asarray(actual), desired, rtol=tol, atol=tol)


@pytest.mark.parametrize("c", BIJECTIVE, ids=repr)
def test_jax_gives_the_numbers_of_numpy(c):
    u = _u(c, 0, batch=(2, 3))
    x = c.forward(u)
    assert type(x) is np.ndarray and type(c.log_abs_det_jacobian(u)) is np.ndarray
    with _jax.x64():
        xj = c.forward(jnp.asarray(u))
        assert _jax.is_jax(xj) and xj.dtype == jnp.float64 and xj.shape == x.shape
        _close(xj, x)
        _close(c.inverse(jnp.asarray(x)), c.inverse(x))
        ladj = c.log_abs_det_jacobian(jnp.asarray(u))
        assert ladj.shape == (2, 3)
        _close(ladj, c.log_abs_det_jacobian(u))
        if c.elementwise:
            g = np.random.default_rng(1).normal(size=u.shape)
            _close(c.elementwise_log_abs_det_jacobian(jnp.asarray(u)), c.elementwise_log_abs_det_jacobian(u))
            _close(c.log_density_grad(jnp.asarray(u), jnp.asarray(g)), c.log_density_grad(u, g))


@pytest.mark.parametrize("c", BIJECTIVE, ids=repr)
def test_the_jacobian_of_jax_is_the_log_abs_det_jacobian(c):
    # oracle: log|det| of JAX's exact Jacobian from u to the free coordinates of forward(u)
    with _jax.x64():
        jac = jax.jit(jax.jacobian(lambda v: _free_coords(c, c.forward(v.reshape(c.unconstrained_shape)))))
    for u0 in (_u(c, 2), np.zeros(c.unconstrained_shape)):
        with _jax.x64():
            sign, logdet = np.linalg.slogdet(np.asarray(jac(jnp.asarray(u0.ravel()))))
        assert sign != 0
        np.testing.assert_allclose(c.log_abs_det_jacobian(u0), logdet, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("c", BIJECTIVE, ids=repr)
def test_jit_grad_and_hessian(c):
    u = _u(c, 3, batch=(2,))
    x = c.forward(u)
    w = np.random.default_rng(4).normal(size=x.shape[1:])

    def phi(v):  # a smooth scalar of the constrained value and the log-Jacobian (numpy or JAX)
        return (w * c.forward(v)).sum() + c.log_abs_det_jacobian(v).sum()

    with _jax.x64():
        xj, uj, ladj = jax.jit(lambda v, y: (c.forward(v), c.inverse(y), c.log_abs_det_jacobian(v)))(
            jnp.asarray(u), jnp.asarray(x))
        _close(xj, x)
        _close(uj, c.inverse(x))
        _close(ladj, c.log_abs_det_jacobian(u))
        grad_hess = jax.jit(lambda v: (jax.grad(phi)(v), jax.hessian(phi)(v)))

        def grad(v):
            return np.asarray(grad_hess(jnp.asarray(v))[0]).ravel()

    n, h = c.unconstrained_size, 1e-5
    for u0 in (u[0], np.zeros(c.unconstrained_shape)):  # a random point and the default
        with _jax.x64():
            g, H = (np.asarray(a) for a in grad_hess(jnp.asarray(u0)))
        g, H = g.ravel(), H.reshape(n, n)
        E = np.eye(n).reshape((n,) + u0.shape)
        # oracles: central differences of the numpy function, and of the (checked) gradient
        fd = np.array([(phi(u0 + h * e) - phi(u0 - h * e)) / (2 * h) for e in E])
        np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-7)
        with _jax.x64():
            fd2 = np.array([(grad(u0 + h * e) - grad(u0 - h * e)) / (2 * h) for e in E])
        np.testing.assert_allclose(H, fd2.T, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(H, H.T, atol=1e-12)


def test_numpy_results_and_types_are_unchanged_by_jax_use():
    c = C.positive(shape=3)
    u = np.array([0.1, -2.0, 3.0])
    with _jax.x64():
        c.forward(jnp.asarray(u))
    ladj = c.elementwise_log_abs_det_jacobian(u)
    assert type(ladj) is np.ndarray and ladj is not u and np.array_equal(ladj, u)  # a copy
    # integer input becomes float on both paths
    with _jax.x64():
        assert C.real(shape=2).forward(jnp.asarray([1, 2])).dtype == jnp.float64
    assert C.real(shape=2).forward([1, 2]).dtype == np.float64


def test_importing_the_constraints_does_not_import_jax():
    code = ("import sys, mcem.constraints as C, numpy as np; C.corr_cholesky(3).forward(np.zeros(3)); "
            "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

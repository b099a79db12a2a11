"""Constraints: round trips, membership, and log-Jacobians against finite differences."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcem import constraints as C

CASES = [
    C.real(shape=(3,)),
    C.positive(shape=(2, 2)),
    C.interval(-1.0, 2.5, shape=(4,)),
    C.unit_interval(shape=2),
    C.simplex(4),
    C.simplex(3, batch=2),
    C.positive_definite(3),
    C.positive_definite(2, batch=3),
]


def _free_coords(c, x):
    """The independent coordinates of a constrained value (what the bijection really maps to)."""
    if isinstance(c, C.PositiveDefinite):
        r, k = np.tril_indices(c.d)
        return x[..., r, k].ravel()
    if isinstance(c, C.Simplex):
        return x[..., :-1].ravel()
    return x.ravel()


@pytest.mark.parametrize("c", CASES, ids=repr)
def test_round_trip_and_membership(c):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(5,) + c.unconstrained_shape)
    x = c.forward(u)
    assert x.shape == (5,) + c.shape
    assert np.all(c.contains(x))
    np.testing.assert_allclose(c.inverse(x), u, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(c.forward(c.inverse(c.default())), c.default(), atol=1e-12)
    assert c.check(c.default())


@pytest.mark.parametrize("c", CASES, ids=repr)
def test_log_abs_det_jacobian_matches_finite_differences(c):
    rng = np.random.default_rng(1)
    u0 = 0.7 * rng.normal(size=c.unconstrained_shape)
    n = c.unconstrained_size

    def f(v):
        return _free_coords(c, c.forward(v.reshape(c.unconstrained_shape)))

    h = 1e-6
    J = np.empty((n, n))
    for k in range(n):
        e = np.zeros(n)
        e[k] = h
        J[:, k] = (f(u0.ravel() + e) - f(u0.ravel() - e)) / (2 * h)
    expected = np.linalg.slogdet(J)[1]
    np.testing.assert_allclose(c.log_abs_det_jacobian(u0), expected, rtol=1e-6, atol=1e-6)
    # batched evaluation gives one value per batch element
    ub = np.stack([u0, 0.5 * u0])
    assert c.log_abs_det_jacobian(ub).shape == (2,)
    np.testing.assert_allclose(c.log_abs_det_jacobian(ub)[0], c.log_abs_det_jacobian(u0))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-30, 30, allow_nan=False), min_size=1, max_size=6),
    st.sampled_from(["real", "positive", "interval", "simplex"]),
)
def test_round_trip_property(values, kind):
    u = np.array(values)
    c = {
        "real": C.real(shape=u.shape),
        "positive": C.positive(shape=u.shape),
        "interval": C.interval(-2.0, 3.0, shape=u.shape),
        "simplex": C.simplex(u.size + 1),
    }[kind]
    if kind in ("positive", "interval"):
        u = np.clip(u, -15, 15)  # keep exp/logistic away from exact 0/1 in double precision
    x = c.forward(u)
    assert c.check(x)
    np.testing.assert_allclose(c.inverse(x), u, rtol=1e-6, atol=1e-6)


def test_membership_rejects_outside():
    assert not C.positive(shape=2).check([1.0, 0.0])
    assert not C.interval(0, 1).check(1.0)
    assert not C.simplex(3).check([0.5, 0.6, -0.1])
    assert not C.positive_definite(2).check([[1.0, 2.0], [2.0, 1.0]])
    assert not C.positive_definite(2).check([[1.0, 0.5], [0.4, 1.0]])
    assert not C.real.check(np.nan)
    assert C.integer_interval(0, 2).check([0, 1, 2]) and not C.integer_interval(0, 2).check([3])


def test_bad_constraint_arguments():
    with pytest.raises(ValueError, match="low < high"):
        C.interval(1.0, 1.0)
    with pytest.raises(ValueError, match="simplex"):
        C.simplex(0)
    with pytest.raises(ValueError, match="positive_definite"):
        C.positive_definite(0)
    with pytest.raises(TypeError, match="shape"):
        C.real(shape="a")
    with pytest.raises(TypeError, match="does not take a shape"):
        C.simplex(3)(shape=2)

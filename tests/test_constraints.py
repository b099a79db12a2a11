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


# ----------------------------------------------------------------------------- edges
@pytest.mark.parametrize("c", CASES, ids=repr)
def test_defaults_and_random_interior_points_are_not_at_the_edge(c):
    assert c.edge(c.default()) == []
    u = np.random.default_rng(3).normal(size=(50,) + c.unconstrained_shape)
    for x in c.forward(u):
        assert c.edge(x) == [], x
        assert not np.any(c.at_edge(x))


def test_positive_edge_is_relative_along_the_first_axis_or_absolute():
    # a collapsed component: its variances ~1e-14 of the other components' in the same feature
    cov = np.array([[4e-14, 6e-14], [0.94, 0.89], [1.2, 0.7]])
    edge = C.positive(shape=(3, 2)).edge(cov)
    assert [i for i, _ in edge] == [(0, 0), (0, 1)]
    assert edge[0][1] == "4e-14, 3.3e-14 times the largest value at the same position along the first axis (1.2)"
    np.testing.assert_array_equal(C.positive(shape=(3, 2)).at_edge(cov), [[True, True], [False] * 2, [False] * 2])
    # features on very different scales are compared within their own column: no false alarm
    unscaled = np.array([[4e8, 2e-3], [3e8, 3e-3]])
    assert C.positive(shape=(2, 2)).edge(unscaled) == []
    # 1e-8 relative is the threshold; a lone scale has only the absolute floor 1e-12
    assert C.positive(shape=2).edge(np.array([1.0, 2e-8])) == []
    assert [i for i, _ in C.positive(shape=2).edge(np.array([1.0, 0.5e-8]))] == [(1,)]
    assert C.positive.edge(np.array(1e-11)) == []
    assert C.positive.edge(np.array(1e-13)) == [((), "1e-13, below the absolute floor 1e-12")]
    assert C.positive.edge(np.array(-1.0)) == [((), "-1 (not positive)")]


def test_interval_simplex_and_real_edges():
    iv = C.interval(-1.0, 2.5, shape=4)
    x = np.array([0.0, 2.5 - 1e-10, -1.0 + 1e-9, -1.0])
    assert [i for i, _ in iv.edge(x)] == [(1,), (3,)]
    assert "from the upper end 2.5 (width 3.5)" in iv.edge(x)[0][1]
    np.testing.assert_array_equal(iv.at_edge(x), [False, True, False, True])
    sx = C.simplex(3, batch=2)
    w = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    assert sx.edge(w) == [((0, 2), "weight 0 (at 0)")]
    assert sx.edge(np.array([[0.5, 0.5 - 1e-9, 1e-9], [0.2, 0.3, 0.5]])) == []
    assert C.real(shape=3).edge(np.array([1e300, -1e300, 0.0])) == []  # the real line has no edge
    assert C.real(shape=3).edge(np.array([1.0, np.inf, np.nan])) == [((1,), "not finite (inf)"), ((2,), "not finite (nan)")]


def test_positive_definite_edges():
    pd = C.positive_definite(2, batch=3)
    good = np.stack([np.eye(2), [[2.0, 0.5], [0.5, 1.0]], 0.3 * np.eye(2)])
    assert pd.edge(good) == []
    # a matrix collapsed onto a point: condition number 1, but 1e-14 of the others' variance
    collapsed = good.copy()
    collapsed[1] = 1e-14 * np.array([[2.0, 0.5], [0.5, 1.0]])
    ((i, why),) = pd.edge(collapsed)
    assert i == (1,) and "smallest eigenvalue" in why and "the batch has variance up to" in why
    # singular in one direction: condition number 1e13
    flat = good.copy()
    flat[2] = np.diag([1.0, 1e-13])
    assert pd.edge(flat) == [((2,), "smallest eigenvalue 1e-13 (condition number 1e+13); the batch has variance up to 1 along that direction")]
    np.testing.assert_array_equal(pd.at_edge(flat), [False, False, True])
    # features on different scales (condition number 1e11) are not an edge
    assert C.positive_definite(2).edge(np.diag([4e8, 4e-3])) == []
    assert C.positive_definite(2).edge(np.diag([1e-13, 2e-13])) != []  # a lone matrix: absolute floor
    assert "not positive definite" in C.positive_definite(2).edge(np.array([[1.0, 2.0], [2.0, 1.0]]))[0][1]
    nan = good.copy()
    nan[0, 0, 1] = np.nan
    assert pd.edge(nan) == [((0,), "not finite (nan)")]


@pytest.mark.parametrize("c", [C.real, C.positive, C.interval(-1.0, 2.5), C.unit_interval], ids=repr)
def test_log_density_grad_is_the_chain_rule_with_the_jacobian_term(c):
    # oracle: central differences of w -> log p(forward(w)) + log|d forward / dw| for a smooth
    # log p with a known gradient (a Gamma-like density with the shift keeping x - low > 0)
    low = getattr(c, "low", -5.0)

    def logp(x):
        return 1.5 * np.log(x - low) - 0.7 * x

    def grad_logp(x):
        return 1.5 / (x - low) - 0.7

    w = np.linspace(-2.0, 2.0, 9)
    h = 1e-6
    total = lambda v: logp(c.forward(v)) + c.elementwise_log_abs_det_jacobian(v)  # noqa: E731
    fd = (total(w + h) - total(w - h)) / (2 * h)
    np.testing.assert_allclose(c.log_density_grad(w, grad_logp(c.forward(w))), fd, rtol=1e-6, atol=1e-7)
    assert c.is_identity == (c == C.real)


def test_discrete_supports_have_no_gradient_chain_rule():
    with pytest.raises(TypeError, match="discrete support and has no bijection"):
        C.boolean.log_density_grad(np.zeros(2), np.zeros(2))


def test_the_package_keeps_every_public_name_and_the_edge_functions_are_the_methods():
    for name in C.__all__ + ["Real", "Positive", "Interval", "Simplex", "PositiveDefinite", "Boolean",
                             "NonnegativeInteger", "IntegerInterval"]:
        assert hasattr(C, name), name
    x = np.array([[1.0, 2.0], [1e-10, 3.0], [2.0, 1e-13]])
    assert C.positive(shape=(3, 2)).edge(x) == C.boundary.positive_edge(x, 1e-8, 1e-12) != []
    lone = np.array(1e-13)
    assert C.positive.edge(lone) == C.boundary.positive_edge(lone, 1e-8, 1e-12) != []

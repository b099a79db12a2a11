"""Constraints: round trips, membership, and log-Jacobians against finite differences."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mcem
from mcem import constraints as C
from mcem.inference import degeneracy

CASES = [
    C.real(shape=(3,)),
    C.positive(shape=(2, 2)),
    C.interval(-1.0, 2.5, shape=(4,)),
    C.unit_interval(shape=2),
    C.simplex(4),
    C.simplex(3, batch=2),
    C.positive_definite(3),
    C.positive_definite(2, batch=3),
    C.lower_cholesky(3),
    C.lower_cholesky(2, batch=2),
    C.corr_cholesky(1),
    C.corr_cholesky(2),
    C.corr_cholesky(4),
    C.corr_cholesky(3, batch=2),
]


def _free_coords(c, x):
    """The independent coordinates of a constrained value (what the bijection really maps to)."""
    if isinstance(c, C.PositiveDefinite | C.LowerCholesky):
        r, k = np.tril_indices(c.d)
        return x[..., r, k].ravel()
    if isinstance(c, C.CorrCholesky):  # the diagonal follows from the unit-norm rows
        r, k = np.tril_indices(c.d, -1)
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
                             "NonnegativeInteger", "IntegerInterval", "LowerCholesky", "CorrCholesky"]:
        assert hasattr(C, name), name
    x = np.array([[1.0, 2.0], [1e-10, 3.0], [2.0, 1e-13]])
    assert C.positive(shape=(3, 2)).edge(x) == C.boundary.positive_edge(x, 1e-8, 1e-12) != []
    lone = np.array(1e-13)
    assert C.positive.edge(lone) == C.boundary.positive_edge(lone, 1e-8, 1e-12) != []


# ----------------------------------------------------------------------------- Cholesky factors
def _stick_breaking_reference(u, d):
    """The Cholesky factor of a correlation matrix from unconstrained reals, written out entry by
    entry: z = tanh(u) row-major over the strictly lower triangle, then for each row
    L_ij = z_ij sqrt(1 - sum_{k<j} L_ik^2) and L_ii = sqrt(1 - sum_{k<i} L_ik^2)."""
    z = np.zeros((d, d))
    z[np.tril_indices(d, -1)] = np.tanh(u)
    L = np.zeros((d, d))
    for i in range(d):
        for j in range(i):
            L[i, j] = z[i, j] * np.sqrt(1.0 - np.sum(L[i, :j] ** 2))
        L[i, i] = np.sqrt(1.0 - np.sum(L[i, :i] ** 2))
    return L


def test_corr_cholesky_is_the_stick_breaking_construction_of_a_correlation_matrix():
    c = C.corr_cholesky(4, batch=(2, 3))
    assert c.shape == (2, 3, 4, 4) and c.unconstrained_shape == (2, 3, 6) and c.unconstrained_size == 36
    rng = np.random.default_rng(4)
    u = 1.5 * rng.normal(size=(5,) + c.unconstrained_shape)
    L = c.forward(u)
    for idx in np.ndindex(u.shape[:-1]):
        np.testing.assert_allclose(L[idx], _stick_breaking_reference(u[idx], 4), rtol=1e-10, atol=1e-14)
    R = L @ np.swapaxes(L, -1, -2)
    np.testing.assert_allclose(np.diagonal(R, axis1=-2, axis2=-1), 1.0, atol=1e-14)
    assert np.all(np.abs(R) <= 1.0 + 1e-14) and np.all(np.linalg.eigvalsh(R) > 0)
    np.testing.assert_array_equal(np.triu(L, 1), 0.0)
    # the first partial correlation of each row is the correlation with variable 0
    np.testing.assert_allclose(R[..., 1:, 0], np.tanh(u[..., [0, 1, 3]]), rtol=1e-13)
    # the inverse divides by sum_{k>=j} L_ik^2, not 1 - sum_{k<j} L_ik^2 (which cancels): the
    # partial correlations after one near +-1 come back to rounding error
    c4 = C.corr_cholesky(4)
    u4 = np.array([8.0, -8.0, 0.3, 8.0, 0.5, -0.4])
    back = c4.inverse(c4.forward(u4))
    np.testing.assert_allclose(back[[2, 4, 5]], u4[[2, 4, 5]], rtol=1e-14)
    np.testing.assert_allclose(back, u4, rtol=1e-9)
    # far in the tails: finite, unit rows, tiny but positive diagonal
    big = np.array([25.0, -25.0, 25.0])
    Lb = C.corr_cholesky(3).forward(big)
    assert np.all(np.isfinite(Lb)) and np.all(np.diagonal(Lb) > 0) and C.corr_cholesky(3).check(Lb)
    assert np.isfinite(C.corr_cholesky(3).log_abs_det_jacobian(big))


def test_lower_cholesky_is_the_factor_of_positive_definite():
    rng = np.random.default_rng(5)
    pd, lc = C.positive_definite(3, batch=2), C.lower_cholesky(3, batch=2)
    assert lc.unconstrained_shape == pd.unconstrained_shape == (2, 6)
    u = rng.normal(size=(4, 2, 6))
    L = lc.forward(u)
    np.testing.assert_allclose(L @ np.swapaxes(L, -1, -2), pd.forward(u), rtol=1e-13)
    np.testing.assert_allclose(L, np.linalg.cholesky(pd.forward(u)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.log(np.diagonal(L, axis1=-2, axis2=-1)), u[..., [0, 2, 5]], rtol=1e-14)
    np.testing.assert_array_equal(lc.default(), np.broadcast_to(np.eye(3), (2, 3, 3)))
    np.testing.assert_array_equal(C.corr_cholesky(3).default(), np.eye(3))
    np.testing.assert_array_equal(C.corr_cholesky(3).inverse(np.eye(3)), np.zeros(3))


def test_cholesky_membership_rejects_outside():
    lc, cc = C.lower_cholesky(2), C.corr_cholesky(2)
    assert lc.check([[2.0, 0.0], [-3.0, 0.1]])
    assert not lc.check([[2.0, 0.1], [-3.0, 0.1]])  # not lower-triangular
    assert not lc.check([[2.0, 0.0], [-3.0, 0.0]])  # diagonal not positive
    assert not lc.check([[2.0, 0.0], [np.nan, 1.0]])
    assert cc.check([[1.0, 0.0], [0.6, 0.8]])
    assert cc.check([[1.0, 0.0], [0.6, 0.8 + 5e-9]])  # unit norm within 1e-8
    assert not cc.check([[1.0, 0.0], [0.6, 0.8 + 1e-6]])
    assert not cc.check([[1.0, 0.0], [0.6, -0.8]])  # negative diagonal
    assert not cc.check([[0.8, 0.6], [0.6, 0.8]])  # not lower-triangular
    np.testing.assert_array_equal(
        C.corr_cholesky(2, batch=3).contains(np.array([np.eye(2), [[1.0, 0], [0.6, 0.8]], 2 * np.eye(2)])),
        [True, True, False])
    with pytest.raises(ValueError, match=r"corr_cholesky\(d\) needs an int d >= 1, got 1.5"):
        C.corr_cholesky(1.5)
    with pytest.raises(ValueError, match=r"lower_cholesky\(d\) needs an int d >= 1, got 0"):
        C.lower_cholesky(0)
    with pytest.raises(TypeError, match="batch"):
        C.corr_cholesky(2, batch="a")
    assert repr(C.corr_cholesky(3, batch=2)) == "corr_cholesky(3, batch=(2,))"
    assert repr(C.lower_cholesky(3)) == "lower_cholesky(3)"
    assert C.corr_cholesky(3) == C.corr_cholesky(3) != C.lower_cholesky(3)
    assert hash(C.corr_cholesky(3, batch=2)) == hash(C.corr_cholesky(3, batch=(2,)))
    assert C.corr_cholesky(3) != C.corr_cholesky(3, batch=1)


def test_cholesky_edges():
    cc = C.corr_cholesky(3, batch=2)
    u = np.array([[0.3, -0.2, 0.5], [0.1, 0.4, 20.0]])  # second factor: row 2 at 1/cosh(20)
    L = cc.forward(u)
    ((idx, why),) = cc.edge(L)
    assert idx == (1, 2)
    assert why == (f"diagonal {L[1, 2, 2]:.3g}: variable 2 is almost a linear combination of the "
                   "variables before it (a correlation of +-1)")
    np.testing.assert_array_equal(cc.at_edge(L), [[False] * 3, [False, False, True]])
    assert cc.edge(cc.forward(np.array([[0.3, -0.2, 0.5], [0.1, 0.4, 7.0]]))) == []  # diagonal 1.8e-3
    nan = L.copy()
    nan[0, 1, 0] = np.nan
    assert cc.edge(nan) == [((0,), "not finite (nan)"), ((1, 2), why)]
    np.testing.assert_array_equal(cc.at_edge(nan), [[True] * 3, [False, False, True]])
    lc = C.lower_cholesky(2, batch=2)
    x = np.array([[[1.0, 0.0], [0.5, 2.0]], [[1.0, 0.0], [0.5, 1e-7]]])
    ((idx, why),) = lc.edge(x)
    assert idx == (1,) and why.startswith("covariance L L^T: smallest eigenvalue")
    np.testing.assert_array_equal(lc.at_edge(x), [False, True])
    x[0, 0, 0] = np.inf
    assert lc.edge(x)[0] == ((0,), "not finite (inf)") and len(lc.edge(x)) == 2
    # the same criteria as positive_definite on the covariance
    cov = x[1] @ x[1].T
    assert lc.edge(x)[1][1] == "covariance L L^T: " + C.positive_definite(2).edge(cov)[0][1]


def test_cholesky_parameters_in_a_model():
    params = {"L": C.lower_cholesky(2), "R": C.corr_cholesky(3, batch=2)}
    m = mcem.Model(lambda th, z, d: np.zeros(z["z"].shape[:-1]), params=params,
                   latents={"z": mcem.Continuous(shape=1)})
    assert m.n_unconstrained == 3 + 2 * 3
    rng = np.random.default_rng(6)
    u = rng.normal(size=m.n_unconstrained)
    theta = m.from_unconstrained(u)
    assert theta["L"].shape == (2, 2) and theta["R"].shape == (2, 3, 3)
    np.testing.assert_allclose(m.to_unconstrained(theta), u, rtol=1e-12, atol=1e-12)
    expect = u[0] + u[2] + float(np.sum(params["R"].log_abs_det_jacobian(u[3:].reshape(2, 3))))
    np.testing.assert_allclose(m.log_abs_det_jacobian(u), expect, rtol=1e-13)
    np.testing.assert_array_equal(m.default_theta()["R"], np.broadcast_to(np.eye(3), (2, 3, 3)))
    assert m.check_theta(theta)["R"].shape == (2, 3, 3)
    with pytest.raises(ValueError, match=r"theta0\['R'\] must lie in corr_cholesky\(3, batch=\(2,\)\)"):
        m.check_theta({"L": theta["L"], "R": 2 * theta["R"]})
    theta["R"] = params["R"].forward(np.array([[0.1, 0.2, 0.3], [0.0, 25.0, 0.0]]))
    why = params["R"].edge(theta["R"])[0][1]
    assert degeneracy(m, theta) == [f"R[1,2] is at the edge of corr_cholesky(3, batch=(2,)): {why}"]

"""Chain distributions (MarkovChain, GaussianRandomWalk, AR1, LinearGaussianStateSpace) against
naive references: Python loops over time steps summing scipy.stats densities, the dense
multivariate normal of the whole path, matrix powers for the marginals, and the moments and
transition frequencies of many prior draws (within 4 MCSE)."""

import numpy as np
import pytest
from scipy import stats

from _mc import fd_grad

import mcem.distributions as D
from mcem import constraints

RTOL = 1e-12


def _close(a, b, rtol=RTOL):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.abs(b[np.isfinite(b)]).max(initial=0)))


def _stochastic(r, shape):
    w = r.uniform(0.1, 1.0, size=shape)
    return w / w.sum(axis=-1, keepdims=True)


def _tril(r, d, diag=1.0):
    return np.tril(0.4 * r.normal(size=(d, d)), -1) + np.diag(r.uniform(diag, diag + 1.0, size=d))


# ------------------------------------------------------------------------------ naive references
def naive_markov(s, p0, A):
    """log p(s) by a loop over time steps, for one path s (T,); A (K, K) or (T-1, K, K)."""
    out = np.log(p0[s[0]])
    for t in range(1, len(s)):
        At = A[t - 1] if A.ndim == 3 else A
        out += np.log(At[s[t - 1], s[t]])
    return out


def naive_gaussian(x, m0, P0, F, c, Q):
    """log p(x) for one path x (T, d) by a loop over time steps of multivariate normal densities."""
    out = stats.multivariate_normal(m0, P0).logpdf(x[0])
    for t in range(1, len(x)):
        out += stats.multivariate_normal(F @ x[t - 1] + c, Q).logpdf(x[t])
    return out


def naive_scalar(x, m0, s0, F, c, s):
    """log p(x) for one scalar path x (T,) by a loop of scipy.stats.norm densities."""
    out = stats.norm(m0, s0).logpdf(x[0])
    for t in range(1, len(x)):
        out += stats.norm(F * x[t - 1] + c, s).logpdf(x[t])
    return out


def dense_normal(lg, T):
    """The dense mean (T d,) and covariance (T d, T d) of the path implied by (m0, P0, F, c, Q):
    x = G (x_0, w_1 + c, ..., w_{T-1} + c) with G[t, k] = F^(t-k) for k <= t."""
    m0, P0, F, c, Q = lg
    d = len(m0)
    G = np.zeros((T * d, T * d))
    for t in range(T):
        for k in range(t + 1):
            G[t * d:(t + 1) * d, k * d:(k + 1) * d] = np.linalg.matrix_power(F, t - k)
    mu = G @ np.concatenate([m0] + [c] * (T - 1))
    Dm = np.zeros((T * d, T * d))
    for k in range(T):
        Dm[k * d:(k + 1) * d, k * d:(k + 1) * d] = P0 if k == 0 else Q
    return mu, G @ Dm @ G.T


# ------------------------------------------------------------------------------ the cases
def _lgss(p, T=6):
    return D.LinearGaussianStateSpace(
        p["F"], p["m0"], T, noise_covariance=p["B"] @ p["B"].T + np.eye(2),
        init_scale_tril=p["L0"] * np.tril(np.ones((2, 2))), offset=p["c"])


CONT = {
    "GaussianRandomWalk": (
        lambda p: D.GaussianRandomWalk(p["scale"], p["init_loc"], p["init_scale"], length=7),
        dict(scale=0.7, init_loc=0.4, init_scale=1.3)),
    "AR1 (stationary)": (
        lambda p: D.AR1(p["phi"], p["scale"], p["loc"], length=7),
        dict(phi=0.6, scale=0.8, loc=-0.5)),
    "AR1 (init_scale)": (
        lambda p: D.AR1(p["phi"], p["scale"], p["loc"], p["init_scale"], length=7),
        dict(phi=-1.3, scale=0.8, loc=0.5, init_scale=2.0)),
    "LinearGaussianStateSpace": (
        _lgss,
        dict(F=np.array([[0.8, 0.3], [-0.2, 0.9]]), m0=np.array([0.5, -1.0]),
             B=np.array([[1.0, 0.0], [0.9, 0.3]]), L0=np.array([[1.2, 0.0], [0.4, 0.8]]),
             c=np.array([0.2, -0.1]))),
}


def _path(d, r, n=()):
    return 1.5 * r.normal(size=tuple(n) + d.event_shape)


def _expected_lg(name, p):
    """(m0, P0, F, c, Q) written from the definitions, independently of the class."""
    if name == "GaussianRandomWalk":
        return ([p["init_loc"]], [[p["init_scale"] ** 2]], [[1.0]], [0.0], [[p["scale"] ** 2]])
    if name.startswith("AR1"):
        s0 = p["init_scale"] if "init_scale" in p else p["scale"] / np.sqrt(1 - p["phi"] ** 2)
        return ([p["loc"]], [[s0 ** 2]], [[p["phi"]]], [p["loc"] * (1 - p["phi"])], [[p["scale"] ** 2]])
    L0 = p["L0"]
    return (p["m0"], L0 @ L0.T, p["F"], p["c"], p["B"] @ p["B"].T + np.eye(2))


# ------------------------------------------------------------------------------ MarkovChain
@pytest.mark.parametrize("time_varying", [False, True])
def test_markov_chain_log_prob_matches_a_loop_over_time(time_varying):
    r = np.random.default_rng(0)
    K, T = 3, 7
    p0 = _stochastic(r, K)
    A = _stochastic(r, (T - 1, K, K) if time_varying else (K, K))
    d = D.MarkovChain(p0, A, None if time_varying else T)
    assert (d.length, d.event_shape, d.batch_shape, d.state_shape) == (T, (T,), (), ())
    assert d.time_varying is time_varying and d.K == d.num_states == K and d.is_discrete
    assert d.is_chain and d.support == constraints.integer_interval(0, K - 1)
    _close(d.log_init, np.log(p0))
    _close(d.log_transition, np.log(A))
    s = r.integers(0, K, size=(2, 4, T))
    lp = d.log_prob(s)
    assert lp.shape == (2, 4) and lp.dtype == np.float64
    _close(lp, np.array([[naive_markov(si, p0, A) for si in row] for row in s]))
    _close(d.log_prob(s.astype(float)), lp)  # integral floats
    _close(d.log_prob(s[0, 0]), naive_markov(s[0, 0], p0, A))  # one path: a scalar


def test_markov_chain_with_zero_probabilities_and_one_step():
    p0, A = np.array([1.0, 0.0]), np.array([[0.0, 1.0], [0.5, 0.5]])
    d = D.MarkovChain(p0, A, length=3)
    np.testing.assert_array_equal(d.log_prob([[0, 1, 0], [0, 0, 1], [1, 1, 1]]),
                                  [np.log(0.5), -np.inf, -np.inf])
    one = D.MarkovChain(p0, A, length=1)
    assert one.event_shape == (1,) and one.log_prob([0]) == 0.0 and one.log_prob([1]) == -np.inf
    assert one.sample(0, 5).shape == (5, 1)


def test_markov_chain_outside_the_support_is_minus_inf():
    r = np.random.default_rng(1)
    d = D.MarkovChain(_stochastic(r, 3), _stochastic(r, (3, 3)), length=4)
    s = np.array([[0, 1, 2, 1], [0, 3, 1, 1], [-1, 0, 0, 0], [0, 1.5, 1, 1], [0, np.nan, 1, 1]])
    lp = d.log_prob(s)
    assert np.isfinite(lp[0]) and np.all(lp[1:] == -np.inf)
    np.testing.assert_array_equal(d.support_mask(s), [True, False, False, False, False])
    d.check_value(s[:1])
    with pytest.raises(ValueError, match=r"s: MarkovChain needs integers in \{0, \.\.\., 2\}; got \[0\.0, 3\.0, 1\.0, 1\.0\] at index \(1,\)"):
        d.check_value(s[:2], "s")
    with pytest.raises(ValueError, match=r"event shape \(4,\)"):
        d.check_value(s[:, :3])


def test_markov_chain_marginals_are_matrix_powers():
    r = np.random.default_rng(2)
    p0, A = _stochastic(r, 3), _stochastic(r, (3, 3))
    d = D.MarkovChain(p0, A, length=6)
    P = np.array([p0 @ np.linalg.matrix_power(A, t) for t in range(6)])
    _close(d.marginal_probs, P)
    k = np.arange(3.0)
    _close(d.mean, P @ k)
    _close(d.variance, P @ k ** 2 - (P @ k) ** 2)


@pytest.mark.parametrize("time_varying", [False, True])
def test_markov_chain_samples_have_the_initial_and_transition_frequencies(time_varying):
    r = np.random.default_rng(3)
    K, T, n = 3, 5, 20000
    p0 = _stochastic(r, K)
    A = _stochastic(r, (T - 1, K, K) if time_varying else (K, K))
    d = D.MarkovChain(p0, A, length=T)
    s = d.sample(np.random.default_rng(4), (n,))
    assert s.shape == (n, T) and s.dtype == np.int64 and np.all(d.support_mask(s))
    np.testing.assert_array_equal(s, d.sample(4, (n,)))  # an int seed is a Generator's seed
    f0 = np.bincount(s[:, 0], minlength=K) / n
    assert np.all(np.abs(f0 - p0) < 4 * np.sqrt(p0 * (1 - p0) / n) + 1e-3)
    steps = range(T - 1) if time_varying else [None]
    for t in steps:
        prev = s[:, :-1] if t is None else s[:, t:t + 1]
        nxt = s[:, 1:] if t is None else s[:, t + 1:t + 2]
        At = A if t is None else A[t]
        for i in range(K):
            sel = prev == i
            m = sel.sum()
            freq = np.bincount(nxt[sel], minlength=K) / m
            assert np.all(np.abs(freq - At[i]) < 4 * np.sqrt(At[i] * (1 - At[i]) / m) + 1e-3), (t, i)
    x = s.astype(float)
    se = x.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(x.mean(axis=0) - d.mean) < 4 * se + 1e-3)
    v = (x - d.mean) ** 2
    assert np.all(np.abs(v.mean(axis=0) - d.variance) < 4 * v.std(axis=0) / np.sqrt(n) + 1e-3)


# ------------------------------------------------------------------------------ Gaussian chains
@pytest.mark.parametrize("name", list(CONT))
def test_gaussian_chain_log_prob_matches_a_loop_over_time(name):
    make, p = CONT[name]
    d = make(p)
    r = np.random.default_rng(5)
    x = _path(d, r, (2, 3))
    lp = d.log_prob(x)
    assert lp.shape == (2, 3) and lp.dtype == np.float64
    m0, P0, F, c, Q = (np.asarray(v, dtype=float) for v in _expected_lg(name, p))
    if d.state_shape:
        ref = [[naive_gaussian(xi, m0, P0, F, c, Q) for xi in row] for row in x]
    else:
        ref = [[naive_scalar(xi, m0[0], np.sqrt(P0[0, 0]), F[0, 0], c[0], np.sqrt(Q[0, 0]))
                for xi in row] for row in x]
    _close(lp, np.array(ref))
    assert np.ndim(d.log_prob(x[0, 0])) == 0
    # linear_gaussian() gives the matrices of the definition, as new numpy arrays
    lg = d.linear_gaussian()
    assert isinstance(lg, D.LinearGaussian)
    for got, want in zip(lg, (m0, P0, F, c, Q)):
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
        _close(got, want)
    lg.m0[...] = 99.0
    assert d.linear_gaussian().m0[0] != 99.0


@pytest.mark.parametrize("name", list(CONT))
def test_log_prob_is_the_dense_normal_of_linear_gaussian(name):
    make, p = CONT[name]
    d = make(p)
    x = _path(d, np.random.default_rng(6), (4,))
    mu, S = dense_normal(d.linear_gaussian(), d.length)
    _close(d.log_prob(x), stats.multivariate_normal(mu, S).logpdf(x.reshape(4, -1)), rtol=1e-10)
    # the prior moments are those of the dense normal
    _close(d.mean, mu.reshape(d.event_shape), rtol=1e-10)
    _close(d.variance, np.diagonal(S).reshape(d.event_shape), rtol=1e-10)


def test_scale_tril_and_covariance_give_the_same_state_space_chain():
    r = np.random.default_rng(7)
    F, m0, LQ, L0 = 0.5 * r.normal(size=(3, 3)), r.normal(size=3), _tril(r, 3), _tril(r, 3)
    a = D.LinearGaussianStateSpace(F, m0, 5, noise_scale_tril=LQ, init_scale_tril=L0)
    b = D.LinearGaussianStateSpace(F, m0, 5, noise_covariance=LQ @ LQ.T, init_covariance=L0 @ L0.T)
    x = r.normal(size=(6, 5, 3))
    _close(a.log_prob(x), b.log_prob(x), rtol=1e-10)
    _close(a.log_prob(x), [naive_gaussian(xi, m0, L0 @ L0.T, F, np.zeros(3), LQ @ LQ.T) for xi in x])
    assert a.event_shape == (5, 3) and a.state_shape == (3,) and a.num_states is None


@pytest.mark.parametrize("name", list(CONT))
def test_non_finite_values_are_minus_inf(name):
    make, p = CONT[name]
    d = make(p)
    x = _path(d, np.random.default_rng(8), (4,))
    x[1].flat[2], x[2].flat[0], x[3].flat[-1] = np.nan, np.inf, -np.inf
    lp = d.log_prob(x)
    assert np.isfinite(lp[0]) and np.all(lp[1:] == -np.inf)
    np.testing.assert_array_equal(d.support_mask(x), [True, False, False, False])
    assert d.support == constraints.real and not d.is_discrete and d.is_chain


@pytest.mark.parametrize("name", list(CONT))
def test_prior_samples_match_mean_and_variance(name):
    make, p = CONT[name]
    d = make(p)
    n = 20000
    x = d.sample(np.random.default_rng(9), (n,))
    assert x.shape == (n,) + d.event_shape and x.dtype == np.float64
    se = x.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(x.mean(axis=0) - d.mean) < 4 * se + 1e-3)
    v = (x - d.mean) ** 2
    assert np.all(np.abs(v.mean(axis=0) - d.variance) < 4 * v.std(axis=0) / np.sqrt(n) + 1e-3)
    # the whole covariance of the path (across time steps and state components)
    mu, S = dense_normal(d.linear_gaussian(), d.length)
    e = x.reshape(n, -1) - mu
    prod = e[:, :, None] * e[:, None, :]
    assert np.all(np.abs(prod.mean(0) - S) < 4 * prod.std(0) / np.sqrt(n) + 1e-3)


# ------------------------------------------------------------------------------ inputs
BAD = [
    (lambda: D.MarkovChain([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]]), TypeError, "length .*required"),
    (lambda: D.MarkovChain([0.5, 0.5], np.eye(2), length=0), ValueError, "length must be a positive int"),
    (lambda: D.MarkovChain([0.5, 0.5], np.eye(2), length=2.0), TypeError, "length must be a positive int"),
    (lambda: D.MarkovChain([0.5, 0.5], np.ones((3, 2, 2)) / 2, length=5), ValueError,
     r"length 5 does not match .* shape \(3, 2, 2\)"),
    (lambda: D.MarkovChain([0.5, 0.6], np.eye(2), 3), ValueError, "init_probs must be a probability vector"),
    (lambda: D.MarkovChain([1.5, -0.5], np.eye(2), 3), ValueError, "init_probs must be non-negative"),
    (lambda: D.MarkovChain([0.5, 0.5], [[0.9, 0.2], [0.2, 0.8]], 3), ValueError,
     "transition must be row-stochastic.*1.1"),
    (lambda: D.MarkovChain([0.5, 0.5], np.eye(3), 3), ValueError, r"transition must have shape \(2, 2\)"),
    (lambda: D.MarkovChain([[0.5, 0.5]], np.eye(2), 3), ValueError, r"init_probs must have shape \(K,\)"),
    (lambda: D.MarkovChain(["a", "b"], np.eye(2), 3), ValueError, "init_probs must be convertible"),
    (lambda: D.GaussianRandomWalk(0.5), TypeError, "GaussianRandomWalk: length"),
    (lambda: D.GaussianRandomWalk(-0.5, length=3), ValueError, "scale must be positive"),
    (lambda: D.GaussianRandomWalk(0.5, init_scale=0.0, length=3), ValueError, "init_scale must be positive"),
    (lambda: D.GaussianRandomWalk(np.ones(2), length=3), ValueError, r"scale must have shape \(\) \(a scalar"),
    (lambda: D.GaussianRandomWalk(0.5, init_loc=np.nan, length=3), ValueError, "init_loc must be finite"),
    (lambda: D.AR1(1.0, 1.0, length=3), ValueError, r"phi must be in \(-1, 1\) when init_scale is None"),
    (lambda: D.AR1(0.5, 0.0, length=3), ValueError, "AR1: scale must be positive"),
    (lambda: D.AR1(0.5, 1.0, init_scale=-1.0, length=3), ValueError, "init_scale must be positive"),
    (lambda: D.AR1(0.5, 1.0, length=-2), ValueError, "AR1: length must be a positive int"),
    (lambda: D.LinearGaussianStateSpace(np.eye(2), np.zeros(2), 3, init_covariance=np.eye(2)),
     ValueError, "exactly one of noise_scale_tril or noise_covariance, got neither"),
    (lambda: D.LinearGaussianStateSpace(np.eye(2), np.zeros(2), 3, noise_covariance=np.eye(2),
                                        noise_scale_tril=np.eye(2), init_covariance=np.eye(2)),
     ValueError, "exactly one of noise_scale_tril or noise_covariance, got both"),
    (lambda: D.LinearGaussianStateSpace(np.eye(2), np.zeros(2), 3, noise_covariance=np.eye(2)),
     ValueError, "exactly one of init_scale_tril or init_covariance, got neither"),
    (lambda: D.LinearGaussianStateSpace(np.eye(3), np.zeros(2), 3, noise_covariance=np.eye(2),
                                        init_covariance=np.eye(2)),
     ValueError, r"transition_matrix must have shape \(2, 2\) to match init_loc"),
    (lambda: D.LinearGaussianStateSpace(np.eye(2), np.zeros(2), 3, noise_covariance=np.eye(2),
                                        init_covariance=np.eye(2), offset=np.zeros(3)),
     ValueError, r"offset must have shape \(2,\)"),
    (lambda: D.LinearGaussianStateSpace(np.eye(2), np.zeros(2), 3, noise_scale_tril=np.ones((2, 2)),
                                        init_covariance=np.eye(2)),
     ValueError, "noise_scale_tril must be lower triangular"),
    (lambda: D.LinearGaussianStateSpace(np.eye(2), np.zeros(2), 3, noise_scale_tril=-np.eye(2),
                                        init_covariance=np.eye(2)),
     ValueError, "noise_scale_tril must be with a positive diagonal"),
    (lambda: D.LinearGaussianStateSpace(np.eye(2), np.zeros(2), 3, noise_covariance=np.eye(2),
                                        init_covariance=[[1.0, 2.0], [2.0, 1.0]]),
     ValueError, "init_covariance must be symmetric positive definite"),
    (lambda: D.LinearGaussianStateSpace(np.eye(2), np.zeros(2), 3, noise_covariance=[[1.0, 0.5], [0.0, 1.0]],
                                        init_covariance=np.eye(2)),
     ValueError, "noise_covariance must be symmetric"),
    (lambda: D.LinearGaussianStateSpace(np.eye(2), np.zeros(2), noise_covariance=np.eye(2),
                                        init_covariance=np.eye(2)),
     TypeError, "LinearGaussianStateSpace: length"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_inputs_name_the_argument(case):
    make, exc, match = BAD[case]
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("name", list(CONT) + ["MarkovChain"])
def test_value_shape_errors_and_inputs_left_alone(name):
    if name == "MarkovChain":
        p = dict(p0=np.array([0.25, 0.75]), A=np.array([[0.9, 0.1], [0.2, 0.8]]))
        saved = {k: v.copy() for k, v in p.items()}
        d = D.MarkovChain(p["p0"], p["A"], length=4)
        d.log_prob(np.zeros(4, int))
        d.sample(0, 3)
    else:
        make, p = CONT[name]
        saved = {k: np.copy(v) for k, v in p.items()}
        d = make(p)
        d.log_prob(_path(d, np.random.default_rng(0)))
        d.sample(0, 3), d.mean, d.linear_gaussian()
    for k in p:
        np.testing.assert_array_equal(p[k], saved[k])
    bad = np.zeros(d.event_shape[:-1] + (d.event_shape[-1] + 1,))
    with pytest.raises(ValueError, match=rf"{type(d).__name__}.log_prob: value must end in the event shape"):
        d.log_prob(bad)
    with pytest.raises(ValueError, match="event shape"):
        d.log_prob(np.zeros(()))


def test_validation_can_be_turned_off_and_repr():
    d = D.AR1(1.0, 1.0, init_scale=2.0, length=3)  # |phi| >= 1 is fine with an initial scale
    assert np.isfinite(d.log_prob(np.zeros(3)))
    D.MarkovChain([0.5, 0.6], np.eye(2), 3, validate_args=False)
    D.GaussianRandomWalk(-1.0, length=3, validate_args=False)
    assert repr(D.GaussianRandomWalk(0.5, length=4)) == (
        "GaussianRandomWalk(scale=0.5, init_loc=0.0, init_scale=1.0, event_shape=(4,))")
    assert repr(D.AR1(0.5, 2.0, length=3)) == "AR1(phi=0.5, scale=2.0, loc=0.0, event_shape=(3,))"
    assert repr(D.MarkovChain([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], 5)) == (
        "MarkovChain(init_probs=[0.5, 0.5], transition=[[0.9, 0.1], [0.2, 0.8]], event_shape=(5,))")
    assert "event_shape=(3, 2)" in repr(D.LinearGaussianStateSpace(
        np.eye(2), np.zeros(2), 3, noise_covariance=np.eye(2), init_covariance=np.eye(2)))


# ------------------------------------------------------------------------------ JAX
def _jax():
    jax = pytest.importorskip("jax")
    from mcem._jax import x64

    return jax, jax.numpy, x64


def _jit(jax, f, *args):
    opts = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return jax.jit(f).lower(*args).compile(compiler_options=opts)(*args)


def _norm_rows(w):
    return w / w.sum(axis=-1, keepdims=True)


JAX_CASES = {
    **{k: (make, p, True) for k, (make, p) in CONT.items()},
    "MarkovChain": (
        lambda p: D.MarkovChain(_norm_rows(p["w0"]), _norm_rows(p["W"]), length=6),
        dict(w0=np.array([1.0, 2.0, 0.5]), W=np.array([[3.0, 1.0, 0.5], [1.0, 1.0, 2.0], [0.2, 1.0, 4.0]])),
        False),
    "MarkovChain (time-varying)": (
        lambda p: D.MarkovChain(_norm_rows(p["w0"]), _norm_rows(p["W"])),
        dict(w0=np.array([1.0, 2.0]), W=np.random.default_rng(11).uniform(0.2, 2.0, size=(5, 2, 2))),
        False),
}


def _value(name, d):
    r = np.random.default_rng(12)
    if name.startswith("MarkovChain"):
        return r.integers(0, d.K, size=(4,) + d.event_shape)
    return _path(d, r, (4,))


@pytest.mark.parametrize("name", list(JAX_CASES))
def test_jax_log_prob_and_grad_equal_the_numpy_path(name):
    jax, jnp, x64 = _jax()
    make, p, continuous = JAX_CASES[name]
    x = _value(name, make(p))
    lp = make(p).log_prob(x)
    assert np.all(np.isfinite(lp))

    def traced(q, v):
        d = make(q)
        assert d._traced and d.event_shape == make(p).event_shape and d.batch_shape == ()
        lps = d.log_prob(x), make(p).log_prob(v), d.log_prob(v)
        grad = jax.grad(lambda q: jnp.sum(make(q).log_prob(x)))(q)
        grad_v = jax.grad(lambda v: jnp.sum(make(p).log_prob(v)))(v) if continuous else 0
        return lps, grad, grad_v

    with x64():
        q = {k: jnp.asarray(v) for k, v in p.items()}
        lps, grad, grad_v = _jit(jax, traced, q, jnp.asarray(x))
        outside_jit = make(q).log_prob(x)
    for out in lps + (outside_jit,):
        assert isinstance(out, jax.Array) and out.dtype == jnp.float64
        _close(out, lp)

    def total(q):
        return float(np.sum(make(q).log_prob(x)))

    for k in p:
        g = np.asarray(grad[k])
        assert np.all(np.isfinite(g)), (k, g)
        np.testing.assert_allclose(g, fd_grad(total, p, k), rtol=1e-6, atol=1e-6, err_msg=k)
    if continuous:
        fd = fd_grad(lambda q: float(np.sum(make(p).log_prob(q["x"]))), {"x": x}, "x")
        np.testing.assert_allclose(np.asarray(grad_v), fd, rtol=1e-6, atol=1e-6)


def test_jax_values_outside_the_support_are_minus_inf():
    jax, jnp, x64 = _jax()
    make, p, _ = JAX_CASES["MarkovChain"]
    s = np.array([[0, 1, 2, 1, 0, 0], [0, 3, 1, 1, 0, 0], [-1, 0, 0, 0, 0, 0], [0, 1.5, 1, 1, 0, 0]])
    expected = make(p).log_prob(s)
    assert np.isfinite(expected[0]) and np.all(expected[1:] == -np.inf)
    with x64():
        out = _jit(jax, lambda q, v: make(q).log_prob(v), {k: jnp.asarray(v) for k, v in p.items()},
                   jnp.asarray(s))
    np.testing.assert_array_equal(np.asarray(out) == -np.inf, expected == -np.inf)
    _close(np.asarray(out)[:1], expected[:1])
    make, p, _ = JAX_CASES["LinearGaussianStateSpace"]
    x = _path(make(p), np.random.default_rng(0), (2,))
    x[1, 3, 1] = np.inf
    with x64():
        out = np.asarray(_jit(jax, lambda v: make(p).log_prob(v), jnp.asarray(x)))
    assert np.isfinite(out[0]) and out[1] == -np.inf


@pytest.mark.parametrize("name", list(CONT))
def test_jax_grad_is_finite_next_to_masked_non_finite_paths(name):
    jax, jnp, x64 = _jax()
    make, p, _ = JAX_CASES[name]
    x = _path(make(p), np.random.default_rng(13), (3,))
    x[1].flat[1], x[2].flat[-1] = np.inf, np.nan

    def f(q):
        lp = make(q).log_prob(x)
        inside = lp > -jnp.inf
        return inside, jax.grad(lambda q: jnp.sum(jnp.where(inside, make(q).log_prob(x), 0.0)))(q)

    with x64():
        inside, g = _jit(jax, f, {k: jnp.asarray(v) for k, v in p.items()})
    assert inside[0] and not np.any(inside[1:])
    for k in p:  # the oracle: finite differences of the numpy log density of the finite path
        fd = fd_grad(lambda q: float(make(q).log_prob(x[0])), p, k)
        np.testing.assert_allclose(np.asarray(g[k]), fd, rtol=1e-6, atol=1e-6, err_msg=k)


def test_traced_parameters_skip_value_checks_but_not_structural_ones():
    jax, jnp, x64 = _jax()
    with x64():
        # |phi| >= 1 with a stationary start is not refused while tracing: its scale is NaN
        out = jax.jit(lambda phi: D.AR1(phi, 1.0, length=3).log_prob(jnp.zeros(3)))(1.5)
        assert np.isnan(out)
        jax.jit(lambda w: D.MarkovChain(w, jnp.eye(2), 3).log_prob(jnp.zeros(3, int)))(jnp.array([0.7, 0.7]))
        with pytest.raises(ValueError, match=r"transition must have shape \(2, 2\)"):
            jax.jit(lambda A: D.MarkovChain(jnp.ones(2) / 2, A, 3).log_prob(jnp.zeros(3, int)))(jnp.eye(3))
        with pytest.raises(TypeError, match="length .*is required"):
            jax.jit(lambda s: D.GaussianRandomWalk(s).log_prob(jnp.zeros(3)))(1.0)

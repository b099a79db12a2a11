"""Gaussian chain primitives (mcem.kernels.gaussian_chain) against dense-matrix oracles, and the
simulation-smoother kernel against the dense posterior of a hand-built local-level target."""

from collections import namedtuple

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from mcem.kernels.base import ChainTarget
from mcem.kernels.gaussian_chain import (
    add_emission,
    band_logdensity,
    band_mean,
    band_moments,
    conditional_band,
    factor_band,
    log_integral,
    prior_band,
    quadratic_emission,
    sample_band,
)
from mcem.kernels.kalman import KalmanSmoother, _factored

from _mc import assert_mean

LG = namedtuple("LG", "m0 P0 F c Q")


def _random_lg(d, seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    B = rng.normal(size=(d, d))
    return LG(rng.normal(size=d), A @ A.T + np.eye(d), 0.7 * rng.normal(size=(d, d)) / np.sqrt(d),
              rng.normal(size=d), B @ B.T + 0.5 * np.eye(d))


def _dense_prior(lg, T):
    """Mean and covariance of the flattened path, by the recursions written out (a loop over t)."""
    d = len(lg.m0)
    means, covs = [np.asarray(lg.m0)], [np.asarray(lg.P0)]
    for _ in range(1, T):
        means.append(lg.F @ means[-1] + lg.c)
        covs.append(lg.F @ covs[-1] @ lg.F.T + lg.Q)
    S = np.zeros((T * d, T * d))
    for s in range(T):
        for t in range(s, T):  # Cov(x_t, x_s) = F^(t-s) Var(x_s)
            blk = np.linalg.matrix_power(lg.F, t - s) @ covs[s]
            S[t * d:(t + 1) * d, s * d:(s + 1) * d] = blk
            S[s * d:(s + 1) * d, t * d:(t + 1) * d] = blk.T
    return np.concatenate(means), S


def _dense(ab):
    """The symmetric matrix of a lower band (2d, n)."""
    n = ab.shape[-1]
    Q = np.zeros((n, n))
    for k in range(min(ab.shape[0], n)):
        idx = np.arange(n - k)
        Q[idx + k, idx] = ab[k, : n - k]
        Q[idx, idx + k] = ab[k, : n - k]
    return Q


@pytest.mark.parametrize("d,T", [(1, 6), (2, 5), (3, 4), (2, 1)])
def test_prior_band_is_the_dense_prior(d, T):
    lg = _random_lg(d, seed=d + 10 * T)
    band = prior_band(lg, T)
    mu, S = _dense_prior(lg, T)
    Q = _dense(band.ab)
    np.testing.assert_allclose(Q, np.linalg.inv(S), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(np.linalg.solve(Q, band.b), mu, rtol=1e-9, atol=1e-10)
    x = np.random.default_rng(1).normal(size=(7, T * d))
    paths = x.reshape((7, T) + ((d,) if d > 1 else ()))
    np.testing.assert_allclose(band_logdensity(band, paths), multivariate_normal(mu, S).logpdf(x), rtol=1e-10)
    # a normalised density integrates to one
    assert abs(float(log_integral(band))) < 1e-10


def test_prior_band_refuses_bad_parameters():
    lg = _random_lg(2, 0)
    with pytest.raises(ValueError, match="Q must be symmetric positive definite"):
        prior_band(lg._replace(Q=-np.eye(2)), 4)
    with pytest.raises(ValueError, match="P0 must have shape"):
        prior_band(lg._replace(P0=np.eye(3)), 4)
    with pytest.raises(ValueError, match="T must be a positive int"):
        prior_band(lg, 0)


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("centred", [False, True])
def test_quadratic_emission_recovers_a_quadratic(d, centred):
    rng = np.random.default_rng(d)
    C, T = 3, 5
    A = rng.normal(size=(C, T, d, d))
    H = A @ np.swapaxes(A, -1, -2) + 0.1 * np.eye(d)
    g, c = 3 * rng.normal(size=(C, T, d)), rng.normal(size=(C, T))
    state = (d,) if d > 1 else ()

    def emission(z):
        z = np.asarray(z).reshape(z.shape[: z.ndim - len(state)] + (d,))
        return -0.5 * np.einsum("...i,...ij,...j->...", z, H, z) + np.sum(g * z, -1) + c

    center = 10 * rng.normal(size=(C, T) + state) if centred else None
    H2, g2, c2, exact = quadratic_emission(emission, C, T, state, center=center)
    assert exact
    np.testing.assert_allclose(H2, H, atol=1e-9 * max(1, np.abs(H).max()) * (100 if centred else 1))
    np.testing.assert_allclose(g2, g, atol=1e-7)
    np.testing.assert_allclose(c2, c, atol=1e-6)


def test_quadratic_emission_flags_a_non_quadratic_emission():
    y = np.random.default_rng(0).normal(size=(2, 6))

    def stochastic_volatility(x):  # log N(y; 0, exp(x)) up to a constant: not quadratic in x
        return -x / 2 - y**2 * np.exp(-x) / 2

    *_, exact = quadratic_emission(stochastic_volatility, 2, 6, ())
    assert not exact

    def cubic(z):  # two-dimensional state, one cubic term at one time step
        out = -0.5 * np.sum(z * z, -1)
        out[..., 1, 3] += 1e-3 * z[..., 1, 3, 0] ** 3
        return out

    *_, exact = quadratic_emission(cubic, 2, 6, (2,))
    assert not exact
    *_, exact = quadratic_emission(lambda z: -0.5 * np.sum(z * z, -1), 2, 6, (2,))
    assert exact


def _posterior_band(d=2, T=5, C=3, seed=0):
    """A random prior plus random Gaussian emissions, and the dense precision/linear term."""
    lg = _random_lg(d, seed)
    rng = np.random.default_rng(seed + 100)
    A = rng.normal(size=(C, T, d, d))
    H = A @ np.swapaxes(A, -1, -2)
    g, c = rng.normal(size=(C, T, d)), rng.normal(size=(C, T))
    band = add_emission(prior_band(lg, T), H, g, c)
    return lg, band, H, g, c


def test_add_emission_and_log_integral_match_dense_algebra():
    d, T, C = 2, 5, 3
    lg, band, H, g, c = _posterior_band(d, T, C)
    mu, S = _dense_prior(lg, T)
    prior = multivariate_normal(mu, S)
    x = np.random.default_rng(3).normal(size=(C, T, d))
    emis = -0.5 * np.einsum("cti,ctij,ctj->c", x, H, x) + np.sum(g * x, (-2, -1)) + c.sum(-1)
    np.testing.assert_allclose(band_logdensity(band, x), prior.logpdf(x.reshape(C, -1)) + emis, rtol=1e-10)
    for k in range(C):  # the Gaussian integral, densely
        Q, b = _dense(band.ab[k]), band.b[k]
        n = T * d
        want = band.c[k] + 0.5 * b @ np.linalg.solve(Q, b) + 0.5 * n * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(Q)[1]
        assert np.isclose(log_integral(band)[k], want, rtol=1e-11)
        np.testing.assert_allclose(band_mean(band)[k].ravel(), np.linalg.solve(Q, b), rtol=1e-10)


def test_band_moments_match_the_dense_inverse():
    for d, T in [(1, 9), (2, 6), (3, 1)]:
        _, band, *_ = _posterior_band(d, T, C=2, seed=d)
        mean, cov, cross = band_moments(band)
        for k in range(2):
            S = np.linalg.inv(_dense(band.ab[k]))
            blocks = S.reshape(T, d, T, d)
            np.testing.assert_allclose(cov[k], np.stack([blocks[t, :, t] for t in range(T)]), rtol=1e-9, atol=1e-12)
            if T > 1:
                want = np.stack([blocks[t + 1, :, t] for t in range(T - 1)])
                np.testing.assert_allclose(cross[k], want, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(mean[k].ravel(), S @ band.b[k], rtol=1e-9)


def test_band_moments_stay_accurate_for_a_nearly_rigid_walk():
    # sigma_level / sigma_obs = 1e-6: the precision's entries are ~1e12 times the posterior
    # precision of a state (a boundary EM fits drift to)
    T, so, sl = 200, 1.0, 1e-6
    lg = LG(np.zeros(1), np.array([[sl**2]]), np.eye(1), np.zeros(1), np.array([[sl**2]]))
    band = add_emission(prior_band(lg, T), np.full((T, 1, 1), 1 / so**2), np.zeros((T, 1)), np.zeros(T))
    _, cov, cross = band_moments(band)
    # covariance form, well conditioned: Sigma = S - S (S + R)^-1 S, S the prior covariance
    S = sl**2 * (1.0 + np.minimum.outer(np.arange(T), np.arange(T)))
    post = S - S @ np.linalg.solve(S + so**2 * np.eye(T), S)
    np.testing.assert_allclose(cov[:, 0, 0], np.diag(post), rtol=1e-8)
    np.testing.assert_allclose(cross[:, 0, 0], np.diag(post, -1), rtol=1e-8)


def test_sample_band_draws_the_gaussian():
    d, T, C, N = 2, 4, 2, 20000
    _, band, *_ = _posterior_band(d, T, C, seed=5)
    x = sample_band(band, 7, sample_shape=(N,))
    assert x.shape == (N, C, T, d)
    for k in range(C):
        S = np.linalg.inv(_dense(band.ab[k]))
        mu = S @ band.b[k]
        xs = x[:, k].reshape(N, -1)
        assert_mean(xs[None], mu, floor=0.0)  # independent draws: MCSE = sd / sqrt(N)
        dev = xs - mu
        prods = (dev[:, :, None] * dev[:, None, :]).reshape(1, N, -1)
        assert_mean(prods, S.ravel(), floor=0.0)
    # reproducible, and the normals may be given
    np.testing.assert_array_equal(sample_band(band, 7, sample_shape=(N,)), x)
    eps = np.random.default_rng(1).standard_normal((C, T * d))
    fb = factor_band(band)
    L = np.linalg.cholesky(_dense(band.ab[0]))
    np.testing.assert_allclose(sample_band(fb, eps)[0].ravel(), fb.mean[0] + np.linalg.solve(L.T, eps[0]), rtol=1e-10)
    with pytest.raises(ValueError, match="normals must have"):
        sample_band(fb, eps[:, :-1])


def test_a_precision_that_is_not_positive_definite_is_named():
    lg = _random_lg(1, 0)
    T = 6
    H = np.zeros((2, T, 1, 1))
    H[1, 3] = -1e3  # chain 1, time step 3: strongly convex emission piece
    band = add_emission(prior_band(lg, T), H, np.zeros((2, T, 1)), np.zeros((2, T)))
    with pytest.raises(ValueError, match="chain 1 is not positive definite at time step 3"):
        factor_band(band)


# ---------------------------------------------------------------------------- the kernel
class _Prior:
    """A stand-in chain distribution: only linear_gaussian() is read by the kernel."""

    def __init__(self, lg):
        self.lg = lg

    def linear_gaussian(self):
        return self.lg


def _local_level_target(T=8, C=4, shared=True, d=1, seed=0, counter=None, offset=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    if d == 1:
        lg = LG(np.array([0.5 * scale + offset]), np.array([[1.5 * scale**2]]), np.eye(1), np.zeros(1),
                np.array([[0.3 * scale**2]]))
        y = offset + scale * rng.normal(size=T)
        sd = np.array([0.7 * scale])
    else:
        lg = _random_lg(d, seed)
        y = rng.normal(size=(T, d))
        sd = np.linspace(0.5, 1.0, d)

    def emission(zs):
        if counter is not None:
            counter.append(np.shape(zs))
        z = np.asarray(zs, dtype=float)
        out = -0.5 * ((y - z) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
        return out if d == 1 else out.sum(-1)

    mu, S = _dense_prior(lg, T)
    prior = multivariate_normal(mu, S)

    def fn(z):
        return prior.logpdf(np.asarray(z).reshape(z.shape[0], -1)) + emission(z).sum(-1)

    # the dense posterior
    Hd = np.kron(np.eye(T), np.diag(1 / np.broadcast_to(sd, (d,)) ** 2))
    P = np.linalg.inv(np.linalg.inv(S) + Hd)
    m = P @ (np.linalg.solve(S, mu) + Hd @ np.asarray(y).ravel())
    return ChainTarget(fn, _Prior(lg), emission, shared=shared), m, P, fn


@pytest.mark.parametrize("mode", ["step", "sample"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("d", [1, 2])
def test_kalman_kernel_draws_the_dense_posterior(shared, d, mode):
    """Draws by ``step`` (one per sweep) or by ``sample`` (the E step's block mode: all at once,
    independent where the target is shared): moments against the dense posterior, logp against
    the chain's own terms."""
    T, C, N = 6, 4, 2500
    target, m, P, fn = _local_level_target(T, C, shared, d)
    k = KalmanSmoother()
    z0 = np.zeros((C, T) + ((d,) if d > 1 else ()))
    rng = np.random.default_rng(11)
    st = k.init(z0, target, rng)
    np.testing.assert_allclose(st.logp, fn(z0), rtol=1e-10)
    if mode == "step":
        draws = np.empty((C, N) + z0.shape[1:])
        for i in range(N):
            st, info = k.step(st, target, rng)
            assert info.accepted is None
            draws[:, i] = st.z
    else:
        st, draws, logp, acc = k.sample(st, target, rng, N, thin=2)
        assert draws.shape == (C, N) + z0.shape[1:] and logp.shape == (C, N) and acc.shape == (C,)
        np.testing.assert_allclose(logp, fn(draws.reshape((C * N,) + z0.shape[1:])).reshape(C, N), rtol=1e-9)
        np.testing.assert_array_equal(st.z, draws[:, -1])
        st2, empty, lp0, _ = k.sample(st, target, rng, 0)
        assert empty.shape == (C, 0) + z0.shape[1:] and lp0.shape == (C, 0) and st2 is st
    assert st.z.shape == z0.shape
    np.testing.assert_allclose(st.logp, fn(st.z), rtol=1e-9)  # the chain's own terms, from the band
    flat = draws.reshape(C, N, T * d)
    assert_mean(flat, m, floor=0.0)
    assert_mean((flat - m) ** 2, np.diag(P), floor=0.0)
    if shared:  # independent draws: lag-1 correlation of the first coordinate ~ 0 (sd 1/sqrt(C N))
        x = (flat[..., 0] - m[0]) / np.sqrt(P[0, 0])
        assert abs(np.mean(x[:, 1:] * x[:, :-1])) < 4 / np.sqrt(C * N)


def test_kalman_kernel_is_reproducible_and_caches_when_shared():
    calls = []
    target, *_ = _local_level_target(counter=calls)
    k = KalmanSmoother()
    z0 = np.zeros((4, 8))

    def run(seed):
        rng = np.random.default_rng(seed)
        st = k.init(z0, target, rng)
        for _ in range(5):
            st, _ = k.step(st, target, rng)
        return st.z

    a = run(3)
    assert len(calls) == 2  # two passes for the factorisation in init, none per step
    np.testing.assert_array_equal(a, run(3))
    assert not np.array_equal(a, run(4))
    calls.clear()
    unshared, *_ = _local_level_target(shared=False, counter=calls)
    st = k.init(z0, unshared, 0)
    for _ in range(3):
        st, _ = k.step(st, unshared, np.random.default_rng(0))
    assert len(calls) == 2 + 3  # then one pass per step, at the step found before


@pytest.mark.parametrize("offset,scale", [(1e5, 1.0), (0.0, 1e-5), (0.0, 1e6), (3e7, 1e3)])
def test_kalman_kernel_is_exact_far_from_the_origin_and_at_any_scale(offset, scale):
    # a start at 0 far from y (emission values ~1e10 there), and states whose posterior standard
    # deviation is far from the step 1: the conditional is still read off to rounding
    T = 7
    target, m, P, fn = _local_level_target(T=T, C=2, offset=offset, scale=scale)
    st = KalmanSmoother().init(np.zeros((2, T)), target, 0)
    _, plain, _, u = st.cache  # the band of delta = x - u, stored as plain tuples
    fb = _factored(plain)
    sd = np.sqrt(np.diag(P))
    for k in range(2):
        assert np.all(np.abs(u[k, :, 0] + fb.mean[k] - m) < 1e-8 * sd)
        S = np.linalg.inv(_dense(fb.band.ab[k]))
        np.testing.assert_allclose(S, P, rtol=1e-8, atol=1e-10 * scale**2)
    st, _ = KalmanSmoother().step(st, target, np.random.default_rng(0))
    np.testing.assert_allclose(st.logp, fn(st.z), rtol=1e-10)


@pytest.mark.parametrize("offset", [0.0, 1e5, 1e8])
def test_conditional_band_gives_the_log_marginal_far_from_the_origin(offset):
    T = 9
    target, m, P, _ = _local_level_target(T=T, C=1, offset=offset)
    lg = target.prior.lg
    mu, S = _dense_prior(lg, T)
    yv = offset + np.random.default_rng(0).normal(size=T)  # as drawn by _local_level_target(seed=0)
    want = multivariate_normal(np.zeros(T), S + 0.49 * np.eye(T)).logpdf(yv - mu)
    fb, u, h = conditional_band(lg, target.emission, np.zeros((1, T, 1)))
    # both sides subtract numbers of size |y|: allow ten roundings of |y| per time step
    assert abs(log_integral(fb)[0] - want) < 1e-10 + T * 1e-15 * offset
    np.testing.assert_allclose(u[0, :, 0] + fb.mean[0], m, rtol=1e-14, atol=1e-12)
    assert 0.1 < h < 1.0  # one conditional standard deviation
    with pytest.raises(ValueError, match="not Gaussian in the state"):
        conditional_band(lg, lambda z: -np.exp(z), np.zeros((1, T, 1)))


def test_kalman_kernel_refactors_when_the_prior_changes():
    target, m, P, _ = _local_level_target(T=5, C=2)
    k = KalmanSmoother()
    st = k.init(np.zeros((2, 5)), target, 0)
    moved = _Prior(target.prior.lg._replace(m0=np.array([40.0])))
    other = ChainTarget(target.fn, moved, target.emission, shared=True)
    z = np.stack([k.step(st, other, np.random.default_rng(i))[0].z for i in range(200)])
    assert z[:, :, 0].mean() > m[0] + 5  # the stale factorisation would centre x_0 at m[0]


def test_kalman_kernel_refuses_what_it_cannot_sample():
    target, *_ = _local_level_target(T=5, C=2)
    sv = ChainTarget(target.fn, target.prior, lambda x: -x / 2 - np.exp(-x) / 2, shared=True)
    with pytest.raises(ValueError, match="not Gaussian in the state"):
        KalmanSmoother().init(np.zeros((2, 5)), sv, 0)
    with pytest.raises(ValueError, match="dimension 1"):
        KalmanSmoother().init(np.zeros((2, 5, 2)), target, 0)
    with pytest.raises(TypeError, match="linear_gaussian"):
        KalmanSmoother().init(np.zeros((2, 5)), ChainTarget(target.fn, object(), target.emission), 0)
    convex = ChainTarget(target.fn, target.prior, lambda x: 5 * x**2, shared=True)
    with pytest.raises(ValueError, match="chain 0 is not positive definite at time step"):
        KalmanSmoother().init(np.zeros((2, 5)), convex, 0)

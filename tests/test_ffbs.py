"""Forward-backward, forward filtering backward sampling, the pool primitives and the FFBS kernel,
each against an oracle: a textbook scaled forward-backward written here as a plain loop over time,
brute-force enumeration of every path for tiny T, and exact path posteriors for the samplers."""

import itertools

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from mcem.core import Continuous, Discrete
from mcem.distributions.chains import LinearGaussian, MarkovChain
from mcem.kernels.base import ChainTarget, Target
from mcem.kernels.ffbs import (
    FFBS,
    forward_backward,
    forward_filter_backward_sample,
    path_log_prior,
    pool_forward,
    pool_forward_backward_sample,
)


# ---------------------------------------------------------------------------- oracles
def naive_forward_backward(pi, As, E):
    """Textbook scaled forward-backward for one chain: pi (K,), As list of T-1 (K, K), E (T, K)
    emission probabilities. Returns loglik, gamma (T, K), xi (T-1, K, K)."""
    T, K = E.shape
    alpha, c = np.zeros((T, K)), np.zeros(T)
    a = pi * E[0]
    c[0] = a.sum()
    alpha[0] = a / c[0]
    for t in range(1, T):
        a = (alpha[t - 1] @ As[t - 1]) * E[t]
        c[t] = a.sum()
        alpha[t] = a / c[t]
    beta = np.ones((T, K))
    for t in range(T - 2, -1, -1):
        beta[t] = As[t] @ (E[t + 1] * beta[t + 1]) / c[t + 1]
    xi = np.zeros((T - 1, K, K))
    for t in range(T - 1):
        xi[t] = alpha[t][:, None] * As[t] * (E[t + 1] * beta[t + 1])[None, :] / c[t + 1]
    return np.log(c).sum(), alpha * beta, xi


def enumerate_paths(li, lA, le):
    """Every path of one chain and its unnormalised log posterior (brute force)."""
    T, K = le.shape
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    lp = li[paths[:, 0]] + le[np.arange(T), paths].sum(-1)
    for t in range(1, T):
        lp = lp + (lA[t - 1] if lA.ndim == 3 else lA)[paths[:, t - 1], paths[:, t]]
    return paths, lp


def brute_force(li, lA, le):
    """loglik, gamma, xi per step, from all K^T paths of one chain (log space throughout)."""
    T, K = le.shape
    paths, lp = enumerate_paths(li, lA, le)
    ll = logsumexp(lp)
    w = np.exp(lp - ll)
    gamma = np.stack([np.bincount(paths[:, t], weights=w, minlength=K) for t in range(T)])
    xi = np.stack([np.bincount(paths[:, t] * K + paths[:, t + 1], weights=w, minlength=K * K).reshape(K, K)
                   for t in range(T - 1)])
    return ll, gamma, xi


def random_chain(rng, K, T=None, zeros=0):
    """Random initial and transition probabilities (time-varying when T is given), with some zeros."""
    shape = (K, K) if T is None else (T - 1, K, K)
    A = rng.dirichlet(np.ones(K), size=shape[:-1])
    flat = A.reshape(-1, K)
    for r in rng.choice(len(flat), size=min(zeros, len(flat)), replace=False):
        flat[r, rng.integers(K)] = 0.0  # an impossible transition
    A = flat.reshape(shape) / flat.reshape(shape).sum(-1, keepdims=True)
    return rng.dirichlet(np.ones(K)), A


def log(x):
    with np.errstate(divide="ignore"):
        return np.log(x)


# ---------------------------------------------------------------------------- forward-backward
def test_forward_backward_matches_textbook_loop():
    rng = np.random.default_rng(1)
    C, T, K = 3, 40, 4
    inits = rng.dirichlet(np.ones(K), size=C)
    _, A = random_chain(rng, K, zeros=3)
    le = rng.normal(size=(C, T, K))
    fb = forward_backward(log(inits), log(A), le)
    assert fb.loglik.shape == (C,) and fb.gamma.shape == (C, T, K) and fb.xi.shape == (C, K, K)
    for c in range(C):
        ll, gamma, xi = naive_forward_backward(inits[c], [A] * (T - 1), np.exp(le[c]))
        np.testing.assert_allclose(fb.loglik[c], ll, rtol=1e-12)
        np.testing.assert_allclose(fb.gamma[c], gamma, atol=1e-12)
        np.testing.assert_allclose(fb.xi[c], xi.sum(0), atol=1e-11)


@pytest.mark.parametrize("layout", ["time", "chain", "chain_time"])
def test_forward_backward_transition_layouts(layout):
    rng = np.random.default_rng(2)
    C, T, K = 2, 9, 3
    pi = rng.dirichlet(np.ones(K))
    A = np.stack([random_chain(rng, K, T, zeros=2)[1] for _ in range(C)])  # (C, T-1, K, K)
    if layout == "time":
        A = np.broadcast_to(A[0], A.shape)
        lA = log(A[0])
    elif layout == "chain":
        A = np.broadcast_to(A[:, :1], A.shape)
        lA = log(A[:, :1])
    else:
        lA = log(A)
    le = rng.normal(size=(C, T, K))
    fb = forward_backward(log(pi), lA, le)
    for c in range(C):
        ll, gamma, xi = naive_forward_backward(pi, list(A[c]), np.exp(le[c]))
        np.testing.assert_allclose(fb.loglik[c], ll, rtol=1e-12)
        np.testing.assert_allclose(fb.gamma[c], gamma, atol=1e-12)
        np.testing.assert_allclose(fb.xi[c], xi.sum(0) if layout == "chain" else xi, atol=1e-12)


@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("time_varying", [False, True])
def test_forward_backward_against_enumeration_with_impossible_transitions(K, time_varying):
    rng = np.random.default_rng(10 + K + 2 * time_varying)
    T, C = 6, 2
    pi, A = random_chain(rng, K, T if time_varying else None, zeros=2)
    pi[0] = 0.0  # an impossible first state too
    pi /= pi.sum()
    le = 3.0 * rng.normal(size=(C, T, K))
    fb = forward_backward(log(pi), log(A), le)
    assert np.all(np.isfinite(fb.gamma)) and np.all(np.isfinite(fb.xi))
    for c in range(C):
        ll, gamma, xi = brute_force(log(pi), log(A), le[c])
        np.testing.assert_allclose(fb.loglik[c], ll, rtol=1e-12)
        np.testing.assert_allclose(fb.gamma[c], gamma, atol=1e-12)
        np.testing.assert_allclose(fb.xi[c], xi if time_varying else xi.sum(0), atol=1e-12)
    assert np.all(fb.gamma[:, 0, 0] == 0.0)


def test_forward_backward_is_stable_far_in_the_tails():
    """Emission terms of -1e4 (probabilities that underflow) still give the exact answer."""
    rng = np.random.default_rng(3)
    T, K = 6, 3
    pi, A = random_chain(rng, K, zeros=1)
    le = -1e4 + 300.0 * rng.normal(size=(1, T, K))
    fb = forward_backward(log(pi), log(A), le)
    ll, gamma, xi = brute_force(log(pi), log(A), le[0])
    np.testing.assert_allclose(fb.loglik[0], ll, rtol=1e-13)
    np.testing.assert_allclose(fb.gamma[0], gamma, atol=1e-12)
    np.testing.assert_allclose(fb.xi[0], xi.sum(0), atol=1e-12)


def test_no_possible_path_and_a_single_step():
    A = np.array([[1.0, 0.0], [0.0, 1.0]])
    le = np.array([[[0.0, -np.inf], [-np.inf, 0.0], [0.0, 0.0]]])  # needs 0 -> 1: impossible
    fb = forward_backward(log(np.array([0.5, 0.5])), log(A), le)
    assert fb.loglik[0] == -np.inf and np.all(fb.gamma == 0) and np.all(fb.xi == 0)
    one = forward_backward(np.log([0.25, 0.75]), log(A), np.array([[[1.0, 2.0]]]))
    np.testing.assert_allclose(one.loglik, [logsumexp(np.log([0.25, 0.75]) + [1.0, 2.0])])
    assert one.xi.shape == (1, 2, 2) and np.all(one.xi == 0)


def test_bad_arguments_are_named():
    le = np.zeros((2, 5, 3))
    with pytest.raises(ValueError, match="log_transition"):
        forward_backward(np.zeros(3), np.zeros((4, 3, 2)), le)
    with pytest.raises(ValueError, match="log_init"):
        forward_backward(np.zeros(2), np.zeros((3, 3)), le)
    with pytest.raises(ValueError, match="log_emission"):
        forward_backward(np.zeros(3), np.zeros((3, 3)), np.full((2, 5, 3), np.nan))
    with pytest.raises(TypeError, match="log_emission"):
        forward_backward(np.zeros(3), np.zeros((3, 3)), np.full((2, 5, 3), "a"))
    with pytest.raises(ValueError, match="uniforms"):
        forward_filter_backward_sample(np.zeros(3), np.zeros((3, 3)), le, np.ones((2, 5)))
    with pytest.raises(ValueError, match="uniforms"):
        forward_filter_backward_sample(np.zeros(3), np.zeros((3, 3)), le, np.zeros((2, 4)))


# ---------------------------------------------------------------------------- sampling
def assert_path_frequencies(draws, paths, lp, alpha=1e-3):
    """Pearson chi-square of the drawn paths against their exact posterior probabilities (paths of
    small expected count pooled), plus: no path of probability zero is ever drawn."""
    K, T = paths.max() + 1, paths.shape[1]
    code = (paths * K ** np.arange(T)[::-1]).sum(1)
    assert np.array_equal(code, np.arange(K**T))  # paths in lexicographic order
    p = np.exp(lp - logsumexp(lp))
    counts = np.bincount((draws * K ** np.arange(T)[::-1]).sum(1), minlength=K**T)
    assert counts[p == 0].sum() == 0
    n = len(draws)
    expected = n * p
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    assert stats.chisquare(obs[keep], exp[keep]).pvalue > alpha


@pytest.mark.parametrize("time_varying", [False, True])
def test_ffbs_draws_follow_the_exact_path_posterior(time_varying):
    rng = np.random.default_rng(20 + time_varying)
    T, K, n = 6, 3, 20000
    pi, A = random_chain(rng, K, T if time_varying else None, zeros=3)
    le1 = 1.5 * rng.normal(size=(T, K))
    s, ll = forward_filter_backward_sample(log(pi), log(A), np.broadcast_to(le1, (n, T, K)), rng.random((n, T)))
    assert s.shape == (n, T) and s.dtype == np.int64
    paths, lp = enumerate_paths(log(pi), log(A), le1)
    np.testing.assert_allclose(ll, logsumexp(lp), rtol=1e-12)
    assert_path_frequencies(s, paths, lp)


def test_path_log_prior_matches_the_markov_chain():
    rng = np.random.default_rng(13)
    for tv in (False, True):
        pi, A = random_chain(rng, 3, 7 if tv else None, zeros=2)
        mc = MarkovChain(pi, A, length=7)
        s = mc.sample(rng, (50,))
        np.testing.assert_allclose(path_log_prior(mc.log_init, mc.log_transition, s), mc.log_prob(s), rtol=1e-12)
        C = 4  # per-chain layouts: (C, K) and (C, 1, K, K) / (C, T-1, K, K)
        lA = np.broadcast_to(mc.log_transition, (C,) + (() if tv else (1,)) + mc.log_transition.shape)
        got = path_log_prior(np.broadcast_to(mc.log_init, (C, 3)), lA, s[:C])
        np.testing.assert_allclose(got, mc.log_prob(s[:C]), rtol=1e-12)


def test_ffbs_is_a_function_of_the_uniforms():
    rng = np.random.default_rng(4)
    C, T, K = 3, 30, 4
    pi, A = random_chain(rng, K)
    le = rng.normal(size=(C, T, K))
    draw = [forward_filter_backward_sample(log(pi), log(A), le, np.random.default_rng(7).random((C, T)))[0]
            for _ in range(2)]
    np.testing.assert_array_equal(draw[0], draw[1])
    other = forward_filter_backward_sample(log(pi), log(A), le, np.random.default_rng(8).random((C, T)))[0]
    assert np.any(other != draw[0])


# ---------------------------------------------------------------------------- pools
def _pool_problem(rng, C, T, P, d):
    B = rng.normal(size=(d, d))
    lg = LinearGaussian(rng.normal(size=d), B @ B.T + np.eye(d), 0.8 * np.eye(d) + 0.1 * rng.normal(size=(d, d)),
                        0.3 * rng.normal(size=d), 0.5 * np.eye(d) + 0.1 * np.ones((d, d)))
    return lg, rng.normal(size=(C, T, P, d)), rng.normal(size=(C, T, P))


def _mvn(x, mean, cov):
    return stats.multivariate_normal(mean, cov).logpdf(x)


def test_pool_forward_matches_a_loop():
    rng = np.random.default_rng(5)
    C, T, P, d = 2, 7, 5, 2
    lg, pool, lw = _pool_problem(rng, C, T, P, d)
    lw[0, 3, 1] = -np.inf  # a candidate removed
    got = pool_forward(pool, lw, lg)
    for c in range(C):
        a = np.array([_mvn(pool[c, 0, j], lg.m0, lg.P0) for j in range(P)]) + lw[c, 0]
        for t in range(1, T):
            lt = np.array([[_mvn(pool[c, t, j], lg.F @ pool[c, t - 1, i] + lg.c, lg.Q) for j in range(P)]
                           for i in range(P)])
            a = lw[c, t] + logsumexp(a[:, None] + lt, axis=0)
        np.testing.assert_allclose(got[c], logsumexp(a), rtol=1e-12)


def test_pool_sampler_draws_the_exact_posterior_over_pool_paths():
    rng = np.random.default_rng(6)
    T, P, d, n = 4, 3, 1, 20000
    lg, pool, lw = _pool_problem(rng, 1, T, P, d)
    lw[0, 2, 0] = -np.inf
    paths = np.array(list(itertools.product(range(P), repeat=T)))
    lp = np.array([_mvn(pool[0, 0, p[0]], lg.m0, lg.P0) + lw[0, 0, p[0]] + sum(
        _mvn(pool[0, t, p[t]], lg.F @ pool[0, t - 1, p[t - 1]] + lg.c, lg.Q) + lw[0, t, p[t]] for t in range(1, T))
        for p in paths])
    idx, logz = pool_forward_backward_sample(pool[..., 0].repeat(n, 0), lw.repeat(n, 0), lg, rng.random((n, T)))
    assert idx.shape == (n, T) and idx.dtype == np.int64
    np.testing.assert_allclose(logz, logsumexp(lp), rtol=1e-12)  # the normaliser sums every pool path
    assert_path_frequencies(idx, paths, lp)


def test_pool_bad_arguments():
    rng = np.random.default_rng(7)
    lg, pool, lw = _pool_problem(rng, 2, 3, 4, 2)
    with pytest.raises(ValueError, match="lg.Q"):
        pool_forward(pool, lw, lg._replace(Q=-np.eye(2)))
    with pytest.raises(ValueError, match="pool"):
        pool_forward(pool[:, :2], lw, lg)
    with pytest.raises(TypeError, match="lg"):
        pool_forward(pool, lw, object())


# ---------------------------------------------------------------------------- the kernel
class _Counted:
    """An emission function that counts its calls: per-step terms of y_t ~ N(mu_s, 1)."""

    def __init__(self, y, mu):
        self.y, self.mu, self.calls = y, mu, 0

    def __call__(self, zs):
        self.calls += 1
        return -0.5 * (self.y - self.mu[np.asarray(zs)]) ** 2


def _hmm_target(rng, T=6, K=3, shared=False):
    pi, A = random_chain(rng, K, zeros=2)
    prior = MarkovChain(pi, A, length=T)
    emission = _Counted(rng.normal(size=T), np.linspace(-1.0, 1.0, K))
    return ChainTarget(lambda z: None, prior, emission, shared=shared)


def test_ffbs_kernel_draws_the_exact_posterior_and_its_own_terms():
    rng = np.random.default_rng(8)
    tgt = _hmm_target(rng, shared=True)
    T, K = tgt.prior.length, tgt.prior.K
    kernel = FFBS().bind(Discrete(K, shape=(T,)))
    assert kernel.K == K and kernel.chain and kernel.discrete and not kernel.metropolis and kernel.name == "ffbs"
    C = 4000
    state = kernel.init(np.zeros((C, T), dtype=int), tgt, rng)
    draws = []
    for _ in range(3):
        state, info = kernel.step(state, tgt, rng)
        assert info.accepted is None
        np.testing.assert_allclose(state.logp, tgt.prior.log_prob(state.z) + tgt.emission(state.z).sum(-1),
                                   rtol=1e-12)
        draws.append(state.z)
    paths, lp = enumerate_paths(tgt.prior.log_init, tgt.prior.log_transition, tgt.emission(
        np.broadcast_to(np.arange(K)[:, None], (K, T))).T)
    assert_path_frequencies(np.concatenate(draws), paths, lp)


def test_ffbs_kernel_reuses_its_filter_only_while_the_target_is_the_same():
    rng = np.random.default_rng(9)
    tgt = _hmm_target(rng, shared=True)
    kernel = FFBS(K=3)
    state = kernel.init(np.zeros((4, 6), dtype=int), tgt)
    n0 = tgt.emission.calls
    for _ in range(3):
        state, _ = kernel.step(state, tgt, rng)
    assert tgt.emission.calls == n0 + 1  # one evaluation on the K states, then the kept filter
    state = kernel.refresh(state, tgt)
    n1 = tgt.emission.calls
    state, _ = kernel.step(state, tgt, rng)
    assert tgt.emission.calls == n1 + 1  # refresh dropped the kept filter
    # a new target at another theta (another prior object) that allows only state 2: followed at once
    forced = MarkovChain(np.array([0.0, 0.0, 1.0]), np.eye(3), length=6)
    state, _ = kernel.step(state, ChainTarget(lambda z: None, forced, tgt.emission, shared=True), rng)
    assert np.all(state.z == 2)
    unshared = ChainTarget(lambda z: None, tgt.prior, tgt.emission, shared=False)
    n2 = tgt.emission.calls
    for _ in range(2):
        state, _ = kernel.step(state, unshared, rng)
    assert tgt.emission.calls == n2 + 2


def test_ffbs_kernel_is_reproducible_from_the_seed():
    tgt = _hmm_target(np.random.default_rng(10))
    kernel = FFBS(K=3)
    out = []
    for _ in range(2):
        rng = np.random.default_rng(11)
        state = kernel.init(np.zeros((5, 6), dtype=int), tgt, rng)
        out.append(kernel.step(state, tgt, rng)[0].z)
    np.testing.assert_array_equal(out[0], out[1])


def test_ffbs_kernel_errors():
    rng = np.random.default_rng(12)
    tgt = _hmm_target(rng)
    kernel = FFBS(K=3)
    with pytest.raises(TypeError, match="ChainTarget"):
        kernel.init(np.zeros((2, 6), dtype=int), Target(lambda z: np.zeros(2)))
    with pytest.raises(TypeError, match="MarkovChain"):
        kernel.init(np.zeros((2, 6), dtype=int), ChainTarget(lambda z: None, object(), tgt.emission))
    with pytest.raises(ValueError, match="z0"):
        kernel.init(np.full((2, 6), 3), tgt)
    with pytest.raises(ValueError, match="z0"):
        kernel.init(np.zeros((2, 5), dtype=int), tgt)
    with pytest.raises(ValueError, match="states"):
        FFBS(K=2).init(np.zeros((2, 6), dtype=int), tgt)
    state = kernel.init(np.zeros((2, 6), dtype=int), tgt)
    bad = ChainTarget(lambda z: None, tgt.prior, lambda zs: np.zeros(np.shape(zs)[-2:]))
    with pytest.raises(ValueError, match="emission terms"):
        kernel.step(state, bad, rng)
    with pytest.raises(TypeError, match="Discrete"):
        FFBS().bind(Continuous(shape=(6,)))
    with pytest.raises(ValueError, match="shape"):
        FFBS().bind(Discrete(3, shape=(6, 2)))
    with pytest.raises(ValueError, match="K"):
        FFBS(K=0)

"""Forward filtering, backward sampling: exact draws of a whole chain of states in one pass.

For hidden Markov chains ``s_0..s_{T-1}`` on states ``0..K-1`` (initial log probabilities
``log_init``; transition log probabilities ``log_transition``, row ``i`` holding
``log p(s_t = . | s_{t-1} = i)``, one matrix or one per step; emission log terms
``log_emission[c, t, k]``) the forward filter computes ``log p(s_t | e_{0:t})`` and the
log-likelihood, and the backward pass the smoothed marginals (:func:`forward_backward`) or one
exact draw of each path from ``p(s | e)`` (:func:`forward_filter_backward_sample`), O(T K^2)
per chain. The recursions run in log space, normalised at every step (emissions far in the tails
and impossible transitions, ``-inf``, are exact), are compiled once per shape with ``jax.jit``,
scan over time with ``lax.scan`` and are vectorised over chains. Inputs and outputs are numpy
float64 arrays; the uniforms of the samplers come from the caller's Generator.

The pool versions (:func:`pool_forward_backward_sample`, :func:`pool_forward`) run the same
recursions for a continuous chain restricted to ``P`` candidate states per step (conditional SMC
with independent proposals), with the transition densities of the linear-Gaussian prior
``x_t | x_{t-1} ~ N(F x_{t-1} + c, Q)`` computed inside the scan (memory O(T P)). :class:`FFBS`
is the site kernel of a discrete chain latent (a :class:`~mcem.kernels.base.ChainTarget`).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .._jax import jax, jax_namespace, x64
from .base import ChainTarget, Kernel, SiteInfo

__all__ = ["FFBS", "FFBSState", "ForwardBackward", "forward_backward", "forward_filter_backward_sample",
           "path_log_prior", "pool_forward", "pool_forward_backward_sample"]

_LOG_2PI = float(np.log(2.0 * np.pi))
_JITTED = {}


class ForwardBackward(NamedTuple):
    """What :func:`forward_backward` returns."""

    loglik: np.ndarray  # (C,): log of the sum over paths
    gamma: np.ndarray  # (C, T, K): p(s_t = k | e)
    xi: np.ndarray  # (C, K, K) summed over t, or (C, T-1, K, K): p(s_t = i, s_{t+1} = j | e)


# ---------------------------------------------------------------------------- compiled pieces
def _compiled(key, build, axes):
    """``jit(vmap(build(), in_axes=axes))``, built once per key and axes."""
    f = _JITTED.get(key + axes)
    if f is None:
        f = _JITTED[key + axes] = jax().jit(jax().vmap(build(), in_axes=axes))
    return f


def _lse(jnp, x, axis):
    """log-sum-exp along ``axis``; -inf (not NaN) when every entry is -inf."""
    m = jnp.max(x, axis=axis, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return jnp.log(jnp.sum(jnp.exp(x - m), axis=axis)) + jnp.squeeze(m, axis)


def _draw(jnp, w, u):
    """The index drawn from unnormalised log weights ``w`` (n,) by inverse CDF at ``u`` in [0, 1);
    never an index of weight zero (unless every weight is zero)."""
    m = jnp.max(w)
    p = jnp.exp(w - jnp.where(jnp.isfinite(m), m, 0.0))
    cdf = jnp.cumsum(p)
    above = cdf > u * cdf[-1]
    last_positive = p.shape[0] - 1 - jnp.argmax((p > 0)[::-1])
    return jnp.where(jnp.any(above), jnp.argmax(above), last_positive)


def _normalise(jnp, a):  # (a less its log-sum-exp c unless c is -inf, c)
    c = _lse(jnp, a, 0)
    return a - jnp.where(jnp.isfinite(c), c, 0.0), c


def _filter_fn(tv):
    """One chain's forward filter: (log filtered marginals (T, K), log step normalisers (T,))."""
    jnp, lax = jax_namespace().np, jax().lax

    def run(li, lA, le):
        a0, c0 = _normalise(jnp, li + le[0])

        def body(a, xs):
            At, et = xs
            b, c = _normalise(jnp, _lse(jnp, a[:, None] + (At if tv else lA), 0) + et)
            return b, (b, c)

        _, (al, cs) = lax.scan(body, a0, (lA if tv else jnp.zeros(le.shape[0] - 1), le[1:]))
        return jnp.concatenate([a0[None], al]), jnp.concatenate([c0[None], cs])

    return run


def _smooth_fn(tv):
    """One chain's backward pass: (loglik, gamma (T, K), xi summed (K, K) or (T-1, K, K))."""
    jnp, lax = jax_namespace().np, jax().lax
    run_filter = _filter_fn(tv)

    def run(li, lA, le):
        alphas, cs = run_filter(li, lA, le)
        T, K = le.shape

        def body(carry, xs):
            b_next, acc = carry
            At, a_t, e_next, c_next = xs
            m = (At if tv else lA) + (e_next + b_next)[None, :]
            xi_t = jnp.exp(a_t[:, None] + m - c_next)
            b = _lse(jnp, m, 1) - c_next
            return (b, acc if tv else acc + xi_t), (b, xi_t if tv else None)

        xs = (lA if tv else jnp.zeros(T - 1), alphas[:-1], le[1:], jnp.where(jnp.isfinite(cs), cs, 0.0)[1:])
        (_, acc), (bs, xis) = lax.scan(body, (jnp.zeros(K), jnp.zeros((K, K))), xs, reverse=True)
        return jnp.sum(cs), jnp.exp(alphas + jnp.concatenate([bs, jnp.zeros((1, K))])), xis if tv else acc

    return run


def _sample_fn(tv):
    """One chain's backward sampler from its filtered marginals: states (T,)."""
    jnp, lax = jax_namespace().np, jax().lax

    def run(alphas, lA, u):
        j_last = _draw(jnp, alphas[-1], u[-1])

        def body(j_next, xs):
            At, a_t, u_t = xs
            j = _draw(jnp, a_t + (At if tv else lA)[:, j_next], u_t)
            return j, j

        xs = (lA if tv else jnp.zeros(u.shape[0] - 1), alphas[:-1], u[:-1])
        _, js = lax.scan(body, j_last, xs, reverse=True)
        return jnp.concatenate([js, j_last[None]])

    return run


def _axes(li, lA, tv):
    return (0 if li.ndim == 2 else None, 0 if lA.ndim == 3 + tv else None, 0)


def _discrete_filter(li, lA, le, tv):
    """Batched forward filter (JAX arrays): alphas (C, T, K), loglik (C,)."""
    axes = _axes(li, lA, tv)
    alphas, cs = _compiled(("filter", tv), lambda: _filter_fn(tv), axes)(li, lA, le)
    return alphas, cs.sum(axis=1)


def _discrete_sample(alphas, lA, u, tv):
    axes = (0, 0 if lA.ndim == 3 + tv else None, 0)
    return _compiled(("sample", tv), lambda: _sample_fn(tv), axes)(alphas, lA, u)


# ---------------------------------------------------------------------------- argument checks
def _real(x, name, ndims, allow_neg_inf=True):
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    a = np.asarray(a, dtype=np.float64)
    if a.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions, got shape {a.shape}")
    bad = np.isnan(a) | (a == np.inf) | (False if allow_neg_inf else a == -np.inf)
    if np.any(bad):
        raise ValueError(f"{name} must hold {'log values (finite or -inf)' if allow_neg_inf else 'finite values'}, "
                         f"got {int(bad.sum())} NaN or infinite value(s)")
    return a


def _discrete_args(log_init, log_transition, log_emission):
    """Checked float arrays and whether the transitions vary with time."""
    le = _real(log_emission, "log_emission", (3,))
    C, T, K = le.shape
    if 0 in le.shape:
        raise ValueError(f"log_emission must have shape (chains, T, K) with no empty axis, got {le.shape}")
    li = _real(log_init, "log_init", (1, 2))
    if li.shape not in ((K,), (C, K)):
        raise ValueError(f"log_init must have shape ({K},) or ({C}, {K}) to match log_emission {le.shape}, "
                         f"got {li.shape}")
    lA = _real(log_transition, "log_transition", (2, 3, 4))
    if lA.ndim == 4 and lA.shape[1] == 1:  # (C, 1, K, K): one matrix per chain
        lA = lA[:, 0]
        tv, ok = False, lA.shape == (C, K, K)
    else:
        tv = lA.ndim >= 3
        ok = lA.shape[-2:] == (K, K) and (lA.ndim == 2 or lA.shape[-3] == T - 1) and (lA.ndim < 4 or lA.shape[0] == C)
    if not ok:
        raise ValueError(f"log_transition must have shape ({K}, {K}), ({T - 1}, {K}, {K}) (time-varying), ({C}, 1, "
                         f"{K}, {K}) or ({C}, {T - 1}, {K}, {K}) (per chain) to match log_emission {le.shape}, "
                         f"got {np.shape(log_transition)}")
    if tv and T == 1:
        lA, tv = np.zeros((K, K)), False  # no transition at all
    return li, lA, le, tv


def _uniforms(uniforms, shape):
    u = _real(uniforms, "uniforms", (2,), allow_neg_inf=False)
    if u.shape != shape or np.any((u < 0) | (u >= 1)):
        raise ValueError(f"uniforms must have shape {shape} with values in [0, 1), got shape {u.shape}"
                         + (f" with values in [{u.min()}, {u.max()}]" if u.size else ""))
    return u


# ---------------------------------------------------------------------------- discrete chains
def forward_backward(log_init, log_transition, log_emission) -> ForwardBackward:
    """Log-likelihood, smoothed marginals and pairwise posterior counts of discrete chains.

    Parameters
    ----------
    log_init : array (K,) or (C, K)
        ``log p(s_0 = k)``.
    log_transition : array (K, K), (T-1, K, K), (C, 1, K, K) or (C, T-1, K, K)
        ``log p(s_t = j | s_{t-1} = i)`` at ``[..., i, j]``: one matrix, one per step
        ``t = 1..T-1`` (entry ``t - 1``), one per chain, or one per chain and step. ``-inf``
        marks an impossible transition.
    log_emission : array (C, T, K)
        The emission log terms of state ``k`` at step ``t`` of chain ``c``.

    Returns
    -------
    ForwardBackward
        ``loglik`` (C,): log of the sum over all paths of ``exp(log prior + emission terms)``;
        ``gamma`` (C, T, K): ``p(s_t = k | e)``; ``xi``: ``p(s_t = i, s_{t+1} = j | e)`` summed
        over ``t`` (C, K, K), or per step (C, T-1, K, K) when the transitions vary with time.
        A chain with ``loglik == -inf`` (no path possible) has all-zero ``gamma`` and ``xi``.
    """
    li, lA, le, tv = _discrete_args(log_init, log_transition, log_emission)
    axes = _axes(li, lA, tv)
    with x64():
        ll, gamma, xi = _compiled(("smooth", tv), lambda: _smooth_fn(tv), axes)(li, lA, le)
        return ForwardBackward(np.array(ll), np.array(gamma), np.array(xi))


def forward_filter_backward_sample(log_init, log_transition, log_emission, uniforms):
    """One exact draw of each chain's path from ``p(s | e)`` (forward filter, backward sampling).

    Parameters
    ----------
    log_init, log_transition, log_emission
        As in :func:`forward_backward`.
    uniforms : array (C, T)
        Uniform numbers in [0, 1) (``rng.random((C, T))``): the draw is a deterministic function
        of them, so it is reproducible from the caller's Generator.

    Returns
    -------
    states : ndarray (C, T) int64
    loglik : ndarray (C,)
        The log-likelihood (as in :func:`forward_backward`); a chain with ``-inf`` has no
        possible path and its ``states`` are meaningless.
    """
    li, lA, le, tv = _discrete_args(log_init, log_transition, log_emission)
    u = _uniforms(uniforms, le.shape[:2])
    with x64():
        alphas, ll = _discrete_filter(li, lA, le, tv)
        s = _discrete_sample(alphas, lA, u, tv)
        return np.array(s, dtype=np.int64), np.array(ll)


# ---------------------------------------------------------------------------- pools (continuous)
def _gauss_parts(S, name):
    """(inverse Cholesky factor, log determinant) of the covariance ``S``."""
    try:
        if not np.allclose(S, S.T, rtol=1e-8, atol=1e-300):
            raise np.linalg.LinAlgError
        L = np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        raise ValueError(f"lg.{name} must be a symmetric positive definite matrix, got {S.tolist()}") from None
    return np.linalg.inv(L), 2.0 * float(np.log(np.diag(L)).sum())


def _pool_args(pool, log_weight, lg):
    lw = _real(log_weight, "log_weight", (3,))
    C, T, P = lw.shape
    if 0 in lw.shape:
        raise ValueError(f"log_weight must have shape (chains, T, P) with no empty axis, got {lw.shape}")
    x = _real(pool, "pool", (3, 4), allow_neg_inf=False)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[:3] != (C, T, P):
        raise ValueError(f"pool must have shape ({C}, {T}, {P}, d) to match log_weight {lw.shape}, got {x.shape}")
    d = x.shape[3]
    parts = {}
    for name, shape in (("m0", (d,)), ("P0", (d, d)), ("F", (d, d)), ("c", (d,)), ("Q", (d, d))):
        if not hasattr(lg, name):
            raise TypeError(f"lg must be a LinearGaussian (m0, P0, F, c, Q), got {type(lg).__name__} without {name!r}")
        v = _real(getattr(lg, name), f"lg.{name}", (0, 1, 2), allow_neg_inf=False)
        if v.size != int(np.prod(shape)):
            raise ValueError(f"lg.{name} must have shape {shape} for a state of dimension d={d}, got {v.shape}")
        parts[name] = v.reshape(shape)
    (W0, ld0), (WQ, ldQ) = _gauss_parts(parts["P0"], "P0"), _gauss_parts(parts["Q"], "Q")
    consts = (parts["m0"], W0, -0.5 * (d * _LOG_2PI + ld0), parts["F"], parts["c"], WQ, -0.5 * (d * _LOG_2PI + ldQ))
    return x, lw, consts


def _pool_filter_fn():
    """One chain's pool filter: alphas (T, P) normalised per step, log normaliser."""
    jnp, lax = jax_namespace().np, jax().lax

    def run(x, lw, m0, W0, k0, F, c, WQ, kQ):
        r0 = (x[0] - m0) @ W0.T
        a0, c0 = _normalise(jnp, k0 - 0.5 * jnp.sum(r0 * r0, -1) + lw[0])

        def body(a, xs):
            x_prev, x_t, lw_t = xs
            r = (x_t[None, :, :] - (x_prev @ F.T + c)[:, None, :]) @ WQ.T  # (P_prev, P_t, d)
            lt = kQ - 0.5 * jnp.sum(r * r, -1)
            b, cc = _normalise(jnp, _lse(jnp, a[:, None] + lt, 0) + lw_t)
            return b, (b, cc)

        _, (al, cs) = lax.scan(body, a0, (x[:-1], x[1:], lw[1:]))
        return jnp.concatenate([a0[None], al]), c0 + jnp.sum(cs)

    return run


def _pool_sample_fn():
    """One chain's backward sampler through its pool: candidate indices (T,)."""
    jnp, lax = jax_namespace().np, jax().lax

    def run(alphas, x, u, F, c, WQ):
        j_last = _draw(jnp, alphas[-1], u[-1])

        def body(x_next, xs):
            a_t, x_t, u_t = xs
            r = (x_next[None, :] - (x_t @ F.T + c)) @ WQ.T
            j = _draw(jnp, a_t - 0.5 * jnp.sum(r * r, -1), u_t)
            return x_t[j], j

        _, js = lax.scan(body, x[-1, j_last], (alphas[:-1], x[:-1], u[:-1]), reverse=True)
        return jnp.concatenate([js, j_last[None]])

    return run


def _pool_run(x, lw, consts, u=None):
    axes = (0, 0) + (None,) * 7
    with x64():
        alphas, logz = _compiled(("pool_filter",), _pool_filter_fn, axes)(x, lw, *consts)
        if u is None:
            return None, np.array(logz)
        f = _compiled(("pool_sample",), _pool_sample_fn, (0, 0, 0, None, None, None))
        return np.array(f(alphas, x, u, *consts[3:6]), dtype=np.int64), np.array(logz)


def pool_forward(pool, log_weight, lg):
    """The log forward normaliser of each chain restricted to a pool of candidate states.

    With ``alpha_0(j) = log N(pool[0, j]; m0, P0) + log_weight[0, j]`` and
    ``alpha_t(j) = log_weight[t, j] + logsumexp_i(alpha_{t-1}(i) + log N(pool[t, j]; F pool[t-1, i] + c, Q))``,
    returns ``logsumexp_j alpha_{T-1}(j)``.

    Parameters
    ----------
    pool : array (C, T, P, d), or (C, T, P) for a scalar state
        The candidate states of each chain at each step.
    log_weight : array (C, T, P)
        The log weight of each candidate at its step (emission minus log proposal density);
        ``-inf`` removes a candidate.
    lg : LinearGaussian
        The chain's prior ``(m0 (d,), P0 (d, d), F (d, d), c (d,), Q (d, d))``; ``P0`` and ``Q``
        positive definite.

    Returns
    -------
    ndarray (C,)
        ``logsumexp_j alpha_{T-1}(j)`` of each chain.
    """
    x, lw, consts = _pool_args(pool, log_weight, lg)
    return _pool_run(x, lw, consts)[1]


def pool_forward_backward_sample(pool, log_weight, lg, uniforms):
    """One exact draw of each chain's path from the discrete posterior over its pool paths: the
    forward filter of :func:`pool_forward`, then ``j_{T-1} ~ exp(alpha_{T-1})`` and
    ``j_t ~ exp(alpha_t(i) + log N(pool[t+1, j_{t+1}]; F pool[t, i] + c, Q))``.

    Parameters
    ----------
    pool, log_weight, lg
        As in :func:`pool_forward`.
    uniforms : array (C, T)
        Uniform numbers in [0, 1) from the caller's Generator.

    Returns
    -------
    indices : ndarray (C, T) int64
        The chosen candidate at each step: the path is ``pool[c, t, indices[c, t]]``.
    log_normaliser : ndarray (C,)
        As :func:`pool_forward` returns.
    """
    x, lw, consts = _pool_args(pool, log_weight, lg)
    return _pool_run(x, lw, consts, _uniforms(uniforms, lw.shape[:2]))


# ---------------------------------------------------------------------------- the site kernel
class FFBSState(NamedTuple):
    z: np.ndarray  # (chains, T) integers in 0..K-1
    logp: np.ndarray  # (chains,): the chain's own terms at z (prior log probability + emission terms)


def path_log_prior(log_init, log_transition, s):
    """``log p(s)`` of paths ``s`` (C, T) under :func:`forward_backward`'s ``log_init`` and
    ``log_transition`` (any of its layouts): shape (C,)."""
    s = np.asarray(s, dtype=np.int64)
    (C, T), c, t = s.shape, np.arange(s.shape[0])[:, None], np.arange(s.shape[1] - 1)[None, :]
    li, lA = np.asarray(log_init, dtype=float), np.asarray(log_transition, dtype=float)
    out = li[s[:, 0]] if li.ndim == 1 else li[c[:, 0], s[:, 0]]
    if T == 1:
        return out
    idx = {2: (), 3: (t,), 4: (c, t)}[lA.ndim] if lA.ndim < 4 or lA.shape[1] == T - 1 else (c, 0 * t)
    return out + lA[idx + (s[:, :-1], s[:, 1:])].sum(axis=-1)


class FFBS(Kernel):
    """Forward filtering, backward sampling for a discrete chain latent: every step draws each
    chain's whole path exactly from its full conditional (no Metropolis test, no mixing time).

    The emission terms are evaluated once per step on a ``(K, chains, T)`` broadcast array of the
    K states. When the target is ``shared`` (the chain is the model's only latent) one forward
    filter (on ``(K, 1, T)``) serves every chain, and it is kept at one theta (one prior object)
    until :meth:`refresh`, so that a following step costs one backward pass.

    Parameters
    ----------
    K : int, optional
        Number of states (taken from the latent declaration when the kernel is bound to it).
    """

    metropolis = False
    uses_cached_logp = False
    discrete = True
    chain = True
    name = "ffbs"

    def __init__(self, K=None):
        if K is not None and (not isinstance(K, numbers.Integral) or isinstance(K, bool) or K < 1):
            raise ValueError(f"FFBS: K must be an int >= 1 or None, got {K!r}")
        self.K = None if K is None else int(K)
        self._memo = None

    def options(self):
        return {"K": self.K}

    def bind(self, spec):
        self.check_spec(spec)
        if len(spec.shape) != 1 or getattr(spec, "unit", False):
            raise ValueError(f"FFBS updates a chain of states of shape (T,), got a latent {spec!r}")
        if self.K is not None and self.K != spec.K:
            raise ValueError(f"FFBS: K={self.K} does not match the latent's K={spec.K}")
        return self.replace(K=spec.K) if self.K is None else self

    # ------------------------------------------------------------------ kernel interface
    def init(self, z0, target, rng=None):
        prior, z = self._prior(target), np.asarray(z0)
        T = getattr(prior, "length", z.shape[-1] if z.ndim else 0)
        if (z.ndim != 2 or z.shape[1] != T or not np.issubdtype(z.dtype, np.number) or np.any(z != np.round(z))
                or np.any((z < 0) | (z >= self.K))):
            raise ValueError(f"FFBS: z0 must be an integer array of shape (chains, {T}) with values in "
                             f"0..{self.K - 1}, got shape {z.shape} and dtype {z.dtype}")
        z = np.array(z, dtype=np.int64)
        return FFBSState(z, self._own(z, prior, target))

    def refresh(self, state, target):
        self._memo = None
        return state._replace(logp=self._own(state.z, self._prior(target), target))

    def step(self, state, target, rng, adapt=False):
        prior, (C, T), memo = self._prior(target), state.z.shape, self._memo
        if memo is None or not target.shared or memo[0] is not prior or memo[1] != (C, T):
            n = 1 if target.shared else C  # shared: the chains' emissions agree, one filter serves all
            li, lA, le, tv = _discrete_args(prior.log_init, prior.log_transition, self._emission_states(target, n, T))
            with x64():
                alphas, ll = _discrete_filter(li, lA, le, tv)
                ll = np.array(ll)
                if n < C:
                    alphas = jax().numpy.broadcast_to(alphas, (C,) + tuple(alphas.shape[1:]))
                    le = np.broadcast_to(le, (C,) + le.shape[1:])
            if np.any(ll == -np.inf):
                raise ValueError(f"FFBS: every path of chain(s) {np.flatnonzero(ll == -np.inf).tolist()} has "
                                 "probability zero under the chain's prior and emission terms at this theta")
            memo = (prior, (C, T), alphas, lA, le, tv)
            self._memo = memo if target.shared else None
        _, _, alphas, lA, le, tv = memo
        u = rng.random((C, T))
        with x64():
            s = np.array(_discrete_sample(alphas, lA, u, tv), dtype=np.int64)
        own = np.take_along_axis(le, s[..., None], axis=-1)[..., 0].sum(axis=-1)
        logp = path_log_prior(prior.log_init, prior.log_transition, s) + own
        return FFBSState(s, logp), SiteInfo()

    # ------------------------------------------------------------------ internals
    def _prior(self, target):
        if self.K is None:
            raise ValueError("FFBS: K is not set; pass FFBS(K=...) or bind it to a Discrete latent")
        if not isinstance(target, ChainTarget):
            raise TypeError("FFBS needs a ChainTarget (a latent declared as a chain: a MarkovChain in the model "
                            f"language, or Model(chains={{name: mcem.Chain(...)}})), got {type(target).__name__}")
        prior = target.prior
        if not (hasattr(prior, "log_init") and hasattr(prior, "log_transition")):
            raise TypeError(f"FFBS needs a discrete Markov chain prior (MarkovChain), got {type(prior).__name__}")
        if np.shape(prior.log_init)[-1] != self.K:
            raise ValueError(f"FFBS: the chain's prior has {np.shape(prior.log_init)[-1]} states, "
                             f"the kernel K={self.K}")
        return prior

    def _emission_states(self, target, C, T):
        K = self.K
        le = np.asarray(target.emission(np.broadcast_to(np.arange(K).reshape(K, 1, 1), (K, C, T))), dtype=float)
        if le.shape != (K, C, T):
            raise ValueError(f"FFBS: evaluated on the {K} states (an array of shape {(K, C, T)}) the emission terms "
                             f"must have shape {(K, C, T)}, got {le.shape}; make them broadcast over leading axes")
        return np.moveaxis(le, 0, -1)

    def _own(self, z, prior, target):
        e = np.asarray(target.emission(z), dtype=float)
        if e.shape != z.shape:
            raise ValueError(f"FFBS: the emission terms at paths of shape {z.shape} must have that shape, "
                             f"got {e.shape}")
        return path_log_prior(prior.log_init, prior.log_transition, z) + e.sum(axis=-1)

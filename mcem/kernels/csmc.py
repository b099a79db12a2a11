"""Conditional sequential Monte Carlo for continuous chains whose emissions are not Gaussian.

A particle Gibbs kernel with backward sampling in which the particles at each time step are drawn
independently of their ancestors (the *embedded hidden Markov model* construction): at every time
step t the current state goes to a random slot of a pool of ``n_particles`` candidates, the other
slots are filled with independent draws from a proposal rho_t, and a new path is drawn exactly
from the posterior restricted to paths through the pools by forward filtering and backward
sampling over the pools (the chain's own transition density between candidates, the emission
divided by rho_t at each candidate). This leaves p(path | everything else) invariant for any fixed
rho_t; because the candidates do not depend on their ancestors, the emission terms of all
candidates at all time steps come from ONE batched evaluation of the model, and the forward pass
is a compiled scan (O(T P^2) per sweep with P candidates).

The proposal rho_t is a normal distribution centred at the mean of a Gaussian approximation of
the path's full conditional (the chain's Gaussian prior with each emission term replaced by its
second-order expansion, three Newton steps toward the mode), with that approximation's marginal
standard deviation (from 32 draws) widened by ``spread``. It is rebuilt when theta changes
(:meth:`CSMC.refresh`, at the start of each E step) and during burn-in, and held fixed while
draws are kept.

The default of 32 candidates per time step gives nearly independent paths per sweep on the
stochastic-volatility model (T = 500) at about 32 emission evaluations per sweep; fewer
candidates cost less per sweep and mix more slowly.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._validation import check_positive_float, check_positive_int
from .base import ChainTarget, Kernel, SiteInfo
from .ffbs import pool_forward_backward_sample
from .gaussian_chain import (_LOG_2PI, Band, _matvec, _spd_inverse, _square, add_emission, factor_band,
                             prior_band, quadratic_emission, sample_band)

__all__ = ["CSMC", "CSMCState", "gaussian_proposal"]

#: Draws from the Gaussian approximation used to estimate its marginal standard deviations.
_N_SCALE_DRAWS = 32
#: Newton steps toward the mode of the Gaussian approximation.
_NEWTON_STEPS = 3


class CSMCState(NamedTuple):
    z: np.ndarray  # (chains, T, *state)
    logp: np.ndarray  # (chains,): the chain's own terms (prior + emission) at z
    loc: np.ndarray  # (chains, T, d): proposal means
    scale: np.ndarray  # (chains, T, d): proposal standard deviations


def gaussian_proposal(target, z, rng, spread=1.5):
    """(loc, scale), each (chains, T, d): a normal proposal per time step from the Gaussian
    approximation of the path's full conditional at ``z`` (chains, T, *state)."""
    center, fb = _approximation(target, z)
    return _proposal(center, fb, rng, spread)


def _approximation(target, z):
    """(center (chains, T, *state), its factored band): the Gaussian approximation of the path's
    full conditional at ``z``, after ``_NEWTON_STEPS`` Newton steps toward the mode."""
    chains, T = z.shape[:2]
    state = z.shape[2:]
    d = int(np.prod(state, dtype=int)) if state else 1
    prior = _CenteredPrior.of(target.prior.linear_gaussian(), T)
    center = np.asarray(z, dtype=float).reshape((chains, T) + state)
    fb = None
    for _ in range(_NEWTON_STEPS):  # Newton steps toward the mode, in x - center (no cancellation)
        H, g, c, _ = quadratic_emission(target.emission, chains, T, state, center=center, h=1e-3, relative=True)
        # a convex emission piece would make the approximation improper: keep its curvature >= 0
        fb = factor_band(add_emission(prior.band(center.reshape(chains, T, d)), _psd(H), g, c), "CSMC proposal")
        center = center + np.asarray(fb.mean, dtype=float).reshape(center.shape)
    return center, fb


def _proposal(center, fb, rng, spread):
    """(loc, scale) from the approximation: its mean, and its marginal standard deviations (from
    ``_N_SCALE_DRAWS`` draws) widened by ``spread``."""
    chains, T = center.shape[:2]
    d = int(np.prod(center.shape[2:], dtype=int))
    draws = np.asarray(sample_band(fb, rng, sample_shape=(_N_SCALE_DRAWS,)), dtype=float)
    sd = draws.reshape((_N_SCALE_DRAWS, chains, T, d)).std(axis=0, ddof=1)
    return center.reshape(chains, T, d), spread * np.maximum(sd, 1e-8)


class _CenteredPrior:
    """``prior_band(lg, T, center=u)`` for many centers ``u`` at one ``lg``, the same numbers:
    what does not depend on the center (the precision band, ``b`` at the origin, the inverse
    Cholesky factors and the normalising constant) is computed once per ``lg`` and ``T``
    (the proposal's Newton steps read the prior at a new center each; the chain's prior is the
    same through an E step). The last one is kept, keyed by the values of ``lg``."""

    _last = None

    @classmethod
    def of(cls, lg, T):
        key = (int(T),) + tuple((a.shape, a.tobytes()) for a in
                                (np.asarray(getattr(lg, k), dtype=float) for k in ("m0", "P0", "F", "c", "Q")))
        last = cls._last  # one read: another thread may replace it
        if last is not None and last.key == key:
            return last
        new = cls._last = cls(lg, T, key)
        return new

    def __init__(self, lg, T, key):
        base = prior_band(lg, T)  # checks lg, as prior_band(lg, T, center) would
        m0 = np.atleast_1d(np.asarray(lg.m0, dtype=float))
        d = m0.size
        P0, F, Q = (_square(getattr(lg, k), d, k) for k in ("P0", "F", "Q"))
        (_, logdet0, L0i), (_, logdetq, LQi) = _spd_inverse(P0, "P0"), _spd_inverse(Q, "Q")
        self.key, self.T, self.d, self.ab, self.b = key, T, d, base.ab, base.b
        self.m0, self.F, self.c, self.L0i, self.LQi = m0, F, np.asarray(lg.c, dtype=float).reshape(-1), L0i, LQi
        self.norm = -0.5 * (T * d * _LOG_2PI + logdet0 + (T - 1) * logdetq)

    def band(self, center):
        """The band of ``delta = x - center`` (center (..., T, d)); ``ab`` a read-only view."""
        T, d, ab = self.T, self.d, self.ab
        u = np.asarray(center, dtype=float)
        if u.shape[-2:] != (T, d):
            raise ValueError(f"prior_band: center must have shape (..., {T}, {d}), got {u.shape}")
        r0, r = u[..., :1, :] - self.m0, u[..., 1:, :] - u[..., :-1, :] @ self.F.T - self.c
        quad = np.sum((r0 @ self.L0i.T) ** 2, axis=(-2, -1)) + np.sum((r @ self.LQi.T) ** 2, axis=(-2, -1))
        uf = u.reshape(u.shape[:-2] + (T * d,))
        return Band(np.broadcast_to(ab, uf.shape[:-1] + ab.shape), self.b - _matvec(ab, uf), self.norm - 0.5 * quad)


def _psd(H):
    """Symmetric matrices with negative eigenvalues raised to 0 (per chain and time step)."""
    H = 0.5 * (H + np.swapaxes(H, -1, -2))
    if H.shape[-1] == 1:
        return np.maximum(H, 0.0)
    w, V = np.linalg.eigh(H)
    return (V * np.maximum(w, 0.0)[..., None, :]) @ np.swapaxes(V, -1, -2)


class CSMC(Kernel):
    """Conditional SMC (particle Gibbs with backward sampling) for a continuous chain latent.

    Parameters
    ----------
    n_particles : int
        Candidates per time step (default 32), the current state included.
    spread : float
        Widening of the proposal's standard deviation relative to the Gaussian approximation
        (default 1.5).
    """

    metropolis = False
    uses_cached_logp = False
    discrete = False
    chain = True
    name = "csmc"

    def __init__(self, n_particles=32, spread=1.5):
        self.n_particles = check_positive_int(n_particles, "n_particles", minimum=2)
        self.spread = check_positive_float(spread, "spread")

    def options(self):
        return {"n_particles": self.n_particles, "spread": self.spread}

    def _check(self, target, z):
        if not isinstance(target, ChainTarget):
            raise TypeError(f"CSMC: needs a chain target (a latent with a chain distribution), got {target!r}")
        if not hasattr(target.prior, "linear_gaussian"):
            raise TypeError(f"CSMC: the chain's prior must be a continuous chain distribution, got {target.prior!r}")
        if z.ndim < 2:
            raise ValueError(f"CSMC: z must have shape (chains, T, ...), got {z.shape}")

    def init(self, z0, target, rng=None):
        z = np.array(z0, dtype=float)
        self._check(target, z)
        rng = np.random.default_rng(rng)
        loc, scale = gaussian_proposal(target, z, rng, self.spread)
        return CSMCState(z, self._own(target, z), loc, scale)

    def refresh(self, state, target):
        # the proposal follows theta; it is built from the current paths (a deterministic seed
        # keeps refresh free of the caller's random stream)
        center, fb = _approximation(target, state.z)
        # kept for the first adapting step, which would build the same approximation again
        self._last = (state.z, target.prior, center, fb) if target.shared else None
        loc, scale = _proposal(center, fb, np.random.default_rng(0), self.spread)
        return CSMCState(state.z, self._own(target, state.z), loc, scale)

    def _adapted_proposal(self, target, z, rng):
        """:func:`gaussian_proposal` at ``z``, with the Gaussian approximation (the Newton steps)
        of the last refresh where that was made on these very paths for this chain target
        (only the draws that set the scales differ): the first adapting step after a refresh.
        Only where the chain is the model's only latent (``shared``): its emission terms then
        depend on theta alone, and its prior is the one object the E step's target holds for
        its theta."""
        last = self._last  # one read: another thread may replace it
        if last is not None and last[0] is z and last[1] is target.prior and target.shared:
            self._last = None
            center, fb = last[2], last[3]
        else:
            center, fb = _approximation(target, z)
        return _proposal(center, fb, rng, self.spread)

    _last = None  # (paths, prior, center, factored band) of the last refresh's approximation

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_last"}

    def _own(self, target, z):
        e = np.asarray(target.emission(z), dtype=float).sum(-1)
        return np.asarray(target.prior.log_prob(z), dtype=float) + e

    def step(self, state, target, rng, adapt=False):
        self._check(target, state.z)
        if adapt:
            loc, scale = self._adapted_proposal(target, state.z, rng)
            state = state._replace(loc=loc, scale=scale)
        z = state.z
        chains, T = z.shape[:2]
        shape = z.shape[2:]
        d = state.loc.shape[-1]
        P = self.n_particles
        eps = rng.standard_normal((P, chains, T, d))
        pool = state.loc + state.scale * eps  # (P, chains, T, d)
        slot = rng.integers(0, P, size=(chains, T))
        cur = z.reshape(chains, T, d)
        onehot = np.arange(P)[:, None, None] == slot[None]
        pool = np.where(onehot[..., None], cur[None], pool)
        zs = pool.reshape((P, chains, T) + shape)
        emit = np.asarray(target.emission(zs), dtype=float)  # (P, chains, T)
        std = (pool - state.loc) / state.scale
        log_rho = (-0.5 * std**2 - np.log(state.scale) - 0.5 * np.log(2 * np.pi)).sum(-1)
        log_w = np.moveaxis(emit - log_rho, 0, -1)  # (chains, T, P)
        pool_c = np.moveaxis(pool, 0, 2)  # (chains, T, P, d)
        u = rng.random((chains, T))
        idx, _ = pool_forward_backward_sample(pool_c, log_w, target.prior.linear_gaussian(), u)
        idx = np.asarray(idx, dtype=np.int64)
        new = np.take_along_axis(pool_c, idx[:, :, None, None], axis=2)[:, :, 0, :]
        picked = np.take_along_axis(np.moveaxis(emit, 0, -1), idx[..., None], axis=2)[..., 0].sum(-1)
        znew = new.reshape(z.shape)
        logp = np.asarray(target.prior.log_prob(znew), dtype=float) + picked
        return CSMCState(znew, logp, state.loc, state.scale), SiteInfo()

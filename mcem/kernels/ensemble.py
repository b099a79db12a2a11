"""An adapter for emcee's affine-invariant ensemble sampler.

The chains are emcee's walkers: a latent of shape ``(chains, *shape)`` becomes walker coordinates
``(chains, ndim)`` on the unconstrained scale (the Jacobian of positive / interval supports is
added to the log probability). The log probability is evaluated with ``vectorize=True``: emcee
passes half of the ensemble at a time, so the latent must be the model's only latent site.

Every call builds a fresh ``emcee.EnsembleSampler`` (a reset backend) and seeds emcee's legacy
``RandomState`` from the generator passed in, so runs are reproducible and nothing leaks between
E steps. Cached log probabilities are never trusted across theta: :meth:`Emcee.refresh`
recomputes them, and :meth:`Emcee.sample` hands emcee a fresh ``emcee.State(coords)`` with
``log_prob=None`` so that emcee recomputes them itself.
"""

from __future__ import annotations

from typing import NamedTuple

import emcee
import numpy as np

from .._validation import check_positive_float
from .base import Kernel, SiteInfo, log_jacobian, support_transform, to_unconstrained

__all__ = ["Emcee", "EmceeState"]


class EmceeState(NamedTuple):
    z: np.ndarray  # (chains, *shape), constrained
    coords: np.ndarray  # (chains, ndim), unconstrained walker positions
    logp: np.ndarray  # (chains,) log density at z (no Jacobian)
    log_prob: np.ndarray  # (chains,) emcee's log probability: logp + log|dz/dw|


def _legacy_state(rng):
    """A legacy MT19937 state for emcee, seeded from a numpy Generator."""
    return np.random.RandomState(int(rng.integers(2**32))).get_state()


class Emcee(Kernel):
    """emcee's ensemble sampler on one small continuous latent without unit structure.

    Parameters
    ----------
    moves : emcee move or list, optional
        Passed to ``emcee.EnsembleSampler`` (default: the stretch move).
    init_spread : float
        When the initial walkers coincide (emcee needs linearly independent walkers), they are
        spread by ``init_spread * N(0, 1)`` on the unconstrained scale.
    support : Constraint, optional
        Elementwise support (taken from the latent declaration when bound).

    Needs at least ``2 * ndim`` chains (walkers). The walkers are coupled (a stretch move of
    one walker uses the positions of the others), so they are not independent chains: the
    E step's ESS and R-hat use the series of walker means (``ensemble = True``).
    """

    metropolis = True
    single_site_only = True
    #: The chains are coupled walkers of one ensemble, not independent chains: the E step
    #: computes ESS and R-hat on the walker means (:func:`mcem.diagnostics.ensemble_ess`).
    ensemble = True
    name = "emcee"

    def __init__(self, moves=None, *, init_spread=0.1, support=None):
        self.moves = moves
        self.init_spread = check_positive_float(init_spread, "init_spread")
        self.support = support
        self._tr = support_transform(support)

    def options(self):
        return {"moves": self.moves, "init_spread": self.init_spread, "support": self.support}

    def bind(self, spec):
        self.check_spec(spec)
        return self.replace(support=spec.support) if self.support is None else self

    # ------------------------------------------------------------------ helpers
    def _log_prob_fn(self, logdensity, shape):
        tr = self._tr

        def log_prob(coords):
            coords = np.asarray(coords, dtype=float)
            n = coords.shape[0]
            w = coords.reshape((n,) + shape)
            with np.errstate(over="ignore"):
                zw = tr.forward(w)
            lp = np.asarray(logdensity(zw), dtype=float).reshape(n, -1).sum(axis=1)
            ladj = log_jacobian(tr, w)
            if ladj is not None:
                lp = lp + ladj.reshape(n, -1).sum(axis=1)
            # emcee raises on NaN; a NaN log density means zero density here
            return np.where(np.isnan(lp), -np.inf, lp)

        return log_prob

    def _ladj(self, coords):
        ladj = log_jacobian(self._tr, coords)
        return 0.0 if ladj is None else ladj.sum(axis=1)

    def _evaluate(self, coords, shape, logdensity):
        lpf = self._log_prob_fn(logdensity, shape)
        log_prob = lpf(coords)
        w = coords.reshape((coords.shape[0],) + shape)
        return EmceeState(self._tr.forward(w), coords, log_prob - self._ladj(coords), log_prob)

    def _sampler(self, nwalkers, ndim, logdensity, shape):
        if nwalkers < 2 * ndim:
            raise ValueError(
                f"Emcee: the ensemble needs at least 2 * ndim = {2 * ndim} walkers (chains) for a "
                f"latent with {ndim} coordinates, got {nwalkers}; raise n_chains or use RWM"
            )
        return emcee.EnsembleSampler(
            nwalkers, ndim, self._log_prob_fn(logdensity, shape), vectorize=True, moves=self.moves
        )

    # ------------------------------------------------------------------ kernel interface
    def init(self, z0, logdensity, rng):
        z0 = np.asarray(z0, dtype=float)
        if z0.ndim < 1:
            raise ValueError(f"Emcee: z0 must have a leading chain axis, got shape {z0.shape}")
        chains, shape = z0.shape[0], z0.shape[1:]
        ndim = int(np.prod(shape, dtype=int))
        if chains < 2 * ndim:
            raise ValueError(
                f"Emcee: the ensemble needs at least 2 * ndim = {2 * ndim} walkers (chains), "
                f"got {chains}; raise n_chains or use RWM"
            )
        coords = to_unconstrained(self._tr, z0).reshape(chains, ndim)
        if not np.all(np.isfinite(coords)):
            raise ValueError(f"Emcee: z0 must lie inside the support {self.support!r}")
        if not emcee.ensemble.walkers_independent(coords):
            coords = coords + self.init_spread * rng.standard_normal(coords.shape)
        return self._evaluate(coords, shape, logdensity)

    def refresh(self, state, logdensity):
        return self._evaluate(state.coords, state.z.shape[1:], logdensity)

    def step(self, state, logdensity, rng, adapt=False):
        """One ensemble update of all walkers (starting from the cached, refreshed log_prob)."""
        shape = state.z.shape[1:]
        nwalkers, ndim = state.coords.shape
        sampler = self._sampler(nwalkers, ndim, logdensity, shape)
        start = emcee.State(
            state.coords, log_prob=np.array(state.log_prob), random_state=_legacy_state(rng)
        )
        new = None
        for new in sampler.sample(start, iterations=1, store=True, skip_initial_state_check=True):
            pass
        accepted = sampler.backend.accepted > 0
        coords = np.array(new.coords, dtype=float)
        log_prob = np.array(new.log_prob, dtype=float)
        z = self._tr.forward(coords.reshape((nwalkers,) + shape))
        st = EmceeState(z, coords, log_prob - self._ladj(coords), log_prob)
        return st, SiteInfo(accepted)

    def sample(self, state, logdensity, rng, n_draws, thin=1):
        """Run ``n_draws * thin`` ensemble updates in one emcee call, keeping every ``thin``-th.

        Returns ``(state, draws, logp, acceptance)``: ``draws`` of shape
        ``(chains, n_draws, *shape)`` (emcee's ``(step, walker, dim)`` chain reordered),
        ``logp`` ``(chains, n_draws)`` (log density of each draw, no Jacobian) and the per-chain
        acceptance fraction ``(chains,)``. The log probability of the starting state is
        recomputed by emcee (a fresh ``emcee.State`` with ``log_prob=None``).
        """
        shape = state.z.shape[1:]
        nwalkers, ndim = state.coords.shape
        if n_draws == 0:
            return state, np.empty((nwalkers, 0) + shape), np.empty((nwalkers, 0)), np.full(nwalkers, np.nan)
        sampler = self._sampler(nwalkers, ndim, logdensity, shape)
        sampler.reset()
        start = emcee.State(state.coords, log_prob=None, random_state=_legacy_state(rng))
        sampler.run_mcmc(start, n_draws, thin_by=int(thin), skip_initial_state_check=True)
        chain = np.swapaxes(sampler.get_chain(), 0, 1)  # (walker, step, dim) = (chain, draw, dim)
        log_prob = np.swapaxes(sampler.get_log_prob(), 0, 1)  # (chain, draw)
        ladj = log_jacobian(self._tr, chain)
        logp = log_prob - (0.0 if ladj is None else ladj.sum(axis=-1))
        draws = self._tr.forward(chain.reshape((nwalkers, n_draws) + shape))
        last = sampler.get_last_sample()
        coords = np.array(last.coords, dtype=float)
        lp_last = np.array(last.log_prob, dtype=float)
        st = EmceeState(
            self._tr.forward(coords.reshape((nwalkers,) + shape)),
            coords,
            lp_last - self._ladj(coords),
            lp_last,
        )
        return st, draws, logp, np.asarray(sampler.acceptance_fraction, dtype=float)

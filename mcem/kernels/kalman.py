"""The simulation smoother as a site kernel: a linear-Gaussian chain drawn from its full conditional.

The banded-precision machinery is in :mod:`mcem.kernels.gaussian_chain`; this kernel reads the
chain's prior (``linear_gaussian()``) and its emission terms from a
:class:`~mcem.kernels.base.ChainTarget` and draws the whole path exactly, which is what the
Kalman simulation smoother does, by one banded Cholesky factorisation per chain.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Kernel, SiteInfo
from .gaussian_chain import Band, FactoredBand, band_logdensity, conditional_band, draw_band

__all__ = ["KalmanSmoother", "KalmanState"]


class KalmanState(NamedTuple):
    z: np.ndarray  # (chains, T, *state)
    logp: np.ndarray  # (chains,): the chain's prior and emission terms at z
    cache: tuple | None  # (prior parameters, the FactoredBand's arrays if shared, step h, centre u (C, T, d))


def _prior_params(target):
    lg = getattr(target.prior, "linear_gaussian", None)
    if not callable(lg):
        raise TypeError(
            "KalmanSmoother needs a linear-Gaussian chain prior (a distribution with "
            f"linear_gaussian(): GaussianRandomWalk, AR1, LinearGaussianStateSpace), got {target.prior!r}")
    lg = lg()
    return lg, tuple(np.array(getattr(lg, k), dtype=float) for k in ("m0", "P0", "F", "c", "Q"))


def _plain(fb):
    """A FactoredBand as plain nested tuples of arrays (what a checkpoint stores)."""
    return None if fb is None else (tuple(fb.band), fb.chol, fb.mean)


def _factored(t):
    return FactoredBand(Band(*t[0]), t[1], t[2])


def _same(a, b):
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


class KalmanSmoother(Kernel):
    """Exact draws of a linear-Gaussian chain latent from its full conditional (simulation smoother).

    Applies to a chain latent of shape ``(T,)`` or ``(T, d)`` whose prior has
    ``linear_gaussian()`` and whose emission terms are quadratic in the state (Gaussian
    observations of a linear function of ``x_t``): the full conditional is then Gaussian, drawn
    exactly through one banded Cholesky factorisation per chain.

    :meth:`init` and :meth:`refresh` read the band with :func:`conditional_band` from the current
    state (to rounding, wherever it starts). When the target is ``shared`` (the chain is the
    model's only latent) their factorisation serves every :meth:`step` until the next refresh
    (an exact independent draw for one banded triangular solve); otherwise each step reads the
    forms once at the current state, with the step found before. ``logp`` is the chain's own
    terms (prior and emissions) at ``z``, from the quadratic form.
    """

    metropolis = False
    uses_cached_logp = False
    discrete = False
    chain = True
    name = "kalman"

    def options(self):
        return {}  # no options

    def bind(self, spec):
        self.check_spec(spec)
        if not spec.shape or len(spec.shape) > 2:
            raise ValueError(f"KalmanSmoother: a chain latent has shape (T,) or (T, d), got {spec.shape}")
        return self

    # ------------------------------------------------------------------ kernel interface
    def init(self, z0, target, rng=None):
        z = np.array(z0, dtype=float)
        if z.ndim not in (2, 3):
            raise ValueError(f"KalmanSmoother: z0 must have shape (chains, T) or (chains, T, d), got {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError("KalmanSmoother: z0 must be finite")
        return self.refresh(KalmanState(z, np.zeros(z.shape[0]), None), target)

    def refresh(self, state, target):
        params, fb, h, u = self._factor(target, state.z, None)
        logp = band_logdensity(fb.band, state.z - u.reshape(state.z.shape), state.z.shape[2:])
        return KalmanState(state.z, logp, (params, _plain(fb) if target.shared else None, h, u))

    def step(self, state, target, rng, adapt=False):
        cache = state.cache
        if target.shared and cache and cache[1] is not None and _same(cache[0], _prior_params(target)[1]):
            params, fb, h, u = cache[0], _factored(cache[1]), cache[2], cache[3]
        else:
            params, fb, h, u = self._factor(target, state.z, None if cache is None else cache[2])
        x, eps = draw_band(fb, (), rng)  # x = u + delta; logp = c + b.mean / 2 - |eps|^2 / 2 at delta
        logp = fb.band.c + 0.5 * np.sum(fb.band.b * fb.mean, axis=-1) - 0.5 * np.sum(eps * eps, axis=-1)
        z = u.reshape(state.z.shape) + x.reshape(state.z.shape)
        return KalmanState(z, logp, (params, _plain(fb) if target.shared else None, h, u)), SiteInfo()

    def sample(self, state, target, rng, n_draws, thin=1):
        """``n_draws`` exact draws at once (the E step's block mode): ``(state, draws (chains,
        n_draws, T, *state), logp (chains, n_draws), acceptance (chains,))``.

        Where the target is ``shared`` the full conditional does not depend on the current path,
        so the draws are independent and come from one factorisation and one banded solve per
        chain (``thin`` changes nothing: every draw is independent); otherwise they are
        ``n_draws * thin`` steps, keeping every ``thin``-th.
        """
        C, shape = state.z.shape[0], state.z.shape[1:]
        if n_draws == 0:
            return state, np.empty((C, 0) + shape), np.empty((C, 0)), np.full(C, np.nan)
        if not target.shared:
            draws, logp = np.empty((C, n_draws) + shape), np.empty((C, n_draws))
            for i in range(n_draws):  # a loop over draws: each step depends on the last
                for _ in range(int(thin)):
                    state, _ = self.step(state, target, rng)
                draws[:, i], logp[:, i] = state.z, state.logp
            return state, draws, logp, np.ones(C)
        cache = state.cache
        if cache and cache[1] is not None and _same(cache[0], _prior_params(target)[1]):
            params, fb, h, u = cache[0], _factored(cache[1]), cache[2], cache[3]
        else:
            params, fb, h, u = self._factor(target, state.z, None if cache is None else cache[2])
        x, eps = draw_band(fb, (n_draws,), rng)  # (n_draws, C, n)
        logp = fb.band.c + 0.5 * np.sum(fb.band.b * fb.mean, axis=-1) - 0.5 * np.sum(eps * eps, axis=-1)
        draws = np.swapaxes((u.reshape(1, C, -1) + x).reshape((n_draws, C) + shape), 0, 1)
        logp = np.swapaxes(logp, 0, 1)
        last = KalmanState(draws[:, -1].copy(), logp[:, -1].copy(), (params, _plain(fb), h, u))
        return last, draws, logp, np.ones(C)

    # ------------------------------------------------------------------ internals
    def _factor(self, target, z, h):
        """(prior parameters, FactoredBand of delta = x - u, next step, u): the full conditional."""
        lg, params = _prior_params(target)
        (C, T), state_shape, d = z.shape[:2], z.shape[2:], params[0].size
        if (state_shape and state_shape != (d,)) or (not state_shape and d != 1):
            raise ValueError(
                f"KalmanSmoother: the chain prior has states of dimension {d}, the latent has "
                f"shape {z.shape[1:]} (expected ({T},{' ' + str(d) if d > 1 else ''}))")
        fb, u, h = conditional_band(lg, target.emission, z.reshape(C, T, d), state_shape, h, "KalmanSmoother")
        return params, fb, h, u

"""Enumerated Gibbs for finite discrete latents.

With per-unit terms (mixture labels), every unit is drawn from its exact full conditional in one
vectorised pass: the log density is evaluated ONCE on a ``(K, chains, N)`` array holding each
state ``k`` (a broadcast view, no copy), which gives ``(K, chains, N)`` conditional log weights,
and all units of all chains are drawn by inverse CDF. Trailing axes of a unit (shape
``(N, m)``) are updated one trailing element at a time, still vectorised over units.

Without per-unit terms (a latent with no unit axis, or a model whose log joint is a total),
elements are updated by systematic-scan Gibbs, one element at a time (a loop over the elements,
meant for a few elements).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .base import Kernel, SiteInfo, check_logp

__all__ = ["Gibbs", "GibbsState", "categorical_from_logits"]


class GibbsState(NamedTuple):
    z: np.ndarray  # (chains, *shape) integers in 0..K-1
    logp: np.ndarray  # (chains,) or (chains, n_units): log density at z
    #: True after a refresh that left ``logp`` at the previous target (one discrete value per
    #: unit: the sweep draws every unit afresh and never reads it); a step makes it current.
    stale: bool = False


#: Entries of the log weights handled at once by :func:`categorical_from_logits`: about twenty
#: numpy calls per block, so blocks large enough that the calls' own cost is small (2^16 was
#: faster than 2^13-2^15 and no slower than 2^17 at 10^6 labels, K = 3).
_BLOCK = 1 << 16


def categorical_from_logits(lp, rng):
    """Draw one index along axis 0 of unnormalised log weights ``lp`` (K, ...) by inverse CDF.

    Returns ``(labels, lp_at_labels)``, both of shape ``lp.shape[1:]``: the labels (int64) and
    the entries of ``lp`` at them (exactly). ``lp`` is only read (it may be a read-only or
    broadcast view). One uniform per draw, all drawn first; a state of weight 0 is never drawn.

    The trailing axes are processed in blocks of about ``_BLOCK / K`` elements, each through
    elementwise passes that stay in cache: the running maximum, one exponential per entry, the
    cumulative sums by K - 1 in-place additions, and K - 1 comparisons with the scaled uniform,
    each moving the label and its log weight up one state where the uniform lies beyond.
    """
    lp = np.asarray(lp, dtype=float)
    K, shape = lp.shape[0], lp.shape[1:]
    u = rng.random(shape)
    n = shape[-1] if shape else 1
    lead = u.size // n if n else 0
    lp3 = lp.reshape(K, lead, n)  # a view for contiguous or broadcast trailing axes
    u3 = u.reshape(lead, n)
    labels = np.empty((lead, n), dtype=np.int64)
    picked = np.empty((lead, n))
    width = max(1, min(n, _BLOCK // K))
    c_s, p_s = np.empty(K * width), np.empty(K * width)
    m_s, b_s, i_s = np.empty(width), np.empty(width, dtype=bool), np.empty(width, dtype=np.intp)
    cols = np.arange(width)
    for i in range(lead):
        for start in range(0, n, width):
            w = min(width, n - start)
            c, p = c_s[:K * w].reshape(K, w), p_s[:K * w].reshape(K, w)
            m, beyond, idx = m_s[:w], b_s[:w], i_s[:w]
            np.copyto(c, lp3[:, i, start:start + w])  # the block's log weights, contiguous
            np.copyto(m, c[0])
            for k in range(1, K):
                np.maximum(m, c[k], out=m)
            if not np.isfinite(m.sum()):  # a unit with every weight 0 (or an infinite or NaN weight)
                m[~np.isfinite(m)] = 0.0
            np.subtract(c, m, out=p)
            np.exp(p, out=p)
            for k in range(1, K):  # p[k] becomes the unnormalised CDF at k
                p[k] += p[k - 1]
            uu = u3[i, start:start + w]
            uu *= p[-1]
            lab = labels[i, start:start + w]
            if K == 1:
                lab.fill(0)
            else:
                np.less_equal(p[0], uu, out=beyond)
                np.copyto(lab, beyond)
            for k in range(1, K - 1):  # K - 1 vectorised comparisons in all
                np.less_equal(p[k], uu, out=beyond)
                lab += beyond
            np.multiply(lab, w, out=idx)
            idx += cols[:w]
            np.take(c.reshape(-1), idx, out=picked[i, start:start + w], mode="clip")  # idx is in range
    return labels.reshape(shape), picked.reshape(shape)


class Gibbs(Kernel):
    """Enumerated Gibbs sampler for a latent with K states.

    Parameters
    ----------
    K : int, optional
        Number of states (taken from the latent declaration when the kernel is bound to it).
    batch_states : bool
        Evaluate the log density once on a ``(K, chains, ...)`` array (default). Set False when
        the log density cannot broadcast over an extra leading axis: the K states are then
        evaluated one at a time.
    """

    metropolis = False
    uses_cached_logp = False
    discrete = True
    name = "gibbs"

    def __init__(self, K=None, *, batch_states=True):
        if K is not None and (not isinstance(K, numbers.Integral) or isinstance(K, bool) or K < 2):
            raise ValueError(f"Gibbs: K must be an int >= 2 or None, got {K!r}")
        self.K = None if K is None else int(K)
        self.batch_states = bool(batch_states)

    def options(self):
        return {"K": self.K, "batch_states": self.batch_states}

    def bind(self, spec):
        self.check_spec(spec)
        if self.K is not None and self.K != spec.K:
            raise ValueError(f"Gibbs: K={self.K} does not match the latent's K={spec.K}")
        return self.replace(K=spec.K) if self.K is None else self

    # ------------------------------------------------------------------ kernel interface
    def init(self, z0, logdensity, rng=None):
        if self.K is None:
            raise ValueError("Gibbs: K is not set; pass Gibbs(K=...) or bind it to a Discrete latent")
        z = np.array(z0, dtype=np.int64)
        if z.ndim < 1:
            raise ValueError(f"Gibbs: z0 must have a leading chain axis, got shape {z.shape}")
        if np.any((z < 0) | (z >= self.K)):
            raise ValueError(f"Gibbs: z0 must hold integers in 0..{self.K - 1}")
        return GibbsState(z, check_logp(logdensity(z), z, "Gibbs"))

    def refresh(self, state, logdensity):
        if state.logp.ndim == 2 and state.z.ndim == 2:  # per-unit values: the sweep does not read them
            return state._replace(stale=True)
        return state._replace(logp=check_logp(logdensity(state.z), state.z, "Gibbs"), stale=False)

    def step(self, state, logdensity, rng, adapt=False):
        if state.logp.ndim == 2:
            return self._step_units(state, logdensity, rng), SiteInfo()
        return self._step_scan(state, logdensity, rng), SiteInfo()

    # ------------------------------------------------------------------ internals
    def _eval_states(self, logdensity, zk_fn, out_shape):
        """Log density at each of the K states: (K, *out_shape)."""
        K = self.K
        if self.batch_states:
            lp = np.asarray(logdensity(zk_fn(None)), dtype=float)
            if lp.shape != (K,) + out_shape:
                raise ValueError(
                    f"Gibbs: evaluated on a batch of the {K} states the log density returned "
                    f"shape {lp.shape}, expected {(K,) + out_shape}; make log_joint broadcast "
                    "over leading batch axes, or use Gibbs(batch_states=False)"
                )
            return lp
        return np.stack([np.asarray(logdensity(zk_fn(k)), dtype=float) for k in range(K)])

    def _step_units(self, state, logdensity, rng):
        z = state.z
        K = self.K
        chains, n = z.shape[:2]
        rest = z.shape[2:]
        if not rest:  # the common case: one discrete value per unit, no copy at all
            states = np.broadcast_to(np.arange(K).reshape(K, 1, 1), (K, chains, n))

            def zk(k):
                return states if k is None else np.full((chains, n), k, dtype=np.int64)

            lp = self._eval_states(logdensity, zk, (chains, n))
            labels, picked = categorical_from_logits(lp, rng)
            return GibbsState(labels, picked)
        z = z.copy()
        picked = state.logp
        for idx in np.ndindex(*rest):  # trailing elements of a unit, each vectorised over units
            sel = (slice(None), slice(None)) + idx

            def zk(k, sel=sel):
                if k is None:
                    out = np.broadcast_to(z, (K,) + z.shape).copy()
                    out[(slice(None),) + sel] = np.arange(K).reshape(K, 1, 1)
                else:
                    out = z.copy()
                    out[sel] = k
                return out

            lp = self._eval_states(logdensity, zk, (chains, n))
            z[sel], picked = categorical_from_logits(lp, rng)
        return GibbsState(z, picked)

    def _step_scan(self, state, logdensity, rng):
        z = state.z.copy()
        K = self.K
        chains = z.shape[0]
        flat = z.reshape(chains, -1)
        picked = state.logp
        for j in range(flat.shape[1]):

            def zk(k, j=j):
                if k is None:
                    out = np.broadcast_to(z, (K,) + z.shape).copy()
                    out.reshape(K, chains, -1)[:, :, j] = np.arange(K)[:, None]
                else:
                    out = z.copy()
                    out.reshape(chains, -1)[:, j] = k
                return out

            lp = self._eval_states(logdensity, zk, (chains,))
            flat[:, j], picked = categorical_from_logits(lp, rng)
        return GibbsState(z, picked)

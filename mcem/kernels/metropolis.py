"""Adaptive random-walk Metropolis, per unit or joint.

With per-unit terms (``logdensity(z)`` of shape ``(chains, n_units)``) every unit of every chain
proposes ``w' = w + scale[c, i] * N(0, I)`` on the unconstrained scale and is accepted or
rejected on its own, all in one numpy call. Otherwise the whole site moves jointly with one
scale per chain.

Positive and interval supports are sampled on the unconstrained scale (log / scaled logit) with
the elementwise log-Jacobian added, summed per unit. During burn-in (``adapt=True``) the log
scale follows a Robbins-Monro recursion toward ``target_accept``:
``log s <- log s + rate * (n + 1)^(-decay) * (alpha - target)``, with ``alpha`` the acceptance
probability; the scale is frozen while draws are kept.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._validation import check_positive_float
from .base import (
    Kernel,
    SiteInfo,
    accept_prob,
    check_logp,
    default_target_accept,
    expand_to,
    log_jacobian,
    proposal_dim,
    reduce_to,
    robbins_monro,
    support_transform,
    to_unconstrained,
)

__all__ = ["RWM", "RWMState"]


class RWMState(NamedTuple):
    z: np.ndarray  # constrained position (chains, *shape)
    w: np.ndarray  # unconstrained position
    logp: np.ndarray  # log density at z: (chains,) or (chains, n_units), no Jacobian
    ladj: np.ndarray | float  # log|dz/dw| reduced like logp (0.0 for the identity)
    scale: np.ndarray  # proposal scale, shaped like logp
    n_adapt: int  # adaptation steps taken so far


def _check_target(value, name):
    if value is None:
        return None
    v = check_positive_float(value, name)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return v


class RWM(Kernel):
    """Adaptive random-walk Metropolis (per unit when the log density gives per-unit terms).

    Parameters
    ----------
    scale : float or array
        Initial proposal standard deviation on the unconstrained scale; an array must broadcast
        to ``(chains,)`` or ``(chains, n_units)``.
    target_accept : float, optional
        Acceptance rate the scale adapts toward (default: 0.44 for one-dimensional updates,
        0.234 from five dimensions on).
    adapt : bool
        Adapt the scale during burn-in. With False the scale stays fixed.
    adapt_rate, adapt_decay : float
        Robbins-Monro gain ``adapt_rate * (n + 1) ** -adapt_decay``.
    support : Constraint, optional
        Elementwise support (taken from the latent declaration when bound).
    """

    metropolis = True
    name = "rwm"

    def __init__(
        self,
        scale=1.0,
        *,
        target_accept=None,
        adapt=True,
        adapt_rate=1.0,
        adapt_decay=0.6,
        support=None,
    ):
        s = np.asarray(scale, dtype=float)
        if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"{type(self).__name__}: scale must be finite and positive, got {scale!r}")
        self.scale = scale
        self.target_accept = _check_target(target_accept, "target_accept")
        self.adapt = bool(adapt)
        self.adapt_rate = check_positive_float(adapt_rate, "adapt_rate")
        self.adapt_decay = check_positive_float(adapt_decay, "adapt_decay")
        if not 0.5 <= self.adapt_decay <= 1.0:
            raise ValueError(f"adapt_decay must lie in [0.5, 1], got {adapt_decay!r}")
        self.support = support
        self._tr = support_transform(support)

    def options(self):
        return {
            "scale": self.scale,
            "target_accept": self.target_accept,
            "adapt": self.adapt,
            "adapt_rate": self.adapt_rate,
            "adapt_decay": self.adapt_decay,
            "support": self.support,
        }

    def bind(self, spec):
        self.check_spec(spec)
        return self.replace(support=spec.support) if self.support is None else self

    # ------------------------------------------------------------------ helpers
    def _evaluate(self, w, logdensity, lp_ndim=None):
        tr = self._tr
        with np.errstate(over="ignore"):
            z = tr.forward(w)
        lp = check_logp(logdensity(z), z, type(self).__name__)
        if lp_ndim is not None and lp.ndim != lp_ndim:
            raise ValueError(
                f"{type(self).__name__}: the log density changed its output from {lp_ndim} to "
                f"{lp.ndim} axes"
            )
        ladj = log_jacobian(tr, w)
        ladj = 0.0 if ladj is None else reduce_to(ladj, lp.ndim)
        return z, lp, ladj

    def _target_accept(self, w, lp_ndim):
        if self.target_accept is not None:
            return self.target_accept
        return default_target_accept(proposal_dim(w, lp_ndim))

    # ------------------------------------------------------------------ kernel interface
    def init(self, z0, logdensity, rng=None):
        z0 = np.asarray(z0, dtype=float)
        if z0.ndim < 1:
            raise ValueError(
                f"{type(self).__name__}: z0 must have a leading chain axis, got shape {z0.shape}"
            )
        w = to_unconstrained(self._tr, z0)
        if not np.all(np.isfinite(w)):
            raise ValueError(f"{type(self).__name__}: z0 must lie inside the support {self.support!r}")
        z, lp, ladj = self._evaluate(w, logdensity)
        try:
            scale = np.broadcast_to(np.asarray(self.scale, dtype=float), lp.shape).copy()
        except ValueError:
            raise ValueError(
                f"{type(self).__name__}: scale of shape {np.shape(self.scale)} does not broadcast "
                f"to the per-chain/unit shape {lp.shape}"
            ) from None
        return RWMState(z, w, lp, ladj, scale, 0)

    def refresh(self, state, logdensity):
        z, lp, ladj = self._evaluate(state.w, logdensity, state.logp.ndim)
        return state._replace(z=z, logp=lp, ladj=ladj)

    def step(self, state, logdensity, rng, adapt=False):
        w, lp, scale = state.w, state.logp, state.scale
        nd = lp.ndim
        prop = rng.standard_normal(w.shape)
        prop *= expand_to(scale, w.ndim)
        prop += w
        z_new, lp_new, ladj_new = self._evaluate(prop, logdensity, nd)
        with np.errstate(invalid="ignore"):
            log_ratio = lp_new - lp
            if not self._tr.is_identity:
                log_ratio += ladj_new - state.ladj
        # accept when log U < log_ratio, with -log U ~ Exp(1); NaN never accepts
        accepted = rng.standard_exponential(log_ratio.shape) > -log_ratio
        acc_e = expand_to(accepted, w.ndim)
        w = np.where(acc_e, prop, w)
        z = w if self._tr.is_identity else np.where(acc_e, z_new, state.z)
        lp = np.where(accepted, lp_new, lp)
        ladj = state.ladj if self._tr.is_identity else np.where(accepted, ladj_new, state.ladj)
        n_adapt = state.n_adapt
        if adapt and self.adapt:
            target = self._target_accept(w, nd)
            scale = np.exp(
                robbins_monro(
                    np.log(scale), accept_prob(log_ratio), target, n_adapt,
                    self.adapt_rate, self.adapt_decay,
                )
            )
            n_adapt += 1
        return RWMState(z, w, lp, ladj, scale, n_adapt), SiteInfo(accepted)

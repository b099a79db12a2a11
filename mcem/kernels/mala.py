"""Metropolis-adjusted Langevin (MALA), per unit or joint, with an adaptive step size.

Needs the gradient of the log density with respect to the latent: the ``logdensity`` passed to
the kernel must have a ``grad(z)`` method (a :class:`~mcem.kernels.Target`). In an E step, give
the kernel a ``grad(theta, z, data)`` option returning the gradient of the log joint with respect
to ``z[site]`` (shape of ``z[site]`` with its batch axes): the E step binds it to theta.

On the unconstrained scale ``w`` the proposal is ``w' = w + h^2/2 * g(w) + h * N(0, I)`` with
``g`` the gradient of ``log p(z(w)) + log|dz/dw|``; with per-unit terms, ``h`` is a per-unit
(per chain) step size and every unit is accepted or rejected on its own.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import SiteInfo, accept_prob, expand_to, reduce_to, robbins_monro
from .metropolis import RWM

__all__ = ["MALA", "MALAState"]


class MALAState(NamedTuple):
    z: np.ndarray
    w: np.ndarray
    logp: np.ndarray  # log density at z (no Jacobian): (chains,) or (chains, n_units)
    ladj: np.ndarray | float
    grad_w: np.ndarray  # gradient of logp + ladj in w, shaped like w
    step_size: np.ndarray  # shaped like logp
    n_adapt: int


class MALA(RWM):
    """Metropolis-adjusted Langevin kernel.

    Parameters
    ----------
    step_size : float or array
        Initial step size ``h`` on the unconstrained scale.
    grad : callable, optional
        ``grad(theta, z, data) -> array``: gradient of the log joint with respect to the site's
        latent (used by the E step; at the kernel level pass a ``Target`` with a gradient).
    target_accept : float
        Default 0.574.
    adapt, adapt_rate, adapt_decay, support
        As for :class:`~mcem.kernels.RWM`.
    """

    name = "mala"

    def __init__(
        self,
        step_size=0.5,
        *,
        grad=None,
        target_accept=0.574,
        adapt=True,
        adapt_rate=1.0,
        adapt_decay=0.6,
        support=None,
    ):
        if grad is not None and not callable(grad):
            raise TypeError(f"MALA: grad must be callable or None, got {type(grad).__name__}")
        self.grad = grad
        super().__init__(
            step_size,
            target_accept=target_accept,
            adapt=adapt,
            adapt_rate=adapt_rate,
            adapt_decay=adapt_decay,
            support=support,
        )

    def options(self):
        opts = super().options()
        opts["step_size"] = opts.pop("scale")
        opts["grad"] = self.grad
        return opts

    def _grad_w(self, w, z, logdensity):
        g = getattr(logdensity, "grad", None)
        if g is None or not getattr(logdensity, "has_grad", True):
            raise TypeError(
                "MALA needs the gradient of the log density: pass a mcem.kernels.Target(fn, grad) "
                "or, in an E step, MALA(grad=fn) with fn(theta, z, data) -> gradient"
            )
        gz = np.asarray(g(z), dtype=float)
        if gz.shape != z.shape:
            raise ValueError(f"MALA: grad returned shape {gz.shape}, expected the latent's {z.shape}")
        return self._tr.log_density_grad(w, gz)

    def init(self, z0, logdensity, rng=None):
        st = super().init(z0, logdensity, rng)
        g = self._grad_w(st.w, st.z, logdensity)
        return MALAState(st.z, st.w, st.logp, st.ladj, g, st.scale, 0)

    def refresh(self, state, logdensity):
        z, lp, ladj = self._evaluate(state.w, logdensity, state.logp.ndim)
        g = self._grad_w(state.w, z, logdensity)
        return state._replace(z=z, logp=lp, ladj=ladj, grad_w=g)

    def step(self, state, logdensity, rng, adapt=False):
        w, lp, h = state.w, state.logp, state.step_size
        nd = lp.ndim
        he = expand_to(h, w.ndim)
        eps = rng.standard_normal(w.shape)
        prop = w + 0.5 * he**2 * state.grad_w + he * eps
        z_new, lp_new, ladj_new = self._evaluate(prop, logdensity, nd)
        with np.errstate(invalid="ignore", over="ignore"):
            g_new = self._grad_w(prop, z_new, logdensity)
            back = (w - prop - 0.5 * he**2 * g_new) / he
            log_q = -0.5 * reduce_to(back**2, nd) + 0.5 * reduce_to(eps**2, nd)
            log_ratio = lp_new - lp + log_q
            if not self._tr.is_identity:
                log_ratio = log_ratio + ladj_new - state.ladj
        accepted = rng.standard_exponential(log_ratio.shape) > -log_ratio
        acc_e = expand_to(accepted, w.ndim)
        w = np.where(acc_e, prop, w)
        z = w if self._tr.is_identity else np.where(acc_e, z_new, state.z)
        g = np.where(acc_e, g_new, state.grad_w)
        lp = np.where(accepted, lp_new, lp)
        ladj = state.ladj if self._tr.is_identity else np.where(accepted, ladj_new, state.ladj)
        n_adapt = state.n_adapt
        if adapt and self.adapt:
            h = np.exp(
                robbins_monro(
                    np.log(h), accept_prob(log_ratio), self.target_accept, n_adapt,
                    self.adapt_rate, self.adapt_decay,
                )
            )
            n_adapt += 1
        return MALAState(z, w, lp, ladj, g, h, n_adapt), SiteInfo(accepted)

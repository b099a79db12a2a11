"""The public derivatives of a :class:`mcem.Model`: :meth:`grad_params`, :meth:`grad_latents`
and :meth:`hessian`.

Exact where the model supplies them (every model of the model language compiled by JAX, and
hand-written models that pass ``grad_params``, ``grad_latents`` or ``hessian``), by central
differences otherwise: in the constrained parameters for :meth:`grad_params`, in the latent
elements for :meth:`grad_latents` (all units at once for a unit latent of a model with
per-unit terms), in the unconstrained parameters for :meth:`hessian`. The differences loop over
coordinates only; each evaluation is one vectorised call over the batch.
"""

from __future__ import annotations

import numpy as np

from ..derivatives import central_hessian

__all__ = ["Derivatives"]

_H_GRAD = 1e-6
_H_HESS = 1e-4


def _batch_ndim(model, z):
    name = model.latent_names[0]
    return np.ndim(z[name]) - len(model.latents[name].shape)


class Derivatives:
    """Mixin of :class:`mcem.Model`: derivatives of the log joint."""

    @property
    def has_exact_derivatives(self) -> bool:
        """Whether the gradients in the parameters are exact (not finite differences)."""
        return self.grad_params_fn is not None

    def grad_params(self, theta, z) -> dict:
        """The gradient of the log joint (summed over units) in each constrained parameter.

        ``z`` carries batch axes; the result holds one gradient per batch element:
        ``{name: array of shape batch + param_shape}``.
        """
        theta = self.check_theta(theta, "theta")
        if self.grad_params_fn is not None:
            g = self.grad_params_fn(theta, z, self.data)
            return {n: np.array(g[n], dtype=float) for n in self.param_names}
        nb = _batch_ndim(self, z)
        out = {}
        for n in self.param_names:
            base = np.asarray(theta[n], dtype=float)
            flat = np.empty(np.shape(z[self.latent_names[0]])[:nb] + (base.size,))
            for i in range(base.size):  # a loop over parameter coordinates
                step = _H_GRAD * max(1.0, abs(base.flat[i]))
                hi, lo = base.copy(), base.copy()
                hi.flat[i] += step
                lo.flat[i] -= step
                fp = self.log_joint_sum({**theta, n: hi}, z, nb)
                fm = self.log_joint_sum({**theta, n: lo}, z, nb)
                flat[..., i] = (fp - fm) / (2 * step)
            out[n] = flat.reshape(flat.shape[:nb] + base.shape)
        return out

    def grad_latents(self, theta, z) -> dict:
        """The gradient of the log joint in each continuous latent, shaped like ``z[name]``.

        Discrete latents are left out.
        """
        theta = self.check_theta(theta, "theta")
        cont = [n for n in self.latent_names if not self.latents[n].is_discrete]
        if self.grad_latents_fn is not None:
            g = self.grad_latents_fn(theta, z, self.data)
            return {n: np.array(g[n], dtype=float) for n in cont}
        nb = _batch_ndim(self, z)
        out = {}
        for n in cont:
            v = np.asarray(z[n], dtype=float)
            spec = self.latents[n]
            by_unit = spec.unit and self.per_unit and sum(s.unit for s in self.latents.values()) == 1
            g = np.empty_like(v)
            inner = spec.shape[1:] if by_unit else spec.shape
            for j in np.ndindex(*inner):  # a loop over elements (within a unit when units split)
                idx = (Ellipsis, slice(None)) + j if by_unit else (Ellipsis,) + j
                step = _H_GRAD * np.maximum(1.0, np.abs(v[idx]))
                hi, lo = v.copy(), v.copy()
                hi[idx] += step
                lo[idx] -= step
                if by_unit:
                    fp = np.asarray(self.log_joint(theta, {**z, n: hi}), dtype=float)
                    fm = np.asarray(self.log_joint(theta, {**z, n: lo}), dtype=float)
                else:
                    fp = self.log_joint_sum(theta, {**z, n: hi}, nb)
                    fm = self.log_joint_sum(theta, {**z, n: lo}, nb)
                g[idx] = (fp - fm) / (2 * step)
            out[n] = g
        return out

    def hessian(self, theta, z) -> np.ndarray:
        """The Hessian of the log joint in the unconstrained parameters (the coordinates of
        :meth:`to_unconstrained`), averaged over the batch of ``z``: shape ``(p, p)``."""
        theta = self.check_theta(theta, "theta")
        if self.hessian_fn is not None:
            return np.array(self.hessian_fn(theta, z, self.data), dtype=float)
        nb = _batch_ndim(self, z)
        u = self.to_unconstrained(theta)
        return central_hessian(lambda v: float(np.mean(self.log_joint_sum(self.from_unconstrained(v), z, nb))),
                               u, _H_HESS)

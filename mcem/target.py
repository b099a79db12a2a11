"""What the E step's kernels see of a model at one theta (:class:`ModelTarget`).

For each latent site, a :class:`~mcem.kernels.Target` (the site's log density with the other
latents held fixed: the model's conditional, its per-unit log joint or the total) or, for a chain
kernel, a :class:`~mcem.kernels.base.ChainTarget` (the chain's prior at theta and its per-time
emission terms); the complete-data log joint; and the model's exact posterior draws.
"""

from __future__ import annotations

import numpy as np

from .core import Model
from .kernels.base import ChainTarget, Target

__all__ = ["ModelTarget"]


class ModelTarget:
    """The log densities of a model at a fixed theta, as the kernels need them.

    ``site(name, z, kernel)`` returns a :class:`~mcem.kernels.Target` for latent ``name`` with
    the other latents held at ``z``: ``model.conditionals[name]`` when given, else the per-unit
    log joint (unit sites of a per-unit model), else the total log joint.
    """

    def __init__(self, model: Model, theta: dict, modes: dict):
        self.model = model
        self.theta = theta
        self.data = model.data
        self.modes = modes
        self._priors = {}
        self._offsets = {}

    def site(self, name, z, kernel=None) -> Target:
        theta, data, model = self.theta, self.data, self.model
        others = dict(z)
        if getattr(kernel, "chain", False):
            return self._chain_site(name, others)
        mode = self.modes[name]
        if mode == "conditional":
            cond = model.conditionals[name]

            def fn(zs):
                return cond(theta, {**others, name: zs}, data)

        elif mode == "sum":
            lj = model.log_joint_fn

            def fn(zs):
                return np.asarray(lj(theta, {**others, name: zs}, data)).sum(axis=-1)

        else:
            lj = model.log_joint_fn

            def fn(zs):
                return lj(theta, {**others, name: zs}, data)

        grad = None
        g = getattr(kernel, "grad", None)
        if g is not None:

            def grad(zs):
                out = g(theta, {**others, name: zs}, data)
                return out[name] if isinstance(out, dict) else out

        return Target(fn, grad=grad, joint=mode != "conditional")

    def chain_prior(self, name):
        """The prior distribution of chain latent ``name`` at theta (computed once per theta)."""
        if name not in self._priors:
            self._priors[name] = self.model.chains[name].prior(self.theta, self.data)
        return self._priors[name]

    def _chain_site(self, name, others) -> ChainTarget:
        if name not in self.model.chains:
            raise ValueError(
                f"a chain kernel needs latent {name!r} to be a chain (a chain distribution in the model "
                f"language, or Model(chains={{{name!r}: mcem.Chain(...)}})); model {self.model.name!r} "
                f"declares chains for {sorted(self.model.chains) or 'no latent'}"
            )
        theta, data, model = self.theta, self.data, self.model
        emit = model.chains[name].emission
        spec = model.latents[name]

        def fn(zs):
            out = np.asarray(model.log_joint(theta, {**others, name: zs}), dtype=float)
            return out.sum(axis=-1) if out.ndim > np.ndim(zs) - len(spec.shape) else out

        def emission(zs):
            zs = np.asarray(zs)
            lead = zs.shape[: zs.ndim - len(spec.shape) - 1]
            rest = {n: np.broadcast_to(v, lead + np.shape(v)) for n, v in others.items() if n != name}
            return np.asarray(emit(theta, {**rest, name: zs}, data), dtype=float)

        shared = len(model.latents) == 1
        prior = self.chain_prior(name)
        return ChainTarget(fn, prior, emission, shared=shared,
                           offset=self._chain_offset(name, others[name], fn, prior, emission) if shared else None)

    def _chain_offset(self, name, z, fn, prior, emission):
        """The log joint minus the chain's own terms (constant at theta when the chain is the only
        latent), from the current paths once per theta; None when no path has a finite value."""
        if name not in self._offsets:
            with np.errstate(all="ignore"):
                z = np.asarray(z)
                rest = fn(z) - np.asarray(prior.log_prob(z), dtype=float) - emission(z).sum(axis=-1)
            finite = rest[np.isfinite(rest)]
            self._offsets[name] = float(np.median(finite)) if finite.size else None
        return self._offsets[name]

    def log_joint(self, z) -> np.ndarray:
        """Complete-data log joint summed over units: shape = the batch shape of ``z``."""
        out = np.asarray(self.model.log_joint(self.theta, z), dtype=float)
        n0 = self.model.latent_names[0]
        batch_ndim = np.ndim(z[n0]) - len(self.model.latents[n0].shape)
        return out.sum(axis=-1) if out.ndim > batch_ndim else out

    def sample_exact(self, rng, batch) -> dict:
        fn = self.model.posterior_sampler_fn
        if fn is None:
            raise ValueError(f"model {self.model.name!r} has no posterior_sampler")
        z = fn(self.theta, self.data, rng, tuple(batch))
        missing = [n for n in self.model.latent_names if n not in z]
        if missing:
            raise ValueError(f"posterior_sampler returned no draws for latent(s) {missing}")
        return {n: np.asarray(z[n]) for n in self.model.latent_names}

"""Model-level kernels: site-by-site composition and the exact posterior sampler.

A model-level kernel works on the dict of all latent arrays and receives a *model target* (built
by the E step for the current theta) instead of a single log density. The target provides::

    target.site(name, z, kernel) -> Target   # log density of site `name` given the other sites
    target.log_joint(z) -> (chains,)          # the complete-data log joint
    target.sample_exact(rng, batch) -> dict   # exact draws from p(z | x; theta), when available

Interface: ``init(z0, target, rng)``, ``step(state, target, rng, adapt)``,
``refresh(state, target)``, ``log_joint(state, target)``; states have a ``z`` dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from .base import Kernel

__all__ = ["Compose", "ComposeState", "Exact", "ExactState"]


def _joint(lp, target):
    """The log joint per chain from a site's cached terms (plus a chain target's constant rest)."""
    lp = lp.sum(axis=1) if lp.ndim == 2 else lp
    offset = getattr(target, "offset", None)
    return lp if offset is None else lp + offset


class ComposeState(NamedTuple):
    sites: dict  # site name -> the site kernel's state
    loglik: np.ndarray | None = None  # log joint at the current z when known for free

    @property
    def z(self) -> dict:
        return {n: s.z for n, s in self.sites.items()}


class Compose:
    """Metropolis-within-Gibbs: cycle through the latent sites, each with its own kernel.

    Parameters
    ----------
    kernels : dict
        Site name -> site kernel (:class:`Gibbs`, :class:`RWM`, :class:`MALA`, :class:`Emcee`).
    order : sequence of str, optional
        Update order (default: the dict's order).

    With several sites, each site's cached log density is re-evaluated before its update (the
    other sites have moved since), except for kernels that do not read it (Gibbs).
    """

    name = "compose"

    def __init__(self, kernels: Mapping, order=None):
        if not isinstance(kernels, Mapping) or not kernels:
            raise TypeError(f"Compose: kernels must be a non-empty dict site -> kernel, got {kernels!r}")
        for k, v in kernels.items():
            if not isinstance(v, Kernel):
                raise TypeError(f"Compose: kernels[{k!r}] must be a site kernel, got {v!r}")
        self.kernels = dict(kernels)
        order = list(self.kernels) if order is None else list(order)
        if sorted(order) != sorted(self.kernels):
            raise ValueError(
                f"Compose: order must list each site once, got {order} for sites {list(self.kernels)}"
            )
        self.order = order
        bad = [n for n in order if getattr(self.kernels[n], "single_site_only", False)]
        if len(order) > 1 and bad:
            raise ValueError(
                f"Compose: the emcee kernel (sites {bad}) needs to be the model's only latent site "
                "(emcee evaluates half-ensembles, which cannot be paired with the other sites); "
                "use RWM for those sites"
            )

    @property
    def metropolis_sites(self):
        return {n: self.kernels[n].metropolis for n in self.order}

    def init(self, z0, target, rng):
        z = dict(z0)
        sites = {}
        for n in self.order:
            k = self.kernels[n]
            sites[n] = k.init(z[n], target.site(n, z, k), rng)
            z[n] = sites[n].z
        return ComposeState(sites)

    def refresh(self, state, target):
        z = state.z
        sites = {
            n: self.kernels[n].refresh(state.sites[n], target.site(n, z, self.kernels[n]))
            for n in self.order
        }
        return ComposeState(sites, self._joint_cache(sites, target, z))

    def step(self, state, target, rng, adapt=False):
        multi = len(self.order) > 1
        sites = dict(state.sites)
        z = state.z
        infos = {}
        ld = None
        for n in self.order:
            k = self.kernels[n]
            ld = target.site(n, z, k)
            ss = sites[n]
            if multi and k.uses_cached_logp:
                ss = k.refresh(ss, ld)
            ss, infos[n] = k.step(ss, ld, rng, adapt)
            sites[n] = ss
            z[n] = ss.z
        loglik = _joint(sites[self.order[-1]].logp, ld) if ld is not None and ld.joint else None
        return ComposeState(sites, loglik), infos

    def _joint_cache(self, sites, target, z):
        n = self.order[-1]
        if getattr(sites[n], "stale", False):  # the kernel's refresh left its log density behind
            return None
        ld = target.site(n, z, self.kernels[n])
        return _joint(sites[n].logp, ld) if ld.joint else None

    def log_joint(self, state, target):
        """The complete-data log joint (chains,) at the current state (cached when possible)."""
        if state.loglik is not None:
            return state.loglik
        return target.log_joint(state.z)

    def sample_block(self, state, target, rng, n_draws, thin=1):
        """Block sampling for a single site whose kernel offers it (emcee, the simulation
        smoother), else None."""
        if len(self.order) != 1:
            return None
        n = self.order[0]
        k = self.kernels[n]
        if not callable(getattr(k, "sample", None)):
            return None
        z = state.z
        ld = target.site(n, z, k)
        ss, draws, logp, acc = k.sample(state.sites[n], ld, rng, n_draws, thin)
        if ld.joint:
            offset = getattr(ld, "offset", None)  # a chain target's constant rest of the log joint
            trace = logp if offset is None else logp + offset
        else:
            trace = target.log_joint({n: draws})
        new = ComposeState({n: ss}, ss.logp if ld.joint else None)
        return new, {n: draws}, trace, {n: acc}

    def __repr__(self):
        inner = ", ".join(f"{n!r}: {self.kernels[n]!r}" for n in self.order)
        return f"Compose({{{inner}}})"


class ExactState(NamedTuple):
    z: dict


class Exact:
    """Independent exact draws from the model's posterior sampler (an oracle kernel).

    Each step replaces the whole latent dict with ``target.sample_exact(rng, (chains,))``, i.e.
    ``model.posterior_sampler_fn(theta, data, rng, (chains,))``.
    """

    name = "exact"
    metropolis_sites = {}

    def __init__(self):
        self.kernels = {}
        self.order = []

    def init(self, z0, target, rng):
        return ExactState(dict(z0))

    def refresh(self, state, target):
        return state

    def step(self, state, target, rng, adapt=False):
        chains = next(iter(state.z.values())).shape[0] if state.z else 1
        z = target.sample_exact(rng, (chains,))
        return ExactState(dict(z)), {}

    def log_joint(self, state, target):
        return target.log_joint(state.z)

    def __repr__(self):
        return "Exact()"

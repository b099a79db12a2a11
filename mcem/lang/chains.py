"""Latents with a chain distribution in the model language: their prior, their emission terms
per time step, the check that each term involves one time step, and whether they are Gaussian.

A latent declared with a chain distribution (``dist.MarkovChain``, ``GaussianRandomWalk``,
``AR1``, ``LinearGaussianStateSpace``) has its time steps along its first axis. Observations are
filed under time steps like rows under units: row t of an observation whose first axis has the
chain's length goes to time step t (with one chain latent), or ``unit_index={"s": times}`` says
where each row goes. From that the compiler builds an :class:`mcem.Chain`: the prior
distribution at theta and the per-time emission terms, which the chain samplers use. Two checks
run when the model is built, with a few batched evaluations:

* locality: the terms filed under time step t change only with the chain's value at t, and
  nothing left unfiled depends on the chain (the unit-independence check of
  :mod:`mcem.lang.units`, with time steps as units);
* Gaussianity (continuous chains): every emission term is a quadratic function of its state at
  two parameter points, so the full conditional of the path is Gaussian and the simulation
  smoother applies (otherwise conditional SMC).

When the locality check fails the latent is sampled by the general kernels, with a warning.
"""

from __future__ import annotations

import numpy as np

from ..core import Chain
from ..kernels.gaussian_chain import quadratic_emission
from .trace import Handle
from .units import _random_latent, _random_theta, check_units, scatter

__all__ = ["chain_latents", "ChainPrior", "NumpyEmission", "NumpyChainPieces", "build_chains"]


def chain_latents(lat_sites) -> list:
    """Names of the latents declared with a chain distribution, in declaration order."""
    return [n for n, s in lat_sites.items() if getattr(s.dist, "is_chain", False)]


class ChainPrior:
    """``prior(theta, data)``: the chain distribution of latent ``name`` at ``theta`` (the model
    function run once with numpy, the other latents at ``z0``)."""

    def __init__(self, fn, name, z0):
        self.fn, self.name, self.z0 = fn, name, z0

    def __call__(self, theta, data):
        h = Handle("eval", theta, self.z0)
        self.fn(h, **data)
        return h.sites[self.name].dist


class NumpyEmission:
    """``emission(theta, z, data)`` of a model evaluated with numpy: the terms filed under the
    chain's time steps, summed per time step, shape batch + (T,)."""

    def __init__(self, evaluate, maps, name, T):
        self.evaluate, self.maps, self.name, self.T = evaluate, maps, name, T

    def __call__(self, theta, z, data=None):
        terms, batch = self.evaluate(theta, z, data)
        out = np.zeros(batch + (self.T,))
        for s, lp in terms.values():
            if s.kind != "latent" and self.name in self.maps.get(s.name, {}):
                out = out + scatter(lp, self.maps[s.name][self.name])
        return out


class NumpyChainPieces:
    """``pieces(theta, z, site)`` for the locality check, with numpy: ({site: terms per time
    step}, the total without the chain's prior term)."""

    def __init__(self, evaluate, maps, data):
        self.evaluate, self.maps, self.data = evaluate, maps, data

    def __call__(self, theta, z, site):
        terms, batch = self.evaluate(theta, z, self.data)
        parts, tot = {}, np.zeros(batch)
        for s, lp in terms.values():
            if s.kind != "latent" and site in self.maps.get(s.name, {}):
                parts[s.name] = scatter(lp, self.maps[s.name][site])
            if s.name != site:
                tot = tot + (lp.reshape(batch + (-1,)).sum(-1) if lp.ndim > len(batch) else lp)
        return parts, tot


def _is_gaussian(emission, init, params, latents, name, rng):
    """Whether the emission terms of continuous chain ``name`` are quadratic in its state, at the
    initial parameters and a nearby point, the other latents at a random point."""
    spec = latents[name]
    T, state = spec.shape[0], spec.shape[1:]
    thetas = [init]
    try:
        thetas.append(_random_theta(params, init, rng))
    except Exception:  # a transform that fails away from init: check at init only
        pass
    for theta in thetas:
        others = {n: _random_latent(sp, rng, (1,)) for n, sp in latents.items() if n != name}

        def em(zs, theta=theta, others=others):
            lead = zs.shape[: zs.ndim - len(spec.shape) - 1]
            rest = {n: np.broadcast_to(v, lead + v.shape) for n, v in others.items()}
            return emission(theta, {**rest, name: zs}, None)

        for center in (np.zeros((1, T) + state), 3.0 * rng.standard_normal((1, T) + state)):  # two places
            try:
                with np.errstate(all="ignore"):
                    *_, exact = quadratic_emission(em, 1, T, state, center=center, h=1.0 + np.abs(center).max())
            except (ValueError, FloatingPointError):
                return False
            if not exact:
                return False
    return True


def build_chains(fn, names, lat_sites, latents, params, init, emissions, pieces):
    """{name: Chain} for the chain latents whose emission terms pass the locality check, and the
    warnings for those that do not. ``emissions[name]`` and ``pieces`` are the compiled (JAX or
    numpy) emission and check functions."""
    rng = np.random.default_rng(4242)
    z0 = {n: spec.initial(rng, ()) for n, spec in latents.items()}
    chains, problems = {}, []
    for name in names:
        ok, _ = check_units(pieces, init, params, lat_sites, name)
        if not ok:
            problems.append(
                f"latent {name!r}: the chain samplers need every term that involves the chain filed "
                f"under the one time step it depends on (row t of an observation whose first axis has "
                f"the chain's length {latents[name].shape[0]}, or unit_index={{{name!r}: time index}}); "
                f"some term of this model involves several time steps of {name!r} or is not filed, "
                "so the chain is sampled by the general kernels instead (much slower to mix)."
            )
            continue
        gaussian = False if latents[name].is_discrete else _is_gaussian(
            emissions[name], init, params, latents, name, rng)
        chains[name] = Chain(ChainPrior(fn, name, z0), emissions[name], gaussian=gaussian)
    return chains, problems

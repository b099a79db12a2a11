"""Latents that form a chain: how a chain enters a model (:class:`Chain`).

A latent array ``z[name]`` of shape ``(T,)`` or ``(T, d)`` whose prior is a Markov chain over its
first axis (time) -- a hidden Markov chain of states, a random walk, an AR(1), a linear-Gaussian
state-space process -- is sampled as one block by the chain kernels (forward filtering backward
sampling, the Gaussian simulation smoother, conditional SMC). They need the log joint split in two:

* ``prior(theta, data)``: the chain's prior distribution at ``theta``, one of the chain
  distributions of :mod:`mcem.distributions.chains` (``MarkovChain``, ``GaussianRandomWalk``,
  ``AR1``, ``LinearGaussianStateSpace``) with numpy parameters;
* ``emission(theta, z, data)``: every other term of the log joint that involves the chain, filed
  under the time step it belongs to, shape ``batch + (T,)``: the term at ``t`` may depend on
  ``z[name][..., t, ...]`` (and on the other latents and the parameters) but on no other time
  step of the chain. Terms free of the chain may be included or left out.

``log_joint`` (summed) equals ``prior.log_prob(z[name]) + emission(...).sum(-1)`` plus terms free
of the chain.

``gaussian`` says whether every emission term is a quadratic function of its state (Gaussian
observations of a linear function of the state), so that the full conditional of the whole
chain is Gaussian; ``None`` means unknown (the model language finds it out when it compiles).
"""

from __future__ import annotations

__all__ = ["Chain", "check_chains"]


class Chain:
    """How a chain latent enters the model (see the module docstring).

    Parameters
    ----------
    prior : callable
        ``prior(theta, data) -> distribution``: a chain distribution at ``theta``.
    emission : callable
        ``emission(theta, z, data) -> array``: per-time-step terms, shape ``batch + (T,)``.
    gaussian : bool or None
        Whether every emission term is quadratic in its state (None: unknown).
    """

    __slots__ = ("prior", "emission", "gaussian")

    def __init__(self, prior, emission, gaussian=None):
        if not callable(prior):
            raise TypeError(f"Chain: prior must be callable prior(theta, data) -> distribution, got {prior!r}")
        if not callable(emission):
            raise TypeError(f"Chain: emission must be callable emission(theta, z, data), got {emission!r}")
        if gaussian is not None and not isinstance(gaussian, bool):
            raise TypeError(f"Chain: gaussian must be True, False or None, got {gaussian!r}")
        self.prior, self.emission, self.gaussian = prior, emission, gaussian

    def __getstate__(self):
        return (self.prior, self.emission, self.gaussian)

    def __setstate__(self, state):
        self.prior, self.emission, self.gaussian = state

    def __repr__(self):
        return f"Chain(prior={self.prior!r}, emission={self.emission!r}, gaussian={self.gaussian!r})"


def check_chains(chains, latents) -> dict:
    """``chains`` checked against the latent declarations: a dict name -> :class:`Chain`."""
    if chains is None:
        return {}
    if not isinstance(chains, dict):
        raise TypeError(f"chains must be a dict latent name -> mcem.Chain, got {type(chains).__name__}")
    out = {}
    for n, c in chains.items():
        if n not in latents:
            raise ValueError(f"chains names {n!r}, which is not a latent; the latents are {sorted(latents)}")
        if not isinstance(c, Chain):
            raise TypeError(f"chains[{n!r}] must be an mcem.Chain, got {type(c).__name__}")
        spec = latents[n]
        if not spec.shape or len(spec.shape) > 2:
            raise ValueError(
                f"chains[{n!r}]: a chain latent has shape (T,) or (T, d) (time first), got {spec.shape}")
        if spec.unit:
            raise ValueError(f"chains[{n!r}]: a chain latent cannot be declared with unit=True "
                             "(its time steps are not independent)")
        out[n] = c
    return out

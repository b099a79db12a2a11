"""Choosing kernels for a model: ``sampler="auto"`` and explicit specifications.

``auto`` reads each latent's support and unit structure:

* the model has an exact posterior sampler -> :class:`Exact` (all sites at once);
* a latent that forms a chain (``model.chains``): a discrete chain -> :class:`FFBS` (forward
  filtering backward sampling of the whole path); a continuous chain with Gaussian emission
  terms -> :class:`KalmanSmoother` (the whole path from its Gaussian full conditional); any
  other continuous chain -> :class:`CSMC` (conditional SMC);
* a :class:`~mcem.Discrete` latent -> :class:`Gibbs` (per unit when per-unit terms exist);
* a unit :class:`~mcem.Continuous` latent with per-unit terms (``model.conditionals[site]`` or a
  per-unit log joint) -> per-unit :class:`RWM`;
* the model's only latent, continuous, without usable unit terms, of size <= 10 and with at
  least ``2 * size`` chains -> :class:`Emcee`;
* otherwise a joint :class:`RWM` for the site.

Several sites are composed site by site (:class:`Compose`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .base import Kernel
from .compose import Compose, Exact
from .csmc import CSMC
from .ensemble import Emcee
from .ffbs import FFBS
from .kalman import KalmanSmoother
from .gibbs import Gibbs
from .mala import MALA
from .metropolis import RWM

__all__ = ["KERNELS", "build_kernel", "site_mode", "auto_site_kernel"]

#: Site kernels by name.
KERNELS = {"gibbs": Gibbs, "rwm": RWM, "mala": MALA, "emcee": Emcee, "ffbs": FFBS, "kalman": KalmanSmoother,
           "csmc": CSMC}
EMCEE_MAX_SIZE = 10


def site_mode(model, name) -> str:
    """How a site's log density is built from the model.

    ``"conditional"``: ``model.conditionals[name]`` (per-unit terms);
    ``"per_unit"``: the per-unit log joint (a unit site of a per-unit model);
    ``"sum"``: the per-unit log joint summed over units (a non-unit site of a per-unit model);
    ``"total"``: the log joint as returned (one value per chain).
    """
    spec = model.latents[name]
    if name in model.conditionals:
        return "conditional"
    if model.per_unit:
        return "per_unit" if spec.unit else "sum"
    return "total"


def _make(kind, options, where):
    if kind not in KERNELS:
        raise ValueError(
            f"{where}: unknown kernel {kind!r}; expected one of {sorted(KERNELS) + ['auto', 'exact']} "
            "or a kernel instance"
        )
    try:
        return KERNELS[kind](**(options or {}))
    except TypeError as exc:
        raise TypeError(f"{where}: invalid options {options!r} for kernel {kind!r}: {exc}") from None


def auto_site_kernel(model, name, n_chains, options=None):
    """The kernel ``sampler="auto"`` picks for one site (``options``: kernel name -> kwargs)."""
    options = options or {}
    spec = model.latents[name]
    chain = model.chains.get(name)
    if chain is not None:
        kind = "ffbs" if spec.is_discrete else ("kalman" if chain.gaussian else "csmc")
    elif spec.is_discrete:
        kind = "gibbs"
    elif spec.unit and site_mode(model, name) in ("conditional", "per_unit"):
        kind = "rwm"
    else:
        size = int(np.prod(spec.shape, dtype=int))
        small = 1 <= size <= EMCEE_MAX_SIZE and n_chains >= 2 * size
        if len(model.latents) == 1 and small:
            kind = "emcee"
        else:  # a joint update: with the gradient, Langevin proposals scale with the dimension
            kind = "mala" if (model.grad_latents_fn is not None and size > 1) else "rwm"
    return _make(kind, options.get(kind), f"sampler='auto' (site {name!r})")


class LatentGrad:
    """``fn(theta, z, data)``: the model's gradient of the log joint in ``z[name]``."""

    def __init__(self, model, name):
        self.model, self.name = model, name

    def __call__(self, theta, z, data):
        return self.model.grad_latents_fn(theta, z, data)[self.name]


def _bind(kernel, model, name, n_chains):
    spec = model.latents[name]
    kernel.check_spec(spec, name)
    if getattr(kernel, "chain", False) and name not in model.chains:
        raise ValueError(
            f"sampler: the {type(kernel).__name__} kernel samples a latent that forms a chain; latent "
            f"{name!r} of model {model.name!r} is not one (declare it with a chain distribution such as "
            "dist.MarkovChain or dist.GaussianRandomWalk, or pass Model(chains=...))"
        )
    if isinstance(kernel, MALA) and kernel.grad is None:
        if model.grad_latents_fn is None:
            raise ValueError(
                f"sampler: the MALA kernel for latent {name!r} needs grad=fn with "
                "fn(theta, z, data) -> gradient of the log joint with respect to z[name] "
                f"(model {model.name!r} has no grad_latents; models of the model language "
                "compiled by JAX have it)"
            )
        kernel = kernel.replace(grad=LatentGrad(model, name))
    return kernel.bind(spec)


def build_kernel(model, sampler="auto", *, n_chains=4, options=None):
    """Resolve a sampler specification into a model-level kernel (:class:`Compose` or :class:`Exact`).

    Parameters
    ----------
    model : Model
    sampler : str, Kernel, Compose, Exact or dict
        ``"auto"``; ``"exact"``; a kernel name (``"gibbs"``, ``"rwm"``, ``"mala"``,
        ``"emcee"``, ``"ffbs"``, ``"kalman"``, ``"csmc"``) or a site-kernel instance used for every site; a :class:`Compose`; or a
        dict site -> name or kernel (sites left out are chosen automatically).
    n_chains : int
    options : dict, optional
        Keyword arguments for kernels built from a name. With ``"auto"`` or a dict, a mapping
        kernel name -> kwargs (``{"rwm": {"target_accept": 0.3}}``).
    """
    names = list(model.latent_names)
    if not names:
        raise ValueError(f"model {model.name!r} has no latent variables; there is nothing to sample")
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"sampler_options must be a dict or None, got {type(options).__name__}")
    if isinstance(sampler, Exact) or (isinstance(sampler, str) and sampler == "exact"):
        if model.posterior_sampler_fn is None:
            raise ValueError(
                f"sampler='exact' needs a model with a posterior_sampler; model {model.name!r} has none"
            )
        return sampler if isinstance(sampler, Exact) else Exact()
    if isinstance(sampler, str) and sampler == "auto":
        if model.posterior_sampler_fn is not None:
            return Exact()
        return Compose(
            {n: _bind(auto_site_kernel(model, n, n_chains, options), model, n, n_chains) for n in names}
        )
    if isinstance(sampler, str):
        return Compose({n: _bind(_make(sampler, options, "sampler"), model, n, n_chains) for n in names})
    if isinstance(sampler, Compose):
        if sorted(sampler.kernels) != sorted(names):
            raise ValueError(
                f"sampler: the Compose kernel covers sites {sorted(sampler.kernels)}, "
                f"the model's latents are {names}"
            )
        return Compose(
            {n: _bind(sampler.kernels[n], model, n, n_chains) for n in sampler.order}, sampler.order
        )
    if isinstance(sampler, Kernel):
        return Compose({n: _bind(sampler, model, n, n_chains) for n in names})
    if isinstance(sampler, Mapping):
        unknown = sorted(set(sampler) - set(names))
        if unknown:
            raise ValueError(f"sampler names unknown latent(s) {unknown}; the model's latents are {names}")
        kernels = {}
        for n in names:
            spec = sampler.get(n, "auto")
            if isinstance(spec, str) and spec == "auto":
                k = auto_site_kernel(model, n, n_chains, options)
            elif isinstance(spec, str):
                k = _make(spec, (options or {}).get(spec), f"sampler[{n!r}]")
            elif isinstance(spec, Kernel):
                k = spec
            else:
                raise TypeError(
                    f"sampler[{n!r}] must be a kernel name or a site-kernel instance, got {spec!r}"
                )
            kernels[n] = _bind(k, model, n, n_chains)
        return Compose(kernels)
    raise TypeError(
        "sampler must be 'auto', 'exact', a kernel name, a kernel instance, a Compose or a dict "
        f"site -> kernel, got {type(sampler).__name__} {sampler!r}"
    )

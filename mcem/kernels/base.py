"""Shared pieces of the E-step kernels: the site target, support transforms, shape helpers.

A *site kernel* updates one latent array ``z`` of shape ``(chains, *site_shape)``. It holds no
model: it is configured with its options and exposes::

    init(z0, logdensity, rng) -> state
    step(state, logdensity, rng, adapt=False) -> (state, info)
    refresh(state, logdensity) -> state      # re-evaluate cached log densities (theta changed)

``logdensity(z)`` returns ``(chains,)`` values, or ``(chains, n_units)`` per-unit terms when
axis 1 of ``z`` indexes conditionally independent units. It must accept extra *leading* batch
axes (``(K, chains, ...)`` for enumerated Gibbs) and broadcast over them. ``state`` and ``info``
are small NamedTuples; every state has the fields ``z`` (the current position) and ``logp``
(the log density at ``z``, same shape as ``logdensity(z)``, without any Jacobian term).

A :class:`Target` wraps a log density and, optionally, its gradient with respect to ``z``
(needed by :class:`~mcem.kernels.MALA`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import constraints as C

__all__ = ["Target", "ChainTarget", "Kernel", "SiteInfo", "support_transform"]


class Target:
    """A log density on one latent site, with an optional gradient.

    Parameters
    ----------
    fn : callable
        ``fn(z) -> (chains,)`` or ``(chains, n_units)``.
    grad : callable, optional
        ``grad(z) -> array shaped like z``: the gradient of ``fn(z)`` summed over units, with
        respect to ``z`` (on the constrained scale).
    joint : bool
        True when ``fn`` returns (per-unit terms of) the full complete-data log joint, so that a
        sampler's cached value is the log joint at the current state.
    """

    __slots__ = ("fn", "grad_fn", "joint")

    def __init__(self, fn, grad=None, joint=False):
        if not callable(fn):
            raise TypeError(f"Target: fn must be callable, got {type(fn).__name__}")
        if grad is not None and not callable(grad):
            raise TypeError(f"Target: grad must be callable or None, got {type(grad).__name__}")
        self.fn = fn
        self.grad_fn = grad
        self.joint = bool(joint)

    def __call__(self, z):
        return self.fn(z)

    @property
    def has_grad(self) -> bool:
        return self.grad_fn is not None

    def grad(self, z):
        if self.grad_fn is None:
            raise TypeError(
                "this log density has no gradient; wrap it as mcem.kernels.Target(fn, grad=...) "
                "or give the MALA kernel a grad(theta, z, data) option"
            )
        return self.grad_fn(z)


class SiteInfo(NamedTuple):
    """What a site kernel reports after one step.

    ``accepted``: boolean array shaped like the state's ``logp`` (``(chains,)`` or
    ``(chains, n_units)``), or None for kernels that always move (Gibbs, exact).
    """

    accepted: np.ndarray | None = None


class Kernel:
    """Base class of the site kernels: options, binding to a latent declaration, checks."""

    #: Metropolis-type kernels report acceptance and may collapse.
    metropolis = False
    #: Whether ``step`` reads the cached log density of the current state (if False, the
    #: composition does not need to refresh the cache before each step).
    uses_cached_logp = True
    #: Which latent declarations the kernel can update.
    discrete = False
    #: Kernels that can only update a model's only latent site (emcee).
    single_site_only = False
    name = "kernel"

    def options(self) -> dict:  # pragma: no cover - overridden
        return {}

    def replace(self, **changes):
        """A copy with some options changed."""
        opts = self.options()
        unknown = sorted(set(changes) - set(opts))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown option(s) {unknown}")
        opts.update(changes)
        return type(self)(**opts)

    def bind(self, spec):
        """A copy configured for a latent declaration (fills the support or K when unset)."""
        self.check_spec(spec)
        return self

    def check_spec(self, spec, site="z"):
        if bool(spec.is_discrete) != self.discrete:
            need = "a Discrete latent" if self.discrete else "a Continuous latent"
            raise TypeError(
                f"{type(self).__name__} kernel needs {need}; latent {site!r} is {spec!r}"
            )

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items() if v is not None)
        return f"{type(self).__name__}({opts})"


# ---------------------------------------------------------------------------- shape helpers
def check_logp(lp, z, who):
    """Validate the output of a log density at ``z`` (chains, ...): (chains,) or (chains, n)."""
    lp = np.asarray(lp, dtype=float)
    ok = [z.shape[:1]]
    if z.ndim >= 2:
        ok.append(z.shape[:2])
    if lp.shape not in ok:
        raise ValueError(
            f"{who}: the log density must return shape {ok[0]} (one value per chain)"
            + (f" or {ok[1]} (per chain and unit)" if len(ok) > 1 else "")
            + f" for a latent of shape {z.shape}, got {lp.shape}"
        )
    return lp


def reduce_to(a, ndim):
    """Sum an elementwise array over its axes beyond the first ``ndim``."""
    if a.ndim > ndim:
        return a.sum(axis=tuple(range(ndim, a.ndim)))
    return a


def expand_to(a, ndim):
    """Append singleton axes to ``a`` until it has ``ndim`` axes (for broadcasting over z)."""
    if a.ndim < ndim:
        return a.reshape(a.shape + (1,) * (ndim - a.ndim))
    return a


def proposal_dim(z, lp_ndim):
    """Number of coordinates moved together: a unit's elements, or the whole site."""
    return int(np.prod(z.shape[lp_ndim:], dtype=int)) if z.ndim > lp_ndim else 1


def default_target_accept(dim, one_d=0.44, high_d=0.234):
    """0.44 for one-dimensional updates, 0.234 from five dimensions on, linear in between."""
    if dim <= 1:
        return one_d
    if dim >= 5:
        return high_d
    return one_d + (high_d - one_d) * (dim - 1) / 4.0


def robbins_monro(log_scale, alpha, target, n_adapt, rate, decay):
    """One Robbins-Monro step on a log scale toward a target acceptance probability."""
    gain = rate / (n_adapt + 1.0) ** decay
    return np.clip(log_scale + gain * (alpha - target), -30.0, 30.0)


def accept_prob(log_ratio):
    """min(1, exp(log_ratio)) with NaN treated as 0."""
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.exp(np.minimum(log_ratio, 0.0))
    return np.nan_to_num(a, nan=0.0)


# ---------------------------------------------------------------------------- support transforms
def support_transform(support):
    """The constraint whose bijection maps the unconstrained scale onto an elementwise support.

    ``None`` gives ``constraints.real`` (the identity); ``constraints.real``, ``positive`` (the
    exponential) and ``interval(a, b)`` (the scaled logistic) are returned as they are. The
    kernels use the constraint's ``forward``, ``inverse``, ``elementwise_log_abs_det_jacobian``,
    ``log_density_grad`` (the chain rule for a gradient, Jacobian term included) and
    ``is_identity``; see also :func:`to_unconstrained` and :func:`log_jacobian`.
    """
    if support is None:
        return C.real
    if isinstance(support, C.Real | C.Positive | C.Interval):
        return support
    raise TypeError(
        "a continuous kernel needs an elementwise support (constraints.real, positive or "
        f"interval(a, b)), got {support!r}"
    )


def to_unconstrained(tr, z):
    """``tr.inverse(z)`` as a new float array (never a view of ``z``). A value outside the
    support gives NaN or an infinity without a warning: the kernels refuse it by name."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.array(tr.inverse(z), dtype=float)


def log_jacobian(tr, w):
    """The elementwise log|dz/dw| of ``tr`` at ``w``, or None for the identity (no term)."""
    return None if tr.is_identity else tr.elementwise_log_abs_det_jacobian(w)


# ---------------------------------------------------------------------------- chain targets
class ChainTarget(Target):
    """What a chain kernel sees of a model at a fixed theta for one chain latent.

    ``fn(z)`` is the complete-data log joint (one value per chain, z of shape ``(chains, T,
    *state)``) with the other latents held fixed; ``prior`` the chain's prior distribution at
    theta (a chain distribution with numpy parameters: ``MarkovChain`` has ``log_init`` and
    ``log_transition``, the Gaussian chains ``linear_gaussian()``); ``emission(zs)`` the
    per-time-step terms of everything else that involves the chain, for ``zs`` of shape
    ``(*lead, chains, T, *state)`` (the other latents broadcast over the leading axes), shape
    ``(*lead, chains, T)``. ``shared`` is True when the emission terms do not depend on the
    other latents (the chain is the model's only latent), so that what a kernel derives from
    them at one theta (a factorised precision matrix) stays valid from sweep to sweep until the
    next :meth:`refresh`. A chain kernel's cached ``logp`` is its own terms (the prior and the
    emission terms); ``offset``, when known, is the rest of the log joint, a constant at this
    theta (the chain being the only latent), so that ``logp + offset`` is the log joint
    (``joint`` is then True) and the E step need not evaluate it again.
    """

    __slots__ = ("prior", "emission", "shared", "offset")

    def __init__(self, fn, prior, emission, shared=False, offset=None):
        super().__init__(fn, joint=offset is not None)
        if not callable(emission):
            raise TypeError(f"ChainTarget: emission must be callable, got {type(emission).__name__}")
        self.prior = prior
        self.emission = emission
        self.shared = bool(shared)
        self.offset = None if offset is None else float(offset)

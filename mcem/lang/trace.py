"""The handle ``m`` of a model function and the record of its sites.

A model function is run twice over: once to *trace* it (``Handle("trace")``: declarations are
checked, parameters get their initial values, latents their specifications, observed data are
checked against their distribution's support) and then, inside the compiled model, to
*evaluate* it (``Handle("eval", theta, z)``: each primitive returns the current value and
records its distribution). Either way the sites are kept in ``Handle.sites``, in order.

The handle carries the array namespace of the evaluation: ``m.np`` and ``m.special`` are
``jax.numpy`` and ``jax.scipy.special`` when the model is compiled by JAX (the values are then
JAX tracers), ``numpy`` and ``scipy.special`` otherwise (the trace, and models evaluated with
numpy). Model code written with ``m.np``, ``m.special`` and operators runs either way.
"""

from __future__ import annotations

import numpy as np

from .. import constraints as C
from .._jax import numpy_namespace
from .._validation import as_real_array, conform
from ..core import Continuous, Discrete

__all__ = ["Site", "Handle", "count_observations"]


class Site:
    """One declaration of a model: a param, latent or observe site and what it carries."""

    __slots__ = ("kind", "name", "value", "dist", "shape", "unit", "unit_index", "constraint", "init", "line")

    def __init__(self, kind, name, **kw):
        self.kind, self.name = kind, name
        for k in self.__slots__[2:]:
            setattr(self, k, kw.get(k))


class Handle:
    """The ``m`` passed to a model function: records or evaluates the primitives.

    ``m.np`` and ``m.special`` are the array namespace of the evaluation (numpy and
    scipy.special, or jax.numpy and jax.scipy.special when the model is compiled by JAX).
    """

    def __init__(self, mode, theta=None, z=None, ns=None):
        self._mode = mode  # "trace" or "eval"
        self._theta = theta
        self._z = z
        ns = ns or numpy_namespace()
        self.np = ns.np
        self.special = ns.special
        self.sites: dict[str, Site] = {}

    def _new(self, name, kind):
        if not isinstance(name, str) or not name:
            raise TypeError(f"{kind}: name must be a non-empty str, got {name!r}")
        if name in self.sites:
            raise ValueError(f"{kind}: the name {name!r} is used twice in the model")

    def param(self, name, *, shape=None, constraint=C.real, init=None):
        """Declare a parameter; returns its current (constrained) value."""
        self._new(name, "param")
        if self._mode == "eval":
            self.sites[name] = Site("param", name)
            return self._theta[name]
        if not isinstance(constraint, C.Constraint) or not constraint.has_bijection:
            raise TypeError(f"param {name!r}: constraint must be an mcem.constraints object, got {constraint!r}")
        if constraint.elementwise:
            constraint = constraint(() if shape is None else shape)
        elif shape is not None and C.as_shape(shape) != constraint.shape:
            raise ValueError(
                f"param {name!r}: shape {C.as_shape(shape)} does not match the constraint {constraint!r} "
                f"(shape {constraint.shape})"
            )
        if init is None:
            value = constraint.default()
        else:
            value = conform(as_real_array(init, f"param {name!r}: init"), constraint, constraint.shape,
                            f"param {name!r}: init")
        self.sites[name] = Site("param", name, constraint=constraint, init=value)
        return value

    def latent(self, name, dist, *, shape=None, unit=False, init=None):
        """Declare a latent variable with distribution ``dist``; returns its current value."""
        self._new(name, "latent")
        if not hasattr(dist, "log_prob") or not hasattr(dist, "support"):
            raise TypeError(f"latent {name!r}: dist must be an mcem.dist distribution, got {dist!r}")
        if self._mode == "eval":
            value = self._z[name]
            self.sites[name] = Site("latent", name, dist=dist, value=value, unit=unit)
            return value
        dshape = tuple(dist.batch_shape) + tuple(dist.event_shape)
        shape = dshape if shape is None else C.as_shape(shape, f"latent {name!r}: shape")
        if getattr(dist, "is_discrete", False):
            K = getattr(dist, "num_states", None)
            if not K:
                raise ValueError(
                    f"latent {name!r}: a discrete latent needs finitely many states, got {dist!r} "
                    "(use Bernoulli, Categorical or Binomial with a scalar total_count)"
                )
            spec = Discrete(int(K), shape=shape, unit=unit)
            value = np.zeros(shape, dtype=int)
        else:
            support = dist.support
            if not (isinstance(support, C.Constraint) and support.elementwise and support.has_bijection):
                raise ValueError(
                    f"latent {name!r}: only elementwise continuous supports (real, positive, interval) "
                    f"can be latent, got {support!r} from {dist!r}"
                )
            spec = Continuous(support, shape=shape, unit=unit, init=init)
            value = spec.init
        self.sites[name] = Site("latent", name, dist=dist, shape=shape, unit=unit, init=spec)
        return value

    def observe(self, name, dist, value, *, unit_index=None):
        """Declare observed data ``value`` with distribution ``dist``.

        ``value`` must lie in the support of ``dist`` (checked when the model is built, by
        ``dist.check_value(value, for_any_params=True)``: supports that move with the
        parameters, such as Uniform(low, high), are only checked for finite values).
        ``unit_index``: an integer array with one unit per element of the first axis of
        ``value`` (or a dict of them, one per unit latent).
        """
        self._new(name, "observe")
        if not hasattr(dist, "log_prob"):
            raise TypeError(f"observe {name!r}: dist must be an mcem.dist distribution, got {dist!r}")
        if self._mode == "trace" and hasattr(dist, "check_value"):
            # the data lie in the support (for any value of the parameters being estimated)
            dist.check_value(value, f"observe {name!r}", for_any_params=True)
        self.sites[name] = Site("observe", name, dist=dist, value=value, unit_index=unit_index)
        return value


    def factor(self, name, log_density, *, unit_index=None):
        """Add any extra term ``log_density`` to the log joint (a penalty, a Jacobian, a density
        mcem.dist does not have). Its elements are summed; with ``unit_index`` (as for
        :meth:`observe`) the elements of its first axis are filed under those units."""
        self._new(name, "factor")
        if self._mode == "trace":
            arr = np.asarray(log_density)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"factor {name!r}: log_density must be a real array, got {arr.dtype}")
            if unit_index is not None and arr.ndim == 0:
                raise ValueError(f"factor {name!r}: a log_density filed under units (unit_index) needs "
                                 "one element per unit index on its first axis, got a scalar")
        self.sites[name] = Site("factor", name, value=log_density, unit_index=unit_index)
        return log_density


def count_observations(trace):
    """Number of observed elements (events count once) over all observe sites."""
    n = 0
    for s in trace.sites.values():
        if s.kind == "observe":
            shape = np.shape(s.value)
            n_event = len(getattr(s.dist, "event_shape", ()))
            n += int(np.prod(shape[: len(shape) - n_event], dtype=int))
    return n

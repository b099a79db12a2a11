"""The base classes of the constraints: a set, its bijection from unconstrained space, its edges.

:class:`Constraint` declares the interface (``forward``, ``inverse``, ``log_abs_det_jacobian``,
``contains``, ``default``, ``edge``); :class:`_Elementwise` is the base of the constraints that
act on every element independently (their Jacobian is diagonal). See :mod:`mcem.constraints`.

The bijections (``forward``, ``inverse``, ``log_abs_det_jacobian``) take numpy or JAX arrays
(tracers inside ``jit``/``grad`` included): the namespace of the computation comes from
:func:`mcem._jax.namespace`, and the helpers below never write into an array that may be JAX.
Membership, defaults and edges are numpy only.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _jax
from . import boundary as B

__all__ = ["Constraint", "as_shape"]


def as_shape(shape, name="shape"):
    """Normalise an int or a sequence of ints to a tuple of non-negative ints."""
    if shape is None:
        return ()
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, str | bytes) or not hasattr(shape, "__iter__"):
        raise TypeError(
            f"{name} must be an int or a tuple of ints, got {type(shape).__name__} {shape!r}"
        )
    shape = tuple(shape)
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {shape!r}")
    out = tuple(int(s) for s in shape)
    if any(s < 0 for s in out):
        raise ValueError(f"{name} must contain non-negative ints, got {shape!r}")
    return out


def as_float(ns, x):
    """``x`` as a float array of the namespace ``ns`` (numpy: ``np.asarray(x, dtype=float)``;
    JAX: floating arrays unchanged, others cast to the default float type)."""
    if not ns.is_jax:
        return np.asarray(x, dtype=float)
    x = ns.np.asarray(x)
    return x if ns.np.issubdtype(x.dtype, ns.np.floating) else x.astype(ns.np.result_type(float))


def tril_fill(ns, vals, rows, cols, d):
    """A ``(..., d, d)`` matrix of zeros with ``vals[..., k]`` at ``(rows[k], cols[k])``.

    numpy fills a new array in place; JAX scatters with ``.at[].set()`` (traceable)."""
    shape = vals.shape[:-1] + (d, d)
    if ns.is_jax:
        return ns.np.zeros(shape, dtype=vals.dtype).at[..., rows, cols].set(vals)
    out = np.zeros(shape)
    out[..., rows, cols] = vals
    return out


def log_expit(ns, u):
    """``log(1 / (1 + exp(-u)))``, accurate in both tails (scipy's ``log_expit``; JAX's
    ``jax.nn.log_sigmoid``)."""
    return ns.jax.nn.log_sigmoid(u) if ns.is_jax else ns.special.log_expit(u)


def sum_last(x, n):
    """``x`` summed over its last ``n`` axes (``x`` itself when ``n == 0``)."""
    return x.sum(axis=tuple(range(x.ndim - n, x.ndim))) if n else x


class Constraint:
    """Base class. Subclasses define the set, its bijection and the log-Jacobian."""

    #: True when the constraint acts independently on every element.
    elementwise = False
    #: True when the set is continuous and has a bijection to R^n.
    has_bijection = True
    #: True for integer-valued supports.
    is_discrete = False
    #: True when the bijection is the identity map (no Jacobian term).
    is_identity = False

    shape: tuple = ()

    @property
    def unconstrained_shape(self) -> tuple:
        return self.shape

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=int))

    @property
    def unconstrained_size(self) -> int:
        return int(np.prod(self.unconstrained_shape, dtype=int))

    def forward(self, u):  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def log_abs_det_jacobian(self, u):  # pragma: no cover - abstract
        raise NotImplementedError

    def contains(self, x):
        """Elementwise (or per-event) membership; shape follows ``x`` less event axes."""
        raise NotImplementedError  # pragma: no cover - abstract

    def check(self, x) -> bool:
        """True when every element (event) of ``x`` lies in the set."""
        return bool(np.all(self.contains(np.asarray(x, dtype=float))))

    def default(self):
        """A canonical point inside the set, used as the default initial value."""
        raise NotImplementedError  # pragma: no cover - abstract

    #: Number of trailing axes that make one event (0 elementwise, 2 for matrices).
    _event_ndim = 0

    def edge(self, x) -> list:
        """The elements (events) of ``x`` at the edge of the set, as ``(index, reason)`` pairs.

        ``index`` is a tuple into ``x`` (into its batch axes for matrix-valued constraints) and
        ``reason`` a short text with the numbers (e.g. ``"smallest eigenvalue 1.2e-14
        (condition number 3e+13)"``). Non-finite values are reported as ``"not finite (nan)"``.
        An empty list when no element is at the edge. The criteria are in :mod:`mcem.boundary`.
        """
        return B.nonfinite(np.asarray(x, dtype=float), self._event_ndim)

    def at_edge(self, x) -> np.ndarray:
        """Boolean mask of :meth:`edge`: shape of ``x`` (less the event axes of a matrix)."""
        x = np.asarray(x, dtype=float)
        return B.edge_mask(self.edge(x), x.shape[: x.ndim - self._event_ndim])

    def describe(self) -> str:
        return repr(self)

    def _with_shape(self, shape):  # pragma: no cover - overridden where meaningful
        raise TypeError(f"{self!r} does not take a shape")

    def __call__(self, shape=()):
        return self._with_shape(as_shape(shape))

    def __eq__(self, other):
        return type(self) is type(other) and self._key() == other._key()

    def __hash__(self):
        return hash((type(self).__name__, self._key()))

    def _key(self):
        return (self.shape,)


class _Elementwise(Constraint):
    elementwise = True

    def __init__(self, shape=()):
        self.shape = as_shape(shape)

    def log_abs_det_jacobian(self, u):
        u = as_float(_jax.namespace(u), u)
        return sum_last(self.elementwise_log_abs_det_jacobian(u), len(self.shape))

    def elementwise_log_abs_det_jacobian(self, u):  # pragma: no cover - abstract
        raise NotImplementedError

    def log_density_grad(self, u, grad_x):  # pragma: no cover - abstract
        """The chain rule for a log density sampled on the unconstrained scale, elementwise.

        From the gradient ``grad_x`` of ``log p`` at ``x = forward(u)``, the gradient in ``u``
        of ``log p(forward(u)) + log|d forward / du|`` (the Jacobian term included).
        """
        raise NotImplementedError

    def _with_shape(self, shape):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.shape = shape
        return new

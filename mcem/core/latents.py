"""Latent variable declarations: :class:`Discrete` (finitely many states) and :class:`Continuous`.

A declaration gives the latent's shape (without batch axes), its support and, with
``unit=True``, says that axis 0 indexes conditionally independent units.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import constraints as C
from .._validation import as_real_array, conform

__all__ = ["LatentSpec", "Discrete", "Continuous"]


class LatentSpec:
    """Common part of latent declarations: a shape and an optional unit axis (axis 0)."""

    support: C.Constraint
    is_discrete = False

    def __init__(self, shape=(), unit=False):
        self.shape = C.as_shape(shape)
        if not isinstance(unit, bool):
            raise TypeError(f"unit must be True or False, got {unit!r}")
        if unit and not self.shape:
            raise ValueError(
                "unit=True needs a latent with at least one axis (axis 0 is the unit axis), "
                f"got shape={self.shape}"
            )
        self.unit = unit

    @property
    def n_units(self) -> int | None:
        return self.shape[0] if self.unit else None

    def contains(self, z) -> np.ndarray:
        return self.support.contains(np.asarray(z))


class Discrete(LatentSpec):
    """A latent with finitely many states 0, 1, ..., K-1 (for example mixture labels).

    Parameters
    ----------
    K : int
        Number of states.
    shape : int or tuple of int
        Shape of the latent array, without batch axes.
    unit : bool
        When True, axis 0 of ``shape`` indexes conditionally independent units.
    """

    is_discrete = True

    def __init__(self, K, shape=(), unit=False):
        if not isinstance(K, numbers.Integral) or isinstance(K, bool) or K < 1:
            raise ValueError(f"Discrete: K must be an int >= 1, got {K!r}")
        self.K = int(K)
        self.support = C.integer_interval(0, self.K - 1)
        super().__init__(shape, unit)

    def initial(self, rng: np.random.Generator, batch=()) -> np.ndarray:
        return rng.integers(0, self.K, size=tuple(batch) + self.shape)

    def __repr__(self):
        return f"Discrete({self.K}, shape={self.shape}, unit={self.unit})"


class Continuous(LatentSpec):
    """A continuous latent with an elementwise support (real, positive or an interval).

    Parameters
    ----------
    support : Constraint
        ``constraints.real``, ``constraints.positive`` or ``constraints.interval(a, b)``.
    shape, unit
        As for :class:`Discrete`.
    init : float or array, optional
        Initial value of the chains (default: the support's canonical point, 0 for real,
        1 for positive, the midpoint of an interval).
    """

    def __init__(self, support=C.real, shape=(), unit=False, init=None):
        if not isinstance(support, C.Constraint) or not support.elementwise or support.is_discrete:
            raise TypeError(
                "Continuous: support must be an elementwise continuous constraint "
                f"(constraints.real, positive or interval(a, b)), got {support!r}"
            )
        super().__init__(shape, unit)
        self.support = support(self.shape)
        if init is None:
            self.init = self.support.default()
        else:
            self.init = conform(as_real_array(init, "Continuous: init"), self.support, self.shape, "Continuous: init")

    def initial(self, rng: np.random.Generator, batch=()) -> np.ndarray:
        return np.broadcast_to(self.init, tuple(batch) + self.shape).copy()

    def __repr__(self):
        return f"Continuous({self.support!r}, shape={self.shape}, unit={self.unit})"


def random_latents(latents, rng: np.random.Generator, batch, scale=0.5) -> dict:
    """Latent arrays with leading ``batch`` axes, spread over each support (for checks).

    Discrete latents take uniform random states; continuous ones start at their initial value
    and move by normal noise of standard deviation ``scale`` on the unconstrained scale.
    ``latents`` maps names to declarations; names are visited in sorted order.
    """
    batch = C.as_shape(batch, "batch")
    z = {}
    for n in sorted(latents):
        spec = latents[n]
        v = spec.initial(rng, batch)
        if spec.is_discrete:
            v = rng.integers(0, spec.K, size=v.shape)
        else:
            c = spec.support
            v = c.forward(c.inverse(v) + rng.normal(scale=scale, size=v.shape))
        z[n] = v
    return z

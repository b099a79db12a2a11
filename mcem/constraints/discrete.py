"""Check-only constraints (no bijection): the supports of discrete distributions.

``boolean`` ({0, 1}), ``nonnegative_integer`` and ``integer_interval(lo, hi)``; they check
membership and give a default value, and refuse to transform.
"""

from __future__ import annotations

import numpy as np

from .base import _Elementwise

__all__ = [
    "Boolean",
    "NonnegativeInteger",
    "IntegerInterval",
    "boolean",
    "nonnegative_integer",
    "integer_interval",
]


class _CheckOnly(_Elementwise):
    has_bijection = False
    is_discrete = True

    def forward(self, u):
        raise TypeError(f"{self!r} is a discrete support and has no bijection")

    def log_density_grad(self, u, grad_x):
        raise TypeError(f"{self!r} is a discrete support and has no bijection")

    inverse = forward
    elementwise_log_abs_det_jacobian = forward


class Boolean(_CheckOnly):
    num_states = 2

    def contains(self, x):
        return (x == 0) | (x == 1)

    def default(self):
        return np.zeros(self.shape, dtype=int)

    def __repr__(self):
        return "boolean"


class NonnegativeInteger(_CheckOnly):
    num_states = None

    def contains(self, x):
        return np.isfinite(x) & (x >= 0) & (x == np.floor(x))

    def default(self):
        return np.zeros(self.shape, dtype=int)

    def __repr__(self):
        return "nonnegative_integer"


class IntegerInterval(_CheckOnly):
    """Integers lo, lo + 1, ..., hi (inclusive)."""

    def __init__(self, lo, hi, shape=()):
        self.lo, self.hi = int(lo), int(hi)
        if self.hi < self.lo:
            raise ValueError(f"integer_interval needs lo <= hi, got lo={lo!r}, hi={hi!r}")
        super().__init__(shape)

    @property
    def num_states(self):
        return self.hi - self.lo + 1

    def contains(self, x):
        return (x >= self.lo) & (x <= self.hi) & (x == np.floor(x))

    def default(self):
        return np.full(self.shape, self.lo, dtype=int)

    def _key(self):
        return (self.shape, self.lo, self.hi)

    def __repr__(self):
        return f"integer_interval({self.lo}, {self.hi})"


boolean = Boolean()
nonnegative_integer = NonnegativeInteger()


def integer_interval(lo, hi, shape=()):
    """The integers lo..hi inclusive (a check-only support for discrete distributions)."""
    return IntegerInterval(lo, hi, shape)

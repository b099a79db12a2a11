"""TruncatedNormal: a normal distribution restricted to [low, high]."""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr, ndtri_exp

from .. import constraints
from ._ops import log_diff_ndtr, safe
from .continuous import bounds_note
from .base import _HALF_LOG_2PI, FINITE, POSITIVE, Distribution, ParamCheck, _mask_out

__all__ = ["TruncatedNormal"]

#: a lower bound: finite or -inf
_LOW = ParamCheck(lambda x: ~np.isnan(x) & (x < np.inf), "finite or -inf (not NaN or +inf)")
#: an upper bound: finite or +inf
_HIGH = ParamCheck(lambda x: ~np.isnan(x) & (x > -np.inf), "finite or +inf (not NaN or -inf)")


class _Bounds(constraints.Constraint):
    """Finite values in [low, high], elementwise, without a bijection (a support that no
    constraint of :mod:`mcem.constraints` transforms: a half-line other than (0, inf), or
    bounds that vary along the batch); a latent variable cannot live on it."""

    elementwise = True
    has_bijection = False

    def __init__(self, low, high):
        self.low, self.high = low, high

    def contains(self, x):
        x = np.asarray(x, dtype=float)
        return np.isfinite(x) & (x >= self.low) & (x <= self.high)

    def default(self):  # pragma: no cover - never a latent's support
        raise TypeError(f"{self!r} has no default value")

    def _key(self):
        return (np.asarray(self.low).tobytes(), np.asarray(self.high).tobytes())

    def __repr__(self):
        if np.ndim(self.low) == 0 and np.ndim(self.high) == 0:
            return f"bounds({float(self.low)!r}, {float(self.high)!r})"
        return "bounds(low, high)"


def _support(low, high):
    """The constraint of [low, high] for scalar bounds: real, positive, an interval, or a
    check-only :class:`_Bounds`."""
    if low.ndim == 0 and high.ndim == 0:
        lo, hi = float(low), float(high)
        if lo == -np.inf and hi == np.inf:
            return constraints.real
        if lo == 0.0 and hi == np.inf:
            return constraints.positive
        if np.isfinite(lo) and np.isfinite(hi) and lo < hi:
            return constraints.interval(lo, hi)
    return _Bounds(low, high)


class TruncatedNormal(Distribution):
    """Normal(loc, scale) restricted to [low, high] (each bound may be infinite).

    The density is the normal density divided by its mass ``Phi(b) - Phi(a)`` on the bounds,
    ``a = (low - loc) / scale`` and ``b = (high - loc) / scale`` (scipy's
    ``truncnorm(a, b, loc, scale)``); its log is computed from ``log_ndtr`` in both tails, so
    it stays accurate for intervals far out in a tail. Sampling is by the inverse CDF.

    The support moves with ``low`` and ``high``: as for Uniform, observed data are then checked
    for finite values only when a model is built (``check_value(..., for_any_params=True)``).
    """

    param_checks = {"loc": FINITE, "scale": POSITIVE, "low": _LOW, "high": _HIGH}

    def __init__(self, loc=0.0, scale=1.0, low=-np.inf, high=np.inf, *, validate_args=None):
        super().__init__(validate_args, loc=loc, scale=scale, low=low, high=high)
        known = not self._any_jax("low", "high")
        if self.validate_args and known:
            high = np.broadcast_to(self.high, self.batch_shape)
            self._require("high", high, high > self.low, "greater than low")
        self.support = _support(self.low, self.high) if known else constraints.real
        ns = self._params_ns()
        xp = ns.np
        lo_inf, hi_inf = xp.isneginf(self.low), xp.isposinf(self.high)
        self._inv_scale = 1.0 / self.scale
        # standardised bounds, a finite placeholder where a bound is infinite
        a = (xp.where(lo_inf, 0.0, self.low) - self.loc) * self._inv_scale
        b = (xp.where(hi_inf, 0.0, self.high) - self.loc) * self._inv_scale
        self._log_mass = log_diff_ndtr(ns, a, b, lo_inf, hi_inf)  # log(Phi(b) - Phi(a))
        self._log_norm = -xp.log(self.scale) - _HALF_LOG_2PI - self._log_mass

    def log_prob(self, value):
        ns = self._ns(value)
        x = self._value(value, ns)
        ok = ns.np.isfinite(x) & (x >= self.low) & (x <= self.high)
        z = (safe(ns, ok, x, 0.0) - self.loc) * self._inv_scale
        out = z * z
        out *= -0.5
        out = out + self._log_norm
        return _mask_out(out, ok)

    # -- numpy only ----------------------------------------------------------------------------

    def _standardised(self):
        """a and b (infinite where the bounds are)."""
        return (self.low - self.loc) / self.scale, (self.high - self.loc) / self.scale

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        a, b = self._standardised()
        flip = a > 0  # an upper-tail interval: sample -z on [-b, -a] (lower tail, accurate)
        u, v = np.where(flip, -b, a), np.where(flip, -a, b)
        U = np.maximum(rng.random(shape), 2.0**-54)  # in (0, 1): no infinite draw
        with np.errstate(divide="ignore"):
            # log((1 - U) Phi(u) + U Phi(v)), then the normal quantile of its exponential
            log_p = np.logaddexp(np.log1p(-U) + log_ndtr(u), np.log(U) + log_ndtr(v))
        w = ndtri_exp(log_p)
        x = self.loc + self.scale * np.where(flip, -w, w)
        return np.clip(x, self.low, self.high)

    def support_mask(self, value):
        x = np.asarray(value, dtype=float)
        with np.errstate(invalid="ignore"):
            return np.isfinite(x) & (x >= self.low) & (x <= self.high)

    _support_for_any_params = constraints.real

    @property
    def support_text(self):
        if self.low.ndim == 0 and self.high.ndim == 0:
            return f"finite values in [{self.low.item()!r}, {self.high.item()!r}]"
        return "finite values in [low, high]"

    def _support_note(self, index):
        return bounds_note(self, index)

    def _ratios(self):
        """phi(a) / Z, phi(b) / Z, and a, b with 0 where infinite (phi(+-inf) = 0)."""
        a, b = self._standardised()
        log_phi = lambda t: -0.5 * t * t - _HALF_LOG_2PI  # noqa: E731
        ra = np.exp(log_phi(a) - self._log_mass)
        rb = np.exp(log_phi(b) - self._log_mass)
        return ra, rb, np.where(np.isinf(a), 0.0, a), np.where(np.isinf(b), 0.0, b)

    @property
    def mean(self):
        ra, rb, _, _ = self._ratios()
        return self._full(self.loc + self.scale * (ra - rb))

    @property
    def variance(self):
        ra, rb, a, b = self._ratios()
        d = ra - rb
        return self._full(self.scale**2 * (1.0 + a * ra - b * rb - d * d))

"""Continuous elementwise distributions: Normal, HalfNormal, LogNormal, StudentT, Uniform,
Gamma, Exponential, InverseGamma and Beta."""

from __future__ import annotations

import math

import numpy as np

from .. import constraints
from ._ops import safe
from .base import _HALF_LOG_2PI, _NEG_INF, FINITE, POSITIVE, Distribution, _mask_out

__all__ = [
    "Normal",
    "HalfNormal",
    "LogNormal",
    "StudentT",
    "Uniform",
    "Gamma",
    "Exponential",
    "InverseGamma",
    "Beta",
]


def bounds_note(d, index) -> str:
    """The bounds ``low``, ``high`` of distribution ``d`` at ``index`` of a value, for an error
    message about a value outside them (empty when both bounds are scalars)."""
    if d.low.ndim == 0 and d.high.ndim == 0:
        return ""
    lo = np.broadcast_to(d.low, d.batch_shape)
    hi = np.broadcast_to(d.high, d.batch_shape)
    k = index[len(index) - len(d.batch_shape):] if d.batch_shape else ()
    return f" (low {lo[k].item()!r}, high {hi[k].item()!r} there)"


class _NonnegativeSupport:
    """Support [0, inf): the density is finite at 0 (HalfNormal, Exponential)."""

    support_text = "non-negative values"

    def support_mask(self, value):
        x = np.asarray(value, dtype=float)
        return np.isfinite(x) & (x >= 0)


class _LocScale(Distribution):
    """Parameters of a normal variable (Normal, and LogNormal on the log scale): loc, scale."""

    param_checks = {"loc": FINITE, "scale": POSITIVE}

    def __init__(self, loc=0.0, scale=1.0, *, validate_args=None):
        super().__init__(validate_args, loc=loc, scale=scale)
        self._inv_scale = 1.0 / self.scale
        self._log_norm = -self._params_ns().np.log(self.scale) - _HALF_LOG_2PI


class Normal(_LocScale):
    """Normal(loc, scale): scale is the standard deviation."""

    support = constraints.real

    def log_prob(self, value):
        z = (self._value(value, self._ns(value)) - self.loc) * self._inv_scale
        out = z * z
        out *= -0.5
        return out + self._log_norm

    def sample(self, rng, sample_shape=()):
        return self.loc + self.scale * rng.standard_normal(self._shape(sample_shape))

    @property
    def mean(self):
        return self._full(self.loc)

    @property
    def variance(self):
        return self._full(self.scale**2)


class HalfNormal(_NonnegativeSupport, Distribution):
    """abs(X) for X ~ Normal(0, scale); density is finite at 0, -inf for x < 0."""

    support = constraints.positive
    param_checks = {"scale": POSITIVE}

    def __init__(self, scale=1.0, *, validate_args=None):
        super().__init__(validate_args, scale=scale)
        self._inv_scale = 1.0 / self.scale
        self._log_norm = 0.5 * math.log(2.0 / math.pi) - self._params_ns().np.log(self.scale)

    def log_prob(self, value):
        x = self._value(value, self._ns(value))
        z = x * self._inv_scale
        out = z * z
        out *= -0.5
        out = out + self._log_norm
        return _mask_out(out, x >= 0)

    def sample(self, rng, sample_shape=()):
        return np.abs(self.scale * rng.standard_normal(self._shape(sample_shape)))

    @property
    def mean(self):
        return self._full(self.scale * math.sqrt(2.0 / math.pi))

    @property
    def variance(self):
        return self._full(self.scale**2 * (1.0 - 2.0 / math.pi))


class LogNormal(_LocScale):
    """exp(X) for X ~ Normal(loc, scale)."""

    support = constraints.positive

    def log_prob(self, value):
        ns = self._ns(value)
        x = self._value(value, ns)
        ok = x > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            logx = ns.np.log(safe(ns, ok, x, 1.0))
            z = (logx - self.loc) * self._inv_scale
            out = z * z
            out *= -0.5
            out -= logx
            out = out + self._log_norm
        return _mask_out(out, ok)

    def sample(self, rng, sample_shape=()):
        return np.exp(self.loc + self.scale * rng.standard_normal(self._shape(sample_shape)))

    @property
    def mean(self):
        return self._full(np.exp(self.loc + 0.5 * self.scale**2))

    @property
    def variance(self):
        s2 = self.scale**2
        return self._full(np.expm1(s2) * np.exp(2.0 * self.loc + s2))


class StudentT(Distribution):
    """Student's t with ``df`` degrees of freedom, location ``loc`` and scale ``scale``."""

    support = constraints.real
    param_checks = {"df": POSITIVE, "loc": FINITE, "scale": POSITIVE}

    def __init__(self, df, loc=0.0, scale=1.0, *, validate_args=None):
        super().__init__(validate_args, df=df, loc=loc, scale=scale)
        ns = self._params_ns()
        self._inv_scale = 1.0 / self.scale
        self._inv_df = 1.0 / self.df
        self._half_dfp1 = 0.5 * (self.df + 1.0)
        self._log_norm = (
            ns.special.gammaln(self._half_dfp1)
            - ns.special.gammaln(0.5 * self.df)
            - 0.5 * ns.np.log(np.pi * self.df)
            - ns.np.log(self.scale)
        )

    def log_prob(self, value):
        ns = self._ns(value)
        z = (self._value(value, ns) - self.loc) * self._inv_scale
        z *= z
        out = ns.np.log1p(z * self._inv_df)
        out *= -self._half_dfp1
        return out + self._log_norm

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        return self.loc + self.scale * rng.standard_t(np.broadcast_to(self.df, shape), shape)

    @property
    def mean(self):
        """loc where df > 1, else NaN (undefined)."""
        return self._full(np.where(self.df > 1, self.loc, np.nan))

    @property
    def variance(self):
        """scale^2 df / (df - 2) for df > 2, inf for 1 < df <= 2, NaN for df <= 1."""
        df = self.df
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(
                df > 2,
                self.scale**2 * df / (df - 2.0),
                np.where(df > 1, np.inf, np.nan),
            )
        return self._full(v)


class Uniform(Distribution):
    """Uniform on [low, high]."""

    param_checks = {"low": FINITE, "high": FINITE}

    def __init__(self, low=0.0, high=1.0, *, validate_args=None):
        super().__init__(validate_args, low=low, high=high)
        known = not self._any_jax("low", "high")
        if self.validate_args and known:
            high = np.broadcast_to(self.high, self.batch_shape)
            self._require("high", high, high > self.low, "greater than low")
        if known and self.low.ndim == 0 and self.high.ndim == 0 and self.low < self.high:
            self.support = constraints.interval(float(self.low), float(self.high))
        self._log_norm = -self._params_ns().np.log(self.high - self.low)

    def log_prob(self, value):
        ns = self._ns(value)
        xp, x = ns.np, self._value(value, ns)
        out = xp.broadcast_to(self._log_norm, np.broadcast_shapes(x.shape, self.batch_shape))
        return xp.where((x >= self.low) & (x <= self.high), out, _NEG_INF)

    def sample(self, rng, sample_shape=()):
        return self.low + (self.high - self.low) * rng.random(self._shape(sample_shape))

    _support_for_any_params = constraints.real

    def support_mask(self, value):
        x = np.asarray(value, dtype=float)
        return (x >= self.low) & (x <= self.high)

    @property
    def support_text(self):
        if self.low.ndim == 0 and self.high.ndim == 0:
            return f"values in [{self.low.item()!r}, {self.high.item()!r}]"
        return "values in [low, high]"

    def _support_note(self, index):
        return bounds_note(self, index)

    @property
    def mean(self):
        return self._full(0.5 * (self.low + self.high))

    @property
    def variance(self):
        return self._full((self.high - self.low) ** 2 / 12.0)


class _ConcentrationRate(Distribution):
    """Parameters of Gamma and InverseGamma: concentration a and rate b, both positive."""

    support = constraints.positive
    param_checks = {"concentration": POSITIVE, "rate": POSITIVE}

    def __init__(self, concentration, rate=1.0, *, validate_args=None):
        super().__init__(validate_args, concentration=concentration, rate=rate)
        ns = self._params_ns()
        # log(b^a / Gamma(a)), the normalising constant of both densities
        self._log_norm = (
            self.concentration * ns.np.log(self.rate) - ns.special.gammaln(self.concentration)
        )


class Gamma(_ConcentrationRate):
    """Gamma(concentration a, rate b): density b^a x^(a-1) exp(-b x) / Gamma(a), x > 0."""

    def log_prob(self, value):
        ns = self._ns(value)
        x = self._value(value, ns)
        ok = x > 0
        xs = safe(ns, ok, x, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = ns.special.xlogy(self.concentration - 1.0, xs) - self.rate * xs
        out += self._log_norm
        return _mask_out(out, ok)

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        return rng.standard_gamma(np.broadcast_to(self.concentration, shape), shape) / self.rate

    @property
    def mean(self):
        return self._full(self.concentration / self.rate)

    @property
    def variance(self):
        return self._full(self.concentration / self.rate**2)


class Exponential(_NonnegativeSupport, Distribution):
    """Exponential(rate): density rate exp(-rate x) for x >= 0."""

    support = constraints.positive
    param_checks = {"rate": POSITIVE}

    def __init__(self, rate=1.0, *, validate_args=None):
        super().__init__(validate_args, rate=rate)
        self._log_rate = self._params_ns().np.log(self.rate)

    def log_prob(self, value):
        x = self._value(value, self._ns(value))
        out = self.rate * x
        out = self._log_rate - out
        return _mask_out(out, x >= 0)

    def sample(self, rng, sample_shape=()):
        return rng.standard_exponential(self._shape(sample_shape)) / self.rate

    @property
    def mean(self):
        return self._full(1.0 / self.rate)

    @property
    def variance(self):
        return self._full(1.0 / self.rate**2)


class InverseGamma(_ConcentrationRate):
    """1/X for X ~ Gamma(concentration, rate): density b^a x^(-a-1) exp(-b/x) / Gamma(a)."""

    def log_prob(self, value):
        ns = self._ns(value)
        x = self._value(value, ns)
        ok = x > 0
        x = safe(ns, ok, x, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = -(self.concentration + 1.0) * ns.np.log(x) - self.rate / x
        out += self._log_norm
        return _mask_out(out, ok)

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        return self.rate / rng.standard_gamma(np.broadcast_to(self.concentration, shape), shape)

    @property
    def mean(self):
        """rate / (concentration - 1) for concentration > 1, else inf."""
        a = self.concentration
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._full(np.where(a > 1, self.rate / (a - 1.0), np.inf))

    @property
    def variance(self):
        """rate^2 / ((a - 1)^2 (a - 2)) for a > 2, else inf."""
        a = self.concentration
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(a > 2, self.rate**2 / ((a - 1.0) ** 2 * (a - 2.0)), np.inf)
        return self._full(v)


class Beta(Distribution):
    """Beta(concentration1 a, concentration0 b) on the open interval (0, 1)."""

    support = constraints.unit_interval
    param_checks = {"concentration1": POSITIVE, "concentration0": POSITIVE}

    def __init__(self, concentration1, concentration0, *, validate_args=None):
        super().__init__(
            validate_args, concentration1=concentration1, concentration0=concentration0
        )
        self._am1 = self.concentration1 - 1.0
        self._bm1 = self.concentration0 - 1.0
        self._log_norm = -self._params_ns().special.betaln(
            self.concentration1, self.concentration0
        )

    def log_prob(self, value):
        ns = self._ns(value)
        x = self._value(value, ns)
        ok = (x > 0) & (x < 1)
        xs = safe(ns, ok, x, 0.5)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = ns.special.xlogy(self._am1, xs) + ns.special.xlog1py(self._bm1, -xs)
        out += self._log_norm
        return _mask_out(out, ok)

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        return rng.beta(
            np.broadcast_to(self.concentration1, shape),
            np.broadcast_to(self.concentration0, shape),
            shape,
        )

    @property
    def mean(self):
        a, b = self.concentration1, self.concentration0
        return self._full(a / (a + b))

    @property
    def variance(self):
        a, b = self.concentration1, self.concentration0
        s = a + b
        return self._full(a * b / (s * s * (s + 1.0)))

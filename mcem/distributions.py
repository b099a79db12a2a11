"""Vectorised probability distributions (numpy / scipy.special only).

Every distribution has ``log_prob(value)``, ``sample(rng, sample_shape=())``, ``batch_shape``,
``event_shape``, ``mean``, ``variance``, ``support`` (a constraint from :mod:`mcem.constraints`),
``is_discrete`` and ``num_states`` (the number of states of a finite discrete distribution with a
single state space, else ``None``).

Conventions
-----------
* Parameters are converted with ``np.asarray(..., dtype=float)``; they are never written into.
  Their shapes must broadcast together; the broadcast shape (less event axes) is ``batch_shape``.
* ``log_prob(value)`` broadcasts ``value`` (shape ``sample_shape + batch_shape + event_shape``, or
  anything broadcastable to it) against the parameters and returns one log density per batch
  element, event axes summed out. Outside the support it returns ``-inf``, never NaN or an error.
* ``sample(rng, sample_shape)`` takes a ``numpy.random.Generator`` and returns an array of shape
  ``sample_shape + batch_shape + event_shape``. Discrete distributions return int64 arrays.
* ``support_mask(value)`` says where values (events) lie in the support, ``support_text`` says
  what the support is in words, and ``check_value(value, name)`` refuses values outside it with
  an error naming the first bad index and value (``TypeError`` for strings, objects or complex
  numbers, ``ValueError`` for numbers outside the support). The model language checks observed
  data with it when a model is built, with ``for_any_params=True`` (supports that move with
  continuous parameters, such as Uniform's, are then only checked for finite values).
* Parameter validation (cheap vectorised checks raising ``ValueError``) is on by default. Turn it
  off globally with ``mcem.distributions.validate_args = False`` or per instance with
  ``validate_args=False``; ``validate_args=None`` means "use the module default". Structural
  errors (non-broadcastable shapes, both/neither of probs and logits, wrong event sizes) are
  always raised.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import betaln, expit, gammaln, log_expit, logsumexp, xlog1py, xlogy

from . import constraints
from .constraints import as_shape

__all__ = [
    "validate_args",
    "Distribution",
    "Normal",
    "MultivariateNormal",
    "Bernoulli",
    "Binomial",
    "Poisson",
    "Categorical",
    "Multinomial",
    "Gamma",
    "Exponential",
    "Beta",
    "LogNormal",
    "StudentT",
    "Uniform",
    "HalfNormal",
    "InverseGamma",
    "Dirichlet",
]

#: Module default for parameter validation; instances with ``validate_args=None`` read it at
#: construction time.
validate_args = True

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_NEG_INF = -np.inf


# --------------------------------------------------------------------------------------------
# helpers


def _describe_bad(x, bad) -> str:
    """'got -1.0' or 'got array with 2 bad value(s), e.g. -1.0' for the offending entries."""
    x = np.asarray(x)
    bad = np.broadcast_to(bad, x.shape)
    if x.ndim == 0:
        return f"got {x.item()!r}"
    n = int(np.count_nonzero(bad))
    example = x[bad].flat[0].item() if n else None
    return f"got array of shape {x.shape} with {n} bad value(s), e.g. {example!r}"


def _mask_out(out, ok):
    """Set ``out`` to -inf where ``ok`` is False (in place when possible); returns the result."""
    if isinstance(out, np.ndarray) and out.ndim and out.flags.writeable:
        np.copyto(out, _NEG_INF, where=~ok)
        return out
    return np.where(ok, out, _NEG_INF)


def _is_integer(x):
    return x == np.floor(x)


def _support_words(support) -> str:
    """A constraint in words, for error messages ("values in {0, 1}", "positive values", ...)."""
    if isinstance(support, constraints.Real):
        return "finite values"
    if isinstance(support, constraints.Positive):
        return "positive values"
    if isinstance(support, constraints.Interval):
        return f"values in ({support.low!r}, {support.high!r})"
    if isinstance(support, constraints.Boolean):
        return "values in {0, 1}"
    if isinstance(support, constraints.NonnegativeInteger):
        return "non-negative integers"
    if isinstance(support, constraints.IntegerInterval):
        lo, hi = support.lo, support.hi
        if hi - lo <= 1:
            return "values in {" + ", ".join(str(k) for k in range(lo, hi + 1)) + "}"
        return f"integers in {{{lo}, ..., {hi}}}"
    if isinstance(support, constraints.Simplex):
        return "probability vectors (non-negative, summing to 1 over the last axis)"
    return f"values in {support!r}"


def _fmt_value(v):
    """A value for an error message: a Python scalar or a (short) list."""
    v = np.asarray(v)
    if v.ndim == 0:
        return repr(v.item())
    return repr(v.tolist()) if v.size <= 10 else f"<array of shape {v.shape}>"


def _fmt_param(x) -> str:
    x = np.asarray(x)
    if x.ndim == 0:
        return repr(x.item())
    if x.size <= 6:
        return np.array2string(x, separator=", ", precision=4)
    return f"<array {x.shape}>"


# --------------------------------------------------------------------------------------------
# base class


class Distribution:
    """Shared machinery: parameter conversion, batch shape, validation helpers and repr."""

    is_discrete = False
    num_states = None
    support = constraints.real
    #: names of the parameters shown by ``repr`` (in order)
    _repr_params: tuple = ()

    def __init__(self, validate_args=None):
        self.validate_args = (
            globals()["validate_args"] if validate_args is None else bool(validate_args)
        )
        self.batch_shape = ()
        self.event_shape = ()

    # -- construction helpers ----------------------------------------------------------------

    def _name(self):
        return type(self).__name__

    def _float(self, name, x):
        """Convert a parameter to a float array, with an error naming it."""
        try:
            return np.asarray(x, dtype=float)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{self._name()}: {name} must be convertible to a float array, "
                f"got {type(x).__name__} {x!r} ({e})"
            ) from None

    def _broadcast(self, **shapes):
        """Broadcast named shapes; raise a ValueError naming the distribution and shapes."""
        try:
            return tuple(np.broadcast_shapes(*shapes.values()))
        except ValueError:
            desc = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
            raise ValueError(
                f"{self._name()}: parameter shapes do not broadcast: {desc}"
            ) from None

    def _require(self, name, x, ok, expected):
        """Raise ``ValueError`` unless ``ok`` (bool array) is True everywhere."""
        if not np.all(ok):
            raise ValueError(
                f"{self._name()}: {name} must be {expected}, "
                f"{_describe_bad(x, ~np.asarray(ok))}"
            )

    def _check_positive(self, name, x):
        if self.validate_args:
            self._require(name, x, np.isfinite(x) & (x > 0), "positive and finite")

    def _check_finite(self, name, x):
        if self.validate_args:
            self._require(name, x, np.isfinite(x), "finite")

    def _check_probs(self, name, x):
        if self.validate_args:
            self._require(name, x, (x >= 0) & (x <= 1), "in [0, 1]")

    def _check_count(self, name, x):
        if self.validate_args:
            self._require(
                name, x, np.isfinite(x) & (x >= 0) & _is_integer(x), "a non-negative integer"
            )

    def _probs_or_logits(self, probs, logits):
        if (probs is None) == (logits is None):
            got = "both" if probs is not None else "neither"
            raise ValueError(
                f"{self._name()}: pass exactly one of probs or logits, got {got}"
            )
        if probs is not None:
            return self._float("probs", probs), None
        return None, self._float("logits", logits)

    # -- generic helpers -----------------------------------------------------------------------

    def _full(self, x):
        """A fresh array of ``x`` broadcast to ``batch_shape + event_shape``."""
        return np.array(np.broadcast_to(x, self.batch_shape + self.event_shape), dtype=float)

    def _shape(self, sample_shape):
        return as_shape(sample_shape, "sample_shape") + self.batch_shape

    @staticmethod
    def _value(value):
        return np.asarray(value, dtype=float)

    # -- interface -----------------------------------------------------------------------------

    def log_prob(self, value):  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, rng, sample_shape=()):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def mean(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def variance(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def stddev(self):
        return np.sqrt(self.variance)

    # -- support of values ---------------------------------------------------------------------

    def support_mask(self, value):
        """Where ``value`` lies in the support: a bool array with one entry per element (per
        event when the distribution has event axes), broadcast against the parameters where
        the support depends on them.

        Agrees with :meth:`log_prob`: False exactly where ``log_prob`` returns ``-inf`` because
        the value lies outside the support (not because a probability parameter is 0 or 1).
        """
        x = np.asarray(value, dtype=float)
        with np.errstate(invalid="ignore"):
            ok = self.support.contains(x)
        n_event = len(self.event_shape)
        if n_event and self.support.elementwise:
            ok = np.all(ok, axis=tuple(range(np.ndim(ok) - n_event, np.ndim(ok))))
        return np.asarray(ok, dtype=bool)

    @property
    def support_text(self) -> str:
        """The support in words, e.g. ``"values in {0, 1}"`` or ``"positive values"``."""
        return _support_words(self.support)

    def _support_note(self, index) -> str:
        """Extra detail about the support at ``index`` (parameter-dependent supports)."""
        return ""

    #: The support for every value of the continuous parameters (a constraint), for
    #: distributions whose support moves with them (Uniform); None when it does not.
    _support_for_any_params = None

    def check_value(self, value, name="value", *, for_any_params=False):
        """Refuse values outside the support, naming ``name``, the first bad index and value.

        Raises ``TypeError`` when ``value`` is not numeric (strings, objects, complex numbers)
        and ``ValueError`` when an element (event) lies outside the support or the value does
        not end in the event shape. Vectorised: one pass over the values.

        With ``for_any_params=True`` only what no parameter value can change is checked: for
        Uniform(low, high), finiteness instead of ``low <= x <= high`` (data outside the bounds
        of the initial parameters are a matter of the starting point, not of the data). Integer
        parameters such as ``total_count`` are data, and are always checked.
        """
        arr = np.asarray(value)
        kind = arr.dtype.kind
        if kind not in "biuf":
            if kind == "c":
                what = "complex numbers"
            elif arr.ndim == 0:
                what = f"{type(value).__name__} {value!r}"
            else:
                what = f"an array of dtype {arr.dtype}"
            raise TypeError(
                f"{name}: {self._name()} needs real numbers ({self.support_text}); got {what}"
            )
        ev = tuple(self.event_shape)
        if ev and arr.shape[arr.ndim - len(ev):] != ev:
            raise ValueError(
                f"{name}: {self._name()} needs values whose last axes have the event shape {ev}, "
                f"got shape {arr.shape}"
            )
        free = self._support_for_any_params if for_any_params else None
        if free is not None:
            ok = np.asarray(free.contains(np.asarray(arr, dtype=float)), dtype=bool)
            text, note = _support_words(free), (lambda idx: "")
        else:
            ok = self.support_mask(arr)
            text, note = self.support_text, self._support_note
        if ok.all():
            return
        flat = int(np.argmin(ok.ravel()))  # the first False
        idx = tuple(int(i) for i in np.unravel_index(flat, ok.shape))
        try:
            shown = np.broadcast_to(arr, ok.shape + ev)[idx]
        except ValueError:  # pragma: no cover - value smaller than the parameters' shape
            shown = arr
        where = f" at index {idx}" if idx else ""
        raise ValueError(
            f"{name}: {self._name()} needs {text}; got {_fmt_value(shown)}{where}{note(idx)}"
        )

    def __repr__(self):
        parts = [
            f"{k}={_fmt_param(getattr(self, k))}"
            for k in self._repr_params
            if getattr(self, k, None) is not None
        ]
        if self.batch_shape:
            parts.append(f"batch_shape={self.batch_shape}")
        if self.event_shape:
            parts.append(f"event_shape={self.event_shape}")
        return f"{self._name()}({', '.join(parts)})"


# --------------------------------------------------------------------------------------------
# continuous, elementwise


class Normal(Distribution):
    """Normal(loc, scale): scale is the standard deviation."""

    support = constraints.real
    _repr_params = ("loc", "scale")

    def __init__(self, loc=0.0, scale=1.0, *, validate_args=None):
        super().__init__(validate_args)
        self.loc = self._float("loc", loc)
        self.scale = self._float("scale", scale)
        self._check_finite("loc", self.loc)
        self._check_positive("scale", self.scale)
        self.batch_shape = self._broadcast(loc=self.loc.shape, scale=self.scale.shape)
        self._inv_scale = 1.0 / self.scale
        self._log_norm = -np.log(self.scale) - _HALF_LOG_2PI

    def log_prob(self, value):
        z = (self._value(value) - self.loc) * self._inv_scale
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


class HalfNormal(Distribution):
    """abs(X) for X ~ Normal(0, scale); density is finite at 0, -inf for x < 0."""

    support = constraints.positive
    _repr_params = ("scale",)

    def __init__(self, scale=1.0, *, validate_args=None):
        super().__init__(validate_args)
        self.scale = self._float("scale", scale)
        self._check_positive("scale", self.scale)
        self.batch_shape = self.scale.shape
        self._inv_scale = 1.0 / self.scale
        self._log_norm = 0.5 * math.log(2.0 / math.pi) - np.log(self.scale)

    def log_prob(self, value):
        x = self._value(value)
        z = x * self._inv_scale
        out = z * z
        out *= -0.5
        out = out + self._log_norm
        return _mask_out(out, x >= 0)

    def sample(self, rng, sample_shape=()):
        return np.abs(self.scale * rng.standard_normal(self._shape(sample_shape)))

    support_text = "non-negative values"

    def support_mask(self, value):
        x = np.asarray(value, dtype=float)
        return np.isfinite(x) & (x >= 0)

    @property
    def mean(self):
        return self._full(self.scale * math.sqrt(2.0 / math.pi))

    @property
    def variance(self):
        return self._full(self.scale**2 * (1.0 - 2.0 / math.pi))


class LogNormal(Distribution):
    """exp(X) for X ~ Normal(loc, scale)."""

    support = constraints.positive
    _repr_params = ("loc", "scale")

    def __init__(self, loc=0.0, scale=1.0, *, validate_args=None):
        super().__init__(validate_args)
        self.loc = self._float("loc", loc)
        self.scale = self._float("scale", scale)
        self._check_finite("loc", self.loc)
        self._check_positive("scale", self.scale)
        self.batch_shape = self._broadcast(loc=self.loc.shape, scale=self.scale.shape)
        self._inv_scale = 1.0 / self.scale
        self._log_norm = -np.log(self.scale) - _HALF_LOG_2PI

    def log_prob(self, value):
        x = self._value(value)
        ok = x > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            logx = np.log(x)
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
    _repr_params = ("df", "loc", "scale")

    def __init__(self, df, loc=0.0, scale=1.0, *, validate_args=None):
        super().__init__(validate_args)
        self.df = self._float("df", df)
        self.loc = self._float("loc", loc)
        self.scale = self._float("scale", scale)
        self._check_positive("df", self.df)
        self._check_finite("loc", self.loc)
        self._check_positive("scale", self.scale)
        self.batch_shape = self._broadcast(
            df=self.df.shape, loc=self.loc.shape, scale=self.scale.shape
        )
        self._inv_scale = 1.0 / self.scale
        self._inv_df = 1.0 / self.df
        self._half_dfp1 = 0.5 * (self.df + 1.0)
        self._log_norm = (
            gammaln(self._half_dfp1)
            - gammaln(0.5 * self.df)
            - 0.5 * np.log(np.pi * self.df)
            - np.log(self.scale)
        )

    def log_prob(self, value):
        z = (self._value(value) - self.loc) * self._inv_scale
        z *= z
        out = np.log1p(z * self._inv_df)
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

    _repr_params = ("low", "high")

    def __init__(self, low=0.0, high=1.0, *, validate_args=None):
        super().__init__(validate_args)
        self.low = self._float("low", low)
        self.high = self._float("high", high)
        self._check_finite("low", self.low)
        self._check_finite("high", self.high)
        self.batch_shape = self._broadcast(low=self.low.shape, high=self.high.shape)
        if self.validate_args:
            high = np.broadcast_to(self.high, self.batch_shape)
            self._require("high", high, high > self.low, "greater than low")
        if self.low.ndim == 0 and self.high.ndim == 0 and self.low < self.high:
            self.support = constraints.interval(float(self.low), float(self.high))
        self._log_norm = -np.log(self.high - self.low)

    def log_prob(self, value):
        x = self._value(value)
        out = np.broadcast_to(self._log_norm, np.broadcast_shapes(x.shape, self.batch_shape))
        return np.where((x >= self.low) & (x <= self.high), out, _NEG_INF)

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
        if self.low.ndim == 0 and self.high.ndim == 0:
            return ""
        lo = np.broadcast_to(self.low, self.batch_shape)
        hi = np.broadcast_to(self.high, self.batch_shape)
        k = index[len(index) - len(self.batch_shape):] if self.batch_shape else ()
        return f" (low {lo[k].item()!r}, high {hi[k].item()!r} there)"

    @property
    def mean(self):
        return self._full(0.5 * (self.low + self.high))

    @property
    def variance(self):
        return self._full((self.high - self.low) ** 2 / 12.0)


class Gamma(Distribution):
    """Gamma(concentration a, rate b): density b^a x^(a-1) exp(-b x) / Gamma(a), x > 0."""

    support = constraints.positive
    _repr_params = ("concentration", "rate")

    def __init__(self, concentration, rate=1.0, *, validate_args=None):
        super().__init__(validate_args)
        self.concentration = self._float("concentration", concentration)
        self.rate = self._float("rate", rate)
        self._check_positive("concentration", self.concentration)
        self._check_positive("rate", self.rate)
        self.batch_shape = self._broadcast(
            concentration=self.concentration.shape, rate=self.rate.shape
        )
        self._am1 = self.concentration - 1.0
        self._log_norm = self.concentration * np.log(self.rate) - gammaln(self.concentration)

    def log_prob(self, value):
        x = self._value(value)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = xlogy(self._am1, x) - self.rate * x
        out += self._log_norm
        return _mask_out(out, x > 0)

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        return rng.standard_gamma(np.broadcast_to(self.concentration, shape), shape) / self.rate

    @property
    def mean(self):
        return self._full(self.concentration / self.rate)

    @property
    def variance(self):
        return self._full(self.concentration / self.rate**2)


class Exponential(Distribution):
    """Exponential(rate): density rate exp(-rate x) for x >= 0."""

    support = constraints.positive
    _repr_params = ("rate",)

    def __init__(self, rate=1.0, *, validate_args=None):
        super().__init__(validate_args)
        self.rate = self._float("rate", rate)
        self._check_positive("rate", self.rate)
        self.batch_shape = self.rate.shape
        self._log_rate = np.log(self.rate)

    def log_prob(self, value):
        x = self._value(value)
        out = self.rate * x
        out = self._log_rate - out
        return _mask_out(out, x >= 0)

    def sample(self, rng, sample_shape=()):
        return rng.standard_exponential(self._shape(sample_shape)) / self.rate

    support_text = "non-negative values"

    def support_mask(self, value):
        x = np.asarray(value, dtype=float)
        return np.isfinite(x) & (x >= 0)

    @property
    def mean(self):
        return self._full(1.0 / self.rate)

    @property
    def variance(self):
        return self._full(1.0 / self.rate**2)


class InverseGamma(Distribution):
    """1/X for X ~ Gamma(concentration, rate): density b^a x^(-a-1) exp(-b/x) / Gamma(a)."""

    support = constraints.positive
    _repr_params = ("concentration", "rate")

    def __init__(self, concentration, rate=1.0, *, validate_args=None):
        super().__init__(validate_args)
        self.concentration = self._float("concentration", concentration)
        self.rate = self._float("rate", rate)
        self._check_positive("concentration", self.concentration)
        self._check_positive("rate", self.rate)
        self.batch_shape = self._broadcast(
            concentration=self.concentration.shape, rate=self.rate.shape
        )
        self._ap1 = self.concentration + 1.0
        self._log_norm = self.concentration * np.log(self.rate) - gammaln(self.concentration)

    def log_prob(self, value):
        x = self._value(value)
        ok = x > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            out = -self._ap1 * np.log(x) - self.rate / x
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
    _repr_params = ("concentration1", "concentration0")

    def __init__(self, concentration1, concentration0, *, validate_args=None):
        super().__init__(validate_args)
        self.concentration1 = self._float("concentration1", concentration1)
        self.concentration0 = self._float("concentration0", concentration0)
        self._check_positive("concentration1", self.concentration1)
        self._check_positive("concentration0", self.concentration0)
        self.batch_shape = self._broadcast(
            concentration1=self.concentration1.shape, concentration0=self.concentration0.shape
        )
        self._am1 = self.concentration1 - 1.0
        self._bm1 = self.concentration0 - 1.0
        self._log_norm = -betaln(self.concentration1, self.concentration0)

    def log_prob(self, value):
        x = self._value(value)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = xlogy(self._am1, x) + xlog1py(self._bm1, -x)
        out += self._log_norm
        return _mask_out(out, (x > 0) & (x < 1))

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


# --------------------------------------------------------------------------------------------
# discrete, elementwise


class _DiscreteMixin:
    is_discrete = True

    @staticmethod
    def _value(value):
        v = np.asarray(value)
        return v if v.dtype.kind in "iub" else np.asarray(v, dtype=float)

    @staticmethod
    def _integral(v):
        """True where v is an integer value (trivially for integer dtypes)."""
        if v.dtype.kind in "iub":
            return True
        return np.isfinite(v) & _is_integer(v)


class Bernoulli(_DiscreteMixin, Distribution):
    """Bernoulli(probs) or Bernoulli(logits) on {0, 1}."""

    support = constraints.boolean
    num_states = 2
    _repr_params = ("probs", "logits")

    def __init__(self, probs=None, logits=None, *, validate_args=None):
        super().__init__(validate_args)
        self.probs, self.logits = self._probs_or_logits(probs, logits)
        if self.probs is not None:
            self._check_probs("probs", self.probs)
            self.batch_shape = self.probs.shape
            with np.errstate(divide="ignore"):
                self._log_p = np.log(self.probs)
                self._log_1mp = np.log1p(-self.probs)
        else:
            if self.validate_args:
                self._require("logits", self.logits, ~np.isnan(self.logits), "not NaN")
            self.batch_shape = self.logits.shape

    def _p(self):
        return self.probs if self.probs is not None else expit(self.logits)

    def log_prob(self, value):
        y = self._value(value)
        ok = (y == 0) | (y == 1)
        if self.probs is not None:
            out = np.where(y == 1, self._log_p, self._log_1mp)
        else:
            # y * logits - log(1 + exp(logits)): one transcendental pass, stable for any logits
            out = y * self.logits - np.logaddexp(0.0, self.logits)
        return out if np.all(ok) else _mask_out(np.array(out, dtype=float), np.broadcast_to(ok, np.shape(out)))

    def sample(self, rng, sample_shape=()):
        return (rng.random(self._shape(sample_shape)) < self._p()).astype(np.int64)

    @property
    def mean(self):
        return self._full(self._p())

    @property
    def variance(self):
        p = self._p()
        return self._full(p * (1.0 - p))


class Binomial(_DiscreteMixin, Distribution):
    """Binomial(total_count n, probs p | logits) on {0, ..., n}."""

    _repr_params = ("total_count", "probs", "logits")

    def __init__(self, total_count, probs=None, logits=None, *, validate_args=None):
        super().__init__(validate_args)
        self.total_count = self._float("total_count", total_count)
        self._check_count("total_count", self.total_count)
        self.probs, self.logits = self._probs_or_logits(probs, logits)
        p = self.probs if self.probs is not None else self.logits
        if self.probs is not None:
            self._check_probs("probs", self.probs)
        else:
            self._check_finite("logits", self.logits)
            self._log_p = log_expit(self.logits)
            self._log_1mp = log_expit(-self.logits)
        self.batch_shape = self._broadcast(
            total_count=self.total_count.shape,
            **{"probs" if self.probs is not None else "logits": p.shape},
        )
        if self.total_count.ndim == 0 and np.isfinite(self.total_count):
            n = int(self.total_count)
            self.support = constraints.integer_interval(0, max(n, 0))
            self.num_states = n + 1
        else:
            self.support = constraints.nonnegative_integer
            self.num_states = None
        self._log_norm = gammaln(self.total_count + 1.0)

    def _p(self):
        return self.probs if self.probs is not None else expit(self.logits)

    def log_prob(self, value):
        k = self._value(value)
        n = self.total_count
        nmk = n - k
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.probs is not None:
                out = xlogy(k, self.probs) + xlog1py(nmk, -self.probs)
            else:
                out = k * self._log_p + nmk * self._log_1mp
            out -= gammaln(k + 1.0)
            out -= gammaln(nmk + 1.0)
        out += self._log_norm
        return _mask_out(out, self._integral(k) & (k >= 0) & (nmk >= 0))

    def support_mask(self, value):
        k = self._value(value)
        with np.errstate(invalid="ignore"):
            return np.asarray(self._integral(k) & (k >= 0) & (k <= self.total_count), dtype=bool)

    @property
    def support_text(self):
        if self.total_count.ndim == 0:
            return f"integers in {{0, ..., {int(self.total_count)}}}"
        return "integers in {0, ..., total_count}"

    def _support_note(self, index):
        if self.total_count.ndim == 0:
            return ""
        n = np.broadcast_to(self.total_count, self.batch_shape)
        k = index[len(index) - len(self.batch_shape):] if self.batch_shape else ()
        return f" (total_count {int(n[k])} there)"

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        n = np.broadcast_to(self.total_count.astype(np.int64), shape)
        return rng.binomial(n, np.broadcast_to(self._p(), shape), shape)

    @property
    def mean(self):
        return self._full(self.total_count * self._p())

    @property
    def variance(self):
        p = self._p()
        return self._full(self.total_count * p * (1.0 - p))


class Poisson(_DiscreteMixin, Distribution):
    """Poisson(rate) on {0, 1, 2, ...}; rate 0 is the point mass at 0."""

    support = constraints.nonnegative_integer
    _repr_params = ("rate",)

    def __init__(self, rate, *, validate_args=None):
        super().__init__(validate_args)
        self.rate = self._float("rate", rate)
        if self.validate_args:
            self._require(
                "rate", self.rate, np.isfinite(self.rate) & (self.rate >= 0),
                "non-negative and finite",
            )
        self.batch_shape = self.rate.shape

    def log_prob(self, value):
        k = self._value(value)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = xlogy(k, self.rate)
            out -= self.rate
            out -= gammaln(k + 1.0)
        return _mask_out(out, self._integral(k) & (k >= 0))

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        return rng.poisson(np.broadcast_to(self.rate, shape), shape)

    @property
    def mean(self):
        return self._full(self.rate)

    @property
    def variance(self):
        return self._full(self.rate)


# --------------------------------------------------------------------------------------------
# event on the last axis


class _LastAxisProbs:
    """Shared set-up for Categorical / Multinomial: normalised log-probabilities (..., K)."""

    def _setup_probs(self, probs, logits):
        self.probs, self.logits = self._probs_or_logits(probs, logits)
        name, p = ("probs", self.probs) if self.probs is not None else ("logits", self.logits)
        if p.ndim < 1 or p.shape[-1] < 1:
            raise ValueError(
                f"{self._name()}: {name} must have at least one dimension with K >= 1 states "
                f"on the last axis, got shape {p.shape}"
            )
        self.K = p.shape[-1]
        if self.probs is not None:
            if self.validate_args:
                self._require("probs", p, np.isfinite(p) & (p >= 0), "non-negative and finite")
                s = p.sum(axis=-1)
                self._require(
                    "probs", s, np.abs(s - 1.0) <= 1e-6, "normalised (sum to 1 over the last axis)"
                )
            self._probs_n = p / p.sum(axis=-1, keepdims=True)
            with np.errstate(divide="ignore"):
                self._log_p = np.log(self._probs_n)
        else:
            if self.validate_args:
                self._require(
                    "logits", p, ~np.isnan(p) & (p < np.inf), "finite or -inf (not NaN or +inf)"
                )
                self._require(
                    "logits", p, np.any(p > -np.inf, axis=-1, keepdims=True),
                    "not all -inf along the last axis",
                )
            self._log_p = p - logsumexp(p, axis=-1, keepdims=True)
            self._probs_n = np.exp(self._log_p)
        return p


class Categorical(_LastAxisProbs, _DiscreteMixin, Distribution):
    """Categorical over {0, ..., K-1}, probabilities (or logits) on the last axis."""

    _repr_params = ("probs", "logits")

    def __init__(self, probs=None, logits=None, *, validate_args=None):
        super().__init__(validate_args)
        p = self._setup_probs(probs, logits)
        self.batch_shape = p.shape[:-1]
        self.num_states = self.K
        self.support = constraints.integer_interval(0, self.K - 1)

    def log_prob(self, value):
        v = self._value(value)
        ok = (v >= 0) & (v <= self.K - 1)
        if v.dtype.kind == "f":
            ok &= _is_integer(v)
            idx = np.where(ok, v, 0).astype(np.intp)
        else:
            idx = np.where(ok, v, 0)
        if not self.batch_shape:
            out = self._log_p[idx]
        else:
            full = np.broadcast_shapes(idx.shape, self.batch_shape)
            lp = np.broadcast_to(self._log_p, full + (self.K,))
            idx = np.broadcast_to(idx, full)[..., None]
            out = np.take_along_axis(lp, idx, axis=-1)[..., 0]
        return _mask_out(np.array(out, dtype=float), ok)

    def sample(self, rng, sample_shape=()):
        u = rng.random(self._shape(sample_shape))
        cdf = np.cumsum(self._probs_n, axis=-1)
        cdf = cdf[..., :-1] / cdf[..., -1:]
        return (u[..., None] >= cdf).sum(axis=-1, dtype=np.int64)

    @property
    def mean(self):
        return self._full(self._probs_n @ np.arange(self.K, dtype=float))

    @property
    def variance(self):
        k = np.arange(self.K, dtype=float)
        m = self._probs_n @ k
        return self._full(self._probs_n @ (k * k) - m * m)


class Multinomial(_LastAxisProbs, _DiscreteMixin, Distribution):
    """Multinomial(total_count n, probs | logits): counts over K categories, event shape (K,)."""

    support = constraints.nonnegative_integer
    _repr_params = ("total_count", "probs", "logits")

    def __init__(self, total_count, probs=None, logits=None, *, validate_args=None):
        super().__init__(validate_args)
        self.total_count = self._float("total_count", total_count)
        self._check_count("total_count", self.total_count)
        p = self._setup_probs(probs, logits)
        self.batch_shape = self._broadcast(
            total_count=self.total_count.shape,
            **{"probs[..., 0]" if self.probs is not None else "logits[..., 0]": p.shape[:-1]},
        )
        self.event_shape = (self.K,)
        self._log_norm = gammaln(self.total_count + 1.0)

    def log_prob(self, value):
        x = self._value(value)
        if x.ndim < 1 or x.shape[-1] != self.K:
            raise ValueError(
                f"Multinomial.log_prob: value must have {self.K} counts on the last axis, "
                f"got shape {x.shape}"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.probs is not None:
                terms = xlogy(x, self._probs_n)
            else:
                terms = x * self._log_p
            terms = terms - gammaln(x + 1.0)
            out = terms.sum(axis=-1) + self._log_norm
        ok = np.all(self._integral(x) & (x >= 0), axis=-1) & (x.sum(axis=-1) == self.total_count)
        return _mask_out(np.asarray(out, dtype=float), ok)

    def support_mask(self, value):
        x = self._value(value)
        with np.errstate(invalid="ignore"):
            ok = np.all(self._integral(x) & (x >= 0), axis=-1) & (x.sum(axis=-1) == self.total_count)
        return np.asarray(ok, dtype=bool)

    @property
    def support_text(self):
        if self.total_count.ndim == 0:
            return f"non-negative integer counts summing to total_count ({int(self.total_count)})"
        return "non-negative integer counts summing to total_count"

    def _support_note(self, index):
        if self.total_count.ndim == 0:
            return ""
        n = np.broadcast_to(self.total_count, self.batch_shape)
        k = index[len(index) - len(self.batch_shape):] if self.batch_shape else ()
        return f" (total_count {int(n[k])} there)"

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        n = np.broadcast_to(self.total_count.astype(np.int64), shape)
        pv = np.broadcast_to(self._probs_n, shape + (self.K,))
        return rng.multinomial(n, pv)

    @property
    def mean(self):
        return self._full(self.total_count[..., None] * self._probs_n)

    @property
    def variance(self):
        p = self._probs_n
        return self._full(self.total_count[..., None] * p * (1.0 - p))


class Dirichlet(Distribution):
    """Dirichlet(concentration) on the simplex of the last axis, event shape (K,)."""

    _repr_params = ("concentration",)

    def __init__(self, concentration, *, validate_args=None):
        super().__init__(validate_args)
        a = self.concentration = self._float("concentration", concentration)
        if a.ndim < 1 or a.shape[-1] < 1:
            raise ValueError(
                f"Dirichlet: concentration must have K >= 1 entries on its last axis, "
                f"got shape {a.shape}"
            )
        self._check_positive("concentration", a)
        self.K = a.shape[-1]
        self.batch_shape = a.shape[:-1]
        self.event_shape = (self.K,)
        self.support = constraints.simplex(self.K)
        self._am1 = a - 1.0
        self._a0 = a.sum(axis=-1)
        self._log_norm = gammaln(self._a0) - gammaln(a).sum(axis=-1)

    def log_prob(self, value):
        x = self._value(value)
        if x.ndim < 1 or x.shape[-1] != self.K:
            raise ValueError(
                f"Dirichlet.log_prob: value must have {self.K} entries on the last axis, "
                f"got shape {x.shape}"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            out = xlogy(self._am1, x).sum(axis=-1) + self._log_norm
        ok = np.all(x >= 0, axis=-1) & (np.abs(x.sum(axis=-1) - 1.0) <= 1e-8 * self.K)
        return _mask_out(np.asarray(out, dtype=float), ok)

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape) + (self.K,)
        g = rng.standard_gamma(np.broadcast_to(self.concentration, shape), shape)
        return g / g.sum(axis=-1, keepdims=True)

    @property
    def mean(self):
        return self._full(self.concentration / self._a0[..., None])

    @property
    def variance(self):
        a, a0 = self.concentration, self._a0[..., None]
        return self._full(a * (a0 - a) / (a0 * a0 * (a0 + 1.0)))


# --------------------------------------------------------------------------------------------
# multivariate normal


class MultivariateNormal(Distribution):
    """Multivariate normal with event shape (d,).

    Give exactly one of ``covariance_matrix``, ``scale_tril`` (lower-triangular Cholesky factor
    of the covariance, positive diagonal) or ``precision_matrix``. ``loc`` has shape
    ``(..., d)``, the matrix ``(..., d, d)``; their batch parts broadcast.
    """

    support = constraints.real
    _repr_params = ("loc",)

    def __init__(
        self, loc, covariance_matrix=None, *, scale_tril=None, precision_matrix=None,
        validate_args=None,
    ):
        super().__init__(validate_args)
        given = {
            k: v
            for k, v in (
                ("covariance_matrix", covariance_matrix),
                ("scale_tril", scale_tril),
                ("precision_matrix", precision_matrix),
            )
            if v is not None
        }
        if len(given) != 1:
            raise ValueError(
                "MultivariateNormal: pass exactly one of covariance_matrix, scale_tril or "
                f"precision_matrix, got {sorted(given) or 'none'}"
            )
        (name, mat), = given.items()
        self._mode = name
        self.loc = self._float("loc", loc)
        M = self._float(name, mat)
        if self.loc.ndim < 1:
            raise ValueError(
                f"MultivariateNormal: loc must have shape (..., d), got shape {self.loc.shape}"
            )
        d = self.loc.shape[-1]
        if M.ndim < 2 or M.shape[-1] != M.shape[-2] or M.shape[-1] != d:
            raise ValueError(
                f"MultivariateNormal: {name} must have shape (..., {d}, {d}) to match loc of "
                f"shape {self.loc.shape}, got shape {M.shape}"
            )
        self.d = d
        self._check_finite("loc", self.loc)
        self._check_finite(name, M)
        self.batch_shape = self._broadcast(**{"loc[..., 0]": self.loc.shape[:-1],
                                              f"{name}[..., 0, 0]": M.shape[:-2]})
        self.event_shape = (d,)
        self._mat_batch = M.shape[:-2]

        if name == "scale_tril":
            if self.validate_args:
                self._require(
                    name, M, np.triu(M, 1) == 0, "lower triangular (zeros above the diagonal)"
                )
                diag = np.diagonal(M, axis1=-2, axis2=-1)
                self._require(name, diag, diag > 0, "with a positive diagonal")
            self._L = M
        else:
            if self.validate_args:
                self._require(
                    name, M,
                    np.abs(M - np.swapaxes(M, -1, -2)) <= 1e-10 * (1.0 + np.abs(M)),
                    "symmetric",
                )
            try:
                L = np.linalg.cholesky(M)
            except np.linalg.LinAlgError:
                raise ValueError(
                    f"MultivariateNormal: {name} must be symmetric positive definite, "
                    f"but its Cholesky factorisation failed (shape {M.shape})"
                ) from None
            if not np.all(np.isfinite(L)):
                raise ValueError(
                    f"MultivariateNormal: {name} must be finite and positive definite, "
                    f"its Cholesky factor has non-finite entries (shape {M.shape})"
                )
            self._L = L
        setattr(self, "_" + name, M)
        diag = np.diagonal(self._L, axis1=-2, axis2=-1)
        half_logdet = np.log(diag).sum(axis=-1)  # of the given matrix's Cholesky factor
        if name == "precision_matrix":
            half_logdet = -half_logdet
        self._log_norm = -half_logdet - d * _HALF_LOG_2PI

    # -- matrix views ----------------------------------------------------------------------------

    @property
    def scale_tril(self):
        if self._mode == "precision_matrix":
            if "_scale_tril_cache" not in self.__dict__:
                self._scale_tril_cache = np.linalg.cholesky(self.covariance_matrix)
            return self._scale_tril_cache
        return self._L

    @property
    def covariance_matrix(self):
        if self._mode == "covariance_matrix":
            return self._covariance_matrix
        if self._mode == "scale_tril":
            return self._L @ np.swapaxes(self._L, -1, -2)
        if "_cov_cache" not in self.__dict__:
            eye = np.broadcast_to(np.eye(self.d), self._L.shape)
            Linv = np.linalg.solve(self._L, eye)  # L_p^{-1}; cov = L_p^{-T} L_p^{-1}
            self._cov_cache = np.swapaxes(Linv, -1, -2) @ Linv
        return self._cov_cache

    @property
    def precision_matrix(self):
        if self._mode == "precision_matrix":
            return self._precision_matrix
        return np.linalg.inv(self.covariance_matrix)

    # -- density -------------------------------------------------------------------------------

    def _mahalanobis(self, diff):
        """Squared Mahalanobis norm of ``diff`` (shape full + (d,)), shape ``full``."""
        d = self.d
        if self._mode == "precision_matrix":
            if self._mat_batch:
                z = (diff[..., None, :] @ self._L)[..., 0, :]
            else:
                z = diff @ self._L  # one stacked BLAS matmul
            return np.einsum("...i,...i->...", z, z)
        full = diff.shape[:-1]
        if not self._mat_batch:
            z = solve_triangular(self._L, diff.reshape(-1, d).T, lower=True, check_finite=False)
            return np.einsum("ij,ij->j", z, z).reshape(full)
        # batched factor: one triangular system per batch element, samples as right-hand sides
        B = self.batch_shape
        nb = len(B)
        lead = full[: len(full) - nb]
        n = int(np.prod(lead, dtype=np.int64))
        rhs = np.moveaxis(diff.reshape((n,) + B + (d,)), 0, -1)  # B + (d, n)
        L = np.broadcast_to(self._L, B + (d, d))
        z = np.linalg.solve(L, rhs)
        m = np.einsum("...in,...in->...n", z, z)  # B + (n,)
        return np.moveaxis(m, -1, 0).reshape(full)

    def log_prob(self, value):
        x = self._value(value)
        if x.ndim < 1 or x.shape[-1] != self.d:
            raise ValueError(
                f"MultivariateNormal.log_prob: value must have shape (..., {self.d}), "
                f"got shape {x.shape}"
            )
        full = np.broadcast_shapes(x.shape[:-1], self.batch_shape)
        diff = np.broadcast_to(x - self.loc, full + (self.d,))
        return -0.5 * self._mahalanobis(diff) + self._log_norm

    def sample(self, rng, sample_shape=()):
        z = rng.standard_normal(self._shape(sample_shape) + (self.d,))
        return self.loc + (self.scale_tril @ z[..., None])[..., 0]

    @property
    def mean(self):
        return self._full(self.loc)

    @property
    def variance(self):
        return self._full(np.diagonal(self.covariance_matrix, axis1=-2, axis2=-1))

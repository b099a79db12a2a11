"""Discrete distributions with scalar events: Bernoulli, Binomial, Poisson and Categorical,
and the pieces they share with Multinomial (integer values, probabilities on the last axis)."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, gammaln, log_expit, logsumexp, xlog1py, xlogy

from .. import constraints
from .base import (
    COUNT,
    FINITE,
    NONNEGATIVE,
    NOT_NAN,
    PROBABILITY,
    Distribution,
    ParamCheck,
    _is_integer,
    _mask_out,
)

__all__ = ["Bernoulli", "Binomial", "Poisson", "Categorical"]


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


def _total_count_note(d, index) -> str:
    """`` (total_count n there)`` at ``index`` when ``d.total_count`` is an array."""
    if d.total_count.ndim == 0:
        return ""
    n = np.broadcast_to(d.total_count, d.batch_shape)
    k = index[len(index) - len(d.batch_shape):] if d.batch_shape else ()
    return f" (total_count {int(n[k])} there)"


class Bernoulli(_DiscreteMixin, Distribution):
    """Bernoulli(probs) or Bernoulli(logits) on {0, 1}."""

    support = constraints.boolean
    num_states = 2
    param_checks = {"probs": PROBABILITY, "logits": NOT_NAN}
    one_of = ("probs", "logits")

    def __init__(self, probs=None, logits=None, *, validate_args=None):
        super().__init__(validate_args, probs=probs, logits=logits)
        if self.probs is not None:
            with np.errstate(divide="ignore"):
                self._log_p = np.log(self.probs)
                self._log_1mp = np.log1p(-self.probs)

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

    param_checks = {"total_count": COUNT, "probs": PROBABILITY, "logits": FINITE}
    one_of = ("probs", "logits")

    def __init__(self, total_count, probs=None, logits=None, *, validate_args=None):
        super().__init__(validate_args, total_count=total_count, probs=probs, logits=logits)
        if self.logits is not None:
            self._log_p = log_expit(self.logits)
            self._log_1mp = log_expit(-self.logits)
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

    _support_note = _total_count_note

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
    param_checks = {"rate": NONNEGATIVE}

    def __init__(self, rate, *, validate_args=None):
        super().__init__(validate_args, rate=rate)

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
# probabilities on the last axis (Categorical here, Multinomial in .multivariate)

#: probs on the last axis: non-negative, finite and normalised
LAST_AXIS_PROBS = (
    NONNEGATIVE,
    ParamCheck(
        lambda p: np.abs(p.sum(axis=-1) - 1.0) <= 1e-6,
        "normalised (sum to 1 over the last axis)",
        shown=lambda p: p.sum(axis=-1),
    ),
)
#: logits on the last axis: finite or -inf, and not all -inf
LAST_AXIS_LOGITS = (
    ParamCheck(lambda p: ~np.isnan(p) & (p < np.inf), "finite or -inf (not NaN or +inf)"),
    ParamCheck(
        lambda p: np.any(p > -np.inf, axis=-1, keepdims=True), "not all -inf along the last axis"
    ),
)


class _LastAxisProbs:
    """Shared set-up for Categorical / Multinomial: normalised log-probabilities (..., K).

    ``probs`` or ``logits`` (one of them) carry the K states on their last axis.
    """

    one_of = ("probs", "logits")
    param_event_dims = {"probs": 1, "logits": 1}

    def _check_shapes(self):
        name = self._alternative
        p = getattr(self, name)
        if p.ndim < 1 or p.shape[-1] < 1:
            raise ValueError(
                f"{self._name()}: {name} must have at least one dimension with K >= 1 states "
                f"on the last axis, got shape {p.shape}"
            )
        self.K = p.shape[-1]

    def _normalise(self):
        """Set ``_probs_n`` and ``_log_p``, the normalised probabilities and their logs."""
        if self.probs is not None:
            p = self.probs
            self._probs_n = p / p.sum(axis=-1, keepdims=True)
            with np.errstate(divide="ignore"):
                self._log_p = np.log(self._probs_n)
        else:
            p = self.logits
            self._log_p = p - logsumexp(p, axis=-1, keepdims=True)
            self._probs_n = np.exp(self._log_p)


class Categorical(_LastAxisProbs, _DiscreteMixin, Distribution):
    """Categorical over {0, ..., K-1}, probabilities (or logits) on the last axis."""

    param_checks = {"probs": LAST_AXIS_PROBS, "logits": LAST_AXIS_LOGITS}

    def __init__(self, probs=None, logits=None, *, validate_args=None):
        super().__init__(validate_args, probs=probs, logits=logits)
        self._normalise()
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

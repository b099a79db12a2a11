"""Discrete distributions with scalar events: Bernoulli, Binomial, Poisson, NegativeBinomial
and Categorical, and the pieces they share with Multinomial (integer values, probabilities on
the last axis)."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .. import constraints
from .._jax import is_jax
from ._ops import log_expit, safe, softplus
from .base import (
    _NEG_INF,
    COUNT,
    FINITE,
    NONNEGATIVE,
    NOT_NAN,
    POSITIVE,
    PROBABILITY,
    Distribution,
    ParamCheck,
    _is_integer,
    _mask_out,
)

__all__ = ["Bernoulli", "Binomial", "Poisson", "NegativeBinomial", "Categorical"]


class _DiscreteMixin:
    is_discrete = True

    @staticmethod
    def _value(value, ns=None):
        """``value`` as an integer array when it is one, else as floats (of namespace ``ns``)."""
        if ns is not None and ns.is_jax:
            v = ns.np.asarray(value)
            return v if v.dtype.kind in "iub" else v.astype(float)
        v = np.asarray(value)
        return v if v.dtype.kind in "iub" else np.asarray(v, dtype=float)

    @staticmethod
    def _integral(v, ns=None):
        """True where v is an integer value (trivially for integer dtypes)."""
        if v.dtype.kind in "iub":
            return True
        return (np if ns is None else ns.np).isfinite(v) & _is_integer(v, ns)


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
            xp = self._params_ns().np
            with np.errstate(divide="ignore"):
                self._log_p = xp.log(self.probs)
                self._log_1mp = xp.log1p(-self.probs)

    def _p(self):
        return self.probs if self.probs is not None else expit(self.logits)

    def log_prob(self, value):
        ns = self._ns(value)
        xp = ns.np
        y = self._value(value, ns)
        ok = (y == 0) | (y == 1)
        if self.probs is not None:
            out = xp.where(y == 1, self._log_p, self._log_1mp)
        else:
            # y * logits - log(1 + exp(logits)): one transcendental pass, stable for any logits
            out = y * self.logits - softplus(ns, self.logits)
        if ns.is_jax:
            return xp.where(ok, out, _NEG_INF)
        if np.all(ok):
            return out
        return _mask_out(np.array(out, dtype=float), np.broadcast_to(ok, np.shape(out)))

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
        ns = self._params_ns()
        if self.logits is not None:
            # log p and log(1 - p) as log-sigmoids: stable for any logits
            self._log_p = log_expit(ns, self.logits)
            self._log_1mp = log_expit(ns, -self.logits)
        if (
            not is_jax(self.total_count)
            and self.total_count.ndim == 0
            and np.isfinite(self.total_count)
        ):
            n = int(self.total_count)
            self.support = constraints.integer_interval(0, max(n, 0))
            self.num_states = n + 1
        else:
            self.support = constraints.nonnegative_integer
            self.num_states = None
        self._log_norm = ns.special.gammaln(self.total_count + 1.0)

    def _p(self):
        return self.probs if self.probs is not None else expit(self.logits)

    def log_prob(self, value):
        ns = self._ns(value)
        sp = ns.special
        k = self._value(value, ns)
        n = self.total_count
        nmk = n - k
        ok = self._integral(k, ns) & (k >= 0) & (nmk >= 0)
        if ns.is_jax:  # finite terms (and derivatives) outside the support, masked below
            k = ns.np.where(ok, k, 0.0)
            nmk = n - k
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.probs is not None:
                out = sp.xlogy(k, self.probs) + sp.xlog1py(nmk, -self.probs)
            else:
                out = k * self._log_p + nmk * self._log_1mp
            out -= sp.gammaln(k + 1.0)
            out -= sp.gammaln(nmk + 1.0)
        out += self._log_norm
        return _mask_out(out, ok)

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
    """Poisson(rate) or Poisson(log_rate=...) on {0, 1, 2, ...}; rate 0 is the point mass at 0.

    With ``log_rate`` (the linear predictor of a log-link model) the log-probability is
    ``k * log_rate - exp(log_rate) - log(k!)``, with no log of an exponential.
    """

    support = constraints.nonnegative_integer
    param_checks = {"rate": NONNEGATIVE, "log_rate": FINITE}
    one_of = ("rate", "log_rate")

    def __init__(self, rate=None, *, log_rate=None, validate_args=None):
        super().__init__(validate_args, rate=rate, log_rate=log_rate)
        if self.log_rate is not None:
            self._exp_log_rate = self._params_ns().np.exp(self.log_rate)

    def _rate(self):
        return self.rate if self.rate is not None else np.exp(self.log_rate)

    def log_prob(self, value):
        ns = self._ns(value)
        sp = ns.special
        k = self._value(value, ns)
        ok = self._integral(k, ns) & (k >= 0)
        k = safe(ns, ok, k, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.rate is not None:
                out = sp.xlogy(k, self.rate)
                out -= self.rate
            else:
                out = k * self.log_rate
                out -= self._exp_log_rate
            out -= sp.gammaln(k + 1.0)
        return _mask_out(out, ok)

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        return rng.poisson(np.broadcast_to(self._rate(), shape), shape)

    @property
    def mean(self):
        return self._full(self._rate())

    @property
    def variance(self):
        return self._full(self._rate())


class NegativeBinomial(_DiscreteMixin, Distribution):
    """NegativeBinomial(concentration r, mean mu | log_mean) on {0, 1, 2, ...}.

    The mean parametrisation (NB2): mean ``mu``, variance ``mu + mu^2 / r``; a Poisson whose
    rate is Gamma(r, rate r / mu). ``P(k) = Gamma(k + r) / (Gamma(r) k!) q^k (1 - q)^r`` with
    ``q = mu / (r + mu)``. Give exactly one of ``mean`` (non-negative; 0 is the point mass at
    0) or ``log_mean`` (finite; with it ``log q`` and ``log(1 - q)`` are log-sigmoids of
    ``log_mean - log r``, stable for any value). As ``scipy.stats.nbinom(n=r, p=1 - q)``.
    """

    support = constraints.nonnegative_integer
    param_checks = {"concentration": POSITIVE, "mean": NONNEGATIVE, "log_mean": FINITE}
    one_of = ("mean", "log_mean")

    def __init__(self, concentration, mean=None, *, log_mean=None, validate_args=None):
        super().__init__(validate_args, concentration=concentration, mean=mean, log_mean=log_mean)
        ns = self._params_ns()
        xp, r = ns.np, self.concentration
        self._lgamma_r = ns.special.gammaln(r)
        with np.errstate(divide="ignore"):
            if self.log_mean is not None:
                t = self.log_mean - xp.log(r)  # logit q
                self._log_q = log_expit(ns, t)
                self._r_log_1mq = r * log_expit(ns, -t)
            else:
                mu = self._mean_param
                self._log_r_mu = xp.log(r + mu)  # k log q = xlogy(k, mu) - k log(r + mu)
                self._r_log_1mq = -r * xp.log1p(mu / r)

    def _store_param(self, name, value):
        # ``mean`` is the distribution's mean (a property): the parameter is kept privately
        super()._store_param("_mean_param" if name == "mean" else name, value)

    def _repr_value(self, name):
        return self._mean_param if name == "mean" else super()._repr_value(name)

    def _mu(self):
        return self._mean_param if self._mean_param is not None else np.exp(self.log_mean)

    def log_prob(self, value):
        ns = self._ns(value)
        sp = ns.special
        k = self._value(value, ns)
        ok = self._integral(k, ns) & (k >= 0)
        k = safe(ns, ok, k, 0.0)
        r = self.concentration
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.log_mean is not None:
                out = k * self._log_q
            else:
                out = sp.xlogy(k, self._mean_param) - k * self._log_r_mu
            out += self._r_log_1mq
            out += sp.gammaln(k + r)
            out -= sp.gammaln(k + 1.0)
            out -= self._lgamma_r
        return _mask_out(out, ok)

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        r = np.broadcast_to(self.concentration, shape)
        lam = rng.standard_gamma(r, shape) * (self._mu() / self.concentration)
        return rng.poisson(lam, shape)

    @property
    def mean(self):
        return self._full(self._mu())

    @property
    def variance(self):
        mu = self._mu()
        return self._full(mu + mu * mu / self.concentration)


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
        ns = self._params_ns()
        if self.probs is not None:
            p = self.probs
            self._probs_n = p / p.sum(axis=-1, keepdims=True)
            with np.errstate(divide="ignore"):
                self._log_p = ns.np.log(self._probs_n)
        else:
            p = self.logits
            self._log_p = p - ns.special.logsumexp(p, axis=-1, keepdims=True)
            self._probs_n = ns.np.exp(self._log_p)


class Categorical(_LastAxisProbs, _DiscreteMixin, Distribution):
    """Categorical over {0, ..., K-1}, probabilities (or logits) on the last axis."""

    param_checks = {"probs": LAST_AXIS_PROBS, "logits": LAST_AXIS_LOGITS}

    def __init__(self, probs=None, logits=None, *, validate_args=None):
        super().__init__(validate_args, probs=probs, logits=logits)
        self._normalise()
        self.num_states = self.K
        self.support = constraints.integer_interval(0, self.K - 1)

    def log_prob(self, value):
        ns = self._ns(value)
        xp = ns.np
        v = self._value(value, ns)
        ok = (v >= 0) & (v <= self.K - 1)
        if v.dtype.kind == "f":
            ok &= _is_integer(v, ns)
            idx = xp.where(ok, v, 0).astype(np.intp)
        else:
            idx = xp.where(ok, v, 0)
        log_p = xp.asarray(self._log_p) if ns.is_jax else self._log_p
        if not self.batch_shape:
            out = log_p[idx]
        else:
            full = np.broadcast_shapes(idx.shape, self.batch_shape)
            lp = xp.broadcast_to(log_p, full + (self.K,))
            idx = xp.broadcast_to(idx, full)[..., None]
            out = xp.take_along_axis(lp, idx, axis=-1)[..., 0]
        return _mask_out(out if ns.is_jax else np.array(out, dtype=float), ok)

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

"""Distributions of whole paths of a Markov chain over time: MarkovChain (finite states),
GaussianRandomWalk, AR1 and LinearGaussianStateSpace.

A chain distribution describes one path ``x_0, ..., x_{T-1}``: its ``event_shape`` is ``(T,)``
for a scalar state and ``(T, d)`` for a state vector, ``batch_shape`` is always ``()`` (the
parameters are not batched), ``length`` is ``T``, ``state_shape`` is ``()`` or ``(d,)`` and
``is_chain`` is True. ``log_prob(value)`` takes paths of shape ``(..., T)`` or ``(..., T, d)``
and returns one log density per path (shape ``(...)``), ``-inf`` outside the support; it is
vectorised over paths and time steps, and traced by JAX with the same formulas when a parameter
or the value is a JAX array. ``sample``, ``mean``, ``variance`` and ``linear_gaussian`` are
numpy-only.

The continuous chains are linear-Gaussian: ``x_0 ~ N(m0, P0)`` and
``x_t | x_{t-1} ~ N(F x_{t-1} + c, Q)``; :meth:`linear_gaussian` gives these matrices as a
:class:`LinearGaussian` (with ``d = 1`` for a scalar chain).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .. import constraints
from ._ops import safe, solve_triangular
from .base import (
    _HALF_LOG_2PI,
    FINITE,
    NONNEGATIVE,
    POSITIVE,
    Distribution,
    ParamCheck,
    _is_jax,
    _mask_out,
)
from .discrete import _DiscreteMixin

__all__ = ["LinearGaussian", "MarkovChain", "GaussianRandomWalk", "AR1", "LinearGaussianStateSpace"]

#: tolerance of the sums of probability vectors (as Categorical's)
_SIMPLEX_TOL = 1e-6
_ROWS_SUM_TO_ONE = ParamCheck(
    lambda p: np.abs(p.sum(axis=-1) - 1.0) <= _SIMPLEX_TOL,
    "row-stochastic (non-negative, each row summing to 1 over the last axis)",
    shown=lambda p: p.sum(axis=-1),
)
_SUMS_TO_ONE = ParamCheck(
    lambda p: np.abs(p.sum(axis=-1) - 1.0) <= _SIMPLEX_TOL,
    "a probability vector (non-negative, summing to 1)",
    shown=lambda p: p.sum(axis=-1),
)


class LinearGaussian(NamedTuple):
    """A linear-Gaussian chain: ``x_0 ~ N(m0, P0)``, ``x_t | x_{t-1} ~ N(F x_{t-1} + c, Q)``.

    Numpy float arrays: ``m0`` (d,), ``P0`` (d, d), ``F`` (d, d), ``c`` (d,), ``Q`` (d, d).
    """

    m0: np.ndarray
    P0: np.ndarray
    F: np.ndarray
    c: np.ndarray
    Q: np.ndarray


class _Chain(Distribution):
    """Shared machinery: optional parameters, the length, the event shape and path values."""

    is_chain = True
    #: declared parameters that may be None (absent)
    _optional: tuple = ()

    def _float(self, name, x):
        if x is None and name in self._optional:
            return None
        return super()._float(name, x)

    def _shape_error(self, name, expected, x):
        raise ValueError(
            f"{self._name()}: {name} must have shape {expected}, got shape {tuple(x.shape)}")

    def _require_scalars(self, *names):
        for n in names:
            x = getattr(self, n)
            if x is not None and x.ndim != 0:
                self._shape_error(n, "() (a scalar: chain parameters are not batched)", x)

    def _check_length(self, length):
        if length is None:
            raise TypeError(f"{self._name()}: length (the number of time steps, a positive int) "
                            "is required, got None")
        if not isinstance(length, numbers.Integral) or isinstance(length, bool):
            raise TypeError(f"{self._name()}: length must be a positive int (the number of time "
                            f"steps), got {type(length).__name__} {length!r}")
        if length < 1:
            raise ValueError(f"{self._name()}: length must be a positive int (the number of time "
                             f"steps), got {length!r}")
        return int(length)

    def _set_event(self, length, state_shape=()):
        self.batch_shape = ()
        self.length = length
        self.state_shape = tuple(state_shape)
        self.event_shape = (length,) + self.state_shape

    def _path(self, value, ns):
        """``value`` as an array (of namespace ``ns``) ending in the event shape, or an error."""
        x = self._value(value, ns)
        ev = self.event_shape
        if tuple(x.shape[max(x.ndim - len(ev), 0):]) != ev or x.ndim < len(ev):
            what = "(time steps, state)" if self.state_shape else "(time steps)"
            raise ValueError(f"{self._name()}.log_prob: value must end in the event shape {ev} "
                             f"{what}, got shape {tuple(x.shape)}")
        return x

    def __repr__(self):
        return super().__repr__().replace("\n", "")

    @staticmethod
    def _rng(rng):
        return np.random.default_rng(rng)


# --------------------------------------------------------------------------------------------
# finite states


class MarkovChain(_DiscreteMixin, _Chain):
    """A Markov chain on the states {0, ..., K-1}: ``s_0 ~ init_probs``,
    ``p(s_t = j | s_{t-1} = i) = transition[i, j]`` (or ``transition[t-1, i, j]``).

    Parameters
    ----------
    init_probs : array_like, shape (K,)
        The distribution of the first state (non-negative, summing to 1).
    transition : array_like, shape (K, K) or (T-1, K, K)
        Row-stochastic transition matrix (row i is the distribution of the next state after
        state i); with a leading time axis the chain is time-varying, matrix ``t-1`` leading
        from step ``t-1`` to step ``t``, and ``length`` defaults to its length plus one.
    length : int, optional
        The number of time steps T (required for a (K, K) transition).
    validate_args : bool, optional
        Whether to check the parameters' values (default: the module default).
    """

    param_checks = {"init_probs": (NONNEGATIVE, _SUMS_TO_ONE),
                    "transition": (NONNEGATIVE, _ROWS_SUM_TO_ONE)}

    def __init__(self, init_probs, transition, length=None, *, validate_args=None):
        super().__init__(validate_args, init_probs=init_probs, transition=transition)
        A = self.transition
        self.time_varying = A.ndim == 3
        if self.time_varying:
            inferred = A.shape[0] + 1
            if length is not None and self._check_length(length) != inferred:
                raise ValueError(
                    f"MarkovChain: length {length!r} does not match the time-varying transition "
                    f"of shape {tuple(A.shape)}, which has {A.shape[0]} matrices (length "
                    f"{inferred})")
            length = inferred
        self._set_event(self._check_length(length))
        self.num_states = self.K
        self.support = constraints.integer_interval(0, self.K - 1)
        xp = self._params_ns().np
        with np.errstate(divide="ignore"):
            p0 = self.init_probs / self.init_probs.sum()
            self._log_init = xp.log(p0)
            self._log_A = xp.log(A / A.sum(axis=-1, keepdims=True))

    def _check_shapes(self):
        p, A = self.init_probs, self.transition
        if p.ndim != 1 or p.shape[0] < 1:
            self._shape_error("init_probs", "(K,) with K >= 1 states", p)
        K = self.K = p.shape[0]
        if A.ndim not in (2, 3) or A.shape[-2:] != (K, K):
            self._shape_error("transition", f"({K}, {K}) or (T-1, {K}, {K}) to match init_probs "
                              f"of shape ({K},)", A)

    @property
    def log_init(self):
        """log init_probs (normalised), shape (K,)."""
        return self._log_init

    @property
    def log_transition(self):
        """log transition (rows normalised), shape (K, K) or (T-1, K, K)."""
        return self._log_A

    def log_prob(self, value):
        ns = self._ns(value)
        xp, K, T = ns.np, self.K, self.length
        s = self._path(value, ns)
        ok = (s >= 0) & (s <= K - 1)
        if s.dtype.kind == "f":
            ok = ok & self._integral(s, ns)
        idx = xp.where(ok, s, 0).astype(np.intp)
        ok = xp.all(ok, axis=-1)
        li, la = self._log_init, self._log_A
        if ns.is_jax:
            li, la = xp.asarray(li), xp.asarray(la)
        out = xp.take(li, idx[..., 0])
        if T > 1:
            flat = idx[..., :-1] * K + idx[..., 1:]
            if self.time_varying:
                flat = flat + np.arange(T - 1) * (K * K)
            out = out + xp.take(la.reshape(-1), flat).sum(axis=-1)
        return _mask_out(out if ns.is_jax else np.asarray(out, dtype=float), ok)

    def sample(self, rng, sample_shape=()):
        rng = self._rng(rng)
        shape, T = self._shape(sample_shape), self.length
        cdf0 = np.cumsum(np.exp(np.asarray(self._log_init)))
        cdfA = np.cumsum(np.exp(np.asarray(self._log_A)), axis=-1)
        u = rng.random(shape + (T,))
        out = np.empty(shape + (T,), dtype=np.int64)
        out[..., 0] = (u[..., 0, None] >= cdf0[:-1]).sum(axis=-1)
        for t in range(1, T):
            rows = (cdfA[t - 1] if self.time_varying else cdfA)[out[..., t - 1]]
            out[..., t] = (u[..., t, None] >= rows[..., :-1]).sum(axis=-1)
        return out

    @property
    def marginal_probs(self):
        """The marginal distribution of each state, ``p(s_t = k)``, shape (T, K)."""
        p = np.exp(np.asarray(self._log_init))
        A = np.exp(np.asarray(self._log_A))
        out = np.empty((self.length, self.K))
        out[0] = p
        for t in range(1, self.length):
            out[t] = p = p @ (A[t - 1] if self.time_varying else A)
        return out

    @property
    def mean(self):
        """The prior mean of the state index at each time step, shape (T,)."""
        return self.marginal_probs @ np.arange(self.K, dtype=float)

    @property
    def variance(self):
        """The prior variance of the state index at each time step, shape (T,)."""
        k = np.arange(self.K, dtype=float)
        p = self.marginal_probs
        m = p @ k
        return p @ (k * k) - m * m


# --------------------------------------------------------------------------------------------
# linear-Gaussian chains


class _GaussianChain(_Chain):
    """Continuous linear-Gaussian chains: sampling and moments from their matrices."""

    def _factors(self):  # pragma: no cover - abstract
        """numpy (m0 (d,), L0 (d, d), F (d, d), c (d,), LQ (d, d)); L are Cholesky factors."""
        raise NotImplementedError

    def _finite_path(self, value):
        """(namespace, its numpy, the path with non-finite entries set to 0, where it was finite)."""
        ns = self._ns(value)
        x = self._path(value, ns)
        finite = ns.np.isfinite(x)
        return ns, ns.np, safe(ns, finite, x, 0.0), finite

    def linear_gaussian(self):
        """The chain as matrices: a :class:`LinearGaussian` (m0, P0, F, c, Q) of new arrays."""
        m0, L0, F, c, LQ = self._factors()
        return LinearGaussian(m0.copy(), L0 @ L0.T, F.copy(), c.copy(), LQ @ LQ.T)

    def sample(self, rng, sample_shape=()):
        rng = self._rng(rng)
        m0, L0, F, c, LQ = self._factors()
        shape, T, d = self._shape(sample_shape), self.length, m0.shape[0]
        z = rng.standard_normal(shape + (T, d))
        x = np.empty_like(z)
        x[..., 0, :] = m0 + z[..., 0, :] @ L0.T
        eps = z[..., 1:, :] @ LQ.T + c
        for t in range(1, T):
            x[..., t, :] = x[..., t - 1, :] @ F.T + eps[..., t - 1, :]
        return x if self.state_shape else x[..., 0]

    def _moments(self):
        """The prior means (T, d) and marginal variances (T, d) of the states."""
        m, P, F, c, Q = self.linear_gaussian()
        mean, var = np.empty((self.length, m.shape[0])), np.empty((self.length, m.shape[0]))
        for t in range(self.length):
            if t:
                m, P = F @ m + c, F @ P @ F.T + Q
            mean[t], var[t] = m, np.diagonal(P)
        return mean, var

    @property
    def mean(self):
        """The prior mean of the state at each time step, shape (T,) or (T, d)."""
        m = self._moments()[0]
        return m if self.state_shape else m[:, 0]

    @property
    def variance(self):
        """The prior marginal variance of the state at each time step, shape (T,) or (T, d)."""
        v = self._moments()[1]
        return v if self.state_shape else v[:, 0]


class _ScalarGaussianChain(_GaussianChain):
    """A scalar chain with coefficients (m0, s0, F, c, s): x_0 ~ N(m0, s0^2),
    x_t ~ N(F x_{t-1} + c, s^2)."""

    def _check_shapes(self):
        self._require_scalars(*self.param_checks)

    def _set_coefs(self, m0, s0, F, c, s, length):
        self._set_event(self._check_length(length))
        self._coefs = (m0, s0, F, c, s)
        xp = self._params_ns().np
        with np.errstate(invalid="ignore", divide="ignore"):
            self._log_norm = -xp.log(s0) - (length - 1) * xp.log(s) - length * _HALF_LOG_2PI

    def log_prob(self, value):
        ns, xp, x, finite = self._finite_path(value)
        m0, s0, F, c, s = self._coefs
        with np.errstate(invalid="ignore"):
            z0 = (x[..., 0] - m0) / s0
            r = (x[..., 1:] - F * x[..., :-1] - c) / s
            out = -0.5 * (z0 * z0 + (r * r).sum(axis=-1)) + self._log_norm
        return _mask_out(out if ns.is_jax else np.asarray(out, dtype=float),
                         xp.all(finite, axis=-1))

    def _factors(self):
        m0, s0, F, c, s = (np.asarray(v, dtype=float).reshape(1) for v in self._coefs)
        return m0, s0[:, None], F[:, None], c, s[:, None]


class GaussianRandomWalk(_ScalarGaussianChain):
    """A Gaussian random walk: ``x_0 ~ N(init_loc, init_scale^2)``,
    ``x_t = x_{t-1} + scale * eps_t`` with standard normal ``eps_t``.

    Parameters
    ----------
    scale : float
        The standard deviation of the steps (positive).
    init_loc, init_scale : float
        The mean and standard deviation of the first state.
    length : int
        The number of time steps T (required).
    validate_args : bool, optional
        Whether to check the parameters' values (default: the module default).
    """

    param_checks = {"scale": POSITIVE, "init_loc": FINITE, "init_scale": POSITIVE}

    def __init__(self, scale, init_loc=0.0, init_scale=1.0, length=None, *, validate_args=None):
        super().__init__(validate_args, scale=scale, init_loc=init_loc, init_scale=init_scale)
        self._set_coefs(self.init_loc, self.init_scale, 1.0, 0.0, self.scale, length)


class AR1(_ScalarGaussianChain):
    """A first-order autoregression: ``x_t - loc = phi (x_{t-1} - loc) + scale * eps_t``.

    Parameters
    ----------
    phi : float
        The autoregressive coefficient (in (-1, 1) when ``init_scale`` is None).
    scale : float
        The standard deviation of the innovations (positive).
    loc : float
        The level the chain reverts to; also the mean of the first state.
    init_scale : float, optional
        The standard deviation of the first state, ``x_0 ~ N(loc, init_scale^2)``; None means
        the stationary one, ``scale / sqrt(1 - phi^2)``.
    length : int
        The number of time steps T (required).
    validate_args : bool, optional
        Whether to check the parameters' values (default: the module default).
    """

    param_checks = {"phi": FINITE, "scale": POSITIVE, "loc": FINITE, "init_scale": POSITIVE}
    _optional = ("init_scale",)

    def __init__(self, phi, scale, loc=0.0, init_scale=None, length=None, *, validate_args=None):
        super().__init__(validate_args, phi=phi, scale=scale, loc=loc, init_scale=init_scale)
        phi = self.phi
        if init_scale is None:
            if self.validate_args and not _is_jax(phi):
                self._require("phi", phi, np.abs(phi) < 1.0,
                              "in (-1, 1) when init_scale is None (the stationary initial "
                              "distribution; pass init_scale for a non-stationary chain)")
            with np.errstate(invalid="ignore", divide="ignore"):
                s0 = self.scale / self._params_ns().np.sqrt(1.0 - phi * phi)
        else:
            s0 = self.init_scale
        self._set_coefs(self.loc, s0, phi, self.loc * (1.0 - phi), self.scale, length)


_NOISE = ("noise_scale_tril", "noise_covariance")
_INIT = ("init_scale_tril", "init_covariance")


class LinearGaussianStateSpace(_GaussianChain):
    """A d-dimensional linear-Gaussian state-space chain: ``x_0 ~ N(init_loc, P0)``,
    ``x_t = transition_matrix @ x_{t-1} + offset + noise`` with ``noise ~ N(0, Q)``.

    Parameters
    ----------
    transition_matrix : array_like, shape (d, d)
        The matrix F.
    init_loc : array_like, shape (d,)
        The mean of the first state.
    length : int
        The number of time steps T (required).
    noise_scale_tril, noise_covariance : array_like, shape (d, d)
        The noise covariance Q, as its lower-triangular Cholesky factor (positive diagonal) or
        as a symmetric positive definite matrix: give exactly one.
    init_scale_tril, init_covariance : array_like, shape (d, d)
        The covariance P0 of the first state, likewise: give exactly one.
    offset : array_like, shape (d,), optional
        The constant c added at each step (zero by default).
    validate_args : bool, optional
        Whether to check the parameters' values (default: the module default).
    """

    param_checks = {"transition_matrix": FINITE, "init_loc": FINITE,
                    **dict.fromkeys(_NOISE + _INIT, FINITE), "offset": FINITE}
    _optional = _NOISE + _INIT + ("offset",)

    def __init__(self, transition_matrix, init_loc, length=None, *, noise_scale_tril=None,
                 noise_covariance=None, init_scale_tril=None, init_covariance=None, offset=None,
                 validate_args=None):
        super().__init__(validate_args, transition_matrix=transition_matrix, init_loc=init_loc,
                         noise_scale_tril=noise_scale_tril, noise_covariance=noise_covariance,
                         init_scale_tril=init_scale_tril, init_covariance=init_covariance,
                         offset=offset)
        d = self.d
        self._set_event(self._check_length(length), (d,))
        xp = self._params_ns().np
        self._c = xp.zeros(d) if self.offset is None else self.offset
        self._LQ, self._L0 = self._factor(_NOISE), self._factor(_INIT)
        T = self.length
        self._log_norm = (-xp.log(xp.diagonal(self._L0)).sum()
                          - (T - 1) * xp.log(xp.diagonal(self._LQ)).sum() - T * d * _HALF_LOG_2PI)

    def _check_shapes(self):
        m = self.init_loc
        if m.ndim != 1 or m.shape[0] < 1:
            self._shape_error("init_loc", "(d,) with d >= 1", m)
        d = self.d = m.shape[0]
        for pair in (_NOISE, _INIT):
            given = [n for n in pair if getattr(self, n) is not None]
            if len(given) != 1:
                got = "both" if given else "neither"
                raise ValueError(f"{self._name()}: pass exactly one of {pair[0]} or {pair[1]}, "
                                 f"got {got}")
        for n in ("transition_matrix",) + _NOISE + _INIT:
            M = getattr(self, n)
            if M is not None and M.shape != (d, d):
                self._shape_error(n, f"({d}, {d}) to match init_loc of shape ({d},)", M)
        if self.offset is not None and self.offset.shape != (d,):
            self._shape_error("offset", f"({d},) to match init_loc of shape ({d},)", self.offset)

    def _factor(self, pair):
        """The lower Cholesky factor of the covariance given by one of ``pair``, checked."""
        tril, cov = (getattr(self, n) for n in pair)
        name, M = (pair[0], tril) if tril is not None else (pair[1], cov)
        known = self.validate_args and not _is_jax(M)
        if tril is not None:
            if known:
                self._require(name, M, np.triu(M, 1) == 0,
                              "lower triangular (zeros above the diagonal)")
                diag = np.diagonal(M)
                self._require(name, diag, diag > 0, "with a positive diagonal")
            return M
        if _is_jax(M):  # no factorisation error while tracing: NaN when not positive definite
            return self._params_ns().np.linalg.cholesky(M)
        if known:
            self._require(name, M, np.abs(M - M.T) <= 1e-10 * (1.0 + np.abs(M)), "symmetric")
        try:
            L = np.linalg.cholesky(M)
        except np.linalg.LinAlgError:
            raise ValueError(f"{self._name()}: {name} must be symmetric positive definite, but "
                             f"its Cholesky factorisation failed (shape {M.shape})") from None
        return L

    def _factors(self):
        return tuple(np.asarray(v, dtype=float) for v in
                     (self.init_loc, self._L0, self.transition_matrix, self._c, self._LQ))

    def _maha(self, L, r, ns):
        """Squared Mahalanobis norms of the rows of ``r`` (..., d) for the factor ``L``."""
        d = self.d
        z = solve_triangular(ns, L, r.reshape(-1, d).T)
        return (z * z).sum(axis=0).reshape(r.shape[:-1])

    def log_prob(self, value):
        ns, xp, x, finite = self._finite_path(value)
        with np.errstate(invalid="ignore"):
            q = self._maha(self._L0, x[..., 0, :] - self.init_loc, ns)
            r = x[..., 1:, :] - x[..., :-1, :] @ self.transition_matrix.T - self._c
            q = q + self._maha(self._LQ, r, ns).sum(axis=-1)
            out = -0.5 * q + self._log_norm
        return _mask_out(out if ns.is_jax else np.asarray(out, dtype=float),
                         xp.all(finite, axis=(-2, -1)))


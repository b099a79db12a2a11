"""The continuous constraints and their bijections: real, positive, interval, simplex, positive definite.

See :mod:`mcem.constraints` for the overview and :mod:`mcem.constraints.boundary` for the edges.
The bijections take numpy or JAX arrays (one implementation, the namespace from
:func:`mcem._jax.namespace`); membership, defaults and edges are numpy only.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _jax
from . import boundary as B
from .base import Constraint, _Elementwise, as_float, as_shape, log_expit, sum_last
from .cholesky import LowerCholesky

__all__ = [
    "Real",
    "Positive",
    "Interval",
    "Simplex",
    "PositiveDefinite",
    "real",
    "positive",
    "unit_interval",
    "interval",
    "simplex",
    "positive_definite",
]


class Real(_Elementwise):
    """The real line."""

    is_identity = True

    def forward(self, u):
        return as_float(_jax.namespace(u), u)

    def inverse(self, x):
        return as_float(_jax.namespace(x), x)

    def elementwise_log_abs_det_jacobian(self, u):
        ns = _jax.namespace(u)
        return ns.np.zeros_like(as_float(ns, u))

    def log_density_grad(self, u, grad_x):
        return as_float(_jax.namespace(grad_x), grad_x)

    def contains(self, x):
        return np.isfinite(x)

    def default(self):
        return np.zeros(self.shape)

    def __repr__(self):
        return f"real(shape={self.shape})" if self.shape else "real"


class Positive(_Elementwise):
    """Positive reals, x = exp(u)."""

    def forward(self, u):
        ns = _jax.namespace(u)
        return ns.np.exp(as_float(ns, u))

    def inverse(self, x):
        ns = _jax.namespace(x)
        with np.errstate(divide="ignore"):
            return ns.np.log(as_float(ns, x))

    def elementwise_log_abs_det_jacobian(self, u):
        ns = _jax.namespace(u)
        return as_float(ns, u) if ns.is_jax else np.array(u, dtype=float)  # numpy: a copy

    def log_density_grad(self, u, grad_x):
        # d/du [log p(exp u) + u] = grad_x * exp(u) + 1
        ns = _jax.namespace(u, grad_x)
        return grad_x * ns.np.exp(as_float(ns, u)) + 1.0

    def contains(self, x):
        return np.isfinite(x) & (x > 0)

    def default(self):
        return np.ones(self.shape)

    #: Relative and absolute edge tolerances (see the module docstring).
    edge_rtol = 1e-8
    edge_atol = 1e-12

    def edge(self, x) -> list:
        """Values at (or below) zero: at most ``edge_rtol`` times the largest value at the same
        position along the first axis, or at most ``edge_atol``."""
        return B.positive_edge(np.asarray(x, dtype=float), self.edge_rtol, self.edge_atol)

    def __repr__(self):
        return f"positive(shape={self.shape})" if self.shape else "positive"


class Interval(_Elementwise):
    """The open interval (low, high), x = low + (high - low) * logistic(u)."""

    def __init__(self, low, high, shape=()):
        low, high = float(low), float(high)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(
                f"interval(low, high) needs finite low < high, got low={low!r}, high={high!r}"
            )
        self.low, self.high = low, high
        super().__init__(shape)

    def forward(self, u):
        ns = _jax.namespace(u)
        return self.low + (self.high - self.low) * ns.special.expit(as_float(ns, u))

    def inverse(self, x):
        ns = _jax.namespace(x)
        p = (as_float(ns, x) - self.low) / (self.high - self.low)
        with np.errstate(divide="ignore"):
            return ns.np.log(p) - ns.np.log1p(-p)

    def elementwise_log_abs_det_jacobian(self, u):
        ns = _jax.namespace(u)
        u = as_float(ns, u)
        return np.log(self.high - self.low) + log_expit(ns, u) + log_expit(ns, -u)

    def log_density_grad(self, u, grad_x):
        ns = _jax.namespace(u, grad_x)
        s = ns.special.expit(as_float(ns, u))
        return grad_x * (self.high - self.low) * s * (1.0 - s) + (1.0 - 2.0 * s)

    def contains(self, x):
        return (x > self.low) & (x < self.high)

    def default(self):
        return np.full(self.shape, 0.5 * (self.low + self.high))

    #: Distance to an end, relative to the width, that counts as the edge.
    edge_rtol = 1e-10

    def edge(self, x) -> list:
        """Values within ``edge_rtol * (high - low)`` of an end (or outside the interval)."""
        return B.interval_edge(np.asarray(x, dtype=float), self.low, self.high, self.edge_rtol)

    def _key(self):
        return (self.shape, self.low, self.high)

    def __repr__(self):
        s = f", shape={self.shape}" if self.shape else ""
        return f"interval({self.low!r}, {self.high!r}{s})"


class Simplex(Constraint):
    """Probability vectors of length K (last axis), with K - 1 additive log-ratio coordinates.

    x = softmax([u, 0]); the log-Jacobian of u -> x[:-1] is sum_k log x_k over all K entries.
    """

    def __init__(self, K, batch=()):
        if not isinstance(K, numbers.Integral) or K < 1:
            raise ValueError(f"simplex(K) needs an int K >= 1, got {K!r}")
        self.K = int(K)
        self.batch = as_shape(batch, "batch")
        self.shape = self.batch + (self.K,)

    @property
    def unconstrained_shape(self):
        return self.batch + (self.K - 1,)

    @staticmethod
    def _log_ratios(ns, u):
        """``[u, 0]`` along the last axis and its running maximum (for a stable softmax)."""
        z = ns.np.concatenate([u, ns.np.zeros(u.shape[:-1] + (1,), dtype=u.dtype)], axis=-1)
        return z, z.max(axis=-1, keepdims=True)

    def forward(self, u):
        ns = _jax.namespace(u)
        z, m = self._log_ratios(ns, as_float(ns, u))
        e = ns.np.exp(z - m)
        return e / e.sum(axis=-1, keepdims=True)

    def inverse(self, x):
        ns = _jax.namespace(x)
        with np.errstate(divide="ignore"):
            lx = ns.np.log(as_float(ns, x))
        return lx[..., :-1] - lx[..., -1:]

    def log_abs_det_jacobian(self, u):
        ns = _jax.namespace(u)
        z, m = self._log_ratios(ns, as_float(ns, u))
        lse = m + ns.np.log(ns.np.exp(z - m).sum(axis=-1, keepdims=True))
        return sum_last(z - lse, len(self.shape))

    def contains(self, x):
        ok = np.all(np.isfinite(x) & (x >= 0), axis=-1) & (
            np.abs(np.sum(x, axis=-1) - 1.0) < 1e-8 * max(self.K, 1)
        )
        return ok

    def check(self, x) -> bool:
        """:meth:`contains` of every element, without the per-element mask."""
        x = np.asarray(x, dtype=float)
        return bool(np.isfinite(x).all() and (x >= 0).all()
                    and (np.abs(x.sum(axis=-1) - 1.0) < 1e-8 * max(self.K, 1)).all())

    def default(self):
        return np.full(self.shape, 1.0 / self.K)

    #: A weight at most this is at the edge (an empty component).
    edge_atol = 1e-10

    def edge(self, x) -> list:
        """Weights at most ``edge_atol`` (index: batch index and the weight's position)."""
        return B.simplex_edge(np.asarray(x, dtype=float), self.edge_atol)

    def _key(self):
        return (self.K, self.batch)

    def __repr__(self):
        b = f", batch={self.batch}" if self.batch else ""
        return f"simplex({self.K}{b})"


class PositiveDefinite(Constraint):
    """Symmetric positive-definite d x d matrices (last two axes).

    Unconstrained coordinates: the d(d+1)/2 entries of a lower-triangular factor L (row-major,
    ``np.tril_indices``) with log-transformed diagonal; the matrix is L L^T.
    """

    def __init__(self, d, batch=()):
        if not isinstance(d, numbers.Integral) or d < 1:
            raise ValueError(f"positive_definite(d) needs an int d >= 1, got {d!r}")
        self.d = int(d)
        self.batch = as_shape(batch, "batch")
        self.shape = self.batch + (self.d, self.d)
        # the coordinates are those of the Cholesky factor L (lower_cholesky)
        self._chol = LowerCholesky(self.d, self.batch)
        self._rows, self._cols, self._diag_at = self._chol._rows, self._chol._cols, self._chol._diag_at
        self._diag = self._chol._diag

    @property
    def unconstrained_shape(self):
        return self._chol.unconstrained_shape

    def _cholesky_from(self, u):
        return self._chol.forward(u)

    def forward(self, u):
        ns = _jax.namespace(u)
        L = self._cholesky_from(u)
        return L @ ns.np.swapaxes(L, -1, -2)

    def inverse(self, x):
        ns = _jax.namespace(x)
        return self._chol.inverse(ns.np.linalg.cholesky(as_float(ns, x)))

    def log_abs_det_jacobian(self, u):
        u = as_float(_jax.namespace(u), u)
        # Sigma = L L^T has Jacobian 2^d prod_i L_ii^(d - i) (i = 0..d-1) over the lower
        # triangle of L; L_ii = exp(u_ii) adds one more log L_ii = u_ii.
        i = self._rows[self._diag]  # 0-based row index of each diagonal entry
        logdiag = u[..., self._diag_at]
        per = self.d * np.log(2.0) + (logdiag * (self.d - i + 1)).sum(axis=-1)
        return sum_last(per, len(self.batch))

    def contains(self, x):
        x = np.asarray(x, dtype=float)
        finite = np.all(np.isfinite(x), axis=(-1, -2))
        sym = np.all(
            np.abs(x - np.swapaxes(x, -1, -2)) <= 1e-8 * (1.0 + np.abs(x)), axis=(-1, -2)
        )
        safe = np.where((finite & sym)[..., None, None], x, np.eye(self.d))
        eig = np.linalg.eigvalsh(safe)
        return finite & sym & (eig[..., 0] > 0)

    def check(self, x) -> bool:
        """True when every matrix is finite, symmetric and positive definite: a Cholesky
        factorisation of the batch (one call, where :meth:`contains` takes the eigenvalues of
        each matrix), with :meth:`contains` deciding only where it fails."""
        x = np.asarray(x, dtype=float)
        if not np.isfinite(x).all():
            return False
        if not (np.abs(x - np.swapaxes(x, -1, -2)) <= 1e-8 * (1.0 + np.abs(x))).all():
            return False
        try:
            np.linalg.cholesky(x)
        except np.linalg.LinAlgError:
            return bool(np.all(self.contains(x)))
        return True

    def default(self):
        return np.broadcast_to(np.eye(self.d), self.shape).copy()

    _event_ndim = 2
    #: Largest condition number inside the set; smallest eigenvalue relative to the variance of
    #: the other matrices of the batch along the same direction; absolute floor.
    edge_cond = 1e12
    edge_rtol = 1e-8
    edge_atol = 1e-12

    def edge(self, x) -> list:
        """Matrices (index: batch index) with a condition number above ``edge_cond``, a smallest
        eigenvalue at most ``edge_rtol`` times the variance of the other matrices of the batch
        along its direction, or at most ``edge_atol`` (or not positive definite)."""
        return B.positive_definite_edge(np.asarray(x, dtype=float), self.edge_cond, self.edge_rtol, self.edge_atol)

    def _key(self):
        return (self.d, self.batch)

    def __repr__(self):
        b = f", batch={self.batch}" if self.batch else ""
        return f"positive_definite({self.d}{b})"


real = Real()
positive = Positive()
unit_interval = Interval(0.0, 1.0)


def interval(low, high, shape=()):
    """The open interval (low, high), elementwise."""
    return Interval(low, high, shape)


def simplex(K, batch=()):
    """Probability vectors of length K; ``batch`` stacks independent simplices in front."""
    return Simplex(K, batch)


def positive_definite(d, batch=()):
    """Symmetric positive-definite d x d matrices; ``batch`` stacks them in front."""
    return PositiveDefinite(d, batch)

"""The continuous constraints and their bijections: real, positive, interval, simplex, positive definite.

See :mod:`mcem.constraints` for the overview and :mod:`mcem.constraints.boundary` for the edges.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import expit, log_expit

from . import boundary as B
from .base import Constraint, _Elementwise, as_shape

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
        return np.asarray(u, dtype=float)

    def inverse(self, x):
        return np.asarray(x, dtype=float)

    def elementwise_log_abs_det_jacobian(self, u):
        return np.zeros_like(np.asarray(u, dtype=float))

    def log_density_grad(self, u, grad_x):
        return np.asarray(grad_x, dtype=float)

    def contains(self, x):
        return np.isfinite(x)

    def default(self):
        return np.zeros(self.shape)

    def __repr__(self):
        return f"real(shape={self.shape})" if self.shape else "real"


class Positive(_Elementwise):
    """Positive reals, x = exp(u)."""

    def forward(self, u):
        return np.exp(np.asarray(u, dtype=float))

    def inverse(self, x):
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(x, dtype=float))

    def elementwise_log_abs_det_jacobian(self, u):
        return np.array(u, dtype=float)

    def log_density_grad(self, u, grad_x):
        # d/du [log p(exp u) + u] = grad_x * exp(u) + 1
        return grad_x * np.exp(np.asarray(u, dtype=float)) + 1.0

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
        return self.low + (self.high - self.low) * expit(np.asarray(u, dtype=float))

    def inverse(self, x):
        p = (np.asarray(x, dtype=float) - self.low) / (self.high - self.low)
        with np.errstate(divide="ignore"):
            return np.log(p) - np.log1p(-p)

    def elementwise_log_abs_det_jacobian(self, u):
        u = np.asarray(u, dtype=float)
        return np.log(self.high - self.low) + log_expit(u) + log_expit(-u)

    def log_density_grad(self, u, grad_x):
        s = expit(np.asarray(u, dtype=float))
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

    def forward(self, u):
        u = np.asarray(u, dtype=float)
        z = np.concatenate([u, np.zeros(u.shape[:-1] + (1,))], axis=-1)
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def inverse(self, x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore"):
            lx = np.log(x)
        return lx[..., :-1] - lx[..., -1:]

    def log_abs_det_jacobian(self, u):
        u = np.asarray(u, dtype=float)
        z = np.concatenate([u, np.zeros(u.shape[:-1] + (1,))], axis=-1)
        m = z.max(axis=-1, keepdims=True)
        lse = m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
        logx = z - lse
        return logx.sum(axis=tuple(range(u.ndim - len(self.shape), u.ndim)))

    def contains(self, x):
        ok = np.all(np.isfinite(x) & (x >= 0), axis=-1) & (
            np.abs(np.sum(x, axis=-1) - 1.0) < 1e-8 * max(self.K, 1)
        )
        return ok

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
        self._rows, self._cols = np.tril_indices(self.d)
        self._diag = self._rows == self._cols

    @property
    def unconstrained_shape(self):
        return self.batch + (self.d * (self.d + 1) // 2,)

    def _cholesky_from(self, u):
        u = np.asarray(u, dtype=float)
        vals = np.where(self._diag, np.exp(u), u)
        L = np.zeros(u.shape[:-1] + (self.d, self.d))
        L[..., self._rows, self._cols] = vals
        return L

    def forward(self, u):
        L = self._cholesky_from(u)
        return L @ np.swapaxes(L, -1, -2)

    def inverse(self, x):
        x = np.asarray(x, dtype=float)
        L = np.linalg.cholesky(x)
        vals = L[..., self._rows, self._cols]
        return np.where(self._diag, np.log(np.where(self._diag, vals, 1.0)), vals)

    def log_abs_det_jacobian(self, u):
        u = np.asarray(u, dtype=float)
        # Sigma = L L^T has Jacobian 2^d prod_i L_ii^(d - i) (i = 0..d-1) over the lower
        # triangle of L; L_ii = exp(u_ii) adds one more log L_ii = u_ii.
        i = self._rows[self._diag]  # 0-based row index of each diagonal entry
        logdiag = u[..., self._diag]
        per = self.d * np.log(2.0) + (logdiag * (self.d - i + 1)).sum(axis=-1)
        nb = len(self.batch)
        return per.sum(axis=tuple(range(per.ndim - nb, per.ndim))) if nb else per

    def contains(self, x):
        x = np.asarray(x, dtype=float)
        finite = np.all(np.isfinite(x), axis=(-1, -2))
        sym = np.all(
            np.abs(x - np.swapaxes(x, -1, -2)) <= 1e-8 * (1.0 + np.abs(x)), axis=(-1, -2)
        )
        safe = np.where((finite & sym)[..., None, None], x, np.eye(self.d))
        eig = np.linalg.eigvalsh(safe)
        return finite & sym & (eig[..., 0] > 0)

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

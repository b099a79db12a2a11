"""Cholesky factors: of a covariance matrix (``lower_cholesky``), of a correlation matrix
(``corr_cholesky``).

Both act on the last two axes, stack independent factors along ``batch`` axes in front, and map
their unconstrained coordinates row-major over the lower triangle (``np.tril_indices``). The
bijections take numpy or JAX arrays (one implementation, the namespace from
:func:`mcem._jax.namespace`); membership, defaults and edges are numpy only. See
:mod:`mcem.constraints` for the overview and :mod:`mcem.constraints.boundary` for the edges.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _jax
from . import boundary as B
from .base import Constraint, as_float, as_shape, sum_last, tril_fill

__all__ = ["LowerCholesky", "CorrCholesky", "lower_cholesky", "corr_cholesky"]


class _Triangular(Constraint):
    """Lower-triangular d x d matrices with a positive diagonal (last two axes)."""

    _event_ndim = 2
    _name = ""

    def __init__(self, d, batch=()):
        if not isinstance(d, numbers.Integral) or isinstance(d, bool) or d < 1:
            raise ValueError(f"{self._name}(d) needs an int d >= 1, got {d!r}")
        self.d = int(d)
        self.batch = as_shape(batch, "batch")
        self.shape = self.batch + (self.d, self.d)

    def _lower_triangular(self, x):
        """Per matrix: finite, zeros above the diagonal, a positive diagonal."""
        finite = np.all(np.isfinite(x), axis=(-1, -2))
        upper = np.all(np.triu(x, 1) == 0, axis=(-1, -2))
        diag = np.all(np.diagonal(x, axis1=-2, axis2=-1) > 0, axis=-1)
        return finite & upper & diag

    def default(self):
        return np.broadcast_to(np.eye(self.d), self.shape).copy()

    def _key(self):
        return (self.d, self.batch)

    def __repr__(self):
        b = f", batch={self.batch}" if self.batch else ""
        return f"{self._name}({self.d}{b})"


class LowerCholesky(_Triangular):
    """Lower-triangular d x d matrices with a positive diagonal: Cholesky factors of covariances.

    Unconstrained coordinates: the d(d+1)/2 lower-triangular entries (row-major,
    ``np.tril_indices``), the strictly lower ones as they are and the diagonal through ``exp``.
    """

    _name = "lower_cholesky"

    def __init__(self, d, batch=()):
        super().__init__(d, batch)
        self._rows, self._cols = np.tril_indices(self.d)
        self._diag = self._rows == self._cols
        self._diag_at = np.flatnonzero(self._diag)  # positions of the diagonal in u

    @property
    def unconstrained_shape(self):
        return self.batch + (self.d * (self.d + 1) // 2,)

    def forward(self, u):
        ns = _jax.namespace(u)
        u = as_float(ns, u)
        return tril_fill(ns, ns.np.where(self._diag, ns.np.exp(u), u), self._rows, self._cols, self.d)

    def inverse(self, x):
        ns = _jax.namespace(x)
        vals = as_float(ns, x)[..., self._rows, self._cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            return ns.np.where(self._diag, ns.np.log(ns.np.where(self._diag, vals, 1.0)), vals)

    def log_abs_det_jacobian(self, u):
        # onto the lower triangle: the Jacobian is diagonal, exp(u_ii) on the diagonal, 1 elsewhere
        u = as_float(_jax.namespace(u), u)
        return sum_last(u[..., self._diag_at].sum(axis=-1), len(self.batch))

    def contains(self, x):
        return self._lower_triangular(np.asarray(x, dtype=float))

    #: The edge of the covariance L L^T, as for ``positive_definite`` (see there).
    edge_cond = 1e12
    edge_rtol = 1e-8
    edge_atol = 1e-12

    def edge(self, x) -> list:
        """Factors (index: batch index) whose covariance ``L L^T`` is at the edge of the positive
        definite matrices: condition number above ``edge_cond``, a smallest eigenvalue at most
        ``edge_rtol`` times the variance of the other covariances of the batch along its
        direction, or at most ``edge_atol`` (a diagonal entry of L at 0 included)."""
        return B.lower_cholesky_edge(np.asarray(x, dtype=float), self.edge_cond, self.edge_rtol, self.edge_atol)


class CorrCholesky(_Triangular):
    """Cholesky factors L of d x d correlation matrices: lower-triangular, a positive diagonal,
    every row of unit norm (so L L^T has a unit diagonal).

    Unconstrained coordinates: d(d-1)/2 reals u (row-major over the strictly lower triangle),
    mapped by ``tanh`` to canonical partial correlations z in (-1, 1) and by stick-breaking to
    the rows of L: ``L_ij = z_ij prod_{k<j} sqrt(1 - z_ik^2)`` below the diagonal and
    ``L_ii = prod_{k<i} sqrt(1 - z_ik^2)``. The log-Jacobian is that of u onto the strictly
    lower entries of L (the free coordinates; the diagonal follows from the unit norms):
    ``sum_{i>k} (1 + (i - 1 - k) / 2) log(1 - z_ik^2)``.
    """

    _name = "corr_cholesky"

    def __init__(self, d, batch=()):
        super().__init__(d, batch)
        self._rows, self._cols = np.tril_indices(self.d, -1)
        # the weight of log(1 - z_ik^2): 1 from L_ik itself, 1/2 from each L_ij with k < j < i
        self._weight = 1.0 + 0.5 * (self._rows - 1 - self._cols)
        self._eye = np.eye(self.d)

    @property
    def unconstrained_shape(self):
        return self.batch + (self.d * (self.d - 1) // 2,)

    @staticmethod
    def _log1m_tanh2(ns, u):
        """``log(1 - tanh(u)^2) = 2 (log 2 - log(e^u + e^-u))``, finite and accurate for large
        |u| (where ``1 - tanh(u)^2`` rounds to 0)."""
        return 2.0 * (np.log(2.0) - ns.np.logaddexp(u, -u))

    def forward(self, u):
        ns = _jax.namespace(u)
        u = as_float(ns, u)
        z = tril_fill(ns, ns.np.tanh(u), self._rows, self._cols, self.d)
        half = tril_fill(ns, 0.5 * self._log1m_tanh2(ns, u), self._rows, self._cols, self.d)
        # log prod_{k<j} sqrt(1 - z_ik^2): an exclusive cumulative sum along each row
        csum = ns.np.cumsum(half, axis=-1)
        before = ns.np.concatenate([ns.np.zeros_like(csum[..., :1]), csum[..., :-1]], axis=-1)
        return (z + self._eye) * ns.np.exp(before)

    def inverse(self, x):
        ns = _jax.namespace(x)
        x = as_float(ns, x)
        # 1 - sum_{k<j} L_ik^2 = sum_{k>=j} L_ik^2 on a unit-norm row (no cancellation)
        tail = ns.np.flip(ns.np.cumsum(ns.np.flip(x * x, axis=-1), axis=-1), axis=-1)
        vals = x[..., self._rows, self._cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            return ns.np.arctanh(vals / ns.np.sqrt(tail[..., self._rows, self._cols]))

    def log_abs_det_jacobian(self, u):
        ns = _jax.namespace(u)
        u = as_float(ns, u)
        return sum_last((self._weight * self._log1m_tanh2(ns, u)).sum(axis=-1), len(self.batch))

    #: Tolerance on the norm of each row.
    norm_tol = 1e-8

    def contains(self, x):
        x = np.asarray(x, dtype=float)
        with np.errstate(invalid="ignore", over="ignore"):
            norms = np.sqrt(np.sum(x * x, axis=-1))
        unit = np.all(np.abs(norms - 1.0) <= self.norm_tol, axis=-1)
        return self._lower_triangular(x) & unit

    #: A diagonal entry of L at most this is at the edge (a correlation of +-1).
    edge_atol = 1e-6

    def edge(self, x) -> list:
        """Rows (index: batch index and row) whose diagonal entry is at most ``edge_atol``: the
        variable is (nearly) a linear combination of the earlier ones, a correlation of +-1.
        Non-finite values are reported per matrix (index: batch index)."""
        return B.corr_cholesky_edge(np.asarray(x, dtype=float), self.edge_atol)

    def at_edge(self, x) -> np.ndarray:
        """Boolean mask of :meth:`edge`, one entry per row: shape of ``x`` less its last axis."""
        x = np.asarray(x, dtype=float)
        return B.edge_mask(self.edge(x), x.shape[:-1])


def lower_cholesky(d, batch=()):
    """Lower-triangular d x d matrices with a positive diagonal; ``batch`` stacks them in front."""
    return LowerCholesky(d, batch)


def corr_cholesky(d, batch=()):
    """Cholesky factors of d x d correlation matrices; ``batch`` stacks them in front."""
    return CorrCholesky(d, batch)

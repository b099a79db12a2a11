"""Edges of the constraint sets: which elements of a value sit at (or beyond) the boundary.

A fitted value can sit at the edge of its set, where the likelihood theory behind standard
errors fails (a mixture component collapsed onto a point, an empty component). The methods
:meth:`mcem.constraints.Constraint.edge` and ``at_edge`` use the functions here; each returns
``(index, reason)`` pairs, ``index`` a tuple into ``x`` (into its batch axes for matrix-valued
constraints) and ``reason`` a short text with the numbers. The criteria, chosen so that
ordinary fits are never flagged:

* ``positive``: a value at most ``1e-8`` times the largest value at the same position along
  the first axis (the same feature's variance in the other mixture components, or the other
  elements of a vector), or at most ``1e-12`` (a lone scale that has collapsed). A collapsed
  Gaussian component's variance is about ``1e-14`` times the data's.
* ``positive_definite``: a condition number above ``1e12`` (smallest eigenvalue at most
  ``1e-12`` times the largest: comparisons across directions may mix units, hence the wide
  margin), or a smallest eigenvalue at most ``1e-8`` times the variance of the other matrices
  of the batch along the same direction (same units), or at most ``1e-12``.
* ``lower_cholesky``: the criteria of ``positive_definite`` applied to the covariance ``L L^T``.
* ``corr_cholesky``: a row whose diagonal entry is at most ``1e-6`` (the variable is a linear
  combination of the earlier ones up to ``1e-12`` of its variance: a correlation of +-1); the
  index is the batch index and the row.
* ``simplex``: a weight at most ``1e-10``.
* ``interval(a, b)``: a value within ``1e-10 (b - a)`` of an end.
* ``real``: no edge. Non-finite values are reported by every constraint.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "nonfinite",
    "edge_mask",
    "positive_edge",
    "interval_edge",
    "simplex_edge",
    "positive_definite_edge",
    "lower_cholesky_edge",
    "corr_cholesky_edge",
]


def nonfinite(x, event_ndim=0) -> list:
    """``(index, "not finite (nan)")`` for every element (event of ``event_ndim`` trailing axes)
    of ``x`` holding a NaN or an infinity."""
    events = x.reshape(x.shape[: x.ndim - event_ndim] + (-1,)) if event_ndim else x[..., None]
    out = []
    for idx in np.argwhere(~np.all(np.isfinite(events), axis=-1)):
        i = tuple(int(k) for k in idx)
        v = events[i]
        out.append((i, f"not finite ({v[~np.isfinite(v)][0]})"))
    return out


def edge_mask(edges, shape) -> np.ndarray:
    """Boolean array of ``shape``, True at the indices of ``edges`` (``(index, reason)`` pairs)."""
    mask = np.zeros(shape, dtype=bool)
    for idx, _ in edges:
        mask[idx] = True
    return mask


def positive_edge(x, rtol, atol) -> list:
    """Positive values at (or below) zero: at most ``rtol`` times the largest value at the same
    position along the first axis, or at most ``atol``."""
    out = nonfinite(x)
    finite = np.isfinite(x)
    if x.ndim:
        ref = np.max(np.where(finite, x, -np.inf), axis=0, keepdims=True)
    else:
        ref = x
    ref = np.broadcast_to(ref, x.shape)
    rel = finite & (x <= rtol * ref)
    tiny = finite & (x <= atol)
    for idx in np.argwhere(rel | tiny):
        i = tuple(int(k) for k in idx)
        v, r = float(x[i]), float(ref[i])
        if v <= 0:
            why = f"{v:.3g} (not positive)"
        elif rel[i]:
            what = ("the largest element" if x.ndim == 1
                    else "the largest value at the same position along the first axis")
            why = f"{v:.3g}, {v / r:.2g} times {what} ({r:.3g})"
        else:
            why = f"{v:.3g}, below the absolute floor {atol:g}"
        out.append((i, why))
    return out


def interval_edge(x, low, high, rtol) -> list:
    """Values within ``rtol * (high - low)`` of an end of ``(low, high)`` (or outside it)."""
    out = nonfinite(x)
    width = high - low
    with np.errstate(invalid="ignore"):
        lo, hi = x - low, high - x
    near = np.isfinite(x) & (np.minimum(lo, hi) <= rtol * width)
    for idx in np.argwhere(near):
        i = tuple(int(k) for k in idx)
        end, dist = ("lower", lo[i]) if lo[i] <= hi[i] else ("upper", hi[i])
        at = low if end == "lower" else high
        out.append((i, f"{float(x[i])!r}, {float(dist):.2g} from the {end} end {at:g} (width {width:g})"))
    return out


def simplex_edge(x, atol) -> list:
    """Weights at most ``atol`` (index: batch index and the weight's position)."""
    out = nonfinite(x)
    zero = np.isfinite(x) & (x <= atol)
    for idx in np.argwhere(zero):
        i = tuple(int(k) for k in idx)
        out.append((i, f"weight {float(x[i]):.3g} (at 0)"))
    return out


def positive_definite_edge(x, cond, rtol, atol) -> list:
    """Matrices (last two axes; index: batch index) with a condition number above ``cond``, a
    smallest eigenvalue at most ``rtol`` times the variance of the other matrices of the batch
    along its direction, or at most ``atol`` (or not positive definite)."""
    out = nonfinite(x, 2)
    bshape = x.shape[:-2]
    d = x.shape[-1]
    flat = x.reshape((-1, d, d))
    finite = np.all(np.isfinite(flat), axis=(-1, -2))
    sym = np.where(finite[:, None, None], 0.5 * (flat + np.swapaxes(flat, -1, -2)), np.eye(d))
    w, V = np.linalg.eigh(sym)
    lmin, lmax, vmin = w[:, 0], w[:, -1], V[:, :, 0]
    # variance of every matrix j along the smallest direction of matrix b: (b, j)
    along = np.einsum("bi,jik,bk->bj", vmin, sym, vmin)
    along = np.where(finite[None, :], along, -np.inf)
    ref = along.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(lmin > 0, lmax / lmin, np.inf)
    bad_cond = kappa > cond
    bad_rel = (flat.shape[0] > 1) & (lmin <= rtol * ref)
    bad_abs = lmin <= atol
    for b in np.flatnonzero(finite & (bad_cond | bad_rel | bad_abs)):
        i = tuple(int(k) for k in np.unravel_index(b, bshape)) if bshape else ()
        if lmin[b] <= 0:
            why = f"smallest eigenvalue {lmin[b]:.3g} (not positive definite)"
        else:
            why = f"smallest eigenvalue {lmin[b]:.3g} (condition number {kappa[b]:.2g})"
        if bad_rel[b] and ref[b] > 0:
            why += f"; the batch has variance up to {ref[b]:.3g} along that direction"
        out.append((i, why))
    return out


def lower_cholesky_edge(x, cond, rtol, atol) -> list:
    """Cholesky factors (last two axes; index: batch index) whose covariance ``L L^T`` is at
    the edge by the criteria of :func:`positive_definite_edge`."""
    out = nonfinite(x, 2)
    finite = np.all(np.isfinite(x), axis=(-1, -2))
    with np.errstate(over="ignore", invalid="ignore"):
        cov = np.where(finite[..., None, None], x @ np.swapaxes(x, -1, -2), np.nan)
    bad = {i for i, _ in out}
    out += [(i, f"covariance L L^T: {why}") for i, why in positive_definite_edge(cov, cond, rtol, atol)
            if i not in bad]
    return out


def corr_cholesky_edge(x, atol) -> list:
    """Rows of correlation Cholesky factors (index: batch index and row) whose diagonal entry
    is at most ``atol``; non-finite matrices are reported by their batch index."""
    out = nonfinite(x, 2)
    finite = np.all(np.isfinite(x), axis=(-1, -2))
    diag = np.diagonal(x, axis1=-2, axis2=-1)
    for idx in np.argwhere(finite[..., None] & (diag <= atol)):
        i = tuple(int(k) for k in idx)
        v = float(diag[i])
        if v <= 0:
            why = f"diagonal {v:.3g} (not positive)"
        else:
            why = (f"diagonal {v:.3g}: variable {i[-1]} is almost a linear combination of the "
                   "variables before it (a correlation of +-1)")
        out.append((i, why))
    return out

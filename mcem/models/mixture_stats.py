"""The Gaussian mixture's arithmetic over the data: log densities, responsibilities, statistics.

The centred data ``Xc`` (N, d) are expanded once into a feature matrix ``F = [phi(Xc), Xc, 1]``
(N, p), where ``phi`` holds the products ``x_i x_j`` (i <= j) for "full" and "tied"
covariances, the squares ``x_i^2`` for "diag" and the one sum of squares for "spherical". With
``A_k`` the precision of component k and ``m_k`` its centred mean,

    log w_k + log N(x | mu_k, Sigma_k) = -1/2 (x' A_k x - 2 x' A_k m_k + m_k' A_k m_k)
                                          + log|A_k|^(1/2) - d/2 log(2 pi) + log w_k

is linear in ``F``, so the log densities of every component are one matrix product
``W F'`` (K, N), and the weighted sufficient statistics of responsibilities ``R`` (K, N) are
another, ``R F`` (K, p): the counts, first and second moments in one pass.

The expanded quadratic loses digits when a component is tight compared with its distance from
the data (``x' A x`` and ``2 x' A m`` are then large and nearly cancel). Its rounding error is
bounded per component by ``(p + 2d + 2) eps / 2 (r ||P_k||_F + |P_k' m_k|)^2`` (``r`` the
largest norm of a centred point, ``P_k P_k' = A_k``); a component whose bound exceeds
:data:`QUAD_TOL` is computed directly, ``|P_k'(x - m_k)|^2``, as is every component when the
feature matrix would be large (more than :data:`MAX_FEATURES` columns or :data:`MAX_BYTES`).

Arrays of log densities and responsibilities are laid out (K, N): component by component, so
that the reductions over components are elementwise passes over contiguous rows.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

__all__ = ["QUAD_TOL", "MAX_FEATURES", "MAX_BYTES"]

#: Largest bound on the rounding error of a log density computed from the feature matrix.
QUAD_TOL = 1e-7
#: Largest number of feature columns; more, and the log densities are computed directly.
MAX_FEATURES = 100
#: Largest feature matrix in bytes; larger, and the log densities are computed directly.
MAX_BYTES = 512 * 2**20
_LOG_2PI = np.log(2.0 * np.pi)
_EPS = np.finfo(float).eps


class _Features(NamedTuple):
    """The feature matrix of centred data and the largest norm of a centred point."""

    F: np.ndarray  # (N, p): [phi(Xc), Xc, 1], read-only
    radius: float  # max_n |Xc_n|


def _n_phi(d, covariance_type):
    """The number of second-moment columns of the feature matrix."""
    return {"full": d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": d, "spherical": 1}[covariance_type]


@functools.lru_cache(maxsize=32)
def _triu(d):
    """``np.triu_indices(d)``, kept (it costs about 0.1 ms, as much as an EM iteration's work on a
    few thousand samples); read-only."""
    iu, ju = np.triu_indices(d)
    iu.flags.writeable = False
    ju.flags.writeable = False
    return iu, ju


@functools.lru_cache(maxsize=32)
def _quad_signs(d):
    """-1/2 on the diagonal, -1 off it, for the entries of :func:`_triu`; read-only."""
    iu, ju = _triu(d)
    out = np.where(iu == ju, -0.5, -1.0)
    out.flags.writeable = False
    return out


def _build_features(Xc, covariance_type):
    """The :class:`_Features` of centred data ``Xc`` (N, d), or None when too large
    (more than :data:`MAX_FEATURES` columns or :data:`MAX_BYTES` bytes)."""
    N, d = Xc.shape
    q = _n_phi(d, covariance_type)
    p = q + d + 1
    if p > MAX_FEATURES or N * p * 8 > MAX_BYTES:
        return None
    F = np.empty((N, p))
    if covariance_type in ("full", "tied"):
        iu, ju = _triu(d)
        for c in range(q):  # one column at a time: no (N, q) temporaries
            np.multiply(Xc[:, iu[c]], Xc[:, ju[c]], out=F[:, c])
    elif covariance_type == "diag":
        np.square(Xc, out=F[:, :d])
    else:
        F[:, 0] = np.einsum("ij,ij->i", Xc, Xc)
    F[:, q:q + d] = Xc
    F[:, -1] = 1.0
    sq = F[:, 0] if covariance_type == "spherical" else np.einsum("ij,ij->i", Xc, Xc)
    radius = float(np.sqrt(sq.max()))
    F.flags.writeable = False
    return _Features(F, radius)


class _FeatureCache:
    """:func:`_build_features` of ``data["Xc"]``, built on first use and kept for that ``data``.

    Keyed by the identity of ``data``; a copy made by :mod:`pickle` starts empty and builds its
    own on first use.
    """

    def __init__(self):
        self._last = None

    def __call__(self, data):
        last = self._last
        if last is not None and last[0] is data:
            return last[1]
        value = _build_features(data["Xc"], data["covariance_type"])
        self._last = (data, value)
        return value

    def __getstate__(self):
        return {"built": False}  # the features are not pickled: rebuilt on first use

    def __setstate__(self, state):
        self._last = None

    def __repr__(self):
        return "_FeatureCache()"


def _component_terms(means_c, prec_chol, log_det, covariance_type):
    """Per component: P_k' m_k (K, d), ||P_k||_F^2 (K,), log|P_k| (K,); A_k (K, d, d) or its
    diagonal (K, d) or scalar (K,)."""
    K, d = means_c.shape
    if covariance_type in ("full", "tied"):  # batched matrix products: tiny arrays, few calls
        P = prec_chol if covariance_type == "full" else np.broadcast_to(prec_chol, (K, d, d))
        Pm = (means_c[:, None, :] @ P)[:, 0]
        A = P @ np.swapaxes(P, -1, -2)
        fro = (P * P).sum(axis=(1, 2))
        ld = np.asarray(log_det, dtype=float) if covariance_type == "full" else np.full(K, float(log_det))
    elif covariance_type == "diag":
        Pm = means_c * prec_chol
        A = prec_chol**2
        fro = A.sum(axis=1)
        ld = log_det.sum(axis=1)
    else:
        Pm = means_c * prec_chol[:, None]
        A = prec_chol**2
        fro = d * A
        ld = d * log_det
    return Pm, A, fro, ld


def _direct(Xc, means_c, prec_chol, covariance_type, k, XP=None):
    """|P_k'(x_n - m_k)|^2 for every sample: the quadratic form without cancellation."""
    if covariance_type in ("full", "tied"):
        P = prec_chol[k] if covariance_type == "full" else prec_chol
        y = (Xc @ P) if XP is None else XP.copy()
        y -= means_c[k] @ P
    elif covariance_type == "diag":
        y = Xc - means_c[k]
        y *= prec_chol[k]
    else:
        y = Xc - means_c[k]
        y *= prec_chol[k]
    return np.einsum("ij,ij->i", y, y)


def _log_densities(feats, Xc, weights, means_c, prec_chol, log_det, covariance_type):
    """log w_k + log N(x_n | mu_k, Sigma_k), laid out (K, N), and which components were computed
    directly (boolean, (K,)).

    Parameters
    ----------
    feats : _Features or None
        The features of ``Xc`` (:func:`_build_features`); None computes every component directly.
    Xc : array (N, d)
        The data centred at some shift.
    weights : array (K,)
    means_c : array (K, d)
        The component means minus that shift.
    prec_chol, log_det : arrays
        From :func:`mcem.models.mixture.precision_cholesky`.
    covariance_type : str
    """
    N, d = Xc.shape
    K = means_c.shape[0]
    Pm, A, fro, ld = _component_terms(means_c, prec_chol, log_det, covariance_type)
    pmp = (Pm * Pm).sum(axis=1)
    finite = weights > 0  # log 0 = -inf: a component of weight 0
    logw = np.log(weights) if finite.all() else np.log(np.where(finite, weights, 1.0))
    base = ld - 0.5 * d * _LOG_2PI + logw
    if feats is None:
        direct = np.ones(K, dtype=bool)
    else:
        p = feats.F.shape[1]
        bound = 0.5 * (p + 2 * d + 2) * _EPS * (feats.radius * np.sqrt(fro) + np.sqrt(pmp)) ** 2
        direct = ~(bound <= QUAD_TOL)  # a NaN bound goes the direct way too
    if direct.all():
        lp = np.empty((K, N))
    else:
        if covariance_type in ("full", "tied"):
            iu, ju = _triu(d)
            quad = A[:, iu, ju] * _quad_signs(d)
            Am = (prec_chol @ Pm[:, :, None])[:, :, 0]  # P_k (P_k' m_k); "tied": one P for all
        elif covariance_type == "diag":
            quad = -0.5 * A
            Am = Pm * prec_chol
        else:
            quad = -0.5 * A[:, None]
            Am = Pm * prec_chol[:, None]
        W = np.concatenate([quad, Am, (base - 0.5 * pmp)[:, None]], axis=1)  # (K, p)
        lp = W @ feats.F.T
    if direct.any():
        XP = Xc @ prec_chol if covariance_type == "tied" and direct.sum() > 1 else None
        for k in np.flatnonzero(direct):  # a loop over components, each over all samples
            np.multiply(_direct(Xc, means_c, prec_chol, covariance_type, k, XP), -0.5, out=lp[k])
            lp[k] += base[k]
    if not finite.all():
        lp[~finite] = -np.inf  # weight 0
    return lp, direct


#: Bytes of one block of samples (its log densities, responsibilities and features): the
#: scratch of the E step stays small, and the responsibilities are never stored whole.
_BLOCK_BYTES = 1 << 22


@functools.lru_cache(maxsize=64)
def _log_block(K):
    """How many values in [0, K] multiply to less than exp(600)."""
    return int(min(512, max(1, 600.0 // max(math.log(K), 1e-3))))


def _sum_log(s, K, zeros=False):
    """sum(log(s)) for s in [0, K] (in [1, K] unless ``zeros``): logs of products of blocks of
    values (one log per block)."""
    b = _log_block(K)
    n = s.size - s.size % b
    if zeros:
        with np.errstate(divide="ignore"):
            return _sum_log(s, K)
    total = float(np.log(s[:n].reshape(-1, b).prod(axis=1)).sum()) if n else 0.0
    return total + float(np.log(s[n:]).sum()) if n < s.size else total


def _lse_block(c, E, m, s):
    """The responsibilities of the block of log densities ``c`` (K, w) into ``E`` (K, w), and
    the block's log-likelihood; ``m`` and ``s`` (w,) are scratch."""
    K = c.shape[0]
    np.copyto(m, c[0])
    for k in range(1, K):  # elementwise passes over the block's rows
        np.maximum(m, c[k], out=m)
    empty = None
    if m.min() == -np.inf:  # every component -inf: responsibilities 0, log-likelihood -inf
        empty = m == -np.inf
        m[empty] = 0.0
    np.subtract(c, m, out=E)
    np.exp(E, out=E)
    np.copyto(s, E[0])
    for k in range(1, K):
        s += E[k]
    loglik = float(m.sum()) + _sum_log(s, K, zeros=empty is not None)
    if empty is not None:
        s[empty] = np.inf  # its responsibilities 0
    np.divide(1.0, s, out=s)
    E *= s
    return loglik


def _blocks(N, width):
    return ((start, min(N, start + width)) for start in range(0, N, width))


def _normalise(lp, resp=True):
    """The fused log-sum-exp over components of ``lp`` (K, N).

    Returns ``(R, loglik)``: the responsibilities ``R = exp(lp - logsumexp(lp, axis=0))``, a new
    (K, N) array (None with ``resp=False``), and ``loglik = sum_n logsumexp(lp[:, n])``. One
    exponential per entry, computed block by block of samples; a sample where every
    component is ``-inf`` gets responsibilities 0 and makes ``loglik`` ``-inf``.
    """
    K, N = lp.shape
    width = max(64, _BLOCK_BYTES // (16 * K))
    R = np.empty((K, N)) if resp else np.empty((K, min(N, width)))
    m, s = np.empty(min(N, width)), np.empty(min(N, width))
    loglik = 0.0
    for a, b in _blocks(N, width):
        w = b - a
        loglik += _lse_block(lp[:, a:b], R[:, a:b] if resp else R[:, :w], m[:w], s[:w])
    return (R if resp else None), loglik


def _estep(lp, feats, Xc, covariance_type):
    """The exact E step from the log densities ``lp`` (K, N): the sufficient statistics of the
    responsibilities (as :func:`_stats_from_resp`) and the log-likelihood. With the feature
    matrix, block by block of samples: the block's responsibilities, then their product with the
    block's features added to the statistics."""
    if feats is None:
        R, loglik = _normalise(lp)
        return _stats_from_resp(R, None, Xc, covariance_type), loglik
    K, N = lp.shape
    F = feats.F
    width = max(64, _BLOCK_BYTES // (8 * (2 * K + F.shape[1])))
    E, m, s = np.empty((K, min(N, width))), np.empty(min(N, width)), np.empty(min(N, width))
    S = np.zeros((K, F.shape[1]))
    loglik = 0.0
    for a, b in _blocks(N, width):
        w = b - a
        loglik += _lse_block(lp[:, a:b], E[:, :w], m[:w], s[:w])
        S += E[:, :w] @ F[a:b]
    return _unpack(S, Xc.shape[1], covariance_type), loglik


def _unpack(S, d, covariance_type):
    """S0, S1, S2 from the product R F (K, p)."""
    q = _n_phi(d, covariance_type)
    S0 = S[:, -1].copy()
    S1 = S[:, q:q + d].copy()
    if covariance_type in ("full", "tied"):
        iu, ju = _triu(d)
        S2 = np.empty((S.shape[0], d, d))
        S2[:, iu, ju] = S[:, :q]
        S2[:, ju, iu] = S[:, :q]
        if covariance_type == "tied":
            S2 = S2.sum(axis=0)
    elif covariance_type == "diag":
        S2 = S[:, :d].copy()
    else:
        S2 = S[:, 0].copy()
    return {"S0": S0, "S1": S1, "S2": S2}


def _stats_from_resp(R, feats, Xc, covariance_type):
    """Weighted sufficient statistics of the centred data given responsibilities ``R`` (K, N).

    ``S0`` (K,) the weights' sums, ``S1`` (K, d) the weighted sums of ``Xc`` and ``S2`` the
    weighted second moments: (K, d, d) "full", (d, d) "tied" (summed over components), (K, d)
    "diag" (squares), (K,) "spherical" (sums of squares). One product ``R F`` when ``feats``
    is given, else a loop over components.
    """
    if feats is not None:
        return _unpack(R @ feats.F, Xc.shape[1], covariance_type)
    S0 = R.sum(axis=1)
    S1 = R @ Xc
    if covariance_type == "full":
        S2 = np.stack([(R[k][:, None] * Xc).T @ Xc for k in range(R.shape[0])])
    elif covariance_type == "tied":
        S2 = (R.sum(axis=0)[:, None] * Xc).T @ Xc
    elif covariance_type == "diag":
        S2 = R @ (Xc**2)
    else:
        S2 = R @ np.einsum("ij,ij->i", Xc, Xc)
    return {"S0": S0, "S1": S1, "S2": S2}


def _pick(lp, z, rows=None):
    """``lp[z[..., n], n]`` for labels ``z`` (..., N) and log densities ``lp`` (K, N); ``rows``
    is ``np.arange(N)`` when the caller has it.

    When ``z`` holds one state per leading index across all units (a broadcast array with a
    zero stride on the unit axis, as the enumeration of states), the answer is whole rows of
    ``lp``: returned as a read-only broadcast view when they are the rows 0..K-1 in order, else
    built from the rows once and broadcast.
    """
    z = np.asarray(z)
    K, N = lp.shape
    if z.ndim >= 1 and z.shape[-1] == N and z.strides[-1] == 0 and z.size:
        lead = z[..., 0]
        small = lead[tuple(slice(0, 1) if s == 0 else slice(None) for s in lead.strides)]
        if small.size == K and np.array_equal(small.ravel(), np.arange(K)):
            whole = lp.reshape(small.shape + (N,))
        else:
            whole = lp[small]
        return np.broadcast_to(whole, z.shape)
    idx = np.multiply(z, N, dtype=np.intp)
    idx += np.arange(N) if rows is None else rows
    return np.take(lp.reshape(-1), idx)  # lp is C-contiguous: its rows follow each other

"""Linear-Gaussian chains: banded precision matrices, exact draws, and the simulation smoother.

A path ``x`` of ``T`` states of dimension ``d`` is flattened time-major into ``n = T * d``
numbers. A *band* is a Gaussian log density in canonical form, ``log f(x) = -1/2 x^T Q x + b^T x
+ c``, with ``Q`` symmetric and banded (half-bandwidth ``2d - 1``: only neighbouring time steps
interact) stored in the LAPACK lower form ``ab[i, j] = Q[j + i, j]``, shape ``(2d, n)``. Bands
carry leading batch axes (one band per chain): ``ab (..., 2d, n)``, ``b (..., n)``, ``c (...)``.

* :func:`prior_band`: the log density of a linear-Gaussian chain prior (``x_0 ~ N(m0, P0)``,
  ``x_t | x_{t-1} ~ N(F x_{t-1} + c, Q)``), normalising constants included; with ``center=u``
  the band of ``delta = x - u`` (the same Gaussian read from ``u``, so that a path far from the
  origin costs no precision to cancellation);
* :func:`quadratic_emission`: per-time-step quadratic emission terms from one batched
  evaluation; :func:`add_emission` adds them to a band (prior times emissions: the chain's full
  conditional up to its normalising constant);
* :func:`factor_band`: the banded Cholesky factor ``Q = L L^T`` and the mean ``Q^-1 b``;
  :func:`sample_band`: exact draws ``mean + L^-T eps``; :func:`log_integral`: the log of the
  integral of ``f`` (the marginal log-likelihood for prior times emissions);
  :func:`band_moments`: the mean and covariance of each state and the lag-one
  cross-covariances (the Kalman smoother's moments), by a suffix scan in ``log2 T`` steps.

The cost is ``O(T d^3)`` per chain (LAPACK ``dpbtrf``, ``dpbtrs``, ``dtbtrs``); the loop over
chains is in Python, the work along time is not. :class:`mcem.kernels.kalman.KalmanSmoother` is
the site kernel that draws a chain latent from its exact full conditional when the emission
terms are Gaussian.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.linalg import lapack


__all__ = ["Band", "FactoredBand", "add_emission", "band_logdensity", "draw_band",
           "band_mean", "band_moments", "conditional_band", "factor_band", "log_integral", "prior_band",
           "quadratic_emission", "sample_band"]

_LOG_2PI = math.log(2.0 * math.pi)
_EXACT_RTOL = 1e-8
_PASSES = 30  # the most readings of the quadratic forms by conditional_band, each at the last mean


class Band(NamedTuple):
    """``log f(x) = -1/2 x^T Q x + b^T x + c``; ``ab`` the lower band of Q (see the module)."""

    ab: np.ndarray  # (..., 2d, n)
    b: np.ndarray  # (..., n)
    c: np.ndarray  # (...)


class FactoredBand(NamedTuple):
    """A band with its banded Cholesky factor (``chol``, lower form) and its mean ``Q^-1 b``."""

    band: Band
    chol: np.ndarray  # (..., 2d, n)
    mean: np.ndarray  # (..., n)


# ---------------------------------------------------------------------------- block <-> band
def _band_index(d):
    """Rows and columns of a (3d, d) block column that fill the (2d, d) band slots."""
    k, a = np.arange(2 * d)[:, None], np.arange(d)[None, :]
    return k + a, np.broadcast_to(a, (2 * d, d))


def _blocks_to_ab(D, S):
    """The lower band of the block-tridiagonal matrix with diagonal blocks ``D`` (..., T, d, d)
    and sub-diagonal blocks ``S`` (..., T, d, d), ``S[t]`` the block (t + 1, t) (the last unused)."""
    *lead, T, d, _ = D.shape
    M = np.concatenate([D, S, np.zeros_like(D)], axis=-2)  # (..., T, 3d, d)
    rows, cols = _band_index(d)
    ab = M[..., rows, cols]  # (..., T, 2d, d): ab[t, k, a] = Q[td + a + k, td + a]
    ab[..., T - 1, :, :] *= (rows < d)  # nothing below the last block
    return np.moveaxis(ab, -3, -2).reshape(*lead, 2 * d, T * d)


def _ab_to_blocks(ab, d):
    """(diagonal blocks (lower triangles), sub-diagonal blocks) of a lower band."""
    (*lead, _, n), (rows, cols) = ab.shape, _band_index(d)
    M = np.zeros((*lead, n // d, 3 * d, d))
    M[..., rows, cols] = np.moveaxis(ab.reshape(*lead, 2 * d, n // d, d), -2, -3)  # (..., T, 2d, d)
    return M[..., :d, :], M[..., d : 2 * d, :]


def _dims(band):
    d2, n = np.shape(band.ab)[-2:]
    if d2 % 2 or n % (d2 // 2):
        raise ValueError(f"a band's ab must have shape (..., 2d, T*d), got {np.shape(band.ab)}")
    return d2 // 2, n // (d2 // 2)


def _state_shape(state_shape, d):
    state_shape = (() if d == 1 else (d,)) if state_shape is None else tuple(state_shape)
    if int(np.prod(state_shape, dtype=int)) != d or len(state_shape) > 1:
        raise ValueError(f"state_shape must be () (d = 1) or ({d},), got {state_shape}")
    return state_shape


def _matvec(ab, x):
    """``Q x`` for a lower band ``ab`` (..., 2d, n) and ``x`` (..., n)."""
    n = x.shape[-1]
    y = ab[..., 0, :] * x
    for k in range(1, min(ab.shape[-2], n)):  # the 2d - 1 sub-diagonals, each vectorised over time
        y[..., k:] += ab[..., k, : n - k] * x[..., : n - k]
        y[..., : n - k] += ab[..., k, : n - k] * x[..., k:]
    return y


# ---------------------------------------------------------------------------- the prior
def _square(a, d, name):
    a = np.asarray(a, dtype=float)
    if a.size != d * d:
        raise ValueError(f"prior_band: {name} must have shape ({d}, {d}), got {a.shape}")
    return a.reshape(d, d)


def _spd_inverse(a, name):
    try:
        if not np.allclose(a, a.T, rtol=1e-10, atol=0.0):
            raise np.linalg.LinAlgError
        L = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        raise ValueError(f"prior_band: {name} must be symmetric positive definite, got {a.tolist()}") from None
    Li = np.linalg.inv(L)
    return Li.T @ Li, 2.0 * float(np.sum(np.log(np.diagonal(L)))), Li


def prior_band(lg, T, center=None) -> Band:
    """The band of a linear-Gaussian chain's prior log density over ``T`` time steps.

    Parameters
    ----------
    lg : LinearGaussian-like
        Any object with fields ``m0`` (d,), ``P0`` (d, d), ``F`` (d, d), ``c`` (d,), ``Q`` (d, d):
        ``x_0 ~ N(m0, P0)``, ``x_t | x_{t-1} ~ N(F x_{t-1} + c, Q)``.
    T : int
        The number of time steps (>= 1).
    center : array (..., T, d), optional
        Read the density in ``delta = x - center`` (one band per leading index): ``Q`` is the
        same, ``b`` becomes ``b - Q center`` and ``c`` the log density at ``center``, computed
        directly.

    Returns
    -------
    Band
        ``ab`` (2d, T*d), ``b`` (T*d,), ``c`` () (leading axes of ``center`` in front); ``c``
        holds every normalising constant.
    """
    if isinstance(T, bool) or not isinstance(T, int | np.integer) or T < 1:
        raise ValueError(f"prior_band: T must be a positive int, got {T!r}")
    T = int(T)
    m0 = np.atleast_1d(np.asarray(lg.m0, dtype=float))
    if m0.ndim != 1:
        raise ValueError(f"prior_band: m0 must have shape (d,), got {m0.shape}")
    d = m0.size
    P0, F, Q = (_square(getattr(lg, k), d, k) for k in ("P0", "F", "Q"))
    c = np.asarray(lg.c, dtype=float).reshape(-1)
    if c.size != d:
        raise ValueError(f"prior_band: c must have shape ({d},), got {np.shape(lg.c)}")
    if not all(np.all(np.isfinite(a)) for a in (m0, F, c)):
        raise ValueError("prior_band: m0, F and c must be finite")
    (P0i, logdet0, L0i), (Qi, logdetq, LQi) = _spd_inverse(P0, "P0"), _spd_inverse(Q, "Q")
    FtQi = F.T @ Qi
    D = np.repeat((Qi + FtQi @ F)[None], T, axis=0)
    D[-1], D[0] = Qi, P0i + (FtQi @ F if T > 1 else 0.0)  # in this order (T = 1: D[0] = P0^-1)
    S = np.zeros((T, d, d))
    S[:-1] = -Qi @ F
    b = np.zeros((T, d))
    b[0] = P0i @ m0
    b[1:] += Qi @ c
    b[:-1] -= FtQi @ c
    norm = -0.5 * (T * d * _LOG_2PI + logdet0 + (T - 1) * logdetq)
    ab = _blocks_to_ab(D, S)
    if center is None:
        return Band(ab, b.reshape(-1), np.asarray(norm - 0.5 * (m0 @ P0i @ m0 + (T - 1) * (c @ Qi @ c))))
    u = np.asarray(center, dtype=float)
    if u.shape[-2:] != (T, d):
        raise ValueError(f"prior_band: center must have shape (..., {T}, {d}), got {u.shape}")
    r0, r = u[..., :1, :] - m0, u[..., 1:, :] - u[..., :-1, :] @ F.T - c  # standardised below
    quad = np.sum((r0 @ L0i.T) ** 2, axis=(-2, -1)) + np.sum((r @ LQi.T) ** 2, axis=(-2, -1))
    uf = u.reshape(u.shape[:-2] + (T * d,))
    return Band(np.broadcast_to(ab, uf.shape[:-1] + ab.shape).copy(), b.reshape(-1) - _matvec(ab, uf),
                norm - 0.5 * quad)


# ---------------------------------------------------------------------------- emissions
def _design(d, h):
    """Offsets (n_pts, d): 0, +h e_i, -h e_i, h (e_i + e_j) for i < j, and one check point."""
    E, (iu, ju) = h * np.eye(d), np.triu_indices(d, 1)
    check = h * (0.6180339887 + 0.1 * np.arange(d)) * np.where(np.arange(d) % 2, -1.0, 1.0)
    return np.concatenate([np.zeros((1, d)), E, -E, E[iu] + E[ju], check[None]]), iu, ju, check


def quadratic_emission(emission, C, T, state_shape, center=None, h=1.0, relative=False):
    """Per-time-step quadratic forms of emission terms, from one batched evaluation.

    ``emission(zs) -> (n_pts, C, T)`` is called once with ``zs`` of shape ``(n_pts, C, T,
    *state_shape)`` (``state_shape`` is ``()`` or ``(d,)``): the points ``center`` (C, T,
    *state_shape; default 0), ``center +- h e_i``, ``center + h (e_i + e_j)`` (i < j) and one
    check point. The second-order finite differences give ``e_t(x) = -1/2 x^T H_t x + g_t^T x +
    c_t``, exact when ``e_t`` is quadratic (``h = 1`` then serves), else a Taylor approximation
    around ``center``. With ``relative=True`` the forms are of ``delta = x - center`` instead
    (``g`` the gradient and ``c`` the value at ``center``: no cancellation far from the origin).

    Returns
    -------
    H (C, T, d, d), g (C, T, d), c (C, T), and ``exact``: whether the value at the check point
    agrees with the quadratic to rounding (relative ``1e-8`` of the magnitudes involved) at every
    chain and time step.
    """
    state_shape = tuple(state_shape)
    d = int(np.prod(state_shape, dtype=int)) if state_shape else 1
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"quadratic_emission: h must be a positive number, got {h!r}")
    u = np.zeros((C, T, d)) if center is None else np.asarray(center, dtype=float)
    if u.size != C * T * d:
        raise ValueError(f"quadratic_emission: center must have shape {(C, T, *state_shape)}, got {u.shape}")
    u = u.reshape(C, T, d)
    V, iu, ju, w = _design(d, float(h))
    zs = (u[None] + V[:, None, None, :]).reshape((len(V), C, T) + state_shape)
    with np.errstate(all="ignore"):
        f = np.asarray(emission(zs), dtype=float)
    if f.shape != (len(V), C, T):
        raise ValueError(
            f"quadratic_emission: the emission terms at {zs.shape} points must have shape "
            f"{(len(V), C, T)}, got {f.shape}")
    f0, fp, fm, fij, fchk = f[0], f[1 : d + 1], f[d + 1 : 2 * d + 1], f[2 * d + 1 : -1], f[-1]
    with np.errstate(all="ignore"):
        gu = np.moveaxis((fp - fm) / (2 * h), 0, -1)  # (C, T, d): gradient at u
        hd = np.moveaxis(-(fp + fm - 2 * f0) / h**2, 0, -1)  # diagonal of H
        H = np.zeros((C, T, d, d))
        H[..., np.arange(d), np.arange(d)] = hd
        if len(iu):
            off = (-(np.moveaxis(fij, 0, -1) - f0[..., None] - h * (gu[..., iu] + gu[..., ju])) / h**2
                   - 0.5 * (hd[..., iu] + hd[..., ju]))
            H[..., iu, ju] = off
            H[..., ju, iu] = off
        lin = gu @ w
        quad = -0.5 * np.einsum("i,ctij,j->ct", w, H, w)
        pred = f0 + lin + quad
        # magnitudes: the values, the terms at the check point, and |z| times the slope (what
        # rounding z near u costs)
        slope = np.abs(gu) + h * np.sum(np.abs(H), axis=-1)
        scale = np.max(np.abs(f), axis=0) + np.abs(lin) + np.abs(quad) + np.sum(np.abs(u) * slope, -1)
        exact = bool(np.all(np.isfinite(f)) and np.all(np.abs(pred - fchk) <= _EXACT_RTOL * scale))
        if relative:
            return H, gu, f0, exact
        Hu = np.einsum("ctij,ctj->cti", H, u)
        g = gu + Hu
        c = f0 - np.sum(gu * u, axis=-1) - 0.5 * np.sum(u * Hu, axis=-1)
    return H, g, c, exact


def add_emission(band, H, g, c) -> Band:
    """The band of ``band`` plus the quadratic emission terms ``(H, g, c)`` of
    :func:`quadratic_emission` (one band per chain: ``(C, 2d, n)``, ``(C, n)``, ``(C,)``)."""
    d, T = _dims(band)
    H, g, c = (np.asarray(a, dtype=float) for a in (H, g, c))  # (..., T, d, d), (..., T, d), (..., T)
    if H.shape[-3:] != (T, d, d) or g.shape[-2:] != (T, d) or c.shape[-1:] != (T,):
        raise ValueError(
            f"add_emission: expected H (..., {T}, {d}, {d}), g (..., {T}, {d}), c (..., {T}); "
            f"got {H.shape}, {g.shape}, {c.shape}")
    Hs = 0.5 * (H + np.swapaxes(H, -1, -2))
    ab = np.asarray(band.ab) + _blocks_to_ab(Hs, np.zeros_like(Hs))
    b = np.asarray(band.b) + g.reshape(*g.shape[:-2], T * d)
    return Band(ab, b, np.asarray(band.c) + c.sum(axis=-1))


# ---------------------------------------------------------------------------- factor, draw
def _where(ab, lead, idx, info, d, who):
    if info < 0 or not np.all(np.isfinite(ab)):
        return f"{who}: the precision matrix is not finite"
    at = f" of chain {idx[0]}" if len(lead) == 1 else (f" of batch element {idx}" if lead else "")
    t, a = divmod(int(info) - 1, d)
    return (f"{who}: the precision matrix{at} is not positive definite at time step {t}"
            + (f" (state coordinate {a})" if d > 1 else ""))


def factor_band(band, who="factor_band") -> FactoredBand:
    """The banded Cholesky factor and the mean of a band (ValueError where Q is not positive
    definite, naming the chain and the time step)."""
    if isinstance(band, FactoredBand):
        return band
    band = Band(*(np.asarray(a, dtype=float) for a in band))
    (d, T), lead = _dims(band), band.ab.shape[:-2]
    if band.b.shape != lead + (T * d,):
        raise ValueError(f"{who}: b must have shape {lead + (T * d,)}, got {band.b.shape}")
    chol, mean = np.empty_like(band.ab), np.empty_like(band.b)
    for idx in np.ndindex(*lead):  # one LAPACK call per chain
        cb, info = lapack.dpbtrf(band.ab[idx], lower=1)
        if info != 0:
            raise ValueError(_where(band.ab[idx], lead, idx, info, d, who))
        chol[idx] = cb
        mean[idx] = lapack.dpbtrs(cb, band.b[idx][:, None], lower=1)[0][:, 0]
    return FactoredBand(band, chol, mean)


def draw_band(fb, sample_shape, rng_or_normals):
    """(x (*sample_shape, *lead, n), eps of the same shape)."""
    lead, n, sample_shape = fb.mean.shape[:-1], fb.mean.shape[-1], tuple(sample_shape)
    m, shape = int(np.prod(sample_shape, dtype=int)), sample_shape + lead + (n,)
    if isinstance(rng_or_normals, np.ndarray | list | tuple):
        eps = np.asarray(rng_or_normals, dtype=float)
    else:
        eps = np.random.default_rng(rng_or_normals).standard_normal(shape)
    if eps.size != int(np.prod(shape, dtype=int)):
        raise ValueError(f"sample_band: normals must have {shape} values, got shape {eps.shape}")
    eps = eps.reshape(shape)
    e = np.moveaxis(eps.reshape((m,) + lead + (n,)), 0, -1)  # (*lead, n, m)
    x = np.empty_like(e)
    for idx in np.ndindex(*lead):
        x[idx] = lapack.dtbtrs(fb.chol[idx], e[idx], uplo="L", trans="T", diag="N")[0]
    x += fb.mean[..., None]
    return np.moveaxis(x, -1, 0).reshape(sample_shape + lead + (n,)), eps


def sample_band(band, rng_or_normals=None, sample_shape=(), state_shape=None):
    """Exact draws from ``N(Q^-1 b, Q^-1)``: ``mean + L^-T eps`` with ``Q = L L^T``, shape
    ``(*sample_shape, *lead, T, *state_shape)`` for a band (or factored band) with leading axes
    ``lead``. ``rng_or_normals`` is the random source or the standard normals ``eps`` themselves
    (``sample_shape + lead + (n,)`` values); ``state_shape`` is ``()`` or ``(d,)`` (default
    ``()`` when d = 1)."""
    fb = factor_band(band, "sample_band")
    d, T = _dims(fb.band)
    x, _ = draw_band(fb, sample_shape, rng_or_normals)
    return x.reshape(x.shape[:-1] + (T,) + _state_shape(state_shape, d))


def band_mean(band, state_shape=None):
    """The mean ``Q^-1 b`` as paths ``(*lead, T, *state_shape)``."""
    fb = factor_band(band, "band_mean")
    d, T = _dims(fb.band)
    return fb.mean.reshape(fb.mean.shape[:-1] + (T,) + _state_shape(state_shape, d))


def log_integral(band):
    """``log of the integral of exp(-1/2 x^T Q x + b^T x + c) dx``, shape ``lead``:
    ``c + 1/2 b^T Q^-1 b + n/2 log(2 pi) - 1/2 log|Q|``."""
    fb = factor_band(band, "log_integral")
    logdet_half = np.sum(np.log(fb.chol[..., 0, :]), axis=-1)
    return fb.band.c + 0.5 * np.sum(fb.band.b * fb.mean, axis=-1) + 0.5 * fb.mean.shape[-1] * _LOG_2PI - logdet_half


def band_logdensity(band, x, state_shape=None):
    """``-1/2 x^T Q x + b^T x + c`` at paths ``x`` of shape ``(..., *lead, T, *state_shape)``."""
    band = band.band if isinstance(band, FactoredBand) else band
    (d, T), ab, b = _dims(band), np.asarray(band.ab, dtype=float), np.asarray(band.b, dtype=float)
    n, tail = T * d, (T,) + _state_shape(state_shape, d)
    x = np.asarray(x, dtype=float)
    if x.shape[x.ndim - len(tail):] != tail or x.ndim < len(tail):
        raise ValueError(f"band_logdensity: x must end in the path shape {tail}, got {x.shape}")
    xf = x.reshape(x.shape[: x.ndim - len(tail)] + (n,))
    return -0.5 * np.sum(xf * _matvec(ab, xf), axis=-1) + np.sum(b * xf, axis=-1) + band.c


def _tr(a):
    return np.swapaxes(a, -1, -2)


def band_moments(band):
    """The means ``(*lead, T, d)``, covariances ``Cov(x_t)`` ``(*lead, T, d, d)`` and lag-one
    covariances ``Cov(x_{t+1}, x_t)`` ``(*lead, T - 1, d, d)`` of a band's Gaussian.

    With ``L^T Sigma = L^-1`` (lower triangular), ``Sigma_tt = A_t + G_t Sigma_{t+1,t+1} G_t^T``
    and ``Sigma_{t,t+1} = G_t Sigma_{t+1,t+1}``, where ``A_t = (L_tt L_tt^T)^-1`` and
    ``G_t = -L_tt^-T L_{t+1,t}^T``. The backward recursion is a composition of affine maps, run
    as a suffix scan in ``ceil(log2 T)`` vectorised steps; it only adds positive semi-definite
    terms, so it loses no precision to cancellation.
    """
    fb = factor_band(band, "band_moments")
    d, T = _dims(fb.band)
    Ld, Ls = _ab_to_blocks(fb.chol, d)
    Linv = np.linalg.inv(Ld)  # (..., T, d, d), lower triangular
    A, G = _tr(Linv) @ Linv, np.zeros_like(Ld)
    G[..., :-1, :, :] = -_tr(Linv[..., :-1, :, :]) @ _tr(Ls[..., :-1, :, :])
    G0, s = G.copy(), 1
    while s < T:  # ceil(log2 T) steps, each vectorised over time
        Gh = G[..., : T - s, :, :]  # each right-hand side is computed before its write
        A[..., : T - s, :, :] += Gh @ A[..., s:, :, :] @ _tr(Gh)
        G[..., : T - s, :, :] = Gh @ G[..., s:, :, :]
        s *= 2
    cov = 0.5 * (A + _tr(A))
    cross = cov[..., 1:, :, :] @ _tr(G0[..., :-1, :, :])  # Sigma_{t+1,t}
    return fb.mean.reshape(fb.mean.shape[:-1] + (T, d)), cov, cross


def conditional_band(lg, emission, center, state_shape=None, h=None, who="conditional_band"):
    """Prior times quadratic emissions, factored, read around ``center`` (C, T, d) to rounding.

    The band is of ``delta = x - u`` (:func:`prior_band` and :func:`quadratic_emission` with
    ``center=u``), so that a path far from the origin costs no precision; its forms are read with
    a step ``h`` of one conditional standard deviation (the median of ``Q_ii^-1/2``). With ``h``
    None the first reading is at step 1 (10^4 times more after a reading that is not positive
    definite) and the forms are read again at the last mean until it moves by less than 0.1
    standard deviation or the rounding of u (at most 30 readings). ``emission`` is as for
    :func:`quadratic_emission`; ``state_shape`` is ``()`` or ``(d,)`` (default from ``lg``).

    Returns
    -------
    (FactoredBand of delta, u (C, T, d), h for a next reading): the full conditional of x is
    ``u + delta`` and :func:`log_integral` of the band is the log of the integral over x.
    ValueError when the emission terms are not quadratic in the state.
    """
    (C, T, d), state_shape = np.shape(center), _state_shape(state_shape, np.shape(center)[-1])
    u, shift, tuned, adaptive = np.asarray(center, dtype=float), None, False, h is None
    h = 1.0 if adaptive else float(h)
    for i in range(_PASSES if adaptive else 1):
        u = u if shift is None else u + shift
        H, g, c, exact = quadratic_emission(emission, C, T, state_shape, u, h, relative=True)
        if not exact:
            raise ValueError(
                f"{who}: the emission terms of the chain are not Gaussian in the state (not a "
                "quadratic function of each x_t), so neither the Gaussian simulation smoother nor "
                "the closed-form likelihood applies; use the conditional SMC kernel for this chain")
        try:
            fb = factor_band(add_emission(prior_band(lg, T, center=u), H, g, c), who)
        except ValueError:  # far from the mean the second differences drown in rounding
            if not adaptive or i == _PASSES - 1:
                raise
            shift, tuned, h = None, False, 1e4 * h
            continue
        sd = fb.band.ab[..., 0, :] ** -0.5  # conditional standard deviations
        if tuned and np.all(np.abs(fb.mean) <= np.maximum(0.1 * sd, 1e-14 * np.abs(u.reshape(C, -1)))):
            break
        shift, tuned, h = fb.mean.reshape(C, T, d), True, float(np.median(sd))
    return fb, u, h


# ---------------------------------------------------------------------------- the site kernel

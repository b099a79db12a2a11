"""How far a Monte Carlo EM iterate may be from the MLE, in units of its standard errors.

The stopping rule of the Monte Carlo methods asks one scale-free question: is the Monte Carlo
error of the estimate below a fraction ``tol`` of its statistical standard error, on the natural
scale of every parameter? This module measures both at the current iterate from the E step's
draws; all derivatives are taken in the unconstrained coordinates u and mapped to the natural
(constrained) parameters by the delta method, so that log sigma = 0 at sigma = 1 is no special
point.

With s_j the complete-data scores of the draws and H the Hessian of Q_hat (all at the iterate):

* statistical covariance: the inverse of Louis' observed information ``I = -H - Var(s_j)``
  (the score covariance summed over units where the posterior factorises over them,
  :func:`mcem.derivatives.posterior_score_cov`);
* Monte Carlo covariance of the M step's maximiser (Booth & Hobert 1999): ``Sigma = H^-1 V H^-1``
  with ``V`` the Monte Carlo covariance of the mean score (:func:`mcem.diagnostics.cov_of_mean`,
  valid for autocorrelated draws at every chain length);
* the iterates of MCEM at a fixed sample size fluctuate around the MLE like a linear
  autoregression ``e_{t+1} = J e_t + eps_t`` with ``Var(eps) = Sigma`` and the EM rate matrix
  ``J = I_c^-1 (I_c - I)`` (the fraction of missing information, ``I_c = -H``). Their stationary
  covariance ``Sigma_inf = sum_k J^k Sigma J'^k`` is what one iterate's Monte Carlo error is in
  the end; where EM is slow (rates near 1) it is larger than ``Sigma``. The rates are estimated
  by the generalized eigenproblem of ``(I_c - I, I_c)`` and kept in ``[0, 0.95]`` (beyond that the
  estimate is noise, and 0.95 already asks for ten times the draws of a fast direction).

``ratio`` is the largest ``sqrt(Sigma_inf_ii / Cov_ii)`` over the natural parameters (those on
the edge of their constraint left out: they have no standard error). When the observed
information is not positive definite, nothing can be said: ``ratio`` is ``inf``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import linalg

from ..derivatives import constrained_jacobian, mean_score_hessian, per_draw_scores, posterior_score_cov, thin_draws
from ..diagnostics import cov_of_mean
from .degenerate import _edge_elements, _edge_flat
from .information import _flat_names

__all__ = ["Precision", "precision", "newton_precision", "MAX_RATE"]

#: The largest EM rate of convergence (fraction of missing information) taken from the draws.
MAX_RATE = 0.95
#: Draws (in all, evenly thinned) for the complete-data information and the score covariance;
#: the Monte Carlo covariance of the mean score always uses every draw.
HESSIAN_DRAWS = 400
VARIANCE_DRAWS = 500


class Precision(NamedTuple):
    """The Monte Carlo error of an iterate against its standard errors (natural scale, flat).

    ``ratio`` is ``max(mc_sd / se)`` over the parameters with a standard error, ``worst`` the
    flat name where it is reached; ``rate`` the largest estimated EM rate of convergence;
    ``optimism`` the in-sample bias ``tr(H^-1 V)`` of delta-Q on the draws the M step maximised
    (see :func:`mcem.algorithms.mcem.optimism`), NaN when unknown; ``delta`` how far EM would
    still move each parameter (flat, natural scale, in its standard errors; 0 where it has none)
    and ``delta_sd`` the Monte Carlo sd of that estimate (None when no step was given).
    """

    ratio: float
    worst: str
    se: np.ndarray
    mc_sd: np.ndarray
    rate: float
    positive_definite: bool
    optimism: float = np.nan
    delta: np.ndarray | None = None
    delta_sd: np.ndarray | None = None


def _stationary(Ic, Imiss, sigma):
    """``sum_k J^k Sigma J'^k`` for ``J = Ic^-1 Imiss``, rates clipped to [0, MAX_RATE]; and the top rate."""
    lam, W = linalg.eigh(0.5 * (Imiss + Imiss.T), 0.5 * (Ic + Ic.T))  # W' Ic W = 1, J = W diag(lam) W^-1
    lam = np.clip(lam, 0.0, MAX_RATE)
    Winv = W.T @ Ic  # W^-1 = W' Ic
    s = Winv @ sigma @ Winv.T
    s = s / (1.0 - lam[:, None] * lam[None, :])
    return W @ s @ W.T, float(lam.max(initial=0.0))


class _Louis(NamedTuple):
    s: np.ndarray  # per-draw scores (chain, draw, p)
    Ic: np.ndarray  # complete-data information, -Hessian of Q_hat
    var: np.ndarray  # posterior covariance of the score (missing information)
    info: np.ndarray  # observed information
    J: np.ndarray  # d theta_flat / d u
    se: np.ndarray  # standard errors, natural scale
    keep: np.ndarray  # parameters with a standard error
    names: list


def _louis_parts(model, theta, draws, scores=None):
    """Louis' identity at ``theta`` from ``draws`` (``scores``: their per-draw scores at ``theta``
    when known); None where the information is not positive definite (or not finite)."""
    u = model.to_unconstrained(theta)
    s = per_draw_scores(model, theta, draws) if scores is None else np.asarray(scores, dtype=float)
    p = s.shape[-1]
    if s.shape[0] * s.shape[1] < 2:
        return None
    # the information matrices are means over the posterior, stable long before the Monte Carlo
    # error of the mean score is: evenly thinned draws estimate them at a fraction of the cost
    Ic = -mean_score_hessian(model, theta, thin_draws(draws, HESSIAN_DRAWS))
    sub = thin_draws(draws, VARIANCE_DRAWS)
    var = posterior_score_cov(model, theta, sub, s if sub is draws else None)
    info = Ic - var
    if not (np.all(np.isfinite(info)) and np.all(np.isfinite(Ic))):
        return None
    w = np.linalg.eigvalsh(0.5 * (info + info.T))
    wc = np.linalg.eigvalsh(0.5 * (Ic + Ic.T))
    if p and (w.min() <= 1e-12 * max(abs(w).max(), 1e-300) or wc.min() <= 0):
        return None
    J = constrained_jacobian(model, u)
    se = np.sqrt(np.clip(np.diag(J @ np.linalg.inv(info) @ J.T), 0.0, None))
    keep = se > 1e-10 * max(se.max(initial=0.0), 1e-300)
    edges = _edge_flat(model, _edge_elements(model, theta))
    if len(edges):
        keep[np.asarray(edges, dtype=int)] = False
    return _Louis(s, Ic, var, info, J, se, keep, _flat_names(model))


def _not_known(model):
    nan = np.full(len(_flat_names(model)), np.nan)
    return Precision(np.inf, "", nan, nan, np.nan, False)


def _ratio(L, mc_cov):
    """(ratio, worst, mc_sd) of the Monte Carlo covariance ``mc_cov`` (u) against L's SEs."""
    mc_sd = np.sqrt(np.clip(np.diag(L.J @ mc_cov @ L.J.T), 0.0, None))
    if not np.any(L.keep):
        return 0.0, "", mc_sd
    r = np.where(L.keep, mc_sd / np.where(L.keep, L.se, 1.0), 0.0)
    k = int(np.argmax(r))
    return float(r[k]), L.names[k], mc_sd


def _in_se(L, vec_u, cov_u):
    """A step in u and its covariance as natural-scale values and sds in standard errors."""
    safe = np.where(L.keep, L.se, 1.0)
    delta = np.where(L.keep, L.J @ vec_u / safe, 0.0)
    sd = np.where(L.keep, np.sqrt(np.clip(np.diag(L.J @ cov_u @ L.J.T), 0.0, None)) / safe, 0.0)
    return delta, sd


def precision(model, theta, draws, step=None, scores=None) -> Precision:
    """Monte Carlo error against standard error at ``theta`` (the M step's maximiser of Q_hat
    on ``draws``); see the module docstring.

    ``step``: the EM step just taken in the unconstrained coordinates (``u_new - u_old``). Near
    the MLE, ``u_{t+1} - u_hat = J (u_t - u_hat)``, so the distance still to go from the new
    iterate is ``((I - J)^-1 - 1) step = (I^-1 I_c - 1) step`` (Louis' ``I``), with Monte Carlo
    noise ``A Sigma A'`` for ``A = I^-1 I_c - 1``; both are returned on the natural scale in
    standard errors (``delta``, ``delta_sd``). ``scores``: the per-draw scores at ``theta`` when
    the M step already computed them (:class:`mcem.mstep.MStepInfo`).
    """
    L = _louis_parts(model, theta, draws, scores)
    if L is None:
        return _not_known(model)
    Hinv = np.linalg.inv(L.Ic)
    V = cov_of_mean(L.s)
    sigma = Hinv @ V @ Hinv
    sigma_inf, rate = _stationary(L.Ic, L.var, sigma)
    ratio, worst, mc_sd = _ratio(L, sigma_inf)
    delta = delta_sd = None
    if step is not None:
        A = np.linalg.solve(L.info, L.Ic) - np.eye(L.Ic.shape[0])
        delta, delta_sd = _in_se(L, A @ np.asarray(step, dtype=float), A @ sigma @ A.T)
    return Precision(ratio, worst, L.se, mc_sd, rate, True, float(np.trace(Hinv @ V)), delta, delta_sd)


def newton_precision(model, theta, draws, score=None, score_cov=None) -> Precision:
    """How far the MLE is from ``theta`` by one Newton step on the observed likelihood, and how
    precisely the draws tell.

    By Fisher's identity the observed score is the posterior mean of the complete-data score, so
    ``delta = I^-1 g`` with ``g`` the mean score of ``draws`` (drawn at ``theta``) and Louis'
    ``I``; its Monte Carlo covariance is ``I^-1 Cov(g) I^-1``. ``score`` and ``score_cov`` replace
    ``g`` and ``Cov(g)`` (SAEM averages the scores of its iterations). ``ratio`` is the largest
    Monte Carlo sd of ``theta + delta`` in standard errors; ``delta`` and ``delta_sd`` are in
    standard errors, natural scale.
    """
    L = _louis_parts(model, theta, draws)
    if L is None:
        return _not_known(model)
    g = L.s.reshape(-1, L.s.shape[-1]).mean(axis=0) if score is None else np.asarray(score, dtype=float)
    Cg = cov_of_mean(L.s) if score_cov is None else np.asarray(score_cov, dtype=float)
    Iinv = np.linalg.inv(L.info)
    cov = Iinv @ Cg @ Iinv
    ratio, worst, mc_sd = _ratio(L, cov)
    delta, delta_sd = _in_se(L, Iinv @ g, cov)
    rate = float(np.clip(linalg.eigh(0.5 * (L.var + L.var.T), 0.5 * (L.Ic + L.Ic.T), eigvals_only=True).max(),
                         0.0, MAX_RATE))
    return Precision(ratio, worst, L.se, mc_sd, rate, True, np.nan, delta, delta_sd)

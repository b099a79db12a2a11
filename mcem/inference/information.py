"""Standard errors by the observed information: exact, or by Louis' identity from posterior draws.

With draws z_j from p(z | x; theta_hat), Louis' identity gives the observed information

    I(theta_hat) = E[-Hessian log p(x, z; theta)] - Var[score of log p(x, z; theta)],

both expectations over the posterior and estimated by averages over the draws. Derivatives are
taken in the unconstrained coordinates (:mod:`mcem.derivatives`), inverted there, and mapped to
the constrained parameters by the delta method. Where the model has an exact log-likelihood, its
Hessian is used instead. The Monte Carlo error of the standard errors is estimated by the
jackknife over batches of draws.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from ..derivatives import (
    _unit_cov,
    central_hessian,
    constrained_jacobian,
    per_unit_scores,
    score_arrays,
    unit_decomposable,
)
from ..exceptions import MonteCarloWarning
from .degenerate import _edge_elements, _edge_flat, degeneracy

__all__ = ["Inference", "observed_information", "standard_errors"]


class Inference(NamedTuple):
    """Standard errors and covariances of a fit.

    ``se`` and ``se_mcse`` are dicts shaped like the parameters; ``cov`` is the covariance of the
    flattened constrained parameters (order ``names``); ``cov_unconstrained`` the covariance in
    the unconstrained coordinates; ``method`` is ``"exact"`` or ``"louis"``.
    ``positive_definite`` says whether the observed information is (numerically) positive
    definite. ``problems`` lists, as sentences, why some standard errors are NaN or not to be
    trusted (empty when all is well), and ``flags`` maps each affected flat name to a short
    word (``"at edge"``, ``"info not PD"``) that a table can print next to it.
    """

    se: dict
    se_mcse: dict
    cov: np.ndarray
    cov_unconstrained: np.ndarray
    information: np.ndarray
    names: list
    method: str
    positive_definite: bool
    problems: list
    flags: dict


def _flat_names(model):
    names = []
    for n in model.param_names:
        shape = model.params[n].shape
        if not shape:
            names.append(n)
        else:
            names.extend(f"{n}[{','.join(map(str, i))}]" for i in np.ndindex(shape))
    return names


def _louis(s0, plus, minus, steps, units=None, mask=None):
    """I = -mean Hessian - covariance of the scores, on the draws selected by ``mask``; with
    ``units`` (per-unit scores, ``(draws, N, p)``) the covariance is summed over units."""
    p = s0.shape[-1]
    if mask is None:
        flat0 = s0.reshape(-1, p)
        fp, fm = plus.reshape(p, -1, p), minus.reshape(p, -1, p)
    else:
        flat0 = s0.reshape(-1, p)[mask]
        fp, fm = plus.reshape(p, -1, p)[:, mask], minus.reshape(p, -1, p)[:, mask]
    H = ((fp.mean(axis=1) - fm.mean(axis=1)) / (2 * steps[:, None])).T  # H[:, i] = d score / d u_i
    H = 0.5 * (H + H.T)
    if units is not None:
        return -H - _unit_cov(units if mask is None else units[mask])
    centred = flat0 - flat0.mean(axis=0)
    var = centred.T @ centred / max(flat0.shape[0] - 1, 1)
    return -H - var


def _exact_information(model, theta, h=1e-4):
    """Minus the Hessian of the exact log-likelihood in the unconstrained coordinates."""
    u = model.to_unconstrained(theta)
    return -central_hessian(lambda v: model.exact_loglik(model.from_unconstrained(v)), u, h)


def observed_information(model, theta, draws=None, *, method="auto"):
    """The observed information in the unconstrained coordinates: exact or by Louis' identity."""
    if method == "auto":
        method = "exact" if model.loglik_fn is not None else "louis"
    if method == "exact":
        if model.loglik_fn is None:
            raise ValueError(f"method='exact' needs a model with an exact log-likelihood; {model.name!r} has none")
        return _exact_information(model, theta), None
    if draws is None:
        raise ValueError("Louis' identity needs posterior draws at the estimate (draws=...)")
    arrays = score_arrays(model, theta, draws)
    units = None
    if unit_decomposable(model):  # the score covariance summed over independent units
        su = per_unit_scores(model, theta, draws)
        units = su.reshape((-1,) + su.shape[2:])
    arrays = (*arrays, units)
    return _louis(*arrays), arrays


#: An eigenvalue of the observed information's correlation form at most this times the largest is
#: taken as zero (a correlation of 1 - 1e-8 between two parameters' estimates is no information).
_INFO_RTOL = 1e-8
#: A coordinate is touched by a flat direction (unit eigenvector) when its loading exceeds this.
_LOAD_TOL = 1e-4


def _scaled_eigh(info):
    """Eigenvalues and vectors of the information in correlation form ``S I S`` with
    ``S = diag(I)^(-1/2)`` (1 where a diagonal is not positive), and which are not positive.

    The scaling makes the test independent of the parameters' units: an identified parameter
    with a tiny information is not mistaken for a flat direction, and the rounding noise of a
    numerically differentiated information (relative 1e-9 or so) is not mistaken for curvature.
    Returns ``(w, V, s, bad)``; a direction in the unconstrained coordinates is ``s * V[:, j]``.
    """
    H = 0.5 * (info + info.T)
    d = np.diag(H)
    s = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 1.0)
    w, V = np.linalg.eigh(H * s[:, None] * s[None, :])
    scale = float(np.max(np.abs(w))) if w.size else 0.0
    return w, V, s, w <= _INFO_RTOL * scale


def _non_pd_problem(model, u, info, method, names):
    """The directions where the information is not positive definite, described by name.

    Returns (positive_definite, unconstrained coordinates touched, sentence or None).
    """
    w, V, s, bad = _scaled_eigh(info)
    scale = float(np.max(np.abs(w))) if w.size else 0.0
    if not np.any(bad):
        return True, np.zeros(u.size, dtype=bool), None
    # unit eigenvectors: loadings below _LOAD_TOL are rounding noise, not a real dependence
    touched = np.any(np.abs(V[:, bad]) > _LOAD_TOL, axis=1)
    V = s[:, None] * V  # the directions in the unconstrained coordinates
    J = constrained_jacobian(model, u)
    parts = []
    for j in np.flatnonzero(bad)[:3]:
        load = J @ V[:, j]
        top = float(np.max(np.abs(load))) if load.size else 0.0
        if top == 0:
            parts.append(f"eigenvalue {w[j]:.3g}: no constrained parameter moves along it")
            continue
        order = [k for k in np.argsort(-np.abs(load)) if abs(load[k]) >= 0.1 * top][:5]
        moved = ", ".join(f"{names[k]} ({load[k] / top:+.2f})" for k in order)
        parts.append(f"eigenvalue {w[j]:.3g} moves {moved}")
    more = f" (and {int(bad.sum()) - 3} more)" if bad.sum() > 3 else ""
    causes = (
        "Monte Carlo noise in Louis' identity (more draws at the estimate: a longer final E step), "
        if method == "louis" else ""
    )
    text = (
        f"the observed information is not positive definite: {int(bad.sum())} of the {w.size} "
        f"eigenvalues of its correlation form are <= {_INFO_RTOL:g} times the largest ({scale:.3g}); "
        "the smallest is "
        f"{w.min():.3g}. Direction(s), with the largest loadings on the parameters: "
        + "; ".join(parts) + more
        + ". The standard errors of the parameters these directions touch are NaN. Likely causes: "
        + causes
        + "a point that is not a maximum (the fit has not converged), an estimate on the "
        "boundary of the parameter space (see mcem.inference.degeneracy), or a parameter the "
        "data do not identify (fix it or reparameterise)."
    )
    return False, touched, text


def _se_from_cov_u(model, u, cov_u):
    """Delta method; NaN rows of ``cov_u`` make NaN only the parameters that depend on them."""
    J = constrained_jacobian(model, u)
    nan_u = np.isnan(np.diag(cov_u))
    cov = J @ np.where(np.isnan(cov_u), 0.0, cov_u) @ J.T
    if np.any(nan_u):
        dep = np.any(J[:, nan_u] != 0, axis=1)
        cov[dep, :] = np.nan
        cov[:, dep] = np.nan
    d = np.diag(cov)
    se_flat = np.where(d >= 0, np.sqrt(np.abs(d)), np.nan)
    return cov, se_flat


def _unflatten(model, flat):
    out, off = {}, 0
    for n in model.param_names:
        shape = model.params[n].shape
        size = int(np.prod(shape, dtype=int))
        out[n] = np.asarray(flat[off : off + size]).reshape(shape)
        off += size
    return out


def standard_errors(model, theta, draws=None, *, method="auto", n_batches=10) -> Inference:
    """Standard errors of ``theta`` (an MLE): exact information where possible, Louis otherwise.

    Where the observed information is not positive definite (an eigenvalue of its correlation
    form at most ``1e-8`` times the largest), the standard errors of every parameter touched by those directions are
    NaN; where a parameter is at the edge of its constraint (:func:`degeneracy`), its standard
    errors are NaN too (the normal approximation does not hold at a boundary). Either way a
    :class:`~mcem.MonteCarloWarning` (key ``"information_not_pd"`` or ``"boundary_estimate"``)
    says which parameters, why and what to do, and ``Inference.problems`` and
    ``Inference.flags`` record it.
    """
    info, arrays = observed_information(model, theta, draws, method=method)
    u = model.to_unconstrained(theta)
    names = _flat_names(model)
    used = "exact" if arrays is None else "louis"
    problems, flags = [], {}
    pd, touched, text = _non_pd_problem(model, u, info, used, names)
    w, V, sc, bad = _scaled_eigh(info)
    good = ~bad
    Vs = sc[:, None] * V[:, good]
    cov_u = (Vs / w[good]) @ Vs.T  # the inverse on the identified directions
    if not pd:
        # NaN in every coordinate touched by a non-identified direction
        cov_u = cov_u.copy()
        cov_u[touched, :] = np.nan
        cov_u[:, touched] = np.nan
        problems.append(text)
        warnings.warn(
            MonteCarloWarning(f"standard_errors: {text}", key="information_not_pd",
                              value=float(np.linalg.eigvalsh(0.5 * (info + info.T)).min()), worse="low"),
            stacklevel=2,
        )
    cov, se_flat = _se_from_cov_u(model, u, cov_u)
    for k in np.flatnonzero(~np.isfinite(se_flat)):
        flags[names[k]] = "info not PD"
    edges = _edge_elements(model, theta)
    edge_idx = _edge_flat(model, edges)
    if edges:
        se_flat = se_flat.copy()
        se_flat[edge_idx] = np.nan
        cov = cov.copy()
        cov[edge_idx, :] = np.nan
        cov[:, edge_idx] = np.nan
        for k in edge_idx:
            flags[names[k]] = "at edge"
        listed = degeneracy(model, theta)
        text = (
            "the estimate is at the edge of the parameter space (a degenerate fit): "
            + "; ".join(listed)
            + ". Standard errors do not apply there: theirs are NaN, and those of the other "
            "parameters assume a regular interior maximum. Refit from other starting values, "
            "regularise (e.g. a variance floor such as reg_covar), or drop the component."
        )
        problems.append(text)
        warnings.warn(
            MonteCarloWarning(f"standard_errors: {text}", key="boundary_estimate", value=len(listed)),
            stacklevel=2,
        )
    se_mcse = np.zeros_like(se_flat)
    if arrays is not None:
        n_chain, n_draw = arrays[0].shape[:2]
        B = min(n_batches, n_draw)
        if B >= 2:
            # jackknife over contiguous batches of draws (all chains), for the MC error of the SEs
            batch_of = np.tile(np.arange(n_draw) * B // n_draw, n_chain)
            reps = []
            for b in range(B):
                info_b = _louis(*arrays, mask=batch_of != b)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cov_b = np.linalg.pinv(0.5 * (info_b + info_b.T))
                reps.append(_se_from_cov_u(model, u, cov_b)[1])
            reps = np.array(reps)
            se_mcse = np.sqrt((B - 1) / B * np.sum((reps - reps.mean(axis=0)) ** 2, axis=0))
    se_mcse = np.where(np.isfinite(se_flat), se_mcse, np.nan)
    return Inference(
        se=_unflatten(model, se_flat),
        se_mcse=_unflatten(model, se_mcse),
        cov=cov,
        cov_unconstrained=cov_u,
        information=info,
        names=names,
        method=used,
        positive_definite=pd,
        problems=problems,
        flags=flags,
    )

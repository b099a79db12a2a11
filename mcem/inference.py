"""After the fit: standard errors (Louis 1982) and the marginal log-likelihood.

Standard errors
    With draws z_j from p(z | x; theta_hat), Louis' identity gives the observed information

        I(theta_hat) = E[-Hessian log p(x, z; theta)] - Var[score of log p(x, z; theta)],

    both expectations over the posterior and estimated by averages over the draws. Derivatives
    are taken in the unconstrained coordinates by central differences (each difference one
    vectorised call over all draws), inverted there, and mapped to the constrained parameters by
    the delta method. Where the model has an exact log-likelihood, its Hessian is used instead.
    The Monte Carlo error of the standard errors is estimated by the jackknife over batches of
    draws.

Marginal log-likelihood
    Exact where the model has it. Otherwise by importance sampling: for conditionally
    independent units, one proposal per unit (Student-t on the unconstrained scale, fitted to the
    final draws; for finite discrete units the sum over states is exact), so the estimate is a
    sum of independent one-unit estimates; for a joint latent vector, one multivariate Student-t
    proposal. Samples are drawn in batches until the Monte Carlo standard error reaches a
    target (``target_se``, default 0.05) or a budget is spent (then a warning), and the known
    downward bias of the log of a mean weight is removed to first order.

Degenerate fits
    :func:`degeneracy` names the parameters at the edge of their constraint (a collapsed
    mixture component, an empty one, a singular covariance); :func:`standard_errors` says in
    ``Inference.problems`` which standard errors are NaN and why.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from . import mstep as M
from ._validation import as_generator, check_positive_float, check_positive_int
from .exceptions import MonteCarloWarning

__all__ = [
    "Inference",
    "observed_information",
    "standard_errors",
    "marginal_loglik",
    "LoglikEstimate",
    "degeneracy",
]


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


class LoglikEstimate(NamedTuple):
    """A marginal log-likelihood estimate with its Monte Carlo standard error.

    ``n_samples`` is the number of importance samples used (per unit for the per-unit
    estimator; 0 for an exact value) and ``bias_correction`` the amount added to the log of the
    mean importance weight to remove its first-order downward bias (``value`` includes it).
    """

    value: float
    mcse: float
    method: str
    n_samples: int = 0
    bias_correction: float = 0.0


def _flat_names(model):
    names = []
    for n in model.param_names:
        shape = model.params[n].shape
        if not shape:
            names.append(n)
        else:
            names.extend(f"{n}[{','.join(map(str, i))}]" for i in np.ndindex(shape))
    return names


def _theta_flat(model, u):
    th = model.from_unconstrained(u)
    return np.concatenate([np.asarray(th[n], dtype=float).ravel() for n in model.param_names])


def constrained_jacobian(model, u, h=1e-6):
    """d theta_flat / d u by central differences of the transforms (no data involved)."""
    cols = []
    for i in range(u.size):
        step = h * max(1.0, abs(u[i]))
        e = np.zeros_like(u)
        e[i] = step
        cols.append((_theta_flat(model, u + e) - _theta_flat(model, u - e)) / (2 * step))
    return np.stack(cols, axis=1)


def _score_arrays(model, theta, draws, h_score=1e-5, h_hess=1e-4):
    """Per-draw scores at u and at u +- h e_i: enough for any subset's Louis information."""
    u = model.to_unconstrained(theta)
    s0 = M.per_draw_scores(model, theta, draws, h=h_score)
    plus, minus, steps = [], [], []
    for i in range(u.size):
        step = h_hess * max(1.0, abs(u[i]))
        e = np.zeros_like(u)
        e[i] = step
        plus.append(M.per_draw_scores(model, model.from_unconstrained(u + e), draws, h=h_score))
        minus.append(M.per_draw_scores(model, model.from_unconstrained(u - e), draws, h=h_score))
        steps.append(step)
    return s0, np.stack(plus), np.stack(minus), np.array(steps)


def _louis(s0, plus, minus, steps, mask=None):
    """I = -mean Hessian - covariance of the scores, on the draws selected by ``mask``."""
    p = s0.shape[-1]
    if mask is None:
        flat0 = s0.reshape(-1, p)
        fp, fm = plus.reshape(p, -1, p), minus.reshape(p, -1, p)
    else:
        flat0 = s0.reshape(-1, p)[mask]
        fp, fm = plus.reshape(p, -1, p)[:, mask], minus.reshape(p, -1, p)[:, mask]
    H = ((fp.mean(axis=1) - fm.mean(axis=1)) / (2 * steps[:, None])).T  # H[:, i] = d score / d u_i
    H = 0.5 * (H + H.T)
    centred = flat0 - flat0.mean(axis=0)
    var = centred.T @ centred / max(flat0.shape[0] - 1, 1)
    return -H - var


def _exact_information(model, theta, h=1e-4):
    u = model.to_unconstrained(theta)
    p = u.size

    def ll(v):
        return model.exact_loglik(model.from_unconstrained(v))

    H = np.empty((p, p))
    steps = np.array([h * max(1.0, abs(x)) for x in u])
    for i in range(p):
        for j in range(i, p):
            ei = np.zeros(p)
            ej = np.zeros(p)
            ei[i], ej[j] = steps[i], steps[j]
            H[i, j] = H[j, i] = (
                ll(u + ei + ej) - ll(u + ei - ej) - ll(u - ei + ej) + ll(u - ei - ej)
            ) / (4 * steps[i] * steps[j])
    return -H


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
    arrays = _score_arrays(model, theta, draws)
    return _louis(*arrays), arrays


#: An eigenvalue of the observed information at most this times the largest is taken as zero.
_INFO_RTOL = 1e-12
#: A coordinate is touched by a flat direction (unit eigenvector) when its loading exceeds this.
_LOAD_TOL = 1e-4


def _label(name, idx):
    return name if idx == () else f"{name}[{','.join(map(str, idx))}]"


def _check_param_values(model, theta, what="theta"):
    """Float arrays of every parameter, of the declared shapes (values are not checked)."""
    if not isinstance(theta, dict):
        raise TypeError(f"{what} must be a dict of parameter arrays, got {type(theta).__name__}")
    missing = [n for n in model.param_names if n not in theta]
    if missing:
        raise ValueError(f"{what} is missing parameter(s) {missing}; expected all of {list(model.param_names)}")
    out = {}
    for n in model.param_names:
        try:
            v = np.asarray(theta[n], dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f"{what}[{n!r}] must be numeric, got {type(theta[n]).__name__}") from None
        shape = model.params[n].shape
        if v.shape != shape:
            try:
                v = np.broadcast_to(v, shape)
            except ValueError:
                raise ValueError(f"{what}[{n!r}] must have shape {shape}, got shape {v.shape}") from None
        out[n] = v
    return out


def _edge_elements(model, theta):
    """[(parameter name, index, reason)] for every parameter element (event) at its edge."""
    out = []
    for n, v in _check_param_values(model, theta).items():
        c = model.params[n]
        for idx, reason in c.edge(v):
            out.append((n, idx, reason))
    return out


def degeneracy(model, theta) -> list:
    """Parameters at the edge of their constraint: one sentence per element, empty when none.

    A collapsed mixture component (a variance near 0), an empty component (a weight near 0), a
    nearly singular covariance matrix or a value at an end of its interval: at such a point the
    fit is degenerate (the likelihood may be unbounded there) and standard errors do not apply.
    The criteria are those of :meth:`mcem.constraints.Constraint.edge` (see
    :mod:`mcem.constraints`); non-finite values are reported too.

    Parameters
    ----------
    model : Model
    theta : dict
        Parameter values of the declared shapes (they need not lie inside their constraints).

    Returns
    -------
    list of str
        E.g. ``["covariances[1] is at the edge of positive_definite(2, batch=(2,)): smallest
        eigenvalue 1.2e-14 (condition number 3e+13)"]``.
    """
    from .model import Model

    if not isinstance(model, Model):
        raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
    out = []
    for n, idx, reason in _edge_elements(model, theta):
        label = _label(n, idx)
        if reason.startswith("not finite"):
            out.append(f"{label} is {reason}")
        else:
            out.append(f"{label} is at the edge of {model.params[n]!r}: {reason}")
    return out


def _flat_index(model):
    """Parameter name -> (offset, shape) in the flat constrained vector."""
    out, off = {}, 0
    for n in model.param_names:
        shape = model.params[n].shape
        out[n] = (off, shape)
        off += int(np.prod(shape, dtype=int))
    return out


def _edge_flat(model, edges):
    """Flat constrained indices covered by edge elements (a matrix event covers its entries)."""
    where = _flat_index(model)
    hit = set()
    for n, idx, _ in edges:
        off, shape = where[n]
        sub = np.zeros(shape, dtype=bool)
        sub[idx] = True
        hit.update((off + np.flatnonzero(sub.ravel())).tolist())
    return sorted(hit)


def _non_pd_problem(model, u, info, method, names):
    """The directions where the information is not positive definite, described by name.

    Returns (positive_definite, unconstrained coordinates touched, sentence or None).
    """
    w, V = np.linalg.eigh(0.5 * (info + info.T))
    scale = float(np.max(np.abs(w))) if w.size else 0.0
    bad = w <= _INFO_RTOL * scale
    if not np.any(bad):
        return True, np.zeros(u.size, dtype=bool), None
    # unit eigenvectors: loadings below _LOAD_TOL are rounding noise, not a real dependence
    touched = np.any(np.abs(V[:, bad]) > _LOAD_TOL, axis=1)
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
        f"the observed information is not positive definite: {int(bad.sum())} of its {w.size} "
        f"eigenvalues are <= {_INFO_RTOL:g} times the largest ({scale:.3g}); the smallest is "
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

    Where the observed information is not positive definite (an eigenvalue at most ``1e-12``
    times the largest), the standard errors of every parameter touched by those directions are
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
    w, V = np.linalg.eigh(0.5 * (info + info.T))
    good = w > _INFO_RTOL * (float(np.max(np.abs(w))) if w.size else 0.0)
    cov_u = (V[:, good] / w[good]) @ V[:, good].T  # the inverse on the identified directions
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


# ---------------------------------------------------------------- marginal log-likelihood
def _unit_log_weights_discrete(model, theta):
    (name,) = model.latent_names
    spec = model.latents[name]
    states = {name: np.broadcast_to(np.arange(spec.K)[:, None], (spec.K, spec.shape[0]))}
    lp = np.asarray(model.log_joint(theta, states))  # (K, N)
    return float(logsumexp(lp, axis=0).sum())


def _enumerate_joint(model, theta):
    names = model.latent_names
    specs = [model.latents[n] for n in names]
    sizes = [int(np.prod(s.shape, dtype=int)) for s in specs]
    grids = np.meshgrid(*[np.arange(s.K) for s, k in zip(specs, sizes, strict=True) for _ in range(k)], indexing="ij")
    flat = np.stack([g.ravel() for g in grids], axis=1)  # (n_states, total elements)
    z, off = {}, 0
    for n, s, k in zip(names, specs, sizes, strict=True):
        z[n] = flat[:, off : off + k].reshape((-1,) + s.shape)
        off += k
    return float(logsumexp(model.log_joint_sum(theta, z, 1)))


#: Floats per array in one batch of importance samples (about 16 MB): the batch size is this
#: divided by the size of one sample (latent elements, or observations when the model says).
_BATCH_ELEMENTS = 2_000_000
#: Samples in the first batch of an adaptive run.
_FIRST_BATCH = 1000


def marginal_loglik(
    model,
    theta,
    draws=None,
    *,
    n_samples=None,
    target_se=0.05,
    max_samples=100_000,
    batch_size=None,
    df=5.0,
    rng=None,
    max_states=100_000,
) -> LoglikEstimate:
    """log p(x; theta) with its Monte Carlo standard error.

    Exact when the model has ``loglik``, when its only latent is discrete with per-unit terms
    (the sum over states per unit), or when all latents are discrete with at most ``max_states``
    joint states (the sum over all of them). Otherwise importance sampling with Student-t(``df``)
    proposals fitted to ``draws`` on the unconstrained scale: per unit when the model has
    per-unit terms and one unit latent (the estimate is a sum of independent one-unit
    estimates), jointly otherwise.

    Parameters
    ----------
    model : Model
    theta : dict
        The parameters (usually the fitted ones).
    draws : dict, optional
        Posterior draws ``(chain, draw, *latent_shape)`` at ``theta`` (``fit.draws``); needed for
        importance sampling, to fit the proposals.
    n_samples : int, optional
        A fixed number of importance samples (per unit for the per-unit estimator). When given,
        ``target_se`` and ``max_samples`` are not used and no warning is issued.
    target_se : float
        The standard error to reach (default 0.05, in log-likelihood units). Samples are drawn
        in batches; after each batch the standard error is estimated from all samples so far
        and the number of samples is grown (by the projection ``SE^2 ~ 1 / R``) until the
        target is met or ``max_samples`` are spent.
    max_samples : int
        The budget of importance samples (per unit for the per-unit estimator). When it is spent
        before the target is met, a :class:`~mcem.MonteCarloWarning` (key ``"loglik_se"``, value
        the standard error reached) says so.
    batch_size : int, optional
        Samples per batch; default from memory, about 2e6 floats per array.
    df : float
        Degrees of freedom of the Student-t proposals.
    rng : None, int or Generator
    max_states : int
        Enumerate discrete latents up to this many joint states.

    Returns
    -------
    LoglikEstimate
        ``value``, ``mcse``, ``method``, ``n_samples`` (importance samples used, per unit for
        the per-unit estimator; 0 when exact) and ``bias_correction`` (the amount added to the
        log of the mean weight, see Notes).

    Notes
    -----
    The log of a mean of ``R`` importance weights is biased low: by the delta method
    ``E[log mean(w)] ~ log E[w] - Var(w) / (2 R E[w]^2)``. The estimate adds the estimated
    relative variance ``Var(w) / (2 R mean(w)^2)`` back (per unit for the per-unit estimator),
    which removes the bias to first order; the standard error is the delta-method
    ``sqrt(sum Var(w) / (R mean(w)^2))``.
    """
    from .model import Model

    if not isinstance(model, Model):
        raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
    if n_samples is not None:
        n_samples = check_positive_int(n_samples, "n_samples", minimum=2)
    target_se = check_positive_float(target_se, "target_se")
    max_samples = check_positive_int(max_samples, "max_samples", minimum=2)
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size", minimum=2)
    df = check_positive_float(df, "df")
    theta = model.check_theta(theta, "theta")
    if model.loglik_fn is not None:
        return LoglikEstimate(model.exact_loglik(theta), 0.0, "exact")
    names = model.latent_names
    if len(names) == 1 and model.latents[names[0]].is_discrete and model.latents[names[0]].unit and model.per_unit:
        return LoglikEstimate(_unit_log_weights_discrete(model, theta), 0.0, "exact (sum over states)")
    if all(model.latents[n].is_discrete for n in names):
        n_states = np.prod([float(model.latents[n].K) ** int(np.prod(model.latents[n].shape, dtype=int)) for n in names])
        if n_states <= max_states:
            return LoglikEstimate(_enumerate_joint(model, theta), 0.0, "exact (sum over all latent states)")
    if draws is None:
        raise ValueError("importance sampling needs posterior draws at the estimate (draws=...)")
    if any(model.latents[n].is_discrete for n in names):
        raise ValueError(
            "marginal_loglik: importance sampling is implemented for continuous latents; model "
            f"{model.name!r} has discrete latents without per-unit terms"
        )
    draws = _check_draws(model, draws)
    rng = as_generator(rng)
    per_unit = len(names) == 1 and model.latents[names[0]].unit and model.per_unit
    if per_unit:
        sampler, method = _per_unit_proposal(model, theta, draws, df), "importance sampling (per unit)"
        per_sample = int(np.prod(model.latents[names[0]].shape, dtype=int))
    else:
        sampler, method = _joint_proposal(model, theta, draws, df), "importance sampling (joint)"
        per_sample = sum(int(np.prod(model.latents[n].shape, dtype=int)) for n in names)
    per_sample = max(per_sample, model.n_obs or 0, 1)
    cap = batch_size if batch_size is not None else max(2, _BATCH_ELEMENTS // per_sample)
    acc = _WeightSums()
    goal = n_samples if n_samples is not None else min(max_samples, _FIRST_BATCH)
    while True:
        while acc.R < goal:
            acc.add(sampler(min(cap, goal - acc.R), rng))
        value, se, corr = acc.estimate()
        if n_samples is not None or se <= target_se or acc.R >= max_samples or not np.isfinite(se):
            break
        goal = min(max_samples, max(int(np.ceil(1.1 * acc.R * (se / target_se) ** 2)), acc.R + 64))
    if n_samples is None and not se <= target_se:
        need = (f"about {int(np.ceil(acc.R * (se / target_se) ** 2)):,} samples would reach it"
                if np.isfinite(se) else "the proposal misses the posterior of some unit")
        warnings.warn(
            MonteCarloWarning(
                f"marginal_loglik: the importance-sampling standard error is {se:.3g} after "
                f"{acc.R:,} samples{' per unit' if per_unit else ''} (max_samples={max_samples:,}), "
                f"above target_se={target_se:g}; the log-likelihood, AIC and BIC carry that much "
                f"Monte Carlo error ({need}). Raise max_samples, or give more posterior draws "
                "(draws=...) so that the proposal fits better.",
                key="loglik_se",
                value=float(se),
                worse="high",
            ),
            stacklevel=2,
        )
    return LoglikEstimate(value, se, method, int(acc.R), corr)


class _WeightSums:
    """Running log-sums of importance weights and of their squares, per unit (or one joint unit).

    From ``L1 = log sum w`` and ``L2 = log sum w^2`` over ``R`` samples: the log mean weight
    ``L1 - log R`` and the relative variance of the mean ``Var(w) / (R mean(w)^2)``, which is
    ``(R sum w^2 / (sum w)^2 - 1) / (R - 1)`` (sample variance with ``R - 1``).
    """

    def __init__(self):
        self.L1 = self.L2 = None
        self.R = 0

    def add(self, lw):
        lw = np.asarray(lw, dtype=float)
        lw = np.where(np.isnan(lw), -np.inf, lw)
        with np.errstate(divide="ignore", invalid="ignore"):
            l1, l2 = logsumexp(lw, axis=0), logsumexp(2.0 * lw, axis=0)
            if self.L1 is None:
                self.L1, self.L2 = l1, l2
            else:
                self.L1, self.L2 = np.logaddexp(self.L1, l1), np.logaddexp(self.L2, l2)
        self.R += lw.shape[0]

    def estimate(self):
        """(bias-corrected estimate, standard error, bias correction added)."""
        R = self.R
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            logmean = self.L1 - np.log(R)
            ratio = np.exp(self.L2 + np.log(R) - 2.0 * self.L1)  # R sum w^2 / (sum w)^2, in [1, R]
            rel = np.atleast_1d(np.maximum(ratio - 1.0, 0.0) / (R - 1))
        hit = np.isfinite(self.L1)  # a unit whose weights are all 0: log mean -inf, SE inf
        se = float(np.sqrt(np.sum(rel[hit]))) if np.all(hit) else float("inf")
        corr = float(0.5 * np.sum(rel[hit]))
        return float(np.sum(logmean)) + corr, se, corr


def _check_draws(model, draws):
    if not isinstance(draws, dict):
        raise TypeError(f"draws must be a dict latent name -> (chain, draw, *shape) array, got {type(draws).__name__}")
    out = {}
    for n in model.latent_names:
        shape = model.latents[n].shape
        if n not in draws:
            raise ValueError(f"draws has no draws of latent {n!r}; it holds {sorted(draws)}")
        z = np.asarray(draws[n], dtype=float)
        if z.shape[z.ndim - len(shape):] != shape or z.ndim < len(shape) + 1:
            want = ", ".join(["chain", "draw"] + [str(k) for k in shape])
            raise ValueError(f"draws[{n!r}] must have shape ({want}), got {z.shape}")
        z = z.reshape((-1,) + shape)
        if z.shape[0] < 2:
            raise ValueError(f"draws[{n!r}] must hold at least 2 draws to fit a proposal, got {z.shape[0]}")
        out[n] = z
    return out


def _per_unit_proposal(model, theta, draws, df):
    """A function ``(R, rng) -> log weights (R, N)``: one Student-t proposal per unit."""
    (name,) = model.latent_names
    spec = model.latents[name]
    sup = spec.support
    u = sup.inverse(draws[name])  # (draws, N, *rest)
    mu = u.mean(axis=0)
    sd = u.std(axis=0, ddof=1) * 1.2 + 1e-8  # a little wider than the posterior
    t = stats.t(df)
    N = spec.shape[0]

    def sample(R, rng):
        eps = t.rvs(size=(R,) + spec.shape, random_state=rng)
        uu = mu + sd * eps
        zz = sup.forward(uu)
        lq = (t.logpdf(eps) - np.log(sd)).reshape((R, N, -1)).sum(-1)  # density of uu
        ladj = sup.elementwise_log_abs_det_jacobian(uu).reshape((R, N, -1)).sum(-1)
        lp = np.asarray(model.log_joint(theta, {name: zz}), dtype=float)  # (R, N)
        return lp + ladj - lq  # weights for the density of z, via the unconstrained proposal

    return sample


def _joint_proposal(model, theta, draws, df):
    """A function ``(R, rng) -> log weights (R, 1)``: one multivariate Student-t proposal."""
    names = model.latent_names
    specs = [model.latents[n] for n in names]
    parts = [s.support.inverse(draws[n]).reshape(draws[n].shape[0], -1) for n, s in zip(names, specs, strict=True)]
    U = np.concatenate(parts, axis=1)
    dim = U.shape[1]
    mu = U.mean(axis=0)
    cov = np.cov(U, rowvar=False).reshape(dim, dim) * 1.2 + 1e-10 * np.eye(dim)
    prop = stats.multivariate_t(loc=mu, shape=cov, df=df)

    def sample(R, rng):
        uu = np.atleast_2d(prop.rvs(size=R, random_state=rng)).reshape(R, dim)
        lq = prop.logpdf(uu)
        z, off, ladj = {}, 0, np.zeros(R)
        for n, s in zip(names, specs, strict=True):
            size = int(np.prod(s.shape, dtype=int))
            block = uu[:, off : off + size].reshape((R,) + s.shape)
            z[n] = s.support.forward(block)
            ladj += s.support.elementwise_log_abs_det_jacobian(block).reshape(R, -1).sum(-1)
            off += size
        lp = np.asarray(model.log_joint_sum(theta, z, 1), dtype=float)
        return (lp + ladj - lq)[:, None]

    return sample

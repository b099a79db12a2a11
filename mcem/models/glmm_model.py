"""The random-intercept GLMM (logit link for Bernoulli or binomial responses, log link for
Poisson counts) as an :class:`mcem.Model`.

:func:`random_intercept_glmm` builds the model of :mod:`mcem.models.random_intercept` (parameters ``beta``
and ``sigma``, one random intercept ``u_g`` per group) with a per-group log joint (observations
are sorted by group once, then summed per group with ``np.add.reduceat``: no loop over groups or
observations), a summed fast path for Q evaluations and the analytic gradient in ``beta`` and
``sigma`` for the numerical M step. Its functions are module-level and read everything from
``model.data``, so the model and its blocks of groups (``model.subset``) pickle with the standard
library. :func:`mc_covariance` is the analytic Monte Carlo covariance of its M step and
:func:`simulate_random_intercept` simulates data from it. The quadrature oracle is in
:mod:`mcem.models.glmm_quadrature`.
"""

from __future__ import annotations

import numbers
from functools import partial

import numpy as np
from scipy.special import expit

from .. import constraints as C
from .._validation import check_choice, check_positive_int
from ..core import Continuous, Model
from ..mstep import _mean_covariance
from ._common import ready_model
from ._glmm_common import (
    FAMILIES,
    HALF_LOG_2PI,
    beta_sigma,
    check_inputs,
    glm_start,
    group_sum,
    normal_logpdf,
)
from ._glmm_passes import eta_blocks, flat_u, group_sizes, log1p_exp_neg_abs, logistic, residual_blocks
from .glmm_expand import expanded_mstep, intercept_column

__all__ = [
    "FAMILIES",
    "random_intercept_glmm",
    "mc_covariance",
    "simulate_random_intercept",
]


# --------------------------------------------------------------------------- the model
# module-level (picklable) pieces of the model; G, family and p come from the data
def _log_joint(theta, z, data):
    G, fam = data["n_groups"], data["family"]
    beta, sigma = beta_sigma(theta)
    u, uf = flat_u(z, G)
    lin = data["X"] @ beta + data["offset"]
    y, st = data["y"], data["starts"]
    out = np.empty(uf.shape)
    tmp = None
    for rows, eta in eta_blocks(lin, uf, group_sizes(data)):
        if tmp is None or tmp.shape != eta.shape:
            tmp = np.empty_like(eta)
        if fam != "poisson":
            log1p_exp_neg_abs(eta, tmp)  # softplus(eta) = max(eta, 0) + tmp
            np.add(tmp, np.maximum(eta, 0.0), out=tmp)
            if data["trials"] is not None:  # binomial: trials * softplus(eta) - log binomial(trials, y)
                tmp *= data["trials"]
                tmp += data["lgy"]
        else:
            with np.errstate(over="ignore"):
                np.exp(eta, out=tmp)
            tmp += data["lgy"]
        eta *= y
        eta -= tmp
        out[rows] = group_sum(eta, st)
    return out.reshape(u.shape) + normal_logpdf(u, sigma)


def _log_joint_total(theta, z, data):
    G, fam = data["n_groups"], data["family"]
    beta, sigma = beta_sigma(theta)
    u, uf = flat_u(z, G)
    lin = data["X"] @ beta + data["offset"]
    # sum_i y_i eta_i = y . lin + sum_g ysum_g u_g
    linear = data["y"] @ lin + uf @ data["ysum"]
    if fam == "logit" and data["trials"] is None:
        curv = np.empty(uf.shape[0])
        tmp = None
        for rows, eta in eta_blocks(lin, uf, group_sizes(data)):
            if tmp is None or tmp.shape != eta.shape:
                tmp = np.empty_like(eta)
            # sum softplus = sum max(eta, 0) + sum log(1 + exp(-|eta|)), and
            # sum max(eta, 0) = (sum eta + sum |eta|) / 2
            s_eta = eta.sum(axis=1)
            np.abs(eta, out=tmp)
            s_abs = tmp.sum(axis=1)
            curv[rows] = 0.5 * (s_eta + s_abs) + log1p_exp_neg_abs(eta, tmp).sum(axis=1)
        const = 0.0
    elif fam == "logit":  # binomial: sum_i trials_i softplus(eta_i), minus the log binomial coefficients
        curv = np.empty(uf.shape[0])
        tmp = None
        for rows, eta in eta_blocks(lin, uf, group_sizes(data)):
            if tmp is None or tmp.shape != eta.shape:
                tmp = np.empty_like(eta)
            log1p_exp_neg_abs(eta, tmp)
            tmp += np.maximum(eta, 0.0)
            curv[rows] = tmp @ data["trials"]
        const = data["lgy"].sum()
    else:
        # sum_i exp(lin_i + u_g) = sum_g exp(u_g) sum_{i in g} exp(lin_i): O(G) per draw
        with np.errstate(over="ignore"):
            curv = np.exp(uf) @ group_sum(np.exp(lin), data["starts"])
        const = data["lgy"].sum()
    prior = -0.5 * np.sum(uf**2, axis=-1) / sigma**2 - G * (np.log(sigma) + HALF_LOG_2PI)
    return (linear - curv - const + prior).reshape(u.shape[:-1])


def _hessian(theta, z, data):
    """The Hessian of the log joint in the unconstrained parameters (beta, log sigma), averaged
    over the batch: ``-X' diag(mean_j w_ij) X`` for beta (w the GLM weights), ``-2 mean_j
    sum_g u_g^2 / sigma^2`` for log sigma, no cross terms; one pass over the linear predictor."""
    G, fam, p = data["n_groups"], data["family"], data["X"].shape[1]
    beta, sigma = beta_sigma(theta)
    _, uf = flat_u(z, G)
    lin = data["X"] @ beta + data["offset"]
    wsum = np.zeros(lin.shape[0])
    for _, eta in eta_blocks(lin, uf, group_sizes(data)):
        if fam != "poisson":
            _, t, r = logistic(eta)
            t *= r
            t *= r
            wsum += t.sum(axis=0)
        else:
            with np.errstate(over="ignore"):
                wsum += np.exp(eta, out=eta).sum(axis=0)
    if data["trials"] is not None:
        wsum *= data["trials"]
    B = max(uf.shape[0], 1)
    H = np.zeros((p + 1, p + 1))
    H[:p, :p] = -(data["X"] * (wsum / B)[:, None]).T @ data["X"]
    H[p, p] = -2.0 * np.sum(uf**2) / B / sigma**2
    return H


class _SigmaUpdate:
    """The closed-form part of the M step: ``sigma^2 = mean_j sum_g u_g^2 / G`` maximises Q_hat
    in sigma whatever beta is (the random effects' normal density is the only term with sigma).
    ``names``, ``stats`` and ``update`` as :class:`mcem.lang.structure.ClosedForm`."""

    names = ("sigma",)
    complete = False

    def __init__(self, n_groups):
        self.n_groups = n_groups

    def stats(self, z):
        u = np.asarray(z["u"], dtype=float).reshape(-1, self.n_groups)
        return {"sum_sq": np.asarray(np.mean(np.sum(u**2, axis=1)))}

    def update(self, stats):
        return {"sigma": float(np.sqrt(max(float(stats["sum_sq"]) / self.n_groups, 1e-300)))}

    def describe(self):
        return ["sigma from the mean square of the random intercepts"]


def _grad_params(theta, z, data):
    G, p = data["n_groups"], data["X"].shape[1]
    beta, sigma = beta_sigma(theta)
    u, uf = flat_u(z, G)
    gb = np.empty((uf.shape[0], p))
    for rows, resid in residual_blocks(beta, uf, data):
        gb[rows] = resid @ data["X"]
    return {
        "beta": gb.reshape(u.shape[:-1] + (p,)),
        "sigma": np.sum(u**2, axis=-1) / sigma**3 - G / sigma,
    }


def _unit_scores(theta, z, data):
    """Each group's score in the unconstrained parameters (beta, then log sigma), per draw:
    shape ``batch + (G, p + 1)``; one pass over the linear predictor."""
    G, p = data["n_groups"], data["X"].shape[1]
    beta, sigma = beta_sigma(theta)
    u, uf = flat_u(z, G)
    out = np.empty((uf.shape[0], G, p + 1))
    for rows, resid in residual_blocks(beta, uf, data):
        for j in range(p):  # a loop over the few fixed effects, each vectorised over draws and groups
            out[rows, :, j] = group_sum(resid * data["X"][:, j], data["starts"])
    out[..., p] = uf**2 / sigma**2 - 1.0  # d/d log sigma of the group's normal log density
    return out.reshape(u.shape[:-1] + (G, p + 1))


def _value_and_grad(theta, z, data):
    G, fam, p = data["n_groups"], data["family"], data["X"].shape[1]
    if fam != "logit" or data["trials"] is not None:  # Poisson: the total is O(G) per draw, nothing to share
        return _log_joint_total(theta, z, data), _grad_params(theta, z, data)
    # logit: one pass over the linear predictor for both; with t = exp(-|eta|),
    # softplus(eta) = max(eta, 0) + log1p(t) and sigmoid(eta) = (1 or t) / (1 + t)
    beta, sigma = beta_sigma(theta)
    u, uf = flat_u(z, G)
    lin = data["X"] @ beta + data["offset"]
    y, Xs = data["y"], data["X"]
    curv = np.empty(uf.shape[0])
    gb = np.empty((uf.shape[0], p))
    for rows, eta in eta_blocks(lin, uf, group_sizes(data)):
        # sum softplus = sum max(eta, 0) + sum log(1 + t) = (sum eta + sum |eta|) / 2 + ...
        curv[rows] = 0.5 * (eta.sum(axis=1) + np.abs(eta).sum(axis=1))
        mean, t, _ = logistic(eta)
        t += 1.0
        curv[rows] += np.log(t, out=t).sum(axis=1)  # log(1 + t) for t in (0, 1]: abs. error ~1e-16
        np.subtract(y, mean, out=mean)
        gb[rows] = mean @ Xs
    linear = data["y"] @ lin + uf @ data["ysum"]
    prior = -0.5 * np.sum(uf**2, axis=-1) / sigma**2 - G * (np.log(sigma) + HALF_LOG_2PI)
    total = (linear - curv + prior).reshape(u.shape[:-1])
    grads = {"beta": gb.reshape(u.shape[:-1] + (p,)),
             "sigma": np.sum(u**2, axis=-1) / sigma**3 - G / sigma}
    return total, grads


def random_intercept_glmm(X, y, group, family="logit", offset=None, init=None, trials=None) -> Model:
    """The random-intercept GLMM as an :class:`mcem.Model`.

    Parameters
    ----------
    X : array (n_obs, p) or (n_obs,)
        Fixed-effect design matrix (include a column of ones for an intercept).
    y : array (n_obs,)
        Responses: 0/1 for ``family="logit"`` (with ``trials``: integer counts of successes
        between 0 and ``trials``), non-negative integer counts for ``"poisson"``.
    group : array of int (n_obs,)
        Group labels 0..G-1; every group must have at least one observation.
    family : {"logit", "poisson"}
    offset : array (n_obs,), optional
        Known term added to the linear predictor (for Poisson rates, log exposure).
    init : dict, optional
        Initial ``beta`` and/or ``sigma``; default: the GLM fit without random effects for
        ``beta`` and ``sigma = 1``.
    trials : array of positive int (n_obs,), optional
        Binomial denominators (``family="logit"`` only): ``y_i ~ Binomial(trials_i,
        expit(eta_i))``. The log joint includes the log binomial coefficients, so the
        log-likelihood is R's ``glmer`` with ``cbind(y, trials - y)``.

    Returns
    -------
    Model
        Parameters ``beta`` (real, ``(p,)``) and ``sigma`` (positive); latent ``u``
        (``Continuous(shape=G, unit=True)``). ``log_joint`` returns per-group terms; the model
        also has ``log_joint_total``, ``grad_params``, ``value_and_grad``, the exact ``hessian``
        and ``unit_scores``, sigma's closed-form update (``partial_mstep``), the
        parameter-expanded M step ``expanded_mstep(theta, draws)`` (PX-EM, taken by MCEM while
        its ascent is significant: :mod:`mcem.models.glmm_expand`) and ``n_obs``. ``model.data`` holds the
        observations sorted by group (``order`` maps back to the input order).
    """
    d = check_inputs(X, y, group, family, offset, trials)
    d["intercept"] = intercept_column(d["X"])
    p, G, n = d["X"].shape[1], d["n_groups"], d["X"].shape[0]
    fam = d["family"]
    if init is not None and not isinstance(init, dict):
        raise TypeError(f"init must be a dict with 'beta' and/or 'sigma', got {type(init).__name__}")
    start = {"sigma": 1.0, **(init or {})}
    if "beta" not in start:
        start["beta"] = glm_start(d)

    model = ready_model(
        _log_joint, _grad_params, _log_joint_total, _value_and_grad, _unit_scores, _hessian,
        params={"beta": C.real(shape=p), "sigma": C.positive},
        latents={"u": Continuous(C.real, shape=G, unit=True)},
        data=d, init=start, n_obs=n, name=f"random_intercept_glmm({fam}, p={p}, G={G})",
    )
    # refers to model.data, so that pickling the model carries the data once
    model.subset_fn = partial(_subset, model.data, fam, start)
    model.partial_mstep = _SigmaUpdate(G)
    model.expanded_mstep = partial(expanded_mstep, model.data)
    return model


def _subset(d, family, start, units):
    """The GLMM of the groups ``units``: their observations (sorted by group), relabelled."""
    rows = np.isin(d["group"], units)
    labels = np.searchsorted(units, d["group"][rows])
    trials = None if d["trials"] is None else d["trials"][rows]
    return random_intercept_glmm(d["X"][rows], d["y"][rows], labels, family=family,
                                 offset=d["offset"][rows], init=start, trials=trials)


# --------------------------------------------------------------------------- Monte Carlo error
def _check_glmm_model(model):
    data = getattr(model, "data", None)
    if not isinstance(data, dict) or data.get("family") not in FAMILIES or "starts" not in data:
        raise TypeError(
            f"model must be made by random_intercept_glmm, got {getattr(model, 'name', type(model).__name__)!r}"
        )
    return data


def mc_covariance(model, theta, draws):
    """Monte Carlo covariance of the M-step maximiser of Q_hat, in ``(beta, log sigma)``.

    The analytic counterpart of :func:`mcem.mstep.update_covariance` for this model:
    ``H^-1 V H^-1`` with ``V`` the batch-means covariance of the mean per-draw score (from the
    model's ``grad_params``) and ``H`` the analytic Hessian of Q_hat,
    ``-X' diag(mean_j w_ij) X`` for ``beta`` (w the GLM weights) and ``-2 mean_j sum_g u_g^2 /
    sigma^2`` for ``log sigma`` (the cross terms vanish). Two passes over the draws instead of
    finite differences. The order matches ``model.to_unconstrained`` (``beta`` then ``sigma``).
    """
    d = _check_glmm_model(model)
    theta = model.check_theta(theta, "theta")
    u = np.asarray(draws["u"], dtype=float)
    if u.ndim != 3 or u.shape[-1] != d["n_groups"]:
        raise ValueError(
            f"draws['u'] must have shape (chain, draw, {d['n_groups']}), got shape {u.shape}"
        )
    sigma = beta_sigma(theta)[1]
    g = model.grad_params_fn(theta, {"u": u}, d)
    scores = np.concatenate([g["beta"], (sigma * g["sigma"])[..., None]], axis=-1)  # (c, m, p+1)
    V = _mean_covariance(scores)
    H = _hessian(theta, {"u": u}, d)
    Hinv = np.linalg.inv(H)
    return Hinv @ V @ Hinv


# --------------------------------------------------------------------------- simulation
def simulate_random_intercept(n_groups, n_per_group, beta, sigma, family="logit", rng=None,
                              x_scale=1.0, offset=None, trials=None):
    """Simulated data from the model: ``X`` (intercept + standard-normal covariates), ``y``, ``group``.

    ``beta[0]`` is the intercept; the other ``len(beta) - 1`` columns are N(0, ``x_scale``^2).
    ``offset``: None or an array of length ``n_groups * n_per_group`` added to the linear
    predictor. ``trials`` (``family="logit"`` only): binomial denominators, a positive int or
    an array of that length. Returns a dict with ``X``, ``y``, ``group``, ``offset``, the true
    ``u`` and, when given, ``trials``.
    """
    rng = np.random.default_rng(rng)
    check_choice(family, "family", set(FAMILIES))
    G = check_positive_int(n_groups, "n_groups")
    m = check_positive_int(n_per_group, "n_per_group")
    beta = np.asarray(beta, dtype=float).reshape(-1)
    if not isinstance(sigma, numbers.Real) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    n = G * m
    X = np.column_stack([np.ones(n), x_scale * rng.standard_normal((n, beta.size - 1))])
    group = np.repeat(np.arange(G), m)
    u = sigma * rng.standard_normal(G)
    off = np.zeros(n) if offset is None else np.asarray(offset, dtype=float).reshape(n)
    if trials is not None:  # checked (and sorted by group: the identity here)
        trials = check_inputs(np.ones(n), np.zeros(n), group, family, None, trials)["trials"]
    eta = X @ beta + u[group] + off
    if trials is not None:
        y = rng.binomial(trials.astype(np.int64), expit(eta)).astype(float)
    elif family == "logit":
        y = (rng.random(n) < expit(eta)).astype(float)
    else:
        y = rng.poisson(np.exp(eta)).astype(float)
    out = {"X": X, "y": y, "group": group, "offset": off, "u": u}
    return out if trials is None else {**out, "trials": trials}

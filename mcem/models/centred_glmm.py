"""The random-intercept GLMM in its hierarchically centred form (Gelfand, Sahu & Carlin 1995).

The model of :func:`mcem.models.random_intercept.random_intercept_glmm`, with the same parameters
``beta`` (in the columns' order of ``X``) and ``sigma``, but another latent: instead of the
random intercept ``u_g`` the sampler draws the group's level

    v_g = z_g' beta_Z + u_g  ~  N(z_g' beta_Z, sigma^2),       eta_i = v_g(i) + w_i' beta_W + offset_i

where ``Z`` are the columns of ``X`` that are constant within every group (the intercept and the
group-level covariates) and ``W`` the others. The joint density of the data and the latents is
the same up to the shift ``v = Z beta_Z + u`` (whose Jacobian is 1), so the likelihood is the
same. EM is not: with ``u`` a change of ``beta_Z`` moves every group's linear predictor while the
draws of ``u`` hold them where they were, so EM recovers only a small part of each step when
the groups' levels are well determined (the fraction of missing information for ``beta_Z`` is
close to one); with ``v`` the M step for ``beta_Z`` and ``sigma`` is a regression of the drawn
levels on ``Z``, and EM converges in a few iterations.

The log joint returns one term per group; ``log_joint_total``, the analytic ``grad_params`` and
``value_and_grad`` work through the draws in cache-sized blocks (no loop over groups or
observations). The functions are module-level and read everything from ``model.data``, so the
model pickles.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from .. import constraints as C
from ..core import Continuous, Model
from ._common import ready_model
from ._glmm_common import HALF_LOG_2PI, check_inputs, glm_start, group_sum, mean_and_weight, obs_loglik

__all__ = ["centred_glmm"]

_CHUNK = 1 << 16  # elements (draws x observations) per block


def _parts(theta, z, data):
    """beta, sigma, the levels v as (B, G), and the prior residuals v - Z beta_Z (B, G)."""
    beta = np.asarray(theta["beta"], dtype=float)
    sigma = float(theta["sigma"])
    v = np.asarray(z["v"], dtype=float)
    vf = v.reshape(-1, data["n_groups"])
    return beta, sigma, v, vf, vf - data["Z"] @ beta[data["z_cols"]]


def _blocks(beta, vf, data):
    """Yield ``(rows, eta)`` over blocks of the draws: eta = v[group] + W beta_W + offset."""
    lin = data["W"] @ beta[data["w_cols"]] + data["offset"]
    step = max(1, _CHUNK // lin.size)
    for a in range(0, vf.shape[0], step):
        rows = slice(a, min(vf.shape[0], a + step))
        eta = np.take(vf[rows], data["group"], axis=1)
        eta += lin
        yield rows, eta


def _prior(dev, sigma):
    return -0.5 * (dev / sigma) ** 2 - np.log(sigma) - HALF_LOG_2PI


def _log_joint(theta, z, data):
    beta, sigma, v, vf, dev = _parts(theta, z, data)
    out = np.empty(vf.shape)
    for rows, eta in _blocks(beta, vf, data):
        ll = obs_loglik(eta, data["y"], data["family"], data["lgy"], data["trials"])
        out[rows] = group_sum(ll, data["starts"])
    return (out + _prior(dev, sigma)).reshape(v.shape)


def _log_joint_total(theta, z, data):
    return _value_and_grad(theta, z, data, grad=False)[0]


def _grad_params(theta, z, data):
    return _value_and_grad(theta, z, data)[1]


def _value_and_grad(theta, z, data, grad=True):
    beta, sigma, v, vf, dev = _parts(theta, z, data)
    batch, (B, G) = v.shape[:-1], vf.shape
    total = np.empty(B)
    gw = np.empty((B, data["w_cols"].size))
    for rows, eta in _blocks(beta, vf, data):
        total[rows] = obs_loglik(eta, data["y"], data["family"], data["lgy"], data["trials"]).sum(axis=1)
        if grad:
            gw[rows] = (data["y"] - mean_and_weight(eta, data["family"], data["trials"])[0]) @ data["W"]
    total += np.sum(_prior(dev, sigma), axis=1)
    if not grad:
        return total.reshape(batch), None
    gb = np.empty((B, beta.size))
    gb[:, data["w_cols"]] = gw
    gb[:, data["z_cols"]] = dev @ data["Z"] / sigma**2
    grads = {"beta": gb.reshape(batch + (beta.size,)),
             "sigma": (np.sum(dev**2, axis=1) / sigma**3 - G / sigma).reshape(batch)}
    return total.reshape(batch), grads


def centred_glmm(X, y, group, family="logit", offset=None, init=None, trials=None) -> Model:
    """The random-intercept GLMM with the group levels ``v_g = z_g' beta_Z + u_g`` as its latent.

    Parameters
    ----------
    X, y, group, family, offset, trials
        As in :func:`mcem.models.random_intercept.random_intercept_glmm` (``trials``: binomial
        denominators with ``family="logit"``). The columns of ``X`` that are constant within
        every group (an intercept, group-level covariates) form ``Z``, the others ``W``.
    init : dict, optional
        Initial ``beta`` and/or ``sigma``; default: the GLM fit without random effects and
        ``sigma = 1``.

    Returns
    -------
    Model
        Parameters ``beta`` (real, ``(p,)``, the columns of ``X``) and ``sigma`` (positive), as
        in ``random_intercept_glmm``, so its estimates, standard errors and quadrature oracle
        apply unchanged; latent ``v`` (``Continuous(shape=G, unit=True)``, starting at
        ``Z beta_Z``). Per-group ``log_joint``, ``log_joint_total``, ``grad_params``,
        ``value_and_grad`` and ``n_obs``. ``model.data`` holds the observations sorted by group,
        ``z_cols`` and ``w_cols``.
    """
    d = check_inputs(X, y, group, family, offset, trials)
    Xs, G, n = d["X"], d["n_groups"], d["X"].shape[0]
    first = Xs[d["starts"]][d["group"]]  # each row's group's first row
    constant = np.all(Xs == first, axis=0)
    d["z_cols"], d["w_cols"] = np.flatnonzero(constant), np.flatnonzero(~constant)
    d["Z"], d["W"] = Xs[d["starts"]][:, constant], Xs[:, ~constant]
    if init is not None and not isinstance(init, dict):
        raise TypeError(f"init must be a dict with 'beta' and/or 'sigma', got {type(init).__name__}")
    start = {"sigma": 1.0, **(init or {})}
    if "beta" not in start:
        start["beta"] = glm_start(d)
    beta0 = np.asarray(start["beta"], dtype=float).reshape(-1)
    if beta0.shape != (Xs.shape[1],):
        raise ValueError(f"init['beta'] must have shape ({Xs.shape[1]},) (one per column of X), got {beta0.shape}")
    return ready_model(
        _log_joint, _log_joint_total, _grad_params, partial(_value_and_grad, grad=True),
        params={"beta": C.real(shape=Xs.shape[1]), "sigma": C.positive},
        latents={"v": Continuous(C.real, shape=G, unit=True, init=d["Z"] @ beta0[d["z_cols"]])},
        data=d, init=start, n_obs=n,
        name=f"centred_glmm({d['family']}{', binomial' if d['trials'] is not None else ''}, p={Xs.shape[1]}, "
             f"G={G}, group-level columns {d['z_cols'].tolist()})",
    )

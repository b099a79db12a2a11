"""The exact categorical q for a discrete unit latent, and the bound's terms under it.

For a model whose only latent is ``Discrete(K, shape=(N, ...), unit=True)`` with per-unit terms,
the family of all categorical distributions per unit contains the posterior, so the best q at
``theta`` is ``r_nk = p(z_n = k | x_n; theta)``, found by enumerating the K states. Then

    L(q, theta') = Q(theta'; theta) + H(q),     log p(x; theta') = L(q, theta') + KL(q || p(. | x; theta'))

with ``Q(theta'; theta) = sum_nk r_nk log p(x_n, z_n = k; theta')`` and ``H(q) = -sum_nk r_nk log r_nk``;
at ``theta' = theta`` the KL is 0 and the bound touches the log-likelihood. :func:`bound_terms` gives
every term for a pair of parameters; :func:`maximise_q` is the M step (numerical, exact gradients
where the model has per-unit scores).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

from ..derivatives import central_difference

__all__ = ["enumerable", "states", "responsibilities", "BoundTerms", "bound_terms", "maximise_q"]


def enumerable(model) -> bool:
    """Whether the model's only latent is a discrete unit latent with per-unit terms."""
    names = model.latent_names
    return (len(names) == 1 and model.latents[names[0]].is_discrete and model.latents[names[0]].unit
            and model.per_unit)


def states(model) -> dict:
    """The K batch elements "state k in every unit", ``(K, N)``."""
    (name,) = model.latent_names
    spec = model.latents[name]
    return {name: np.broadcast_to(np.arange(spec.K)[:, None], (spec.K, spec.shape[0]))}


def _log_joint(model, theta, zs):
    with np.errstate(all="ignore"):
        return np.asarray(model.log_joint(theta, zs), dtype=float)


def responsibilities(model, theta, zs=None):
    """``(r, log p(x; theta), log p(x, z = k; theta))``: r and the joint are ``(K, N)``."""
    zs = states(model) if zs is None else zs
    lp = _log_joint(model, theta, zs)
    lse = logsumexp(lp, axis=0)
    return np.exp(lp - lse), float(lse.sum()), lp


class BoundTerms(NamedTuple):
    """The terms of ``log p(x; theta') = Q + H = L + KL`` for q the posterior at ``theta``."""

    loglik: float  # log p(x; theta')
    elbo: float  # L(q, theta') = Q + entropy(q)
    kl: float  # KL(q || p(z | x; theta')) = loglik - elbo
    q: float  # Q(theta'; theta)
    h: float  # H(theta'; theta) = -E_q[log p(z | x; theta')] = loglik - q
    entropy: float  # the entropy of q


def entropy(r) -> float:
    with np.errstate(all="ignore"):
        return float(-np.sum(np.where(r > 0, r * np.log(r), 0.0)))


def bound_terms(model, theta, theta_new, zs=None) -> BoundTerms:
    """The bound's terms at ``theta_new`` for q = p(z | x; ``theta``)."""
    zs = states(model) if zs is None else zs
    r, _, _ = responsibilities(model, theta, zs)
    lp = _log_joint(model, theta_new, zs)
    ll = float(logsumexp(lp, axis=0).sum())
    q = float(np.sum(np.where(r > 0, r * lp, 0.0)))
    ent = entropy(r)
    return BoundTerms(ll, q + ent, ll - q - ent, q, ll - q, ent)


def maximise_q(model, theta0, r, zs, options=None):
    """``theta`` maximising ``sum_nk r_nk log p(x_n, z_n = k; theta)``, and scipy's result.

    L-BFGS in the unconstrained coordinates; the gradient from the model's per-unit scores
    (exact for a compiled model) or central differences (one (K, N) evaluation per coordinate).
    """
    us = model.unit_scores_fn

    def f(u):
        th = model.from_unconstrained(u)
        val = float(np.sum(np.where(r > 0, r * _log_joint(model, th, zs), 0.0)))
        if not np.isfinite(val):
            return np.inf, np.zeros_like(u)
        if us is not None:
            g = np.einsum("kn,knp->p", r, np.asarray(us(th, zs, model.data), dtype=float))
        else:
            g = central_difference(
                lambda v: float(np.sum(np.where(r > 0, r * _log_joint(model, model.from_unconstrained(v), zs), 0.0))),
                u, 1e-5)
        return -val, -g

    opts = {"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10, **dict(options or {})}
    res = optimize.minimize(f, model.to_unconstrained(theta0), jac=True, method="L-BFGS-B", options=opts)
    return model.from_unconstrained(res.x), res

"""Variational families for VB-EM: q(z; phi) and the evidence lower bound.

For every continuous latent, q is a Gaussian on the unconstrained scale of its support
(``eta = support.inverse(z)``): one Gaussian per unit of a unit latent (axis 0 indexes the
units), one over all elements of any other latent. ``family="meanfield"`` (the default) makes
each Gaussian diagonal; ``family="fullrank"`` gives it a full covariance, ``L L^T`` with ``L``
lower triangular. ``phi`` travels as one flat vector (means, then log standard deviations, or
means, then the log diagonal and the strict lower triangle of ``L``, latent by latent in sorted
order). With ``z = forward(mu + L eps)``, ``eps ~ N(0, I)``,

    L(phi, theta) = E_q[log p(x, z; theta)] + H(q)
                  = E_eps[log p(x, forward(eta); theta) + log|d forward / d eta|] + H_gauss(phi),

and every expectation is an average over draws of ``eps`` (reparameterised), so the gradient
in ``phi`` comes from the model's gradient in the latents (:meth:`mcem.Model.grad_latents`:
exact for a compiled model) through the support's chain rule.

:func:`elbo_estimate` and :func:`importance_loglik` give the bound and log p(x; theta) with
their Monte Carlo errors from independent draws; their difference is KL(q || p(z | x; theta)).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

__all__ = ["GaussianQ", "Estimate", "elbo_estimate", "importance_loglik", "kl_estimate"]

_LOG_2PI = math.log(2.0 * math.pi)


class Estimate(NamedTuple):
    """A Monte Carlo estimate: ``value``, its standard error ``mcse`` and the draws it used."""

    value: float
    mcse: float
    n_draws: int


class _Block(NamedTuple):
    name: str
    shape: tuple  # the latent's shape
    n: int  # Gaussians (units, or 1)
    d: int  # dimension of each
    support: object


class GaussianQ:
    """The Gaussian family over a model's continuous latents (see the module docstring).

    Parameters
    ----------
    model : Model
        Every latent must be continuous.
    family : {"meanfield", "fullrank"}
    """

    def __init__(self, model, family="meanfield"):
        self.model = model
        self.family = family
        self.blocks = []
        for name in model.latent_names:
            spec = model.latents[name]
            size = int(np.prod(spec.shape, dtype=int))
            n = spec.shape[0] if spec.unit else 1
            self.blocks.append(_Block(name, spec.shape, n, size // max(n, 1), spec.support))
        self._sizes = []
        for b in self.blocks:
            k = b.d if family == "meanfield" else b.d * (b.d + 1) // 2
            self._sizes.append((b.n * b.d, b.n * k))
        self.size = int(sum(a + c for a, c in self._sizes))
        self.dim = int(sum(b.n * b.d for b in self.blocks))
        self._tril = {b.d: np.tril_indices(b.d, -1) for b in self.blocks}

    # ------------------------------------------------------------------ parameters
    def initial(self, scale=1.0) -> np.ndarray:
        """phi at the latents' initial values with standard deviation ``scale`` on the unconstrained scale."""
        parts = []
        for b, (nm, ns) in zip(self.blocks, self._sizes, strict=True):
            eta0 = np.asarray(b.support.inverse(self.model.latents[b.name].init), dtype=float)
            parts.append(np.broadcast_to(eta0, b.shape).reshape(nm))
            scales = np.full((b.n, b.d), math.log(scale))
            if self.family == "fullrank":
                scales = np.concatenate([scales, np.zeros((b.n, b.d * (b.d - 1) // 2))], axis=1)
            parts.append(scales.reshape(ns))
        return np.concatenate(parts) if parts else np.zeros(0)

    def unpack(self, phi):
        """``[(mean (n, d), L (n, d, d) or sd (n, d)), ...]`` per latent."""
        out, off = [], 0
        for b, (nm, ns) in zip(self.blocks, self._sizes, strict=True):
            mean = phi[off:off + nm].reshape(b.n, b.d)
            raw = phi[off + nm:off + nm + ns].reshape(b.n, -1)
            off += nm + ns
            if self.family == "meanfield":
                out.append((mean, np.exp(raw)))
            else:
                L = np.zeros((b.n, b.d, b.d))
                idx = np.arange(b.d)
                L[:, idx, idx] = np.exp(raw[:, :b.d])
                r, c = self._tril[b.d]
                L[:, r, c] = raw[:, b.d:]
                out.append((mean, L))
        return out

    def describe(self, phi) -> dict:
        """phi as plain arrays per latent: ``mean`` (the latent's shape, unconstrained scale) and
        ``sd`` (meanfield) or ``chol`` (fullrank: ``(n, d, d)``, n units or 1)."""
        out = {}
        for b, (mean, a) in zip(self.blocks, self.unpack(phi), strict=True):
            entry = {"mean": mean.reshape(b.shape).copy()}
            if self.family == "meanfield":
                entry["sd"] = a.reshape(b.shape).copy()
            else:
                entry["chol"] = a.copy()
            out[b.name] = entry
        return out

    def entropy(self, phi) -> float:
        """H(q) of the Gaussians on the unconstrained scale."""
        total = 0.5 * self.dim * (1.0 + _LOG_2PI)
        for b, (_, a) in zip(self.blocks, self.unpack(phi), strict=True):
            total += float(np.sum(np.log(a))) if self.family == "meanfield" else float(
                np.sum(np.log(np.diagonal(a, axis1=1, axis2=2))))
        return total

    # ------------------------------------------------------------------ draws
    def standard_draws(self, rng, S, match=False):
        """``eps``: per latent ``(S, n, d)`` standard normals. With ``match`` (S >= 2) every
        coordinate is centred and scaled over the S draws (for ``fullrank`` and S > d, each
        Gaussian's draws are whitened), so that a quadratic log density is integrated exactly."""
        eps = []
        for b in self.blocks:
            e = rng.standard_normal((S, b.n, b.d))
            if match and S >= 2:
                e = e - e.mean(axis=0)
                if self.family == "fullrank" and S > b.d:
                    C = np.einsum("snd,sne->nde", e, e) / S
                    Linv = np.linalg.inv(np.linalg.cholesky(C))
                    e = np.einsum("nde,sne->snd", Linv, e)
                else:
                    e = e / np.sqrt(np.mean(e * e, axis=0))
            eps.append(e)
        return eps

    def etas(self, phi, eps):
        """The unconstrained draws per latent, ``(S, n, d)``."""
        out = []
        for (mean, a), e in zip(self.unpack(phi), eps, strict=True):
            out.append(mean + (a * e if self.family == "meanfield" else np.einsum("nde,sne->snd", a, e)))
        return out

    def latents(self, etas, batch):
        """``(z, log|J|)``: the latents on their supports with leading ``batch`` axes, and the
        log Jacobian of the transforms per draw and Gaussian, ``(S, n)``."""
        z, logj = {}, []
        for b, eta in zip(self.blocks, etas, strict=True):
            S = eta.shape[0]
            v = eta.reshape((S,) + b.shape)
            z[b.name] = np.asarray(b.support.forward(v), dtype=float).reshape(tuple(batch) + b.shape)
            ej = np.asarray(b.support.elementwise_log_abs_det_jacobian(v), dtype=float)
            logj.append(np.broadcast_to(ej, v.shape).reshape(S, b.n, b.d).sum(-1))
        return z, logj

    def log_q(self, phi, eps):
        """log q(eta) per draw and Gaussian, ``(S, n)`` per latent (from the standard draws)."""
        out = []
        for b, (_, a), e in zip(self.blocks, self.unpack(phi), eps, strict=True):
            logdet = np.log(a).sum(-1) if self.family == "meanfield" else np.log(
                np.diagonal(a, axis1=1, axis2=2)).sum(-1)
            out.append(-0.5 * np.sum(e * e, axis=-1) - logdet - 0.5 * b.d * _LOG_2PI)
        return out

    def grad_phi(self, phi, eps, etas, z, grad_z):
        """The gradient in phi of ``mean_s f(eta_s) + H(q)``, where ``grad_z`` is the gradient of
        ``f``'s log density in the latents (per latent, shaped like ``z``) and ``f`` includes the
        log Jacobian of the supports."""
        parts = []
        for b, (mean, a), e, eta in zip(self.blocks, self.unpack(phi), eps, etas, strict=True):
            S = e.shape[0]
            v = eta.reshape((S,) + b.shape)
            gz = np.asarray(grad_z[b.name], dtype=float).reshape((S,) + b.shape)
            g = np.asarray(b.support.log_density_grad(v, gz), dtype=float).reshape(S, b.n, b.d)
            parts.append(g.mean(axis=0).ravel())
            if self.family == "meanfield":
                parts.append((np.mean(g * e, axis=0) * a + 1.0).ravel())
            else:
                G = np.einsum("snd,sne->nde", g, e) / S
                idx = np.arange(b.d)
                diag = G[:, idx, idx] * a[:, idx, idx] + 1.0
                r, c = self._tril[b.d]
                parts.append(np.concatenate([diag, G[:, r, c]], axis=1).ravel())
        return np.concatenate(parts) if parts else np.zeros(0)

    # ------------------------------------------------------------------ the bound
    def objective(self, theta, phi, eps):
        """``(mean_s [log p(x, z_s; theta) + log|J_s|] + H(q), its gradient in phi)`` over ``eps``."""
        model = self.model
        S = eps[0].shape[0]
        etas = self.etas(phi, eps)
        z, logj = self.latents(etas, (S,))
        with np.errstate(all="ignore"):
            lp = np.asarray(model.log_joint_sum(theta, z, 1), dtype=float)
            value = float(np.mean(lp + sum(j.sum(-1) for j in logj))) + self.entropy(phi)
            if not np.isfinite(value):
                return -np.inf, np.zeros_like(phi)
            grad = self.grad_phi(phi, eps, etas, z, model.grad_latents(theta, z))
        return value, grad

    def draws(self, phi, eps):
        """The latents of ``eps`` as draws with ``(chain, draw)`` axes ``(1, S)``."""
        S = eps[0].shape[0]
        z, _ = self.latents(self.etas(phi, eps), (1, S))
        return z


def _per_draw(q, theta, phi, eps, by_unit):
    """``(log p(x, z_s; theta) + log|J_s|, log q_s)``: per draw ``(S,)``, or per draw and unit
    ``(S, n)`` when ``by_unit``."""
    model = q.model
    S = eps[0].shape[0]
    z, logj = q.latents(q.etas(phi, eps), (S,))
    lq = q.log_q(phi, eps)
    with np.errstate(all="ignore"):
        if by_unit:
            lp = np.asarray(model.log_joint(theta, z), dtype=float)
            return lp + logj[0], lq[0]
        lp = np.asarray(model.log_joint_sum(theta, z, 1), dtype=float)
    return lp + sum(j.sum(-1) for j in logj), sum(x.sum(-1) for x in lq)


def _by_unit(q):
    """Whether the only latent is a unit latent with per-unit terms (estimates then add up over units)."""
    m = q.model
    return len(q.blocks) == 1 and m.latents[q.blocks[0].name].unit and m.per_unit


def elbo_estimate(q, theta, phi, rng, n_draws) -> Estimate:
    """The evidence lower bound L(phi, theta) from ``n_draws`` independent draws of q: the mean
    of ``log p(x, z_s; theta) + log|J_s| - log q(eta_s)``."""
    eps = q.standard_draws(rng, n_draws)
    lp, lq = _per_draw(q, theta, phi, eps, False)
    v = lp - lq
    se = float(np.std(v, ddof=1) / math.sqrt(n_draws)) if n_draws > 1 else np.inf
    return Estimate(float(np.mean(v)), se, n_draws)


def _log_mean_weights(lw):
    """Per column of ``lw`` (S, n): the log mean weight with its first-order bias removed, and
    the per-draw influence of each weight on it (for the standard error)."""
    S = lw.shape[0]
    lm = logsumexp(lw, axis=0) - math.log(S)
    w = np.exp(lw - lm)  # weights relative to their mean
    rel_var = np.var(w, axis=0, ddof=1) if S > 1 else np.full(lw.shape[1], np.inf)
    return lm + 0.5 * rel_var / S, w


def importance_loglik(q, theta, phi, rng, n_draws) -> Estimate:
    """log p(x; theta) by importance sampling with q as the proposal.

    With one unit latent and per-unit terms, each unit gets its own estimate (q's Gaussian of
    that unit is its proposal) and the estimates add up; otherwise one estimate over the joint
    latents. The first-order bias of the log of a mean weight is removed; the standard error is
    the delta method's.
    """
    by_unit = _by_unit(q)
    eps = q.standard_draws(rng, n_draws)
    lp, lq = _per_draw(q, theta, phi, eps, by_unit)
    lw = (lp - lq).reshape(n_draws, -1)
    lm, w = _log_mean_weights(lw)
    var = np.var(w, axis=0, ddof=1) / n_draws if n_draws > 1 else np.inf
    return Estimate(float(np.sum(lm)), float(math.sqrt(np.sum(var))), n_draws)


def kl_estimate(q, theta, phi, rng, n_draws):
    """``(elbo, loglik, kl)`` Estimates from the same ``n_draws`` draws of q: the bound, the
    importance-sampling log-likelihood and their difference, KL(q || p(z | x; theta)), whose
    standard error uses the draws' influence on both (the errors are correlated)."""
    by_unit = _by_unit(q)
    eps = q.standard_draws(rng, n_draws)
    lp, lq = _per_draw(q, theta, phi, eps, by_unit)
    lw = (lp - lq).reshape(n_draws, -1)
    S = n_draws
    lm, w = _log_mean_weights(lw)
    ll = Estimate(float(np.sum(lm)), float(math.sqrt(np.sum(np.var(w, axis=0, ddof=1) / S))), S)
    elbo_terms = lw.sum(axis=1)
    elbo = Estimate(float(np.mean(elbo_terms)), float(np.std(elbo_terms, ddof=1) / math.sqrt(S)), S)
    # KL = log mean w - mean log w, per unit; the influence of draw s is w_s / mean w - log w_s
    infl = w - lw
    kl_var = np.sum(np.var(infl, axis=0, ddof=1)) / S
    kl = Estimate(ll.value - elbo.value, float(math.sqrt(kl_var)), S)
    return elbo, ll, kl

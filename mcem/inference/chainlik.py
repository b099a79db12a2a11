"""The exact marginal log-likelihood of a model whose only latent is a chain.

For a discrete chain (a hidden Markov model) the forward algorithm sums over all K^T paths in
O(T K^2); for a continuous chain whose emission terms are quadratic in the state (a
linear-Gaussian state-space model) the path integrates out in closed form, computed with the
banded Cholesky factor of the posterior precision (the number the Kalman filter gives). Terms of
the log joint free of the chain are added back from one evaluation at a reference path.
"""

from __future__ import annotations

import numpy as np

from ..kernels.ffbs import forward_backward, forward_filter_backward_sample, pool_forward
from ..kernels.gaussian_chain import conditional_band, log_integral

__all__ = ["ExactChainLoglik", "chain_log_marginal", "exact_chain_name", "chain_free_terms", "particle_cost",
           "particle_sampler"]


def exact_chain_name(latents, chains) -> str | None:
    """The only latent's name when it is a chain with an exact log-likelihood, else None."""
    if len(latents) != 1:
        return None
    (name,) = latents
    chain = chains.get(name)
    if chain is None or not (latents[name].is_discrete or chain.gaussian):
        return None
    return name


def chain_log_marginal(chain, name, spec, theta, data):
    """(log of the sum (integral) over paths of exp(prior log density + emission terms), a path
    of positive posterior density, shape (1, *spec.shape))."""
    prior = chain.prior(theta, data)
    T = spec.shape[0]
    if spec.is_discrete:
        states = np.broadcast_to(np.arange(spec.K).reshape(spec.K, 1, 1), (spec.K, 1, T))
        e = np.moveaxis(np.asarray(chain.emission(theta, {name: states}, data), dtype=float), 0, -1)  # (1, T, K)
        value = float(forward_backward(prior.log_init, prior.log_transition, e).loglik[0])
        path, _ = forward_filter_backward_sample(prior.log_init, prior.log_transition, e, np.full((1, T), 0.5))
        return value, np.asarray(path, dtype=np.int64)

    def em(zs):
        return np.asarray(chain.emission(theta, {name: zs}, data), dtype=float)

    # the band of x - u around the conditional mean u: exact to rounding for paths far from 0
    fb, u, _ = conditional_band(prior.linear_gaussian(), em, np.zeros((1, T, d_of(spec))), spec.shape[1:],
                                who=f"chain {name!r}")
    return float(log_integral(fb)[0]), u.reshape((1,) + spec.shape)


def d_of(spec) -> int:
    """The state dimension of a chain latent of shape (T,) or (T, d)."""
    return int(spec.shape[1]) if len(spec.shape) > 1 else 1


class ExactChainLoglik:
    """``loglik(theta, data)`` of a model whose only latent ``name`` is a chain: the path summed
    or integrated out, plus the terms free of the chain (``total`` minus the chain's own terms
    at one reference path)."""

    def __init__(self, name, chain, spec, total):
        self.name, self.chain, self.spec, self.total = name, chain, spec, total

    def __call__(self, theta, data):
        value, z0 = chain_log_marginal(self.chain, self.name, self.spec, theta, data)
        return value + chain_free_terms(self.total, self.name, self.chain, theta, data, z0)


def chain_free_terms(total, name, chain, theta, data, z0) -> float:
    """The terms of the log joint free of chain ``name`` (the model's only latent): ``total``
    (``total(theta, z, data)``, the log joint) minus the chain's own terms at the path ``z0``
    (shape (1, *shape), of positive density)."""
    own = float(np.asarray(chain.prior(theta, data).log_prob(z0), dtype=float).reshape(-1)[0])
    own += float(np.asarray(chain.emission(theta, {name: z0}, data), dtype=float).sum())
    return float(np.asarray(total(theta, {name: z0}, data), dtype=float).sum()) - own


#: Candidates per time step of the particle log-likelihood estimator.
PARTICLES = 64


def particle_cost(spec) -> int:
    """Array elements per particle estimate (sets the batch size of the estimator)."""
    return PARTICLES * int(np.prod(spec.shape, dtype=int))


def particle_sampler(model, theta, draws, n_particles=PARTICLES, spread=1.5):
    """A function ``(R, rng) -> (R, 1)`` of independent log-likelihood estimates for a model
    whose only latent is a continuous chain: each is the log of an unbiased estimate of the
    likelihood, the forward sum over all paths through pools of ``n_particles`` independent
    candidates per time step drawn from normals fitted to the posterior ``draws`` (mean and
    standard deviation per time step, the latter widened by ``spread``)."""
    (name,) = model.latent_names
    spec = model.latents[name]
    chain = model.chains[name]
    data = model.data
    T = spec.shape[0]
    x = np.asarray(draws[name], dtype=float).reshape((-1, T, int(np.prod(spec.shape[1:], dtype=int))))
    loc = x.mean(axis=0)
    scale = spread * np.maximum(x.std(axis=0, ddof=1), 1e-8)
    lg = chain.prior(theta, data).linear_gaussian()
    free = chain_free_terms(model.log_joint_fn, name, chain, theta, data, loc.reshape((1,) + spec.shape))
    P = int(n_particles)

    def sample(R, rng):
        eps = rng.standard_normal((P, R) + loc.shape)
        pool = loc + scale * eps  # (P, R, T, d)
        emit = np.asarray(chain.emission(theta, {name: pool.reshape((P, R) + spec.shape)}, data), dtype=float)
        log_rho = (-0.5 * eps**2 - np.log(scale) - 0.5 * np.log(2 * np.pi)).sum(-1)
        log_w = np.moveaxis(emit - log_rho, 0, -1)  # (R, T, P)
        ll = np.asarray(pool_forward(np.moveaxis(pool, 0, 2), log_w, lg), dtype=float)
        return (ll - T * np.log(P) + free)[:, None]

    return sample

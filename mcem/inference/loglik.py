"""The marginal log-likelihood log p(x; theta), exactly or by importance sampling.

Exact where the model has it, by a sum over states for discrete latents (per unit, or over all
joint states when there are few). Otherwise by importance sampling: for conditionally
independent units, one proposal per unit (Student-t on the unconstrained scale, fitted to the
final draws), so the estimate is a sum of independent one-unit estimates; for a joint latent
vector, one multivariate Student-t proposal. Samples are drawn in batches until the Monte Carlo
standard error reaches a target (``target_se``, default 0.05) or a budget is spent (then a
warning), and the known downward bias of the log of a mean weight is removed to first order.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from .._validation import as_generator, check_positive_float, check_positive_int
from ..exceptions import MonteCarloWarning
from ..core import Model
from .chainlik import ExactChainLoglik, exact_chain_name, particle_cost, particle_sampler

__all__ = ["LoglikEstimate", "marginal_loglik"]


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
    chain = exact_chain_name(model.latents, model.chains)
    if chain is not None:
        value = ExactChainLoglik(chain, model.chains[chain], model.latents[chain], model.log_joint_fn)(theta, model.data)
        how = "forward algorithm" if model.latents[chain].is_discrete else "Gaussian chain integrated out"
        return LoglikEstimate(value, 0.0, f"exact ({how})")
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
    if len(names) == 1 and names[0] in model.chains:
        sampler, method = particle_sampler(model, theta, draws), "particle (pools of candidates per time step)"
        per_sample = particle_cost(model.latents[names[0]])
    elif per_unit:
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

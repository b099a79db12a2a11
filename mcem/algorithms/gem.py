"""Generalized EM (``method="gem"``): the M step takes ``n_steps`` gradient-ascent steps on Q
(with backtracking, so Q never decreases).

The E step is exact by enumeration when the model's only latent is a discrete unit latent with
per-unit terms (``estep="exact"``), Monte Carlo draws otherwise (``m`` draws per iteration;
the result's draws are taken at the returned estimate). ``sampler`` and any further keywords
(``n_chains``, ``burn``, ``warm_burn``, ``thin``, ``sampler_options``, ...) configure the MCMC
E step, :class:`mcem.EStep`. ``checkpoint``: a file written after completed iterations;
:func:`mcem.resume` continues from it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy.special import logsumexp

from .. import mstep as M
from .._validation import check_choice, check_positive_float, check_positive_int
from .common import make_estep, track
from .loop import Config, Stop, checked_update, invalid

NAME = "gem"
USES_ESTEP = True


class State(NamedTuple):
    t: int
    theta: dict
    hits: int
    state: Any  # the E step's chains (None with the exact E step)
    rng: np.random.Generator


def enumerable(model) -> bool:
    """Whether the model's only latent is a discrete unit latent with per-unit terms."""
    names = model.latent_names
    return (len(names) == 1 and model.latents[names[0]].is_discrete and model.latents[names[0]].unit
            and model.per_unit)


def enumerated_q(model, theta_t):
    """Exact Q for a model whose only latent is Discrete with a unit axis and per-unit terms.

    Returns ``(q, loglik)``: ``q(theta) = sum_n sum_k r_nk log p(x_n, z_n = k; theta)`` with
    responsibilities r at ``theta_t``, and the exact log-likelihood at ``theta_t``.
    """
    (name,) = model.latent_names
    spec = model.latents[name]
    K, N = spec.K, spec.shape[0]
    states = {name: np.broadcast_to(np.arange(K)[:, None], (K, N))}
    lp = np.asarray(model.log_joint(theta_t, states))  # (K, N)
    lse = logsumexp(lp, axis=0)
    R = np.exp(lp - lse)

    def q(theta):
        return float(np.sum(R * np.asarray(model.log_joint(theta, states))))

    return q, float(lse.sum())


def configure(model, *, max_iter, tol, n_steps=1, step_size=0.1, estep="auto", sampler="auto", m=200,
              n_consecutive=3, **estep_options):
    max_iter = 500 if max_iter is None else max_iter
    tol = 1e-8 if tol is None else tol
    n_steps = check_positive_int(n_steps, "n_steps")
    step_size = check_positive_float(step_size, "step_size")
    n_consecutive = check_positive_int(n_consecutive, "n_consecutive")
    check_choice(estep, "estep", {"auto", "exact", "mc"})
    if estep == "exact" and not enumerable(model):
        raise ValueError(
            "estep='exact' needs a model whose only latent is Discrete(..., unit=True) with per-unit "
            f"log-joint terms; model {model.name!r} is not. Use estep='mc'."
        )
    exact = enumerable(model) and estep != "mc"
    cfg = Config(max_iter=max_iter, tol=tol, n_steps=n_steps, step_size=step_size, exact=exact,
                 n_consecutive=n_consecutive, es=None, per_chain=None, failed=0, cache={},
                 settings=dict(method="gem", max_iter=max_iter, tol=tol, n_steps=n_steps, step_size=step_size,
                               estep="exact" if exact else "mc", m=None if exact else m))
    if not exact:
        cfg.es = make_estep(model, sampler, estep_options)
        cfg.per_chain = max(1, math.ceil(check_positive_int(m, "m") / cfg.es.n_chains))
    return cfg


def _exact(cfg, model, theta):
    """``(q, loglik)`` by enumeration at theta, computed once per theta."""
    hit = cfg.cache.get("q")
    if hit is not None and hit[0] is theta:
        return hit[1]
    out = enumerated_q(model, theta)
    cfg.cache["q"] = (theta, out)
    return out


def init(cfg, model, theta, rng):
    if cfg.exact:
        return State(0, theta, 0, None, rng), {"loglik": _exact(cfg, model, theta)[1]}
    rng_init, rng = rng.spawn(2)
    return State(0, theta, 0, cfg.es.init(theta, rng_init), rng), {"loglik": track(model, theta, True)}


def step(cfg, model, st):
    t, chains = st.t + 1, st.state
    if cfg.exact:
        q, ll = _exact(cfg, model, st.theta)
    else:
        res = cfg.es.run(st.theta, chains, cfg.per_chain, st.rng)
        chains = res.state

        def q(th, draws=res.draws):
            return M.q_hat(model, th, draws)

    new, info = M.gradient_ascent(model, st.theta, q, n_steps=cfg.n_steps, step_size=cfg.step_size)
    new, why = checked_update(model, new)
    if why is not None:
        cfg.failed = int(not cfg.exact)  # an E step ran in the failed iteration
        return st, None, invalid(t, why)
    hits, stop = st.hits, None
    if cfg.exact:
        new_ll = _exact(cfg, model, new)[1]
        change = new_ll - ll
        if abs(change) <= cfg.tol * max(1.0, abs(new_ll)):
            stop = Stop("tol", True, f"converged: log-likelihood change {change:.3g} within tol={cfg.tol:g} (relative)")
    else:
        new_ll = track(model, new, True)
        u_old, u_new = model.to_unconstrained(st.theta), model.to_unconstrained(new)
        hits = hits + 1 if np.max(np.abs(u_new - u_old) / (np.abs(u_old) + 1e-3), initial=0.0) < cfg.tol else 0
        if hits >= cfg.n_consecutive:
            stop = Stop("tol", True, f"converged: relative parameter change below tol={cfg.tol:g} "
                                     f"{cfg.n_consecutive} times in a row")
    return State(t, new, hits, chains, st.rng), {"loglik": new_ll, "q_evals": info.nfev}, stop


def interrupted(cfg, model, st):
    return st.theta, _result_extras(cfg, model, st, final=False)


def _result_extras(cfg, model, st, final=True):
    if cfg.exact:
        return {"loglik": _exact(cfg, model, st.theta)[1]}
    extra = {"loglik": model.exact_loglik(st.theta), "draws": None,
             "total_draws": (st.t + cfg.failed) * cfg.per_chain * cfg.es.n_chains}
    if final:  # draws at the returned estimate (the last iteration's are at the previous one)
        extra["draws"] = cfg.es.run(st.theta, st.state, cfg.per_chain, st.rng).draws
        extra["total_draws"] += cfg.per_chain * cfg.es.n_chains
    return extra


def finish(cfg, model, st, stop, history):
    return st.theta, stop, _result_extras(cfg, model, st)

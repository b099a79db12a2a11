"""Generalized EM (``method="gem"``): the M step takes ``n_steps`` gradient-ascent steps on Q
(with backtracking, so Q never decreases).

The E step is exact by enumeration when the model's only latent is a discrete unit latent with
per-unit terms (``estep="exact"``), Monte Carlo draws otherwise (``m`` draws per iteration at
first; the result's draws are taken at the returned estimate). With the exact E step the run
stops when the relative change of the log-likelihood is within ``tol`` (default 1e-8). With
Monte Carlo draws the rule is that of MCEM, in standard errors (``tol``, default 0.1): by
Fisher's identity the draws' mean score gives one Newton step to the MLE (Louis' information),
and the run stops when, ``n_consecutive`` (default 2) times in a row, that distance is not
significantly more than ``tol / 2`` standard errors of any parameter (natural scale) and its
Monte Carlo error is at most ``tol`` of them; the sample size grows to what that needs (up to
``m_max``). ``sampler`` and any further keywords
(``n_chains``, ``burn``, ``warm_burn``, ``thin``, ``sampler_options``, ...) configure the MCMC
E step, :class:`mcem.EStep`. ``checkpoint``: a file written after completed iterations;
:func:`mcem.resume` continues from it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .. import mstep as M
from .._validation import check_choice, check_positive_float, check_positive_int
from ..inference.categorical import enumerable, responsibilities, states
from ..inference.precision import newton_precision
from .common import make_estep, track
from .loop import Config, Stop, checked_update, invalid
from .rule import DEFAULT_TOL, distance_lower_bound, final_draws, target_size

NAME = "gem"
USES_ESTEP = True


class State(NamedTuple):
    t: int
    theta: dict
    hits: int
    state: Any  # the E step's chains (None with the exact E step)
    rng: np.random.Generator
    per_chain: int = 0  # draws per chain of the next Monte Carlo E step (0: the configured size)
    total_draws: int = 0


def enumerated_q(model, theta_t):
    """Exact Q for a model whose only latent is Discrete with a unit axis and per-unit terms.

    Returns ``(q, loglik)``: ``q(theta) = sum_n sum_k r_nk log p(x_n, z_n = k; theta)`` with
    responsibilities r at ``theta_t``, and the exact log-likelihood at ``theta_t``
    (:mod:`mcem.inference.categorical`).
    """
    zs = states(model)
    R, ll, _ = responsibilities(model, theta_t, zs)

    def q(theta):
        return float(np.sum(R * np.asarray(model.log_joint(theta, zs))))

    return q, ll


def configure(model, *, max_iter, tol, n_steps=1, step_size=0.1, estep="auto", sampler="auto", m=200,
              m_max=20_000, n_consecutive=None, **estep_options):
    max_iter = 500 if max_iter is None else max_iter
    n_steps = check_positive_int(n_steps, "n_steps")
    step_size = check_positive_float(step_size, "step_size")
    check_choice(estep, "estep", {"auto", "exact", "mc"})
    if estep == "exact" and not enumerable(model):
        raise ValueError(
            "estep='exact' needs a model whose only latent is Discrete(..., unit=True) with per-unit "
            f"log-joint terms; model {model.name!r} is not. Use estep='mc'."
        )
    exact = enumerable(model) and estep != "mc"
    tol = (1e-8 if exact else DEFAULT_TOL) if tol is None else tol
    n_consecutive = check_positive_int(2 if n_consecutive is None else n_consecutive, "n_consecutive")
    m_max = check_positive_int(m_max, "m_max")
    cfg = Config(max_iter=max_iter, tol=tol, n_steps=n_steps, step_size=step_size, exact=exact,
                 n_consecutive=n_consecutive, es=None, per_chain=None, failed=0, cache={}, m_max=m_max, last=None,
                 settings=dict(method="gem", max_iter=max_iter, tol=tol, n_steps=n_steps, step_size=step_size,
                               estep="exact" if exact else "mc", m=None if exact else m, m_max=m_max))
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
        return State(0, theta, 0, None, rng, 0, 0), {"loglik": _exact(cfg, model, theta)[1]}
    rng_init, rng = rng.spawn(2)
    return (State(0, theta, 0, cfg.es.init(theta, rng_init), rng, cfg.per_chain, 0),
            {"loglik": track(model, theta, True)})


def step(cfg, model, st):
    t, chains = st.t + 1, st.state
    per_chain = st.per_chain or cfg.per_chain or 0
    if cfg.exact:
        q, ll = _exact(cfg, model, st.theta)
    else:
        res = cfg.es.run(st.theta, chains, per_chain, st.rng)
        chains = res.state

        def q(th, draws=res.draws):
            return M.q_hat(model, th, draws)

    new, info = M.gradient_ascent(model, st.theta, q, n_steps=cfg.n_steps, step_size=cfg.step_size)
    new, why = checked_update(model, new)
    if why is not None:
        cfg.failed = int(not cfg.exact)  # an E step ran in the failed iteration
        return st, None, invalid(t, why)
    hits, stop = st.hits, None
    row = {"q_evals": info.nfev}
    if cfg.exact:
        new_ll = _exact(cfg, model, new)[1]
        change = new_ll - ll
        if abs(change) <= cfg.tol * max(1.0, abs(new_ll)):
            stop = Stop("tol", True, f"converged: log-likelihood change {change:.3g} within tol={cfg.tol:g} (relative)")
        n_kept = 0
    else:
        new_ll = track(model, new, True)
        n_kept = per_chain * cfg.es.n_chains
        # where the MLE is, seen from the iterate the draws came from (Fisher's identity)
        with np.errstate(all="ignore"):
            prec = newton_precision(model, st.theta, res.draws)
        far = distance_lower_bound(prec)
        cfg.last = prec
        row.update(m=n_kept, mc_ratio=prec.ratio, distance=far)
        ok = prec.ratio <= cfg.tol and far <= cfg.tol / 2
        hits = hits + 1 if ok else 0
        if prec.ratio > cfg.tol > 0:  # grow to what the precision target needs
            want = target_size(n_kept, prec.ratio, cfg.tol) if np.isfinite(prec.ratio) else 2 * n_kept
            per_chain = max(per_chain, math.ceil(min(cfg.m_max, want) / cfg.es.n_chains))
        if hits >= cfg.n_consecutive:
            stop = Stop("tol", True, (
                f"converged: {cfg.n_consecutive} times in a row no parameter was significantly more than "
                f"tol/2={cfg.tol / 2:g} standard errors from the MLE (one Newton step by Louis' information) and "
                f"the Monte Carlo error was at most tol (largest {prec.ratio:.3g} standard errors, {prec.worst})"))
    row["loglik"] = new_ll
    return State(t, new, hits, chains, st.rng, per_chain, st.total_draws + n_kept), row, stop


def interrupted(cfg, model, st):
    return st.theta, _result_extras(cfg, model, st, final=False)


def _result_extras(cfg, model, st, final=True):
    if cfg.exact:
        return {"loglik": _exact(cfg, model, st.theta)[1]}
    per_chain = st.per_chain or cfg.per_chain
    extra = {"loglik": model.exact_loglik(st.theta), "draws": None,
             "total_draws": st.total_draws + cfg.failed * per_chain * cfg.es.n_chains}
    if cfg.last is not None:
        extra["mc_ratio"] = float(cfg.last.ratio)
    if final:  # draws at the returned estimate (the last iteration's are at the previous one)
        draws, inf, se_ratio = final_draws(cfg.es, model, st.theta, st.state, st.rng, per_chain,
                                           max_total=max(per_chain * cfg.es.n_chains, cfg.m_max))
        extra.update(draws=draws, se_mc_ratio=se_ratio)
        extra["total_draws"] += next(iter(draws.values())).shape[1] * cfg.es.n_chains
        if inf is not None:
            extra["_inference"] = inf
    return extra


def finish(cfg, model, st, stop, history):
    if stop.stopped_by == "max_iter" and cfg.last is not None and not cfg.exact:
        p = cfg.last
        stop = stop._replace(message=stop.message + (
            f"; at the last iteration the Monte Carlo error was {p.ratio:.3g} standard errors "
            f"({p.worst or 'information not positive definite'}) against tol={cfg.tol:g}"))
    return st.theta, stop, _result_extras(cfg, model, st)

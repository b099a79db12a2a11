"""SAEM, stochastic approximation EM (Delyon, Lavielle & Moulines 1999) (``method="saem"``).

With sufficient statistics: ``s_k = s_{k-1} + gamma_k (S(z_k) - s_{k-1})`` and
``theta_k = mstep(s_k)``. Otherwise Q is approximated by a weighted memory of past draws
(weights below ``memory_tol`` are dropped) and maximised numerically. The gain is 1 for
``burn_iter`` iterations, then ``(k - burn_iter)^-gain_exponent``. ``average=True`` returns the
Polyak-Ruppert average of the iterates after burn-in; ``final_draws`` draws at the returned
estimate are kept for standard errors. The run stops when the relative parameter change stays
below ``tol`` ``n_consecutive`` times after burn-in, or at max_iter. ``sampler`` and any further
keywords (``n_chains``, ``burn``, ``warm_burn``, ``thin``, ``sampler_options``, ...) configure
the MCMC E step, :class:`mcem.EStep`. ``checkpoint``: a file written after completed iterations;
:func:`mcem.resume` continues from it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy import optimize

from .. import mstep as M
from .._validation import check_bool, check_mapping, check_positive_float, check_positive_int
from ..schedules import saem_gain
from .common import choose_mstep, diag_values, make_estep, track
from .loop import Config, Stop, checked_update, invalid

NAME = "saem"
USES_ESTEP = True


class State(NamedTuple):
    t: int
    theta: dict
    state: Any  # the E step's chains
    rng: np.random.Generator
    s: dict | None  # the stochastic-approximation statistics
    memory: list  # (weight, draws) for the numerical path
    avg: dict | None  # the Polyak-Ruppert average after burn-in
    n_avg: int
    hits: int
    total_draws: int


def configure(model, *, max_iter, tol, sampler="auto", draws_per_chain=1, burn_iter=None, gain_exponent=0.7,
              average=False, mstep="auto", optimizer_options=None, memory_tol=1e-3, n_consecutive=5,
              track_loglik=True, final_draws=400, **estep_options):
    max_iter = 300 if max_iter is None else max_iter
    tol = 1e-3 if tol is None else tol
    burn_iter = max_iter // 3 if burn_iter is None else check_positive_int(burn_iter, "burn_iter", minimum=0)
    draws_per_chain = check_positive_int(draws_per_chain, "draws_per_chain")
    n_consecutive = check_positive_int(n_consecutive, "n_consecutive")
    saem_gain(burn_iter + 1, burn_iter, gain_exponent)  # validates the exponent
    memory_tol = check_positive_float(memory_tol, "memory_tol", allow_zero=True)
    average = check_bool(average, "average")
    track_loglik = check_bool(track_loglik, "track_loglik")
    optimizer_options = check_mapping(optimizer_options, "optimizer_options")
    final_draws = check_positive_int(final_draws, "final_draws")
    kind = choose_mstep(model, mstep)
    if kind == "adam":
        raise ValueError("mstep='adam' is available with method='mcem'; SAEM uses 'closed_form' or 'numerical'")
    es = make_estep(model, sampler, estep_options, warm_burn=5)
    settings = dict(method="saem", max_iter=max_iter, tol=tol, draws_per_chain=draws_per_chain,
                    burn_iter=burn_iter, gain_exponent=gain_exponent, average=average, mstep=kind, **es.settings)
    return Config(max_iter=max_iter, tol=tol, settings=settings, es=es, burn_iter=burn_iter,
                  draws_per_chain=draws_per_chain, n_consecutive=n_consecutive, gain_exponent=gain_exponent,
                  memory_tol=memory_tol, average=average, track_loglik=track_loglik,
                  optimizer_options=optimizer_options, final_draws=final_draws, kind=kind)


def init(cfg, model, theta, rng):
    rng_init, rng = rng.spawn(2)
    chains = cfg.es.init(theta, rng_init)
    st = State(0, theta, chains, rng, None, [], None, 0, 0, 0)
    return st, {"loglik": track(model, theta, cfg.track_loglik), "m": 0}


def maximise_memory(model, theta, memory, optimizer_options):
    """Maximise the weighted memory of Monte Carlo Q estimates (SAEM without statistics)."""
    wsum = sum(w for w, _ in memory)

    def f(u):
        th = model.from_unconstrained(u)
        with np.errstate(all="ignore"):
            v = -sum(w * M.q_hat(model, th, d) for w, d in memory) / wsum
        return v if np.isfinite(v) else np.inf

    r = optimize.minimize(f, model.to_unconstrained(theta), method="L-BFGS-B", options=dict(optimizer_options or {}))
    return model.from_unconstrained(r.x), bool(r.success)


def step(cfg, model, st):
    k, es = st.t + 1, cfg.es
    res = es.run(st.theta, st.state, cfg.draws_per_chain, st.rng)
    draws = res.draws
    g = saem_gain(k, cfg.burn_iter, cfg.gain_exponent)
    s, memory = st.s, st.memory
    if cfg.kind == "closed_form":
        flat = {n: v.reshape((-1,) + v.shape[2:]) for n, v in draws.items()}
        S = model.sufficient_stats_fn(flat, model.data)
        s = S if s is None else {n: s[n] + g * (np.asarray(S[n]) - s[n]) for n in s}
        s = {n: np.asarray(v, dtype=float) for n, v in s.items()}
        new, ok_m = model.mstep_fn(s, model.data), True
    else:
        memory = [(w * (1 - g), d) for w, d in memory if w * (1 - g) >= cfg.memory_tol] + [(g, draws)]
        new, ok_m = maximise_memory(model, st.theta, memory, cfg.optimizer_options)
    new, why = checked_update(model, new)
    if why is not None:
        return st, None, invalid(k, why)
    avg, n_avg = st.avg, st.n_avg
    if k > cfg.burn_iter:
        n_avg += 1
        avg = {n: v.copy() for n, v in new.items()} if avg is None else {
            n: avg[n] + (new[n] - avg[n]) / n_avg for n in new}
    row = dict(loglik=track(model, new, cfg.track_loglik), m=cfg.draws_per_chain * es.n_chains, gain=g,
               mstep_success=ok_m, memory=len(memory))
    row.update(diag_values(res.diagnostics))
    hits, stop = st.hits, None
    if k > cfg.burn_iter:
        u_old, u_new = model.to_unconstrained(st.theta), model.to_unconstrained(new)
        small = np.max(np.abs(u_new - u_old) / (np.abs(u_old) + 1e-3), initial=0.0) < cfg.tol
        hits = hits + 1 if small else 0
        if hits >= cfg.n_consecutive:
            stop = Stop("tol", True, f"converged: relative parameter change below tol={cfg.tol:g} "
                                     f"{cfg.n_consecutive} times in a row after burn-in")
    new_st = State(k, new, res.state, st.rng, s, memory, avg, n_avg, hits,
                   st.total_draws + cfg.draws_per_chain * es.n_chains)
    return new_st, row, stop


def _estimate(cfg, st):
    return st.avg if (cfg.average and st.avg is not None) else st.theta


def interrupted(cfg, model, st):
    last = _estimate(cfg, st)
    return last, {"loglik": model.exact_loglik(last), "total_draws": st.total_draws, "draws": None}


def finish(cfg, model, st, stop, history):
    final = _estimate(cfg, st)
    per_chain = max(1, math.ceil(cfg.final_draws / cfg.es.n_chains))
    last = cfg.es.run(final, st.state, per_chain, st.rng, burn=cfg.es.burn)  # draws at the estimate
    return final, stop, {"loglik": model.exact_loglik(final),
                         "total_draws": st.total_draws + per_chain * cfg.es.n_chains, "draws": last.draws}

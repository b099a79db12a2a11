"""SAEM, stochastic approximation EM (Delyon, Lavielle & Moulines 1999) (``method="saem"``).

With sufficient statistics: ``s_k = s_{k-1} + gamma_k (S(z_k) - s_{k-1})`` and
``theta_k = mstep(s_k)``. Otherwise Q is approximated by a weighted memory of past draws
(weights below ``memory_tol`` are dropped) and maximised numerically. The gain is 1 for
``burn_iter`` iterations, then ``(k - burn_iter)^-gain_exponent``. ``average=True`` returns the
Polyak-Ruppert average of the iterates after burn-in (the default); ``final_draws`` draws at the
returned estimate are kept for standard errors (more when their own Monte Carlo error needs them).

Stopping (``stop="precision"``, the default) is the rule of MCEM on the Polyak-Ruppert average:
by Fisher's identity the mean complete-data score of the draws of the averaged iterations, ``g``,
estimates the observed score near the average, so the MLE lies about ``I^-1 g`` away (Louis'
``I`` at the average, from the window's draws), with Monte Carlo covariance ``I^-1 Cov(g) I^-1``
(``Cov(g)`` by batch means over the iterations, which counts the chains' and the iterates'
autocorrelation; Polyak & Juditsky 1992). The run stops when, at ``n_consecutive`` checks in a
row (after 20 averaged iterations, then every tenth of the window), that Monte Carlo error is at
most ``tol`` (default 0.1) standard errors of every parameter, natural scale, and the distance to
the MLE is not significantly more than ``tol / 2`` of them. A check that finds it significantly
further (the average still holds the transient of the burn-in) starts the average afresh.
``stop="relative"``: the largest relative change of the unconstrained parameters below ``tol``
(default 1e-3) ``n_consecutive`` times after burn-in. ``sampler`` and any further
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
from .._validation import check_bool, check_choice, check_mapping, check_positive_float, check_positive_int
from ..constraints.cholesky import CorrCholesky
from ..derivatives import per_draw_log_joint, per_draw_scores
from ..diagnostics import cov_of_mean
from ..inference.precision import newton_precision
from ..schedules import saem_gain
from .common import choose_mstep, diag_values, make_estep, track
from .loop import Config, Stop, checked_update, invalid
from .rule import DEFAULT_TOL, distance_lower_bound, final_draws
from .stream import concat_draws

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
    wdraws: Any = None  # the draws of the averaged iterations, (chain, draw, ...) per latent
    scores: Any = None  # (n_avg, p) mean complete-data score of each averaged iteration
    next_check: int = 0  # the window size at which the rule is checked next


def configure(model, *, max_iter, tol, sampler="auto", draws_per_chain=1, burn_iter=None, gain_exponent=0.7,
              average=True, mstep="auto", optimizer_options=None, memory_tol=1e-3, n_consecutive=None,
              track_loglik=True, final_draws=400, stop="precision", **estep_options):
    max_iter = 2000 if max_iter is None else max_iter
    check_choice(stop, "stop", {"precision", "relative"})
    tol = (DEFAULT_TOL if stop == "precision" else 1e-3) if tol is None else tol
    n_consecutive = (2 if stop == "precision" else 5) if n_consecutive is None else n_consecutive
    burn_iter = (min(100, max_iter // 3) if burn_iter is None
                 else check_positive_int(burn_iter, "burn_iter", minimum=0))
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
    if stop == "precision" and not average:
        raise ValueError("stop='precision' judges the Polyak-Ruppert average: it needs average=True "
                         "(or stop='relative')")
    settings = dict(method="saem", max_iter=max_iter, tol=tol, draws_per_chain=draws_per_chain,
                    burn_iter=burn_iter, gain_exponent=gain_exponent, average=average, mstep=kind, stop=stop,
                    n_consecutive=n_consecutive, **es.settings)
    return Config(max_iter=max_iter, tol=tol, settings=settings, es=es, burn_iter=burn_iter,
                  draws_per_chain=draws_per_chain, n_consecutive=n_consecutive, gain_exponent=gain_exponent,
                  memory_tol=memory_tol, average=average, track_loglik=track_loglik, stop=stop,
                  optimizer_options=optimizer_options, final_draws=final_draws, kind=kind, last=None)


def init(cfg, model, theta, rng):
    rng_init, rng = rng.spawn(2)
    chains = cfg.es.init(theta, rng_init)
    st = State(0, theta, chains, rng, None, [], None, 0, 0, 0)
    return st, {"loglik": track(model, theta, cfg.track_loglik), "m": 0}


def maximise_memory(model, theta, memory, optimizer_options, fixed=None):
    """Maximise the weighted memory of Monte Carlo Q estimates (SAEM without statistics).

    The memory's draws are joined along the draw axis with one weight per draw, so that each
    evaluation is one vectorised call; the gradient comes from the model's ``value_and_grad`` or
    ``grad_params`` when it has them (finite differences otherwise)."""
    draws = memory[0][1] if len(memory) == 1 else concat_draws(*(d for _, d in memory))
    n_draw = [next(iter(d.values())).shape[1] for _, d in memory]
    n_chain = next(iter(draws.values())).shape[0]
    w = np.concatenate([np.full(k, wk / k) for (wk, _), k in zip(memory, n_draw, strict=True)])
    w = np.broadcast_to(w / (w.sum() * n_chain), (n_chain, w.size))  # sums to 1 over (chain, draw)

    def value(u):
        th = model.from_unconstrained(u)
        with np.errstate(all="ignore"):
            v = -float(np.sum(w * per_draw_log_joint(model, th, draws)))
        return v if np.isfinite(v) else np.inf

    def mean_grad(u, g):
        mean = {n: np.tensordot(w, np.asarray(g[n], dtype=float), axes=([0, 1], [0, 1])) for n in model.param_names}
        return model.grad_to_unconstrained(u, mean)

    fun, jac = value, None
    wvg = getattr(model, "weighted_value_and_grad_u", None)
    if wvg is not None:  # exact, in u, one compiled pass over the memory
        def fun(u):
            with np.errstate(all="ignore"):
                v, g = wvg(u, draws, np.ascontiguousarray(w))
            return (-v, -g) if np.isfinite(v) else (np.inf, np.zeros_like(u))
        jac = True
    elif model.value_and_grad_fn is not None:
        def fun(u):
            with np.errstate(all="ignore"):
                total, g = model.value_and_grad_fn(model.from_unconstrained(u), draws, model.data)
                v = -float(np.sum(w * np.asarray(total, dtype=float)))
            return (v, -mean_grad(u, g)) if np.isfinite(v) else (np.inf, np.zeros_like(u))
        jac = True
    elif model.grad_params_fn is not None:
        def jac(u):
            return -mean_grad(u, model.grad_params_fn(model.from_unconstrained(u), draws, model.data))

    if fixed:  # parameters set in closed form from the approximated statistics
        new, info = M._minimize_free(model, {**theta, **fixed}, fixed, fun, jac, "L-BFGS-B", optimizer_options)
        return new, info.success
    r = optimize.minimize(fun, model.to_unconstrained(theta), jac=jac, method="L-BFGS-B",
                          options=dict(optimizer_options or {}))
    return model.from_unconstrained(r.x), bool(r.success)


def step(cfg, model, st):
    k, es = st.t + 1, cfg.es
    res = es.run(st.theta, st.state, cfg.draws_per_chain, st.rng)
    draws = res.draws
    g_k = saem_gain(k, cfg.burn_iter, cfg.gain_exponent)
    s, memory = st.s, st.memory
    if cfg.kind == "closed_form":
        flat = {n: v.reshape((-1,) + v.shape[2:]) for n, v in draws.items()}
        S = model.sufficient_stats_fn(flat, model.data)
        s = S if s is None else {n: s[n] + g_k * (np.asarray(S[n]) - s[n]) for n in s}
        s = {n: np.asarray(v, dtype=float) for n, v in s.items()}
        new, ok_m = model.mstep_fn(s, model.data), True
    else:
        memory = [(w * (1 - g_k), d) for w, d in memory if w * (1 - g_k) >= cfg.memory_tol] + [(g_k, draws)]
        cf, fixed = getattr(model, "partial_mstep", None), None
        if cf is not None:  # stochastic approximation of the closed-form part's statistics
            S = cf.stats({n: v.reshape((-1,) + v.shape[2:]) for n, v in draws.items()})
            s = S if s is None else {n: s[n] + g_k * (S[n] - s[n]) for n in s}
            fixed = cf.update(s)
        new, ok_m = maximise_memory(model, st.theta, memory, cfg.optimizer_options, fixed)
    new, why = checked_update(model, new)
    if why is not None:
        return st, None, invalid(k, why)
    avg, n_avg, wdraws, scores, next_check = st.avg, st.n_avg, st.wdraws, st.scores, st.next_check
    if k > cfg.burn_iter:
        n_avg += 1
        avg = {n: v.copy() for n, v in new.items()} if avg is None else _running_mean(model, avg, new, n_avg)
        if cfg.stop == "precision":  # the scores at the iterate the draws came from (Fisher's identity)
            g = per_draw_scores(model, st.theta, draws).reshape(-1, model.n_unconstrained).mean(axis=0)
            scores = g[None] if scores is None else np.concatenate([scores, g[None]])
            wdraws = draws if wdraws is None else concat_draws(wdraws, draws)
    row = dict(loglik=track(model, new, cfg.track_loglik), m=cfg.draws_per_chain * es.n_chains, gain=g_k,
               mstep_success=ok_m, memory=len(memory))
    row.update(diag_values(res.diagnostics))
    hits, stop = st.hits, None
    if k > cfg.burn_iter and cfg.stop == "relative":
        u_old, u_new = model.to_unconstrained(st.theta), model.to_unconstrained(new)
        small = np.max(np.abs(u_new - u_old) / (np.abs(u_old) + 1e-3), initial=0.0) < cfg.tol
        hits = hits + 1 if small else 0
        if hits >= cfg.n_consecutive:
            stop = Stop("tol", True, f"converged: relative parameter change below tol={cfg.tol:g} "
                                     f"{cfg.n_consecutive} times in a row after burn-in")
    elif cfg.stop == "precision" and n_avg >= max(MIN_WINDOW, next_check):
        next_check = n_avg + max(1, n_avg // 10)
        prec, far = _check(model, avg, wdraws, scores)
        cfg.last = prec
        row.update(mc_ratio=prec.ratio, distance=far)
        ok = prec.ratio <= cfg.tol and far <= cfg.tol / 2
        hits = hits + 1 if ok else 0
        if hits >= cfg.n_consecutive:
            stop = Stop("tol", True, (
                f"converged: at {cfg.n_consecutive} checks in a row no parameter of the Polyak-Ruppert average was "
                f"significantly more than tol/2={cfg.tol / 2:g} standard errors from the MLE and its Monte Carlo "
                f"error was at most tol (largest {prec.ratio:.3g} standard errors, {prec.worst})"))
        elif far > cfg.tol and np.isfinite(far):  # still on its way: average afresh from here
            avg, n_avg, wdraws, scores, next_check, hits = None, 0, None, None, 0, 0
    new_st = State(k, new, res.state, st.rng, s, memory, avg, n_avg, hits,
                   st.total_draws + cfg.draws_per_chain * es.n_chains, wdraws, scores, next_check)
    return new_st, row, stop


#: Averaged iterations before the stopping rule of SAEM is first checked.
MIN_WINDOW = 20


def _running_mean(model, avg, new, n):
    """The running mean after its ``n``-th term: in the constrained coordinates, where the
    parameter set is convex, and in the unconstrained ones for Cholesky factors of correlation
    matrices (their rows have unit norm: an average of two is not one)."""
    out = {}
    for name, v in new.items():
        c = model.params[name]
        if isinstance(c, CorrCholesky):
            a, b = c.inverse(avg[name]), c.inverse(v)
            out[name] = np.asarray(c.forward(a + (b - a) / n), dtype=float)
        else:
            out[name] = avg[name] + (v - avg[name]) / n
    return out


def _check(model, avg, wdraws, scores):
    """The rule's measure at the average: Newton distance and its Monte Carlo error (in SEs)."""
    with np.errstate(all="ignore"):
        g = scores.mean(axis=0)
        cov_g = cov_of_mean(scores[None])
        prec = newton_precision(model, avg, wdraws, score=g, score_cov=cov_g)
    return prec, distance_lower_bound(prec)


def _estimate(cfg, st):
    return st.avg if (cfg.average and st.avg is not None) else st.theta


def interrupted(cfg, model, st):
    last = _estimate(cfg, st)
    return last, {"loglik": model.exact_loglik(last), "total_draws": st.total_draws, "draws": None}


def finish(cfg, model, st, stop, history):
    final = _estimate(cfg, st)
    if stop.stopped_by == "max_iter" and cfg.last is not None:
        p = cfg.last
        stop = stop._replace(message=stop.message + (
            f"; at the last check the Monte Carlo error of the average was {p.ratio:.3g} standard errors "
            f"({p.worst or 'information not positive definite'}) against tol={cfg.tol:g}"))
    per_chain = max(1, math.ceil(cfg.final_draws / cfg.es.n_chains))
    draws, inf, se_ratio = final_draws(cfg.es, model, final, st.state, st.rng, per_chain,
                                       max_total=max(per_chain * cfg.es.n_chains, 20_000), burn=cfg.es.burn)
    n_final = next(iter(draws.values())).shape[1] * cfg.es.n_chains
    extra = {"loglik": model.exact_loglik(final), "total_draws": st.total_draws + n_final, "draws": draws,
             "se_mc_ratio": se_ratio}
    if cfg.last is not None:
        extra["mc_ratio"] = float(cfg.last.ratio)
    if inf is not None:
        extra["_inference"] = inf
    return final, stop, extra

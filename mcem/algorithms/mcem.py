"""Monte Carlo EM with the ascent-based sample size and stopping rules (``method="mcem"``).

Options (keywords of :func:`mcem.fit`)
--------------------------------------
``m`` counts the draws kept in all (summed over chains). ``stop="ascent"`` ends the run when
the upper confidence bound of delta-Q is below ``tol`` ``n_consecutive`` times in a row;
``stop="relative"`` when the largest relative parameter change is below ``tol`` as often.

``mstep``: ``"auto"`` (closed form from the model's sufficient statistics when it has them,
numerical otherwise), ``"closed_form"``, ``"numerical"`` (L-BFGS-B on Q_hat; the model's
``grad_params`` gradient when given) or ``"adam"`` (stochastic: Adam over minibatches of
draws, and of units with ``batch_units``; ``optimizer_options`` takes ``n_steps``, ``lr``,
``batch_draws``, ``batch_units``: see :func:`mcem.mstep.adam`).
``schedule``: ``"ascent"`` (default), ``"booth-hobert"``, ``"fixed"``, ``"geometric"``, a list
or a function of the iteration (see :mod:`mcem.schedules`).
``sampler`` and any further keywords (``n_chains``, ``burn``, ``warm_burn``, ``thin``,
``sampler_options``, ...) configure the MCMC E step, :class:`mcem.EStep`.
``checkpoint``: a file written after completed iterations; :func:`mcem.resume` continues from it.

``correct_optimism``: delta-Q is estimated on the draws the M step maximised, which makes it
optimistic by about ``tr(H^-1 Cov(mean score))`` (derived in :func:`optimism`; Caffo et al. use
the same draws; the bias is O(p/m) and, with many parameters, keeps the lower bound of delta-Q
above zero, so that m never grows and the upper bound never falls below ``tol``; the result's
message says so when that stalls a run). The bias is estimated by cross-fitting two halves of
the draws (halves of the chains, two extra M steps on half the draws each) and recorded as
``optimism``. ``False`` (default) is the published rule. ``"auto"`` subtracts it where the
sample size is decided (appending draws, the next m: the history's ``lower``) and keeps the
uncorrected, conservative, ``delta_q`` and ``upper`` for stopping; ``True`` subtracts it from
those too. Neither applies with ``stream=True`` or the Adam M step (``"auto"`` is then the
published rule; ``True`` is refused with ``stream=True``). With either, m grows sooner, and
where EM itself is slow (a small true delta-Q far from the optimum) the run may stop sooner:
on the salamander data at ``tol=0.01`` the variance components stop 0.1 short of the
published rule's.

``stream``: keep no draws (with a sharded E step, one run's draws still gather in this
process: see :mod:`mcem.distributed`). The closed-form M step accumulates the sufficient
statistics draw by draw; delta-Q is then computed by replaying the same chains from their saved
state and generator (identical draws, twice the sampling, memory independent of m). Needs the
model's sufficient statistics; the result has no ``draws`` (standard errors then need an exact
log-likelihood or a separate E step).

An iteration whose E step barely moved its chains (acceptance below ``min_acceptance``) never
counts toward convergence: its delta-Q is zero with no Monte Carlo error, which is no evidence.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import norm

from .. import mstep as M
from .._validation import check_bool, check_choice, check_fraction, check_mapping, check_positive_int
from ..exceptions import ConvergenceWarning, MonteCarloWarning
from ..schedules import Ascent, make_schedule
from .common import choose_mstep, diag_values, make_estep, track
from .loop import Config, Stop, checked_update, invalid
from .stream import concat_draws, stream_run

NAME = "mcem"
USES_ESTEP = True


class State(NamedTuple):
    t: int
    theta: dict
    state: Any  # the E step's chains (mcem.estep.EStepState)
    rng: np.random.Generator
    m: int  # the sample size of the next iteration
    hits: int  # consecutive iterations that met the stopping rule
    swamped: int  # consecutive iterations whose lower bound of delta-Q was not above zero
    total_draws: int
    per_chain: int


def configure(model, *, max_iter, tol, sampler="auto", m_init=None, m_max=20_000, schedule="ascent",
              mstep="auto", optimizer_options=None, stop="ascent", n_consecutive=3, gamma=0.25,
              track_loglik=True, correct_optimism=False, stream=False, **estep_options):
    max_iter = 200 if max_iter is None else max_iter
    tol = 1e-3 if tol is None else tol
    es = make_estep(model, sampler, estep_options)
    n_chains = es.n_chains
    m_init = check_positive_int(m_init if m_init is not None else 10 * n_chains, "m_init")
    m_max = check_positive_int(m_max, "m_max")
    if m_max < m_init:
        raise ValueError(f"m_max must be at least m_init={m_init} (the sample size can only grow), got m_max={m_max}")
    check_choice(stop, "stop", {"ascent", "relative"})
    n_consecutive = check_positive_int(n_consecutive, "n_consecutive")
    gamma = check_fraction(gamma, "gamma")
    track_loglik = check_bool(track_loglik, "track_loglik")
    stream = check_bool(stream, "stream")
    optimizer_options = check_mapping(optimizer_options, "optimizer_options")
    sched = make_schedule(schedule, m_init, m_max)
    kind = choose_mstep(model, mstep)
    if isinstance(correct_optimism, np.bool_):
        correct_optimism = bool(correct_optimism)
    if not (isinstance(correct_optimism, bool) or (isinstance(correct_optimism, str) and correct_optimism == "auto")):
        raise ValueError(f"correct_optimism must be True, False or 'auto', got {correct_optimism!r}")
    correcting = correct_optimism is True or (correct_optimism == "auto" and not stream and isinstance(sched, Ascent))
    if stream and (kind != "closed_form" or correct_optimism is True or getattr(sched, "needs_covariance", False)):
        raise ValueError(
            "stream=True needs the closed-form M step (a model with sufficient_stats and mstep) and "
            "works without correct_optimism and the booth-hobert schedule, which need the draws; got "
            f"mstep={kind!r}, correct_optimism={correct_optimism}, schedule={sched.name!r}"
        )
    settings = dict(method="mcem", max_iter=max_iter, tol=tol, m_init=m_init, m_max=m_max,
                    schedule=sched.name, mstep=kind, stop=stop, n_consecutive=n_consecutive, **es.settings)
    return Config(max_iter=max_iter, tol=tol, settings=settings, es=es, m_max=m_max, stop=stop,
                  n_consecutive=n_consecutive, gamma=gamma, z_gamma=float(norm.ppf(1 - gamma)),
                  track_loglik=track_loglik, stream=stream, optimizer_options=optimizer_options, sched=sched,
                  kind=kind, correct_optimism=correct_optimism, correcting=correcting, pending=None)


def init(cfg, model, theta, rng):
    rng_init, rng = rng.spawn(2)
    chains = cfg.es.init(theta, rng_init)
    st = State(0, theta, chains, rng, cfg.sched.first(), 0, 0, 0, 1)
    return st, {"loglik": track(model, theta, cfg.track_loglik), "m": 0}


def halves(draws):
    """Two halves of the draws: by chains when there are at least two, by draws otherwise."""
    v = next(iter(draws.values()))
    n_chain, n_draw = v.shape[:2]
    if n_chain >= 2:
        h = n_chain // 2
        return {k: x[:h] for k, x in draws.items()}, {k: x[h:] for k, x in draws.items()}
    h = n_draw // 2
    return {k: x[:, :h] for k, x in draws.items()}, {k: x[:, h:] for k, x in draws.items()}


def optimism(model, kind, theta_hat, draws, optimizer_options):
    """Cross-fitted estimate of the in-sample optimism of delta-Q_hat at the step taken.

    Write Q_hat(theta) = Q(theta) + e(theta), with e the Monte Carlo error of the draws, and let
    s = grad e(theta*) be the error of the mean score at the maximiser theta* of Q, with
    covariance Sigma, and H = -grad^2 Q(theta*). To first order the M step lands at
    theta_hat = theta* + H^-1 s. The in-sample delta-Q_hat = Q_hat(theta_hat) - Q_hat(theta_t) then
    exceeds the same difference measured on fresh draws, Q(theta_hat) - Q(theta_t) on average, by

        E[e(theta_hat) - e(theta_t)] = E[s' H^-1 s] = tr(H^-1 Sigma),

    because e(theta_t) has mean zero at the fixed point theta_t, while e(theta_hat) picks up the
    error that the M step itself followed. (Half of that, tr(H^-1 Sigma) / 2, is the excess of
    Q_hat(theta_hat) over Q_hat(theta*); the ascent bound needs the whole excess of the step taken.)

    Cross-fitting: with halves A and B of the draws (independent halves of the chains where
    there are two or more), each has mean-score error s_A, s_B of covariance 2 Sigma, and
    theta_A = theta* + H^-1 s_A. Expanding the quadratic,

        D = [Q_A(theta_A) - Q_A(theta_B)] + [Q_B(theta_B) - Q_B(theta_A)] = (s_A - s_B)' H^-1 (s_A - s_B),

    whose expectation is tr(H^-1 (2 Sigma + 2 Sigma)) = 4 tr(H^-1 Sigma). So D / 4 estimates the
    optimism of the full-sample step.
    """
    A, B = halves(draws)
    if next(iter(A.values())).shape[1] < 1 or next(iter(B.values())).shape[1] < 1:
        return 0.0
    ta, ia = mstep_on_draws(model, kind, theta_hat, A, optimizer_options)
    tb, ib = mstep_on_draws(model, kind, theta_hat, B, optimizer_options)
    ta, bad_a = checked_update(model, ta, "theta_A")
    tb, bad_b = checked_update(model, tb, "theta_B")
    if not (ia.success and ib.success) or bad_a or bad_b:
        return 0.0
    with np.errstate(all="ignore"):
        d = (M.q_hat(model, ta, A) - M.q_hat(model, tb, A)) + (M.q_hat(model, tb, B) - M.q_hat(model, ta, B))
    return float(max(d, 0.0) / 4.0) if np.isfinite(d) else 0.0


def mstep_on_draws(model, kind, theta, draws, optimizer_options, rng=None):
    """The M step on kept draws; the caller checks the result (:func:`checked_update`)."""
    if kind == "adam":
        return M.adam(model, theta, draws, rng, **dict(optimizer_options or {}))
    if kind == "closed_form":
        new, _ = M.closed_form(model, draws)
        return new, M.MStepInfo(True, 1, 1, "closed form")
    return M.numerical(model, theta, draws, options=optimizer_options)


def step(cfg, model, st):
    t, es, sched, n_chains = st.t + 1, cfg.es, cfg.sched, cfg.es.n_chains
    theta, chains, rng = st.theta, st.state, st.rng
    per_chain = max(1, math.ceil(st.m / n_chains))
    if cfg.stream:
        res, draws = stream_run(es, model, theta, chains, per_chain, rng)
    else:
        res = es.run(theta, chains, per_chain, rng)
        draws = res.draws
    chains, diag = res.state, res.diagnostics
    appended = 0
    while True:
        if cfg.stream:
            new, info = draws.mstep(theta)
        else:
            new, info = mstep_on_draws(model, cfg.kind, theta, draws, cfg.optimizer_options, rng)
        new, why = checked_update(model, new)
        if why is not None:
            return st, None, invalid(t, why)
        with np.errstate(all="ignore"):
            if cfg.stream:
                dq, se = draws.delta_q(es, new, theta)
            else:
                dq, se, _ = M.delta_q(model, new, theta, draws)
        if not (np.isfinite(dq) and np.isfinite(se)):
            return st, None, invalid(t, (
                f"delta-Q is {dq} (Monte Carlo SE {se}): log p(x, z; theta) is not finite over the draws at "
                "the new or the old parameters (an overflow, or a density that is -inf somewhere the "
                "sampler went)"))
        opt = 0.0
        if cfg.correcting and cfg.kind != "adam":
            opt = optimism(model, cfg.kind, new, draws, cfg.optimizer_options)
        dq_ascent = dq - opt  # for the sample size: corrected unless correct_optimism=False
        if cfg.correct_optimism is True:
            dq = dq_ascent  # corrected for stopping too
        n_kept = per_chain * n_chains
        lower = dq_ascent - (sched.z_alpha if isinstance(sched, Ascent) else cfg.z_gamma) * se
        if not isinstance(sched, Ascent) or lower > 0 or n_kept >= cfg.m_max:
            break
        extra = max(1, math.ceil(sched.append_size(n_kept) / n_chains))
        extra = min(extra, max(1, math.ceil((cfg.m_max - n_kept) / n_chains)))
        if cfg.stream:
            more, block = stream_run(es, model, theta, chains, extra, rng, burn=0)
            draws.merge(block)
        else:
            more = es.run(theta, chains, extra, rng, burn=0)
            draws = concat_draws(draws, more.draws)
        chains = more.state
        per_chain += extra
        appended += 1
    n_kept = per_chain * n_chains
    if not info.success:
        warnings.warn(ConvergenceWarning(
            f"mcem: the M step of iteration {t} did not succeed ({info.message}); the history flags it "
            "(mstep_success=False)", key="mstep_failed"), stacklevel=4)
    swamped_now = lower <= 0
    upper = dq + cfg.z_gamma * se
    row = dict(loglik=track(model, new, cfg.track_loglik), m=n_kept, delta_q=dq, mcse=se, lower=lower,
               upper=upper, appended=appended, mstep_success=info.success, optimism=opt,
               mc_error_dominates=swamped_now)
    row.update(diag_values(diag))
    sched_info = {"delta_q": dq_ascent, "mcse": se}
    if getattr(sched, "needs_covariance", False):
        cov = M.update_covariance(model, new, draws)
        inside, stat = sched.inside(model.to_unconstrained(theta), model.to_unconstrained(new), cov)
        sched_info["inside"] = inside
        row["ellipsoid_stat"] = stat
    if cfg.stop == "ascent":
        ok = upper < cfg.tol and dq >= -cfg.z_gamma * se
    else:
        u_old, u_new = model.to_unconstrained(theta), model.to_unconstrained(new)
        ok = np.max(np.abs(u_new - u_old) / (np.abs(u_old) + 1e-3), initial=0.0) < cfg.tol
    # chains that barely moved give delta-Q = 0 with no Monte Carlo error: that is no evidence
    ok = ok and not bool((diag or {}).get("low_acceptance", False))
    hits = st.hits + 1 if ok else 0
    cfg.pending = (n_kept, sched_info)
    new_st = State(t, new, chains, rng, st.m, hits, st.swamped + 1 if swamped_now else 0,
                   st.total_draws + n_kept, per_chain)
    stop = None
    if hits >= cfg.n_consecutive:
        stop = Stop("tol", True,
                    f"converged: the upper {1 - cfg.gamma:.0%} bound of delta-Q was below tol={cfg.tol:g} "
                    f"{cfg.n_consecutive} times in a row" if cfg.stop == "ascent" else
                    f"converged: relative parameter change below tol={cfg.tol:g} {cfg.n_consecutive} times in a row")
    return new_st, row, stop


def advance(cfg, model, st):
    """The sample size of the next iteration (asked only when there is one)."""
    n_kept, info = cfg.pending
    return st._replace(m=cfg.sched.next(st.t, n_kept, info))


def interrupted(cfg, model, st):
    return st.theta, {"loglik": model.exact_loglik(st.theta), "total_draws": st.total_draws, "draws": None}


def finish(cfg, model, st, stop, history):
    message = stop.message
    tol, sched = cfg.tol, cfg.sched
    recent_se = history["mcse"][-3:]
    noisy = bool(np.all(cfg.z_gamma * recent_se >= tol)) if recent_se.size else False
    recent = history.rows[1:][-10:]
    # the stall of the published rule: delta-Q's in-sample optimism keeps its lower bound above
    # zero, so m never grows and the upper bound never reaches tol
    stalled = (stop.stopped_by == "max_iter" and isinstance(sched, Ascent) and not cfg.correcting
               and cfg.kind != "adam" and len(recent) >= 5
               and len({r["m"] for r in recent}) == 1 and recent[-1]["m"] < cfg.m_max
               and all(r["lower"] > 0 for r in recent))
    if stalled:
        message += (
            f"; the sample size stayed at m={recent[-1]['m']:g} with delta-Q's lower bound above zero in "
            f"the last {len(recent)} iterations: its in-sample optimism (O(p/m) for p="
            f"{model.n_unconstrained} parameters) may be what keeps it up; correct_optimism='auto' "
            "corrects the sample-size decisions for it" + (" (with stream=False)" if cfg.stream else "")
        )
        warnings.warn(MonteCarloWarning("mcem: " + message, key="optimism_stall"), stacklevel=5)
    elif stop.stopped_by == "max_iter" and (st.swamped or noisy):
        why = (f"the lower bound of delta-Q was not above zero in the last {st.swamped} iteration(s)"
               if st.swamped else f"its standard error alone kept the upper bound of delta-Q above tol={tol:g}")
        message += f"; the Monte Carlo error dominates: {why} (increase m_max or the sample size)"
        warnings.warn(MonteCarloWarning("mcem: " + message, key="mc_error_dominates"), stacklevel=5)
    stop = stop._replace(message=message)
    extra = {"loglik": model.exact_loglik(st.theta)}
    if cfg.stream:
        return st.theta, stop, {**extra, "total_draws": st.total_draws, "draws": None}
    # draws at the final estimate (the loop's last draws are at the previous iterate), for
    # standard errors by Louis' identity and importance-sampling likelihoods
    final = cfg.es.run(st.theta, st.state, st.per_chain, st.rng)
    return st.theta, stop, {**extra, "total_draws": st.total_draws + st.per_chain * cfg.es.n_chains,
                            "draws": final.draws}

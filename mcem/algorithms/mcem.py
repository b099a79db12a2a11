"""Monte Carlo EM with a scale-free stopping rule and automatic sample sizes (``method="mcem"``).

Options (keywords of :func:`mcem.fit`)
--------------------------------------
``m`` counts the draws kept in all (summed over chains).

``stop``: ``"precision"`` (default) ends the run when further iterations cannot move the
estimate by more than a small fraction ``tol`` (default 0.1) of its standard error, on the natural
scale of every parameter (:mod:`mcem.algorithms.rule`; derivation in the theory page):
``n_consecutive`` (default 2) iterations in a row at which (1) the Monte Carlo error of the
iterate, at the stationary level of the iterates (Booth & Hobert's covariance of the M step
propagated by the EM rate), is at most ``tol`` standard errors (Louis' identity), and (2) the
distance EM still has to go (first order, from the step and the EM rate; averaged over the last
three iterations with weights of their precision) is not significantly more than ``tol / 2``
standard errors, and that average is precise to ``tol``. The measures are computed only where
the ascent may be insignificant (:mod:`mcem.inference.precision`). The sample size grows to
what those targets need (the Monte Carlo error falls as 1/sqrt(m)), never beyond: not to
``m_max``. Where they need more than ``m_max`` draws, the run stops after ``n_consecutive``
insignificant ascents at ``m_max`` with ``stopped_by="m_max"``, ``converged=False`` and a warning
that gives the precision reached. The in-sample optimism of delta-Q is removed from its
significance test (the trace below, computed from the same derivatives).
``stop="ascent"`` is the published rule of Caffo, Jank & Jones (2005): the upper confidence bound
of delta-Q below ``tol`` (a log-likelihood scale, default 1e-3) ``n_consecutive`` (default 3)
times in a row; ``stop="relative"``: the largest relative change of the unconstrained parameters
below ``tol`` as often.

``mstep``: ``"auto"`` (closed form from the model's sufficient statistics when it has them,
numerical otherwise), ``"closed_form"``, ``"numerical"`` (Newton's method on Q_hat where the
model has an exact Hessian, L-BFGS-B otherwise: :func:`mcem.mstep.numerical`) or ``"adam"``
(stochastic: Adam over minibatches of draws, and of units with ``batch_units``;
``optimizer_options`` takes ``n_steps``, ``lr``,
``batch_draws``, ``batch_units``: see :func:`mcem.mstep.adam`).
``schedule``: ``"ascent"`` (default), ``"booth-hobert"``, ``"fixed"``, ``"geometric"``, a list
or a function of the iteration (see :mod:`mcem.schedules`).
``expand``: ``"auto"`` (default) takes the model's parameter-expanded M step (PX-EM: a
model's ``expanded_mstep``, which :func:`mcem.models.random_intercept_glmm` has; see
:class:`mcem.mstep.Expanded`) with the numerical M step and ``stop="precision"`` (without
``optimizer_options``) while the ascent of its expanded Q is significant, and plain EM steps from
the first iteration where it may not be (the stopping rule measures EM's own rate); ``False``
never takes it, ``True`` asks for it and refuses a run that cannot. The history's ``expanded``
column records which iterations took it.
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
from ..inference.precision import precision as measure_precision
from ..schedules import Ascent, make_schedule
from .common import choose_mstep, diag_values, make_estep, track
from .loop import Config, Stop, checked_update, invalid
from .rule import DEFAULT_TOL, final_draws, target_size
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
    target: int = 0  # the sample size the precision target needs (0: not known yet)
    limited: int = 0  # consecutive insignificant ascents at m_max short of the precision target
    opt_m: float = 0.0  # the last measured in-sample optimism of delta-Q times its sample size
    window: Any = None  # (k, 2, n) the last EM distances to go and their sds (in SEs), or None
    grow_to: int = 0  # the sample size the distance test needs next (0: no growth asked)
    expanded: int = 0  # 1 while the model's parameter-expanded M step is in use (see step)


def configure(model, *, max_iter, tol, sampler="auto", m_init=None, m_max=20_000, schedule="ascent",
              mstep="auto", optimizer_options=None, stop=None, n_consecutive=None, gamma=0.25,
              track_loglik=True, correct_optimism=False, stream=False, expand="auto", **estep_options):
    max_iter = 200 if max_iter is None else max_iter
    stream = check_bool(stream, "stream")
    stop = ("ascent" if stream else "precision") if stop is None else stop
    check_choice(stop, "stop", {"precision", "ascent", "relative"})
    tol = (DEFAULT_TOL if stop == "precision" else 1e-3) if tol is None else tol
    n_consecutive = (2 if stop == "precision" else 3) if n_consecutive is None else n_consecutive
    es = make_estep(model, sampler, estep_options)
    n_chains = es.n_chains
    m_init = check_positive_int(m_init if m_init is not None else 10 * n_chains, "m_init")
    m_max = check_positive_int(m_max, "m_max")
    if m_max < m_init:
        raise ValueError(f"m_max must be at least m_init={m_init} (the sample size can only grow), got m_max={m_max}")
    n_consecutive = check_positive_int(n_consecutive, "n_consecutive")
    gamma = check_fraction(gamma, "gamma")
    track_loglik = check_bool(track_loglik, "track_loglik")
    optimizer_options = check_mapping(optimizer_options, "optimizer_options")
    sched = make_schedule(schedule, m_init, m_max)
    kind = choose_mstep(model, mstep)
    if isinstance(correct_optimism, np.bool_):
        correct_optimism = bool(correct_optimism)
    if not (isinstance(correct_optimism, bool) or (isinstance(correct_optimism, str) and correct_optimism == "auto")):
        raise ValueError(f"correct_optimism must be True, False or 'auto', got {correct_optimism!r}")
    correcting = stop != "precision" and (
        correct_optimism is True or (correct_optimism == "auto" and not stream and isinstance(sched, Ascent)))
    if stream and (kind != "closed_form" or correct_optimism is True or getattr(sched, "needs_covariance", False)
                   or stop == "precision"):
        raise ValueError(
            "stream=True needs the closed-form M step (a model with sufficient_stats and mstep) and "
            "works without correct_optimism, the booth-hobert schedule and stop='precision', which need the "
            f"draws; got mstep={kind!r}, correct_optimism={correct_optimism}, schedule={sched.name!r}, stop={stop!r}"
        )
    if isinstance(expand, np.bool_):
        expand = bool(expand)
    if not (isinstance(expand, bool) or (isinstance(expand, str) and expand == "auto")):
        raise ValueError(f"expand must be 'auto', True or False, got {expand!r}")
    has_px = callable(getattr(model, "expanded_mstep", None))
    if expand is True and not (has_px and kind == "numerical" and stop == "precision" and not stream):
        raise ValueError(
            "expand=True needs a model with a parameter-expanded M step (expanded_mstep, as "
            "random_intercept_glmm has), the numerical M step and stop='precision' without stream; got "
            f"model {model.name!r} ({'with' if has_px else 'without'} expanded_mstep), mstep={kind!r}, "
            f"stop={stop!r}, stream={stream}")
    expanding = expand is not False and has_px and kind == "numerical" and stop == "precision" and not stream \
        and not optimizer_options
    settings = dict(method="mcem", max_iter=max_iter, tol=tol, m_init=m_init, m_max=m_max,
                    schedule=sched.name, mstep=kind, stop=stop, n_consecutive=n_consecutive,
                    expand=expanding, **es.settings)
    return Config(max_iter=max_iter, tol=tol, settings=settings, es=es, m_max=m_max, stop=stop,
                  n_consecutive=n_consecutive, gamma=gamma, z_gamma=float(norm.ppf(1 - gamma)),
                  track_loglik=track_loglik, stream=stream, optimizer_options=optimizer_options, sched=sched,
                  kind=kind, correct_optimism=correct_optimism, correcting=correcting, pending=None,
                  precision=None, expanding=expanding)


def init(cfg, model, theta, rng):
    rng_init, rng = rng.spawn(2)
    chains = cfg.es.init(theta, rng_init)
    st = State(0, theta, chains, rng, cfg.sched.first(), 0, 0, 0, 1, expanded=int(cfg.expanding))
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


def _expanded(cfg, model, st, theta, draws, trace, n_kept):
    """``(new, info, delta_q, mcse)`` of the model's parameter-expanded M step
    (:class:`mcem.mstep.Expanded`) where the ascent of its expanded Q is significant, else None.

    PX-EM converges where EM is slow, but the stopping rule's measures (the EM rate from the
    fraction of missing information, the distance still to go, the Monte Carlo error of the
    iterate) are those of plain EM steps. So the expanded step is taken only while its ascent is
    clearly significant (far from the MLE, where no measure is needed); at the first iteration
    where it may not be, the plain M step is taken instead, and every later iteration is a plain
    EM step, which the rule measures.
    """
    ex = model.expanded_mstep(theta, draws)
    if ex is None:
        return None
    new, why = checked_update(model, ex.theta)
    if why is not None:
        return None
    with np.errstate(all="ignore"):
        dq, se, _ = M.expanded_delta_q(model, ex._replace(theta=new), theta, draws,
                                       old=M.trace_at(model, theta, draws, trace))
    zc = cfg.sched.z_alpha if isinstance(cfg.sched, Ascent) else cfg.z_gamma
    # less its in-sample optimism, measured for this step (several parameters fitted to the same
    # draws; without it, noisy expanded steps look significant and the sample never grows)
    opt = ex.optimism if np.isfinite(ex.optimism) else (2 * st.opt_m / n_kept if st.opt_m > 0 else np.inf)
    if not (np.isfinite(dq) and np.isfinite(se) and dq - opt - zc * se > 0):
        return None
    return new, ex.info, dq, se


def _appendable(cfg, sched, n_kept, lower, target):
    """Draws (in all) to append within the iteration: the ascent is lost in Monte Carlo noise
    and the sample size is below what the rule allows (the precision target, m_max)."""
    if not isinstance(sched, Ascent) or lower > 0:
        return 0
    if cfg.stop == "precision" and cfg.tol > 0:
        cap = min(cfg.m_max, target if target else 2 * n_kept)
        return max(0, cap - n_kept)
    return min(sched.append_size(n_kept), cfg.m_max - n_kept)


def step(cfg, model, st):
    t, es, sched, n_chains = st.t + 1, cfg.es, cfg.sched, cfg.es.n_chains
    theta, chains, rng = st.theta, st.state, st.rng
    per_chain = max(1, math.ceil(st.m / n_chains))
    if cfg.stream:
        res, draws = stream_run(es, model, theta, chains, per_chain, rng)
    else:
        res = es.run(theta, chains, per_chain, rng)
        draws = res.draws
    trace = None if cfg.stream else res.loglik_trace  # the log joints at theta of the kept draws
    chains, diag = res.state, res.diagnostics
    appended, target, prec, opt_m = 0, st.target, None, st.opt_m
    px = _expanded(cfg, model, st, theta, draws, trace, per_chain * n_chains) if st.expanded else None
    if px is not None:  # a significant ascent: no precision measure, no appended draws
        new, info, dq, se = px
        n_kept, opt = per_chain * n_chains, 0.0
        dq_ascent = dq
        lower = dq - (sched.z_alpha if isinstance(sched, Ascent) else cfg.z_gamma) * se
    while px is None:
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
                dq, se, _ = M.delta_q(model, new, theta, draws, old=M.trace_at(model, theta, draws, trace))
        if not (np.isfinite(dq) and np.isfinite(se)):
            return st, None, invalid(t, (
                f"delta-Q is {dq} (Monte Carlo SE {se}): log p(x, z; theta) is not finite over the draws at "
                "the new or the old parameters (an overflow, or a density that is -inf somewhere the "
                "sampler went)"))
        n_kept = per_chain * n_chains
        opt = 0.0
        if cfg.stop == "precision":
            # measured where the ascent may be insignificant (the in-sample optimism falls as 1/m,
            # so the last one measured bounds it); a clearly significant ascent needs no measure
            guess = st.opt_m / n_kept if st.opt_m > 0 else np.inf
            zc = sched.z_alpha if isinstance(sched, Ascent) else cfg.z_gamma
            if not (np.isfinite(guess) and dq - 2 * guess - zc * se > 0):
                step_u = model.to_unconstrained(new) - model.to_unconstrained(theta)
                with np.errstate(all="ignore"):
                    prec = measure_precision(model, new, draws, step=step_u, scores=info.scores)
                opt = prec.optimism if np.isfinite(prec.optimism) and prec.optimism > 0 else 0.0
                opt_m = opt * n_kept
                known = target_size(n_kept, prec.ratio, cfg.tol)
                target = known if known is not None else target
            else:
                opt = guess
        elif cfg.correcting and cfg.kind != "adam":
            opt = optimism(model, cfg.kind, new, draws, cfg.optimizer_options)
        dq_ascent = dq - opt  # for the sample size: corrected unless correct_optimism=False
        if cfg.correct_optimism is True and cfg.stop != "precision":
            dq = dq_ascent  # corrected for stopping too
        lower = dq_ascent - (sched.z_alpha if isinstance(sched, Ascent) else cfg.z_gamma) * se
        want = _appendable(cfg, sched, n_kept, lower, target)
        if want <= 0 or (prec is not None and prec.ratio <= cfg.tol):
            break
        extra = max(1, math.ceil(want / n_chains))
        if cfg.stream:
            more, block = stream_run(es, model, theta, chains, extra, rng, burn=0)
            draws.merge(block)
        else:
            more = es.run(theta, chains, extra, rng, burn=0)
            draws = concat_draws(draws, more.draws)
            trace = np.concatenate([trace, more.loglik_trace], axis=1)
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
               mc_error_dominates=swamped_now, expanded=px is not None)
    if prec is not None:
        row.update(mc_ratio=prec.ratio, em_rate=prec.rate)
    row.update(diag_values(diag))
    sched_info = {"delta_q": dq_ascent, "mcse": se}
    if getattr(sched, "needs_covariance", False):
        cov = M.update_covariance(model, new, draws)
        inside, stat = sched.inside(model.to_unconstrained(theta), model.to_unconstrained(new), cov)
        sched_info["inside"] = inside
        row["ellipsoid_stat"] = stat
    limited, window, grow_to, far = 0, None, 0, np.inf
    if cfg.stop == "precision" and prec is not None and prec.delta is not None:
        window, far, noise = _distance_window(st.window, prec, sched.z_alpha if isinstance(sched, Ascent) else cfg.z_gamma)
        row["distance"] = far
        row["distance_noise"] = noise
        if np.isfinite(far) and noise > cfg.tol:  # the test cannot tell tol from noise: more draws
            grow_to = min(cfg.m_max, 4 * n_kept, target_size(n_kept, noise, cfg.tol))
    if cfg.stop == "precision":
        # the distance to go is a first-order estimate from the local EM rate, which is often
        # below the rate nearer the MLE (the fraction of missing information grows with a
        # variance component towards it): half of tol keeps the stop on the safe side
        ok = prec is not None and far <= cfg.tol / 2 and prec.ratio <= cfg.tol and not grow_to
        limited = st.limited + 1 if (lower <= 0 and prec is not None and not ok and n_kept >= cfg.m_max) else 0
    elif cfg.stop == "ascent":
        ok = upper < cfg.tol and dq >= -cfg.z_gamma * se
    else:
        u_old, u_new = model.to_unconstrained(theta), model.to_unconstrained(new)
        ok = np.max(np.abs(u_new - u_old) / (np.abs(u_old) + 1e-3), initial=0.0) < cfg.tol
    # chains that barely moved give delta-Q = 0 with no Monte Carlo error: that is no evidence
    low_acc = bool((diag or {}).get("low_acceptance", False))
    ok = ok and not low_acc
    limited = 0 if low_acc else limited
    hits = st.hits + 1 if ok else 0
    cfg.pending = (n_kept, sched_info)
    if prec is not None:
        cfg.precision = prec
    new_st = State(t, new, chains, rng, st.m, hits, st.swamped + 1 if swamped_now else 0,
                   st.total_draws + n_kept, per_chain, int(target or 0), limited, float(opt_m), window, int(grow_to),
                   int(px is not None))
    stop = None
    if hits >= cfg.n_consecutive:
        if cfg.stop == "precision":
            why = (f"no parameter was significantly more than tol/2={cfg.tol / 2:g} standard errors from where "
                   f"EM converges (over the last {WINDOW} iterations) and the Monte Carlo error was at most "
                   f"tol={cfg.tol:g} (largest {prec.ratio:.3g} standard errors, {prec.worst})")
        elif cfg.stop == "ascent":
            why = f"the upper {1 - cfg.gamma:.0%} bound of delta-Q was below tol={cfg.tol:g}"
        else:
            why = f"relative parameter change below tol={cfg.tol:g}"
        stop = Stop("tol", True, f"converged: {why} {cfg.n_consecutive} times in a row")
    elif limited >= cfg.n_consecutive:
        short = (f"the Monte Carlo error is still {prec.ratio:.3g} standard errors ({prec.worst}) > tol={cfg.tol:g}"
                 if prec.ratio > cfg.tol else
                 "the distance EM still has to go is not known to within tol standard errors"
                 if grow_to else "EM is still significantly more than tol/2 standard errors from converging")
        stop = Stop("m_max", False,
                    f"stopped: the ascent was not significant {cfg.n_consecutive} times in a row at m_max={cfg.m_max}, "
                    f"where {short}; the target needs about {max(target or 0, grow_to)} draws (raise m_max or tol)")
    return new_st, row, stop


def advance(cfg, model, st):
    """The sample size of the next iteration (asked only when there is one)."""
    n_kept, info = cfg.pending
    m = cfg.sched.next(st.t, n_kept, info)
    if cfg.stop == "precision" and isinstance(cfg.sched, Ascent):
        if st.target:
            m = min(m, max(n_kept, st.target))  # grow to what the precision target needs, no further
        m = max(m, st.grow_to)
    return st._replace(m=m)


#: Iterations over which the distance EM still has to go is averaged by ``stop="precision"``.
WINDOW = 3


def _distance_window(window, prec, z):
    """The last ``WINDOW`` estimates of the distance EM still has to go (in SEs) with this one;
    the significance test on their mean; and the Monte Carlo sd such a mean will have.

    Returns ``(window, far, noise)``: ``far`` is the largest, over parameters, lower confidence
    bound ``|mean delta_i| - z sd_i`` (``inf`` until the window is full), ``noise`` the largest
    sd of the latest estimate divided by sqrt(WINDOW).
    Averaging consecutive iterations (weighted by their precision) reduces the noise by about
    sqrt(WINDOW); while EM still moves, the earlier iterations had further to go, so the mean
    errs on the safe side.
    """
    new = np.stack([prec.delta, prec.delta_sd])[None]
    if window is not None and np.shape(window)[1:] == new.shape[1:]:
        new = np.concatenate([np.asarray(window, dtype=float)[-(WINDOW - 1):], new])
    if new.shape[0] < WINDOW:
        return new, np.inf, float(np.max(new[-1, 1], initial=0.0))
    # precision-weighted: an early estimate from few draws counts for little
    w = 1.0 / np.maximum(new[:, 1], 1e-12) ** 2
    mean = np.sum(w * new[:, 0], axis=0) / np.sum(w, axis=0)
    sd = 1.0 / np.sqrt(np.sum(w, axis=0))
    # the noise the next windows will have: the latest (largest-m, best-estimated) sd, averaged
    noise = float(np.max(new[-1, 1], initial=0.0)) / np.sqrt(WINDOW)
    return new, float(np.max(np.abs(mean) - z * sd, initial=0.0)), noise


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
               and cfg.stop != "precision" and cfg.kind != "adam" and len(recent) >= 5
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
    elif stop.stopped_by == "m_max":
        warnings.warn(MonteCarloWarning("mcem: " + message, key="precision_not_reached",
                                        value=float(cfg.precision.ratio), worse="high"), stacklevel=5)
    elif stop.stopped_by == "max_iter" and cfg.stop == "precision" and cfg.precision is not None:
        p = cfg.precision
        message += (f"; at the last iteration the Monte Carlo error was {p.ratio:.3g} standard errors "
                    f"({p.worst or 'information not positive definite'}) against tol={tol:g}")
    elif stop.stopped_by == "max_iter" and cfg.stop == "ascent" and (st.swamped or noisy):
        why = (f"the lower bound of delta-Q was not above zero in the last {st.swamped} iteration(s)"
               if st.swamped else f"its standard error alone kept the upper bound of delta-Q above tol={tol:g}")
        message += f"; the Monte Carlo error dominates: {why} (increase m_max or the sample size)"
        warnings.warn(MonteCarloWarning("mcem: " + message, key="mc_error_dominates"), stacklevel=5)
    stop = stop._replace(message=message)
    extra = {"loglik": model.exact_loglik(st.theta)}
    if cfg.precision is not None:
        extra["mc_ratio"] = float(cfg.precision.ratio)
    if cfg.stream:
        return st.theta, stop, {**extra, "total_draws": st.total_draws, "draws": None}
    # draws at the final estimate (the loop's last draws are at the previous iterate), for
    # standard errors by Louis' identity and importance-sampling likelihoods; as many as make
    # the standard errors' own Monte Carlo error small
    n_last = st.per_chain * cfg.es.n_chains
    draws, inf, se_ratio = final_draws(cfg.es, model, st.theta, st.state, st.rng, st.per_chain,
                                       max_total=max(n_last, cfg.m_max))
    n_final = next(iter(draws.values())).shape[1] * cfg.es.n_chains
    extra.update(total_draws=st.total_draws + n_final, draws=draws, se_mc_ratio=se_ratio)
    if inf is not None:
        extra["_inference"] = inf
    return st.theta, stop, extra

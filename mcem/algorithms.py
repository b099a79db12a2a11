"""Monte Carlo EM, SAEM and generalized EM loops (registered as methods of :func:`mcem.fit`)."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

from . import mstep as M
from ._validation import check_bool, check_choice, check_fraction, check_mapping, check_positive_float, check_positive_int
from .checkpoint import clone_generator
from .exceptions import ConvergenceWarning, MonteCarloWarning
from .schedules import Ascent, make_schedule, saem_gain

__all__ = ["run_mcem", "run_saem", "run_gem"]


def _estep(model, sampler, estep_options, **defaults):
    """The MCMC E step; ``estep_options`` are :class:`mcem.EStep` keywords (n_chains, burn, ...)."""
    from .estep import EStep

    return EStep(model, sampler, **{**defaults, **estep_options})


def _options(local_vars, estep_options):
    """The options of a run, as given, for its checkpoint."""
    skip = {"model", "theta", "rng", "callback", "progress", "_resume", "checkpoint", "estep_options"}
    out = {k: v for k, v in local_vars.items() if k not in skip and not k.startswith("_")}
    out.update({k: v for k, v in estep_options.items() if k != "executor"})  # never stored
    return out


def _checkpointer(path, model, method, options):
    if path is None:
        return None
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"checkpoint must be a file path (str or os.PathLike) or None, got {type(path).__name__} {path!r}")
    if os.fspath(path) == "":
        raise ValueError("checkpoint must be a file path, got the empty string ''")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint must be a file path, got {os.fspath(path)!r}, which is a directory")
    from .checkpoint import Checkpointer

    return Checkpointer(path, model, method, options)


def _restore(loop, ck):
    """Loop state and history from a checkpoint."""
    from .result import History

    loop.history = History(ck["history"])
    return dict(ck["loop"])


def _halves(draws):
    """Two halves of the draws: by chains when there are at least two, by draws otherwise."""
    v = next(iter(draws.values()))
    n_chain, n_draw = v.shape[:2]
    if n_chain >= 2:
        h = n_chain // 2
        return {k: x[:h] for k, x in draws.items()}, {k: x[h:] for k, x in draws.items()}
    h = n_draw // 2
    return {k: x[:, :h] for k, x in draws.items()}, {k: x[:, h:] for k, x in draws.items()}


def _optimism(model, kind, theta_hat, draws, optimizer_options):
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
    A, B = _halves(draws)
    if next(iter(A.values())).shape[1] < 1 or next(iter(B.values())).shape[1] < 1:
        return 0.0
    ta, ia = _mstep_on_draws(model, kind, theta_hat, A, optimizer_options)
    tb, ib = _mstep_on_draws(model, kind, theta_hat, B, optimizer_options)
    ta, bad_a = _checked_update(model, ta, "theta_A")
    tb, bad_b = _checked_update(model, tb, "theta_B")
    if not (ia.success and ib.success) or bad_a or bad_b:
        return 0.0
    with np.errstate(all="ignore"):
        d = (M.q_hat(model, ta, A) - M.q_hat(model, tb, A)) + (M.q_hat(model, tb, B) - M.q_hat(model, ta, B))
    return float(max(d, 0.0) / 4.0) if np.isfinite(d) else 0.0


def _clone_rng(rng):
    return clone_generator(rng)


class _StreamedDraws:
    """Draws that are not kept: running sufficient statistics plus what replays them."""

    def __init__(self, model):
        self.model = model
        self.sums, self.count, self.blocks = None, 0, []

    def add(self, z):
        st = self.model.sufficient_stats_fn(z, self.model.data)  # averaged over the chains
        st = {k: np.asarray(v, dtype=float) for k, v in st.items()}
        self.sums = st if self.sums is None else {k: self.sums[k] + st[k] for k in st}
        self.count += 1

    def merge(self, other):
        self.sums = {k: self.sums[k] + other.sums[k] for k in self.sums}
        self.count += other.count
        self.blocks += other.blocks

    def mstep(self, theta):
        stats = {k: v / self.count for k, v in self.sums.items()}
        return self.model.mstep_fn(stats, self.model.data), M.MStepInfo(True, 1, 1, "closed form (streamed)")

    def delta_q(self, es, new, old):
        """Replay every block of this iteration's chains; per-draw differences of log p."""
        parts = []
        for state, rng, n, burn in self.blocks:
            rows = []

            def diff(z, rows=rows):
                rows.append(self.model.log_joint_sum(new, z, 1) - self.model.log_joint_sum(old, z, 1))

            es.run(old, state, n, _clone_rng(rng), burn=burn, keep=False, reducer=diff)
            parts.append(np.stack(rows, axis=1))  # (chain, draw)
        d = np.concatenate(parts, axis=1)
        return float(np.mean(d)), M.mcse_of_mean(d)


def _stream_run(es, model, theta, state, n, rng, burn=None):
    """Run the chains keeping no draws; return the E-step result and the streamed statistics."""
    acc = _StreamedDraws(model)
    acc.blocks.append((state, _clone_rng(rng), n, burn))
    res = es.run(theta, state, n, rng, burn=burn, keep=False, reducer=acc.add)
    return res, acc


def _concat(a, b):
    return {k: np.concatenate([a[k], b[k]], axis=1) for k in a}


def _choose_mstep(model, mstep):
    check_choice(mstep, "mstep", {"auto", "closed_form", "numerical", "adam"})
    if mstep == "adam":
        return "adam"
    has_cf = model.sufficient_stats_fn is not None and model.mstep_fn is not None
    if mstep == "closed_form" and not has_cf:
        raise ValueError(
            "mstep='closed_form' needs a model with sufficient_stats and mstep; "
            f"model {model.name!r} lacks them. Use mstep='numerical'."
        )
    return "closed_form" if (mstep == "auto" and has_cf) or mstep == "closed_form" else "numerical"


def _mstep_on_draws(model, kind, theta, draws, optimizer_options, rng=None):
    if kind == "adam":
        return M.adam(model, theta, draws, rng, **dict(optimizer_options or {}))
    if kind == "closed_form":  # the caller checks the result (_invalid_update)
        new, _ = M.closed_form(model, draws)
        return new, M.MStepInfo(True, 1, 1, "closed form")
    return M.numerical(model, theta, draws, options=optimizer_options)


def _checked_update(model, new, where):
    """``(theta, None)`` with ``new`` checked, or ``(None, why)`` when it cannot be used (NaN,
    infinite, outside a constraint): a Monte Carlo M step's result is never used unchecked."""
    try:
        return model.check_theta(new, where), None
    except (ValueError, TypeError) as exc:
        return None, str(exc)


def _stop_invalid(t, reason):
    """Message and warning of a run stopped by an update it cannot use (as exact EM does)."""
    message = (f"stopped at iteration {t}: {reason}; the result holds the last valid parameters "
               f"(iteration {t - 1})")
    warnings.warn(ConvergenceWarning("mcem: " + message, key="invalid_update"), stacklevel=4)
    return message


def _diag_values(diag):
    """Scalar E-step diagnostics for the history row."""
    out = {}
    for k, v in (diag or {}).items():
        if isinstance(v, bool | np.bool_):
            out[k] = bool(v)
        elif isinstance(v, int | float | np.integer | np.floating):
            out[k] = float(v)
        elif isinstance(v, dict):
            for kk, vv in v.items():
                if isinstance(vv, int | float | np.integer | np.floating | bool | np.bool_):
                    out[f"{k}.{kk}"] = float(vv)
    return out


def _track(model, theta, track_loglik):
    if track_loglik and model.loglik_fn is not None:
        return model.exact_loglik(theta)
    return np.nan


def run_mcem(
    model,
    theta,
    *,
    rng,
    max_iter,
    tol,
    callback,
    progress,
    sampler="auto",
    m_init=None,
    m_max=20_000,
    schedule="ascent",
    mstep="auto",
    optimizer_options=None,
    stop="ascent",
    n_consecutive=3,
    gamma=0.25,
    track_loglik=True,
    correct_optimism=False,
    stream=False,
    checkpoint=None,
    _resume=None,
    **estep_options,
):
    """Monte Carlo EM with the ascent-based sample size and stopping rules (Caffo et al. 2005).

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
    ``checkpoint``: a file written after every iteration; :func:`mcem.resume` continues from it.

    ``correct_optimism``: delta-Q is estimated on the draws the M step maximised, which makes it
    optimistic by about ``tr(H^-1 Cov(mean score))`` (derived in ``_optimism``) (Caffo et al. use the same draws; the
    bias is O(p/m) and, with many parameters, keeps the lower bound of delta-Q above zero, so
    that m never grows and the upper bound never falls below ``tol``; the result's message says
    so when that stalls a run). The bias is estimated by cross-fitting two halves of the draws
    (halves of the chains, two extra M steps on half the draws each) and recorded as
    ``optimism``. ``False`` (default) is the published rule. ``"auto"`` subtracts it where the
    sample size is decided (appending draws, the next m: the history's ``lower``) and keeps the
    uncorrected, conservative, ``delta_q`` and ``upper`` for stopping; ``True`` subtracts it
    from those too. Neither applies with ``stream=True`` or the Adam M step (``"auto"`` is then
    the published rule; ``True`` is refused with ``stream=True``).
    With either, m grows sooner, and where EM itself is slow (a small true delta-Q far from the
    optimum) the run may stop sooner: on the salamander data at ``tol=0.01`` the variance
    components stop 0.1 short of the published rule's.

    ``stream``: keep no draws (with a sharded E step, one run's draws still gather in this
    process: see :mod:`mcem.distributed`). The closed-form M step accumulates the sufficient statistics draw
    by draw; delta-Q is then computed by replaying the same chains from their saved state and
    generator (identical draws, twice the sampling, memory independent of m). Needs the model's
    sufficient statistics; the result has no ``draws`` (standard errors then need an exact
    log-likelihood or a separate E step).
    """
    from .fit import _Loop

    run_options = _options(locals(), estep_options)
    max_iter = 200 if max_iter is None else max_iter
    tol = 1e-3 if tol is None else tol
    es = _estep(model, sampler, estep_options)
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
    kind = _choose_mstep(model, mstep)
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
                    schedule=sched.name, mstep=kind, stop=stop, n_consecutive=n_consecutive,
                    **es.settings)
    loop = _Loop(model, "mcem", max_iter, callback, progress, settings)
    z_gamma = float(norm.ppf(1 - gamma))
    ckpt = _checkpointer(checkpoint, model, "mcem", run_options)
    if _resume is None:
        rng_init, rng = rng.spawn(2)
        state = es.init(theta, rng_init)
        loop.record(0, theta, loglik=_track(model, theta, track_loglik), m=0)
        s = dict(t=0, theta=theta, state=state, rng=rng, m=sched.first(), hits=0, swamped=0,
                 total_draws=0, per_chain=1)
    else:
        s = _restore(loop, _resume)
    theta, state, rng, m = s["theta"], s["state"], s["rng"], s["m"]
    hits, swamped, total_draws, per_chain = s["hits"], s["swamped"], s["total_draws"], s["per_chain"]
    stopped_by, converged, message = "max_iter", False, f"reached max_iter={max_iter}"
    done = dict(s)  # the state after the last completed iteration
    try:
        for t in range(s["t"] + 1, max_iter + 1):
            per_chain = max(1, math.ceil(m / n_chains))
            if stream:
                res, draws = _stream_run(es, model, theta, state, per_chain, rng)
            else:
                res = es.run(theta, state, per_chain, rng)
                draws = res.draws
            state, diag = res.state, res.diagnostics
            appended = 0
            invalid = None
            while True:
                if stream:
                    new, info = draws.mstep(theta)
                else:
                    new, info = _mstep_on_draws(model, kind, theta, draws, optimizer_options, rng)
                new, invalid = _checked_update(model, new, "the M step's result")
                if invalid is not None:
                    break
                with np.errstate(all="ignore"):
                    if stream:
                        dq, se = draws.delta_q(es, new, theta)
                    else:
                        dq, se, _ = M.delta_q(model, new, theta, draws)
                if not (np.isfinite(dq) and np.isfinite(se)):
                    invalid = (f"delta-Q is {dq} (Monte Carlo SE {se}): log p(x, z; theta) is not finite over "
                               "the draws at the new or the old parameters (an overflow, or a density that is "
                               "-inf somewhere the sampler went)")
                    break
                optimism = 0.0
                if correcting and kind != "adam":
                    optimism = _optimism(model, kind, new, draws, optimizer_options)
                dq_ascent = dq - optimism  # for the sample size: corrected unless correct_optimism=False
                if correct_optimism is True:
                    dq = dq_ascent  # corrected for stopping too
                n_kept = per_chain * n_chains
                lower = dq_ascent - (sched.z_alpha if isinstance(sched, Ascent) else z_gamma) * se
                if not isinstance(sched, Ascent) or lower > 0 or n_kept >= m_max:
                    break
                extra = max(1, math.ceil(sched.append_size(n_kept) / n_chains))
                extra = min(extra, max(1, math.ceil((m_max - n_kept) / n_chains)))
                if stream:
                    more, block = _stream_run(es, model, theta, state, extra, rng, burn=0)
                    draws.merge(block)
                else:
                    more = es.run(theta, state, extra, rng, burn=0)
                    draws = _concat(draws, more.draws)
                state = more.state
                per_chain += extra
                appended += 1
            n_kept = per_chain * n_chains
            total_draws += n_kept
            if invalid is not None:
                stopped_by, converged = "invalid_update", False
                message = _stop_invalid(t, invalid)
                break
            if not info.success:
                warnings.warn(
                    f"mcem: the M step of iteration {t} did not succeed ({info.message}); "
                    "the history flags it (mstep_success=False)"
                    + ("; the previous parameters are kept" if new is theta else ""),
                    ConvergenceWarning,
                    stacklevel=3,
                )
            swamped_now = lower <= 0
            swamped = swamped + 1 if swamped_now else 0
            upper = dq + z_gamma * se
            old = theta
            theta = new
            row = dict(
                loglik=_track(model, theta, track_loglik), m=n_kept, delta_q=dq, mcse=se,
                lower=lower, upper=upper, appended=appended, mstep_success=info.success, optimism=optimism,
                mc_error_dominates=swamped_now,
            )
            row.update(_diag_values(diag))
            sched_info = {"delta_q": dq_ascent, "mcse": se}
            if getattr(sched, "needs_covariance", False):
                cov = M.update_covariance(model, theta, draws)
                inside, stat = sched.inside(model.to_unconstrained(old), model.to_unconstrained(theta), cov)
                sched_info["inside"] = inside
                row["ellipsoid_stat"] = stat
            if stop == "ascent":
                ok = upper < tol and dq >= -z_gamma * se
            else:
                u_old, u_new = model.to_unconstrained(old), model.to_unconstrained(theta)
                ok = np.max(np.abs(u_new - u_old) / (np.abs(u_old) + 1e-3), initial=0.0) < tol
            # chains that barely moved give delta-Q = 0 with no Monte Carlo error: that is no evidence
            ok = ok and not bool((diag or {}).get("low_acceptance", False))
            stop_cb = loop.record(t, theta, **row)
            hits = hits + 1 if ok else 0
            if hits >= n_consecutive:
                stopped_by, converged = "tol", True
                message = (
                    f"converged: the upper {1 - gamma:.0%} bound of delta-Q was below tol={tol:g} "
                    f"{n_consecutive} times in a row" if stop == "ascent" else
                    f"converged: relative parameter change below tol={tol:g} {n_consecutive} times in a row"
                )
                break
            if stop_cb:
                stopped_by, message = "callback", "stopped by the callback"
                break
            m = sched.next(t, n_kept, sched_info)
            done = dict(t=t, theta=theta, state=state, rng=rng, m=m, hits=hits, swamped=swamped,
                        total_draws=total_draws, per_chain=per_chain)
            if ckpt is not None:
                ckpt.save(done, loop.history)
    except KeyboardInterrupt:
        theta, state, rng, per_chain = done["theta"], done["state"], done["rng"], done["per_chain"]
        loop.history.truncate(done["t"] + 1)
        return loop.finish(
            theta, converged=False, stopped_by="interrupted",
            message=f"interrupted after iteration {done['t']}: the result holds the last completed iteration",
            loglik=model.exact_loglik(theta), total_draws=done["total_draws"], draws=None,
        )
    recent_se = loop.history["mcse"][-3:]
    noisy = bool(np.all(z_gamma * recent_se >= tol)) if recent_se.size else False
    recent = loop.history.rows[1:][-10:]
    # the stall of the published rule: delta-Q's in-sample optimism keeps its lower bound above
    # zero, so m never grows and the upper bound never reaches tol
    stalled = (stopped_by == "max_iter" and isinstance(sched, Ascent) and not correcting and kind != "adam"
               and len(recent) >= 5
               and len({r["m"] for r in recent}) == 1 and recent[-1]["m"] < m_max
               and all(r["lower"] > 0 for r in recent))
    if stalled:
        message += (
            f"; the sample size stayed at m={recent[-1]['m']:g} with delta-Q's lower bound above zero in "
            f"the last {len(recent)} iterations: its in-sample optimism (O(p/m) for p="
            f"{model.n_unconstrained} parameters) may be what keeps it up; correct_optimism='auto' "
            "corrects the sample-size decisions for it" + (" (with stream=False)" if stream else "")
        )
        warnings.warn("mcem: " + message, MonteCarloWarning, stacklevel=3)
    elif stopped_by == "max_iter" and (swamped or noisy):
        why = (f"the lower bound of delta-Q was not above zero in the last {swamped} iteration(s)"
               if swamped else f"its standard error alone kept the upper bound of delta-Q above tol={tol:g}")
        message += f"; the Monte Carlo error dominates: {why} (increase m_max or the sample size)"
        warnings.warn("mcem: " + message, MonteCarloWarning, stacklevel=3)
    # Draws at the final estimate (the loop's last draws are at the previous iterate), for
    # standard errors by Louis' identity and importance-sampling likelihoods.
    if stream:
        return loop.finish(theta, converged=converged, stopped_by=stopped_by, message=message,
                           loglik=model.exact_loglik(theta), total_draws=total_draws, draws=None)
    final = es.run(theta, state, per_chain, rng)
    return loop.finish(
        theta, converged=converged, stopped_by=stopped_by, message=message,
        loglik=model.exact_loglik(theta), total_draws=total_draws + per_chain * n_chains,
        draws=final.draws,
    )


def run_saem(
    model,
    theta,
    *,
    rng,
    max_iter,
    tol,
    callback,
    progress,
    sampler="auto",
    draws_per_chain=1,
    burn_iter=None,
    gain_exponent=0.7,
    average=False,
    mstep="auto",
    optimizer_options=None,
    memory_tol=1e-3,
    n_consecutive=5,
    track_loglik=True,
    final_draws=400,
    checkpoint=None,
    _resume=None,
    **estep_options,
):
    """SAEM (Delyon, Lavielle & Moulines 1999).

    With sufficient statistics: ``s_k = s_{k-1} + gamma_k (S(z_k) - s_{k-1})`` and
    ``theta_k = mstep(s_k)``. Otherwise Q is approximated by a weighted memory of past draws
    (weights below ``memory_tol`` are dropped) and maximised numerically. The gain is 1 for
    ``burn_iter`` iterations, then ``(k - burn_iter)^-gain_exponent``. ``average=True`` returns
    the Polyak-Ruppert average of the iterates after burn-in; ``final_draws`` draws at the
    returned estimate are kept for standard errors. The run stops when the relative
    parameter change stays below ``tol`` ``n_consecutive`` times after burn-in, or at max_iter.
    ``sampler`` and any further keywords (``n_chains``, ``burn``, ``warm_burn``, ``thin``,
    ``sampler_options``, ...) configure the MCMC E step, :class:`mcem.EStep`.
    ``checkpoint``: a file written after every iteration; :func:`mcem.resume` continues from it.
    """
    from .fit import _Loop

    run_options = _options(locals(), estep_options)
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
    kind = _choose_mstep(model, mstep)
    if kind == "adam":
        raise ValueError("mstep='adam' is available with method='mcem'; SAEM uses 'closed_form' or 'numerical'")
    es = _estep(model, sampler, estep_options, warm_burn=5)
    settings = dict(method="saem", max_iter=max_iter, tol=tol, draws_per_chain=draws_per_chain,
                    burn_iter=burn_iter, gain_exponent=gain_exponent, average=average, mstep=kind,
                    **es.settings)
    loop = _Loop(model, "saem", max_iter, callback, progress, settings)
    ckpt = _checkpointer(checkpoint, model, "saem", run_options)
    if _resume is None:
        rng_init, rng = rng.spawn(2)
        state = es.init(theta, rng_init)
        loop.record(0, theta, loglik=_track(model, theta, track_loglik), m=0)
        # s: stochastic-approximation statistics; memory: (weight, draws) for the numerical path
        st = dict(t=0, theta=theta, state=state, rng=rng, s=None, memory=[], avg=None, n_avg=0,
                  hits=0, total_draws=0)
    else:
        st = _restore(loop, _resume)
    theta, state, rng, s, memory = st["theta"], st["state"], st["rng"], st["s"], st["memory"]
    avg, n_avg, hits, total_draws = st["avg"], st["n_avg"], st["hits"], st["total_draws"]
    done = dict(st)
    stopped_by, converged, message = "max_iter", False, f"reached max_iter={max_iter}"
    try:
        for k in range(st["t"] + 1, max_iter + 1):
            res = es.run(theta, state, draws_per_chain, rng)
            draws, state = res.draws, res.state
            total_draws += draws_per_chain * es.n_chains
            g = saem_gain(k, burn_iter, gain_exponent)
            old = theta
            if kind == "closed_form":
                flat = {n: v.reshape((-1,) + v.shape[2:]) for n, v in draws.items()}
                S = model.sufficient_stats_fn(flat, model.data)
                s = S if s is None else {n: s[n] + g * (np.asarray(S[n]) - s[n]) for n in s}
                s = {n: np.asarray(v, dtype=float) for n, v in s.items()}
                new = model.mstep_fn(s, model.data)
                ok_m = True
            else:
                memory = [(w * (1 - g), d) for w, d in memory if w * (1 - g) >= memory_tol] + [(g, draws)]
                new, ok_m = _maximise_memory(model, theta, memory, optimizer_options)
            new, invalid = _checked_update(model, new, "the M step's result")
            if invalid is not None:
                stopped_by, converged = "invalid_update", False
                message = _stop_invalid(k, invalid)
                break
            theta = new
            if k > burn_iter:
                n_avg += 1
                avg = {n: v.copy() for n, v in theta.items()} if avg is None else {
                    n: avg[n] + (theta[n] - avg[n]) / n_avg for n in theta}
            row = dict(loglik=_track(model, theta, track_loglik), m=draws_per_chain * es.n_chains,
                       gain=g, mstep_success=ok_m, memory=len(memory))
            row.update(_diag_values(res.diagnostics))
            stop_cb = loop.record(k, theta, **row)
            if k > burn_iter:
                u_old, u_new = model.to_unconstrained(old), model.to_unconstrained(theta)
                small = np.max(np.abs(u_new - u_old) / (np.abs(u_old) + 1e-3), initial=0.0) < tol
                hits = hits + 1 if small else 0
                if hits >= n_consecutive:
                    stopped_by, converged = "tol", True
                    message = (f"converged: relative parameter change below tol={tol:g} "
                               f"{n_consecutive} times in a row after burn-in")
                    break
            if stop_cb:
                stopped_by, message = "callback", "stopped by the callback"
                break
            done = dict(t=k, theta=theta, state=state, rng=rng, s=s, memory=memory, avg=avg,
                        n_avg=n_avg, hits=hits, total_draws=total_draws)
            if ckpt is not None:
                ckpt.save(done, loop.history)
    except KeyboardInterrupt:
        loop.history.truncate(done["t"] + 1)
        last = done["avg"] if (average and done["avg"] is not None) else done["theta"]
        return loop.finish(
            last, converged=False, stopped_by="interrupted",
            message=f"interrupted after iteration {done['t']}: the result holds the last completed iteration",
            loglik=model.exact_loglik(last), total_draws=done["total_draws"], draws=None,
        )
    final = avg if (average and avg is not None) else theta
    per_chain = max(1, math.ceil(check_positive_int(final_draws, "final_draws") / es.n_chains))
    last = es.run(final, state, per_chain, rng, burn=es.burn)  # draws at the estimate, for inference
    return loop.finish(final, converged=converged, stopped_by=stopped_by, message=message,
                       loglik=model.exact_loglik(final), total_draws=total_draws + per_chain * es.n_chains,
                       draws=last.draws)


def _maximise_memory(model, theta, memory, optimizer_options):
    """Maximise the weighted memory of Monte Carlo Q estimates (SAEM without statistics)."""
    from scipy import optimize

    wsum = sum(w for w, _ in memory)

    def f(u):
        th = model.from_unconstrained(u)
        with np.errstate(all="ignore"):
            v = -sum(w * M.q_hat(model, th, d) for w, d in memory) / wsum
        return v if np.isfinite(v) else np.inf

    r = optimize.minimize(f, model.to_unconstrained(theta), method="L-BFGS-B", options=dict(optimizer_options or {}))
    return model.from_unconstrained(r.x), bool(r.success)


def _enumerated_q(model, theta_t):
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


def run_gem(
    model,
    theta,
    *,
    rng,
    max_iter,
    tol,
    callback,
    progress,
    n_steps=1,
    step_size=0.1,
    estep="auto",
    sampler="auto",
    m=200,
    n_consecutive=3,
    checkpoint=None,
    _resume=None,
    **estep_options,
):
    """Generalized EM: the M step takes ``n_steps`` gradient-ascent steps on Q (with backtracking,
    so Q never decreases). The E step is exact by enumeration when the model's only latent is a
    discrete unit latent with per-unit terms (``estep="exact"``), Monte Carlo draws otherwise
    (``m`` draws per iteration).
    ``sampler`` and any further keywords (``n_chains``, ``burn``, ``warm_burn``, ``thin``,
    ``sampler_options``, ...) configure the MCMC E step, :class:`mcem.EStep`.
    ``checkpoint``: a file written after every iteration; :func:`mcem.resume` continues from it.
    """
    from .fit import _Loop

    run_options = _options(locals(), estep_options)
    max_iter = 500 if max_iter is None else max_iter
    tol = 1e-8 if tol is None else tol
    n_steps = check_positive_int(n_steps, "n_steps")
    step_size = check_positive_float(step_size, "step_size")
    check_choice(estep, "estep", {"auto", "exact", "mc"})
    enumerable = (
        len(model.latents) == 1
        and model.latents[model.latent_names[0]].is_discrete
        and model.latents[model.latent_names[0]].unit
        and model.per_unit
    )
    if estep == "exact" and not enumerable:
        raise ValueError(
            "estep='exact' needs a model whose only latent is Discrete(..., unit=True) with per-unit "
            f"log-joint terms; model {model.name!r} is not. Use estep='mc'."
        )
    exact = enumerable and estep != "mc"
    loop = _Loop(model, "gem", max_iter, callback, progress,
                 dict(method="gem", max_iter=max_iter, tol=tol, n_steps=n_steps, step_size=step_size,
                      estep="exact" if exact else "mc", m=None if exact else m))
    ckpt = _checkpointer(checkpoint, model, "gem", run_options)
    start, hits, state = 1, 0, None
    if not exact:
        es = _estep(model, sampler, estep_options)
        per_chain = max(1, math.ceil(check_positive_int(m, "m") / es.n_chains))
    if _resume is not None:
        st = _restore(loop, _resume)
        theta, start, hits, state, rng = st["theta"], st["t"] + 1, st["hits"], st["state"], st["rng"]
        ll = loop.history["loglik"][-1]
        if exact:
            q, ll = _enumerated_q(model, theta)
    else:
        if exact:
            q, ll = _enumerated_q(model, theta)
        else:
            rng_init, rng = rng.spawn(2)
            state = es.init(theta, rng_init)
            ll = _track(model, theta, True)
        loop.record(0, theta, loglik=ll)
    stopped_by, converged, message = "max_iter", False, f"reached max_iter={max_iter}"
    t, failed = start - 1, 0
    for t in range(start, max_iter + 1):
        if not exact:
            res = es.run(theta, state, per_chain, rng)
            draws, state = res.draws, res.state

            def q(th, draws=draws):
                return M.q_hat(model, th, draws)

        new, info = M.gradient_ascent(model, theta, q, n_steps=n_steps, step_size=step_size)
        new, invalid = _checked_update(model, new, "the M step's result")
        if invalid is not None:
            stopped_by, converged = "invalid_update", False
            message = _stop_invalid(t, invalid)
            failed = 1  # an E step ran in the failed iteration
            t -= 1
            break
        old = theta
        if exact:
            q, new_ll = _enumerated_q(model, new)
            change = new_ll - ll
            ok = abs(change) <= tol * max(1.0, abs(new_ll))
        else:
            new_ll = _track(model, new, True)
            u_old, u_new = model.to_unconstrained(old), model.to_unconstrained(new)
            hits = hits + 1 if np.max(np.abs(u_new - u_old) / (np.abs(u_old) + 1e-3), initial=0.0) < tol else 0
            ok = hits >= n_consecutive
        theta, ll = new, new_ll
        stop_cb = loop.record(t, theta, loglik=ll, q_evals=info.nfev)
        if ok:
            stopped_by, converged = "tol", True
            message = (f"converged: log-likelihood change {change:.3g} within tol={tol:g} (relative)" if exact
                       else f"converged: relative parameter change below tol={tol:g} {n_consecutive} times in a row")
            break
        if stop_cb:
            stopped_by, message = "callback", "stopped by the callback"
            break
        if ckpt is not None:
            ckpt.save({"t": t, "theta": theta, "hits": hits, "state": state, "rng": rng}, loop.history)
    if not exact:  # draws at the returned estimate (the loop's last draws are at the previous one)
        draws = es.run(theta, state, per_chain, rng).draws
    n_esteps = t + failed + 1  # every iteration's E step and the final one
    return loop.finish(theta, converged=converged, stopped_by=stopped_by, message=message,
                       loglik=ll if exact else model.exact_loglik(theta),
                       **({} if exact else {"draws": draws, "total_draws": n_esteps * per_chain * es.n_chains}))

"""Variational-Bayes EM (``method="vbem"``): raise the evidence lower bound in q and theta.

    log p(x; theta) = L(q, theta) + KL(q || p(z | x; theta)),   L(q, theta) = E_q[log p(x, z; theta)] + H(q)

Exact EM sets q to the posterior (KL = 0) and then raises L in theta. VB-EM restricts q to a
simple family, q(z; phi), and raises L in phi (the variational E step) and in theta (the M step)
in turn. Its estimate maximises the bound, not the likelihood: it is biased wherever the family
cannot hold the posterior (a GLMM's variance components, typically too small).

The family (:mod:`mcem.inference.variational`):

* continuous latents: a Gaussian per unit of a unit latent (per latent otherwise) on the
  unconstrained scale of its support, diagonal (``family="meanfield"``, the default) or full
  (``family="fullrank"``). Each iteration draws ``m`` standard normals (moment-matched, so a
  quadratic log density is integrated exactly), maximises the bound's estimate over them in phi
  by L-BFGS with the reparameterisation gradient (the model's exact latent gradient where it
  has one), then runs the M step of MCEM on the m draws of the new q (closed form where the
  model has one, numerical otherwise).
* one discrete unit latent with per-unit terms: the exact categorical q per unit, which
  contains the posterior, so that VB-EM is exact EM (:mod:`mcem.inference.categorical`); the
  M step maximises Q numerically. ``tol`` is then the relative change of the log-likelihood
  (default 1e-8), as for exact EM.

Stopping rule (continuous latents). ``tol`` (default 0.1) means what it means for MCEM: the
Monte Carlo error accepted, as a fraction of a standard error. After each iteration, on fresh
draws of q: the bound ``elbo`` and its change ``delta_elbo`` (common random numbers, so the
change has a small Monte Carlo error), each with its standard error. The run stops when,
``n_consecutive`` (2) times in a row, (1) the bound's increase is not significant (its lower 95%
bound is not above 0); (2) the Monte Carlo error of the iterate is at most ``tol`` standard
errors: one M step's error (the sandwich H^-1 V H^-1 of the draws' scores) carried to the
stationary spread of the iterates through the rate of the VB-EM map, measured against the
standard errors of the complete-data information under q (smaller than the true ones, so the
test errs on the safe side); (3) the distance still to go, the last step's lower bound times
rate / (1 - rate), is at most ``tol / 2`` of them. The rate is the ratio of successive steps
while they stand out of the noise. The sample size grows to what (2) needs, up to ``m_max``.

The result carries ``elbo``, ``kl`` (KL(q || p(z | x; theta)) = log p(x; theta) - L at the
estimate, where log p(x; theta) comes by importance sampling with q as proposal, unit by unit
for unit latents) and ``loglik_is`` as ``{"value", "mcse", "n_draws"}`` from ``final_draws``
independent draws, ``phi`` (per latent ``mean`` and ``sd`` or ``chol`` on the unconstrained
scale; ``resp`` for the categorical q) and ``family``. The history has ``elbo``,
``elbo_mcse``, ``delta_elbo`` and ``delta_elbo_mcse`` per iteration (``kl`` where the model has an
exact log-likelihood).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
from scipy import optimize

from .. import mstep as M
from .._validation import check_choice, check_positive_int
from ..derivatives import mean_score_hessian, per_draw_scores
from ..diagnostics import cov_of_mean
from ..exceptions import MonteCarloWarning
from ..inference import categorical as cat
from ..inference.variational import GaussianQ, kl_estimate
from .common import choose_mstep, track
from .loop import Config, Stop, checked_update, invalid
from .mcem import mstep_on_draws
from .rule import DEFAULT_TOL, target_size

NAME = "vbem"
USES_ESTEP = False

#: The largest rate of the VB-EM map the rule extrapolates with.
MAX_RATE = 0.95
#: One-sided normal quantiles: the bound's ascent test (95%) and the distance's lower bound (75%).
Z_ASCENT, Z_DISTANCE = 1.645, 0.674


class State(NamedTuple):
    t: int
    theta: dict
    phi: Any  # the flat variational parameters (None for the categorical q)
    rng: np.random.Generator
    m: int  # draws per iteration
    hits: int = 0
    total_draws: int = 0
    rate: float = 0.0  # the VB-EM map's rate, from the last steps clear of the noise
    last_step: Any = None  # the last step in standard errors (continuous latents)
    limited: int = 0  # consecutive iterations at m_max short of the precision target


def family_kind(model):
    """"gaussian" or "categorical": the variational family of the model's latents; ValueError when
    VB-EM cannot serve them."""
    disc = [n for n in model.latent_names if model.latents[n].is_discrete]
    if not disc:
        return "gaussian"
    if cat.enumerable(model):
        return "categorical"
    cont = [n for n in model.latent_names if n not in disc]
    raise ValueError(
        "method='vbem' needs continuous latents, or one discrete unit latent (Discrete(K, shape=(N, ...), "
        f"unit=True)) with per-unit log-joint terms; model {model.name!r} has discrete latent(s) {disc}"
        + (f" next to continuous {cont}" if cont else " that are not one unit latent with per-unit terms")
        + ". Use method='mcem' or 'saem'."
    )


def configure(model, *, max_iter, tol, family="meanfield", m=32, m_max=20_000, mstep="auto",
              optimizer_options=None, estep_options=None, final_draws=1000, n_consecutive=2):
    check_choice(family, "family", {"meanfield", "fullrank"})
    kind = family_kind(model)
    m = check_positive_int(m, "m")
    if m < 2:
        raise ValueError(f"m (draws per iteration) must be at least 2, got {m}")
    m_max = check_positive_int(m_max, "m_max")
    final_draws = check_positive_int(final_draws, "final_draws")
    n_consecutive = check_positive_int(n_consecutive, "n_consecutive")
    exact = kind == "categorical"
    max_iter = (500 if exact else 1000) if max_iter is None else max_iter
    tol = (1e-8 if exact else DEFAULT_TOL) if tol is None else tol
    settings = dict(method=NAME, max_iter=max_iter, tol=tol, family="categorical" if exact else family,
                    m=None if exact else m, m_max=m_max, final_draws=final_draws)
    cfg = Config(max_iter=max_iter, tol=tol, exact=exact, m=m, m_max=max(m_max, m), final_draws=final_draws,
                 n_consecutive=n_consecutive, optimizer_options=optimizer_options,
                 estep_options={"maxiter": 200, **dict(estep_options or {})}, settings=settings, cache={})
    if exact:
        cfg.zs = cat.states(model)
    else:
        cfg.q = GaussianQ(model, family)
        cfg.kind = choose_mstep(model, mstep)
        if cfg.kind == "adam":
            raise ValueError("method='vbem' takes mstep='auto', 'closed_form' or 'numerical', got 'adam'")
    return cfg


def init(cfg, model, theta, rng):
    if cfg.exact:
        b = cat.bound_terms(model, theta, theta, cfg.zs)
        return State(0, theta, None, rng, 0), {"loglik": b.loglik, "elbo": b.elbo, "kl": b.kl, "q": b.q, "h": b.h}
    st = State(0, theta, cfg.q.initial(), rng, cfg.m)
    return st, {"loglik": track(model, theta, True), "m": 0}


# ---------------------------------------------------------------------- the categorical q
def _resp(cfg, model, theta):
    hit = cfg.cache.get("resp")
    if hit is not None and hit[0] is theta:
        return hit[1], hit[2]
    r, ll, _ = cat.responsibilities(model, theta, cfg.zs)
    cfg.cache["resp"] = (theta, r, ll)
    return r, ll


def _step_categorical(cfg, model, st):
    t = st.t + 1
    r, ll_old = _resp(cfg, model, st.theta)
    new, res = cat.maximise_q(model, st.theta, r, cfg.zs, cfg.optimizer_options)
    new, why = checked_update(model, new)
    if why is not None:
        return st, None, invalid(t, why)
    b = cat.bound_terms(model, st.theta, new, cfg.zs)
    _resp(cfg, model, new)  # the next E step, and the log-likelihood at the new theta
    change = b.loglik - ll_old
    row = {"loglik": b.loglik, "elbo": b.elbo, "kl": b.kl, "q": b.q, "h": b.h,
           "mstep_success": bool(res.success)}
    stop = None
    if abs(change) <= cfg.tol * max(1.0, abs(b.loglik)):
        stop = Stop("tol", True, f"converged: log-likelihood change {change:.3g} within tol={cfg.tol:g} (relative); "
                                 "the categorical q is the exact posterior, so VB-EM is exact EM here")
    return State(t, new, None, st.rng, 0, total_draws=0), row, stop


# ---------------------------------------------------------------------- the Gaussian q
def _estep(cfg, q, theta, phi, eps):
    """phi maximising the bound's estimate over ``eps`` at ``theta`` (warm start at ``phi``)."""

    def f(x):
        v, g = q.objective(theta, x, eps)
        return (-v, -g) if np.isfinite(v) else (np.inf, np.zeros_like(x))

    res = optimize.minimize(f, phi, jac=True, method="L-BFGS-B", options=cfg.estep_options)
    return res.x, res


def _per_draw_bound(q, model, theta, phi, eps):
    """``log p(x, z_s; theta) + log|J_s| - log q(eta_s)`` per draw: an unbiased estimate of the
    bound with far less noise than the exact entropy plus the draws' log joint (log q moves with
    the log joint over the draws)."""
    S = eps[0].shape[0]
    z, logj = q.latents(q.etas(phi, eps), (S,))
    lq = q.log_q(phi, eps)
    with np.errstate(all="ignore"):
        lp = np.asarray(model.log_joint_sum(theta, z, 1), dtype=float)
    return lp + sum(j.sum(-1) for j in logj) - sum(x.sum(-1) for x in lq)


def _precision(model, theta, draws):
    """``(single-step Monte Carlo sd, standard errors)`` in u, from the scores and Hessian of Q_q."""
    with np.errstate(all="ignore"):
        V = cov_of_mean(per_draw_scores(model, theta, draws))
        H = mean_score_hessian(model, theta, draws)
    try:
        info = -H
        np.linalg.cholesky(info)
    except np.linalg.LinAlgError:
        return None, None
    cov = np.linalg.inv(info)
    se = np.sqrt(np.diag(cov))
    mc = np.sqrt(np.abs(np.diag(cov @ V @ cov)))
    return mc, se


def _step_gaussian(cfg, model, st):
    t, q, rng, S = st.t + 1, cfg.q, st.rng, st.m
    theta, phi = st.theta, st.phi
    eps = q.standard_draws(rng, S, match=True)
    phi_new, eres = _estep(cfg, q, theta, phi, eps)
    draws = q.draws(phi_new, eps)
    new, info = mstep_on_draws(model, cfg.kind, theta, draws, cfg.optimizer_options, rng)
    new, why = checked_update(model, new)
    if why is not None:
        return st, None, invalid(t, why)
    fresh = q.standard_draws(rng, S)
    f_new = _per_draw_bound(q, model, new, phi_new, fresh)
    f_old = _per_draw_bound(q, model, theta, phi, fresh)
    d = f_new - f_old
    elbo, elbo_se = float(np.mean(f_new)), float(np.std(f_new, ddof=1) / math.sqrt(S))
    delta, delta_se = float(np.mean(d)), float(np.std(d, ddof=1) / math.sqrt(S))
    if not (np.isfinite(elbo) and np.isfinite(delta)):
        return st, None, invalid(t, f"the bound is {elbo} (change {delta}): log p(x, z; theta) is not finite "
                                    "over the draws of q")
    mc, se = _precision(model, new, draws)
    rate, step, ratio, far = st.rate, None, np.inf, np.inf
    if mc is not None:
        step = (model.to_unconstrained(new) - model.to_unconstrained(theta)) / se
        single = mc / se
        prev = st.last_step
        if prev is not None and np.linalg.norm(prev) > 3.0 * math.sqrt(2.0) * np.linalg.norm(single):
            rate = float(np.clip(step @ prev / (prev @ prev), 0.0, MAX_RATE))
        ratio = float(np.max(single, initial=0.0) / math.sqrt(1.0 - rate**2))
        lower = np.maximum(np.abs(step) - Z_DISTANCE * math.sqrt(2.0) * single, 0.0)
        far = float(np.max(lower, initial=0.0) * rate / (1.0 - rate))
    flat = delta - Z_ASCENT * delta_se <= 0
    ok = flat and ratio <= cfg.tol and far <= cfg.tol / 2
    hits = st.hits + 1 if ok else 0
    limited = st.limited + 1 if (flat and ratio > cfg.tol and S >= cfg.m_max) else 0
    m_next = S
    if np.isfinite(ratio) and ratio > cfg.tol:
        m_next = min(cfg.m_max, max(S, target_size(S, ratio, cfg.tol) or S))
    ll = track(model, new, True)
    row = dict(loglik=ll, elbo=elbo, elbo_mcse=elbo_se, delta_elbo=delta, delta_elbo_mcse=delta_se, m=S,
               mc_ratio=ratio, distance=far, em_rate=rate, estep_iters=int(eres.nit),
               mstep_success=bool(info.success))
    if np.isfinite(ll):
        row["kl"] = ll - elbo
    new_st = State(t, new, phi_new, rng, int(m_next), hits, st.total_draws + 2 * S, rate, step, limited)
    stop = None
    if hits >= cfg.n_consecutive:
        stop = Stop("tol", True, (
            f"converged: the bound's increase was not significant, the Monte Carlo error was at most tol={cfg.tol:g} "
            f"standard errors ({ratio:.3g}) and the distance still to go at most tol/2 ({far:.3g}), "
            f"{cfg.n_consecutive} times in a row"))
    elif limited >= cfg.n_consecutive:
        stop = Stop("m_max", False, (
            f"stopped: the bound's increase was not significant {cfg.n_consecutive} times in a row at "
            f"m_max={cfg.m_max}, where the Monte Carlo error is still {ratio:.3g} standard errors > tol={cfg.tol:g} "
            "(raise m_max or tol)"))
    return new_st, row, stop


def step(cfg, model, st):
    return _step_categorical(cfg, model, st) if cfg.exact else _step_gaussian(cfg, model, st)


def interrupted(cfg, model, st):
    return st.theta, {"loglik": model.exact_loglik(st.theta), "total_draws": st.total_draws}


def _as_dict(est):
    return {"value": float(est.value), "mcse": float(est.mcse), "n_draws": int(est.n_draws)}


def finish(cfg, model, st, stop, history):
    if cfg.exact:
        r, ll = _resp(cfg, model, st.theta)
        exact = {"value": ll, "mcse": 0.0, "n_draws": 0}
        return st.theta, stop, {"loglik": ll, "elbo": exact, "kl": {"value": 0.0, "mcse": 0.0, "n_draws": 0},
                                "loglik_is": exact, "phi": {model.latent_names[0]: {"resp": r.T.copy()}},
                                "family": "categorical", "total_draws": 0}
    if stop.stopped_by == "m_max":
        warnings.warn(MonteCarloWarning("vbem: " + stop.message, key="precision_not_reached"), stacklevel=5)
    n = max(cfg.final_draws, 2)
    elbo, ll, kl = kl_estimate(cfg.q, st.theta, st.phi, st.rng, n)
    return st.theta, stop, {"loglik": model.exact_loglik(st.theta), "elbo": _as_dict(elbo), "kl": _as_dict(kl),
                            "loglik_is": _as_dict(ll), "phi": cfg.q.describe(st.phi), "family": cfg.q.family,
                            "total_draws": st.total_draws + n}

"""M steps on the Monte Carlo estimate of Q, and the estimated improvement delta-Q.

Draws are dicts of latent arrays with leading ``(chain, draw)`` axes. The Monte Carlo estimate is

    Q_hat(theta) = mean_j log p(x, z_j; theta)

and every M step reports ``delta_q = Q_hat(theta_new) - Q_hat(theta_old)`` over the same draws,
with a Monte Carlo standard error that accounts for the autocorrelation of MCMC draws.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import optimize

from ._validation import check_positive_int
from .derivatives import _fd_grad, mean_score_hessian, per_draw_log_joint, per_draw_scores, q_hat_grad, thin_draws
from .diagnostics import cov_of_mean as _mean_covariance
from .diagnostics import mcse_of_mean
from .core.subset import check_additive, shard_units

__all__ = [
    "MStepInfo",
    "per_draw_log_joint",
    "q_hat",
    "delta_q",
    "Expanded",
    "expanded_delta_q",
    "mcse_of_mean",
    "closed_form",
    "numerical",
    "newton",
    "uses_newton",
    "adam",
    "q_hat_grad",
    "gradient_ascent",
    "per_draw_scores",
    "update_covariance",
]


class MStepInfo(NamedTuple):
    """What an M step reports: success flag, iterations, function evaluations and a message;
    ``scores``: the per-draw scores in the unconstrained coordinates at the returned parameters,
    shape ``(chain, draw, p)``, where the M step computed them (None otherwise)."""

    success: bool
    nit: int
    nfev: int
    message: str
    scores: np.ndarray | None = None


def q_hat(model, theta, draws) -> float:
    """The Monte Carlo estimate of Q(theta; theta_t) from draws of p(z | x; theta_t)."""
    return float(np.mean(per_draw_log_joint(model, theta, draws)))


def delta_q(model, theta_new, theta_old, draws, old=None):
    """(delta_q, mcse, per-draw differences) of Q_hat between two parameter values.

    ``old``: the per-draw log joints at ``theta_old`` (chain, draw), where known (the E step's
    trace, :func:`trace_at`); computed otherwise."""
    if old is None:
        old = per_draw_log_joint(model, theta_old, draws)
    d = per_draw_log_joint(model, theta_new, draws) - old
    return float(np.mean(d)), mcse_of_mean(d), d


class Expanded(NamedTuple):
    """A parameter-expanded M step (PX-EM, Liu, Rubin & Wu 1998), as a model's
    ``expanded_mstep(theta, draws)`` returns it.

    The complete-data model is embedded in a larger one whose extra parameters (a location and
    a scale of the latents, say) leave the observed-data model unchanged; Q of the larger model
    is maximised over all its parameters and the result reduced to the original ones
    (``theta``). The reduction maps each draw ``z_j`` to ``draws`` (``T(z_j)``, same shapes) with
    ``log_jacobian`` the log determinant of ``T``, such that the expanded Q gained on draw j is
    ``log p(x, T(z_j); theta) + log_jacobian - log p(x, z_j; theta_t)``: the ascent the
    observed likelihood is sure of (:func:`expanded_delta_q`), as delta-Q is for an EM step.
    Measured on the draws the step maximised, that ascent is optimistic by ``optimism``.
    """

    theta: dict
    draws: dict
    log_jacobian: float
    info: MStepInfo
    #: the in-sample optimism of the expanded delta-Q, ``tr(H^-1 Cov(mean score))`` over every
    #: fitted parameter of the expanded model (see :func:`mcem.algorithms.mcem.optimism`); NaN
    #: when not known
    optimism: float = float("nan")


def expanded_delta_q(model, step, theta_old, draws, old=None):
    """(delta_q, mcse, per-draw differences) of the expanded Q for a parameter-expanded M step
    ``step`` (:class:`Expanded`) from the draws ``draws`` at ``theta_old``; ``old`` as for
    :func:`delta_q`."""
    if old is None:
        old = per_draw_log_joint(model, theta_old, draws)
    d = per_draw_log_joint(model, step.theta, step.draws) + step.log_jacobian - old
    return float(np.mean(d)), mcse_of_mean(d), d


#: Largest relative difference between the E step's trace and the log joint computed afresh at
#: which the trace stands for it: summation order only (far below the Monte Carlo error of any
#: delta-Q: 1e-11 of a log joint of 10^5 terms is about 1e-6).
TRACE_RTOL = 1e-11


def trace_at(model, theta, draws, trace):
    """The E step's log-joint trace as the per-draw log joints at ``theta`` (saving one pass
    over the draws in delta-Q), or None where it is not that.

    Every kernel's trace is meant to be the complete-data log joint of the kept draw at the E
    step's theta; the first draw of every chain is computed afresh and compared, so that a
    kernel whose trace leaves out a term (a constant of theta, say) costs only the pass saved.
    """
    if trace is None:
        return None
    trace = np.asarray(trace, dtype=float)
    first = next(iter(draws.values()))
    if trace.shape != first.shape[:2] or trace.shape[1] < 1 or not np.all(np.isfinite(trace)):
        return None
    fresh = per_draw_log_joint(model, theta, {k: v[:, :1] for k, v in draws.items()})
    if not np.all(np.abs(fresh - trace[:, :1]) <= TRACE_RTOL * (1.0 + np.abs(fresh))):
        return None
    return trace


def closed_form(model, draws):
    """theta = mstep(mean sufficient statistics over the draws)."""
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}
    stats = model.sufficient_stats_fn(flat, model.data)
    return model.mstep_fn(stats, model.data), stats


#: Newton's method stops when the squared Newton decrement ``g' (-H)^-1 g`` (the squared length of
#: the remaining step in the metric of the complete-data information, i.e. in complete-data
#: standard errors) is below this: 1e-6 standard errors, tighter than L-BFGS-B's defaults.
NEWTON_TOL = 1e-12
NEWTON_MAX_ITER = 50
#: Newton's Hessians average this many evenly thinned draws: each draw's Hessian already sums
#: over every unit, so a few draws give it to a small relative error, and the steps (taken with
#: the exact gradient of Q_hat over every draw) still shrink fast.
NEWTON_HESSIAN_DRAWS = 32
#: The most free coordinates for which a compiled model's M step is Newton's method.
NEWTON_COMPILED_MAX = 32


def numerical(model, theta0, draws, *, method=None, options=None):
    """Maximise Q_hat in the unconstrained space.

    ``method=None`` (the default) takes Newton's method (:func:`newton`) where the model gives an
    exact Hessian and gradient (:func:`uses_newton`) and no ``options`` are given, scipy's
    L-BFGS-B otherwise; any other ``method`` and ``options`` go to :func:`scipy.optimize.minimize`.
    The gradient comes from the model's ``grad_params`` when it has one, from finite differences
    otherwise. Parameters with a closed-form maximiser (the model's ``partial_mstep``) are set
    first.
    """
    cf = getattr(model, "partial_mstep", None)
    fixed = {}
    if cf is not None:  # parameters with a closed-form maximiser, set first (Q separates)
        fixed = cf.update(cf.stats({k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}))
        theta0 = {**theta0, **fixed}
    free = free_coordinates(model, fixed)
    if method is None and not options and uses_newton(model, int(free.sum())):
        theta, info = newton(model, theta0, draws, free)
        if info.success or info.nit > 0:
            return theta, info._replace(message=f"closed form for {sorted(fixed)}; {info.message}" if fixed
                                        else info.message)
    wvg = getattr(model, "weighted_value_and_grad_u", None)
    method = "L-BFGS-B" if method is None else method
    u0 = model.to_unconstrained(theta0)

    def f(u):
        with np.errstate(all="ignore"):
            v = -q_hat(model, model.from_unconstrained(u), draws)
        return v if np.isfinite(v) else np.inf

    jac = None
    batch = next(iter(draws.values())).shape[:2]
    if wvg is not None:  # exact, in u, one compiled pass over the draws

        def f(u):  # noqa: F811
            with np.errstate(all="ignore"):
                v, g = wvg(u, draws, np.full(batch, 1.0 / max(int(np.prod(batch)), 1)))
            return (-v, -g) if np.isfinite(v) else (np.inf, np.zeros_like(u))

        jac = True
    elif model.value_and_grad_fn is not None:  # both from one pass over the data

        def f(u):  # noqa: F811
            th = model.from_unconstrained(u)
            with np.errstate(all="ignore"):
                total, g = model.value_and_grad_fn(th, draws, model.data)
                total = np.asarray(total, dtype=float)
                if total.shape != batch:
                    raise ValueError(
                        f"value_and_grad must return the log joint summed over units, one value per "
                        f"draw (shape {batch}), got shape {total.shape}"
                    )
                v = -float(np.mean(total))
            if not np.isfinite(v):
                return np.inf, np.zeros_like(u)
            mean = {n: np.asarray(g[n], dtype=float).mean(axis=(0, 1)) for n in model.param_names}
            return v, -model.grad_to_unconstrained(u, mean)

        jac = True
    elif model.grad_params_fn is not None:

        def jac(u):
            return -q_hat_grad(model, model.from_unconstrained(u), draws)

    if fixed:
        return _minimize_free(model, theta0, fixed, f, jac, method, options)
    res = optimize.minimize(f, u0, jac=jac, method=method, options=dict(options or {}))
    theta = model.from_unconstrained(res.x)
    return theta, MStepInfo(bool(res.success), int(res.get("nit", 0)), int(res.nfev), str(res.message))


def uses_newton(model, n_free) -> bool:
    """Whether the default numerical M step is Newton's method: the model has an exact Hessian
    and gradient, hand-written (``hessian`` with ``grad_params``) or compiled by the model language
    with at most ``NEWTON_COMPILED_MAX`` free coordinates (its Hessian costs about one gradient
    per coordinate)."""
    if model.hessian_fn is None:
        return False
    if getattr(model, "weighted_grad_u", None) is not None:
        return n_free <= NEWTON_COMPILED_MAX
    return model.grad_params_fn is not None


def newton(model, theta0, draws, free=None, *, tol=NEWTON_TOL, max_iter=NEWTON_MAX_ITER):
    """Maximise Q_hat by Newton's method in the unconstrained coordinates ``free`` (a boolean
    mask; all by default), with the model's exact gradient and Hessian.

    The Hessian (averaged over ``NEWTON_HESSIAN_DRAWS`` evenly thinned draws) is taken at the
    start and kept while the steps shrink fast enough for the next one to end the search (the
    chord method: the M step of an EM iteration starts near its maximiser, where Q_hat is nearly
    quadratic); it is taken again where they do not. A step is accepted where Q_hat still rises
    along it at its end (for a function concave on the segment, the value then rose too) or
    where the Newton decrement fell at least fourfold (the step went most of the way to a
    maximum); otherwise Q_hat itself is evaluated and the step halved until it rises. Stops when
    the squared Newton decrement is below ``tol``. Where the Hessian is not negative definite,
    nothing is done and ``success`` is False with ``nit = 0`` (the caller takes another method).
    """
    u = model.to_unconstrained(theta0)
    free = np.ones(u.size, dtype=bool) if free is None else np.asarray(free, dtype=bool)
    if not free.any():
        return theta0, MStepInfo(True, 0, 0, "closed form")

    wg = getattr(model, "weighted_grad_u", None)
    if wg is not None:  # compiled: the gradient in u in one pass
        batch = next(iter(draws.values())).shape[:2]
        weights = np.full(batch, 1.0 / max(int(np.prod(batch)), 1))

        def grad(v):
            return wg(v, draws, weights)[free]
    else:
        seen = {}

        def grad(v):  # per-draw scores kept for the point returned (the stopping rule uses them)
            s = per_draw_scores(model, model.from_unconstrained(v), draws)
            seen.clear()
            seen[v.tobytes()] = s
            return s.mean(axis=(0, 1))[free]

    def neg_hessian(v, sub):
        with np.errstate(all="ignore"):
            H = -np.asarray(model.hessian_fn(model.from_unconstrained(v), sub, model.data), dtype=float)
            H = 0.5 * (H + H.T)[np.ix_(free, free)]
        try:
            return np.linalg.cholesky(H) if np.all(np.isfinite(H)) else None
        except np.linalg.LinAlgError:
            return None

    def full(x):
        v = u.copy()
        v[free] = x
        return v

    def value(x):
        return _q_or_nan(model, full(x), draws)

    sub = thin_draws(draws, NEWTON_HESSIAN_DRAWS)
    x, it, nfev, ok, message = newton_loop(u[free], lambda x: grad(full(x)),
                                           lambda x: neg_hessian(full(x), sub), value, tol, max_iter)
    if it == 0 and not ok:
        if message.startswith("the Hessian"):
            message = "the Hessian of Q_hat is not negative definite"
        return theta0, MStepInfo(False, 0, nfev, message)
    scores = seen.get(full(x).tobytes()) if (wg is None and ok) else None
    return model.from_unconstrained(full(x)), MStepInfo(ok, it, nfev, message, scores)


def newton_loop(x, grad, factor, value, tol=NEWTON_TOL, max_iter=NEWTON_MAX_ITER):
    """Newton's method for a maximum, with the chord Hessian and the acceptance rule of
    :func:`newton`: ``grad(x)`` the gradient, ``factor(x)`` the Cholesky factor of minus the
    Hessian (None where it is not positive definite), ``value(x)`` the objective (NaN where not
    finite; called only where the cheap acceptance tests fail). Returns ``(x, iterations,
    evaluations, success, message)``; where the first Hessian is not negative definite nothing is
    done (``iterations = 0``, ``success`` False)."""
    with np.errstate(all="ignore"):
        g = grad(x)
    L, nfev, dec_prev = factor(x), 1, np.inf
    if L is None:
        return x, 0, nfev, False, "the Hessian is not negative definite"
    for it in range(1, max_iter + 1):
        w = np.linalg.solve(L, g)
        dec = float(w @ w)  # g' (-H)^-1 g
        if not np.isfinite(dec):
            return x, it - 1, nfev, False, "the gradient is not finite"
        if dec <= tol:
            return x, it - 1, nfev, True, "Newton: decrement below tol"
        if dec * dec > tol * dec_prev:  # the next step at this rate would not end: a new Hessian
            L_new = factor(x)
            L = L if L_new is None else L_new
            w = np.linalg.solve(L, g)
            dec = float(w @ w)
        d = np.linalg.solve(L.T, w)  # the ascent direction (-H)^-1 g
        dec_prev, alpha, q0 = dec, 1.0, None
        for _ in range(40):
            v = x + alpha * d
            nfev += 1
            ok, g_new, q0 = _accepted(grad, value, L, x, v, d, dec, q0)
            if ok:
                break
            alpha *= 0.5
        else:
            return x, it, nfev, False, "Newton: no ascent along the step"
        x, g = v, g_new
    return x, max_iter, nfev, False, "Newton: max_iter reached"


def _q_or_nan(model, u, draws):
    with np.errstate(all="ignore"):
        q = q_hat(model, model.from_unconstrained(u), draws)
    return q if np.isfinite(q) else np.nan


def _accepted(grad, value, L, x, v, d, dec, q0):
    """``(taken, gradient at v, value at x or None)``: Newton's step from ``x`` to ``v`` is taken
    where the objective still rises along it at ``v``, or the decrement fell fourfold (the step
    went most of the way to a maximum), or else where the value itself rose (``q0``: the value at
    ``x`` when already known; computed here when needed and returned for the next trial)."""
    with np.errstate(all="ignore"):
        g = grad(v)
        if not np.all(np.isfinite(g)):
            return False, g, q0
        w = np.linalg.solve(L, g)
        if g @ d >= 0 or w @ w <= 0.25 * dec:
            return True, g, q0
        q0 = value(x) if q0 is None else q0
        q1 = value(v)
        return bool(np.isfinite(q1) and q1 >= q0), g, q0


def free_coordinates(model, fixed):
    """Boolean mask of the unconstrained coordinates not set by the parameters in ``fixed``."""
    free = np.ones(model.n_unconstrained, dtype=bool)
    for n in fixed:
        a, b = model._offsets[n]
        free[a:b] = False
    return free


def _minimize_free(model, theta0, fixed, f, jac, method, options):
    """Minimise ``f`` (and ``jac``, as scipy takes them) over the coordinates not in ``fixed``."""
    u0 = model.to_unconstrained(theta0)
    free = free_coordinates(model, fixed)
    if not free.any():
        return theta0, MStepInfo(True, 0, 0, "closed form")

    def full(v):
        u = u0.copy()
        u[free] = v
        return u

    if jac is True:
        def g(v):
            val, grad = f(full(v))
            return val, np.asarray(grad)[free]
        jac_free = True
    else:
        g = lambda v: f(full(v))  # noqa: E731
        jac_free = None if jac is None else (lambda v: np.asarray(jac(full(v)))[free])
    res = optimize.minimize(g, u0[free], jac=jac_free, method=method, options=dict(options or {}))
    theta = model.from_unconstrained(full(res.x))
    return theta, MStepInfo(bool(res.success), int(res.get("nit", 0)), int(res.nfev),
                            f"closed form for {sorted(fixed)}; {res.message}")


def adam(model, theta0, draws, rng, *, n_steps=50, lr=0.05, batch_draws=32, batch_units=None,
         beta1=0.9, beta2=0.999):
    """Stochastic M step: Adam ascent on Q_hat over random minibatches of draws and of units.

    Each step uses ``batch_draws`` draws chosen at random (over chains and draws), so the cost
    of a step does not grow with the Monte Carlo sample size. With ``batch_units`` the units are
    split once into contiguous blocks of about that many (:meth:`mcem.Model.subset`; the blocks'
    log joints must add up to the whole model's) and each step uses one block chosen at random,
    its gradient scaled by the number of blocks: an unbiased estimate of the full gradient whose
    cost does not grow with the number of units. Gradients come from the model's ``grad_params``
    when it has one, from finite differences on the minibatch otherwise. The result increases
    Q_hat in expectation, not surely: a stochastic generalized-EM step.
    """
    u = model.to_unconstrained(theta0)
    n_chain, n_draw = next(iter(draws.values())).shape[:2]
    flat = {k: v.reshape((1, n_chain * n_draw) + v.shape[2:]) for k, v in draws.items()}
    total = n_chain * n_draw
    blocks = None
    if batch_units is not None:
        blocks, subs = unit_blocks(model, batch_units, theta0)
    m1 = np.zeros_like(u)
    m2 = np.zeros_like(u)
    for t in range(1, n_steps + 1):
        idx = rng.choice(total, size=min(batch_draws, total), replace=False)
        if blocks is None:
            target, scale = model, 1.0
            batch = {k: v[:, idx] for k, v in flat.items()}
        else:
            b = int(rng.integers(len(blocks)))
            target, scale = subs[b], float(len(blocks))
            lo, hi = blocks[b][0], blocks[b][-1] + 1
            batch = {k: v[:, idx, lo:hi] for k, v in flat.items()}
        if target.grad_params_fn is not None:
            g = q_hat_grad(target, target.from_unconstrained(u), batch)
        else:
            g = _fd_grad(lambda v: q_hat(target, target.from_unconstrained(v), batch), u)
        g = scale * g
        m1 = beta1 * m1 + (1 - beta1) * g
        m2 = beta2 * m2 + (1 - beta2) * g**2
        u = u + lr * (m1 / (1 - beta1**t)) / (np.sqrt(m2 / (1 - beta2**t)) + 1e-8)
    return model.from_unconstrained(u), MStepInfo(True, n_steps, n_steps, "adam")


def unit_blocks(model, batch_units, theta):
    """Contiguous blocks of about ``batch_units`` units and their models (built once per model).

    Checks at ``theta`` and a perturbed theta that the blocks' log joints add up exactly to the
    whole model's, as a sum of gradients over blocks needs.
    """
    if model.n_units is None:
        model.subset(np.arange(1))  # raises the error that says what is missing
    batch_units = check_positive_int(batch_units, "batch_units")
    n_blocks = -(-model.n_units // min(batch_units, model.n_units))
    cache = model.__dict__.setdefault("_unit_blocks", {})
    hit = cache.get(n_blocks)
    if hit is None or hit[0] is not model.subset_fn:  # built by this very subset function
        blocks = shard_units(model.n_units, n_blocks)
        subs = [model.subset(b) for b in blocks]
        u = model.to_unconstrained(theta)
        for th in (theta, model.from_unconstrained(u + 0.1)):
            check_additive(model, subs, blocks, th, exact=True)
        hit = cache[n_blocks] = (model.subset_fn, blocks, subs)
    return hit[1], hit[2]


def gradient_ascent(model, theta0, q, *, n_steps=1, step_size=0.1, grad=None, max_halvings=30):
    """Generalized-EM M step: ``n_steps`` gradient-ascent steps on ``q(theta)`` (unconstrained).

    Each step backtracks (halving the step) until ``q`` does not decrease, so the returned
    parameters never lower ``q`` below its value at ``theta0``: the GEM condition.
    """
    u = model.to_unconstrained(theta0)

    def fq(v):
        with np.errstate(all="ignore"):
            val = q(model.from_unconstrained(v))
        return val if np.isfinite(val) else -np.inf

    cur = fq(u)
    nfev = 1
    for _ in range(n_steps):
        g = grad(u) if grad is not None else _fd_grad(fq, u)
        nfev += 0 if grad is not None else 2 * u.size
        step = step_size
        for _ in range(max_halvings):
            cand = u + step * g
            val = fq(cand)
            nfev += 1
            if val >= cur:
                u, cur = cand, val
                break
            step *= 0.5
    return model.from_unconstrained(u), MStepInfo(True, n_steps, nfev, "gradient ascent")


def update_covariance(model, theta, draws, h=1e-4):
    """Monte Carlo covariance of the M-step maximiser of Q_hat, in unconstrained coordinates.

    At the maximiser, theta_hat - theta* ~ -H^-1 (mean score), so the covariance is
    H^-1 V H^-1 with H the Hessian of Q_hat and V the Monte Carlo covariance of the mean
    per-draw score (batch means for MCMC draws). Booth & Hobert (1999) compare successive
    iterates with this ellipsoid; it is also the Monte Carlo error of a final estimate.
    """
    V = _mean_covariance(per_draw_scores(model, theta, draws))
    Hinv = np.linalg.pinv(mean_score_hessian(model, theta, draws, h=h))
    return Hinv @ V @ Hinv

"""Derivatives in the unconstrained coordinates, shared by the M steps and the inference.

Draws are dicts of latent arrays with leading ``(chain, draw)`` axes. Every derivative here is
taken with respect to the unconstrained parameter vector ``u`` (:meth:`mcem.Model.to_unconstrained`):

* :func:`per_draw_log_joint` -- ``log p(x, z_j; theta)`` for every draw, shape ``(chain, draw)``;
* :func:`per_draw_scores` -- its gradient in ``u`` per draw, ``(chain, draw, p)``: from the
  model's ``grad_params`` through the chain rule when it has one, by central differences
  otherwise;
* :func:`q_hat_grad` -- the gradient of ``Q_hat(theta) = mean_j log p(x, z_j; theta)``;
* :func:`constrained_jacobian` -- ``d theta_flat / d u`` of the parameter transforms;
* :func:`central_difference` and :func:`central_hessian` -- central differences of any function
  of ``u``, with the step ``h * max(1, |u_i|)`` in coordinate ``i``.

Finite differences loop over the parameter coordinates only; each evaluation is one vectorised
call over all draws and units.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "central_difference",
    "central_hessian",
    "constrained_jacobian",
    "per_draw_log_joint",
    "per_draw_scores",
    "q_hat_grad",
    "mean_score_hessian",
    "per_unit_scores",
    "posterior_score_cov",
    "unit_decomposable",
    "thin_draws",
]


def _shifts(u, h):
    """``(step, u + step e_i, u - step e_i)`` for every coordinate ``i`` (a loop over parameters)."""
    for i in range(u.size):
        step = h * max(1.0, abs(u[i]))
        e = np.zeros_like(u)
        e[i] = step
        yield step, u + e, u - e


def central_difference(f, u, h, axis=-1):
    """Derivatives of ``f`` at ``u`` by central differences, one per coordinate of ``u``.

    Parameters
    ----------
    f : callable
        ``f(v) -> array`` (or a float) for a point ``v`` shaped like ``u``.
    u : 1-D array
    h : float
        Relative step: coordinate ``i`` moves by ``h * max(1, |u_i|)``.
    axis : int
        Where the derivatives are stacked in the result: ``f``'s shape with one more axis of
        length ``u.size`` at ``axis``.
    """
    cols = [(f(hi) - f(lo)) / (2 * step) for step, hi, lo in _shifts(u, h)]
    if not cols:
        return np.moveaxis(np.zeros(np.shape(f(u)) + (0,)), -1, axis)
    return np.stack(cols, axis=axis)


def central_hessian(f, u, h):
    """The Hessian of a scalar ``f`` at ``u`` by central differences (steps as in
    :func:`central_difference`; four evaluations per pair of coordinates)."""
    p = u.size
    H = np.empty((p, p))
    steps = np.array([h * max(1.0, abs(x)) for x in u])
    for i in range(p):  # loops over parameter coordinates, not over data
        for j in range(i, p):
            ei = np.zeros(p)
            ej = np.zeros(p)
            ei[i], ej[j] = steps[i], steps[j]
            H[i, j] = H[j, i] = (
                f(u + ei + ej) - f(u + ei - ej) - f(u - ei + ej) + f(u - ei - ej)
            ) / (4 * steps[i] * steps[j])
    return H


def _fd_grad(f, u, h=1e-6):
    """The gradient of a scalar ``f`` at ``u`` by central differences."""
    return central_difference(f, u, h, axis=0)


def _theta_flat(model, u):
    th = model.from_unconstrained(u)
    return np.concatenate([np.asarray(th[n], dtype=float).ravel() for n in model.param_names])


def constrained_jacobian(model, u, h=1e-6):
    """d theta_flat / d u by central differences of the transforms (no data involved)."""
    return central_difference(lambda v: _theta_flat(model, v), u, h, axis=1)


def per_draw_log_joint(model, theta, draws) -> np.ndarray:
    """log p(x, z_j; theta) for every draw: shape (chain, draw) (unit terms summed)."""
    return model.log_joint_sum(theta, draws, 2)


def q_hat_grad(model, theta, draws) -> np.ndarray:
    """Gradient of Q_hat in the unconstrained coordinates from the model's ``grad_params``."""
    g = model.grad_params_fn(theta, draws, model.data)
    mean = {n: np.asarray(g[n], dtype=float).mean(axis=(0, 1)) for n in model.param_names}
    return model.grad_to_unconstrained(model.to_unconstrained(theta), mean)


def per_draw_scores(model, theta, draws, h=1e-5):
    """Scores of log p(x, z_j; theta) in the unconstrained coordinates, per draw: (chain, draw, p).

    From the model's ``grad_params`` when it has one (chain rule through the transforms, whose
    Jacobian is taken once by differences of the transforms alone); otherwise central finite
    differences, each evaluating all draws in one vectorised call.
    """
    if model.scores_fn is not None:  # exact, in u
        return np.asarray(model.scores_fn(theta, draws, model.data), dtype=float)
    u = model.to_unconstrained(theta)
    if model.grad_params_fn is not None:
        g = model.grad_params_fn(theta, draws, model.data)
        batch = next(iter(draws.values())).shape[:2]
        flat = np.concatenate(
            [np.broadcast_to(np.asarray(g[n], dtype=float), batch + model.params[n].shape).reshape(batch + (-1,))
             for n in model.param_names],
            axis=-1,
        )
        return flat @ constrained_jacobian(model, u)
    return central_difference(
        lambda v: per_draw_log_joint(model, model.from_unconstrained(v), draws), u, h, axis=-1
    )


def mean_score_hessian(model, theta, draws, h=1e-4):
    """The Hessian of Q_hat in ``u``: exact when the model has a ``hessian``, otherwise central
    differences of the mean per-draw score, symmetrised."""
    if model.hessian_fn is not None:
        return np.asarray(model.hessian_fn(theta, draws, model.data), dtype=float)
    u = model.to_unconstrained(theta)
    H = central_difference(
        lambda v: per_draw_scores(model, model.from_unconstrained(v), draws).mean(axis=(0, 1)), u, h, axis=1
    )
    return 0.5 * (H + H.T)


def score_arrays(model, theta, draws, h_score=1e-5, h_hess=1e-4):
    """Per-draw scores at ``u`` and at ``u +- h e_i``: enough for any subset's Louis information.

    Returns ``(s0, plus, minus, steps)``: ``s0`` of shape ``(chain, draw, p)``, ``plus`` and
    ``minus`` of shape ``(p, chain, draw, p)`` and the steps ``(p,)``.
    """
    u = model.to_unconstrained(theta)
    s0 = per_draw_scores(model, theta, draws, h=h_score)
    plus, minus, steps = [], [], []
    for step, hi, lo in _shifts(u, h_hess):
        plus.append(per_draw_scores(model, model.from_unconstrained(hi), draws, h=h_score))
        minus.append(per_draw_scores(model, model.from_unconstrained(lo), draws, h=h_score))
        steps.append(step)
    return s0, np.stack(plus), np.stack(minus), np.array(steps)


def unit_decomposable(model) -> bool:
    """Whether the posterior factorises over units: every latent is a unit latent and the log
    joint returns per-unit terms (then draws of different units are independent given theta)."""
    return bool(model.latents) and all(s.unit for s in model.latents.values()) and bool(model.per_unit)


def posterior_score_cov(model, theta, draws, s=None, h=1e-5, mask=None):
    """The posterior covariance of the complete-data score, ``Var[grad_u log p(x, z; theta)]``,
    estimated over the draws (selected by the boolean ``mask`` over ``chain * draw`` when given).

    Where the posterior factorises over units (:func:`unit_decomposable`), it is the sum over
    units of each unit's score covariance (scores per unit by central differences of the unit
    terms): the covariances between units are zero and not estimated, which removes the noise of
    N(N-1) cross terms (about sqrt(N) times less Monte Carlo error than the covariance of the
    total score). Otherwise, the covariance of the total scores ``s`` (``(chain, draw, p)``).
    """
    if unit_decomposable(model):
        su = per_unit_scores(model, theta, draws, h=h)  # (chain, draw, N, p)
        flat = su.reshape((-1,) + su.shape[2:])
        if mask is not None:
            flat = flat[mask]
        return _unit_cov(flat)
    if s is None:
        s = per_draw_scores(model, theta, draws, h=h)
    flat = s.reshape(-1, s.shape[-1])
    if mask is not None:
        flat = flat[mask]
    c = flat - flat.mean(axis=0)
    return c.T @ c / max(flat.shape[0] - 1, 1)


def _unit_cov(flat):
    """Sum over units of the covariance over draws: ``flat`` is ``(draws, N, p)``."""
    c = np.ascontiguousarray((flat - flat.mean(axis=0)).reshape(-1, flat.shape[-1]))
    return c.T @ c / max(flat.shape[0] - 1, 1)


def per_unit_scores(model, theta, draws, h=1e-5):
    """Scores of each unit's log-joint terms in ``u``, per draw: ``(chain, draw, N, p)``
    (exact when the model has ``unit_scores``)."""
    if model.unit_scores_fn is not None:
        return np.asarray(model.unit_scores_fn(theta, draws, model.data), dtype=float)
    u = model.to_unconstrained(theta)
    return central_difference(
        lambda v: np.asarray(model.log_joint(model.from_unconstrained(v), draws), dtype=float), u, h, axis=-1
    )


def thin_draws(draws, max_draws):
    """At most ``max_draws`` draws in all, evenly spaced along the draw axis of every chain."""
    v = next(iter(draws.values()))
    n_chain, n_draw = v.shape[:2]
    keep = max(1, max_draws // max(n_chain, 1))
    if n_draw <= keep:
        return draws
    idx = np.linspace(0, n_draw - 1, keep).round().astype(int)
    return {k: x[:, idx] for k, x in draws.items()}

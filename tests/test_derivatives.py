"""Derivatives in the unconstrained coordinates (mcem.derivatives) against closed forms."""

import numpy as np
from scipy.special import expit
from test_algorithms import COUNTS, linkage_model

import mcem
from mcem import derivatives as Dv
from mcem import inference, mstep


def test_central_difference_stacks_derivatives_along_the_requested_axis():
    def f(u):
        return np.array([np.sin(u[0]) * u[1] ** 2, np.exp(u[1]), u[0] * u[1]])

    u = np.array([0.3, -1.2])
    jac = np.array([[np.cos(u[0]) * u[1] ** 2, 2 * np.sin(u[0]) * u[1]], [0.0, np.exp(u[1])], [u[1], u[0]]])
    np.testing.assert_allclose(Dv.central_difference(f, u, 1e-6, axis=1), jac, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(Dv.central_difference(f, u, 1e-6, axis=0), jac.T, rtol=1e-8, atol=1e-9)
    # a scalar function: the gradient; no coordinate: an empty derivative of the right shape
    np.testing.assert_allclose(Dv._fd_grad(lambda v: float(np.sum(v**3)), u), 3 * u**2, rtol=1e-8)
    assert Dv.central_difference(lambda v: np.full(3, v.sum()), np.zeros(0), 1e-6, axis=1).shape == (3, 0)
    assert Dv._fd_grad(lambda v: 1.0, np.zeros(0)).shape == (0,)


def test_central_hessian_of_a_closed_form():
    def f(u):
        return u[0] ** 2 * u[1] + np.exp(u[1]) + 3 * u[2] ** 2

    u = np.array([0.7, -0.4, 2.0])
    H = np.array([[2 * u[1], 2 * u[0], 0.0], [2 * u[0], np.exp(u[1]), 0.0], [0.0, 0.0, 6.0]])
    np.testing.assert_allclose(Dv.central_hessian(f, u, 1e-4), H, rtol=1e-6, atol=1e-6)


def linkage_draws(theta, n=200, seed=0):
    model = linkage_model()
    es = mcem.EStep(model, "gibbs", n_chains=3, burn=5)
    return model, es.run(theta, es.init(theta, seed), n, np.random.default_rng(seed + 1)).draws


def test_scores_and_the_hessian_of_q_hat_for_the_linkage_model():
    # Q_hat(u) = (xbar + y4) log t + (y2 + y3) log(1 - t) + const with t = expit(u):
    # per draw d/du = (x2 + y4) - (x2 + y4 + y2 + y3) t, and d2 Q_hat / du2 = -(a + b) t (1 - t)
    theta = {"t": np.array(0.6)}
    model, draws = linkage_draws(theta)
    t = 0.6
    _, y2, y3, y4 = COUNTS
    x2 = draws["x2"].astype(float)
    scores = Dv.per_draw_scores(model, theta, draws)
    assert scores.shape == x2.shape + (1,)
    np.testing.assert_allclose(scores[..., 0], (x2 + y4) - (x2 + y4 + y2 + y3) * t, rtol=1e-6, atol=1e-6)
    a, b = x2.mean() + y4, y2 + y3
    np.testing.assert_allclose(Dv.mean_score_hessian(model, theta, draws), [[-(a + b) * t * (1 - t)]], rtol=1e-5)
    # Louis' arrays: the scores at u and at u +- h
    s0, plus, minus, steps = Dv.score_arrays(model, theta, draws)
    np.testing.assert_array_equal(s0, scores)
    u = model.to_unconstrained(theta)[0]
    np.testing.assert_array_equal(steps, [1e-4 * max(1.0, abs(u))])
    tp = expit(u + steps[0])
    np.testing.assert_allclose(plus[0, ..., 0], (x2 + y4) - (x2 + y4 + y2 + y3) * tp, rtol=1e-6, atol=1e-6)
    assert minus.shape == plus.shape == (1,) + scores.shape


def test_the_jacobian_of_the_transforms():
    model = linkage_model()  # t = expit(u): dt/du = t (1 - t)
    u = model.to_unconstrained({"t": np.array(0.3)})
    np.testing.assert_allclose(Dv.constrained_jacobian(model, u), [[0.3 * 0.7]], rtol=1e-8)
    model = mcem.models.gaussian_mixture(mcem.datasets.load_faithful(), 2)
    u = model.to_unconstrained(model.default_theta())
    J = Dv.constrained_jacobian(model, u)
    flat = Dv._theta_flat(model, u)
    assert J.shape == (flat.size, u.size)
    # a small change of u moves theta_flat by J du to first order
    du = 1e-7 * np.random.default_rng(0).normal(size=u.size)
    np.testing.assert_allclose(Dv._theta_flat(model, u + du) - flat, J @ du, rtol=1e-4, atol=1e-12)


def test_the_m_step_and_the_inference_share_the_derivatives():
    assert mstep.per_draw_scores is Dv.per_draw_scores
    assert mstep.q_hat_grad is Dv.q_hat_grad
    assert mstep.per_draw_log_joint is Dv.per_draw_log_joint
    assert inference.constrained_jacobian is Dv.constrained_jacobian
    theta = {"t": np.array(0.6)}
    model, draws = linkage_draws(theta, n=50)
    cov = mstep.update_covariance(model, theta, draws)
    V = mcem.diagnostics.cov_of_mean(Dv.per_draw_scores(model, theta, draws))
    Hinv = np.linalg.pinv(Dv.mean_score_hessian(model, theta, draws))
    np.testing.assert_array_equal(cov, Hinv @ V @ Hinv)

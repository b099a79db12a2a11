"""Newton's M step (models with an exact Hessian) and the GLMM's exact Hessian and sigma update."""

import numpy as np
import pytest

import mcem
from mcem import constraints as C
from mcem import mstep
from mcem.derivatives import central_difference, mean_score_hessian, per_draw_scores
from mcem.models import random_intercept as ri


def glmm_case(family, trials=False, G=30, seed=3):
    rng = np.random.default_rng(seed)
    sim = ri.simulate_random_intercept(G, 6, [0.3, -0.7], 0.9, family=family, rng=rng,
                                       trials=4 if trials else None)
    model = ri.random_intercept_glmm(sim["X"], sim["y"], sim["group"], family,
                                     trials=sim.get("trials"))
    u = rng.normal(scale=0.9, size=(3, 40, G))
    theta = {"beta": np.array([0.1, -0.5]), "sigma": 1.2}
    return model, theta, {"u": u}


@pytest.mark.parametrize("family,trials", [("logit", False), ("logit", True), ("poisson", False)])
def test_glmm_hessian_is_the_derivative_of_the_scores(family, trials):
    model, theta, draws = glmm_case(family, trials)
    u0 = model.to_unconstrained(theta)
    fd = central_difference(
        lambda v: per_draw_scores(model, model.from_unconstrained(v), draws).mean(axis=(0, 1)), u0, 1e-5, axis=1)
    H = model.hessian(theta, draws)
    np.testing.assert_allclose(H, 0.5 * (fd + fd.T), rtol=1e-6, atol=1e-6 * np.abs(H).max())
    np.testing.assert_allclose(mean_score_hessian(model, theta, draws), H)


@pytest.mark.parametrize("family,trials", [("logit", False), ("logit", True), ("poisson", False)])
def test_newton_m_step_reaches_the_maximiser_of_q_hat(family, trials):
    model, theta, draws = glmm_case(family, trials)
    new, info = mstep.numerical(model, theta, draws)
    assert info.success and "Newton" in info.message and "closed form for ['sigma']" in info.message
    # sigma's closed form: the mean square of the random intercepts
    u = draws["u"].reshape(-1, draws["u"].shape[-1])
    assert new["sigma"] == pytest.approx(np.sqrt(np.mean(np.sum(u**2, axis=1)) / u.shape[1]), rel=1e-12)
    # beta: the Newton decrement with the exact Hessian over every draw is ~0 there (below 1e-5
    # complete-data standard errors), and a tight L-BFGS-B on all of theta lands there too
    g = mcem.derivatives.q_hat_grad(model, new, draws)[:2]
    assert g @ np.linalg.solve(-model.hessian(new, draws)[:2, :2], g) < 1e-10
    ref, _ = mstep.numerical(model, theta, draws, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-11})
    for k in ("beta", "sigma"):
        np.testing.assert_allclose(new[k], ref[k], rtol=1e-6, atol=1e-6)
    # the per-draw scores it reports are those at the point it returns (the stopping rule reuses them)
    np.testing.assert_array_equal(info.scores, per_draw_scores(model, new, draws))


def _poisson_rate(theta, z, data):
    mu = theta["mu"]
    return np.sum(z["a"] * mu - np.exp(mu) - 0.5 * z["a"] ** 2, axis=-1)


def _poisson_rate_grad(theta, z, data):
    return {"mu": np.sum(z["a"] - np.exp(theta["mu"]), axis=-1)}


def _poisson_rate_hessian(theta, z, data):
    return np.array([[-z["a"].shape[-1] * float(np.exp(theta["mu"]))]])


def _convex_hessian(theta, z, data):
    return -_poisson_rate_hessian(theta, z, data)


def rate_model(hessian):
    return mcem.Model(_poisson_rate, params={"mu": C.real}, latents={"a": mcem.Continuous(C.real, shape=5)},
                      grad_params=_poisson_rate_grad, hessian=hessian)


def test_newton_halves_a_step_that_overshoots_and_lands_on_the_closed_form():
    # Q_hat(mu) = mean_j sum_i (a_ji mu - exp(mu)) + const: from mu = -6 the full Newton step
    # goes to mu ~ +800, where Q_hat is -inf; the step is halved until Q_hat rises
    a = np.random.default_rng(1).gamma(2.0, 1.0, size=(2, 10, 5))
    model = rate_model(_poisson_rate_hessian)
    start = {"mu": -6.0}
    q = lambda th: mstep.q_hat(model, th, {"a": a})  # noqa: E731
    full = -6.0 + (a.mean() - np.exp(-6.0)) / np.exp(-6.0)
    with np.errstate(over="ignore"):
        assert full > 100 and not q({"mu": full}) > q(start)
    one, _ = mstep.newton(model, start, {"a": a}, max_iter=1)
    assert -6.0 < one["mu"] < full and q(one) > q(start)
    new, info = mstep.numerical(model, start, {"a": a})
    assert info.success and "Newton" in info.message
    assert new["mu"] == pytest.approx(np.log(a.mean()), abs=1e-6)  # the closed-form maximiser


def test_newton_falls_back_to_lbfgs_where_the_hessian_is_not_negative_definite():
    a = np.random.default_rng(2).gamma(2.0, 1.0, size=(2, 10, 5))
    model = rate_model(_convex_hessian)  # a wrong (positive) Hessian: Newton refuses it
    new, info = mstep.numerical(model, {"mu": 0.0}, {"a": a})
    assert "Newton" not in info.message
    assert new["mu"] == pytest.approx(np.log(a.mean()), abs=1e-5)
    th, ninfo = mstep.newton(model, {"mu": 0.0}, {"a": a})
    assert not ninfo.success and ninfo.nit == 0 and th["mu"] == 0.0


def test_options_or_a_method_choose_scipy():
    model, theta, draws = glmm_case("logit")
    _, info = mstep.numerical(model, theta, draws, options={"maxiter": 50})
    assert "Newton" not in info.message
    _, info = mstep.numerical(model, theta, draws, method="BFGS")
    assert "Newton" not in info.message


@mcem.model
def lang_glmm(m, X, y, group, n_groups):
    beta = m.param("beta", shape=X.shape[1], init=0.0)
    sigma = m.param("sigma", constraint=C.positive, init=1.0)
    u = m.latent("u", mcem.dist.Normal(0.0, sigma), shape=n_groups, unit=True)
    m.observe("y", mcem.dist.Bernoulli(logits=X @ beta + u[..., group]), y, unit_index=group)


def test_a_compiled_model_takes_newton_with_its_gradient_alone(monkeypatch):
    ready, theta, draws = glmm_case("logit")
    d = ready.data
    lang = lang_glmm(X=d["X"], y=d["y"], group=d["group"].astype(int), n_groups=d["n_groups"])
    u0 = lang.to_unconstrained(theta)
    w = np.full(draws["u"].shape[:2], 1.0 / draws["u"][..., 0].size)
    np.testing.assert_allclose(lang.weighted_grad_u(u0, draws, w), lang.weighted_value_and_grad_u(u0, draws, w)[1],
                               rtol=1e-10, atol=1e-10)
    a, ia = mstep.numerical(lang, theta, draws)
    b, ib = mstep.numerical(ready, theta, draws)
    assert "Newton" in ia.message and "Newton" in ib.message
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)
    monkeypatch.setattr(mstep, "NEWTON_COMPILED_MAX", 0)  # too many coordinates: L-BFGS-B
    c, ic = mstep.numerical(lang, theta, draws)
    assert "Newton" not in ic.message
    np.testing.assert_allclose(c["beta"], a["beta"], rtol=1e-4, atol=1e-5)

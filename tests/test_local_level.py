"""The local-level model (mcem.models.level) against a Kalman filter and an RTS smoother
written here as plain loops over time, and its exact EM against a direct maximisation."""

import pickle

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import norm

import mcem
from mcem.models.level import initial_params, local_level

from _mc import assert_mean


def _series(T=100, seed=0):
    rng = np.random.default_rng(seed)
    x = 3.0 + np.cumsum(rng.normal(0.0, 0.5, T))
    return x + rng.normal(0.0, 1.0, T)


def _theta(level0, so, sl):
    return {"level0": np.array(level0), "sigma_obs": np.array(so), "sigma_level": np.array(sl)}


def kalman_loglik(y, level0, so, sl):
    """Prediction-error decomposition, one time step at a time."""
    a, P, ll = level0, sl**2, 0.0
    for t in range(len(y)):
        if t > 0:
            P = P + sl**2
        F = P + so**2
        v = y[t] - a
        ll += -0.5 * (np.log(2 * np.pi * F) + v * v / F)
        K = P / F
        a, P = a + K * v, P * (1 - K)
    return ll


def rts_smoother(y, level0, so, sl):
    """Smoothed means, variances and Cov(x_{t+1}, x_t) by the Rauch-Tung-Striebel recursions."""
    T = len(y)
    ap, Pp, af, Pf = np.empty(T), np.empty(T), np.empty(T), np.empty(T)
    a, P = level0, sl**2
    for t in range(T):
        if t > 0:
            P = P + sl**2
        ap[t], Pp[t] = a, P
        K = P / (P + so**2)
        a, P = a + K * (y[t] - a), P * (1 - K)
        af[t], Pf[t] = a, P
    m, V, cross = af.copy(), Pf.copy(), np.empty(T - 1)
    for t in range(T - 2, -1, -1):
        J = Pf[t] / Pp[t + 1]
        m[t] = af[t] + J * (m[t + 1] - ap[t + 1])
        V[t] = Pf[t] + J * J * (V[t + 1] - Pp[t + 1])
        cross[t] = J * V[t + 1]
    return m, V, cross


THETAS = [(3.0, 1.0, 0.5), (-2.0, 0.3, 2.0), (0.0, 5.0, 0.01), (1e6 + 3.0, 1.0, 0.5)]


@pytest.mark.parametrize("theta", THETAS)
def test_exact_loglik_is_the_kalman_filter(theta):
    y = _series() + (1e6 if theta[0] > 1e5 else 0.0)  # a series far from 0 loses no precision
    model = local_level(y)
    assert np.isclose(model.exact_loglik(_theta(*theta)), kalman_loglik(y, *theta), rtol=1e-11)
    stats, ll = model.exact_estep_fn(_theta(*theta), model.data)
    assert np.isclose(ll, kalman_loglik(y, *theta), rtol=1e-11)


@pytest.mark.parametrize("theta", THETAS)
def test_exact_estep_is_the_rts_smoother(theta):
    y = _series(60, seed=1) + (1e6 if theta[0] > 1e5 else 0.0)
    model = local_level(y)
    stats, _ = model.exact_estep_fn(_theta(*theta), model.data)
    m, V, k = rts_smoother(y, *theta)
    want = {
        "x0": m[0],
        "x0sq": V[0] + m[0] ** 2,
        "dsq": np.sum(V[1:] + V[:-1] - 2 * k + np.diff(m) ** 2),
        "rsq": np.sum(V + (y - m) ** 2),
    }
    for name, value in want.items():
        assert np.isclose(stats[name], value, rtol=1e-9), name


def test_log_joint_and_chain_split():
    y = _series(30)
    model = local_level(y)
    theta = _theta(1.0, 0.8, 0.4)
    x = np.random.default_rng(2).normal(size=(3, 2, 30))
    want = (norm(1.0, 0.4).logpdf(x[..., 0]) + norm(x[..., :-1], 0.4).logpdf(x[..., 1:]).sum(-1)
            + norm(x, 0.8).logpdf(y).sum(-1))
    np.testing.assert_allclose(model.log_joint(theta, {"x": x}), want, rtol=1e-12)
    chain = model.chains["x"]
    assert chain.gaussian is True
    prior = chain.prior(theta, model.data)
    split = prior.log_prob(x) + chain.emission(theta, {"x": x}, model.data).sum(-1)
    np.testing.assert_allclose(split, want, rtol=1e-12)


def test_exact_em_reaches_the_direct_mle_and_never_decreases():
    y = _series()
    start = initial_params(y)

    def nll(p):
        return -kalman_loglik(y, p[0], np.exp(p[1]), np.exp(p[2]))

    p0 = [float(start["level0"]), np.log(float(start["sigma_obs"])), np.log(float(start["sigma_level"]))]
    opt = minimize(nll, p0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000,
                                                           "maxfev": 20000})
    assert opt.success
    mle = {"level0": opt.x[0], "sigma_obs": np.exp(opt.x[1]), "sigma_level": np.exp(opt.x[2])}
    fit = mcem.fit(local_level(y), method="em", rng=0, tol=1e-12, max_iter=5000)
    assert fit.converged
    # The optimiser stops within xatol = 1e-10 (log scale); EM stops when the log-likelihood
    # changes by less than 1e-12 relative (~1.6e-10 absolute), which at its linear rate leaves
    # the parameters ~1e-5 (relative) from the MLE: 1e-4 is ten times that.
    for name, value in mle.items():
        assert np.isclose(fit.params[name], value, rtol=1e-4), (name, fit.params[name], value)
    assert fit["loglik"] >= -opt.fun - 1e-9
    ll = fit.history["loglik"]
    assert np.all(np.diff(ll) >= -1e-10 * np.abs(ll[1:])), np.diff(ll).min()
    assert len(ll) > 20 and ll[-1] > ll[0] + 1.0


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_posterior_sampler_matches_the_smoother(offset):
    y = _series(40, seed=3) + offset
    model = local_level(y)
    theta = _theta(2.0 + offset, 0.9, 0.6)
    N = 8000
    x = model.posterior_sampler_fn(theta, model.data, np.random.default_rng(5), (N,))["x"]
    assert x.shape == (N, 40)
    m, V, k = rts_smoother(y, 2.0 + offset, 0.9, 0.6)
    assert_mean(x[None], m, floor=0.0)  # independent draws: one chain of N
    assert_mean((x[None] - m) ** 2, V, floor=0.0)
    assert_mean((x[None, :, 1:] - m[1:]) * (x[None, :, :-1] - m[:-1]), k, floor=0.0)
    again = model.posterior_sampler_fn(theta, model.data, np.random.default_rng(5), (N,))["x"]
    np.testing.assert_array_equal(x, again)


def test_sufficient_stats_of_draws_estimate_the_exact_ones():
    y = _series(40, seed=4)
    model = local_level(y)
    theta = _theta(2.0, 0.9, 0.6)
    N = 6000
    x = model.posterior_sampler_fn(theta, model.data, np.random.default_rng(6), (N,))["x"]
    exact, _ = model.exact_estep_fn(theta, model.data)
    per_draw = {
        "x0": x[:, 0], "x0sq": x[:, 0] ** 2,
        "dsq": np.sum(np.diff(x, axis=1) ** 2, 1), "rsq": np.sum((y - x) ** 2, 1),
    }
    mc = model.sufficient_stats_fn({"x": x}, model.data)
    mc2 = model.sufficient_stats_fn({"x": x.reshape(2, N // 2, 40)}, model.data)  # batch axes averaged
    for name, v in per_draw.items():
        assert np.isclose(mc[name], v.mean(), rtol=1e-12) and np.isclose(mc2[name], v.mean(), rtol=1e-12)
        assert abs(mc[name] - exact[name]) < 4 * v.std() / np.sqrt(N), name
    # the M step of the exact statistics is the closed form of the module docstring
    new = model.mstep_fn(exact, model.data)
    assert np.isclose(new["level0"], exact["x0"])
    assert np.isclose(new["sigma_level"] ** 2, (exact["x0sq"] - exact["x0"] ** 2 + exact["dsq"]) / 40)
    assert np.isclose(new["sigma_obs"] ** 2, exact["rsq"] / 40)


def test_model_checks_pickles_and_has_a_data_start():
    y = _series(25)
    model = local_level(y)
    assert model.name == "local_level"
    assert model.latents["x"].shape == (25,)
    assert set(model.param_names) == {"level0", "sigma_obs", "sigma_level"}
    model.check()
    th = model.default_theta()
    assert th["level0"] == y[0]
    assert np.isclose(th["sigma_obs"], np.std(np.diff(y)) / np.sqrt(2)) and th["sigma_obs"] == th["sigma_level"]
    again = pickle.loads(pickle.dumps(model))
    assert again.exact_loglik(th) == model.exact_loglik(th)
    custom = local_level(y, init={"sigma_obs": 2.0})
    assert custom.default_theta()["sigma_obs"] == 2.0


def test_bad_series_are_refused_by_name():
    with pytest.raises(ValueError, match="y must be 1-D"):
        local_level(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"y must be finite, got y\[2\] = nan"):
        local_level([1.0, 2.0, np.nan, 3.0])
    with pytest.raises(TypeError, match="numeric"):
        local_level(["a", "b"])
    with pytest.raises(ValueError, match="at least 2"):
        local_level([1.0])
    y = np.array([1.0, 2.0, 4.0])
    local_level(y)
    assert y.flags.writeable and np.array_equal(y, [1.0, 2.0, 4.0])

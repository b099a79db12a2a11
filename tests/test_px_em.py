"""Parameter-expanded M step (PX-EM) of the random-intercept GLMM: the step against a naive
maximisation of the expanded Q written here, its iteration against the quadrature MLE with
deterministic posterior draws, and its use by MCEM (expanded steps first, plain EM steps from the
first iteration whose expanded ascent is not significant)."""

import warnings

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import expit

import mcem
from mcem import mstep
from mcem.models import random_intercept as ri


def small_data(family, intercept=True, rng=3, G=12, per=5, trials=None):
    rng = np.random.default_rng(rng)
    group = np.repeat(np.arange(G), per)
    rng.shuffle(group)
    n = group.size
    X = rng.standard_normal((n, 2))
    if intercept:
        X[:, 0] = 2.0  # an intercept column at a value other than 1
    offset = 0.2 * rng.standard_normal(n)
    eta = X @ np.array([0.3, -0.5]) + 0.9 * rng.standard_normal(G)[group] + offset
    if family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    elif trials is None:
        y = (rng.random(n) < expit(eta)).astype(float)
    else:
        y = rng.binomial(trials, expit(eta)).astype(float)
    return X, y, group, offset


def naive_expanded_q(params, X, y, group, offset, b, family, trials, p, with_shift):
    """Expanded Q: mean over draws of sum_i log p(y_i | X beta + offset + alpha b_g) + sum_g
    log N(b_g; eta, s^2), per observation with scipy (b: (draws, G))."""
    beta, alpha = params[:p], params[p]
    shift = params[p + 1] if with_shift else 0.0
    s = np.exp(params[-1])
    eta = X @ beta + offset + alpha * b[:, group]
    if family == "poisson":
        obs = stats.poisson.logpmf(y, np.exp(eta))
    elif trials is None:
        obs = stats.bernoulli.logpmf(y, expit(eta))
    else:
        obs = stats.binom.logpmf(y, trials, expit(eta))
    return float(np.mean(obs.sum(axis=1) + stats.norm.logpdf(b, shift, s).sum(axis=1)))


@pytest.mark.parametrize("family, intercept, trials", [
    ("logit", True, None), ("poisson", True, None), ("logit", False, None), ("logit", True, 3)])
def test_expanded_mstep_maximises_the_expanded_q_and_reports_its_ascent(family, intercept, trials):
    X, y, group, offset = small_data(family, intercept, trials=trials)
    model = ri.random_intercept_glmm(X, y, group, family, offset=offset,
                                     trials=None if trials is None else np.full(y.size, trials))
    G, p = group.max() + 1, X.shape[1]
    theta = {"beta": np.array([0.1, -0.2]), "sigma": 0.7}
    es = mcem.EStep(model, warn=False)  # posterior draws at theta
    u = es.run(theta, es.init(theta, 0), 40, 1).draws["u"]
    ex = model.expanded_mstep(theta, {"u": u})
    assert isinstance(ex, mstep.Expanded) and ex.info.success

    b = u.reshape(-1, G)
    args = (X, y, group, offset, b, family, trials, p, intercept)
    start = np.r_[theta["beta"], 1.0, [0.0] if intercept else [], np.log(theta["sigma"])]
    opt = optimize.minimize(lambda v: -naive_expanded_q(v, *args), start, method="BFGS",
                            options={"gtol": 1e-9})
    beta, alpha = opt.x[:p].copy(), opt.x[p]
    shift = opt.x[p + 1] if intercept else 0.0
    if intercept:
        beta[0] += alpha * shift / 2.0  # the intercept column holds 2
    np.testing.assert_allclose(ex.theta["beta"], beta, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ex.theta["sigma"], abs(alpha) * np.exp(opt.x[-1]), rtol=1e-5)
    # the carried draws with the log Jacobian give the expanded Q at its maximum ...
    carried = mstep.q_hat(model, ex.theta, ex.draws) + ex.log_jacobian
    np.testing.assert_allclose(carried, -opt.fun, rtol=1e-9, atol=1e-7)
    # ... and at the identity it is Q at theta, so delta-Q of the expanded step is the ascent
    assert naive_expanded_q(start, *args) == pytest.approx(mstep.q_hat(model, theta, {"u": u}), rel=1e-10)
    dq, se, d = mstep.expanded_delta_q(model, ex, theta, {"u": u})
    assert dq == pytest.approx(-opt.fun - naive_expanded_q(start, *args), rel=1e-6, abs=1e-8)
    assert d.shape == u.shape[:2] and se > 0 and dq > 0
    # the plain M step's maximum is lower in the expanded Q (it fixes alpha = 1, shift = 0)
    plain, _ = mstep.numerical(model, theta, {"u": u})
    assert mstep.q_hat(model, plain, {"u": u}) < carried


def quantile_draws(model, theta, m, n_grid=801):
    """Deterministic 'draws' of the posterior of every u_g: its quantiles at (k + 1/2) / m from
    the posterior on a fine grid (vectorised over groups); shape (1, m, G)."""
    d = model.data
    G = d["n_groups"]
    beta, sigma = np.asarray(theta["beta"]), float(theta["sigma"])
    grid = np.linspace(-8 * sigma - 3, 8 * sigma + 3, n_grid)
    lin = d["X"] @ beta + d["offset"]
    eta = lin[:, None] + grid[None, :]
    obs = d["y"][:, None] * eta - np.logaddexp(0, eta)
    lp = np.add.reduceat(obs, d["starts"], axis=0) - 0.5 * (grid / sigma) ** 2
    w = np.exp(lp - lp.max(axis=1, keepdims=True))
    cdf = np.cumsum(w, axis=1)
    cdf /= cdf[:, -1:]
    q = (np.arange(m) + 0.5) / m
    out = np.empty((m, G))
    for g in range(G):  # a loop over groups is fine in a reference
        out[:, g] = np.interp(q, cdf[g], grid)
    return out[None]


def iterate(model, theta, draw_fn, update, n):
    path = [theta]
    for _ in range(n):
        theta = update(theta, draw_fn(theta))
        path.append(theta)
    return path


def test_px_em_iteration_reaches_the_quadrature_mle_in_fewer_steps_than_em():
    d = ri.simulate_random_intercept(400, 8, [-0.5, 1.0], 1.0, "logit", rng=11)
    model = ri.random_intercept_glmm(d["X"], d["y"], d["group"])
    oracle = ri.fit_quadrature(d["X"], d["y"], d["group"], n_nodes=30)
    se = np.r_[oracle.se["beta"], oracle.se["sigma"]]
    mle = np.r_[oracle.params["beta"], oracle.params["sigma"]]

    def dist(th):
        return float(np.max(np.abs(np.r_[th["beta"], th["sigma"]] - mle) / se))

    def draws(th):
        return {"u": quantile_draws(model, th, 200)}

    theta0 = model.default_theta()
    px = iterate(model, theta0, draws, lambda th, z: model.expanded_mstep(th, z).theta, 12)
    em = iterate(model, theta0, draws, lambda th, z: mstep.numerical(model, th, z)[0], 12)
    d_px, d_em = [dist(t) for t in px], [dist(t) for t in em]
    # both head for the MLE (the quantile draws are exact to O(1/m^2)): the last PX iterate within
    # 0.05 SE; EM, with a rate near 0.7 here, is still further after as many steps
    assert d_px[-1] < 0.05
    first = next(k for k, v in enumerate(d_px) if v < 0.1)
    assert first <= 4
    assert d_em[first] > 3 * d_px[first]
    assert d_em[-1] > d_px[-1]


def test_default_mcem_takes_expanded_steps_then_plain_ones():
    d = ri.simulate_random_intercept(300, 8, [-0.5, 1.0], 1.0, "logit", rng=5)
    model = ri.random_intercept_glmm(d["X"], d["y"], d["group"])
    oracle = ri.fit_quadrature(d["X"], d["y"], d["group"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a default fit warns of nothing
        res = mcem.fit(model, method="mcem", rng=2)
    ex = [bool(r["expanded"]) for r in res.history.rows[1:]]
    assert ex[0] and not ex[-1]
    k = ex.index(False)
    assert not any(ex[k:])  # plain EM steps from the first insignificant expanded ascent on
    assert res.settings["expand"] is True and res.converged and res.stopped_by == "tol"
    se = np.r_[oracle.se["beta"], oracle.se["sigma"]]
    err = np.abs(np.r_[res.params["beta"], res.params["sigma"]] - np.r_[oracle.params["beta"], oracle.params["sigma"]])
    assert np.max(err / se) < 0.3  # the stopping rule's acceptance
    plain = mcem.fit(model, method="mcem", rng=2, expand=False)
    assert not any(r["expanded"] for r in plain.history.rows[1:]) and plain.settings["expand"] is False


def test_expand_option_is_checked():
    d = ri.simulate_random_intercept(20, 4, [0.0, 1.0], 1.0, "logit", rng=1)
    model = ri.random_intercept_glmm(d["X"], d["y"], d["group"])
    with pytest.raises(ValueError, match=r"expand must be 'auto', True or False, got 'yes'"):
        mcem.fit(model, method="mcem", rng=0, expand="yes", max_iter=1)
    with pytest.raises(ValueError, match=r"expand=True needs .*stop='ascent'"):
        mcem.fit(model, method="mcem", rng=0, expand=True, stop="ascent", max_iter=1)
    plain = mcem.Model(model.log_joint_fn, params=model.params, latents=model.latents, data=model.data)
    with pytest.raises(ValueError, match=r"expand=True needs .*without expanded_mstep"):
        mcem.fit(plain, model.default_theta(), method="mcem", rng=0, expand=True, max_iter=1)


def test_expanded_optimism_is_positive_and_falls_as_one_over_the_draws():
    d = ri.simulate_random_intercept(200, 6, [-0.5, 1.0], 1.0, "logit", rng=8)
    model = ri.random_intercept_glmm(d["X"], d["y"], d["group"])
    theta = model.default_theta()
    es = mcem.EStep(model, warn=False)
    u = es.run(theta, es.init(theta, 0), 200, 1).draws["u"]
    full = model.expanded_mstep(theta, {"u": u}).optimism
    half = model.expanded_mstep(theta, {"u": u[:, :100]}).optimism
    # tr(H^-1 Cov(mean score)) over 5 fitted parameters: about 5 x rate / ESS, halved by twice the draws
    assert 0 < full < 0.5 and 1.4 < half / full < 3.0

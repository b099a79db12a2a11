"""The E step on declared models: draws match known posteriors; shapes, seeds, warm starts.

Tolerances: |estimate - truth| < 4 * MCSE + a small floor (MCSE from arviz-stats, using the
ESS), or binomial standard errors for exact independent draws; fixed seeds.
"""

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import gammaln, logsumexp

import mcem
from mcem import constraints as C
from mcem.estep import EStep, EStepResult, EStepState
from mcem.exceptions import MonteCarloWarning
from mcem.kernels import MALA, RWM, Compose, Emcee, Exact, Gibbs
from mcem.models import gaussian_mixture


from _mc import assert_mean, mcse



def assert_var_ratio(x, var, floor=0.02):
    """Per-unit variance / truth, averaged over independent units, is 1 within 4 SE."""
    ratio = np.asarray(x, float).var(axis=(0, 1)) / var
    assert abs(ratio.mean() - 1) < 4 * ratio.std() / np.sqrt(ratio.size) + floor, ratio


# ----------------------------------------------------------------------------- models
def mixture_data(seed=0, N=40):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [1.5, 1.0], [-1.0, 2.0]])
    X = means[rng.integers(0, 3, N)] + rng.normal(size=(N, 2))
    theta = {
        "weights": np.array([0.5, 0.3, 0.2]),
        "means": means,
        "covariances": np.stack([np.eye(2), [[1.0, 0.3], [0.3, 0.8]], 0.7 * np.eye(2)]),
    }
    return X, theta


def responsibilities(X, theta):
    """Label posterior by scipy.stats (independent of the package's mixture code)."""
    lp = np.stack(
        [
            np.log(theta["weights"][k])
            + stats.multivariate_normal(theta["means"][k], theta["covariances"][k]).logpdf(X)
            for k in range(3)
        ],
        axis=1,
    )
    return np.exp(lp - logsumexp(lp, axis=1, keepdims=True))


def normal_normal_model(n_units=15, n_obs=3, seed=0, grad=False):
    """y_ij ~ N(u_i, s^2), u_i ~ N(0, tau^2), with per-unit log joint terms."""
    rng = np.random.default_rng(seed)
    tau, s = 1.5, 1.0
    y = rng.normal(0, tau, n_units)[:, None] + rng.normal(0, s, (n_units, n_obs))

    def log_joint(theta, z, data):
        u, tau, s = z["u"], theta["tau"], theta["s"]
        ll = -0.5 * (((data["y"] - u[..., None]) / s) ** 2).sum(-1) - n_obs * np.log(s)
        return ll - 0.5 * (u / tau) ** 2 - np.log(tau) - 0.5 * (n_obs + 1) * np.log(2 * np.pi)

    model = mcem.Model(
        log_joint,
        params={"tau": C.positive, "s": C.positive},
        latents={"u": mcem.Continuous(shape=n_units, unit=True)},
        data={"y": y},
        init={"tau": tau, "s": s},
    )

    def posterior(theta):
        prec = 1 / theta["tau"] ** 2 + n_obs / theta["s"] ** 2
        return y.sum(1) / theta["s"] ** 2 / prec, np.full(n_units, 1 / prec)

    def grad_fn(theta, z, data):
        u = z["u"]
        return ((data["y"] - u[..., None]) / theta["s"] ** 2).sum(-1) - u / theta["tau"] ** 2

    return model, {"tau": tau, "s": s}, posterior, grad_fn


def poisson_gamma_model():
    """y_i ~ Poisson(lam_i), lam_i ~ Gamma(a, b): posterior Gamma(a + y_i, b + 1)."""
    y = np.array([0, 1, 2, 3, 5, 8, 0, 1, 4, 2])

    def log_joint(theta, z, data):
        lam, a, b = z["lam"], theta["a"], theta["b"]
        y = data["y"]
        return (a - 1 + y) * np.log(lam) - (b + 1) * lam + a * np.log(b) - gammaln(a) - gammaln(y + 1)

    model = mcem.Model(
        log_joint,
        params={"a": C.positive, "b": C.positive},
        latents={"lam": mcem.Continuous(C.positive, shape=y.size, unit=True)},
        data={"y": y},
    )
    return model, y


def crossed_model():
    """Crossed random effects (salamander-like): 2 female x 3 male effects, binary outcomes."""
    F, M, R = 2, 3, 3
    ysum = np.array([[3, 2, 0], [1, 0, 1]])  # successes out of R trials per pair

    def eta(theta, z):
        return theta["beta"] + z["f"][..., :, None] + z["m"][..., None, :]  # (..., F, M)

    def pair_ll(theta, z, data):
        e = eta(theta, z)
        return data["ysum"] * e - R * np.logaddexp(0.0, e)

    def prior(x, s):
        return -0.5 * (x / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)

    def log_joint(theta, z, data):
        return (
            pair_ll(theta, z, data).sum((-1, -2))
            + prior(z["f"], theta["sf"]).sum(-1)
            + prior(z["m"], theta["sm"]).sum(-1)
        )

    def cond_f(theta, z, data):
        return pair_ll(theta, z, data).sum(-1) + prior(z["f"], theta["sf"])

    def cond_m(theta, z, data):
        return pair_ll(theta, z, data).sum(-2) + prior(z["m"], theta["sm"])

    model = mcem.Model(
        log_joint,
        params={"beta": C.real, "sf": C.positive, "sm": C.positive},
        latents={"f": mcem.Continuous(shape=F, unit=True), "m": mcem.Continuous(shape=M, unit=True)},
        data={"ysum": ysum},
        conditionals={"f": cond_f, "m": cond_m},
    )
    theta = {"beta": 0.2, "sf": 1.0, "sm": 0.8}

    # the truth by Gauss-Hermite quadrature over the 5-d latent vector (12 nodes per axis)
    t, w = np.polynomial.hermite.hermgauss(12)
    scales = [theta["sf"]] * F + [theta["sm"]] * M
    X = np.meshgrid(*[np.sqrt(2) * s * t for s in scales], indexing="ij", sparse=True)
    lw = sum(np.log(w / np.sqrt(np.pi)).reshape([-1 if i == j else 1 for j in range(5)]) for i in range(5))
    for i in range(F):
        for j in range(M):
            e = theta["beta"] + X[i] + X[F + j]
            lw = lw + ysum[i, j] * e - R * np.logaddexp(0, e)
    p = np.exp(lw - logsumexp(lw))
    truth = np.array([(p * X[k]).sum() for k in range(5)])
    second = np.array([(p * X[k] ** 2).sum() for k in range(5)])
    return model, theta, truth[:F], truth[F:], second[:F], second[F:]


def coupled_model(n_units=8, sb=0.3, sy=0.5, seed=0):
    """a_i ~ N(0, 1), b_i | a_i ~ N(a_i, sb^2), y_i | b_i ~ N(b_i, sy^2): two strongly coupled
    unit sites updated with their conditionals; the posterior of (a_i, b_i) is Gaussian."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1.2, n_units)

    def terms(theta, z, data):
        a, b = z["a"], z["b"]
        return -0.5 * a**2, -0.5 * ((b - a) / theta["sb"]) ** 2, -0.5 * ((data["y"] - b) / sy) ** 2

    def log_joint(theta, z, data):
        return sum(t.sum(-1) for t in terms(theta, z, data))

    def cond_a(theta, z, data):
        ta, tab, _ = terms(theta, z, data)
        return ta + tab

    def cond_b(theta, z, data):
        _, tab, tb = terms(theta, z, data)
        return tab + tb

    model = mcem.Model(
        log_joint,
        params={"sb": C.positive},
        latents={
            "a": mcem.Continuous(shape=n_units, unit=True),
            "b": mcem.Continuous(shape=n_units, unit=True),
        },
        data={"y": y},
        conditionals={"a": cond_a, "b": cond_b},
    )
    Q = np.array([[1 + 1 / sb**2, -1 / sb**2], [-1 / sb**2, 1 / sb**2 + 1 / sy**2]])
    cov = np.linalg.inv(Q)
    mean = (cov @ np.stack([np.zeros(n_units), y / sy**2]))  # (2, n_units)
    return model, {"sb": sb}, mean, np.diag(cov)


def gaussian_latent_model():
    """A 2-d correlated Gaussian latent without unit structure: posterior N(mu, S)."""
    S = np.array([[1.0, 0.8], [0.8, 2.0]])
    P = np.linalg.inv(S)

    def log_joint(theta, z, data):
        d = z["x"] - theta["mu"]
        return -0.5 * np.einsum("...i,ij,...j->...", d, data["P"], d)

    model = mcem.Model(
        log_joint,
        params={"mu": C.real(shape=2)},
        latents={"x": mcem.Continuous(shape=2)},
        data={"P": P},
    )
    return model, S


# ----------------------------------------------------------------------------- Gibbs / exact
def test_gibbs_label_frequencies_match_responsibilities():
    X, theta = mixture_data()
    model = gaussian_mixture(X, 3)
    R = responsibilities(X, theta)
    es = EStep(model, "gibbs", n_chains=4, burn=2)
    assert isinstance(es.kernel, Compose) and isinstance(es.kernel.kernels["label"], Gibbs)
    st = es.init(theta, 0)
    res = es.run(theta, st, 600, 1)
    labels = res.draws["label"]
    n = labels.shape[0] * labels.shape[1]
    freq = np.stack([(labels == k).mean(axis=(0, 1)) for k in range(3)], axis=1)
    # per-unit Gibbs draws every label from its exact conditional: binomial standard errors
    se = np.sqrt(R * (1 - R) / n)
    assert np.all(np.abs(freq - R) < 4 * se + 0.005), np.abs(freq - R).max()
    # the cached log joint is the model's log joint at the kept draws
    np.testing.assert_allclose(res.loglik_trace, model.log_joint(theta, {"label": labels}).sum(-1))


def test_gibbs_agrees_with_exact_sampler():
    X, theta = mixture_data(seed=1)
    model = gaussian_mixture(X, 3)
    es_auto = EStep(model, n_chains=4, burn=0)
    assert isinstance(es_auto.kernel, Exact)  # auto uses the exact sampler when there is one
    es_gibbs = EStep(model, "gibbs", n_chains=4, burn=0)
    a = es_auto.run(theta, es_auto.init(theta, 0), 500, 10).draws["label"]
    b = es_gibbs.run(theta, es_gibbs.init(theta, 0), 500, 20).draws["label"]
    n = a.shape[0] * a.shape[1]
    for k in range(3):
        fa, fb = (a == k).mean(axis=(0, 1)), (b == k).mean(axis=(0, 1))
        p = 0.5 * (fa + fb)
        se = np.sqrt(2 * p * (1 - p) / n)
        assert np.all(np.abs(fa - fb) < 4 * se + 0.005)


# ----------------------------------------------------------------------------- RWM / MALA
def test_per_unit_rwm_normal_normal_posterior():
    model, theta, posterior, _ = normal_normal_model()
    es = EStep(model, n_chains=4, burn=300)
    assert isinstance(es.kernel.kernels["u"], RWM)
    res = es.run(theta, es.init(theta, 0), 1500, 1)
    mean, var = posterior(theta)
    u = res.draws["u"]
    assert u.shape == (4, 1500, 15)
    assert_mean(u, mean)
    assert_var_ratio(u, var)
    acc = res.diagnostics["acceptance"]["u"]
    assert 0.35 < acc["mean"] < 0.53 and acc["min"] > 0.2
    np.testing.assert_allclose(res.loglik_trace, model.log_joint(theta, {"u": u}).sum(-1))


def test_rwm_user_options_by_dict_and_name():
    model, theta, _, _ = normal_normal_model()
    es = EStep(model, {"u": RWM(target_accept=0.25)}, n_chains=2, burn=400)
    res = es.run(theta, es.init(theta, 0), 400, 1)
    assert abs(res.diagnostics["acceptance"]["u"]["mean"] - 0.25) < 0.06
    es2 = EStep(model, "rwm", n_chains=2, burn=400, sampler_options={"target_accept": 0.6})
    res2 = es2.run(theta, es2.init(theta, 0), 400, 1)
    assert abs(res2.diagnostics["acceptance"]["u"]["mean"] - 0.6) < 0.06


def test_positive_latent_gamma_posterior():
    model, y = poisson_gamma_model()
    theta = {"a": 2.0, "b": 1.0}
    es = EStep(model, n_chains=4, burn=300)
    res = es.run(theta, es.init(theta, 0), 2000, 3)
    lam = res.draws["lam"]
    assert np.all(lam > 0)
    a, b = theta["a"], theta["b"]
    assert_mean(lam, (a + y) / (b + 1), floor=0.01)
    assert_var_ratio(lam, (a + y) / (b + 1) ** 2, floor=0.03)


def test_mala_normal_normal_with_analytic_gradient():
    model, theta, posterior, grad = normal_normal_model(seed=2)
    es = EStep(model, {"u": MALA(grad=grad)}, n_chains=4, burn=300)
    res = es.run(theta, es.init(theta, 0), 1500, 4)
    mean, var = posterior(theta)
    assert_mean(res.draws["u"], mean)
    assert_var_ratio(res.draws["u"], var)
    assert 0.45 < res.diagnostics["acceptance"]["u"]["mean"] < 0.7


def test_mala_without_gradient_is_refused():
    model, _, _, _ = normal_normal_model()
    with pytest.raises(ValueError, match="grad"):
        EStep(model, {"u": MALA()})


# ----------------------------------------------------------------------------- compose
def test_crossed_effects_compose_with_conditionals():
    model, theta, f_true, m_true, f2, m2 = crossed_model()
    es = EStep(model, n_chains=4, burn=300)
    k = es.kernel
    assert isinstance(k, Compose) and set(k.kernels) == {"f", "m"}
    assert all(isinstance(v, RWM) for v in k.kernels.values())
    res = es.run(theta, es.init(theta, 0), 2500, 5)
    assert res.draws["f"].shape == (4, 2500, 2) and res.draws["m"].shape == (4, 2500, 3)
    assert_mean(res.draws["f"], f_true, floor=0.01)
    assert_mean(res.draws["m"], m_true, floor=0.01)
    assert_mean(res.draws["f"] ** 2, f2, floor=0.02)
    assert_mean(res.draws["m"] ** 2, m2, floor=0.02)
    # per-unit acceptance (one scale per unit): the trace is the full log joint, recomputed
    assert res.diagnostics["acceptance"]["f"]["mean"] > 0.3
    np.testing.assert_allclose(
        res.loglik_trace, model.log_joint(theta, {"f": res.draws["f"], "m": res.draws["m"]})
    )


def test_compose_coupled_sites_gaussian_posterior():
    """Site-by-site updates must re-evaluate each site's cache after the other site moved."""
    model, theta, mean, var = coupled_model(n_units=30, sb=0.15)
    es = EStep(model, n_chains=4, burn=300)
    res = es.run(theta, es.init(theta, 0), 3000, 8)
    for i, n in enumerate(("a", "b")):
        assert_mean(res.draws[n], mean[i], floor=0.01)
        assert_var_ratio(res.draws[n], var[i], floor=0.03)


def test_global_scalar_latent_with_unit_latents():
    """g ~ N(0, 1), u_i | g ~ N(g, 1), y_i | u_i ~ N(u_i, 1): a per-unit log joint; the scalar
    site g is updated with the summed terms, the unit site u per unit."""
    y = np.array([0.5, 2.0, -1.0, 1.5, 3.0])
    n = y.size

    def log_joint(theta, z, data):
        g, u = z["g"], z["u"]
        return -0.5 * (g[..., None] ** 2) / n - 0.5 * (u - g[..., None]) ** 2 - 0.5 * (data - u) ** 2

    model = mcem.Model(
        log_joint,
        params={"c": C.real},
        latents={"g": mcem.Continuous(), "u": mcem.Continuous(shape=n, unit=True)},
        data=y,
    )
    assert model.per_unit
    Q = np.zeros((n + 1, n + 1))
    Q[0, 0] = 1 + n
    Q[0, 1:] = Q[1:, 0] = -1
    Q[1:, 1:] = 2 * np.eye(n)
    cov = np.linalg.inv(Q)
    mean = cov @ np.concatenate([[0.0], y])
    es = EStep(model, n_chains=4, burn=300)
    assert es.modes == {"g": "sum", "u": "per_unit"}
    st = es.init({"c": 0.0}, 0)
    assert st.kernel_state.sites["g"].logp.shape == (4,)
    assert st.kernel_state.sites["u"].logp.shape == (4, n)
    res = es.run({"c": 0.0}, st, 3000, 9)
    assert res.draws["g"].shape == (4, 3000)
    assert_mean(res.draws["g"], mean[0], floor=0.01)
    assert_mean(res.draws["u"], mean[1:], floor=0.01)
    assert_mean((res.draws["g"] - mean[0]) ** 2, cov[0, 0], floor=0.02)


def test_compose_without_unit_terms_falls_back_to_joint_updates():
    model, theta, f_true, m_true, _, _ = crossed_model()
    plain = mcem.Model(model.log_joint_fn, params=model.params, latents=model.latents, data=model.data)
    es = EStep(plain, n_chains=4, burn=300)
    st = es.init(theta, 0)
    assert st.kernel_state.sites["f"].scale.shape == (4,)  # one joint scale per chain
    res = es.run(theta, st, 2500, 6)
    assert_mean(res.draws["f"], f_true, floor=0.015)
    assert_mean(res.draws["m"], m_true, floor=0.015)


# ----------------------------------------------------------------------------- emcee
def test_emcee_gaussian_latent_mean_and_covariance():
    model, S = gaussian_latent_model()
    theta = {"mu": np.array([1.0, -2.0])}
    es = EStep(model, n_chains=8, burn=300)
    assert isinstance(es.kernel.kernels["x"], Emcee)
    res = es.run(theta, es.init(theta, 0), 2500, 7)
    x = res.draws["x"]
    assert x.shape == (8, 2500, 2) and res.loglik_trace.shape == (8, 2500)
    assert_mean(x, theta["mu"], floor=0.01)
    d = x - theta["mu"]
    for i, j in [(0, 0), (0, 1), (1, 1)]:
        prod = d[..., i] * d[..., j]
        assert abs(prod.mean() - S[i, j]) < 4 * mcse(prod) + 0.03, (i, j)
    np.testing.assert_allclose(res.loglik_trace, model.log_joint(theta, {"x": x}))
    assert 0.2 < res.diagnostics["acceptance"]["x"]["mean"] < 0.9


@pytest.mark.filterwarnings("ignore::mcem.exceptions.MonteCarloWarning")  # 200 draws: R-hat noisy
def test_emcee_log_prob_recomputed_after_theta_changes():
    """A stale cached log_prob from theta_1 would freeze the walkers at theta_1's mode."""
    model, _ = gaussian_latent_model()
    P = np.linalg.inv(np.diag([0.05, 0.05]))
    tight = mcem.Model(model.log_joint_fn, params=model.params, latents=model.latents, data={"P": P})
    th1, th2 = {"mu": np.zeros(2)}, {"mu": np.array([2.0, 2.0])}
    es = EStep(tight, n_chains=8, burn=200, warm_burn=100)
    res1 = es.run(th1, es.init(th1, 0), 200, 1)
    assert np.abs(res1.draws["x"].mean((0, 1))).max() < 0.2
    res2 = es.run(th2, res1.state, 500, 2)
    assert_mean(res2.draws["x"], th2["mu"], floor=0.02)
    # the state carried over holds log densities at theta_2
    ks = res2.state.kernel_state.sites["x"]
    np.testing.assert_allclose(ks.log_prob, tight.log_joint(th2, {"x": ks.z}))


def test_emcee_kernel_step_path_refreshes():
    model, _ = gaussian_latent_model()
    th1, th2 = {"mu": np.zeros(2)}, {"mu": np.array([3.0, 3.0])}
    es = EStep(model, {"x": Emcee()}, n_chains=8)
    st = es.init(th1, 0)
    target2 = es.target(th2)
    fresh = es.kernel.refresh(st.kernel_state, target2)
    np.testing.assert_allclose(fresh.sites["x"].log_prob, model.log_joint(th2, fresh.z))


def test_emcee_needs_the_only_site_and_enough_walkers():
    model, theta, *_ = crossed_model()
    with pytest.raises(ValueError, match="only latent"):
        EStep(model, {"f": Emcee()})
    gmodel, _ = gaussian_latent_model()
    es = EStep(gmodel, n_chains=3)  # too few walkers for emcee: auto picks a joint RWM
    assert isinstance(es.kernel.kernels["x"], RWM)
    with pytest.raises(ValueError, match="walkers"):
        EStep(gmodel, "emcee", n_chains=3).init({"mu": np.zeros(2)}, 0)


# ----------------------------------------------------------------------------- interface
@pytest.mark.filterwarnings("ignore::mcem.exceptions.MonteCarloWarning")  # short burn-in on purpose
def test_reproducible_and_shapes():
    model, theta, _, _ = normal_normal_model()
    es = EStep(model, n_chains=3, burn=20, thin=2)
    r1 = es.run(theta, es.init(theta, 5), 30, 6)
    r2 = es.run(theta, es.init(theta, 5), 30, 6)
    r3 = es.run(theta, es.init(theta, 5), 30, 7)
    np.testing.assert_array_equal(r1.draws["u"], r2.draws["u"])
    np.testing.assert_array_equal(r1.loglik_trace, r2.loglik_trace)
    assert not np.array_equal(r1.draws["u"], r3.draws["u"])
    assert isinstance(r1, EStepResult) and isinstance(r1.state, EStepState)
    assert r1.draws["u"].shape == (3, 30, 15) and r1.loglik_trace.shape == (3, 30)
    np.testing.assert_array_equal(r1.state.z["u"], r1.draws["u"][:, -1])
    X, th = mixture_data()
    gm = gaussian_mixture(X, 3)
    for sampler in ("gibbs", "auto"):
        e = EStep(gm, sampler, n_chains=2, burn=3)
        a = e.run(th, e.init(th, 1), 5, 2).draws["label"]
        b = e.run(th, e.init(th, 1), 5, 2).draws["label"]
        np.testing.assert_array_equal(a, b)
        assert a.shape == (2, 5, 40) and np.issubdtype(a.dtype, np.integer)
    gmodel, _ = gaussian_latent_model()
    e = EStep(gmodel, n_chains=6, burn=10)
    th = {"mu": np.zeros(2)}
    np.testing.assert_array_equal(
        e.run(th, e.init(th, 3), 20, 4).draws["x"], e.run(th, e.init(th, 3), 20, 4).draws["x"]
    )


@pytest.mark.filterwarnings("ignore::mcem.exceptions.MonteCarloWarning")  # short burn-in on purpose
def test_warm_start_continues_the_chains():
    model, theta, _, _ = normal_normal_model(n_units=200)
    es = EStep(model, n_chains=2, burn=100, warm_burn=7)
    r1 = es.run(theta, es.init(theta, 0), 50, 1)
    assert r1.diagnostics["n_burned"] == 100 and r1.state.n_runs == 1
    r2 = es.run(theta, r1.state, 10, 2)
    assert r2.diagnostics["n_burned"] == 7  # warm start: warm_burn after the first run
    r3 = es.run(theta, r2.state, 1, 3, burn=0)
    assert r3.diagnostics["n_burned"] == 0
    # one RWM step from the last state: every unit either stayed or moved by one proposal
    stayed = r3.draws["u"][:, 0] == r2.draws["u"][:, -1]
    assert 0.3 < stayed.mean() < 0.8
    # adapted scales are carried over, not reset
    np.testing.assert_array_equal(
        r3.state.kernel_state.sites["u"].scale, r2.state.kernel_state.sites["u"].scale
    )
    assert not np.allclose(r1.state.kernel_state.sites["u"].scale, 1.0)


def test_theta_change_refreshes_cached_log_density():
    model, theta, posterior, _ = normal_normal_model()
    es = EStep(model, n_chains=4, burn=300, warm_burn=0)
    r1 = es.run(theta, es.init(theta, 0), 10, 1)
    th2 = {"tau": 0.3, "s": 2.0}
    r2 = es.run(th2, r1.state, 1, 2)
    st = r2.state.kernel_state.sites["u"]
    np.testing.assert_allclose(st.logp, model.log_joint(th2, {"u": st.z}))


def test_streaming_reducer_without_storing():
    model, theta, _, _ = normal_normal_model()
    es = EStep(model, n_chains=2, burn=10)
    seen = []

    def reducer(z):
        seen.append(z["u"].copy())

    kept = es.run(theta, es.init(theta, 0), 12, 1)
    streamed = es.run(theta, es.init(theta, 0), 12, 1, keep=False, reducer=reducer)
    assert streamed.draws == {}
    assert len(seen) == 12 and seen[0].shape == (2, 15)
    np.testing.assert_array_equal(np.stack(seen, axis=1), kept.draws["u"])
    np.testing.assert_array_equal(streamed.loglik_trace, kept.loglik_trace)
    gmodel, _ = gaussian_latent_model()  # the emcee block path streams too
    e = EStep(gmodel, n_chains=4, burn=5)
    count = []
    r = e.run({"mu": np.zeros(2)}, e.init({"mu": np.zeros(2)}, 0), 7, 1, keep=False, reducer=count.append)
    assert len(count) == 7 and count[0]["x"].shape == (4, 2) and r.draws == {}


def test_diagnostics_keys_and_values():
    model, theta, _, _ = normal_normal_model()
    es = EStep(model, n_chains=4, burn=200)
    d = es.run(theta, es.init(theta, 0), 200, 1).diagnostics
    for key in ("acceptance", "acceptance_mean", "acceptance_min", "ess_loglik", "rhat_loglik",
                "n_kept", "n_burned", "low_acceptance", "high_rhat", "seconds"):
        assert key in d
    assert set(d["acceptance"]["u"]) >= {"mean", "min", "metropolis"}
    assert d["n_kept"] == 200 and d["n_burned"] == 200
    assert d["ess_loglik"] > 50 and 0.98 < d["rhat_loglik"] < 1.05
    assert not d["low_acceptance"] and not d["high_rhat"]


def test_warning_when_acceptance_collapses():
    model, theta, _, _ = normal_normal_model()
    es = EStep(model, {"u": RWM(scale=1e4, adapt=False)}, n_chains=4, burn=5)
    with pytest.warns(MonteCarloWarning, match="acceptance") as rec:
        res = es.run(theta, es.init(theta, 0), 50, 1)
    assert res.diagnostics["low_acceptance"]
    assert res.diagnostics["acceptance"]["u"]["mean"] < 0.05
    # keyed, so that a fit can gather the E steps' warnings: the lowest mean rate, lower is worse
    (w,) = [r.message for r in rec if r.message.key == "low_acceptance"]
    assert w.worse == "low"
    assert w.value == pytest.approx(res.diagnostics["acceptance"]["u"]["mean"], abs=1e-4)
    quiet = EStep(model, {"u": RWM(scale=1e4, adapt=False)}, n_chains=4, burn=5, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonteCarloWarning)
        quiet.run(theta, quiet.init(theta, 0), 50, 1)


def test_warning_when_rhat_is_large():
    model, theta, _, _ = normal_normal_model()
    # no burn-in from a far starting point with a tiny fixed step: chains disagree
    far = mcem.Model(model.log_joint_fn, params=model.params,
                     latents={"u": mcem.Continuous(shape=15, unit=True, init=30.0)}, data=model.data)
    es = EStep(far, {"u": RWM(scale=0.01, adapt=False)}, n_chains=4, burn=0)
    st = es.init(theta, 0)
    st = st._replace(kernel_state=st.kernel_state._replace(
        sites={"u": st.kernel_state.sites["u"]._replace(
            w=st.kernel_state.sites["u"].w + np.arange(4)[:, None] * 5.0)}))
    with pytest.warns(MonteCarloWarning, match="R-hat") as rec:
        res = es.run(theta, st, 40, 1)
    assert res.diagnostics["high_rhat"]
    (w,) = [r.message for r in rec if r.message.key == "high_rhat"]
    assert w.worse == "high" and w.value == res.diagnostics["rhat_loglik"] > 1.05
    assert "the chains disagree" in str(w) and res.diagnostics["diagnostics_basis"] == "chains"


def test_sampler_specifications_and_errors():
    model, theta, _, _ = normal_normal_model()
    X, _ = mixture_data()
    gm = gaussian_mixture(X, 3)
    with pytest.raises(ValueError, match="unknown kernel"):
        EStep(model, "hmc")
    with pytest.raises(TypeError, match="Discrete latent"):
        EStep(model, "gibbs")
    with pytest.raises(TypeError, match="Continuous latent"):
        EStep(gm, "rwm")
    with pytest.raises(ValueError, match="unknown latent"):
        EStep(model, {"v": "rwm"})
    with pytest.raises(ValueError, match="posterior_sampler"):
        EStep(model, "exact")
    with pytest.raises(TypeError, match="sampler must be"):
        EStep(model, 3)
    with pytest.raises(TypeError, match="mcem.Model"):
        EStep("model")
    with pytest.raises(ValueError, match="n_chains"):
        EStep(model, n_chains=0)
    es = EStep(model, RWM(scale=0.5), n_chains=2)
    assert es.kernel.kernels["u"].scale == 0.5
    es = EStep(model, Compose({"u": RWM()}), n_chains=2)
    assert es.kernel.kernels["u"].support is not None
    with pytest.raises(TypeError, match="EStepState"):
        es.run(theta, None, 5, 0)
    with pytest.raises(ValueError, match="n_draws"):
        es.run(theta, es.init(theta, 0), -1, 0)
    with pytest.raises(ValueError, match="theta"):
        es.run({"tau": -1.0, "s": 1.0}, es.init(theta, 0), 5, 0)


def test_agreeing_chains_with_a_small_ess_raise_no_rhat_flag():
    """Chains started at exact posterior draws and moved by a slow random walk agree from the
    start, yet their R-hat exceeds 1.05 at a small ESS (R-hat^2 - 1 is about 2c/ESS); the flag
    and its warning are kept for R-hat beyond that (the far-start test above)."""
    from mcem.kernels import RWM

    def log_joint(theta, z, data):
        return -0.5 * np.sum((z["x"] - theta["mu"]) ** 2, axis=-1)

    model = mcem.Model(log_joint, params={"mu": C.real(shape=3)}, latents={"x": mcem.Continuous(shape=3)})
    theta = {"mu": np.zeros(3)}
    rhats = []
    for seed in range(8):
        es = EStep(model, {"x": RWM(scale=0.3, adapt=False)}, n_chains=4, burn=0)
        st = es.init(theta, seed)
        site = st.kernel_state.sites["x"]._replace(w=np.random.default_rng(seed).normal(size=(4, 3)))
        st = st._replace(kernel_state=st.kernel_state._replace(sites={"x": site}))
        with warnings.catch_warnings():
            warnings.simplefilter("error", MonteCarloWarning)
            d = es.run(theta, st, 60, seed).diagnostics
        rhats.append(d["rhat_loglik"])
        assert not d["high_rhat"]
        assert d["rhat_loglik"] ** 2 - 1 <= 3 * 8 / d["ess_loglik"]
    assert min(rhats) > 1.05  # every one of them above the fixed threshold

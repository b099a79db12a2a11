"""Site kernels on plain log densities (no Model): each kernel's draws match a known target.

Tolerances come from the Monte Carlo standard error (arviz-stats MCSE, which uses the ESS):
|estimate - truth| < 4 * MCSE + a small floor, with fixed seeds.
"""

import itertools

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logsumexp

from mcem import constraints as C
from mcem.kernels import MALA, RWM, Emcee, Gibbs, Target, categorical_from_logits


from _mc import assert_mean, mcse



def run(kernel, z0, ld, n_steps, rng, burn=0):
    """Burn (with adaptation) then keep every state: returns (chain, draw, ...) and info list."""
    st = kernel.init(z0, ld, rng)
    for _ in range(burn):
        st, _ = kernel.step(st, ld, rng, adapt=True)
    out, acc = [], []
    for _ in range(n_steps):
        st, info = kernel.step(st, ld, rng)
        out.append(st.z)
        acc.append(info.accepted)
    return np.stack(out, axis=1), st, acc


# ----------------------------------------------------------------------------- Gibbs
def test_categorical_from_logits_frequencies():
    rng = np.random.default_rng(0)
    p = np.array([0.1, 0.0, 0.6, 0.3])
    with np.errstate(divide="ignore"):
        lp = np.log(p)[:, None] + np.zeros((4, 200_000))
    lp = lp + 123.0  # unnormalised, shifted
    labels, picked = categorical_from_logits(lp, rng)
    freq = np.bincount(labels, minlength=4) / labels.size
    se = np.sqrt(p * (1 - p) / labels.size)
    assert np.all(np.abs(freq - p) < 4 * se + 1e-12)
    assert freq[1] == 0.0
    np.testing.assert_allclose(picked, lp[labels, np.arange(labels.size)])


def test_gibbs_per_unit_exact_conditionals():
    """Per-unit Gibbs on independent categorical units is an exact draw from each unit's law."""
    rng = np.random.default_rng(1)
    N, K, chains = 6, 3, 4
    logits = rng.normal(size=(N, K)) * 1.5
    probs = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))

    def ld(z):  # z (..., chains, N) -> per-unit terms
        return logits[np.arange(N), z]

    z, _, _ = run(Gibbs(K), np.zeros((chains, N), int), ld, 1500, rng)
    n = chains * 1500
    freq = np.stack([(z == k).mean(axis=(0, 1)) for k in range(K)], axis=1)
    se = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(freq - probs) < 4 * se + 0.003), (freq, probs)


def test_gibbs_refresh_at_a_new_theta_never_reports_the_old_log_joint():
    """A per-unit refresh leaves the kernel's log densities behind (the sweep never reads them);
    the E step's log joint at the refreshed state is then computed at the new theta, and a
    sweep's trace is the log joint of its draws at that theta."""
    import mcem

    X = np.random.default_rng(0).normal(size=(50, 1)) + np.repeat([[-2.0], [2.0]], 25, axis=0)
    model = mcem.models.gaussian_mixture(X, 2)
    th1 = {"weights": np.array([0.5, 0.5]), "means": np.array([[-1.0], [1.0]]),
           "covariances": np.ones((2, 1, 1))}
    th2 = {**th1, "means": np.array([[-3.0], [0.5]])}
    es = mcem.EStep(model, "gibbs", n_chains=2, burn=0, warm_burn=0)
    state = es.run(th1, es.init(th1, 0), 3, rng=1).state
    ks = es.kernel.refresh(state.kernel_state, es.target(th2))
    z = ks.z
    np.testing.assert_allclose(es.kernel.log_joint(ks, es.target(th2)), model.log_joint_sum(th2, z, 1))
    assert not np.allclose(model.log_joint_sum(th1, z, 1), model.log_joint_sum(th2, z, 1))
    res = es.run(th2, state, 2, rng=2)
    for j in range(2):
        np.testing.assert_allclose(res.loglik_trace[:, j], model.log_joint_sum(th2, {"label": res.draws["label"][:, j]}, 1))


def test_categorical_from_logits_one_state():
    labels, picked = categorical_from_logits(np.full((1, 5), -np.inf), np.random.default_rng(0))
    np.testing.assert_array_equal(labels, 0)
    assert np.all(picked == -np.inf)


def test_gibbs_scan_non_unit_ising_chain():
    """Systematic-scan Gibbs over three coupled binary elements (total log density)."""
    rng = np.random.default_rng(2)
    h = np.array([0.3, -0.5, 0.2])
    J = 1.2

    def ld(z):  # (..., chains, 3) -> (..., chains)
        return z @ h + J * z[..., 0] * z[..., 1] - J * z[..., 1] * z[..., 2]

    states = np.array(list(itertools.product([0, 1], repeat=3)))
    lw = ld(states)
    p = np.exp(lw - logsumexp(lw))
    z, _, _ = run(Gibbs(2), np.zeros((4, 3), int), ld, 2500, rng, burn=20)
    code = z @ np.array([4, 2, 1])  # (chain, draw)
    for s in range(8):
        ind = (code == s).astype(float)
        assert abs(ind.mean() - p[s]) < 4 * mcse(ind) + 0.005, (s, ind.mean(), p[s])


def test_gibbs_per_unit_with_trailing_axis():
    """Units of shape (2,): each trailing element drawn given the other, all units at once."""
    rng = np.random.default_rng(3)
    N = 4
    a = rng.normal(size=(N, 2))
    J = np.array([1.5, -1.0, 0.5, 2.0])

    def ld(z):  # (..., chains, N, 2) -> (..., chains, N)
        return (z * a).sum(-1) + J * z[..., 0] * z[..., 1]

    states = np.array(list(itertools.product([0, 1], repeat=2)))  # (4, 2)
    lw = (states[:, None, :] * a).sum(-1) + J * states[:, None, 0] * states[:, None, 1]  # (4, N)
    p = np.exp(lw - logsumexp(lw, axis=0))
    z, _, _ = run(Gibbs(2), np.zeros((4, N, 2), int), ld, 2500, rng, burn=20)
    code = z[..., 0] * 2 + z[..., 1]  # (chain, draw, N)
    for s in range(4):
        ind = (code == s).astype(float)
        est = ind.mean(axis=(0, 1))
        assert np.all(np.abs(est - p[s]) < 4 * mcse(ind) + 0.005), (s, est, p[s])


def test_gibbs_batch_states_false_gives_same_draws():
    rng_a, rng_b = np.random.default_rng(4), np.random.default_rng(4)
    logits = np.random.default_rng(5).normal(size=(7, 3))

    def ld(z):
        return logits[np.arange(7), z]

    za, _, _ = run(Gibbs(3), np.zeros((2, 7), int), ld, 10, rng_a)
    zb, _, _ = run(Gibbs(3, batch_states=False), np.zeros((2, 7), int), ld, 10, rng_b)
    np.testing.assert_array_equal(za, zb)


def test_gibbs_rejects_bad_input():
    with pytest.raises(ValueError, match="K must be an int"):
        Gibbs(1)
    with pytest.raises(ValueError, match="0..2"):
        Gibbs(3).init(np.full((2, 4), 5), lambda z: np.zeros(z.shape[:-1]))
    with pytest.raises(ValueError, match="must return shape"):
        Gibbs(3).init(np.zeros((2, 4), int), lambda z: np.zeros(3))


# ----------------------------------------------------------------------------- RWM
def normal_normal(n_units=12, n_obs=3, tau=1.5, s=1.0, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.normal(0, tau, n_units)
    y = u[:, None] + rng.normal(0, s, (n_units, n_obs))
    prec = 1 / tau**2 + n_obs / s**2
    mean = y.sum(1) / s**2 / prec

    def ld(z):  # (..., chains, n_units) -> per-unit terms
        return -0.5 * (((y - z[..., None]) / s) ** 2).sum(-1) - 0.5 * (z / tau) ** 2

    def grad(z):
        return ((y - z[..., None]) / s**2).sum(-1) - z / tau**2

    return ld, grad, mean, 1 / prec


def test_rwm_per_unit_normal_posterior():
    rng = np.random.default_rng(10)
    ld, _, mean, var = normal_normal()
    z, st, acc = run(RWM(), np.zeros((4, mean.size)), ld, 2000, rng, burn=300)
    assert st.scale.shape == (4, mean.size)
    assert_mean(z, mean)
    ratio = z.var(axis=(0, 1)) / var
    assert abs(ratio.mean() - 1) < 4 * ratio.std() / np.sqrt(ratio.size) + 0.02, ratio
    rate = np.mean(acc)
    assert 0.35 < rate < 0.53, rate  # adapted toward 0.44


def test_rwm_joint_mode_when_density_is_total():
    rng = np.random.default_rng(11)
    ld_unit, _, mean, var = normal_normal(n_units=3)

    def ld(z):
        return ld_unit(z).sum(-1)

    z, st, acc = run(RWM(), np.zeros((4, 3)), ld, 3000, rng, burn=300)
    assert st.scale.shape == (4,) and st.logp.shape == (4,)
    assert acc[0].shape == (4,)
    assert_mean(z, mean)
    assert_mean((z - mean) ** 2, var, floor=0.02)
    rate = np.mean(acc)
    assert 0.2 < rate < 0.45, rate  # target 0.335 for a 3-d update


def test_rwm_adaptation_frozen_without_adapt():
    rng = np.random.default_rng(12)
    ld, _, _, _ = normal_normal()
    k = RWM(scale=3.0)
    st = k.init(np.zeros((2, 12)), ld, rng)
    for _ in range(5):
        st, _ = k.step(st, ld, rng, adapt=False)
    np.testing.assert_array_equal(st.scale, 3.0)
    st2, _ = k.step(st, ld, rng, adapt=True)
    assert not np.allclose(st2.scale, 3.0) and st2.n_adapt == 1
    fixed = RWM(scale=3.0, adapt=False)
    st3 = fixed.init(np.zeros((2, 12)), ld, rng)
    st3, _ = fixed.step(st3, ld, rng, adapt=True)
    np.testing.assert_array_equal(st3.scale, 3.0)


def test_rwm_refresh_recomputes_cached_logp():
    ld, _, _, _ = normal_normal()
    k = RWM()
    st = k.init(np.ones((2, 12)), ld, np.random.default_rng(0))

    def ld2(z):
        return ld(z) - 100.0

    st2 = k.refresh(st, ld2)
    np.testing.assert_allclose(st2.logp, ld2(st.z))
    assert not np.allclose(st2.logp, st.logp)


def test_rwm_positive_support_gamma_posterior_with_jacobian():
    """Per-unit rate with a Gamma(a + y, b + 1) posterior, sampled on the log scale."""
    rng = np.random.default_rng(13)
    a, b = 2.0, 1.0
    y = np.array([0, 1, 2, 3, 5, 8, 0, 1])

    def ld(lam):  # density of lambda (no Jacobian): the kernel must add it
        return (a + y - 1) * np.log(lam) - (b + 1) * lam

    z, st, _ = run(RWM(support=C.positive), np.ones((4, y.size)), ld, 3000, rng, burn=300)
    assert np.all(z > 0)
    mean, var = (a + y) / (b + 1), (a + y) / (b + 1) ** 2
    assert_mean(z, mean, floor=0.01)
    ratio = z.var(axis=(0, 1)) / var
    assert abs(ratio.mean() - 1) < 4 * ratio.std() / np.sqrt(ratio.size) + 0.03, ratio
    np.testing.assert_allclose(st.ladj, np.log(st.z))


def test_rwm_interval_support_beta_posterior():
    rng = np.random.default_rng(14)
    al = np.array([1.5, 2.0, 5.0, 0.8])
    be = np.array([3.0, 2.0, 1.5, 0.9])

    def ld(p):
        return (al - 1) * np.log(p) + (be - 1) * np.log1p(-p)

    z, _, _ = run(RWM(support=C.unit_interval), np.full((4, 4), 0.5), ld, 3000, rng, burn=300)
    assert np.all((z > 0) & (z < 1))
    assert_mean(z, al / (al + be), floor=0.005)


def test_rwm_rejects_bad_options():
    with pytest.raises(ValueError, match="scale"):
        RWM(scale=-1.0)
    with pytest.raises(ValueError, match="target_accept"):
        RWM(target_accept=1.5)
    with pytest.raises(TypeError, match="elementwise support"):
        RWM(support=C.simplex(3))
    with pytest.raises(ValueError, match="broadcast"):
        RWM(scale=np.ones(5)).init(np.zeros((2, 3)), lambda z: -0.5 * z**2)
    with pytest.raises(ValueError, match="support"):
        RWM(support=C.positive).init(-np.ones((2, 3)), lambda z: -z)


def test_rwm_on_an_interval_follows_the_constraint_bijection_step_by_step():
    """One non-adapting RWM step against a naive reference: w' = w + s N(0, 1), z = a + (b - a)
    expit(w), log ratio with the elementwise log-Jacobian, acceptance by -log U ~ Exp(1)."""
    lo, hi, s = -1.0, 2.0, 0.8
    c = C.interval(lo, hi)

    def ld(z):
        return 1.5 * np.log(z - lo) + 0.5 * np.log(hi - z) - z

    def ladj(w):
        return np.log(hi - lo) - np.logaddexp(0, -w) - np.logaddexp(0, w)

    z0 = np.linspace(-0.5, 1.5, 12).reshape(3, 4)
    kernel = RWM(s, adapt=False, support=c)
    assert kernel._tr is c and RWM()._tr is C.real  # the constraint's own bijection
    st = kernel.init(z0, ld, np.random.default_rng(0))
    w = np.log((z0 - lo) / (hi - z0))
    np.testing.assert_allclose(st.w, w, rtol=1e-12)
    np.testing.assert_allclose(st.ladj, ladj(w), rtol=1e-12)
    rng, ref = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(5):
        st, info = kernel.step(st, ld, rng)
        prop = w + s * ref.standard_normal(w.shape)
        zp, z = lo + (hi - lo) * expit(prop), lo + (hi - lo) * expit(w)
        log_ratio = ld(zp) - ld(z) + ladj(prop) - ladj(w)
        acc = ref.standard_exponential(w.shape) > -log_ratio
        w = np.where(acc, prop, w)
        np.testing.assert_array_equal(info.accepted, acc)
        np.testing.assert_allclose(st.w, w, rtol=1e-12)
        np.testing.assert_allclose(st.z, lo + (hi - lo) * expit(w), rtol=1e-12)
    assert 0 < np.mean(info.accepted) < 1


def test_mala_on_the_positive_line_uses_the_chain_rule_with_the_jacobian_term():
    """One non-adapting MALA step against a naive reference on w = log z: the drift is the
    gradient of log p(exp w) + w, i.e. grad(z) z + 1."""
    h = 0.4

    def ld(z):
        return 2.0 * np.log(z) - 1.5 * z

    def grad(z):
        return 2.0 / z - 1.5

    def g_w(w):
        return grad(np.exp(w)) * np.exp(w) + 1.0

    kernel = MALA(h, adapt=False, support=C.positive)
    st = kernel.init(np.full((2, 3), 1.3), Target(ld, grad), np.random.default_rng(0))
    w = np.full((2, 3), np.log(1.3))
    np.testing.assert_allclose(st.grad_w, g_w(w), rtol=1e-12)
    rng, ref = np.random.default_rng(2), np.random.default_rng(2)
    for _ in range(5):
        st, info = kernel.step(st, Target(ld, grad), rng)
        eps = ref.standard_normal(w.shape)
        prop = w + 0.5 * h**2 * g_w(w) + h * eps
        back = (w - prop - 0.5 * h**2 * g_w(prop)) / h
        log_ratio = ld(np.exp(prop)) + prop - ld(np.exp(w)) - w - 0.5 * back**2 + 0.5 * eps**2
        acc = ref.standard_exponential(w.shape) > -log_ratio
        w = np.where(acc, prop, w)
        np.testing.assert_array_equal(info.accepted, acc)
        np.testing.assert_allclose(st.w, w, rtol=1e-12)


# ----------------------------------------------------------------------------- MALA
def test_mala_per_unit_normal_posterior():
    rng = np.random.default_rng(20)
    ld, grad, mean, var = normal_normal()
    z, st, acc = run(MALA(), np.zeros((4, mean.size)), Target(ld, grad), 1500, rng, burn=300)
    assert_mean(z, mean)
    ratio = z.var(axis=(0, 1)) / var
    assert abs(ratio.mean() - 1) < 4 * ratio.std() / np.sqrt(ratio.size) + 0.02, ratio
    assert 0.45 < np.mean(acc) < 0.7


def test_mala_positive_support_gamma_posterior():
    rng = np.random.default_rng(21)
    a, b = 2.0, 1.0
    y = np.array([0, 1, 3, 6])

    def ld(lam):
        return (a + y - 1) * np.log(lam) - (b + 1) * lam

    def grad(lam):
        return (a + y - 1) / lam - (b + 1)

    z, _, _ = run(MALA(support=C.positive), np.ones((4, 4)), Target(ld, grad), 2000, rng, burn=300)
    assert_mean(z, (a + y) / (b + 1), floor=0.01)


def test_mala_needs_a_gradient():
    with pytest.raises(TypeError, match="gradient"):
        MALA().init(np.zeros((2, 3)), lambda z: -0.5 * z**2)


# ----------------------------------------------------------------------------- emcee
def test_emcee_kernel_correlated_gaussian():
    rng = np.random.default_rng(30)
    mu = np.array([1.0, -2.0])
    S = np.array([[1.0, 0.8], [0.8, 2.0]])
    P = np.linalg.inv(S)

    def ld(z):
        d = z - mu
        return -0.5 * np.einsum("...i,ij,...j->...", d, P, d)

    k = Emcee()
    st = k.init(np.zeros((8, 2)), ld, rng)  # identical walkers are spread out
    assert not np.allclose(st.coords, 0.0)
    st, draws, logp, acc = k.sample(st, ld, rng, 300)  # burn
    st, draws, logp, acc = k.sample(st, ld, rng, 3000)
    assert draws.shape == (8, 3000, 2) and logp.shape == (8, 3000) and acc.shape == (8,)
    np.testing.assert_allclose(logp[:, :5], ld(draws[:, :5]))
    assert_mean(draws, mu, floor=0.01)
    d = draws - mu
    for i, j in [(0, 0), (0, 1), (1, 1)]:
        prod = d[..., i] * d[..., j]
        assert abs(prod.mean() - S[i, j]) < 4 * mcse(prod) + 0.03, (i, j, prod.mean())


def test_emcee_step_and_refresh():
    rng = np.random.default_rng(31)

    def ld1(z):
        return -0.5 * (z**2).sum(-1)

    def ld2(z):
        return -0.5 * ((z - 3.0) ** 2).sum(-1)

    k = Emcee()
    st = k.init(np.zeros((6, 2)), ld1, rng)
    for _ in range(50):
        st, info = k.step(st, ld1, rng)
    assert info.accepted.shape == (6,)
    np.testing.assert_allclose(st.log_prob, ld1(st.z))
    st2 = k.refresh(st, ld2)
    np.testing.assert_allclose(st2.log_prob, ld2(st.z))
    zs = []
    for _ in range(1500):
        st2, _ = k.step(st2, ld2, rng)
        zs.append(st2.z)
    z = np.stack(zs, axis=1)[:, 300:]
    assert_mean(z, np.array([3.0, 3.0]), floor=0.02)


def test_emcee_positive_support_and_walker_check():
    rng = np.random.default_rng(32)

    def ld(lam):  # Gamma(3, 2) for each of two coordinates
        return (2.0 * np.log(lam) - 2.0 * lam).sum(-1)

    k = Emcee(support=C.positive)
    st = k.init(np.ones((8, 2)), ld, rng)
    st, _, _, _ = k.sample(st, ld, rng, 300)
    st, draws, _, _ = k.sample(st, ld, rng, 3000)
    assert_mean(draws, np.array([1.5, 1.5]), floor=0.02)
    with pytest.raises(ValueError, match="walkers"):
        Emcee().init(np.zeros((3, 2)), lambda z: -(z**2).sum(-1), rng)


def test_kernels_replace_and_repr():
    k = RWM(target_accept=0.3)
    k2 = k.replace(scale=0.1)
    assert k2.scale == 0.1 and k2.target_accept == 0.3
    assert "target_accept=0.3" in repr(k)
    with pytest.raises(TypeError, match="unknown option"):
        k.replace(nope=1)
    assert MALA(step_size=0.2).replace(target_accept=0.5).options()["step_size"] == 0.2


def test_rwm_normal_unit_draws_vs_scipy_quantiles():
    """A distributional check beyond moments: pooled PIT values of the draws are uniform."""
    rng = np.random.default_rng(15)
    ld, _, mean, var = normal_normal(n_units=6)
    z, _, _ = run(RWM(), np.zeros((4, 6)), ld, 2000, rng, burn=300)
    pit = stats.norm.cdf((z - mean) / np.sqrt(var))  # (chain, draw, unit)
    for q in (0.1, 0.5, 0.9):
        ind = (pit < q).astype(float)
        est = ind.mean(axis=(0, 1))
        assert np.all(np.abs(est - q) < 4 * mcse(ind) + 0.01), (q, est)


def test_rwm_per_unit_with_two_dimensional_units():
    """Units of shape (2,) (intercept and slope per group) move jointly, one scale per unit."""
    rng = np.random.default_rng(16)
    n = 6
    mu = rng.normal(size=(n, 2))
    S = np.array([[1.0, 0.5], [0.5, 0.5]])
    P = np.linalg.inv(S)

    def ld(z):  # (..., chains, n, 2) -> (..., chains, n)
        d = z - mu
        return -0.5 * np.einsum("...i,ij,...j->...", d, P, d)

    z, st, acc = run(RWM(), np.zeros((4, n, 2)), ld, 3000, rng, burn=300)
    assert st.scale.shape == (4, n) and acc[0].shape == (4, n)
    assert_mean(z, mu, floor=0.01)
    d = z - mu
    assert_mean(d[..., 0] * d[..., 1], np.full(n, S[0, 1]), floor=0.02)
    assert 0.25 < np.mean(acc) < 0.4  # default target 0.3895 for 2-d updates, after adaptation

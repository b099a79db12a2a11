"""ESS and R-hat of an ensemble sampler: the walkers are coupled, so the per-walker formulas do
not apply; the walker-mean series does.

Oracle: walkers that share a common AR(1) component (what coupling does to the walkers), for
which the variance of the grand mean, hence the true ESS, is known in closed form; and the
empirical variance of the grand mean over independent repeats.
"""

import numpy as np
import pytest

import mcem
from mcem import constraints as C
from mcem import diagnostics as D
from mcem.exceptions import MonteCarloWarning

PHI, S, SIGMA = 0.9, 0.3, 1.0  # common AR(1): coefficient, innovation sd; walker noise sd


def coupled_walkers(n_rep, walkers, n, rng, burn=200):
    """x[w, t, r] = a[t, r] + e[w, t, r]: a stationary AR(1) shared by the walkers plus iid noise.

    Returns the traces laid out (walker, draw, repeat) and the true ESS of the grand mean,
    Var(x) / Var(grand mean), with Var(grand mean) = (long-run var of a + SIGMA^2 / walkers) / n.
    """
    e = S * rng.standard_normal((n + burn, n_rep))
    a = np.empty_like(e)
    a[0] = e[0] / np.sqrt(1 - PHI**2)
    for t in range(1, n + burn):
        a[t] = PHI * a[t - 1] + e[t]
    x = a[burn:][None] + SIGMA * rng.standard_normal((walkers, n, n_rep))
    var_x = S**2 / (1 - PHI**2) + SIGMA**2
    true_ess = var_x * n / (S**2 / (1 - PHI) ** 2 + SIGMA**2 / walkers)
    return x, true_ess


def test_per_walker_ess_overstates_coupled_walkers_and_the_ensemble_ess_does_not():
    rng = np.random.default_rng(0)
    x, true_ess = coupled_walkers(100, 8, 2000, rng)
    # the closed form agrees with the spread of the grand mean over the repeats
    var_x = S**2 / (1 - PHI**2) + SIGMA**2
    emp = var_x / x.mean(axis=(0, 1)).var(ddof=1)
    assert emp == pytest.approx(true_ess, rel=4 * np.sqrt(2 / 99))
    old = D.ess(x)  # walkers as independent chains: one value per repeat
    new = D.ensemble_ess(x)
    assert old.shape == new.shape == (100,)
    assert np.mean(old) > 4 * true_ess  # overstated several-fold
    assert abs(np.mean(new) - true_ess) < 4 * np.std(new) / np.sqrt(new.size) + 0.05 * true_ess, (
        np.mean(new), true_ess)


def test_ensemble_ess_of_independent_walkers_is_the_usual_one():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 500, 50))
    new = D.ensemble_ess(x)
    assert np.mean(new) == pytest.approx(4000, rel=4 * np.std(new) / np.sqrt(50) / 4000 + 0.02)
    assert isinstance(D.ensemble_ess(x[..., 0]), float)
    assert np.isnan(D.ensemble_ess(x[:, :3, 0]))


def test_ensemble_rhat_flags_a_drifting_ensemble_the_walkers_agree_on():
    rng = np.random.default_rng(2)
    n = 400
    drift = np.linspace(0.0, 3.0, n)  # the whole ensemble moves together
    x = drift[None] + 0.3 * rng.standard_normal((8, n))
    assert D.ensemble_rhat(x) > 1.1
    still, _ = coupled_walkers(1, 8, 4000, rng)
    assert D.ensemble_rhat(still[..., 0]) < 1.05
    assert np.isnan(D.ensemble_rhat(x[:, :7]))
    # the halves of the walker-mean series as two chains, each split again by rhat
    m = x.mean(0)
    assert D.ensemble_rhat(x) == pytest.approx(D.rhat(m.reshape(2, n // 2)))


def gaussian_latent(d=2):
    def log_joint(theta, z, data):
        return -0.5 * np.sum((z["x"] - theta["mu"]) ** 2, axis=-1)

    return mcem.Model(log_joint, params={"mu": C.real(shape=d)}, latents={"x": mcem.Continuous(shape=d)})


def test_the_emcee_estep_reports_walker_mean_diagnostics():
    model = gaussian_latent()
    theta = {"mu": np.zeros(2)}
    es = mcem.EStep(model, "emcee", n_chains=8, burn=300)
    assert es.is_ensemble
    res = es.run(theta, es.init(theta, 0), 2000, 1)
    d = res.diagnostics
    assert d["diagnostics_basis"] == "walker mean"
    assert d["ess_loglik"] == pytest.approx(D.ensemble_ess(res.loglik_trace))
    assert d["rhat_loglik"] == pytest.approx(D.ensemble_rhat(res.loglik_trace))
    assert d["rhat_loglik"] < 1.05 and not d["high_rhat"]
    # a naive reference on the walker-mean series: batch means with batches of 100 draws
    tr = res.loglik_trace
    m = tr.mean(axis=0)
    bm = m.reshape(20, 100).mean(axis=1)
    ess_ref = tr.var(ddof=1) / (bm.var(ddof=1) / 20)
    # both estimates are noisy (20 batches: about 30% relative error for the reference)
    assert 0.5 * ess_ref < d["ess_loglik"] < 2.0 * ess_ref, (d["ess_loglik"], ess_ref)
    rwm = mcem.EStep(model, "rwm", n_chains=8, burn=300, warn=False)
    assert not rwm.is_ensemble
    assert rwm.run(theta, rwm.init(theta, 0), 50, 1).diagnostics["diagnostics_basis"] == "chains"


def test_an_emcee_ensemble_that_still_drifts_is_flagged():
    """Walkers started in a tight ball far from the mass, without burn-in: the ensemble moves
    as a whole, and the walker-mean R-hat says so with a keyed warning."""
    model = mcem.Model(gaussian_latent().log_joint_fn, params={"mu": C.real(shape=2)},
                       latents={"x": mcem.Continuous(shape=2, init=40.0)})
    theta = {"mu": np.zeros(2)}
    es = mcem.EStep(model, "emcee", n_chains=8, burn=0)
    with pytest.warns(MonteCarloWarning, match="walker-mean series") as rec:
        res = es.run(theta, es.init(theta, 0), 60, 1)
    (w,) = [r.message for r in rec if getattr(r.message, "key", None) == "high_rhat"]
    assert w.value == pytest.approx(res.diagnostics["rhat_loglik"]) and w.value > 1.05
    assert w.worse == "high" and "the ensemble still drifts" in str(w)

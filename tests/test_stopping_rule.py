"""The stopping rule's measures against oracles, and the rule's behaviour at its limits.

The model: z_i ~ N(mu, tau^2), x_i | z_i ~ N(z_i, 1). Its marginal is x_i ~ N(mu, 1 + tau^2), so
the MLE, its standard errors, the posterior (exact draws) and the EM map are all known.
"""

import numpy as np
import pytest

import mcem
from mcem import constraints as C
from mcem.algorithms.rule import SAFETY, target_size
from mcem.inference.precision import newton_precision, precision

X = np.random.default_rng(3).normal(1.0, 1.15, size=40)  # tau_hat ~ 0.6: EM is slow (rate ~ 0.75)
N = X.size
S2 = X.var()  # 1 + tau_hat^2
MLE = {"mu": X.mean(), "tau": np.sqrt(S2 - 1.0)}
SE = {"mu": np.sqrt(S2 / N), "tau": np.sqrt(2 * S2**2 / N) / (2 * MLE["tau"])}  # delta method from sigma^2


def model():
    def lj(theta, z, data):
        return -0.5 * (data - z["z"]) ** 2 - 0.5 * ((z["z"] - theta["mu"]) / theta["tau"]) ** 2 - np.log(theta["tau"])

    return mcem.Model(lj, params={"mu": C.real, "tau": C.positive},
                      latents={"z": mcem.Continuous(shape=N, unit=True)}, data=X, init={"mu": 0.0, "tau": 1.0},
                      sufficient_stats=lambda z, d: {"m1": z["z"].mean(0), "m2": (z["z"] ** 2).mean(0)},
                      mstep=lambda s, d: {"mu": s["m1"].mean(), "tau": np.sqrt(max(s["m2"].mean() - s["m1"].mean() ** 2, 0))})


def exact_draws(theta, n_chains, n_draws, rng):
    w = 1 / (1 + 1 / theta["tau"] ** 2)
    mean = (X + theta["mu"] / theta["tau"] ** 2) * w
    return {"z": mean + np.sqrt(w) * rng.standard_normal((n_chains, n_draws, N))}


def em_map(theta, draws):
    z = draws["z"].reshape(-1, N)
    m1, m2 = z.mean(0), (z**2).mean(0)
    return {"mu": m1.mean(), "tau": np.sqrt(m2.mean() - m1.mean() ** 2)}


def test_louis_standard_errors_match_the_closed_form():
    """The score covariance is summed over the 40 independent units: even 400 draws give the
    standard errors within 7% (the covariance of the total score would be off by about 20%)."""
    m = model()
    for seed in range(5):
        p = precision(m, MLE, exact_draws(MLE, 4, 100, np.random.default_rng(seed)))
        assert p.positive_definite
        np.testing.assert_allclose(p.se, [SE["mu"], SE["tau"]], rtol=0.07)


def test_monte_carlo_error_is_the_spread_of_fixed_size_iterates_at_the_mle():
    """Oracle: MCEM with m exact draws per iteration, run for 3000 iterations from the MLE; the
    iterates' standard deviation (about 2% Monte Carlo error) is what one iterate's error is."""
    m, rng, n = model(), np.random.default_rng(1), 256
    theta, path = dict(MLE), []
    for _ in range(3000):
        theta = em_map(theta, exact_draws(theta, 1, n, rng))
        path.append([theta["mu"], theta["tau"]])
    spread = np.std(path, axis=0)
    pred = np.mean([precision(m, MLE, exact_draws(MLE, 4, n // 4, np.random.default_rng(k))).mc_sd
                    for k in range(40)], axis=0)  # the measure from one iteration's draws, averaged
    np.testing.assert_allclose(pred, spread, rtol=0.15)
    # one M step's error alone (Booth & Hobert) is smaller where EM is slow: the rate matters
    assert precision(m, MLE, exact_draws(MLE, 4, 1000, rng)).rate > 0.6


def test_distance_to_go_is_the_em_extrapolation():
    """From mu one standard error below the MLE, one EM step with many draws: the distance still
    to go (in SEs) matches the distance of the new iterate to the MLE."""
    m, rng = model(), np.random.default_rng(2)
    start = {"mu": MLE["mu"] - SE["mu"], "tau": MLE["tau"]}
    draws = exact_draws(start, 4, 5000, rng)
    new = em_map(start, draws)
    step = m.to_unconstrained(new) - m.to_unconstrained(start)
    p = precision(m, new, draws, step=step)
    truth = [(MLE["mu"] - new["mu"]) / SE["mu"], (MLE["tau"] - new["tau"]) / SE["tau"]]
    assert truth[0] > 0.2  # EM still has a good way to go
    np.testing.assert_allclose(p.delta, truth, atol=0.05 + 3 * p.delta_sd.max())


def test_newton_distance_by_fishers_identity():
    m, rng = model(), np.random.default_rng(4)
    start = {"mu": MLE["mu"] + 0.5 * SE["mu"], "tau": MLE["tau"] * 1.05}
    p = newton_precision(m, start, exact_draws(start, 4, 5000, rng))
    truth = [(MLE["mu"] - start["mu"]) / SE["mu"], (MLE["tau"] - start["tau"]) / SE["tau"]]
    # one Newton step on a nearly quadratic log-likelihood: first-order error plus Monte Carlo
    np.testing.assert_allclose(p.delta, truth, atol=0.1 + 3 * p.delta_sd.max())
    at_mle = newton_precision(m, MLE, exact_draws(MLE, 4, 5000, rng))
    assert np.all(np.abs(at_mle.delta) < 3 * at_mle.delta_sd + 1e-3)


def test_target_size_follows_the_square_root_law():
    assert target_size(100, 0.2, 0.1) == int(np.ceil(100 * 4 * SAFETY))
    assert target_size(100, 0.05, 0.1) == 100  # never shrinks
    assert target_size(100, np.inf, 0.1) is None and target_size(100, 0.2, 0.0) is None


def test_mcem_default_stops_by_its_rule_near_the_mle_without_reaching_m_max():
    res = mcem.fit(model(), method="mcem", rng=5, sampler="rwm")
    assert res.converged and res.stopped_by == "tol", res.message
    assert res.history["m"].max() < res.settings["m_max"] / 4
    assert res["mc_ratio"] <= 0.1
    for k in ("mu", "tau"):
        assert abs(float(res.params[k]) - MLE[k]) < 0.3 * SE[k], k
    se = res.standard_errors()
    assert res["se_mc_ratio"] < 0.05  # the standard errors' own Monte Carlo error, reported
    for k in ("mu", "tau"):
        assert abs(float(se[k]) / SE[k] - 1) < 0.1, k


def test_a_target_beyond_m_max_stops_with_a_warning_not_forever():
    with pytest.warns(mcem.MonteCarloWarning, match="still .* standard errors .*raise m_max or tol"):
        res = mcem.fit(model(), method="mcem", rng=6, sampler="rwm", tol=0.002, m_max=400, max_iter=200)
    assert res.stopped_by == "m_max" and not res.converged
    assert res.n_iter < 200 and res.history["m"].max() == 400


def test_method_auto_is_exact_em_where_the_model_has_it_and_mcem_otherwise():
    from mcem.models.linkage import genetic_linkage

    m = genetic_linkage()
    assert mcem.fit(m).method == "em"
    assert mcem.fit(m, rng=1, n_chains=2).method == "mcem"  # a Monte Carlo option asks for MCEM
    assert mcem.fit(model(), rng=1).method == "mcem"  # no exact E step

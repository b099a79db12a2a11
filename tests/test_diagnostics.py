"""Diagnostics on plain arrays: agreement with arviz-stats and with analytic AR(1) values."""

import numpy as np
import pytest
from arviz_stats.base import array_stats
from hypothesis import given, settings
from hypothesis import strategies as st

from mcem import diagnostics as D
from mcem import mstep


def ar1(phi, shape, n, rng, burn=200):
    """Stationary AR(1) chains with unit innovation variance: (chain, draw, *rest)."""
    e = rng.standard_normal((n + burn,) + shape)
    x = np.empty_like(e)
    x[0] = e[0] / np.sqrt(1 - phi**2)
    for t in range(1, n + burn):
        x[t] = phi * x[t - 1] + e[t]
    return np.moveaxis(x[burn:], 0, 1)


def test_wrappers_match_arviz_stats():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 200))
    assert D.ess(x) == pytest.approx(float(array_stats.ess(x, chain_axis=0, draw_axis=1, method="bulk")))
    assert D.rhat(x) == pytest.approx(float(array_stats.rhat(x, chain_axis=0, draw_axis=1)))
    assert D.mcse_mean(x) == pytest.approx(float(array_stats.mcse(x, chain_axis=0, draw_axis=1)))
    assert isinstance(D.ess(x), float)
    y = rng.normal(size=(3, 100, 2, 5))
    assert D.ess(y).shape == (2, 5) and D.rhat(y).shape == (2, 5) and D.mcse_mean(y).shape == (2, 5)
    assert D.batch_means_se(y).shape == (2, 5)


def test_ess_and_se_of_ar1_chains():
    rng = np.random.default_rng(1)
    phi, n, chains = 0.7, 4000, 4
    x = ar1(phi, (chains,), n, rng)
    N = chains * n
    ess_true = N * (1 - phi) / (1 + phi)
    assert D.ess(x, method="mean") == pytest.approx(ess_true, rel=0.2)
    se_true = np.sqrt(1 / (1 - phi**2) * (1 + phi) / (1 - phi) / N)
    assert D.mcse_mean(x) == pytest.approx(se_true, rel=0.2)
    assert D.batch_means_se(x) == pytest.approx(se_true, rel=0.2)
    assert D.batch_means_se(x, n_batches=40) == pytest.approx(se_true, rel=0.2)


def test_iid_draws():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 1000))
    assert D.ess(x) == pytest.approx(4000, rel=0.15)
    assert D.rhat(x) < 1.01
    assert D.mcse_mean(x) == pytest.approx(1 / np.sqrt(4000), rel=0.1)
    assert D.batch_means_se(x[0]) == pytest.approx(1 / np.sqrt(1000), rel=0.3)  # 1-D: one chain


def test_rhat_flags_disagreeing_chains_and_needs_two_chains():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 300)) + np.array([0.0, 0.0, 0.0, 1.0])[:, None]
    assert D.rhat(x) > 1.05
    assert np.isnan(D.rhat(x[:1]))
    assert np.isnan(D.ess(x[:, :3]))


def test_batch_means_checks_its_arguments():
    x = np.zeros((2, 10))
    with pytest.raises(ValueError, match="n_batches"):
        D.batch_means_se(x, n_batches=1)
    with pytest.raises(ValueError, match="at least"):
        D.batch_means_se(x, n_batches=20)
    with pytest.raises(ValueError, match="chain, draw"):
        D.ess(np.float64(1.0))


@settings(max_examples=30, deadline=None)
@given(
    a=st.floats(0.1, 10.0),
    b=st.floats(-100.0, 100.0),
    seed=st.integers(0, 2**16),
    n_batches=st.integers(2, 12),
)
def test_batch_means_se_is_location_scale_equivariant(a, b, seed, n_batches):
    x = np.random.default_rng(seed).normal(size=(3, 60))
    se = D.batch_means_se(x, n_batches=n_batches)
    assert se >= 0
    assert D.batch_means_se(a * x + b, n_batches=n_batches) == pytest.approx(a * se, rel=1e-6, abs=1e-9)


def test_acceptance_summary():
    per_chain = np.array([0.2, 0.4, 0.3])
    s = D.acceptance_summary(per_chain)
    assert s["mean"] == pytest.approx(0.3) and s["min"] == pytest.approx(0.2)
    per_unit = np.array([[0.5, 0.0, 0.4], [0.3, 0.2, 0.4]])  # (chains, units)
    s = D.acceptance_summary(per_unit)
    assert s["mean"] == pytest.approx(0.3) and s["min"] == pytest.approx(0.1)
    assert np.isnan(D.acceptance_summary([])["mean"])


def naive_batch_means_cov(x, n_batches):
    """Reference: loops over chains and batches, the pooled within-chain covariance of batch
    means times the batch length, over the number of draws used."""
    n_chain, n_draw, p = x.shape
    b = n_draw // n_batches
    pooled = np.zeros((p, p))
    for c in range(n_chain):
        used = x[c, n_draw - n_batches * b:]
        means = np.array([used[k * b:(k + 1) * b].mean(axis=0) for k in range(n_batches)])
        pooled += b * np.cov(means, rowvar=False).reshape(p, p)
    return pooled / n_chain / (n_chain * n_batches * b)


def test_batch_means_cov_matches_a_naive_reference_and_batch_means_se():
    rng = np.random.default_rng(5)
    z = ar1(0.6, (3,), 403, rng)  # (chain, draw): an odd length drops leading draws
    x = np.stack([z, 0.5 * z + rng.normal(size=z.shape), rng.normal(size=z.shape)], axis=-1)
    for n_batches in (None, 7):
        cov = D.batch_means_cov(x, n_batches=n_batches)
        k = n_batches or int(np.sqrt(403))
        np.testing.assert_allclose(cov, naive_batch_means_cov(x, k), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.sqrt(np.diag(cov)), D.batch_means_se(x, n_batches=n_batches), rtol=1e-12)
    with pytest.raises(ValueError, match=r"batch_means_cov: x must have shape \(chain, draw, p\)"):
        D.batch_means_cov(z)
    with pytest.raises(ValueError, match="at least"):
        D.batch_means_cov(x[:, :5], n_batches=6)


@pytest.mark.parametrize("n_draw", [2, 5, 10, 20, 40, 200])
def test_mcse_of_mean_is_valid_at_every_chain_length(n_draw):
    """Against the true sd of the grand mean of 4 stationary AR(1) chains (phi = 0.8, 4000
    replications): the median estimate is within 20% and never the independent-draws formula's
    underestimate (which is about 0.4-0.6 of the truth here)."""
    rng = np.random.default_rng(n_draw)
    reps = ar1(0.8, (4000, 4), n_draw, rng).transpose(0, 2, 1)  # (rep, chain, draw)
    truth = reps.mean(axis=(1, 2)).std()
    est = np.array([D.mcse_of_mean(x) for x in reps[:600]])
    iid = np.array([x.std(ddof=1) / np.sqrt(x.size) for x in reps[:600]])
    assert 0.8 < np.median(est) / truth < 1.2
    assert np.median(iid) / truth < 0.7  # the formula short chains used to get
    assert np.all(est >= iid * (1 - 1e-12))  # never below the independent-draws value


def test_cov_of_mean_batches_whole_short_chains_and_keeps_correlations():
    rng = np.random.default_rng(6)
    s = ar1(0.8, (4,), 10, rng)[..., None] * np.array([1.0, -2.0])  # (chain, draw, 2), perfectly correlated
    cov = D.cov_of_mean(s)
    # ten draws per chain: each chain is one batch; the long-run variance is 10 var(chain means)
    means = s.mean(axis=1)
    between = 10 * np.cov(means, rowvar=False) / 40
    iid = np.cov(s.reshape(-1, 2), rowvar=False) / 40
    expect = between if between[0, 0] >= iid[0, 0] else iid
    np.testing.assert_allclose(cov, expect, rtol=1e-10)
    assert cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]) == pytest.approx(-1.0)
    assert D.mcse_of_mean(s[..., 0]) == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-12)
    long = ar1(0.8, (4,), 4096, rng)[..., None]
    # 64 batches of 64 per chain, pooled around the grand mean
    bm = long.reshape(4, 64, 64).mean(axis=2).ravel()
    assert D.mcse_of_mean(long[..., 0]) == pytest.approx(np.sqrt(64 * bm.var(ddof=1) / long.size), rel=1e-10)
    assert D.mcse_of_mean(np.ones(1)) == np.inf
    with pytest.raises(ValueError, match=r"cov_of_mean: s must have shape \(chain, draw, p\)"):
        D.cov_of_mean(s[..., 0])


def test_the_m_step_uses_the_diagnostics_batch_means():
    assert mstep.mcse_of_mean is D.mcse_of_mean
    assert mstep._mean_covariance is D.cov_of_mean

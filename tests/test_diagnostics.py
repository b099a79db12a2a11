"""Diagnostics on plain arrays: agreement with arviz-stats and with analytic AR(1) values."""

import numpy as np
import pytest
from arviz_stats.base import array_stats
from hypothesis import given, settings
from hypothesis import strategies as st

from mcem import diagnostics as D


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

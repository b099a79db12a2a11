"""The examples run and reproduce their oracles."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gmm_demo_prints_table_and_writes_png(tmp_path, capsys):
    demo = load("gmm_mcem_vs_em")
    out = tmp_path / "demo.png"
    comparison, fig = demo.run(seed=1, out=str(out))
    results = comparison.results
    text = capsys.readouterr().out
    assert "loglik" in text and "mcem" in text and "saem" in text and "max_abs_distance_se" in text
    assert out.exists() and out.stat().st_size > 10_000
    # the Old Faithful two-component full-covariance MLE (log-likelihood -1130.264)
    assert results["em"]["loglik"] == pytest.approx(-1130.2640, abs=1e-3)
    assert results["em"].converged
    np.testing.assert_allclose(np.sort(results["em"].params["weights"]), [0.3559, 0.6441], atol=1e-3)
    mixture, distance = fig.axes[:2]  # the data with the fitted ellipses, then the convergence panels
    assert mixture.get_xlabel() == "eruption (minutes)"
    assert len(mixture.patches) == 3 * 2 * 2  # a 1 and a 2 SD ellipse per component per method
    assert distance.get_title() == "distance from em" and distance.get_xlabel().startswith("iteration")
    labels = [ln.get_label() for ln in distance.get_lines() if not ln.get_label().startswith("_")]
    assert labels[:3] == ["em", "mcem", "saem"]
    # the Monte Carlo fits land on the exact-EM optimum: far inside one standard error
    for name in ("mcem", "saem"):
        assert results[name]["loglik"] == pytest.approx(results["em"]["loglik"], abs=0.05)
        for k, d in comparison.distance_se[name].items():
            assert np.nanmax(np.abs(d)) < 0.5, (name, k)
        assert results[name].total_draws > 0


@pytest.mark.parametrize("name", [pytest.param("factor_analysis", marks=pytest.mark.slow), "missing_normal"])
def test_gaussian_latent_examples_reach_exact_em(name, tmp_path, capsys):
    """Reduced size; both Monte Carlo fits land within a fraction of a standard error of EM."""
    ex = load(name)
    sim = ex.simulate(N=150, seed=5)
    X = sim[1] if isinstance(sim, tuple) else sim
    out = ex.run(seed=2, out=str(tmp_path / "ex.png"), X=X)
    assert (tmp_path / "ex.png").stat().st_size > 5_000
    assert "em" in capsys.readouterr().out
    cmp = out["comparison"]
    em_ll = cmp.results["em"]["loglik"]
    for m, d in cmp.distance_se.items():
        assert np.nanmax([np.nanmax(np.abs(v)) for v in d.values()]) < 1.0, m
        assert cmp.results[m]["loglik"] == pytest.approx(em_ll, abs=0.1)


def test_sharded_glmm_example_agrees_bit_for_bit(tmp_path, capsys):
    """Reduced size: the E step on a 2-process pool gives the serial fit's estimates exactly,
    and after 8 iterations MCEM is near the quadrature MLE (within 3 of its standard errors)."""
    ex = load("glmm_sharded")
    out = ex.run(n_groups=300, workers=2, iterations=8, seed=1, out=str(tmp_path / "sharded.png"))
    text = capsys.readouterr().out
    assert (tmp_path / "sharded.png").stat().st_size > 5_000
    assert "agree to the last bit: True" in text and out["same"]
    oracle, res = out["oracle"], out["sharded"]
    assert np.all(np.abs(res.params["beta"] - oracle.params["beta"]) < 3 * oracle.se["beta"])
    assert abs(float(res.params["sigma"]) - oracle.params["sigma"]) < 3 * oracle.se["sigma"]


def test_hmm_example_reaches_baum_welch(tmp_path, capsys):
    """MCEM and SAEM on the model-language HMM (rng only) land within 0.1 standard errors of
    Baum-Welch, and the forward-algorithm log-likelihood agrees."""
    ex = load("hmm")
    out = ex.run(seed=1, out=str(tmp_path / "hmm.png"))
    assert (tmp_path / "hmm.png").stat().st_size > 10_000
    assert "Baum-Welch" in capsys.readouterr().out
    cmp = out["comparison"]
    assert cmp.results["em"].converged
    for m in ("mcem", "saem"):
        assert cmp.results[m].converged, m
        assert np.nanmax([np.nanmax(np.abs(v)) for v in cmp.distance_se[m].values()]) < 0.1, m
        assert cmp.results[m]["loglik"] == pytest.approx(cmp.results["em"]["loglik"], abs=0.05)


@pytest.mark.slow
def test_local_level_example_on_the_nile(tmp_path, capsys):
    """Kalman smoother EM reaches the direct MLE; MCEM and SAEM with rng only land within 0.2 of
    its standard errors. Not within 0.1: the Nile's EM converges at rate 0.976, beyond the
    largest rate the stopping rule estimates from draws (0.95), and its distance test is weak in
    such slow directions, so runs stop at 0.05-0.17 standard errors (SAEM may reach max_iter)."""
    ex = load("local_level")
    out = ex.run(seed=1, out=str(tmp_path / "ll.png"))
    assert (tmp_path / "ll.png").stat().st_size > 10_000
    cmp = out["comparison"]
    direct, direct_ll = out["direct"]
    em = cmp.results["em"]
    for k, v in direct.items():
        assert float(em.params[k]) == pytest.approx(float(v), rel=1e-4), k
    assert em["loglik"] == pytest.approx(direct_ll, abs=1e-6)
    worst = {m: np.nanmax([np.nanmax(np.abs(v)) for v in cmp.distance_se[m].values()]) for m in ("mcem", "saem")}
    assert worst["mcem"] < 0.2 and worst["saem"] < 0.2, worst


@pytest.mark.slow
def test_stochastic_volatility_example_reaches_the_grid_mle(tmp_path, capsys):
    """Reduced size (T = 150, SAEM only): within 0.1 of the grid maximum's standard errors."""
    ex = load("stochastic_volatility")
    out = ex.run(seed=1, out=str(tmp_path / "sv.png"), T=150, methods=("saem",))
    assert (tmp_path / "sv.png").stat().st_size > 10_000
    assert out["results"]["saem"].converged
    assert max(abs(d) for d in out["distance"]["saem"].values()) < 0.1, out["distance"]


@pytest.mark.slow
def test_vbem_bound_example(tmp_path, capsys):
    """The bound's figure of the mixture, and VB-EM's bias on the GLMM's variance component next
    to MCEM within 0.2 standard errors of the quadrature MLE; the bound's gap is the reported KL."""
    ex = load("vbem_bound")
    out = ex.run(seed=0, out=str(tmp_path / "vb"), methods=("mcem", "vbem"))
    assert (tmp_path / "vb_bound.png").stat().st_size > 20_000
    assert (tmp_path / "vb_compare.png").stat().st_size > 20_000
    fits = out["mixture"]
    for k in fits["em"].params:  # VB-EM with the exact categorical q is exact EM
        assert np.max(np.abs(fits["em"].params[k] - fits["vbem"].params[k])) < 1e-5
    dist = out["comparison"].distance_se
    assert max(np.max(np.abs(v)) for v in dist["mcem"].values()) < 0.2, dist["mcem"]
    assert dist["vbem"]["sigma"] < -0.25  # the bias, against a Monte Carlo error below 0.1 SE
    assert np.max(np.abs(dist["vbem"]["beta"])) < 0.15
    cmp = out["comparison"]
    assert cmp.reference == "quadrature" and "elbo" in cmp.table()
    assert cmp.row("vbem")["loglik"] > cmp.row("vbem")["elbo"]  # importance-sampled log p above the bound
    assert "distance from quadrature" in [ax.get_title() for ax in out["figure"].axes if ax.get_visible()]
    vb = cmp.results["vbem"]
    gap = out["loglik_at_vb"] - vb.elbo["value"]
    assert abs(gap - vb.kl["value"]) < 4 * vb.loglik_is["mcse"] + 1e-3
    assert "VB-EM: bound" in capsys.readouterr().out

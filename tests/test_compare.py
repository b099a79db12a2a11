"""compare(): the same start for every method, a table, distances in standard errors, a plot."""

import warnings

import numpy as np
import pytest
from test_algorithms import linkage_model

import mcem

OPTS = {"mcem": {"sampler": "gibbs"}, "saem": {"sampler": "gibbs", "max_iter": 150}}


@pytest.fixture(scope="module")
def faithful_comparison():
    X = mcem.datasets.load_faithful()
    model = mcem.models.gaussian_mixture(X, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, mcem.compare(model, rng=1, options=OPTS)


def test_compare_runs_every_method_from_the_same_start(faithful_comparison):
    model, c = faithful_comparison
    assert list(c.results) == ["em", "mcem", "saem"]
    starts = [r.history[0]["params"] for r in c.results.values()]
    for s in starts[1:]:
        for k in s:
            np.testing.assert_array_equal(s[k], starts[0][k])
    # distances of the Monte Carlo estimates from exact EM, in units of their standard errors
    for m in ("mcem", "saem"):
        d = c.distance_se[m]
        se = c.standard_errors[m]
        np.testing.assert_allclose(d["means"], (c.results[m].params["means"] - c.results["em"].params["means"]) / se["means"])
        assert np.nanmax(np.abs(d["means"])) < 0.5  # Monte Carlo error far below statistical error
    rows = {r["method"]: r for r in c.rows}
    assert rows["em"]["total_draws"] == 0 and rows["mcem"]["total_draws"] > 0
    assert rows["mcem"]["loglik"] == pytest.approx(rows["em"]["loglik"], abs=0.05)
    text = c.table()
    for word in ("em", "mcem", "saem", "weights[0]", "loglik", "total_draws", "max_abs_distance_se"):
        assert word in text


def test_compare_plot_overlays_every_method(faithful_comparison, tmp_path):
    _, c = faithful_comparison
    fig = c.plot(params=["weights"])
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.get_lines()] == ["em", "mcem", "saem"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), c.results["mcem"].history.params("weights")[:, 0])
    assert fig.axes[len(["w0", "w1"])].get_title() == "log-likelihood"
    fig.savefig(tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 5000


def test_compare_skips_em_without_exact_steps_and_keeps_streams_independent():
    m = linkage_model()
    bare = mcem.Model(m.log_joint_fn, params=m.params, latents=m.latents, init={"t": 0.3},
                      sufficient_stats=m.sufficient_stats_fn, mstep=m.mstep_fn)
    with pytest.warns(UserWarning, match="has no exact EM; skipping method 'em'"):
        c = mcem.compare(bare, methods=("em", "mcem"), rng=3, standard_errors=False,
                         options={"mcem": {"tol": 5e-3}})
    assert list(c.results) == ["mcem"] and c.distance_se == {}
    quick = {"mcem": {"tol": 5e-3}}
    a = mcem.compare(bare, methods=("mcem",), rng=5, standard_errors=False, options=quick)
    b = mcem.compare(bare, methods=("mcem", "saem"), rng=5, standard_errors=False, options=quick)
    np.testing.assert_array_equal(a.results["mcem"].params["t"], b.results["mcem"].params["t"])


def test_compare_bad_input():
    model = linkage_model()
    with pytest.raises(ValueError, match=r"methods must be among .* got unknown \['newton'\]"):
        mcem.compare(model, methods=("em", "newton"))
    with pytest.raises(ValueError, match="methods must name at least one method"):
        mcem.compare(model, methods=())
    with pytest.raises(ValueError, match=r"options has entries for methods not being compared: \['saem'\]"):
        mcem.compare(model, methods=("mcem",), options={"saem": {}})
    with pytest.raises(TypeError, match="model must be an mcem.Model"):
        mcem.compare("model")
    with pytest.raises(ValueError, match=r"theta0\['t'\] must lie in interval"):
        mcem.compare(model, theta0={"t": 2.0})

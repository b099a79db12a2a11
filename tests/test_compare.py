"""compare(): the same start for every method, a table, distances in standard errors, a plot."""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
from test_algorithms import linkage_model

import mcem
from mcem.compare import compare_to_reference, mark_reference
from mcem.models import random_intercept as ri

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
    assert list(c.results) == ["em", "mcem", "saem", "gem", "vbem"]
    starts = [r.history[0]["params"] for r in c.results.values()]
    for s in starts[1:]:
        for k in s:
            np.testing.assert_array_equal(s[k], starts[0][k])
    # distances of the Monte Carlo estimates from exact EM, in units of their standard errors
    for m in ("mcem", "saem"):
        d = c.distance_se[m]
        se = c.standard_errors[m]
        np.testing.assert_allclose(d["means"], (c.results[m].params["means"] - c.results["em"].params["means"]) / c.reference_se["means"])
        assert np.nanmax(np.abs(d["means"])) < 0.5  # Monte Carlo error far below statistical error
    rows = {r["method"]: r for r in c.rows}
    assert rows["em"]["total_draws"] == 0 and rows["mcem"]["total_draws"] > 0
    assert rows["mcem"]["loglik"] == pytest.approx(rows["em"]["loglik"], abs=0.05)
    text = c.table()
    for word in ("em", "mcem", "saem", "weights[0]", "loglik", "total_draws", "max_abs_distance_se"):
        assert word in text


def test_compare_plot_draws_every_method(faithful_comparison, tmp_path):
    _, c = faithful_comparison
    fig = c.plot(params=["weights"])
    ax = fig.axes[0]
    assert ax.get_title() == "distance from em" and ax.get_xlabel().startswith("iteration")
    labelled = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in labelled][:5] == ["em", "mcem", "saem", "gem", "vbem"]
    d = np.abs(c.results["mcem"].history.params("weights") - c.results["em"].params["weights"])
    d = np.max(d / c.reference_se["weights"], axis=1)  # the distance over the weights, in exact EM's SEs
    np.testing.assert_allclose(labelled[1].get_ydata(), d[d > 0])
    assert fig.axes[1].get_title() == "log-likelihood below its maximum"
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


# --------------------------------------------------------------------------- against a reference
@pytest.fixture(scope="module")
def pumps_fit():
    """An MCEM fit of the pumps model without its exact log-likelihood (so: Louis SEs)."""
    m = mcem.models.pump_failures()
    bare = mcem.Model(m.log_joint_fn, params=m.params, latents=m.latents, data=m.data, init=m.init,
                      sufficient_stats=m.sufficient_stats_fn, mstep=m.mstep_fn,
                      posterior_sampler=m.posterior_sampler_fn, grad_params=m.grad_params_fn, name="pumps")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mcem.fit(bare, method="mcem", rng=3)
    return bare, res, mcem.models.pumps_mle()


def test_compare_to_reference_rows_against_a_naive_computation(pumps_fit):
    model, res, mle = pumps_fit
    c = compare_to_reference(res, mle["params"], mle["se"], derived={"log alpha": ("alpha", np.log, lambda a: 1 / a)},
                             name="MLE", method="BFGS", seconds=0.25)
    assert c.kind == "reference" and list(c.results) == ["mcem"] and c.reference == "MLE"
    inf = res.inference(model)
    assert inf.method == "louis" and all(inf.se_mcse[k] > 0 for k in ("alpha", "beta"))
    # the Monte Carlo error of the estimate: update_covariance in (log alpha, log beta), mapped by
    # d theta / d log theta = theta (a closed form, where the code uses a numerical Jacobian)
    theta = model.check_theta(res.params, "theta")
    cov_u = mcem.mstep.update_covariance(model, theta, res["draws"])
    for i, k in enumerate(model.param_names):
        r = c.row(k)
        est = float(res.params[k])
        assert r["estimate"] == est and r["se"] == float(inf.se[k]) and r["se_mcse"] == float(inf.se_mcse[k])
        assert r["mcse"] == pytest.approx(est * np.sqrt(cov_u[i, i]), rel=1e-6)
        assert r["mle"] == mle["params"][k] and r["se_mle"] == mle["se"][k]
        assert r["diff"] == est - mle["params"][k] and r["diff_mcse"] == r["diff"] / r["mcse"]
        assert r["diff_se"] == r["diff"] / mle["se"][k]
        assert c.distance_se["mcem"][k] == pytest.approx(r["diff_se"], rel=1e-12)  # in the reference's SEs
    d = c.row("log alpha")  # delta method, the reference's value from its own parameter
    a, ra = float(res.params["alpha"]), mle["params"]["alpha"]
    assert d["estimate"] == pytest.approx(np.log(a)) and d["se"] == pytest.approx(float(inf.se["alpha"]) / a)
    assert d["mcse"] == pytest.approx(c.row("alpha")["mcse"] / a)
    assert d["mle"] == pytest.approx(np.log(ra)) and d["se_mle"] == pytest.approx(mle["se"]["alpha"] / ra)
    assert [r["name"] for r in c.rows] == ["alpha", "beta", "log alpha"]
    text = str(c)
    assert text.splitlines()[0].split() == ["parameter", "MCEM", "SE", "MC", "SE", "MLE", "SE", "diff/SE"]
    assert "log alpha" in text and text.endswith("BFGS 0.25 s") and f"{res.total_draws} draws" in text
    assert repr(c) == "Comparison('mcem' against 'MLE')"
    with pytest.raises(KeyError, match=r"no row 'gamma'; rows are \['alpha', 'beta', 'log alpha'\]"):
        c.row("gamma")


def test_compare_to_reference_plot_marks_the_reference(pumps_fit):
    _, res, mle = pumps_fit
    c = compare_to_reference(res, mle["params"], mle["se"], mcse={"alpha": 0.01, "beta": 0.01}, name="MLE")
    fig = c.plot(params=["beta"])
    marked = {ax.get_title(): [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_label() == "MLE"]
              for ax in fig.axes}
    assert marked["beta"] == [mle["params"]["beta"]] and marked["alpha"] == []
    # element panels (titles like "m[1]") get their element's value
    fig2, axes = plt.subplots(1, 3)
    for ax, title in zip(axes, ["m", "m[1]", "other"], strict=True):
        ax.set_title(title)
    mark_reference(fig2, {"m": [3.0, 4.0]}, "ref")
    assert [ln.get_ydata()[0] for ln in axes[0].get_lines()] == [3.0, 4.0]
    assert [ln.get_ydata()[0] for ln in axes[1].get_lines()] == [4.0] and not axes[2].get_lines()
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["ref"]


def test_default_monte_carlo_error_agrees_with_the_glmm_analytic_one():
    d = ri.simulate_random_intercept(10, 6, [0.2, -0.4], 0.9, "logit", rng=6)
    model = ri.random_intercept_glmm(d["X"], d["y"], d["group"])
    oracle = ri.fit_quadrature(d["X"], d["y"], d["group"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit: its Louis information need not be definite
        res = mcem.fit(model, method="mcem", rng=2, max_iter=8)
        analytic = ri.compare_to_quadrature(res, oracle)
        generic = compare_to_reference(res, oracle.params, oracle.se)
    for a, g in zip(analytic.rows, generic.rows, strict=False):  # generic has no sigma2 row
        assert a["name"] == g["name"] and a["estimate"] == g["estimate"] and a["mle"] == g["mle"]
        assert g["mcse"] == pytest.approx(a["mcse"], rel=1e-3)
    assert [r["name"] for r in analytic.rows] == ["beta[0]", "beta[1]", "sigma", "sigma2"]
    assert len(generic.rows) == 3


def test_method_comparison_rows_by_name(faithful_comparison):
    _, c = faithful_comparison
    assert c.kind == "methods" and c.row("saem")["method"] == "saem"
    assert c.reference_params is c.results["em"].params and c.reference_se is c.standard_errors["em"]
    with pytest.raises(TypeError, match=r"Comparison.plot of methods takes params, fig and title, got \['ncols'\]"):
        c.plot(ncols=2)


def test_compare_to_reference_bad_input(pumps_fit):
    _, res, mle = pumps_fit
    ref, se = mle["params"], mle["se"]
    with pytest.raises(TypeError, match=r"result must be an mcem.FitResult \(from mcem.fit\), got dict"):
        compare_to_reference(dict(res), ref)
    with pytest.raises(ValueError, match=r"reference_params must give every parameter of the fit \['alpha', 'beta'\], missing \['beta'\]"):
        compare_to_reference(res, {"alpha": 1.0})
    with pytest.raises(ValueError, match=r"reference_params\['beta'\] must have the shape of the fit's parameter, \(\), got shape \(2,\)"):
        compare_to_reference(res, {"alpha": 1.0, "beta": [1.0, 2.0]})
    with pytest.raises(TypeError, match=r"reference_se\['alpha'\] must be a number or numeric array, got str 'big'"):
        compare_to_reference(res, ref, {"alpha": "big"})
    with pytest.raises(TypeError, match=r"derived\['s2'\] must be a tuple \(parameter, f, df\)"):
        compare_to_reference(res, ref, se, derived={"s2": ("alpha", np.square)})
    with pytest.raises(ValueError, match=r"derived\['s2'\] must name a scalar parameter of the fit \['alpha', 'beta'\], got 'gamma'"):
        compare_to_reference(res, ref, se, derived={"s2": ("gamma", np.square, np.abs)})
    with pytest.raises(TypeError, match=r"reference_params must be a dict of parameter values, got list \[1.0, 2.0\]"):
        compare_to_reference(res, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"mcse\['alpha'\] must have the shape of the fit's parameter, \(\), got shape \(3,\)"):
        compare_to_reference(res, ref, se, mcse={"alpha": np.zeros(3), "beta": 0.1})
    no_draws = mcem.FitResult({k: v for k, v in res.items() if k != "draws"})
    with pytest.raises(ValueError, match=r"the result has no draws .*; pass mcse="):
        compare_to_reference(no_draws, ref, se, model=pumps_fit[0])


def test_compare_to_reference_of_exact_em_has_no_monte_carlo_error():
    model, mle = mcem.models.pump_failures(), mcem.models.pumps_mle()
    res = mcem.fit(model, method="em", tol=1e-12, max_iter=5000)
    c = compare_to_reference(res, mle["params"], mle["se"], name="BFGS")
    for r in c.rows:  # exact EM and direct maximisation agree; exact information for the SEs
        assert r["mcse"] == 0 and r["se_mcse"] == 0 and r["diff_mcse"] == np.inf
        assert r["estimate"] == pytest.approx(r["mle"], rel=1e-5) and r["se"] == pytest.approx(r["se_mle"], rel=1e-4)

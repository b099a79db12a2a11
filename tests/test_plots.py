"""mcem.plots: each figure is rendered and its content checked against the fit's history."""

import subprocess
import sys
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection

import mcem
from mcem import plots
from mcem.result import FitResult, History


@pytest.fixture(scope="module")
def fits():
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(-2.0, 1.0, (60, 1)), rng.normal(3.0, 1.0, (60, 1))]
    model = mcem.models.gaussian_mixture(X, 2)
    em = mcem.fit(model, method="em")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter is small on purpose
        mc = mcem.fit(model, method="mcem", sampler="gibbs", rng=1, max_iter=6, burn=50)
    return em, mc


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def synthetic(rows=6, **cols):
    """A FitResult whose history has the given columns (arrays over rows 1..rows-1)."""
    hist = History()
    for t in range(rows):
        row = {"iter": t, "params": {"a": np.array(0.1 * t), "b": np.arange(2.0) + t}}
        if t > 0:
            row.update({k: v[t - 1] for k, v in cols.items()})
        hist.append(row)
    return FitResult(params=hist[-1]["params"], method="mcem", history=hist, settings={},
                     n_iter=rows - 1)


def line_by_label(ax, label):
    found = [ln for ln in ax.lines if ln.get_label() == label]
    assert found, f"no line labelled {label!r} in {[ln.get_label() for ln in ax.lines]}"
    return found[0]


def legend_texts(ax):
    leg = ax.get_legend()
    return [] if leg is None else [t.get_text() for t in leg.get_texts()]


def hline_at(ax, y):
    return [ln for ln in ax.lines
            if np.size(ln.get_ydata()) == 2 and np.allclose(ln.get_ydata(), y)
            and np.allclose(ln.get_xdata(), [0, 1])]


# --------------------------------------------------------------------------- paths


def test_paths_one_panel_per_parameter_lines_equal_history(fits):
    _, mc = fits
    names = list(mc.params)
    fig = plots.plot_paths(mc)
    assert len(fig.axes) == len(names)
    it = mc.history["iter"]
    for ax, name in zip(fig.axes, names):
        assert ax.get_xlabel() == "iteration" and ax.get_ylabel() == name
        path = mc.history.params(name)
        flat = path.reshape(len(path), -1)
        idxs = list(np.ndindex(path.shape[1:]))
        assert len(ax.lines) == len(idxs)
        for j, idx in enumerate(idxs):
            ln = line_by_label(ax, f"{name}[{','.join(map(str, idx))}]")
            np.testing.assert_array_equal(ln.get_ydata(), flat[:, j])
            np.testing.assert_array_equal(ln.get_xdata(), it)


def test_paths_scalar_parameter_single_line():
    res = synthetic()
    fig = plots.plot_paths(res, params="a")
    (ax,) = fig.axes
    (ln,) = ax.lines
    assert ln.get_label() == "a" and ax.get_ylabel() == "a"
    np.testing.assert_allclose(ln.get_ydata(), 0.1 * np.arange(6))


def test_paths_reference_overlay(fits):
    em, mc = fits
    fig = plots.plot_paths(mc, params=["means"], reference=em)
    (ax,) = fig.axes
    assert "exact EM" in legend_texts(ax)
    ref = line_by_label(ax, "exact EM")
    assert ref.get_linestyle() == "--"
    np.testing.assert_array_equal(ref.get_ydata(), em.history.params("means")[:, 0, 0])
    np.testing.assert_array_equal(ref.get_xdata(), em.history["iter"])
    for v in np.ravel(em.params["means"]):  # horizontal line at each final value
        assert hline_at(ax, v)
    n_el = em.params["means"].size
    assert len(ax.lines) == 3 * n_el  # path, reference path, reference final value


def test_paths_reference_labelled_by_method(fits):
    em, mc = fits
    fig = plots.plot_paths(em, params="weights", reference=mc)
    assert "mcem" in legend_texts(fig.axes[0])


def test_paths_max_panels_and_given_figure(fits):
    _, mc = fits
    with pytest.warns(UserWarning, match="showing 2 of 3"):
        fig = plots.plot_paths(mc, max_panels=2)
    assert [ax.get_ylabel() for ax in fig.axes] == list(mc.params)[:2]
    own = plt.figure()
    assert plots.plot_paths(mc, params=["weights", "means"], fig=own) is own
    assert len(own.axes) == 2


# --------------------------------------------------------------------------- delta-Q


def test_delta_q_band_from_bounds(fits):
    _, mc = fits
    fig = plots.plot_delta_q(mc)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "iteration" and ax.get_ylabel() == "delta Q"
    assert ax.get_yscale() == "symlog"
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1 and bands[0].get_label() == "confidence bounds"
    ys = bands[0].get_paths()[0].vertices[:, 1]
    h = mc.history
    assert ys.min() == pytest.approx(np.nanmin(h["lower"]))
    assert ys.max() == pytest.approx(np.nanmax(h["upper"]))
    dq = line_by_label(ax, "delta Q")
    np.testing.assert_array_equal(dq.get_ydata(), h["delta_q"][1:])
    assert hline_at(ax, 0.0)  # zero line
    assert "confidence bounds" in legend_texts(ax)


def test_delta_q_band_from_mcse_and_linear_scale():
    dq, se = np.array([5.0, 1.0, 0.2, 0.05, -0.01]), np.array([0.5, 0.2, 0.1, 0.05, 0.02])
    fig = plots.plot_delta_q(synthetic(delta_q=dq, mcse=se), yscale="linear")
    (ax,) = fig.axes
    assert ax.get_yscale() == "linear"
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(np.min(dq - 2 * se))
    assert ys.max() == pytest.approx(np.max(dq + 2 * se))
    assert "± 2 MCSE" in legend_texts(ax)


def test_delta_q_errors(fits):
    em, mc = fits
    with pytest.raises(ValueError, match="delta_q"):
        plots.plot_delta_q(em)
    with pytest.raises(ValueError, match="yscale"):
        plots.plot_delta_q(mc, yscale="log")


# --------------------------------------------------------------------------- sample size


def test_sample_size_step_and_appended_markers():
    m = np.array([40.0, 40, 96, 224, 1468])
    fig = plots.plot_sample_size(synthetic(m=m, appended=np.array([0, 0, 1, 0, 5])))
    (ax,) = fig.axes
    step = line_by_label(ax, "m")
    assert step.get_drawstyle().startswith("steps")
    np.testing.assert_array_equal(step.get_ydata(), m)
    marks = line_by_label(ax, "appended rounds")
    np.testing.assert_array_equal(marks.get_xdata(), [3, 5])
    assert sorted(t.get_text() for t in ax.texts) == ["+1", "+5"]
    assert ax.get_yscale() == "log"
    fig = plots.plot_sample_size(synthetic(m=m))  # no appended column: no markers
    assert [ln.get_label() for ln in fig.axes[0].lines] == ["m"]


def test_sample_size_real_fit_and_error(fits):
    em, mc = fits
    ax = plt.figure().subplots()
    fig = plots.plot_sample_size(mc, ax=ax)
    assert fig is ax.figure
    np.testing.assert_array_equal(line_by_label(ax, "m").get_ydata(), mc.history["m"][1:])
    with pytest.raises(ValueError, match="'m'"):
        plots.plot_sample_size(em)


# --------------------------------------------------------------------------- diagnostics


def test_diagnostics_panels_and_rhat_line(fits):
    em, mc = fits
    fig = plots.plot_diagnostics(mc)
    acc, rh = fig.axes
    assert [ln.get_label() for ln in acc.lines] == ["mean", "min"]
    np.testing.assert_array_equal(acc.lines[0].get_ydata(), mc.history["acceptance_mean"][1:])
    (thr,) = hline_at(rh, 1.05)
    assert thr.get_linestyle() == "--"
    np.testing.assert_array_equal(line_by_label(rh, "R-hat (log-joint)").get_ydata(),
                                  mc.history["rhat_loglik"][1:])
    assert rh.get_ylabel() == "R-hat"
    with pytest.raises(ValueError, match="E-step diagnostics"):
        plots.plot_diagnostics(em)


def test_diagnostics_into_given_axes(fits):
    _, mc = fits
    fig = plt.figure()
    axes = fig.subplots(1, 2)
    assert plots.plot_diagnostics(mc, axes=axes) is fig
    assert hline_at(axes[1], 1.05)
    with pytest.raises(ValueError, match="2 panel"):
        plots.plot_diagnostics(mc, axes=axes[:1])


# --------------------------------------------------------------------------- composite


def test_fit_mcem_has_all_panels(fits):
    em, mc = fits
    fig = plots.plot_fit(mc, reference=em)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [*mc.params, "log-likelihood", "delta Q", "Monte Carlo sample size",
                      "stopping rule (in SEs)", "MCMC acceptance", "R-hat of the log-joint trace"]
    ll_ax = fig.axes[3]
    assert legend_texts(ll_ax) == ["mcem", "exact EM"]
    assert "exact EM" in legend_texts(fig.axes[0])
    rule = fig.axes[titles.index("stopping rule (in SEs)")]
    assert legend_texts(rule)[-2:] == [f"tol = {mc.settings['tol']:g}", "tol / 2"]
    measured = np.isfinite(mc.history["mc_ratio"])
    y = rule.get_lines()[0].get_ydata()
    np.testing.assert_allclose(y, mc.history["mc_ratio"][measured])  # the measure, drawn where it was taken


def test_fit_em_skips_absent_columns(fits):
    em, _ = fits
    fig = plots.plot_fit(em)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [*em.params, "log-likelihood"]


# --------------------------------------------------------------------------- log-likelihood


def test_loglik_overlay(fits):
    em, mc = fits
    fig = plots.plot_loglik({"exact": em, "monte carlo": mc})
    (ax,) = fig.axes
    assert legend_texts(ax) == ["exact", "monte carlo"]
    np.testing.assert_array_equal(line_by_label(ax, "exact").get_ydata(), em.history["loglik"])
    np.testing.assert_array_equal(line_by_label(ax, "monte carlo").get_ydata(), mc.history["loglik"])
    assert ax.get_ylabel() == "log-likelihood" and ax.get_xlabel() == "iteration"
    fig = plots.plot_loglik(em)
    assert legend_texts(fig.axes[0]) == ["em"]


def test_loglik_missing_names_the_result(fits):
    em, _ = fits
    no_ll = synthetic(m=np.ones(5))
    with pytest.raises(ValueError, match="'bad'"):
        plots.plot_loglik({"ok": em, "bad": no_ll})


# --------------------------------------------------------------------------- errors, files


@pytest.mark.parametrize("fn", [plots.plot_paths, plots.plot_delta_q, plots.plot_sample_size,
                                plots.plot_diagnostics, plots.plot_fit, plots.plot_loglik])
def test_empty_history_is_a_clear_error(fn):
    empty = FitResult(params={}, method="mcem", history=History(), settings={})
    with pytest.raises(ValueError, match="empty history"):
        fn(empty)
    with pytest.raises(ValueError, match="no history"):
        fn(object())


def test_unknown_parameter_lists_valid_names(fits):
    em, mc = fits
    with pytest.raises(ValueError, match=r"'sigma'.*\['covariances', 'means', 'weights'\]"):
        plots.plot_paths(mc, params=["means", "sigma"])
    other = synthetic()
    with pytest.raises(ValueError, match="reference lacks"):
        plots.plot_paths(mc, params="means", reference=other)


def test_save_png(fits, tmp_path):
    em, mc = fits
    path = tmp_path / "fit.png"
    plots.plot_fit(mc, reference=em).savefig(path, dpi=60)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_import_mcem_does_not_load_pyplot():
    code = "import sys, mcem, mcem.plots; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

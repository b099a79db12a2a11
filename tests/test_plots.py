"""mcem.plots: each figure is rendered and its content checked against the fit's history."""

import subprocess
import sys
import warnings

import matplotlib
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


def naive_distance(hist, ref, se):
    """max over elements |theta_t - ref| / se, element by element in plain Python."""
    out = []
    for row in hist:
        d = []
        for name, value in ref.items():
            v, r, s = (np.asarray(x, dtype=float).ravel() for x in (row["params"][name], value, se[name]))
            d += [abs(v[i] - r[i]) / s[i] for i in range(len(v)) if np.isfinite(s[i]) and s[i] > 0]
        out.append(max(d))
    return np.array(out)


def assert_every_axis_explained(fig):
    """Every axis drawn has a title, axis labels and a legend with an entry."""
    for ax in fig.axes:
        assert ax.get_title(), ax
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        assert legend_texts(ax), f"no legend on {ax.get_title()!r}"


def axis_titled(fig, start):
    found = [ax for ax in fig.axes if ax.get_title().startswith(start)]
    assert len(found) == 1, [ax.get_title() for ax in fig.axes]
    return found[0]


def test_fit_mcem_has_all_panels(fits):
    em, mc = fits
    fig = plots.plot_fit(mc, reference=em)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [*mc.params, "distance from exact EM", "log-likelihood below its maximum", "delta Q",
                      "draws per iteration", "stopping rule (Monte Carlo methods, in SEs)",
                      "R-hat of the log-joint trace"]
    assert_every_axis_explained(fig)
    for t in ("distance", "log-likelihood", "draws", "stopping"):
        assert axis_titled(fig, t).get_yscale() == "log", t
    assert "exact EM" in legend_texts(fig.axes[0])
    # the distance from exact EM in its standard errors: the history's, computed naively
    dist = axis_titled(fig, "distance")
    se = em.standard_errors()
    naive = naive_distance(mc.history, em.params, se)
    line = line_by_label(dist, "mcem")
    np.testing.assert_allclose(line.get_ydata(), naive[naive > 0])
    np.testing.assert_array_equal(line.get_xdata(), mc.history["iter"][naive > 0])
    ref_line = line_by_label(dist, "exact EM")
    ref_naive = naive_distance(em.history, em.params, se)
    np.testing.assert_allclose(ref_line.get_ydata(), ref_naive[ref_naive > 0])
    # the log-likelihood gap to the best log-likelihood seen
    gap = axis_titled(fig, "log-likelihood")
    top = max(np.nanmax(em.history["loglik"]), np.nanmax(mc.history["loglik"]), em["loglik"], mc["loglik"])
    g = top - mc.history["loglik"]
    np.testing.assert_allclose(line_by_label(gap, "mcem").get_ydata(), g[g > 1e-12 * abs(top)])
    np.testing.assert_allclose(line_by_label(gap, "exact EM").get_ydata()[0], top - em.history["loglik"][0])
    # m per iteration, and the rule's measures against tol and tol / 2
    np.testing.assert_array_equal(line_by_label(axis_titled(fig, "draws"), "mcem: m").get_ydata(),
                                  mc.history["m"][1:])
    rule = axis_titled(fig, "stopping rule")
    tol = mc.settings["tol"]
    assert hline_at(rule, tol) and hline_at(rule, tol / 2)
    r = mc.history["mc_ratio"]
    measured = np.isfinite(r) & (r > 0)
    np.testing.assert_allclose(line_by_label(rule, "MC error").get_ydata(), r[measured])


def test_fit_mcem_distance_band_is_the_monte_carlo_error(fits):
    em, mc = fits
    fig = plots.plot_fit(mc, reference=em)
    dist = axis_titled(fig, "distance")
    (band,) = [c for c in dist.collections if isinstance(c, PolyCollection)]
    assert band.get_label() == "mcem: ± 2 Monte Carlo SDs"
    d = naive_distance(mc.history, em.params, em.standard_errors())
    mc_err = mc.history["mc_ratio"]
    ok = np.isfinite(mc_err)
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.max() == pytest.approx(np.max(d[ok] + 2 * mc_err[ok]))
    # and the returned estimate is starred at its distance
    stars = [ln for ln in dist.lines if ln.get_marker() == "*" and len(ln.get_xdata())]
    assert [float(ln.get_ydata()[0]) for ln in stars] == pytest.approx([d[-1]])


def test_fit_em_alone(fits):
    em, _ = fits
    fig = plots.plot_fit(em)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [*em.params, "distance from the final estimate", "log-likelihood below its maximum",
                      "stopping rule"]
    assert_every_axis_explained(fig)
    rule = axis_titled(fig, "stopping rule")
    ll = em.history["loglik"]
    naive = np.abs(np.diff(ll)) / np.maximum(1.0, np.abs(ll[1:]))
    np.testing.assert_allclose(line_by_label(rule, "relative log-lik change").get_ydata(), naive)
    assert hline_at(rule, em.settings["tol"])
    assert em.settings["tol"] >= naive[-1]


def test_fit_against_reference_values(fits):
    em, mc = fits
    se = em.standard_errors()
    fig = plots.plot_fit(mc, reference={"means": em.params["means"]}, se=se, reference_label="closed form")
    means = axis_titled(fig, "means")
    assert "closed form" in legend_texts(means)
    assert "closed form" not in legend_texts(axis_titled(fig, "weights"))
    dist = axis_titled(fig, "distance from closed form")
    naive = naive_distance(mc.history, {"means": em.params["means"]}, se)
    np.testing.assert_allclose(line_by_label(dist, "mcem").get_ydata(), naive[naive > 0])
    with pytest.raises(TypeError, match="reference must be a FitResult or a dict"):
        plots.plot_fit(mc, reference=3)


# --------------------------------------------------------------------------- convergence of several fits


@pytest.fixture(scope="module")
def mix2d():
    rng = np.random.default_rng(7)
    X = np.r_[rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], 70),
              rng.multivariate_normal([4, 3], [[0.5, -0.2], [-0.2, 0.8]], 50)]
    model = mcem.models.gaussian_mixture(X, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = mcem.compare(model, ("em", "mcem", "saem"), rng=1, options={"saem": {"burn_iter": 10, "max_iter": 80}})
    return X, cmp


def test_comparison_plot_panels_values_and_styles(mix2d):
    _, cmp = mix2d
    fig = cmp.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["distance from em", "log-likelihood below its maximum", "draws per iteration",
                      "stopping rule (Monte Carlo methods, in SEs)", "R-hat of the log-joint trace",
                      "final estimate - em, per parameter"]
    assert_every_axis_explained(fig)
    assert "em" in fig.get_suptitle()
    dist = axis_titled(fig, "distance")
    assert dist.get_yscale() == "log" and axis_titled(fig, "log-likelihood").get_yscale() == "log"
    lines = {m: line_by_label(dist, m) for m in cmp.results}
    for m, r in cmp.results.items():
        naive = naive_distance(r.history, cmp.reference_params, cmp.reference_se)
        np.testing.assert_allclose(lines[m].get_ydata(), naive[naive > 0])
    # one colour per method, EM and MCEM told apart by line style and marker
    assert lines["em"].get_color() != lines["mcem"].get_color()
    assert lines["em"].get_linestyle() != lines["mcem"].get_linestyle()
    assert lines["em"].get_marker() != lines["mcem"].get_marker()
    gap = axis_titled(fig, "log-likelihood")
    assert line_by_label(gap, "mcem").get_color() == lines["mcem"].get_color()
    # the last panel: every parameter element's final distance, the table's numbers
    final = axis_titled(fig, "final estimate")
    labels = [t.get_text() for t in final.get_yticklabels()]
    assert len(labels) == sum(np.size(v) for v in cmp.reference_params.values()) and "covariances[0,1,1]" in labels
    for m in ("mcem", "saem"):
        dots = line_by_label(final, m).get_xdata()
        flat = np.concatenate([np.ravel(cmp.distance_se[m][k]) for k in cmp.reference_params])
        np.testing.assert_allclose(np.sort(dots), np.sort(flat))
        assert np.max(np.abs(dots)) == pytest.approx(cmp.row(m)["max_abs_distance_se"])


def test_comparison_plot_params_and_errors(mix2d):
    _, cmp = mix2d
    fig = cmp.plot(params=["means"], title="means only")
    assert fig.get_suptitle() == "means only"
    dist = axis_titled(fig, "distance")
    r = cmp.results["saem"]
    naive = naive_distance(r.history, {"means": cmp.reference_params["means"]}, cmp.reference_se)
    np.testing.assert_allclose(line_by_label(dist, "saem").get_ydata(), naive[naive > 0])
    with pytest.raises(TypeError, match=r"takes params, fig and title, got \['ncols'\]"):
        cmp.plot(ncols=2)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['sigma'\]"):
        cmp.plot(params=["sigma"])
    with pytest.raises(ValueError, match="'other' is not one of the fits"):
        plots.plot_convergence(cmp.results, reference="other")
    sub = plt.figure().subfigures(1, 2)[1]
    assert cmp.plot(fig=sub) is sub and len(sub.axes) == 6


# --------------------------------------------------------------------------- mixtures


def naive_ellipse(cov, k):
    """Width, height and angle (degrees) of the k-SD ellipse of a 2 x 2 covariance, in closed form."""
    a, b, c = cov[0, 0], cov[0, 1], cov[1, 1]
    half, root = (a + c) / 2, np.hypot((a - c) / 2, b)
    return 2 * k * np.sqrt(half + root), 2 * k * np.sqrt(half - root), np.degrees(0.5 * np.arctan2(2 * b, a - c))


def test_mixture_one_ellipse_pair_per_component_per_method(mix2d):
    from matplotlib.patches import Ellipse

    X, cmp = mix2d
    fig = plots.plot_mixture(X, cmp, labels=("a", "b"))
    (ax,) = fig.axes
    assert ax.get_title() and ax.get_xlabel() == "a" and ax.get_ylabel() == "b"
    assert legend_texts(ax)[0] == f"data (N = {len(X)})"
    assert [t.split(":")[0] for t in legend_texts(ax)[1:]] == list(cmp.results)
    ellipses = {e.get_gid(): e for e in ax.patches if isinstance(e, Ellipse)}
    K = len(cmp.results["em"].params["weights"])
    assert sorted(ellipses) == sorted(f"{m}:{k}:{s}" for m in cmp.results for k in range(K) for s in (1, 2))
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), X)
    for m, r in cmp.results.items():
        for k in range(K):
            for s in (1, 2):
                e = ellipses[f"{m}:{k}:{s}"]
                w, h, ang = naive_ellipse(r.params["covariances"][k], s)
                assert (e.width, e.height) == pytest.approx((w, h))
                assert (e.angle - ang + 90) % 180 == pytest.approx(90)  # the same axis, up to 180 degrees
                assert e.center == pytest.approx(tuple(r.params["means"][k]))
    # each method's colour is the one its lines have in the convergence figure
    conv = cmp.plot()
    dist = axis_titled(conv, "distance")
    for m in cmp.results:
        assert ellipses[f"{m}:0:1"].get_edgecolor()[:3] == pytest.approx(
            matplotlib.colors.to_rgb(line_by_label(dist, m).get_color()))


def test_mixture_other_covariances_dims_and_one_dimension():
    from matplotlib.patches import Ellipse

    X = np.random.default_rng(1).normal(size=(30, 3))
    means = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0]])
    diag = {"weights": np.array([0.5, 0.5]), "means": means, "covariances": np.array([[1.0, 4.0, 9.0], [2.0, 1.0, 1.0]])}
    fig = plots.plot_mixture(X, {"diag": diag}, dims=(2, 0), n_sd=[1])
    ells = {e.get_gid(): e for e in fig.axes[0].patches if isinstance(e, Ellipse)}
    assert sorted(ells) == ["diag:0:1", "diag:1:1"]
    e = ells["diag:0:1"]
    assert sorted([e.width, e.height]) == pytest.approx([2.0, 6.0])  # sd 1 and 3 on coordinates 0 and 2
    assert e.center == pytest.approx((2.0, 0.0))
    sph = dict(diag, covariances=np.array([4.0, 1.0]))
    e = [p for p in plots.plot_mixture(X, [sph]).axes[0].patches if p.get_gid() == "fit 1:0:2"][0]
    assert (e.width, e.height) == pytest.approx((8.0, 8.0))
    x1 = X[:, :1]
    one = {"weights": np.array([0.3, 0.7]), "means": np.array([[-1.0], [1.0]]), "covariances": np.array([1.0, 0.25])}
    ax = plots.plot_mixture(x1, {"a": one}).axes[0]
    line = line_by_label(ax, "a: mixture density")
    xs = line.get_xdata()
    naive = 0.3 * np.exp(-0.5 * (xs + 1) ** 2) / np.sqrt(2 * np.pi) + 0.7 * np.exp(-0.5 * ((xs - 1) / 0.5) ** 2) / (
        0.5 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(line.get_ydata(), naive)
    assert ax.get_ylabel() == "density" and legend_texts(ax)


def test_mixture_bad_input_is_named():
    X = np.zeros((5, 2))
    good = {"weights": np.ones(2) / 2, "means": np.zeros((2, 2)), "covariances": np.ones(2)}
    with pytest.raises(ValueError, match=r"lacks parameter\(s\) \['covariances'\]"):
        plots.plot_mixture(X, {"f": {"weights": np.ones(2) / 2, "means": np.zeros((2, 2))}})
    with pytest.raises(ValueError, match=r"dims must be two different coordinates in 0..1, got \(0, 0\)"):
        plots.plot_mixture(X, good, dims=(0, 0))
    with pytest.raises(ValueError, match=r"means of shape \(2, 3\); X has d=2 columns"):
        plots.plot_mixture(X, dict(good, means=np.zeros((2, 3))))
    with pytest.raises(ValueError, match="covariances must have shape"):
        plots.plot_mixture(X, dict(good, covariances=np.ones((3, 3))))
    with pytest.raises(TypeError, match="fits must be"):
        plots.plot_mixture(X, 3)
    with pytest.raises(ValueError, match="n_sd must be positive"):
        plots.plot_mixture(X, good, n_sd=[0])


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
                                plots.plot_diagnostics, plots.plot_fit, plots.plot_loglik, plots.plot_convergence])
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

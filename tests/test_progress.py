"""mcem.progress: the progress line shows the iteration, m and the stopping rule's measure against
its target, never a percentage, and keeps its last line; the values are the history's."""

import io
import math
import sys
import warnings

import numpy as np
import pytest

import mcem
from mcem.algorithms.loop import Stop
from mcem.algorithms.registry import METHODS
from mcem.progress import RULES, Progress, format_value, measure_path, rule_measures, variant


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(-2.0, 1.0, (60, 1)), rng.normal(3.0, 1.0, (60, 1))]
    return mcem.models.gaussian_mixture(X, 2)


def fit_with_bar(model, monkeypatch, **kw):
    """A fit with progress=True whose bar writes into a StringIO standing in for stderr."""
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mcem.fit(model, progress=True, rng=1, **kw)
    monkeypatch.undo()
    return res, buf.getvalue()


def last_line(text):
    """What stays on the terminal: the last line tqdm drew (lines are redrawn after a carriage return)."""
    assert text.endswith("\n"), "the last line was not kept"
    return [s for s in text.replace("\r", "\n").split("\n") if s.strip()][-1]


def naive_relative_change(hist):
    ll = hist["loglik"]
    return abs(ll[-1] - ll[-2]) / max(1.0, abs(ll[-1]))


def test_exact_em_line_shows_the_relative_change_against_tol(model, monkeypatch):
    res, out = fit_with_bar(model, monkeypatch, method="em")
    line = last_line(out)
    assert "%" not in out and "/500" not in out  # no total, no percentage
    change = naive_relative_change(res.history)
    assert change <= res.settings["tol"]
    assert f"iter {res.n_iter} " in line
    assert f"relative log-lik change {change:.2g} -> {res.settings['tol']:g}" in line
    assert f"loglik {res.history['loglik'][-1]:.6g}" in line
    assert line.rstrip().endswith("it/s]") and "converged (tol)" in line
    assert " m " not in line  # exact EM draws nothing


def test_mcem_line_shows_m_and_the_precision_measures(model, monkeypatch):
    res, out = fit_with_bar(model, monkeypatch, method="mcem")
    line = last_line(out)
    h = res.history
    assert "%" not in out
    assert f"iter {res.n_iter} " in line and f"| m {int(h['m'][-1])} |" in line
    tol = res.settings["tol"]
    last = {k: h[k][np.isfinite(h[k])][-1] for k in ("mc_ratio", "distance")}  # the last measured values
    assert f"MC error {format_value(last['mc_ratio'])} SE -> {tol:g}" in line
    assert f"distance {format_value(last['distance'])} SE -> {tol / 2:g}" in line
    assert last["mc_ratio"] <= tol and last["distance"] <= tol / 2  # it converged by that rule
    assert f"converged ({res.stopped_by})" in line


def test_saem_line_and_its_burn_in(model, monkeypatch):
    res, out = fit_with_bar(model, monkeypatch, method="saem", burn_iter=10, max_iter=80)
    line = last_line(out)
    h = res.history
    assert "%" not in out
    assert f"iter {res.n_iter} " in line and f"| m {int(h['m'][-1])} |" in line
    checked = np.isfinite(h["mc_ratio"])
    assert checked.any()  # the rule was checked: the line shows its last check
    assert f"MC error {format_value(h['mc_ratio'][checked][-1])} SE -> 0.1" in line
    assert f"distance {format_value(h['distance'][checked][-1])} SE -> 0.05" in line
    # during burn-in the line says so, before any check it shows no value
    p = Progress("saem", res.settings, file=io.StringIO(), show=True)
    p.update(h[3], h[2])
    assert "burn-in 3/10" in p.text() and "MC error -- -> 0.1" in p.text()


def test_the_line_says_how_a_run_ended(model, monkeypatch):
    res, out = fit_with_bar(model, monkeypatch, method="mcem", max_iter=2)
    assert res.stopped_by == "max_iter" and "stopped: max_iter" in last_line(out)
    buf = io.StringIO()
    p = Progress("em", {"tol": 1e-8}, file=buf, show=True)
    p.update({"iter": 0, "loglik": -10.0})
    p.update({"iter": 1, "loglik": -9.0}, {"iter": 0, "loglik": -10.0})
    p.close(Stop("tol", False, "..."), note="degenerate fit")
    line = last_line(buf.getvalue())
    assert "relative log-lik change 0.11 -> 1e-08" in line and "stopped: tol; degenerate fit" in line


def test_no_display_unless_asked_or_a_terminal(model, monkeypatch):
    for progress in (False, None):  # None: only when stderr is a terminal, and a StringIO is not
        buf = io.StringIO()
        monkeypatch.setattr(sys, "stderr", buf)
        mcem.fit(model, method="em", progress=progress)
        monkeypatch.undo()
        assert buf.getvalue() == ""


def test_every_method_has_a_rule_and_its_measures_are_recorded(model):
    assert set(RULES) == set(METHODS)
    fits = {
        ("em", "loglik"): dict(method="em"),
        ("mcem", "precision"): dict(method="mcem", max_iter=4),
        ("mcem", "ascent"): dict(method="mcem", stop="ascent", max_iter=3),
        ("saem", "precision"): dict(method="saem", burn_iter=5, max_iter=30),
        ("gem", "exact"): dict(method="gem", max_iter=5),
        ("gem", "mc"): dict(method="gem", estep="mc", max_iter=3),
        ("vbem", "categorical"): dict(method="vbem", max_iter=5),
    }
    for (method, var), kw in fits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mcem.fit(model, rng=2, **kw)
        assert variant(method, res.settings, res.history[0]) == var
        measures, tol = rule_measures(method, res.settings, res.history[0])
        assert measures and tol == res.settings["tol"]
        for ms in measures:
            if isinstance(ms.source, str):
                assert ms.source in res.history.columns, (method, ms.source)
            path = measure_path(ms, res.history.rows, res._model)
            assert np.isfinite(path).any(), (method, ms.label)
    assert variant("vbem", {"family": "meanfield"}) == "gaussian"
    assert rule_measures("not a method", {"tol": 0.1}) == ((), 0.1)


def test_measure_paths_equal_naive_computations(model):
    res = mcem.fit(model, method="em")
    (ms,) = rule_measures("em", res.settings, res.history[0])[0]
    ll = res.history["loglik"]
    naive = [math.nan] + [abs(ll[t] - ll[t - 1]) / max(1.0, abs(ll[t])) for t in range(1, len(ll))]
    np.testing.assert_allclose(measure_path(ms, res.history.rows), naive)
    # the relative parameter change of stop="relative", on the unconstrained scale
    rel = RULES["saem"]["relative"][0]
    rows = res.history.rows
    u = [res._model.to_unconstrained(r["params"]) for r in rows]
    naive = [math.nan] + [max(abs(u[t][i] - u[t - 1][i]) / (abs(u[t - 1][i]) + 1e-3) for i in range(len(u[t])))
                          for t in range(1, len(u))]
    np.testing.assert_allclose(measure_path(rel, rows, res._model), naive)
    assert np.isnan(measure_path(rel, rows)[1])  # without the model it is not known


def test_format_value():
    assert [format_value(v) for v in (0.3127, 4.2e-9, math.nan, math.inf, 12.0, None)] == [
        "0.31", "4.2e-09", "--", "inf", "12", "--"]

"""Convergence figures of one fit or of several side by side: :func:`plot_convergence`.

What a reader asks of a fit, one panel each (a panel is drawn only where the histories hold its
data):

* how far each iterate is from the answer, in standard errors (the distance from the reference
  estimate, or from the fit's own final estimate), on a log scale with the iterate's Monte Carlo
  band where the history has it (``mc_ratio`` of MCEM and VB-EM; SAEM's measures the average);
* the log-likelihood below its maximum, on a log scale (VB-EM without a log-likelihood: its bound
  below the bound's maximum);
* the draws m per iteration and their effective sample size (Monte Carlo methods);
* the stopping rule's measures against their targets (the table :data:`mcem.progress.RULES`);
* the E-step diagnostics: R-hat of the log-joint trace, and the acceptance where the draws are
  not exact.

Every method keeps one colour, line style and marker in every figure (:data:`STYLES`). Values at
or below zero cannot sit on a log axis: they are drawn as open markers at the foot of the panel.
Matplotlib is imported by the caller's figure only; nothing here is shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from .plotstyle import (
    STYLES,
    LogPanel,
    as_runs,
    column,
    finish_axes,
    iterations,
    plain_log_ticks,
    run_label,
    styles,
    target_lines,
)
from .progress import measure_path, rule_measures

__all__ = ["STYLES", "TITLES", "ITERATE_ERROR", "Target", "as_runs", "styles", "distance_path", "final_distance",
           "loglik_gap", "own_se", "convergence_panels", "draw_panel", "iteration_axis", "plot_convergence"]

#: Panel titles (the reference's label is filled in where the title has ``{ref}``).
TITLES = {
    "distance": "distance from {ref}",
    "gap": "log-likelihood below its maximum",
    "sample": "draws per iteration",
    "rule": "stopping rule",
    "rhat": "R-hat of the log-joint trace",
    "acceptance": "MCMC acceptance",
    "final": "final estimate - {ref}, per parameter",
}

#: The methods whose recorded ``mc_ratio`` is the Monte Carlo error of the iterate itself (SAEM's
#: is that of its Polyak-Ruppert average, GEM's that of one Newton step from the iterate).
ITERATE_ERROR = {"mcem", "vbem"}


class Target(NamedTuple):
    """Where distances are measured from: ``params`` in standard errors ``se``; either None
    means each fit's own final estimate or standard errors. ``label`` names it."""

    label: str
    params: Mapping | None = None
    se: Mapping | None = None


def own_se(r):
    """The fit's standard errors, or None where they cannot be had (no model, no draws)."""
    try:
        return r.standard_errors()
    except (ValueError, TypeError, AttributeError, ArithmeticError, np.linalg.LinAlgError):
        return None


# --------------------------------------------------------------------------- the quantities


def _scaled(values, ref, se, names):
    """|values - ref| / se of every element of ``names`` with a positive standard error,
    as an array (..., elements); ``values`` maps names to arrays (..., *shape)."""
    cols = []
    for n in names:
        s = np.asarray(se[n], dtype=float).reshape(-1)
        ok = np.isfinite(s) & (s > 0)
        v = np.asarray(values[n], dtype=float)
        lead = v.shape[: v.ndim - np.ndim(ref[n])]
        v = v.reshape(lead + (-1,))
        r = np.asarray(ref[n], dtype=float).reshape(-1)
        cols.append(np.abs(v[..., ok] - r[ok]) / s[ok])
    return np.concatenate(cols, axis=-1) if cols else np.zeros((0,))


def distance_path(history, ref, se, names=None) -> np.ndarray:
    """Per history row, the largest over parameter elements of ``|theta_t - ref| / se`` (NaN where
    no element has a positive standard error)."""
    names = list(ref) if names is None else list(names)
    d = _scaled({n: history.params(n) for n in names}, ref, se, names)
    if d.shape[-1] == 0:
        return np.full(len(history), np.nan)
    return np.max(d, axis=-1)


def final_distance(params, ref, se, names=None) -> float:
    """The largest ``|estimate - ref| / se`` over parameter elements of one estimate."""
    names = list(ref) if names is None else list(names)
    d = _scaled(params, ref, se, names)
    return float(np.max(d)) if d.size else math.nan


def loglik_gap(runs) -> dict:
    """Label -> ``(gap, is_bound)``: the maximum of the log-likelihoods of every fit (their paths
    and final values) minus each fit's path; a fit without a log-likelihood but with a bound
    (VB-EM) gets its bound's maximum minus its bound (``is_bound`` True); None for neither."""
    lls = {lab: column(r["history"], "loglik") for lab, r in runs.items()}
    tops = []
    for lab, r in runs.items():
        if lls[lab] is not None:
            tops.append(float(np.nanmax(lls[lab])))
            final = r.get("loglik")
            if isinstance(final, float | int) and math.isfinite(final):
                tops.append(float(final))
    top = max(tops) if tops else None
    out = {}
    for lab, r in runs.items():
        if lls[lab] is not None:
            out[lab] = (top - lls[lab], False)
        elif (elbo := column(r["history"], "elbo")) is not None:
            out[lab] = (np.nanmax(elbo) - elbo, True)
        else:
            out[lab] = None
    return out


# --------------------------------------------------------------------------- panels


def _draw_distance(ax, runs, st, target, names):
    p = LogPanel(ax)
    tols, stars = [], False
    for lab, r in runs.items():
        hist = r["history"]
        ref = target.params if target.params is not None else r["params"]
        se = target.se if target.se is not None else own_se(r)
        if se is None:
            continue
        x = iterations(hist)
        d = distance_path(hist, ref, se, names)
        mc = column(hist, "mc_ratio")
        if mc is not None and r.get("method") in ITERATE_ERROR:
            b = np.isfinite(mc) & np.isfinite(d)
            if b.any():
                lo = d[b] - 2 * mc[b]
                hi = d[b] + 2 * mc[b]
                floor = np.nanmin(d[np.isfinite(d) & (d > 0)], initial=1.0) / 3.0
                ax.fill_between(x[b], np.maximum(lo, floor), hi, color=st[lab]["color"], alpha=0.18, lw=0,
                                label=f"{lab}: ± 2 Monte Carlo SDs")
        p.line(x, d, st[lab], lab)
        fin = final_distance(r["params"], ref, se, names)
        if math.isfinite(fin) and fin > 0:
            ax.plot([x[-1]], [fin], ls="none", marker="*", ms=11, color=st[lab]["color"], mec="k", mew=0.5,
                    zorder=5, clip_on=False)
            stars = True
            p.heights.append(np.array([fin]))
        measures, tol = rule_measures(r.get("method"), r.get("settings"), hist[0])
        if tol and any(ms.unit == " SE" for ms in measures):
            tols.append(tol)
    if stars:
        ax.plot([], [], ls="none", marker="*", ms=10, color="0.5", mec="k", mew=0.5, label="returned estimate")
    target_lines(ax, tols, "tol = {} SE")
    what = "the final estimate" if target.params is None else target.label
    p.finish(TITLES["distance"].format(ref=what), "largest |θ_t - θ_ref| / SE")


def _draw_gap(ax, runs, st):
    p = LogPanel(ax)
    kinds = set()
    for lab, g in loglik_gap(runs).items():
        if g is None:
            continue
        gap, is_bound = g
        hist = runs[lab]["history"]
        size = np.nanmax(np.abs(column(hist, "elbo" if is_bound else "loglik")))
        p.line(iterations(hist), gap, st[lab], f"{lab} (bound)" if is_bound else lab, floor=1e-12 * max(1.0, size))
        kinds.add(is_bound)
    if kinds == {True}:
        p.finish("the bound below its maximum", "max L - L_t", "at the maximum: at the foot")
    else:
        title = "log-likelihood (VB-EM: bound) below max." if True in kinds else TITLES["gap"]
        p.finish(title, "max log L - log L_t", "at the maximum: at the foot")


def _draw_sample(ax, runs, st):
    for lab, r in runs.items():
        hist = r["history"]
        m, x = column(hist, "m"), iterations(hist)
        if m is None:
            continue
        ok = np.isfinite(m) & (x > 0)
        ax.step(x[ok], m[ok], where="mid", color=st[lab]["color"], ls=st[lab]["ls"], lw=1.6, label=f"{lab}: m")
        ess = column(hist, "ess_loglik")
        if ess is not None:
            e = np.isfinite(ess) & (ess > 0)
            ax.plot(x[e], ess[e], ls="none", marker=st[lab]["marker"], ms=3.5, mfc="none", color=st[lab]["color"],
                    markevery=max(1, int(e.sum()) // 25), label=f"{lab}: ESS of the log-joint")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis, 1.0)
    finish_axes(ax, TITLES["sample"], "draws (m) and ESS" if any(ln.get_label().endswith("log-joint")
                                                                   for ln in ax.get_lines()) else "draws (m)")


def _rule_runs(runs):
    """Label -> ``(measures, tol)`` of the fits the rule panel draws: the fits whose rule is in
    standard errors where there are any (a log-likelihood rule is the gap panel's story), else all;
    fits without a known rule are left out."""
    rules = {lab: rule_measures(r.get("method"), r.get("settings"), r["history"][0]) for lab, r in runs.items()}
    rules = {lab: mt for lab, mt in rules.items() if mt[0]}
    in_se = {lab: mt for lab, mt in rules.items() if all(ms.unit.strip() == "SE" for ms in mt[0])}
    return in_se or rules


def _draw_rule(ax, runs, st):
    """The rule's measures per iteration against their targets: in standard errors for the Monte
    Carlo methods; several fits with other rules as fractions of their targets."""
    p = LogPanel(ax)
    rules = _rule_runs(runs)
    in_se = all(ms.unit.strip() == "SE" for mt in rules.values() for ms in mt[0])
    ratio = len(rules) > 1 and not in_se
    targets, names = {}, set()
    for lab, (measures, tol) in rules.items():
        r = runs[lab]
        x = iterations(r["history"])
        for j, ms in enumerate(measures):
            v = measure_path(ms, r["history"].rows, getattr(r, "_model", None))
            if not np.isfinite(v).any():
                continue
            goal = ms.factor * tol if tol else None
            style = dict(st[lab], ls=["-", "--", ":"][j % 3])
            name = f"{lab}: {ms.label}" if len(rules) > 1 else ms.label
            if ratio and goal:
                p.line(x, v / goal, style, f"{name} / {goal:g}")
            else:
                p.line(x, v, style, name)
                if goal:
                    targets.setdefault(goal, ms.label)
            names.add(ms.label)
    if ratio:
        ax.axhline(1.0, color="0.35", ls=":", lw=1.1, label="target (stops below 1)")
        ylabel = "measure / its target"
    else:
        for j, (goal, name) in enumerate(sorted(targets.items(), reverse=True)):
            ax.axhline(goal, color="0.35", ls=(0, (1, 2 + 2 * j)), lw=1.1, label=f"target {goal:g} ({name})")
        p.heights.append(np.array(list(targets)))
        ylabel = "standard errors" if in_se else (names.pop() if len(names) == 1 else "measure")
    title = TITLES["rule"] + (" (Monte Carlo methods, in SEs)" if in_se and len(rules) < len(runs) else "")
    p.finish(title, ylabel, "0 (not significant): at the foot")


def _draw_rhat(ax, runs, st):
    limits = []
    for lab, r in runs.items():
        v = column(r["history"], "rhat_loglik")
        if v is None:
            continue
        x, ok = iterations(r["history"]), np.isfinite(v)
        ax.plot(x[ok], v[ok], color=st[lab]["color"], ls=st[lab]["ls"], marker=st[lab]["marker"], ms=3,
                markevery=max(1, int(ok.sum()) // 25), label=lab)
        limits.append(float((r.get("settings") or {}).get("max_rhat", 1.05)))
    target_lines(ax, limits, "R-hat limit {}", color="C3")
    finish_axes(ax, TITLES["rhat"], "R-hat")


def _draw_acceptance(ax, runs, st):
    for lab, r in runs.items():
        v = column(r["history"], "acceptance_mean")
        if v is None or np.all(v[np.isfinite(v)] == 1.0):
            continue
        x, ok = iterations(r["history"]), np.isfinite(v)
        ax.plot(x[ok], v[ok], color=st[lab]["color"], ls=st[lab]["ls"], marker=st[lab]["marker"], ms=3,
                markevery=max(1, int(ok.sum()) // 25), label=f"{lab} (mean over sites)")
    ax.set_ylim(-0.02, 1.05)
    finish_axes(ax, TITLES["acceptance"], "acceptance rate")


def _draw_final(ax, distances, st, ref_label, tol=None):
    """Each method's ``(estimate - reference) / SE`` per parameter element: the table as a picture."""
    first = next(iter(distances.values()))
    elems = [(name if np.ndim(v) == 0 else f"{name}[{','.join(map(str, idx))}]", name, idx)
             for name, v in first.items() for idx in np.ndindex(np.shape(v))]
    y = np.arange(len(elems))[::-1]
    k = len(distances)
    for j, (m, d) in enumerate(distances.items()):
        vals = [float(np.asarray(d[name])[idx]) for _, name, idx in elems]
        ax.plot(vals, y + (j - (k - 1) / 2) * 0.18, ls="none", marker=st[m]["marker"], color=st[m]["color"], ms=5,
                label=m)
    ax.axvline(0.0, color="k", lw=0.8)
    if tol:
        for s in (-1, 1):
            ax.axvline(s * tol, color="0.35", ls=":", lw=1.1, label=f"± tol = {tol:g} SE" if s > 0 else None)
    ax.set_yticks(y, [lab for lab, _, _ in elems], fontsize="x-small")
    ax.set_ylim(-0.7, len(elems) - 0.3)
    finish_axes(ax, TITLES["final"].format(ref=ref_label), "parameter", xlabel=f"(estimate - {ref_label}) / SE")


# --------------------------------------------------------------------------- assembly


def convergence_panels(runs) -> list:
    """The panels the histories of ``runs`` have data for, in the figure's order."""
    hists = [r["history"] for r in runs.values()]
    have = {c: any(column(h, c) is not None for h in hists) for c in ("loglik", "elbo", "m", "rhat_loglik")}
    acc = [column(h, "acceptance_mean") for h in hists]
    panels = ["distance"]
    if have["loglik"] or have["elbo"]:
        panels.append("gap")
    if have["m"]:
        panels.append("sample")
    if _rule_runs(runs):
        panels.append("rule")
    if have["rhat_loglik"]:
        panels.append("rhat")
    if any(a is not None and not np.all(a[np.isfinite(a)] == 1.0) for a in acc):
        panels.append("acceptance")
    return panels


def draw_panel(ax, kind, runs, st, target, names=None, distances=None, tol=None):
    """Draw panel ``kind`` (a key of :data:`TITLES`) of ``runs`` on ``ax``."""
    if kind == "distance":
        _draw_distance(ax, runs, st, target, names)
    elif kind == "gap":
        _draw_gap(ax, runs, st)
    elif kind == "sample":
        _draw_sample(ax, runs, st)
    elif kind == "rule":
        _draw_rule(ax, runs, st)
    elif kind == "rhat":
        _draw_rhat(ax, runs, st)
    elif kind == "acceptance":
        _draw_acceptance(ax, runs, st)
    elif kind == "final":
        _draw_final(ax, distances, st, target.label, tol)
    else:
        raise ValueError(f"unknown panel {kind!r}; panels are {list(TITLES)}")
    if kind != "final":
        iteration_axis(ax, runs)


def iteration_axis(ax, runs):
    """One iteration axis for every panel of a figure: from 0 to the longest run, linear up to
    60 iterations, log beyond 10 for longer runs (a long SAEM run next to a short MCEM run)."""
    last = max(float(np.nanmax(iterations(r["history"]))) for r in runs.values())
    if last > 60:
        ax.set_xscale("symlog", linthresh=10, linscale=0.6)
        ax.set_xlabel("iteration (log scale beyond 10)")
    ax.set_xlim(0, last * 1.06 if last > 60 else last + 0.5)


def plot_convergence(results, reference=None, *, se=None, params=None, reference_label=None, fig=None, ncols=3,
                     title=None):
    """How one fit or several converged, one panel per question (see the module docstring).

    Parameters
    ----------
    results : FitResult, dict, list or Comparison
        The fits (a dict: label -> FitResult; a list: labelled by method). A
        :class:`mcem.Comparison` brings its reference, its standard errors and a last panel with
        every parameter element's final distance from the reference.
    reference : str, FitResult or dict, optional
        Where distances are measured from: a label of ``results``, another fit, or parameter
        values. Default: the Comparison's reference, else each fit's own final estimate.
    se : dict, optional
        The standard errors distances are measured in (default: the reference fit's, else each
        fit's own).
    params : list of str, optional
        Parameters the distances are taken over (default all).
    reference_label : str, optional
        The reference's name in titles and labels (default its label, or ``"reference"``).
    fig : Figure or SubFigure, optional
        Draw into this figure.
    ncols : int
        Columns of the panel grid.
    title : str, optional
        The figure's title (default names the fits).

    Returns
    -------
    Figure (or the given SubFigure)
    """
    runs = as_runs(results)
    if params is not None:
        params = [params] if isinstance(params, str) else list(params)
        valid = list(next(iter(runs.values()))["params"])
        unknown = [n for n in params if n not in valid]
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} in params; valid names are {valid}")
    distances, tol = None, None
    if hasattr(results, "distance_se") and not isinstance(results, Mapping):  # a Comparison
        if reference is None and results.reference_params is not None:
            se = results.reference_se if se is None else se
            reference = (results.reference if results.reference in runs
                         else Target(str(results.reference), results.reference_params, se))
        distances = {m: {k: v for k, v in d.items() if params is None or k in params}
                     for m, d in results.distance_se.items()}
    target = _target(runs, reference, se)
    if reference_label:
        target = target._replace(label=str(reference_label))
    panels = convergence_panels(runs)
    if distances:
        panels.append("final")
        tols = {float(r["settings"]["tol"]) for r in runs.values()
                if any(ms.unit == " SE" for ms in rule_measures(r.get("method"), r.get("settings"), r["history"][0])[0])}
        tol = tols.pop() if len(tols) == 1 else None
    if fig is None:
        import matplotlib.pyplot as plt

        cols = min(ncols, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig = plt.figure(figsize=(4.6 * cols, 3.6 * rows), layout="constrained")
    axes = _grid(fig, len(panels), ncols)
    st = styles(runs)
    for ax, kind in zip(axes, panels, strict=True):
        draw_panel(ax, kind, runs, st, target, params, distances, tol)
    fig.suptitle(title or f"convergence of {', '.join(runs)}")
    return fig


def _target(runs, reference, se):
    if isinstance(reference, Target):
        return reference
    if reference is None:
        return Target("the final estimate", None, se)
    if isinstance(reference, str):
        if reference not in runs:
            raise ValueError(f"reference {reference!r} is not one of the fits {list(runs)}")
        r = runs[reference]
        return Target(reference, r["params"], se if se is not None else own_se(r))
    if isinstance(reference, Mapping) and "history" in reference:
        return Target(run_label(reference, "reference"), reference["params"],
                      se if se is not None else own_se(reference))
    if isinstance(reference, Mapping):
        return Target("reference", dict(reference), se)
    raise TypeError(f"reference must be a label, a FitResult or a dict of parameter values, got {type(reference).__name__}")


def _grid(fig, n, ncols):
    cols = min(ncols, n)
    grid = fig.subplots(math.ceil(n / cols), cols, squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.remove()
    return axes[:n]

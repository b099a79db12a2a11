"""What the figures share: one colour, line style and marker per method (the same in every
figure), the fits a figure takes, history columns, and the log-scaled panel with values at or
below zero drawn as open markers at its foot.

Used by :mod:`mcem.plots`, :mod:`mcem.convergenceplot` and :mod:`mcem.mixtureplot`; matplotlib is
imported only inside functions that need its classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["STYLES", "as_runs", "styles", "column", "iterations", "LogPanel", "finish_axes", "target_lines",
           "plain_log_ticks", "compact_legend", "run_label"]

#: Colour, line style and marker of each method, the same in every figure of the package.
STYLES = {"em": ("C0", "-", "o"), "mcem": ("C1", "--", "s"), "saem": ("C2", "-.", "^"),
          "gem": ("C3", ":", "D"), "vbem": ("C4", (0, (6, 2, 1, 2)), "v")}

# --------------------------------------------------------------------------- the fits


def run_label(r, default="fit"):
    m = r.get("method") if isinstance(r, Mapping) else None
    return str(m) if m else default


def as_runs(results) -> dict:
    """``{label: FitResult}`` from one result, a dict, a list (labelled by method) or a
    :class:`mcem.Comparison`; ValueError when a fit has no history."""
    if hasattr(results, "results") and not isinstance(results, Mapping):
        results = results.results
    if isinstance(results, Mapping) and "history" in results:
        out = {run_label(results): results}
    elif isinstance(results, Mapping):
        out = dict(results)
    elif isinstance(results, list | tuple):
        out = {}
        for r in results:
            lab, k = run_label(r), 2
            while lab in out:
                lab, k = f"{run_label(r)} ({k})", k + 1
            out[lab] = r
    else:  # the check below says what is wrong with it
        out = {"result": results}
    if not out:
        raise ValueError("results is empty: give at least one FitResult")
    for lab, r in out.items():
        hist = r.get("history") if isinstance(r, Mapping) else None
        if hist is None:
            raise ValueError(f"result {lab!r} has no history to plot; expected a FitResult from mcem.fit (or a "
                             f"dict, list or Comparison of them), got {type(r).__name__}")
        if len(hist) == 0:
            raise ValueError(f"result {lab!r} has an empty history (no iterations recorded); nothing to plot")
    return out


def styles(runs) -> dict:
    """Label -> ``{"color", "ls", "marker"}``: a method's own style (:data:`STYLES`); a second fit
    of the same method, or an unknown method, gets a colour of its own."""
    out, used = {}, set()
    spare = iter([f"C{j}" for j in range(5, 10)] * 10)
    for lab, r in runs.items():
        m = run_label(r, lab)
        c, ls, mk = STYLES.get(m, (None, "-", "o"))
        if c is None or c in used:
            c = next(spare)
        used.add(c)
        out[lab] = {"color": c, "ls": ls, "marker": mk}
    return out


def column(hist, name):
    """History column ``name`` as floats, or None when absent, not numeric or never finite."""
    if name not in hist.columns:
        return None
    v = hist[name]
    if v.dtype == object:
        return None
    v = np.asarray(v, dtype=float)
    return v if np.isfinite(v).any() else None


def iterations(hist):
    """The iteration numbers of a history's rows."""
    it = column(hist, "iter")
    return np.arange(len(hist), dtype=float) if it is None else it


# --------------------------------------------------------------------------- log panels


class LogPanel:
    """A log-scaled panel: lines through positive values, open markers at the foot for the rest."""

    def __init__(self, ax):
        self.ax, self.heights, self.foot = ax, [], False

    def line(self, x, v, st, label, floor=0.0, **kw):
        ok = np.isfinite(v)
        hi = ok & (v > floor)
        n = int(hi.sum())
        every = max(1, n // 25)
        self.ax.plot(x[hi], v[hi], color=st["color"], ls=st["ls"], marker=st["marker"], ms=3.5, lw=1.4,
                     markevery=every, label=label, **kw)
        self.heights.append(v[hi])
        lo = ok & ~hi & ~np.isinf(v)
        if lo.any():
            self.ax.plot(x[lo], np.full(lo.sum(), 0.02), ls="none", marker=st["marker"], ms=4, mfc="none",
                         color=st["color"], transform=self.ax.get_xaxis_transform(), clip_on=False)
            self.foot = True

    def finish(self, title, ylabel, foot_words="0: at the foot"):
        ax = self.ax
        if self.foot:
            ax.plot([], [], ls="none", marker="o", mfc="none", color="0.4", label=foot_words)
        ax.set_yscale("log")
        h = np.concatenate([np.ravel(v) for v in self.heights]) if self.heights else np.zeros(0)
        h = h[np.isfinite(h) & (h > 0)]
        if h.size:  # room above the lines for the legend
            lo, hi = math.log10(h.min() / 2.0), math.log10(h.max() * 2.0)
            hi += min(max(0.3 * (hi - lo), 0.6), 2.0)
            ax.set_ylim(10**lo, 10**hi)
            plain_log_ticks(ax.yaxis, hi - lo)
        finish_axes(ax, title, ylabel)


def compact_legend(ax, **kw):
    """A compact legend (two columns from six entries on)."""
    n = len(ax.get_legend_handles_labels()[1])
    opts = dict(fontsize=7, ncol=2 if n > 5 else 1, framealpha=0.85, handlelength=2.2, labelspacing=0.3,
                borderpad=0.3, columnspacing=1.0)
    return ax.legend(**{**opts, **kw})


def finish_axes(ax, title, ylabel, xlabel="iteration", legend=True):
    """Title (unless None), axis labels and (``legend``) a compact legend."""
    if title is not None:
        ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        compact_legend(ax)


def target_lines(ax, values, words, color="0.35"):
    """Dotted horizontal lines at the distinct targets ``values`` (label ``words.format(value)``)."""
    for j, v in enumerate(sorted(set(values), reverse=True)):
        ax.axhline(v, color=color, ls=(0, (1, 2 + 2 * j)), lw=1.1, label=words.format(f"{v:g}"))


def plain_log_ticks(axis, decades=1.0):
    """Tick labels of a log axis as plain numbers (40, not 4 x 10^1); at 1, 2 and 5 times the
    powers of ten on an axis of fewer than three ``decades``, else at powers of ten only."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades < 3 else (1.0,), numticks=8))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())

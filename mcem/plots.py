"""Plots of fits: the overview of one fit (:func:`plot_fit`), the convergence of several side by
side (:func:`plot_convergence`), a mixture's data with the fitted components (:func:`plot_mixture`),
the bound (:func:`plot_bound`), and single panels: parameter paths, delta-Q, sample sizes,
E-step diagnostics, log-likelihood paths.

Every function returns the matplotlib Figure it drew on and never calls ``plt.show()``.
Matplotlib is imported inside the functions, so ``import mcem`` does not load it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np

from .boundplot import plot_bound
from .convergenceplot import Target, convergence_panels, draw_panel, iteration_axis, own_se, plot_convergence
from .mixtureplot import plot_mixture
from .plotstyle import styles

__all__ = [
    "plot_bound",
    "plot_convergence",
    "plot_delta_q",
    "plot_diagnostics",
    "plot_fit",
    "plot_loglik",
    "plot_mixture",
    "plot_paths",
    "plot_sample_size",
]

_PANEL_W, _PANEL_H = 3.6, 2.7


# --------------------------------------------------------------------------- helpers


def _history(result, what="result"):
    """The History of ``result``; ValueError when there is none or it has no rows."""
    hist = result.get("history") if isinstance(result, Mapping) else getattr(result, "history", None)
    if hist is None:
        raise ValueError(f"{what} has no history to plot; expected a FitResult from mcem.fit, got {type(result).__name__}")
    if len(hist) == 0:
        raise ValueError(f"{what} has an empty history (no iterations recorded); nothing to plot")
    return hist


def _col(hist, name):
    """Column ``name`` as a float array, or None when absent or never finite."""
    if name not in hist.columns:
        return None
    try:
        v = np.asarray(hist[name], dtype=float)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v).any() else None


def _iters(hist):
    it = _col(hist, "iter")
    return np.arange(len(hist), dtype=float) if it is None else it


def _label(result, default="fit"):
    m = result.get("method") if isinstance(result, Mapping) else None
    return str(m) if m else default


def _ref_label(reference):
    m = reference.get("method") if isinstance(reference, Mapping) else None
    return "exact EM" if m == "em" else (str(m) if m else "reference")


def _element_label(name, idx):
    return f"{name}[{','.join(map(str, idx))}]" if idx else name


def _new_figure(n_panels, ncols=None, fig=None, size=(_PANEL_W, _PANEL_H)):
    """A figure (or the given Figure/SubFigure) with ``n_panels`` axes in a grid."""
    ncols = ncols or min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n_panels:]:
        ax.remove()
    return fig, axes[:n_panels]


def _own_ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(_PANEL_W * 1.4, _PANEL_H * 1.2), layout="constrained")
        return fig, ax
    return ax.figure, ax


def _param_names(hist, params):
    valid = list(hist[0]["params"].keys())
    if params is None:
        return valid
    names = [params] if isinstance(params, str) else list(params)
    for n in names:
        if n not in valid:
            raise ValueError(f"unknown parameter {n!r}; valid names are {valid}")
    return names


# --------------------------------------------------------------------------- paths


def _draw_path(ax, hist, name, reference=None, ref_hist=None, ref_label=None):
    """One panel: the path of parameter ``name`` (one line per element), a reference fit's path
    dashed; a reference of parameter values (``ref_hist`` None) as dotted lines."""
    x = _iters(hist)
    path = hist.params(name)
    shape = path.shape[1:]
    flat = path.reshape(len(path), -1)
    idxs = list(np.ndindex(shape)) if shape else [()]
    ref_flat = ref_final = None
    values = None
    if reference is not None and ref_hist is None:
        values = np.ravel(np.asarray(reference[name], dtype=float)) if name in reference else None
        reference = None
    if reference is not None:
        ref_path = ref_hist.params(name)
        ref_final = np.asarray(reference["params"][name], dtype=float)
        if ref_path.shape[1:] != shape or ref_final.shape != shape:
            raise ValueError(
                f"reference parameter {name!r} has shape {ref_final.shape}, the result's has {shape}"
            )
        ref_flat = ref_path.reshape(len(ref_path), -1)
        ref_final = ref_final.reshape(-1)
        ref_x = _iters(ref_hist)
        rlabel = ref_label or _ref_label(reference)
    for j, idx in enumerate(idxs):
        color = f"C{j % 10}"
        ax.plot(x, flat[:, j], color=color, marker=".", ms=3, label=_element_label(name, idx))
        if ref_flat is not None:
            ax.plot(ref_x, ref_flat[:, j], color=color, ls="--", lw=1, alpha=0.8,
                    label=rlabel if j == 0 else "_nolegend_")
            ax.axhline(ref_final[j], color=color, ls=":", lw=0.8,
                       label=f"{rlabel} final" if j == 0 else "_nolegend_")
    for j, v in enumerate(values if values is not None else ()):
        ax.axhline(v, color="k", ls=":", lw=1.2, label=(ref_label or "reference") if j == 0 else "_nolegend_")
    ax.set_xlabel("iteration")
    ax.set_ylabel(name)
    ax.set_title(name)
    if len(idxs) > 1 or ref_flat is not None or values is not None:
        handles, labels = ax.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: labels[i].startswith(rlabel) if ref_flat is not None else 0)
        ax.legend([handles[i] for i in order], [labels[i] for i in order],
                  fontsize="x-small", ncol=2 if len(idxs) > 4 else 1)


def plot_paths(result, params=None, reference=None, *, max_panels=12, ncols=None, fig=None):
    """Parameter paths over the iterations, one panel per parameter.

    Scalar parameters give one line; an array parameter gives one line per element, labelled
    like ``means[0,1]``.

    Parameters
    ----------
    result : FitResult
    params : str or list of str, optional
        Parameter names (default: all, in the model's order).
    reference : FitResult, optional
        Another fit (for example exact EM) whose path is overlaid dashed, labelled
        ``"exact EM"`` (or its method name), with a dotted line at its final value.
    max_panels : int
        At most this many panels; further parameters are left out with a warning.
    ncols : int, optional
        Columns of the panel grid (default up to 3).
    fig : Figure or SubFigure, optional
        Draw into this figure instead of a new one.
    """
    hist = _history(result)
    names = _param_names(hist, params)
    ref_hist = _history(reference, "reference") if reference is not None else None
    if reference is not None:
        ref_names = list(ref_hist[0]["params"].keys())
        missing = [n for n in names if n not in ref_names]
        if missing:
            raise ValueError(f"reference lacks parameter(s) {missing}; its names are {ref_names}")
    if max_panels < 1:
        raise ValueError(f"max_panels must be >= 1, got {max_panels}")
    if len(names) > max_panels:
        warnings.warn(f"plot_paths: showing {max_panels} of {len(names)} parameters; "
                      f"left out {names[max_panels:]} (raise max_panels or pass params=)", stacklevel=2)
        names = names[:max_panels]
    fig, axes = _new_figure(len(names), ncols, fig)
    for ax, name in zip(axes, names):
        _draw_path(ax, hist, name, reference, ref_hist)
    return fig


# --------------------------------------------------------------------------- delta-Q


def _draw_delta_q(ax, result, hist, yscale="symlog", linthresh=None):
    dq = _col(hist, "delta_q")
    if dq is None:
        raise ValueError(
            f"result (method {_label(result)!r}) has no 'delta_q' column; delta-Q is recorded by "
            f"method='mcem'. Columns: {[c for c in hist.columns if c != 'params']}"
        )
    if yscale not in ("linear", "symlog"):
        raise ValueError(f"yscale must be 'linear' or 'symlog', got {yscale!r}")
    x = _iters(hist)
    ok = np.isfinite(dq)
    lower, upper, mcse = _col(hist, "lower"), _col(hist, "upper"), _col(hist, "mcse")
    if lower is not None and upper is not None:
        lo, hi, band_label = lower, upper, "confidence bounds"
    elif mcse is not None:
        lo, hi, band_label = dq - 2 * mcse, dq + 2 * mcse, "± 2 MCSE"
    else:
        lo = hi = None
    if lo is not None:
        b = ok & np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(x[b], lo[b], hi[b], color="C0", alpha=0.25, lw=0, label=band_label)
    ax.plot(x[ok], dq[ok], color="C0", marker="o", ms=3, label="delta Q")
    swamp = _col(hist, "mc_error_dominates")
    if swamp is not None:
        s = ok & (swamp > 0)
        if s.any():
            ax.plot(x[s], dq[s], ls="none", marker="x", color="C3", label="MC error dominates")
    ax.axhline(0.0, color="k", lw=0.8)
    settings = result.get("settings") or {}
    tol = settings.get("tol")
    if settings.get("stop") == "ascent" and tol is not None:
        ax.axhline(tol, color="C2", ls=":", lw=1, label=f"tol = {tol:g}")
    if yscale == "symlog":
        _symlog(ax, [v for v in (dq, lo, hi) if v is not None], dq, linthresh)
    ax.set_xlabel("iteration")
    ax.set_ylabel("delta Q")
    ax.set_title("delta Q")
    ax.legend(fontsize="x-small")


def _symlog(ax, arrays, primary, linthresh=None, max_ticks=7):
    """Symlog y axis with a linear range below the smallest |primary| value and few ticks."""
    from matplotlib.ticker import FixedLocator

    vals = np.concatenate([v[np.isfinite(v)] for v in arrays])
    prim = np.abs(primary[np.isfinite(primary)])
    prim = prim[prim > 0]
    if linthresh is None:
        linthresh = 10.0 ** math.floor(math.log10(prim.min())) if prim.size else 1e-3
    ax.set_yscale("symlog", linthresh=linthresh)
    lo_dec = math.floor(math.log10(linthresh))
    vmax, vmin = (vals.max(), vals.min()) if vals.size else (linthresh, 0.0)
    pos = list(range(lo_dec, math.ceil(math.log10(vmax)) + 1)) if vmax > linthresh else [lo_dec]
    neg = list(range(lo_dec, math.ceil(math.log10(-vmin)) + 1)) if vmin < -linthresh else []
    stride = max(1, math.ceil((len(pos) + len(neg)) / max_ticks))
    ticks = [0.0] + [10.0**k for k in pos[::-1][::stride]] + [-(10.0**k) for k in neg[::-1][::stride]]
    ax.yaxis.set_major_locator(FixedLocator(sorted(ticks)))
    ax.yaxis.set_minor_locator(FixedLocator([]))
    if vmin >= 0:
        ax.set_ylim(bottom=-linthresh)


def plot_delta_q(result, ax=None, *, yscale="symlog", linthresh=None):
    """Delta-Q (the estimated ascent of Q) per iteration with its confidence band.

    The band comes from the history's ``lower``/``upper`` columns, else ``delta_q ± 2·mcse``.
    ``yscale``: ``"symlog"`` (default; delta-Q spans orders of magnitude and changes sign) or
    ``"linear"``; ``linthresh`` is the symlog linear range (default from the data).
    Iterations where the Monte Carlo error dominated are marked with crosses, and for the ascent
    stopping rule the ``tol`` the upper bound is compared with is drawn dotted.
    """
    hist = _history(result)
    fig, ax = _own_ax(ax)
    _draw_delta_q(ax, result, hist, yscale, linthresh)
    return fig


# --------------------------------------------------------------------------- sample size


def _draw_sample_size(ax, result, hist, logy=True):
    m = _col(hist, "m")
    if m is None:
        raise ValueError(
            f"result (method {_label(result)!r}) has no 'm' column (Monte Carlo sample size); "
            f"columns: {[c for c in hist.columns if c != 'params']}"
        )
    x = _iters(hist)
    ok = np.isfinite(m) & (x > 0) if (x > 0).any() else np.isfinite(m)
    ax.step(x[ok], m[ok], where="mid", color="C0", label="m")
    app = _col(hist, "appended")
    if app is not None:
        a = ok & np.isfinite(app) & (app > 0)
        if a.any():
            ax.plot(x[a], m[a], ls="none", marker="o", color="C1", label="appended rounds")
            for xi, mi, k in zip(x[a], m[a], app[a]):
                ax.annotate(f"+{int(k)}", (xi, mi), textcoords="offset points", xytext=(3, 4),
                            fontsize="x-small", color="C1")
    if logy and np.all(m[ok] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("m (draws)")
    ax.set_title("Monte Carlo sample size")
    ax.legend(fontsize="x-small")


def plot_sample_size(result, ax=None, *, logy=True):
    """The Monte Carlo sample size ``m`` per iteration (a step plot; log y unless ``logy=False``).

    Iterations that appended draws (the ascent schedule's extra rounds) are marked, annotated
    with the number of rounds, when the history has an ``appended`` column.
    """
    hist = _history(result)
    fig, ax = _own_ax(ax)
    _draw_sample_size(ax, result, hist, logy)
    return fig


# --------------------------------------------------------------------------- diagnostics


def _draw_acceptance(ax, hist):
    x = _iters(hist)
    for col, style, lab in (("acceptance_mean", "-", "mean"), ("acceptance_min", "--", "min")):
        v = _col(hist, col)
        if v is not None:
            ok = np.isfinite(v)
            ax.plot(x[ok], v[ok], ls=style, marker=".", ms=3, label=lab)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("iteration")
    ax.set_ylabel("acceptance rate")
    ax.set_title("MCMC acceptance")
    ax.legend(fontsize="x-small")


def _draw_rhat(ax, hist, threshold):
    x = _iters(hist)
    v = _col(hist, "rhat_loglik")
    ok = np.isfinite(v)
    ax.plot(x[ok], v[ok], marker=".", ms=3, color="C0", label="R-hat (log-joint)")
    ax.axhline(threshold, color="C3", ls="--", lw=1, label=f"{threshold:g}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("R-hat")
    ax.set_title("R-hat of the log-joint trace")
    ax.legend(fontsize="x-small")


def _diag_panels(hist):
    panels = []
    if _col(hist, "acceptance_mean") is not None or _col(hist, "acceptance_min") is not None:
        panels.append("acceptance")
    if _col(hist, "rhat_loglik") is not None:
        panels.append("rhat")
    return panels


def plot_diagnostics(result, axes=None, *, rhat_threshold=None):
    """E-step diagnostics per iteration: acceptance (mean and min over sites) and the R-hat of
    the log-joint trace, with a dashed line at ``rhat_threshold`` (default the fit's
    ``max_rhat`` setting, 1.05).

    ``axes``: a sequence of Axes, one per panel drawn (panels whose columns the history lacks
    are skipped).
    """
    hist = _history(result)
    panels = _diag_panels(hist)
    if not panels:
        raise ValueError(
            f"result (method {_label(result)!r}) has no E-step diagnostics (acceptance_mean, "
            f"acceptance_min, rhat_loglik); columns: {[c for c in hist.columns if c != 'params']}"
        )
    if rhat_threshold is None:
        rhat_threshold = float((result.get("settings") or {}).get("max_rhat", 1.05))
    if axes is None:
        fig, axes = _new_figure(len(panels), ncols=len(panels))
    else:
        axes = list(np.ravel(axes))
        if len(axes) != len(panels):
            raise ValueError(f"plot_diagnostics draws {len(panels)} panel(s) {panels}; got {len(axes)} axes")
        fig = axes[0].figure
    for ax, p in zip(axes, panels):
        if p == "acceptance":
            _draw_acceptance(ax, hist)
        else:
            _draw_rhat(ax, hist, rhat_threshold)
    return fig


# --------------------------------------------------------------------------- log-likelihood


def _as_results(results):
    if isinstance(results, Mapping) and "history" not in results:
        return dict(results)
    if isinstance(results, Mapping):
        return {_label(results): results}
    if isinstance(results, list | tuple):
        out = {}
        for r in results:
            lab, k = _label(r), 2
            while lab in out:
                lab, k = f"{_label(r)} ({k})", k + 1
            out[lab] = r
        return out
    return {_label(results, "result"): results}  # _history says what is wrong with it


def plot_loglik(results, ax=None):
    """Log-likelihood paths over the iterations, several fits overlaid.

    ``results``: a FitResult (labelled by its method), a dict ``{label: FitResult}`` or a list
    of FitResults. Every fit must have recorded the exact log-likelihood (``loglik`` column).
    """
    res = _as_results(results)
    if not res:
        raise ValueError("plot_loglik: no results given")
    lls = {}
    for lab, r in res.items():
        hist = _history(r, f"result {lab!r}")
        ll = _col(hist, "loglik")
        if ll is None:
            raise ValueError(f"result {lab!r} has no log-likelihood in its history (the model has no "
                             "exact log-likelihood, or it was fitted with track_loglik=False)")
        lls[lab] = (_iters(hist), ll)
    fig, ax = _own_ax(ax)
    for j, (lab, (x, ll)) in enumerate(lls.items()):
        ok = np.isfinite(ll)
        ax.plot(x[ok], ll[ok], marker=".", ms=3, color=f"C{j % 10}", label=str(lab),
                ls="--" if j else "-")
    ax.set_xlabel("iteration")
    ax.set_ylabel("log-likelihood")
    ax.set_title("log-likelihood")
    ax.legend(fontsize="x-small")
    return fig


# --------------------------------------------------------------------------- composite


def _fit_target(result, reference, se, ref_label):
    """The runs the convergence panels of :func:`plot_fit` draw and where distances are measured from."""
    runs = {_label(result): result}
    if reference is None:
        return runs, Target("the final estimate", None, se)
    if isinstance(reference, Mapping) and "history" in reference:
        lab = ref_label or _ref_label(reference)
        runs[lab if lab not in runs else f"{lab} (reference)"] = reference
        if se is None:
            se = own_se(reference)
        return runs, Target(lab, reference["params"], se if se is not None else own_se(result))
    if not isinstance(reference, Mapping):
        raise TypeError(f"reference must be a FitResult or a dict of parameter values, got {type(reference).__name__}")
    return runs, Target(ref_label or "reference", dict(reference), se if se is not None else own_se(result))


def plot_fit(result, reference=None, *, se=None, reference_label=None, max_params=3, ncols=3):
    """An overview figure of one fit.

    Panels: the paths of the first ``max_params`` parameters; the distance of each iterate from
    the reference (or from the final estimate) in standard errors, log scale, with the iterate's
    Monte Carlo band where the history has it; the log-likelihood below its maximum (log scale;
    VB-EM without one: its bound); delta-Q (MCEM); the draws m and their ESS; the stopping rule's
    measures against their targets (:data:`mcem.progress.RULES`); R-hat and acceptance. Panels
    whose history columns are absent are left out, so exact EM shows its paths, its distance,
    its log-likelihood gap and its rule. See :mod:`mcem.convergenceplot`.

    Parameters
    ----------
    result : FitResult
    reference : FitResult or dict, optional
        Another fit (for example exact EM), overlaid dashed and drawn in the convergence panels,
        or parameter values (a closed-form or quadrature MLE), dotted on the path panels.
        Distances are measured from it.
    se : dict, optional
        The standard errors distances are measured in (default: the reference fit's, else the
        result's own). Without any, the distance panel is left out.
    reference_label : str, optional
        The reference's name in legends and titles (default ``"exact EM"`` for an EM fit, its
        method otherwise, ``"reference"`` for values).
    max_params, ncols : int
        Parameter panels drawn, and columns of the grid.
    """
    hist = _history(result)
    ref_hist = _history(reference, "reference") if isinstance(reference, Mapping) and "history" in reference else None
    runs, target = _fit_target(result, reference, se, reference_label)
    names = list(hist[0]["params"].keys())[:max_params]
    panels = [("path", n) for n in names]
    conv = convergence_panels(runs)
    if target.se is None and own_se(result) is None:  # no standard errors to measure in
        conv.remove("distance")
    if _col(hist, "delta_q") is not None:
        conv.insert(conv.index("gap") + 1 if "gap" in conv else 1, "delta_q")
    panels += [(k, None) for k in conv]
    fig, axes = _new_figure(len(panels), min(ncols, len(panels)), size=(4.4, 3.3))
    st = styles(runs)
    for ax, (kind, name) in zip(axes, panels):
        if kind == "path":
            ref = reference if reference is not None and (ref_hist is None or name in ref_hist[0]["params"]) else None
            _draw_path(ax, hist, name, ref, ref_hist, target.label)
            iteration_axis(ax, runs)
        elif kind == "delta_q":
            _draw_delta_q(ax, result, hist)
            iteration_axis(ax, runs)
        else:
            draw_panel(ax, kind, runs, st, target)
    how = ("converged" if result.get("converged") else "not converged") + (
        f" ({result['stopped_by']})" if result.get("stopped_by") else "")
    fig.suptitle(f"mcem fit: method={_label(result)!r}, {result.get('n_iter', len(hist) - 1)} iterations, {how}")
    return fig

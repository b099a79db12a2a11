"""A figure of the evidence lower bound along one or more fits: :func:`plot_bound`.

    log p(x; theta) = L(q, theta) + KL(q || p(z | x; theta))

The terms come from :func:`mcem.inference.bound.bound_path` (exact for a model with one
discrete unit latent, the recorded bound of VB-EM otherwise). Matplotlib is imported inside the
function, so importing this module does not load it; the figure is returned, never shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .inference.bound import NoBoundError, bound_path, loglik_path
from .plotstyle import as_runs, column, styles

__all__ = ["plot_bound"]

#: Exact values at or below this (a converged EM reaches rounding level) are drawn as markers at the
#: foot of the log axes, off the lines.
FLOOR = 1e-12
_PANEL_W, _PANEL_H = 4.4, 3.3

TITLES = {
    "bound": "the bound and the log-likelihood",
    "kl": "KL(q || p(z | x; θ_t)): the gap",
    "brackets": "the rise of Q and of H per iteration",
    "ascent": "the ascent of Q and of log p",
}


# --------------------------------------------------------------------------- inputs


def _as_results(results):
    """``{label: result}`` from one result, a dict of them or a list (labelled by method)."""
    if not isinstance(results, Mapping | list | tuple):
        raise TypeError("results must be a FitResult, a dict label -> FitResult or a list of FitResults, "
                        f"got {type(results).__name__}")
    single = isinstance(results, Mapping) and "history" in results
    items = [] if single else results.items() if isinstance(results, Mapping) else enumerate(results)
    for lab, r in items:
        if not isinstance(r, Mapping) or "history" not in r:
            raise TypeError(f"results[{lab!r}] must be a FitResult from mcem.fit (with a history), "
                            f"got {type(r).__name__}")
    return as_runs(results)


def _gather(runs, model, loglik):
    """Per label: the bound path (or None), and the Monte Carlo ascent (or None)."""
    out = {}
    for lab, r in runs.items():
        try:
            bp = bound_path(r, model, loglik=loglik)
        except NoBoundError:
            bp = None
        hist = r["history"]
        dq, se = column(hist, "delta_q"), column(hist, "mcse")
        ascent = None
        if dq is not None and se is not None:
            ll = bp["loglik"] if bp is not None else loglik_path(r, model, loglik=loglik)
            ascent = {"iter": bp["iter"] if bp is not None else _iters(hist), "delta_q": dq, "mcse": se,
                      "loglik": ll, "exact_q": bp["delta_q"] if bp is not None else None}
        out[lab] = (bp, ascent)
    return out


def _iters(hist):
    it = column(hist, "iter")
    return np.arange(len(hist), dtype=float) if it is None else it


# --------------------------------------------------------------------------- panels


def _pos(v):
    return np.maximum(v, FLOOR)


def _styles(runs):
    """Label -> colour, marker and line width: the method's colour and marker of every figure
    (:data:`mcem.plotstyle.STYLES`), the first fit widest (overlapping paths stay visible)."""
    st = styles(runs)
    return {lab: (st[lab]["color"], st[lab]["marker"], max(2.6 - 0.7 * j, 1.0)) for j, lab in enumerate(runs)}


def _log_line(ax, x, v, noisy=False, **kw):
    """``v`` on a log axis; returns ``(heights drawn, whether markers went to the foot)``.

    A line through the values above FLOOR (exact values) or above 0 (Monte Carlo, ``noisy``);
    the others as bare markers at the foot of the axis, not joined (reaching the floor is
    not a plunge, and a non-positive Monte Carlo estimate is noise around a small value).
    """
    ok = np.isfinite(v)
    hi = ok & (v > (0.0 if noisy else FLOOR))
    ax.plot(x, np.where(hi, v, np.nan), **kw)
    lo = ok & ~hi
    if lo.any():
        ax.plot(x[lo], np.full(lo.sum(), 0.02), ls="none", marker="v" if noisy else kw.get("marker", "o"), ms=5,
                mfc="none", color=kw.get("color"), transform=ax.get_xaxis_transform(), clip_on=False)
    return v[hi], bool(lo.any())


def _foot_legend(ax, exact, noisy, exact_words):
    """Grey legend entries for the markers at the foot of the axis."""
    if exact:
        ax.plot([], [], ls="none", marker="o", mfc="none", color="0.4",
                label=f"{exact_words} (≤ {FLOOR:g}): at the foot")
    if noisy:
        ax.plot([], [], ls="none", marker="v", mfc="none", color="0.4", label="Monte Carlo estimate ≤ 0: at the foot")


def _limits(ax, heights):
    """Log-axis limits from the lines and markers drawn (bands may be clipped)."""
    h = np.concatenate([np.ravel(v) for v in heights]) if heights else np.zeros(0)
    h = h[np.isfinite(h) & (h > 0)]
    if h.size:
        ax.set_ylim(h.min() / 3.0, h.max() * 3.0)


def _noisy(bp):
    se = bp["elbo_mcse"]
    return bool(np.any(np.isfinite(se) & (se > 0)))


class _Axis:
    """What a log panel drew: heights for the limits, and which kinds of markers sit at the foot."""

    def __init__(self, ax):
        self.ax, self.heights, self.exact_foot, self.noisy_foot = ax, [], False, False

    def line(self, x, v, noisy=False, **kw):
        h, foot = _log_line(self.ax, x, v, noisy, **kw)
        self.heights.append(h)
        self.exact_foot |= foot and not noisy
        self.noisy_foot |= foot and noisy

    def finish(self, title, ylabel, exact_words):
        ax = self.ax
        _foot_legend(ax, self.exact_foot, self.noisy_foot, exact_words)
        ax.set_yscale("log")
        _limits(ax, self.heights)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize="x-small")


def _draw_bound(ax, paths, order):
    lls = [bp["loglik"][np.isfinite(bp["loglik"])] for bp in paths.values()]
    lls = np.concatenate(lls) if lls else np.zeros(0)
    if lls.size:
        ref, what = float(lls.max()), "max log p"
    else:
        ref, what = float(max(np.nanmax(bp["elbo"]) for bp in paths.values())), "max L"
    out, gap_labelled = _Axis(ax), False
    for lab, bp in paths.items():
        c, mk, lw = order[lab]
        x, ll, el, se = bp["iter"], bp["loglik"], bp["elbo"], bp["elbo_mcse"]
        ok_l, ok_e = np.isfinite(ll), np.isfinite(el)
        if ok_l.any():
            out.line(x, ref - ll, False, color=c, marker=mk, ms=3, lw=lw, label=f"{lab}: log p(x; θ_t)")
        out.line(x, ref - el, _noisy(bp), color=c, ls="--", marker=mk, ms=3, lw=max(lw - 0.8, 0.8), mfc="none",
                 label=f"{lab}: L(q, θ_t)")
        gap = ok_l & ok_e & (el < ll)
        if gap.any():
            ax.fill_between(x, _pos(ref - ll), _pos(ref - el), where=gap, color=c, alpha=0.12, lw=0,
                            label="_nolegend_" if gap_labelled else "gap = KL (shaded)")
            gap_labelled = True
        band = ok_e & np.isfinite(se) & (se > 0)
        if band.any():
            ax.fill_between(x[band], _pos(ref - el[band] - 2 * se[band]), _pos(ref - el[band] + 2 * se[band]),
                            color=c, alpha=0.15, lw=0, label=f"{lab}: L ± 2 MCSE")
    out.finish(TITLES["bound"], f"{what} − value (nats)", "at the max")


def _draw_kl(ax, paths, runs, order):
    out = _Axis(ax)
    for lab, bp in paths.items():
        c, mk, lw = order[lab]
        x, kl, se = bp["iter"], bp["kl"], bp["elbo_mcse"]
        ok = np.isfinite(kl) & (x > 0)
        if _noisy(bp):
            mc = ok & np.isfinite(se) & (se > 0)
            ax.fill_between(x[mc], _pos(kl[mc] - 2 * se[mc]), _pos(kl[mc] + 2 * se[mc]), color=c, alpha=0.15,
                            lw=0, label=f"{lab}: ± 2 MCSE")
            out.line(x, np.where(ok, kl, np.nan), True, color=c, marker=mk, ms=3, lw=1,
                     label=f"{lab}: log p − L (L a Monte Carlo estimate)")
        else:
            out.line(x, np.where(ok, kl, np.nan), False, color=c, marker=mk, ms=3, lw=lw,
                     label=f"{lab}: KL(q_(t−1) || p(z | x; θ_t))")
        fin = runs[lab].get("kl")
        if isinstance(fin, Mapping) and float(fin.get("mcse", 0) or 0) > 0 and float(fin.get("value", 0)) > 0:
            v, s = float(fin["value"]), float(fin["mcse"])
            ax.axhline(v, color=c, ls=":", lw=1.5,
                       label=f"{lab}: KL at the estimate ± 2 MCSE ({int(fin.get('n_draws', 0))} draws)")
            ax.axhspan(max(v - 2 * s, FLOOR), v + 2 * s, color=c, alpha=0.12, lw=0)
            out.heights.append(np.array([v]))
    out.finish(TITLES["kl"], "KL (nats)", "KL")


def _draw_brackets(ax, paths, order):
    out = _Axis(ax)
    for lab, bp in paths.items():
        c, mk, lw = order[lab]
        x = bp["iter"]
        for key, ls, fill, name in (("delta_q", "-", c, "Q increase"),
                                    ("delta_h", "--", "none", "H increase (≥ 0 by Gibbs)")):
            v = bp[key]
            out.line(x, np.where(v >= -FLOOR, v, np.nan), False, color=c, ls=ls, marker=mk, ms=3, mfc=fill,
                     lw=lw if key == "delta_q" else max(lw - 0.8, 0.8), label=f"{lab}: {name}")
            neg = np.isfinite(v) & (v < -FLOOR)
            if neg.any():
                ax.plot(x[neg], -v[neg], ls="none", marker="x", color=c, ms=6, mew=1.5,
                        label=f"{lab}: {name.split(' ')[0]} decrease (|value|)")
                out.heights.append(-v[neg])
    out.finish(TITLES["brackets"], "increase over the iteration (nats)", "|change|")


def _draw_ascent(ax, ascents, order):
    for lab, a in ascents.items():
        c, mk, lw = order[lab]
        x = a["iter"]
        dq = np.where(np.isfinite(a["delta_q"]), a["delta_q"], 0.0)
        var = np.where(np.isfinite(a["mcse"]), a["mcse"], 0.0) ** 2
        dq[0], var[0] = 0.0, 0.0
        cum, band = np.cumsum(dq), 2.0 * np.sqrt(np.cumsum(var))
        ax.fill_between(x, cum - band, cum + band, color=c, alpha=0.2, lw=0, label=f"{lab}: ± 2 sqrt(Σ mcse²)")
        ax.plot(x, cum, color=c, marker=mk, ms=3, label=f"{lab}: estimated Q ascent (Σ delta Q)")
        ll = a["loglik"]
        if np.isfinite(ll[0]) and np.isfinite(ll).any():
            ok = np.isfinite(ll)
            ax.plot(x[ok], ll[ok] - ll[0], color=c, ls="--", marker=".", ms=3,
                    label=f"{lab}: log p(x; θ_t) − log p(x; θ_0)")
        ex = a["exact_q"]
        if ex is not None and np.isfinite(ex).any():
            e = np.where(np.isfinite(ex), ex, 0.0)
            e[0] = 0.0
            ax.plot(x, np.cumsum(e), color=c, ls=":", lw=1.5, label=f"{lab}: exact Q ascent (Σ exact delta Q)")
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xlabel("iteration")
    ax.set_ylabel("change since iteration 0 (nats)")
    ax.set_title(TITLES["ascent"])
    ax.legend(fontsize="x-small")


# --------------------------------------------------------------------------- figure


def plot_bound(results, model=None, *, loglik=None, fig=None):
    """The evidence lower bound, the log-likelihood and their gap (the KL) along one or more fits.

    Panels (those with nothing to show are left out): (a) the log-likelihood log p(x; θ_t)
    (solid) and the bound L(q, θ_t) (dashed; ± 2 MCSE where it is a Monte Carlo estimate) as
    their distance below the largest log-likelihood reached, on a log axis, the gap shaded;
    (b) the KL per iteration, log axis; q is the E step's q before the M step that gave θ_t, so
    exact EM shows KL(q_(t−1) || p(z | x; θ_t)), and VB-EM with a Gaussian q keeps a gap that
    does not close (its value at the estimate, from the fit's final draws, dotted); (c) for a
    model with one discrete unit latent, the rise of Q and of H over each iteration (both
    ≥ 0 for EM; H's ≥ 0 for every method by Gibbs' inequality), log axis, decreases marked
    with crosses; (d) for Monte Carlo results with ``delta_q`` and ``mcse`` in the history, the
    cumulative sum of delta-Q with a ± 2 sqrt(Σ mcse²) band, next to the rise of the
    log-likelihood where it is known (for EM the rise of Q is a lower bound of it) and the
    exact rise of Q where the model gives it.

    Parameters
    ----------
    results : FitResult, dict or list
        One fit, a dict ``{label: FitResult}`` or a list of fits (labelled by method).
    model : Model, optional
        The model of every fit; default each result's own.
    loglik : callable, optional
        ``theta -> log p(x; theta)`` for a model without an exact log-likelihood (a
        quadrature, say); see :func:`mcem.inference.bound.bound_path`.
    fig : Figure or SubFigure, optional
        Draw into this figure instead of a new one.

    Returns
    -------
    matplotlib.figure.Figure
    """
    runs = _as_results(results)
    if fig is not None and not hasattr(fig, "subplots"):
        raise TypeError(f"fig must be a matplotlib Figure or SubFigure, got {type(fig).__name__}")
    got = _gather(runs, model, loglik)
    order = _styles(runs)
    paths = {lab: bp for lab, (bp, _) in got.items() if bp is not None}
    ascents = {lab: a for lab, (_, a) in got.items() if a is not None}
    panels = []
    if any(np.isfinite(bp["loglik"]).any() or np.isfinite(bp["elbo"]).any() for bp in paths.values()):
        panels += ["bound"]
        if any(np.isfinite(bp["kl"]).any() for bp in paths.values()):
            panels += ["kl"]
        if any(np.isfinite(bp["delta_q"]).any() for bp in paths.values()):
            panels += ["brackets"]
    if ascents:
        panels += ["ascent"]
    if not panels:
        raise ValueError(
            "plot_bound: nothing to show for results " + str(list(runs)) + ": it needs a model whose only "
            "latent is a discrete unit latent (every term exact), a VB-EM result (method='vbem', which records "
            "the bound) or a Monte Carlo result with 'delta_q' and 'mcse' in its history (method='mcem')")
    ncols = len(panels) if len(panels) <= 3 else 2
    nrows = math.ceil(len(panels) / ncols)
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(_PANEL_W * ncols, _PANEL_H * nrows), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[len(panels):]:
        ax.remove()
    for ax, p in zip(axes, panels):
        if p == "bound":
            _draw_bound(ax, paths, order)
        elif p == "kl":
            _draw_kl(ax, {k: v for k, v in paths.items() if np.isfinite(v["kl"]).any()}, runs, order)
        elif p == "brackets":
            _draw_brackets(ax, {k: v for k, v in paths.items() if np.isfinite(v["delta_q"]).any()}, order)
        else:
            _draw_ascent(ax, ascents, order)
    fig.suptitle("log p(x; θ) = L(q, θ) + KL(q || p(z | x; θ))")
    return fig

"""The data of a Gaussian mixture with every fit's components drawn on it: :func:`plot_mixture`.

Two coordinates of the data (the first two by default) as points, and for each fit and each
component the ellipses one and two standard deviations from the component's mean (the contours
of its two-dimensional marginal density through those points), in the fit's colour and line
style (:data:`mcem.plotstyle.STYLES`). One-dimensional data gives a histogram with each fit's
mixture density. Matplotlib is imported inside the function; the figure is returned, never shown.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import norm

from .plotstyle import STYLES, finish_axes

__all__ = ["plot_mixture", "component_covariances", "ellipse_geometry"]


def _fits(fits):
    """``{label: (method or None, params)}`` from a Comparison, a FitResult, a parameter dict, or
    a dict / list of those."""
    if hasattr(fits, "results") and not isinstance(fits, Mapping):
        fits = fits.results
    if isinstance(fits, Mapping) and ("params" in fits or "means" in fits):
        fits = [fits]
    if isinstance(fits, list | tuple):
        out = {}
        for j, f in enumerate(fits):
            base = f.get("method") if isinstance(f, Mapping) and f.get("method") else f"fit {j + 1}"
            lab, k = str(base), 2
            while lab in out:
                lab, k = f"{base} ({k})", k + 1
            out[lab] = f
        fits = out
    if not isinstance(fits, Mapping) or not fits:
        raise TypeError("fits must be a Comparison, a FitResult, a dict of mixture parameters, or a non-empty "
                        f"dict or list of those; got {type(fits).__name__}")
    out = {}
    for lab, f in fits.items():
        if not isinstance(f, Mapping):
            raise TypeError(f"fits[{lab!r}] must be a FitResult or a dict of mixture parameters, got {type(f).__name__}")
        params = f.get("params", f)
        missing = [k for k in ("weights", "means", "covariances") if k not in params]
        if missing:
            raise ValueError(f"fits[{lab!r}] is not a Gaussian mixture fit: it lacks parameter(s) {missing} "
                             f"(has {sorted(params)})")
        out[str(lab)] = (f.get("method") if "params" in f else None, params)
    return out


def component_covariances(means, covariances) -> np.ndarray:
    """The full ``(K, d, d)`` covariance matrices of a mixture whose covariances are full
    ``(K, d, d)``, diagonal ``(K, d)`` or spherical ``(K,)``."""
    means = np.asarray(means, dtype=float)
    cov = np.asarray(covariances, dtype=float)
    K, d = means.shape
    if cov.shape == (K, d, d):
        return cov
    if cov.shape == (K, d):
        return np.einsum("kd,de->kde", cov, np.eye(d))
    if cov.shape == (K,):
        return cov[:, None, None] * np.eye(d)
    raise ValueError(f"covariances must have shape (K, d, d), (K, d) or (K,) for means of shape {means.shape}, "
                     f"got {cov.shape}")


def ellipse_geometry(cov2, n_sd):
    """``(width, height, angle)`` in the units of :class:`matplotlib.patches.Ellipse` of the
    ``n_sd`` standard-deviation contour of a 2 x 2 covariance: axes ``2 n_sd sqrt(eigenvalue)``,
    the angle of the first axis in degrees."""
    vals, vecs = np.linalg.eigh(np.asarray(cov2, dtype=float))
    vals = np.clip(vals, 0.0, None)
    width, height = 2.0 * n_sd * np.sqrt(vals[1]), 2.0 * n_sd * np.sqrt(vals[0])
    angle = float(np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])))
    return float(width), float(height), angle


def _style(lab, method, j, used):
    c, ls, mk = STYLES.get(method or lab, (None, "-", "o"))
    if c is None or c in used:
        c = f"C{5 + j % 5}"
    used.add(c)
    return {"color": c, "ls": ls, "marker": mk}


def plot_mixture(X, fits, *, dims=(0, 1), n_sd=(1, 2), labels=None, ax=None, title=None):
    """The data with each fit's Gaussian components: ellipses at ``n_sd`` standard deviations.

    Parameters
    ----------
    X : array (N, d)
        The data the mixtures were fitted to.
    fits : Comparison, FitResult, dict or list
        Fits of a Gaussian mixture (:func:`mcem.models.gaussian_mixture`): a Comparison (every
        method it ran), one FitResult, a dict label -> FitResult (or -> dict with ``weights``,
        ``means``, ``covariances``), or a list of those.
    dims : pair of int
        The two coordinates drawn (d >= 2); the ellipses are the components' marginals on them.
    n_sd : sequence of float
        The contours drawn, in standard deviations (default 1 and 2; the outer ones fainter).
    labels : pair of str, optional
        Axis labels (default ``x[0]``, ``x[1]``).
    ax : Axes, optional
        Draw here instead of on a new figure.
    title : str, optional
        The panel's title.

    Returns
    -------
    Figure
        With one :class:`~matplotlib.patches.Ellipse` per fit, component and contour, each with
        ``gid`` ``"<label>:<component>:<n_sd>"``; one legend entry per fit; the first fit's
        weights written next to its means.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be an array (N, d) of the data, got shape {X.shape}")
    runs = _fits(fits)
    d = X.shape[1]
    n_sd = [float(s) for s in np.atleast_1d(n_sd)]
    if not n_sd or min(n_sd) <= 0:
        raise ValueError(f"n_sd must be positive numbers of standard deviations, got {n_sd}")
    for lab, (_, p) in runs.items():
        shape = np.shape(p["means"])
        if len(shape) != 2 or shape[1] != d:
            raise ValueError(f"fits[{lab!r}] has means of shape {shape}; X has d={d} columns, so (K, {d}) was expected")
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 5.4), layout="constrained")
    if d == 1:
        _draw_densities(ax, X[:, 0], runs, labels)
    else:
        dims = tuple(int(i) for i in dims)
        if len(dims) != 2 or len(set(dims)) != 2 or not all(0 <= i < d for i in dims):
            raise ValueError(f"dims must be two different coordinates in 0..{d - 1}, got {dims}")
        _draw_ellipses(ax, X, runs, dims, n_sd, labels)
    ax.set_title(title or ("the data and the fitted components" + ("" if d == 1 else
                 f" ({' and '.join(f'{s:g}' for s in n_sd)} SD ellipses)")), fontsize="medium")
    return ax.figure


def _draw_ellipses(ax, X, runs, dims, n_sd, labels):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    i, j = dims
    ax.scatter(X[:, i], X[:, j], s=9, color="0.55", alpha=0.55, lw=0, label=f"data (N = {len(X)})", zorder=1)
    used, handles = set(), []
    outer = max(n_sd)
    for k_fit, (lab, (method, p)) in enumerate(runs.items()):
        st = _style(lab, method, k_fit, used)
        lw = max(3.2 - 0.9 * k_fit, 1.3)  # the first fit widest, underneath: fits that agree stay visible
        means = np.asarray(p["means"], dtype=float)
        covs = component_covariances(means, p["covariances"])[:, [i, j]][:, :, [i, j]]
        for k in range(len(means)):
            for s in n_sd:
                inner = s < outer or len(n_sd) == 1
                w, h, ang = ellipse_geometry(covs[k], s)
                e = Ellipse((means[k, i], means[k, j]), w, h, angle=ang, fill=False, color=st["color"],
                            ls=st["ls"], lw=lw if inner else 0.6 * lw, alpha=0.9 if inner else 0.55, zorder=3 + k_fit)
                e.set_gid(f"{lab}:{k}:{s:g}")
                ax.add_patch(e)
        ax.plot(means[:, i], means[:, j], ls="none", marker=st["marker"], color=st["color"], mec="k", mew=0.4,
                ms=4 + lw, zorder=4 + k_fit)
        if k_fit == 0:  # the weights, once
            for k, wk in enumerate(np.asarray(p["weights"], dtype=float)):
                ax.annotate(f"w = {wk:.2f}", (means[k, i], means[k, j]), textcoords="offset points", xytext=(8, -12),
                            fontsize="small", color="0.15", zorder=10,
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
        handles.append(Line2D([], [], color=st["color"], ls=st["ls"], marker=st["marker"], mec="k", mew=0.4,
                              lw=lw, label=f"{lab}: means, {'/'.join(f'{s:g}' for s in n_sd)} SD"))
    ax.autoscale_view()
    data_handle = ax.collections[0]
    ax.legend(handles=[data_handle, *handles], fontsize="small", loc="best", framealpha=0.85)
    names = labels or (f"x[{i}]", f"x[{j}]")
    finish_axes(ax, None, names[1], xlabel=names[0], legend=False)


def _draw_densities(ax, x, runs, labels):
    ax.hist(x, bins="auto", density=True, color="0.8", edgecolor="0.6", label=f"data (N = {len(x)})")
    grid = np.linspace(x.min() - 0.1 * np.ptp(x), x.max() + 0.1 * np.ptp(x), 400)
    used = set()
    for k_fit, (lab, (method, p)) in enumerate(runs.items()):
        st = _style(lab, method, k_fit, used)
        w = np.asarray(p["weights"], dtype=float)
        means = np.asarray(p["means"], dtype=float)[:, 0]
        sd = np.sqrt(component_covariances(means[:, None], p["covariances"])[:, 0, 0])
        dens = np.sum(w[:, None] * norm.pdf(grid[None], means[:, None], sd[:, None]), axis=0)
        ax.plot(grid, dens, color=st["color"], ls=st["ls"], lw=1.8, label=f"{lab}: mixture density")
    names = labels or ("x", "density")
    finish_axes(ax, None, "density", xlabel=names[0])

"""Side-by-side comparison of fitting methods from the same start (MCEM against exact EM)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np

from ._validation import as_generator, check_bool, check_mapping
from .model import Model

__all__ = ["compare", "Comparison"]


def _elements(params):
    for name, v in params.items():
        v = np.asarray(v)
        for idx in np.ndindex(v.shape):
            label = name if v.ndim == 0 else f"{name}[{','.join(map(str, idx))}]"
            yield label, name, idx


class Comparison:
    """The outcome of :func:`compare`.

    Attributes
    ----------
    results : dict
        Method name -> :class:`FitResult`.
    standard_errors : dict
        Method name -> dict of standard errors (None where they could not be computed).
    distance_se : dict
        Monte Carlo method -> dict of (estimate - exact estimate) / standard error, per parameter,
        when exact EM was run.
    rows : list of dict
        One row per method: loglik, iterations, total draws, seconds, max |distance| in SEs.
    """

    def __init__(self, results, standard_errors, reference):
        self.results = results
        self.standard_errors = standard_errors
        self.reference = reference
        self.distance_se = {}
        ref = results.get(reference) if reference else None
        for name, r in results.items():
            se = standard_errors.get(name)
            if ref is None or name == reference or se is None:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):  # fixed parameters have SE 0
                self.distance_se[name] = {
                    k: np.where(np.asarray(se[k]) > 0,
                                (np.asarray(r.params[k]) - np.asarray(ref.params[k])) / np.asarray(se[k]),
                                np.nan)
                    for k in r.params
                }
        self.rows = []
        for name, r in results.items():
            try:
                ll = r.loglik()
            except ValueError:
                ll = None
            dist = self.distance_se.get(name)
            self.rows.append(
                {
                    "method": name,
                    "loglik": np.nan if ll is None else ll.value,
                    "loglik_mcse": np.nan if ll is None else ll.mcse,
                    "iterations": r.n_iter,
                    "total_draws": int(r.get("total_draws", 0)),
                    "seconds": float(r.get("wall_seconds", r.seconds)),
                    "converged": bool(r.converged),
                    "max_abs_distance_se": (
                        float(max(np.nanmax(np.abs(v)) for v in dist.values())) if dist else np.nan
                    ),
                }
            )

    def table(self) -> str:
        """The comparison as text: estimates (standard errors) per parameter, then fit figures."""
        names = list(self.results)
        width = max(16, *(len(n) + 4 for n in names))
        first = self.results[names[0]]
        head = f"{'':<22}" + "".join(f"{n:>{width}}" for n in names)
        lines = [head, "-" * len(head)]
        for label, name, idx in _elements(first.params):
            cells = []
            for n in names:
                est = float(np.asarray(self.results[n].params[name])[idx])
                se = self.standard_errors.get(n)
                s = float(np.asarray(se[name])[idx]) if se is not None else np.nan
                cells.append(f"{est:.4g} ({s:.2g})" if np.isfinite(s) else f"{est:.4g}")
            lines.append(f"{label:<22}" + "".join(f"{c:>{width}}" for c in cells))
        lines.append("-" * len(head))
        for key, fmt in [("loglik", "{:.4f}"), ("iterations", "{}"), ("total_draws", "{}"),
                         ("seconds", "{:.3f}"), ("max_abs_distance_se", "{:.2f}")]:
            vals = []
            for row in self.rows:
                v = row[key]
                vals.append("" if isinstance(v, float) and np.isnan(v) else fmt.format(v))
            lines.append(f"{key:<22}" + "".join(f"{v:>{width}}" for v in vals))
        if self.reference:
            lines.append(f"(max_abs_distance_se: largest |estimate - {self.reference}| in standard errors)")
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return f"Comparison(methods={list(self.results)})"

    def plot(self, params=None, max_panels=9):
        """Parameter paths of every method overlaid, one panel per parameter element, plus the
        log-likelihood paths where known. Returns the figure."""
        import matplotlib.pyplot as plt

        first = next(iter(self.results.values()))
        elems = [e for e in _elements(first.params) if params is None or e[1] in params][:max_panels]
        n = len(elems) + 1
        ncols = min(3, n)
        nrows = -(-n // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
        axes = axes.ravel()
        for ax, (label, name, idx) in zip(axes, elems, strict=False):
            for m, r in self.results.items():
                path = r.history.params(name)[(slice(None),) + idx]
                style = "--" if m == self.reference else "-"
                ax.plot(r.history["iter"], path, style, label=m, zorder=3 if m == self.reference else 2)
            ax.set_title(label)
            ax.set_xlabel("iteration")
            ax.set_xscale("symlog", linthresh=10)
        ax = axes[len(elems)]
        for m, r in self.results.items():
            ll = r.history["loglik"]
            if np.any(np.isfinite(ll)):
                ax.plot(r.history["iter"], ll, "--" if m == self.reference else "-", label=m)
        ax.set_title("log-likelihood")
        ax.set_xlabel("iteration")
        ax.set_xscale("symlog", linthresh=10)
        for extra in axes[n:]:
            extra.set_visible(False)
        axes[0].legend()
        fig.tight_layout()
        return fig


def compare(model, methods=("em", "mcem", "saem"), theta0=None, *, rng=None, options=None,
            standard_errors=True):
    """Fit ``model`` with several methods from the same start and compare them.

    Parameters
    ----------
    model : Model
    methods : sequence of str
        Method names for :func:`mcem.fit`; ``"em"`` is skipped (with a warning) when the model has
        no exact E and M steps.
    theta0 : dict, optional
        The common start (default: the model's initial values).
    rng : None, int or Generator
        Each method gets its own child generator, by position: appending a method leaves the
        results of the earlier ones unchanged.
    options : dict, optional
        Method name -> dict of extra keyword arguments for :func:`mcem.fit`.
    standard_errors : bool
        Compute standard errors (exact information for exact EM, Louis for Monte Carlo fits).

    Returns
    -------
    Comparison
    """
    from .fit import METHODS, fit

    if not isinstance(model, Model):
        raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
    if isinstance(methods, str) or not isinstance(methods, Sequence):
        raise TypeError(f"methods must be a list or tuple of method names, got {type(methods).__name__} {methods!r}")
    methods = list(methods)
    if not methods:
        raise ValueError("methods must name at least one method, got an empty sequence")
    unknown = [m for m in methods if not isinstance(m, str) or m not in METHODS]
    if unknown:
        raise ValueError(f"methods must be among {sorted(METHODS)}, got unknown {unknown}")
    dup = sorted({m for m in methods if methods.count(m) > 1})
    if dup:
        raise ValueError(f"methods must name each method once, got {dup} more than once in {methods}")
    options = check_mapping(options, "options")
    bad = sorted(set(options) - set(methods))
    if bad:
        raise ValueError(f"options has entries for methods not being compared: {bad} (methods: {methods})")
    for m, opts in options.items():
        check_mapping(opts, f"options[{m!r}]", allow_none=False)
    standard_errors = check_bool(standard_errors, "standard_errors")
    if "em" in methods and not model.has_exact_em:
        warnings.warn(f"compare: model {model.name!r} has no exact EM; skipping method 'em'", stacklevel=2)
        methods.remove("em")
    theta0 = model.default_theta() if theta0 is None else model.check_theta(theta0, "theta0")
    rng = as_generator(rng)
    children = dict(zip(methods, rng.spawn(len(methods)), strict=True))
    results, ses = {}, {}
    for m in methods:
        t0 = time.perf_counter()
        res = fit(model, theta0, method=m, rng=children[m], **options.get(m, {}))
        res["wall_seconds"] = time.perf_counter() - t0
        results[m] = res
        ses[m] = None
        if standard_errors:
            try:
                ses[m] = res.standard_errors(method="exact" if m == "em" else "auto")
            except ValueError as exc:
                warnings.warn(f"compare: no standard errors for {m!r}: {exc}", stacklevel=2)
    return Comparison(results, ses, "em" if "em" in results else None)

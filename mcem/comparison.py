"""The :class:`Comparison` of fits side by side with a reference (:mod:`mcem.compare` makes them):
its table, its rows and its figure."""

from __future__ import annotations

import numpy as np

from .convergenceplot import plot_convergence
from .plots import plot_fit

__all__ = ["Comparison", "mark_reference"]


def _elements(params, single_by_name=False):
    """(label, name, index) of every scalar element; ``single_by_name``: a parameter of one
    element is labelled by its name alone."""
    for name, v in params.items():
        v = np.asarray(v)
        for idx in np.ndindex(v.shape):
            bare = v.ndim == 0 or (single_by_name and v.size == 1)
            label = name if bare else f"{name}[{','.join(map(str, idx))}]"
            yield label, name, idx


def mark_reference(fig, params, label="reference"):
    """Dotted black lines at reference values on the parameter panels of ``fig``: a panel titled
    with a parameter name (as :func:`mcem.plots.plot_fit` draws them) gets one line per element,
    one titled with an element (``beta[1]``) that element's line; the first line of a panel is
    labelled ``label`` in its legend. ``params``: parameter name -> value. Returns ``fig``."""
    targets = {}
    for name, value in params.items():
        v = np.asarray(value, dtype=float)
        targets[name] = v.ravel()
        for label_, _, idx in _elements({name: v}) if v.ndim else ():
            targets[label_] = [v[idx]]
    for ax in fig.axes:
        vals = targets.get(ax.get_title())
        if vals is None:
            continue
        for j, v in enumerate(vals):
            ax.axhline(v, color="k", ls=":", lw=1.2, label=label if j == 0 else "_nolegend_")
        ax.legend(fontsize="x-small")
    return fig


def _loglik(result):
    """``(value, mcse)`` of the log-likelihood at a fit's estimate, or None when it cannot be had:
    the fit's own (exact or importance-sampled from its draws), else a VB-EM fit's importance
    estimate with q as proposal."""
    try:
        ll = result.marginal_loglik()
        return ll.value, ll.mcse
    except ValueError:
        est = result.get("loglik_is")
        return None if est is None else (float(est["value"]), float(est["mcse"]))


def _distances(estimate, reference, se):
    """(estimate - reference) / se per parameter; NaN where the standard error is 0 (fixed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            k: np.where(np.asarray(se[k]) > 0,
                        (np.asarray(estimate[k]) - np.asarray(reference[k])) / np.asarray(se[k]), np.nan)
            for k in estimate
        }


class Comparison:
    """Fits side by side with a reference.

    One object for two uses:

    * :func:`compare`: several methods fitted from the same start, the reference being one of
      them (exact EM when it ran); ``rows`` has one row per method.
    * :func:`compare_to_reference`: one fit against a reference estimate computed another way
      (a quadrature or closed-form maximum-likelihood estimate) with its standard errors;
      ``rows`` has one row per scalar parameter (and derived quantity).

    ``Comparison(results, standard_errors, reference)`` builds the first kind from fits made
    elsewhere. ``str()`` gives :meth:`table`.

    Attributes
    ----------
    kind : str
        ``"methods"`` or ``"reference"``.
    results : dict
        Method name -> :class:`FitResult`.
    standard_errors : dict
        Method name -> dict of standard errors (None where they could not be computed).
    reference : str or None
        The reference: the name of a method in ``results``, or the label of the external estimate.
    reference_params, reference_se : dict or None
        The reference estimate and its standard errors (for a reference method, its fit's).
    distance_se : dict
        Method -> dict of (estimate - reference) / standard error, per parameter, for every method
        other than the reference that has standard errors.
    rows : list of dict
        Methods: ``method``, ``loglik``, ``loglik_mcse``, ``iterations``, ``total_draws``,
        ``seconds``, ``converged``, ``max_abs_distance_se`` (max |distance| in SEs).
        Reference: ``name``, ``estimate``, ``se`` with its Monte Carlo error ``se_mcse``, ``mcse``
        (Monte Carlo error of the estimate), ``mle`` and ``se_mle`` (the reference's), ``diff``
        (estimate - mle), ``diff_se`` (diff / se_mle: the distance in the reference's standard
        errors, the scale of the fitting rule's ``tol``; the table prints it) and ``diff_mcse``
        (diff / mcse: against one M step's Monte Carlo error, which the iterate's error exceeds
        where EM is slow).
    seconds, total_draws : float, int
        Reference kind: the fit's time and Monte Carlo draws.
    reference_method, reference_seconds : str, float or None
        Reference kind: how the reference was computed and how long it took.
    """

    def __init__(self, results, standard_errors, reference, *, reference_params=None, reference_se=None,
                 rows=None, reference_method=None, reference_seconds=None, kind=None):
        self.results = results
        self.standard_errors = standard_errors
        self.reference = reference
        self.kind = kind or ("methods" if reference_params is None else "reference")
        if self.kind == "methods" and reference_params is None:
            ref = results.get(reference) if reference else None
            reference_params = None if ref is None else ref.params
            reference_se = standard_errors.get(reference) if ref is not None else None
        self.reference_params = reference_params
        self.reference_se = reference_se
        self.reference_method = reference_method
        self.reference_seconds = reference_seconds
        self.distance_se = {}
        for name, r in results.items():
            # in the reference's standard errors where it has them (one yardstick for every
            # method, and one for a method without its own, such as VB-EM), else the method's own
            se = reference_se if reference_se is not None else standard_errors.get(name)
            if reference_params is not None and name != reference and se is not None:
                self.distance_se[name] = _distances(r.params, reference_params, se)
        if self.kind == "reference":
            r = next(iter(results.values()))
            self.rows = rows
            self.seconds = float(r.get("seconds", np.nan))
            self.total_draws = int(r.get("total_draws", 0))
            return
        self.rows = []
        for name, r in results.items():
            ll = _loglik(r)
            dist = self.distance_se.get(name)
            elbo = r.get("elbo")
            self.rows.append(
                {
                    "method": name,
                    "loglik": np.nan if ll is None else ll[0],
                    "loglik_mcse": np.nan if ll is None else ll[1],
                    "elbo": np.nan if elbo is None else float(elbo["value"]),
                    "iterations": r.n_iter,
                    "total_draws": int(r.get("total_draws", 0)),
                    "seconds": float(r.get("wall_seconds", r.seconds)),
                    "converged": bool(r.converged),
                    "max_abs_distance_se": (
                        float(max(np.nanmax(np.abs(v)) for v in dist.values())) if dist else np.nan
                    ),
                }
            )

    def row(self, name) -> dict:
        """The row of a method (methods) or of a parameter element such as ``"beta[1]"`` (reference)."""
        key = "method" if self.kind == "methods" else "name"
        for r in self.rows:
            if r[key] == name:
                return r
        raise KeyError(f"no row {name!r}; rows are {[r[key] for r in self.rows]}")

    def table(self) -> str:
        """The comparison as text. Methods: estimates (standard errors) per parameter, then fit
        figures. Reference: per parameter the estimate, its SE and Monte Carlo error, the reference
        and its SE, and the difference in Monte Carlo errors."""
        if self.kind == "reference":
            return self._reference_table()
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
        for key, fmt in [("loglik", "{:.4f}"), ("elbo", "{:.4f}"), ("iterations", "{}"), ("total_draws", "{}"),
                         ("seconds", "{:.3f}"), ("max_abs_distance_se", "{:.2f}")]:
            vals = []
            for row in self.rows:
                v = row[key]
                vals.append("" if isinstance(v, float) and np.isnan(v) else fmt.format(v))
            if key == "elbo" and not any(vals):
                continue  # no method bounds the log-likelihood: no row
            lines.append(f"{key:<22}" + "".join(f"{v:>{width}}" for v in vals))
        if self.reference:
            lines.append(f"(max_abs_distance_se: largest |estimate - {self.reference}| in standard errors)")
        return "\n".join(lines)

    def _reference_table(self):
        fit_label = next(iter(self.results)).upper()
        head = (f"{'parameter':<10}{fit_label:>10}{'SE':>9}{'MC SE':>10}{self.reference:>11}{'SE':>9}"
                f"{'diff/SE':>11}")
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r['name']:<10}{r['estimate']:>10.4f}{r['se']:>9.4f}{r['mcse']:>10.5f}"
                f"{r['mle']:>11.4f}{r['se_mle']:>9.4f}{r['diff_se']:>11.2f}"
            )
        lines.append("-" * len(head))
        tail = f"{fit_label} {self.seconds:.1f} s, {self.total_draws} draws"
        if self.reference_seconds is not None:
            tail += f"; {self.reference_method or self.reference} {self.reference_seconds:.2f} s"
        lines.append(tail)
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        if self.kind == "reference":
            return f"Comparison({next(iter(self.results))!r} against {self.reference!r})"
        return f"Comparison(methods={list(self.results)})"

    def plot(self, params=None, *, fig=None, title=None, **kwargs):
        """The comparison as a figure.

        Methods: :func:`mcem.plots.plot_convergence` of every method, distances measured from the
        reference in its standard errors: the distance per iteration (log scale, with the Monte
        Carlo band), the log-likelihood below its maximum, the draws per iteration, the stopping
        rules, the E-step diagnostics, and every parameter element's final distance. ``params``
        restricts the distances to those parameters; ``fig`` (a Figure or SubFigure) is drawn into,
        under ``title``.
        Reference: the fit's overview (:func:`mcem.plots.plot_fit`, which gets ``kwargs``) with
        the reference values of ``params`` (default all) dotted on its parameter panels and the
        distances measured from them. Returns the figure."""
        if self.kind == "reference":
            if fig is not None or title is not None:
                raise TypeError("Comparison.plot of a fit against a reference draws plot_fit's figure; "
                                "it takes params and plot_fit's keywords, not fig or title")
            r = next(iter(self.results.values()))
            ref = {k: v for k, v in self.reference_params.items() if params is None or k in params}
            return plot_fit(r, reference=ref, se=self.reference_se, reference_label=self.reference, **kwargs)
        if kwargs:
            raise TypeError(f"Comparison.plot of methods takes params, fig and title, got {sorted(kwargs)}")
        if title is None:
            title = f"{', '.join(self.results)}: convergence" + (
                f", distances in the standard errors of {self.reference}" if self.reference else "")
        return plot_convergence(self, params=params, fig=fig, title=title)

"""Fits side by side with a reference: several methods from the same start (MCEM against exact EM),
or one fit against a reference estimate computed another way (a quadrature or closed-form MLE).

Both give a :class:`Comparison`: :func:`compare` fits the methods, :func:`compare_to_reference`
sets a fit next to a given estimate with its standard errors.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np

from ._validation import as_generator, check_bool, check_mapping
from .fit import METHODS, fit
from .inference import constrained_jacobian
from .core import Model
from .mstep import update_covariance
from .result import FitResult

__all__ = ["compare", "compare_to_reference", "Comparison", "mark_reference"]


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
                 rows=None, reference_method=None, reference_seconds=None):
        self.results = results
        self.standard_errors = standard_errors
        self.reference = reference
        self.kind = "methods" if reference_params is None else "reference"
        if self.kind == "methods":
            ref = results.get(reference) if reference else None
            reference_params = None if ref is None else ref.params
            reference_se = standard_errors.get(reference) if ref is not None else None
        self.reference_params = reference_params
        self.reference_se = reference_se
        self.reference_method = reference_method
        self.reference_seconds = reference_seconds
        self.distance_se = {}
        for name, r in results.items():
            se = standard_errors.get(name)
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

    def plot(self, params=None, max_panels=9, **kwargs):
        """Methods: the parameter paths of every method overlaid, one panel per parameter
        element (of ``params``, default all; at most ``max_panels``), plus the log-likelihood
        paths where known. Reference: the fit's overview figure (:func:`mcem.plots.plot_fit`,
        which gets ``kwargs``) with the reference values of ``params`` (default all) dotted on
        its parameter panels. Returns the figure."""
        if self.kind == "reference":
            fig = next(iter(self.results.values())).plot(**kwargs)
            ref = {k: v for k, v in self.reference_params.items() if params is None or k in params}
            return mark_reference(fig, ref, self.reference)
        if kwargs:
            raise TypeError(f"Comparison.plot of methods takes params and max_panels, got {sorted(kwargs)}")
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


def _param_array(value, name, shape):
    """``value`` as a float array of the parameter's ``shape``."""
    try:
        if isinstance(value, str | bytes):
            raise TypeError
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or numeric array, got {type(value).__name__} {value!r}") from None
    if arr.shape != shape:
        raise ValueError(f"{name} must have the shape of the fit's parameter, {shape}, got shape {arr.shape}")
    return arr


def _default_mcse(model, result):
    """Monte Carlo errors of the estimate: 0 for exact EM, else :func:`mcem.mstep.update_covariance`
    at the final draws mapped to the constrained parameters by the delta method."""
    if result.get("method") == "em":
        return {k: np.zeros(np.shape(v)) for k, v in result["params"].items()}
    draws = result.get("draws")
    if draws is None:
        raise ValueError("compare_to_reference: the result has no draws to estimate the Monte Carlo "
                         "error of its estimate from; pass mcse=")
    theta = model.check_theta(result["params"], "result.params")
    cov_u = update_covariance(model, theta, draws)
    J = constrained_jacobian(model, model.to_unconstrained(theta))
    flat = np.sqrt(np.abs(np.diag(J @ cov_u @ J.T)))
    out, off = {}, 0
    for n in model.param_names:
        shape = model.params[n].shape
        size = int(np.prod(shape, dtype=int))
        out[n] = flat[off : off + size].reshape(shape)
        off += size
    return out


def compare_to_reference(result, reference_params, reference_se=None, *, model=None, mcse=None,
                         derived=None, name="reference", method=None, seconds=None) -> Comparison:
    """One Monte Carlo fit against a reference estimate of the same parameters.

    The reference is a maximum-likelihood estimate computed another way (adaptive quadrature, a
    closed form, a direct maximisation), with its standard errors. Each scalar parameter gets a
    row: the fit's estimate, its standard error (``result.inference``: Louis' identity or the
    exact information) with that error's Monte Carlo error, the Monte Carlo error of the
    estimate, the reference and its standard error, and the difference in Monte Carlo errors.

    Parameters
    ----------
    result : FitResult
    reference_params : dict
        The reference value of every parameter of the fit, shaped alike; it may also give the
        reference values of the quantities in ``derived``.
    reference_se : dict, optional
        Standard errors of the reference, shaped alike (NaN where missing).
    model : Model, optional
        The fitted model; default the one the result holds.
    mcse : dict, optional
        Monte Carlo errors of the estimate, shaped like the parameters (entries for ``derived``
        quantities optional). Default: 0 for exact EM, otherwise the delta method on
        :func:`mcem.mstep.update_covariance` at the result's final draws.
    derived : dict, optional
        ``{label: (parameter, f, df)}``: a row for ``f(x)`` of the scalar parameter ``x``, its
        errors by the delta method (``|df(x)|`` times those of ``x``), after the parameters.
    name : str
        The reference's label (a column heading).
    method : str, optional
        How the reference was computed, for the table's last line (default ``name``).
    seconds : float, optional
        How long the reference took, for the table's last line.

    Returns
    -------
    Comparison
        Of kind ``"reference"``; ``rows`` has one row per scalar parameter, then one per derived
        quantity.
    """
    if not isinstance(result, FitResult):
        raise TypeError(f"result must be an mcem.FitResult (from mcem.fit), got {type(result).__name__}")
    model = result._get_model(model)
    if not isinstance(model, Model):
        raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
    params = {k: np.asarray(v, dtype=float) for k, v in result["params"].items()}
    ref_params = check_mapping(reference_params, "reference_params", allow_none=False, what="parameter values")
    ref_se = check_mapping(reference_se, "reference_se", what="standard errors")
    derived = check_mapping(derived, "derived", what="(parameter, f, df) tuples")
    missing = [k for k in params if k not in ref_params]
    if missing:
        raise ValueError(f"reference_params must give every parameter of the fit {list(params)}, missing {missing}")
    for label, spec in derived.items():
        if not (isinstance(spec, tuple) and len(spec) == 3 and callable(spec[1]) and callable(spec[2])):
            raise TypeError(f"derived[{label!r}] must be a tuple (parameter, f, df) with f and df callable, "
                            f"got {spec!r}")
        if spec[0] not in params or params[spec[0]].ndim != 0:
            scalars = [k for k, v in params.items() if v.ndim == 0]
            raise ValueError(f"derived[{label!r}] must name a scalar parameter of the fit {scalars}, got {spec[0]!r}")
    ref = {k: _param_array(ref_params[k], f"reference_params[{k!r}]", params[k].shape) for k in params}
    rse = {k: _param_array(ref_se[k], f"reference_se[{k!r}]", v.shape) if k in ref_se else np.full(v.shape, np.nan)
           for k, v in params.items()}
    mc = check_mapping(mcse, "mcse", what="Monte Carlo errors") if mcse is not None else _default_mcse(model, result)
    mc = {**mc, **{k: _param_array(mc[k], f"mcse[{k!r}]", params[k].shape) for k in params if k in mc}}
    inf = result.inference(model)
    rows = []

    def add(label, est, s, s_mc, m, r, r_se):
        diff = est - r
        ratio = np.nan if np.isnan(m) else diff / m if m > 0 else np.inf
        in_se = diff / r_se if np.isfinite(r_se) and r_se > 0 else np.nan
        rows.append(dict(name=label, estimate=est, se=s, se_mcse=s_mc, mcse=m, mle=r, se_mle=r_se,
                         diff=diff, diff_se=in_se, diff_mcse=ratio))

    for label, k, idx in _elements(params, single_by_name=True):
        add(label, float(params[k][idx]), float(np.asarray(inf.se[k])[idx]),
            float(np.asarray(inf.se_mcse[k])[idx]), float(mc[k][idx]) if k in mc else np.nan,
            float(ref[k][idx]), float(rse[k][idx]))
    for label, (k, f, df) in derived.items():
        x, g = float(params[k]), abs(float(df(float(params[k]))))
        rx = float(ref[k])
        add(label, float(f(x)), g * float(inf.se[k]), g * float(inf.se_mcse[k]),
            float(mc[label]) if label in mc else g * float(mc[k]) if k in mc else np.nan,
            float(ref_params[label]) if label in ref_params else float(f(rx)),
            float(ref_se[label]) if label in ref_se else abs(float(df(rx))) * float(rse[k]))
    fit_label = str(result.get("method") or "fit")
    return Comparison({fit_label: result}, {fit_label: inf.se}, str(name), reference_params=ref,
                      reference_se=rse, rows=rows, reference_method=method, reference_seconds=seconds)

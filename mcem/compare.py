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
from .algorithms.vbem import family_kind as vbem_kind
from .comparison import Comparison, _elements, mark_reference
from .fit import METHODS, fit
from .inference import constrained_jacobian
from .core import Model
from .mstep import update_covariance
from .result import FitResult

__all__ = ["compare", "compare_to_reference", "Comparison", "mark_reference"]


#: What :func:`compare` runs by default: every method of the EM family.
ALL_METHODS = ("em", "mcem", "saem", "gem", "vbem")


def _check_methods(methods):
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
    return methods


def compare(model, methods=ALL_METHODS, theta0=None, *, rng=None, options=None, standard_errors=True,
            reference=None):
    """Fit ``model`` with several methods from the same start and compare them.

    Each estimate's distance from the reference is reported in the reference's standard errors
    (``Comparison.distance_se``, the table's ``max_abs_distance_se``, the plot's distance
    panel): Monte Carlo methods land within their ``tol`` of exact EM; VB-EM lands where its bound
    is highest, off by its bias where the variational family cannot hold the posterior (a GLMM's
    variance components).

    Parameters
    ----------
    model : Model
    methods : sequence of str
        Method names for :func:`mcem.fit`, by default every method of the EM family ("em",
        "mcem", "saem", "gem", "vbem"). A method the model cannot be fitted by (exact EM without
        closed-form E and M steps, VB-EM on discrete latents it cannot enumerate) is skipped with
        a warning.
    theta0 : dict, optional
        The common start (default: the model's initial values).
    rng : None, int or Generator
        Each method gets its own child generator, by position: appending a method leaves the
        results of the earlier ones unchanged.
    options : dict, optional
        Method name -> dict of extra keyword arguments for :func:`mcem.fit`.
    standard_errors : bool
        Compute standard errors (exact information where the model has a log-likelihood, Louis
        for Monte Carlo fits; a VB-EM fit of a model without one has none).
    reference : None, str or dict
        What the distances are measured from: a method among ``methods``, or
        ``{"params": ..., "se": ..., "label": ...}`` for an estimate computed another way (a
        quadrature MLE). Default: exact EM when it ran, else MCEM when it ran (the
        maximum-likelihood estimate with a controlled Monte Carlo error).

    Returns
    -------
    Comparison
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
    methods = _check_methods(methods)
    options = check_mapping(options, "options")
    bad = sorted(set(options) - set(methods))
    if bad:
        raise ValueError(f"options has entries for methods not being compared: {bad} (methods: {methods})")
    for m, opts in options.items():
        check_mapping(opts, f"options[{m!r}]", allow_none=False)
    standard_errors = check_bool(standard_errors, "standard_errors")
    ref_given = _check_reference(reference, methods, model)
    theta0 = model.default_theta() if theta0 is None else model.check_theta(theta0, "theta0")
    rng = as_generator(rng)
    children = dict(zip(methods, rng.spawn(len(methods)), strict=True))
    results, ses = {}, {}
    for m in methods:
        why = _cannot_fit(model, m)
        if why:
            warnings.warn(f"compare: model {model.name!r} {why}; skipping method {m!r}", stacklevel=2)
            continue
        t0 = time.perf_counter()
        res = fit(model, theta0, method=m, rng=children[m], **options.get(m, {}))
        res["wall_seconds"] = time.perf_counter() - t0
        results[m] = res
        ses[m] = None
        if standard_errors:
            try:
                ses[m] = res.standard_errors(method="exact" if m == "em" else "auto")
            except ValueError as exc:
                if not (m == "vbem" and res.get("draws") is None):
                    warnings.warn(f"compare: no standard errors for {m!r}: {exc}", stacklevel=2)
    if isinstance(ref_given, dict):
        return Comparison(results, ses, ref_given["label"], reference_params=ref_given["params"],
                          reference_se=ref_given.get("se"), kind="methods")
    ref = ref_given or next((m for m in ("em", "mcem") if m in results), None)
    return Comparison(results, ses, ref if ref in results else None)


def _cannot_fit(model, method):
    """Why ``model`` cannot be fitted by ``method`` (a phrase), or None."""
    if method == "em" and not model.has_exact_em:
        return "has no exact EM"
    if method == "vbem":
        try:
            vbem_kind(model)
        except ValueError:
            return "has discrete latents VB-EM cannot enumerate"
    return None


def _check_reference(reference, methods, model):
    if reference is None:
        return None
    if isinstance(reference, str):
        if reference not in methods:
            raise ValueError(f"reference must be one of the methods compared {methods} or a dict, got {reference!r}")
        return reference
    ref = check_mapping(reference, "reference", allow_none=False, what="'params', 'se' and 'label'")
    unknown = sorted(set(ref) - {"params", "se", "label"})
    if "params" not in ref or unknown:
        raise ValueError(f"reference must be a dict with 'params' (and optionally 'se', 'label'), got keys {sorted(ref)}")
    params = model.check_theta(ref["params"], "reference['params']")
    se = None
    if ref.get("se") is not None:
        se = {k: _param_array(ref["se"][k], f"reference['se'][{k!r}]", np.shape(v)) for k, v in params.items()}
    return {"params": params, "se": se, "label": str(ref.get("label", "reference"))}


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

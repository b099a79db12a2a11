"""The evidence lower bound along a fit's path: log p(x; theta) = L(q, theta) + KL(q || p(z | x; theta)).

For any q over the latents,

    log p(x; theta) = L(q, theta) + KL(q || p(z | x; theta)),   L(q, theta) = E_q[log p(x, z; theta)] + H(q),

and for q_t = p(z | x; theta_t), the posterior of an E step,

    log p(x; theta') = Q(theta'; theta_t) + H(theta'; theta_t),   H(theta'; theta_t) = -E_{q_t}[log p(z | x; theta')].

Over one EM iteration the log-likelihood rises by

    [Q(theta_{t+1}; theta_t) - Q(theta_t; theta_t)] + [H(theta_{t+1}; theta_t) - H(theta_t; theta_t)],

the first bracket >= 0 because the M step raises Q, the second >= 0 for any theta_{t+1} by
Gibbs' inequality. :func:`bound_path` gives every term at every row of a fit's history.

Two sources:

* a model whose only latent is a discrete unit latent with per-unit terms
  (:func:`mcem.inference.categorical.enumerable`): every term exactly, from the parameter path
  alone, for the result of any method (EM, GEM, VB-EM, MCEM, ...). At row t >= 1, q is the
  posterior at theta_{t-1} (the E step that led to theta_t): ``elbo`` is L(q_{t-1}, theta_t),
  ``kl`` its gap, ``q`` and ``h`` are Q(theta_t; theta_{t-1}) and H(theta_t; theta_{t-1}), and
  ``delta_q`` and ``delta_h`` the two brackets. Row 0 is the start: ``elbo`` = ``loglik``, ``kl`` 0.
* otherwise a VB-EM result (a history with an ``elbo`` column, for instance a continuous latent
  under a Gaussian q): the bound as the fit recorded it (a Monte Carlo estimate with its standard
  error ``elbo_mcse``), the log-likelihood from a callable (a quadrature, say), the model's exact
  log-likelihood or the history, in that order, and ``kl`` = ``loglik`` - ``elbo``; ``q``,
  ``h``, ``delta_q`` and ``delta_h`` are not known there (NaN).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..core import Model
from . import categorical as cat

__all__ = ["NoBoundError", "bound_path", "loglik_path"]

#: The keys of :func:`bound_path`'s dict, in order.
KEYS = ("iter", "loglik", "elbo", "elbo_mcse", "kl", "q", "h", "delta_q", "delta_h")


class NoBoundError(ValueError):
    """The result carries no bound and its model gives none (not enumerable, no ``elbo`` column)."""


def _history(result):
    if not isinstance(result, Mapping) and not hasattr(result, "history"):
        raise TypeError(f"result must be a FitResult from mcem.fit (a mapping with a 'history'), "
                        f"got {type(result).__name__}")
    hist = result.get("history") if isinstance(result, Mapping) else getattr(result, "history", None)
    if hist is None or not hasattr(hist, "columns") or not hasattr(hist, "rows"):
        raise ValueError(f"result must carry a History under 'history' (a FitResult from mcem.fit); "
                         f"got {type(hist).__name__}")
    if len(hist) == 0:
        raise ValueError("result has an empty history (no iterations recorded); there is no path to bound")
    return hist


def _model(result, model, needed):
    """The model given, else the one the result holds; None when neither and not ``needed``."""
    if model is not None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be an mcem.Model (the model the result was fitted to), "
                            f"got {type(model).__name__}")
        return model
    held = getattr(result, "_model", None)
    if held is None and not needed:
        return None
    getter = getattr(result, "_get_model", None)
    if getter is None:
        raise ValueError(f"result is a {type(result).__name__}, which holds no model; pass model=... "
                         "(the model it was fitted to)")
    return getter(None)


def _iters(hist):
    it = hist["iter"] if "iter" in hist.columns else None
    if it is None or it.dtype == object or not np.isfinite(it).all():
        return np.arange(len(hist), dtype=float)
    return it


def _thetas(model, hist):
    rows = hist.rows
    if any("params" not in r for r in rows):
        raise ValueError("result's history lacks the parameter path (rows without 'params')")
    return [model.check_theta(r["params"], f"result.history[{t}]['params']") for t, r in enumerate(rows)]


def _call_loglik(loglik, hist):
    out = np.empty(len(hist))
    for t, row in enumerate(hist.rows):
        theta = {k: np.array(v, dtype=float, copy=True) for k, v in row["params"].items()}
        val = loglik(theta)
        try:
            out[t] = float(val)
        except (TypeError, ValueError):
            raise TypeError(f"loglik must return a float (the log-likelihood at a parameter dict); at "
                            f"history row {t} it returned {type(val).__name__}") from None
    return out


def _check_loglik(loglik):
    if loglik is not None and not callable(loglik):
        raise TypeError(f"loglik must be None or a callable theta (dict) -> float, got {type(loglik).__name__}")


def _exact_path(model, hist):
    """Every term from the parameter path, with the exact categorical posterior."""
    zs = cat.states(model)
    thetas = _thetas(model, hist)
    n = len(thetas)
    out = {k: np.full(n, np.nan) for k in KEYS[1:]}
    out["elbo_mcse"][:] = 0.0
    b0 = cat.bound_terms(model, thetas[0], thetas[0], zs)
    out["loglik"][0], out["elbo"][0], out["kl"][0] = b0.loglik, b0.loglik, 0.0
    out["q"][0], out["h"][0] = b0.q, b0.h
    for t in range(1, n):
        base = cat.bound_terms(model, thetas[t - 1], thetas[t - 1], zs)
        b = cat.bound_terms(model, thetas[t - 1], thetas[t], zs)
        out["loglik"][t], out["elbo"][t], out["kl"][t] = b.loglik, b.elbo, b.kl
        out["q"][t], out["h"][t] = b.q, b.h
        out["delta_q"][t], out["delta_h"][t] = b.q - base.q, b.h - base.h
    return out


def loglik_path(result, model=None, *, loglik=None) -> np.ndarray:
    """log p(x; theta_t) at every row of ``result``'s history (NaN where it is not known).

    The first of: the exact sum over the states of an enumerable model
    (:func:`mcem.inference.categorical.enumerable`); ``loglik(theta)``; the model's exact
    log-likelihood; the history's ``loglik`` column.

    Parameters
    ----------
    result : FitResult
    model : Model, optional
        Default: the model the result holds (a loaded result holds none; then the callable or
        the history is used).
    loglik : callable, optional
        ``theta (dict of arrays) -> float``, for instance a quadrature log-likelihood.

    Returns
    -------
    numpy.ndarray
        One value per history row.
    """
    hist = _history(result)
    _check_loglik(loglik)
    model = _model(result, model, needed=False)
    if model is not None and cat.enumerable(model):
        zs = cat.states(model)
        return np.array([cat.responsibilities(model, th, zs)[1] for th in _thetas(model, hist)])
    if loglik is not None:
        return _call_loglik(loglik, hist)
    if model is not None and model.loglik_fn is not None:
        return np.array([model.exact_loglik(th) for th in _thetas(model, hist)], dtype=float)
    ll = hist["loglik"] if "loglik" in hist.columns else np.full(len(hist), np.nan)
    return np.asarray(ll, dtype=float)


def bound_path(result, model=None, *, loglik=None) -> dict:
    """The terms of ``log p(x; theta) = L(q, theta) + KL`` at every row of a fit's history.

    Exact for a model whose only latent is a discrete unit latent with per-unit terms (any
    method's result; ``loglik`` is then not needed and not used); from the recorded bound of a
    VB-EM result otherwise. See the module docstring for what each term is at each row.

    Parameters
    ----------
    result : FitResult
        A fit from :func:`mcem.fit` (its history's parameter path, and ``elbo`` for VB-EM).
    model : Model, optional
        The model it was fitted to; default the one the result holds.
    loglik : callable, optional
        ``theta (dict of arrays) -> float``: log p(x; theta) for a model without an exact
        log-likelihood (a quadrature, say). Called once per history row with a copy of the row's
        parameters. Not used for an enumerable model, whose log-likelihood is exact.

    Returns
    -------
    dict
        numpy arrays, one entry per history row: ``iter``; ``loglik`` (log p(x; theta_t));
        ``elbo`` (L(q, theta_t)) and ``elbo_mcse`` (its Monte Carlo standard error, 0 when exact);
        ``kl`` (``loglik - elbo``); ``q`` and ``h`` (Q(theta_t; theta_{t-1}) and
        H(theta_t; theta_{t-1}), so that ``loglik = q + h``); ``delta_q`` and ``delta_h`` (the
        rise of Q and of H over the iteration; NaN at row 0 and where not known).

    Raises
    ------
    NoBoundError
        (a ValueError) When the model is not enumerable and the history has no ``elbo`` column.
    """
    hist = _history(result)
    _check_loglik(loglik)
    has_elbo = "elbo" in hist.columns
    model = _model(result, model, needed=not has_elbo)
    if model is not None and cat.enumerable(model):
        out = _exact_path(model, hist)
    elif not has_elbo:
        name = f"model {model.name!r}" if model is not None else "the model"
        raise NoBoundError(
            f"bound_path needs a model whose only latent is a discrete unit latent with per-unit terms "
            f"(then every term is exact), or a VB-EM result (method='vbem', whose history records the "
            f"bound 'elbo'); {name} is neither and the result (method "
            f"{result.get('method') if isinstance(result, Mapping) else None!r}) has columns "
            f"{[c for c in hist.columns if c != 'params']}")
    else:
        n = len(hist)
        out = {k: np.full(n, np.nan) for k in KEYS[1:]}
        out["loglik"] = loglik_path(result, model, loglik=loglik)
        out["elbo"] = np.asarray(hist["elbo"], dtype=float)
        if "elbo_mcse" in hist.columns:
            out["elbo_mcse"] = np.asarray(hist["elbo_mcse"], dtype=float)
        out["kl"] = out["loglik"] - out["elbo"]
        for k in ("q", "h"):
            if k in hist.columns:
                out[k] = np.asarray(hist[k], dtype=float)
    out["iter"] = _iters(hist)
    return {k: out[k] for k in KEYS}

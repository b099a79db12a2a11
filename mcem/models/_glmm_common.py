"""Pieces of the random-intercept GLMM shared by the model (:mod:`mcem.models.glmm_model`) and its
quadrature oracle (:mod:`mcem.models.glmm_quadrature`): the input checks, which also sort the
observations by group, and the per-observation likelihood of the two families: the logit link
for Bernoulli responses or, with ``trials``, binomial counts; the log link for Poisson counts."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, gammaln

from .._validation import check_choice, describe_array

__all__ = [
    "FAMILIES",
    "HALF_LOG_2PI",
    "check_inputs",
    "obs_loglik",
    "response_mean",
    "mean_and_weight",
    "group_sum",
    "normal_logpdf",
    "beta_sigma",
    "glm_start",
]

#: Supported response families (the link is canonical: logit for Bernoulli, or binomial counts
#: out of known ``trials``; log for Poisson).
FAMILIES = ("logit", "poisson")
HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


# --------------------------------------------------------------------------- input checks
def _numeric(a, name):
    arr = np.asarray(a)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return arr


def _check_finite(arr, name):
    if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} must be finite, got {int(np.isnan(arr).sum())} NaN and "
            f"{int(np.isinf(arr).sum())} inf value(s) in an array of shape {arr.shape}"
        )


def _check_trials(trials, family, n):
    """The binomial ``trials`` as a float array (None: Bernoulli or Poisson responses)."""
    if trials is None:
        return None
    if family != "logit":
        raise ValueError(f"trials (binomial counts) needs family='logit', got trials with family={family!r}")
    t = _numeric(trials, "trials")
    _check_finite(t, "trials")
    t = np.array(np.broadcast_to(t, (n,)) if t.ndim == 0 else t, dtype=float)
    if t.shape != (n,):
        raise ValueError(f"trials must have shape ({n},) to match X's {n} rows, got shape {t.shape}")
    bad = (t < 1) | (t != np.round(t))
    if bad.any():
        raise ValueError(
            f"trials must hold positive integers, got {int(bad.sum())} other value(s), e.g. {t[bad][:5].tolist()}"
        )
    return t


def check_inputs(X, y, group, family, offset, trials=None):
    """Validate and copy the data; sort observations by group. Returns the data dict."""
    check_choice(family, "family", set(FAMILIES))
    X = _numeric(X, "X")
    _check_finite(X, "X")
    X = np.array(X, dtype=float)  # a private copy: the user's array is never written
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_obs, n_features) or 1-D (n_obs,), got shape {X.shape}")
    n, p = X.shape
    if n == 0 or p == 0:
        raise ValueError(f"X is empty: expected at least one observation and one column, got shape {X.shape}")
    y = _numeric(y, "y")
    _check_finite(y, "y")
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X's {n} rows, got shape {y.shape}")
    y = np.array(y, dtype=float)
    trials = _check_trials(trials, family, n)
    if trials is not None:
        bad = (y < 0) | (y > trials) | (y != np.round(y))
        if bad.any():
            raise ValueError(
                f"y must hold integer counts between 0 and trials (binomial responses), got "
                f"{int(bad.sum())} other value(s), e.g. {y[bad][:5].tolist()}"
            )
    elif family == "logit":
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise ValueError(
                f"y must hold 0/1 (or boolean) responses for family='logit', got "
                f"{int(bad.sum())} other value(s), e.g. {y[bad][:5].tolist()}"
            )
    else:
        bad = (y < 0) | (y != np.round(y))
        if bad.any():
            raise ValueError(
                f"y must hold non-negative integer counts for family='poisson', got "
                f"{int(bad.sum())} other value(s), e.g. {y[bad][:5].tolist()}"
            )
    g = _numeric(group, "group")
    _check_finite(g, "group")
    if g.shape != (n,):
        raise ValueError(f"group must have shape ({n},) to match X's {n} rows, got shape {g.shape}")
    if g.dtype == bool or not np.all(g == np.round(g)):
        raise ValueError(
            f"group must hold integer labels 0..G-1, got {describe_array(g[g != np.round(g)] if g.dtype != bool else g)}"
        )
    g = g.astype(np.int64)
    if g.min() < 0:
        raise ValueError(f"group must hold integer labels 0..G-1, got negative label(s) {np.unique(g[g < 0])[:5].tolist()}")
    G = int(g.max()) + 1
    counts = np.bincount(g, minlength=G)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"group labels must be 0..G-1 with every group non-empty (G = max label + 1 = {G}); "
            f"{empty.size} group(s) have no observation, e.g. {empty[:5].tolist()}. Relabel the groups "
            "consecutively (np.unique(group, return_inverse=True)[1])"
        )
    if offset is None:
        off = np.zeros(n)
    else:
        off = _numeric(offset, "offset")
        _check_finite(off, "offset")
        off = np.array(np.broadcast_to(off, (n,)) if off.ndim == 0 else off, dtype=float)
        if off.shape != (n,):
            raise ValueError(f"offset must have shape ({n},) to match X's {n} rows, got shape {off.shape}")
    order = np.argsort(g, kind="stable")
    gs = g[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(gs)) + 1])
    ys = y[order]
    if trials is not None:  # minus log binomial(trials, y): obs_loglik subtracts it, as log y! for Poisson
        ts = trials[order]
        lgy = gammaln(ys + 1.0) + gammaln(ts - ys + 1.0) - gammaln(ts + 1.0)
    else:
        ts = None
        lgy = gammaln(ys + 1.0) if family == "poisson" else np.zeros(n)
    return {
        "X": X[order],
        "y": ys,
        "group": gs,
        "offset": off[order],
        "starts": starts,
        "counts": counts.astype(float),
        "ysum": np.bincount(gs, weights=ys, minlength=G),
        "lgy": lgy,
        "trials": ts,
        "order": order,
        "family": family,
        "n_groups": G,
    }


# --------------------------------------------------------------------------- shared pieces
def softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def obs_loglik(eta, y, family, lgy, trials=None):
    """log p(y_i | eta_i) per observation (broadcast over leading axes of ``eta``)."""
    if family == "logit":
        return y * eta - softplus(eta) if trials is None else y * eta - trials * softplus(eta) - lgy
    with np.errstate(over="ignore"):
        return y * eta - np.exp(eta) - lgy


def response_mean(eta, family):
    """The success probability (logit) or the Poisson mean at ``eta``."""
    if family == "logit":
        return expit(eta)
    with np.errstate(over="ignore"):
        return np.exp(eta)


def mean_and_weight(eta, family, trials=None):
    """E[y_i] and Var[y_i] at ``eta`` (the score is ``y - mean``, the GLM weight ``var``);
    ``trials``: the binomial denominators (logit only; None for Bernoulli responses)."""
    mu = response_mean(eta, family)
    if family == "poisson":
        return mu, mu
    if trials is not None:
        return trials * mu, trials * mu * (1.0 - mu)
    return mu, mu * (1.0 - mu)


def group_sum(a, starts):
    """Sum the last axis (observations sorted by group) per group."""
    return np.add.reduceat(a, starts, axis=-1)


def normal_logpdf(u, sigma):
    return -0.5 * (u / sigma) ** 2 - np.log(sigma) - HALF_LOG_2PI


def beta_sigma(theta):
    return np.asarray(theta["beta"], dtype=float), float(theta["sigma"])


def glm_start(d, max_iter=25):
    """beta of the GLM without random effects (Newton / IRLS, a loop over iterations only)."""
    X, y, off, fam, trials = d["X"], d["y"], d["offset"], d["family"], d["trials"]
    p = X.shape[1]
    beta = np.zeros(p)
    if fam == "poisson":
        # start at the intercept-like level log(mean y) spread by least squares
        target = np.log(np.maximum(y, 0.5)) - off
        beta = np.linalg.lstsq(X, target, rcond=None)[0]
    for _ in range(max_iter):
        eta = X @ beta + off
        mu, w = mean_and_weight(eta, fam, trials)
        H = (X * w[:, None]).T @ X + 1e-8 * np.eye(p)
        step = np.linalg.solve(H, X.T @ (y - mu))
        step = np.clip(step, -2.0, 2.0)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    if not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) > 30:  # separation: give up quietly
        return np.zeros(p)
    return beta

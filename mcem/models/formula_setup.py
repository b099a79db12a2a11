"""From a formula's design to the pieces of a mixed model: :func:`model_spec`.

:func:`mcem.models.glmm` reads the formula with :func:`mcem.models.formula_terms.mixed_design`
and hands the design here, with the family and the binomial trials, to get a plain dict (the
*spec*) that the model function of :mod:`mcem.models.formula_glmm`, the exact Gaussian pieces of
:mod:`mcem.models.formula_gaussian` and the methods of :mod:`mcem.models.formula_ranef` read:

* the response, its trials (binomial counts) and the offset, checked for the family;
* the random terms merged by grouping factor into *factors*: the terms of one group (``(x || g)``
  gives one term per column, ``(1 | g) + (0 + x | g)`` two) share one latent array of shape
  ``(n_levels, k)`` and a block-diagonal covariance, one block per term (correlated within a
  term with k > 1, so ``(Days || Subject)`` is the diagonal of ``(Days | Subject)``);
* the hierarchical centring: a fixed-effect column equal to a random-effect column times a value
  that is constant within every level of that factor (the intercept and group-level covariates
  for a random intercept, ``Days`` for a random ``Days`` slope) is moved into the prior mean of
  that factor's latent, so the latent is the level's coefficient (fixed part plus random effect)
  rather than the random effect itself;
* the fixed scale of each latent column (``1 / rms(Z_j)``: the latent is stored on the scale of
  the linear predictor, so one random-walk step size suits every column);
* the starting values (a GLM or least-squares fit without random effects for ``beta``, standard
  deviations of the size of the residual spread, identity correlations) and the labels.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from ._glmm_common import glm_start

__all__ = ["FAMILIES", "model_spec", "column", "check_response", "labels", "prior_mean"]

#: The response families and their links.
FAMILIES = {"binomial": "logit", "poisson": "log", "gaussian": "identity"}


def column(data, value, name, n):
    """``value`` as a float array of length ``n``: a column name of ``data`` or an array."""
    if isinstance(value, str):
        try:
            value = data[value]
        except (KeyError, IndexError, TypeError):
            cols = list(data.columns) if hasattr(data, "columns") else list(getattr(data, "keys", list)())
            raise ValueError(f"{name}={value!r} is not a column of data; its columns are {cols}") from None
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric (a column name or an array of numbers), got dtype {arr.dtype}")
    arr = np.array(np.broadcast_to(arr, (n,)) if arr.ndim == 0 else arr, dtype=float)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have one value per observation ({n}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(arr)).sum())} NaN or inf value(s)")
    return arr


def _bad(y, mask):
    return f"{int(mask.sum())} value(s), e.g. {np.unique(y[mask])[:5].tolist()}"


def check_response(y, family, trials, response="response"):
    """Check the response for the family; return ``(y, trials, log normalising terms)``.

    ``binomial``: with ``trials`` integer counts ``0 <= y <= trials`` (trials positive integers);
    without, 0/1 responses. ``poisson``: non-negative integer counts. ``gaussian``: any reals.
    The last value holds, per observation, the part of log p(y | eta) free of eta (log binomial
    coefficients, -log y!), for the exact log-likelihood.
    """
    y = np.asarray(y, dtype=float)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"the response {response!r} must be finite")
    if trials is not None:
        bad = (trials < 1) | (trials != np.round(trials))
        if bad.any():
            raise ValueError(f"trials must hold positive integers (binomial totals), got {_bad(trials, bad)}")
        bad = (y != np.round(y)) | (y < 0)
        if bad.any():
            raise ValueError(f"the response {response!r} must hold non-negative integer counts of successes "
                             f"out of trials, got non-integer or negative {_bad(y, bad)}")
        bad = y > trials
        if bad.any():
            raise ValueError(f"trials must be at least the response {response!r} (counts of successes): "
                             f"{int(bad.sum())} observation(s) have more successes than trials, e.g. "
                             f"{response}={y[bad][:3].tolist()} with trials={trials[bad][:3].tolist()}")
        const = gammaln(trials + 1.0) - gammaln(y + 1.0) - gammaln(trials - y + 1.0)
    elif family == "binomial":
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise ValueError(f"family='binomial' without trials needs a 0/1 response {response!r}, got "
                             f"{_bad(y, bad)}; for counts of successes give trials= (a column name or an array)")
        const = np.zeros_like(y)
    elif family == "poisson":
        bad = (y < 0) | (y != np.round(y))
        if bad.any():
            raise ValueError(f"family='poisson' needs non-negative integer counts in {response!r}, got {_bad(y, bad)}")
        const = -gammaln(y + 1.0)
    else:
        const = np.zeros_like(y)
    return y, trials, const


# --------------------------------------------------------------------------- factors
def _merge_terms(terms):
    """Terms grouped by their grouping label, in order of first appearance."""
    out = {}
    for t in terms:
        out.setdefault(t.group, []).append(t)
    return out


def _group_ratio(x, z, index, G):
    """w[g] with x = z * w[index] on every row, or None when no such group-level w exists."""
    nz = z != 0
    if np.any(x[~nz] != 0) or not np.any(nz):
        return None
    r = x[nz] / z[nz]
    g = index[nz]
    hi = np.full(G, -np.inf)
    lo = np.full(G, np.inf)
    np.maximum.at(hi, g, r)
    np.minimum.at(lo, g, r)
    seen = np.isfinite(hi)
    if np.any(hi[seen] - lo[seen] > 1e-10 * (1.0 + np.abs(hi[seen]))):
        return None
    return np.where(seen, hi, 0.0)


def _factor(group, terms):
    """One grouping factor: its latent columns, covariance blocks and parameter names."""
    index = terms[0].index
    levels = terms[0].levels
    for t in terms[1:]:
        if t.levels != levels or not np.array_equal(t.index, index):
            raise ValueError(f"formula: the terms of group {group!r} disagree on its levels")
    Z = np.column_stack([t.Z for t in terms]).astype(float)
    names = tuple(n for t in terms for n in t.names)
    if len(set(names)) < len(names):
        raise ValueError(f"formula: the random effects of group {group!r} name a column twice ({list(names)}); "
                         "each column may have one random effect per grouping factor")
    rms = np.sqrt(np.mean(Z**2, axis=0))
    if np.any(rms == 0):
        raise ValueError(f"formula: the random-effect column(s) {[names[j] for j in np.flatnonzero(rms == 0)]} "
                         f"of group {group!r} are zero in every row")
    blocks, start, corr = [], 0, []
    n_corr = sum(t.Z.shape[1] > 1 for t in terms)
    for t in terms:
        k = t.Z.shape[1]
        name = None
        if k > 1:
            name = f"corr_{group}" if n_corr == 1 else f"corr_{group}_{len(corr) + 1}"
            corr.append(name)
        blocks.append((start, start + k, name))
        start += k
    return {
        "group": group, "index": np.asarray(index, dtype=np.int64), "levels": tuple(levels),
        "n_levels": len(levels), "Z": Z, "names": names, "scale": 1.0 / rms, "blocks": tuple(blocks),
        "latent": f"v_{group}", "sd": f"sd_{group}",
    }


def _attach(X, factors):
    """Assign fixed-effect columns to the factor components they centre (first fit wins)."""
    free = []
    att = {i: [] for i in range(len(factors))}
    for c in range(X.shape[1]):
        placed = False
        for i, f in enumerate(factors):
            for j in range(f["Z"].shape[1]):
                w = _group_ratio(X[:, c], f["Z"][:, j], f["index"], f["n_levels"])
                if w is not None:
                    att[i].append((c, j, w))
                    placed = True
                    break
            if placed:
                break
        if not placed:
            free.append(c)
    for i, f in enumerate(factors):
        a = att[i]
        f["att_cols"] = np.array([c for c, _, _ in a], dtype=np.int64)
        f["att_comp"] = np.array([j for _, j, _ in a], dtype=np.int64)
        f["W"] = np.column_stack([w for _, _, w in a]) if a else np.zeros((f["n_levels"], 0))
        A = np.zeros((len(a), f["Z"].shape[1]))
        A[np.arange(len(a)), f["att_comp"]] = 1.0
        f["A"] = A  # one-hot: attachment -> component
    return np.array(free, dtype=np.int64)


def _start(spec, X, y, offset, trials, family):
    """Starting values: beta from the model without random effects, spreads from its residuals."""
    if family == "gaussian":
        beta, *_ = np.linalg.lstsq(X, y - offset, rcond=None)
        resid = y - offset - X @ beta
        spread = max(float(np.std(resid)), 1e-8 * (1.0 + float(np.std(y)))) / np.sqrt(2.0)
    else:
        link = "logit" if family == "binomial" else "poisson"
        beta = glm_start({"X": X, "y": y, "offset": offset, "family": link, "trials": trials})
        spread = 1.0 if family == "binomial" else 0.5
    init = {"beta": np.asarray(beta, dtype=float)}
    for f in spec["factors"]:
        init[f["sd"]] = spread * f["scale"]
        for a, b, name in f["blocks"]:
            if name is not None:
                init[name] = np.eye(b - a)
    if family == "gaussian":
        init["sigma"] = spread
    return init


def labels(spec):
    """Per-element labels of every parameter with an array value (C order), lme4's way:
    the fixed effects by their column names, ``sd(Days|Subject)`` for a standard deviation,
    ``cor(Days,(Intercept)|Subject)`` for an entry of the first column of a correlation matrix's
    Cholesky factor (which is that correlation) and ``L(r,c|Subject)`` for its other entries."""
    out = {"beta": list(spec["fixed_names"])}
    for f in spec["factors"]:
        g = f["group"]
        out[f["sd"]] = [f"sd({n}|{g})" for n in f["names"]]
        for a, b, name in f["blocks"]:
            if name is not None:
                nb = f["names"][a:b]
                out[name] = [f"cor({r},{c}|{g})" if j == 0 and i > 0 else f"L({r},{c}|{g})"
                             for i, r in enumerate(nb) for j, c in enumerate(nb)]
    return out


def model_spec(design, family, trials=None, offset=None):
    """The spec of the mixed model of ``design`` (a :class:`~mcem.models.formula_terms.MixedDesign`).

    ``trials`` and ``offset`` are float arrays (or None), already read from the data.
    """
    n = design.y.shape[0]
    off = np.zeros(n) if design.offset is None else np.asarray(design.offset, dtype=float)
    if offset is not None:
        off = off + offset
    y, trials, const = check_response(design.y, family, trials, design.response)
    X = np.asarray(design.X, dtype=float)
    groups = _merge_terms(design.terms)
    factors = [_factor(g, ts) for g, ts in groups.items()]
    free = _attach(X, factors)
    spec = {
        "family": family, "formula": design.formula, "response": design.response,
        "fixed_names": tuple(design.fixed_names), "y": y, "X": X, "offset": off, "trials": trials,
        "const": const, "free": free, "factors": tuple(factors), "n_obs": n,
    }
    spec["init"] = _start(spec, X, y, off, trials, family)
    for f in factors:  # chains start at each level's prior mean under the starting values
        f["v0"] = prior_mean(f, spec["init"]["beta"]) * (1.0 / f["scale"])
    return spec


def prior_mean(f, beta, ns=np):
    """The prior mean of a factor's coefficients, (n_levels, k), unscaled: ``W (beta_att A)``."""
    if f["W"].shape[1] == 0:
        return ns.zeros((f["n_levels"], f["Z"].shape[1]))
    return f["W"] @ (beta[f["att_cols"]][:, None] * f["A"])

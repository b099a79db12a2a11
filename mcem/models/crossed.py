"""Logit models with crossed random effects, and the salamander mating data.

Model (observations ``k = 1..n``, each a pairing of female ``i(k)`` with male ``j(k)``)::

    y_k | f, g ~ Bernoulli(expit(x_k^T beta + f_i(k) + g_j(k)))
    f_i ~ N(0, sigma2_f),  i = 1..n_females          (female random effects)
    g_j ~ N(0, sigma2_m),  j = 1..n_males            (male random effects)

Parameters: ``beta`` (real, shape (p,)), ``sigma2_f`` and ``sigma2_m`` (positive): the variance
components themselves (not standard deviations), as reported by Karim & Zeger (1992) and Booth &
Hobert (1999). Latents: ``f`` (``Continuous(real, shape=n_females, unit=True)``) and ``g``
(``Continuous(real, shape=n_males, unit=True)``) on their natural scale. The female and male
labels of the data are re-indexed to ``0..n-1`` in sorted order (``model.data["female_labels"]``
and ``["male_labels"]`` keep the originals).

The two sets of units differ, so the log joint is returned as a total (one value per batch
element) and ``conditionals`` give, for each site, the per-unit terms (a female's prior term plus
the Bernoulli terms of all her pairings; likewise for males): the site-by-site sampler updates all
60 females at once, then all 60 males, each unit accepted or rejected on its own.

Salamander parameterisation (:func:`salamander`): four cross effects, one per cross type, no
intercept: ``beta = (beta_RR, beta_RW, beta_WR, beta_WW)`` with the female's population first
(``RW`` = rough-butt female x whiteside male), so ``expit(beta_c)`` is the mating probability of
an average pair of cross ``c``. (The intercept + contrasts form ``beta_RR, beta_RW - beta_RR, ...``
is a linear reparameterisation with the same likelihood.)

The marginal likelihood is a (n_females + n_males)-dimensional integral with no closed form.
For small designs, :func:`crossed_logit_loglik` computes it by nested Gauss-Hermite quadrature
(a product grid over the smaller set of units, one-dimensional rules for the other set, whose
units are conditionally independent given the first); ``crossed_logit(..., quadrature=K)``
attaches it to the model as the exact log-likelihood.
"""

from __future__ import annotations

import numbers
from functools import partial
from typing import NamedTuple

import numpy as np
from scipy.special import expit, logsumexp, roots_hermite

from .. import constraints as C
from ..datasets import load_salamander
from ..core import Continuous, Model
from ._common import Memo, bind, ready_model

__all__ = [
    "crossed_logit",
    "crossed_logit_loglik",
    "salamander",
    "salamander_design",
    "SALAMANDER_CROSSES",
    "BOOTH_HOBERT_1999",
]

#: Cross types, female population first (R = rough butt, W = whiteside).
SALAMANDER_CROSSES = ("RR", "RW", "WR", "WW")

#: MCEM estimates of Booth & Hobert (1999, JRSS-B 61:265-285, sec. 6) for the salamander data,
#: in the parameterisation of :func:`salamander` (they agree with Karim & Zeger 1992).
BOOTH_HOBERT_1999 = {"beta": (1.03, 0.32, -1.95, 0.99), "sigma2_f": 1.40, "sigma2_m": 1.25}

_MAX_GRID = 2_000_000  # nodes x inner nodes x observations per quadrature chunk


def _reindex(ids, name, n):
    arr = np.asarray(ids)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a 1-D array with one id per observation ({n}), got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must not contain NaN or inf ids")
    labels, idx = np.unique(arr, return_inverse=True)
    return labels, idx.astype(np.int64)


def _check_inputs(y, X, female, male):
    y_arr = np.asarray(y)
    if y_arr.dtype == object or not (np.issubdtype(y_arr.dtype, np.number) or y_arr.dtype == bool):
        raise TypeError(f"y must be a 1-D array of 0/1 responses, got dtype {y_arr.dtype}")
    if y_arr.ndim != 1 or y_arr.size == 0:
        raise ValueError(f"y must be a non-empty 1-D array of 0/1 responses, got shape {y_arr.shape}")
    if not np.all(np.isin(y_arr, (0, 1))):
        bad = np.unique(y_arr[~np.isin(y_arr, (0, 1))])[:5]
        raise ValueError(f"y must contain only 0 and 1, got value(s) {bad.tolist()!r}")
    n = y_arr.size
    X_arr = np.asarray(X)
    if X_arr.dtype == object or not (np.issubdtype(X_arr.dtype, np.number) or X_arr.dtype == bool):
        raise TypeError(f"X must be a numeric (n, p) design matrix, got dtype {X_arr.dtype}")
    X_arr = np.array(X_arr, dtype=float)
    if X_arr.ndim == 1:
        X_arr = X_arr[:, None]
    if X_arr.ndim != 2 or X_arr.shape[0] != n:
        raise ValueError(f"X must have shape (n, p) with n = len(y) = {n}, got shape {X_arr.shape}")
    if not np.all(np.isfinite(X_arr)):
        raise ValueError("X must be finite")
    if np.linalg.matrix_rank(X_arr) < X_arr.shape[1]:
        raise ValueError(
            f"X must have full column rank {X_arr.shape[1]}, got rank {np.linalg.matrix_rank(X_arr)}"
        )
    f_labels, f_idx = _reindex(female, "female", n)
    m_labels, m_idx = _reindex(male, "male", n)
    return y_arr.astype(float), X_arr, f_labels, f_idx, m_labels, m_idx


def _log_expit(t):
    """log(1 / (1 + exp(-t))) = min(t, 0) - log1p(exp(-|t|)): stable, and about twice as fast
    as ``scipy.special.log_expit`` on large arrays (this is the hot path of the M step)."""
    out = np.abs(t)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    return np.minimum(t, 0.0) - out


def _grouping(idx, n_groups):
    """``(order, starts)`` such that :func:`_group_sum` sums the last axis within groups."""
    order = np.argsort(idx, kind="stable")
    counts = np.bincount(idx, minlength=n_groups)
    return order, np.concatenate([[0], np.cumsum(counts)[:-1]])


def _group_sum(terms, grouping):
    """Sum the last axis of per-observation terms within groups: one ``np.add.reduceat`` call."""
    order, starts = grouping
    return np.add.reduceat(terms[..., order], starts, axis=-1)


class _OffsetCache:
    """``f[..., female] + g[..., male]`` per observation, remembered for the last large batch.

    The M step and the standard errors evaluate the log joint at many theta on the *same*
    draws; the random-effect offsets depend on the draws only. For batches of at least
    ``min_size`` latent values the last inputs are kept as copies and compared exactly
    (``np.array_equal``, far cheaper than the gather it saves), so a changed or reused array
    can never return a stale value. A copy made by :mod:`pickle` starts empty.
    """

    def __init__(self, min_size=4096):
        self.min_size = min_size
        self.f = self.g = self.value = self.data = None

    def __getstate__(self):
        return {"min_size": self.min_size}

    def __setstate__(self, state):
        self.__init__(state["min_size"])

    def __call__(self, f, g, data):
        f, g = np.asarray(f), np.asarray(g)
        if f.size < self.min_size:
            return f[..., data["female"]] + g[..., data["male"]]
        if (
            self.f is not None
            and self.data is data
            and self.f.shape == f.shape
            and self.g.shape == g.shape
            and np.array_equal(self.f, f)
            and np.array_equal(self.g, g)
        ):
            return self.value
        value = f[..., data["female"]] + g[..., data["male"]]
        self.f, self.g, self.value, self.data = f.copy(), g.copy(), value, data
        value.flags.writeable = False
        return value


# --------------------------------------------------------------------------- the model's functions
class _Parts(NamedTuple):
    """Derived once from the data, taken first by the model's functions."""

    sign: np.ndarray  # 2 y - 1: log p(y | eta) = log expit(sign * eta)
    by_female: tuple  # _grouping of the observations by female
    by_male: tuple
    offsets: _OffsetCache
    xb: Memo  # of _xb


def _xb(theta, data):
    return data["X"] @ theta["beta"]


def _eta(parts, theta, z, data):
    return parts.xb(theta, data) + parts.offsets(z["f"], z["g"], data)


def _obs_terms(parts, theta, z, data):
    return _log_expit(parts.sign * _eta(parts, theta, z, data))


def _prior(u, s2):
    return -0.5 * (np.log(2 * np.pi * s2) + u * u / s2)


def _log_joint(parts, theta, z, data):
    return (
        _obs_terms(parts, theta, z, data).sum(axis=-1)
        + _prior(z["f"], theta["sigma2_f"]).sum(axis=-1)
        + _prior(z["g"], theta["sigma2_m"]).sum(axis=-1)
    )


def _cond_f(parts, theta, z, data):
    return _group_sum(_obs_terms(parts, theta, z, data), parts.by_female) + _prior(z["f"], theta["sigma2_f"])


def _cond_g(parts, theta, z, data):
    return _group_sum(_obs_terms(parts, theta, z, data), parts.by_male) + _prior(z["g"], theta["sigma2_m"])


def _grad_params(parts, theta, z, data):
    resid = data["y"] - expit(_eta(parts, theta, z, data))  # (..., n)
    sf, sm = theta["sigma2_f"], theta["sigma2_m"]
    n_f, n_m = data["female_labels"].size, data["male_labels"].size
    ssf = np.sum(z["f"] ** 2, axis=-1)
    ssm = np.sum(z["g"] ** 2, axis=-1)
    return {
        "beta": resid @ data["X"],
        "sigma2_f": -0.5 * n_f / sf + 0.5 * ssf / sf**2,
        "sigma2_m": -0.5 * n_m / sm + 0.5 * ssm / sm**2,
    }


def _loglik(n_nodes, theta, data):
    return crossed_logit_loglik(theta, data, n_nodes=n_nodes)


def _log_joint_total(parts, theta, z, data):
    return _log_joint(parts, theta, z, data)


def crossed_logit(y, X, female, male, *, init=None, quadrature=None, name="crossed_logit") -> Model:
    """A logit model with crossed female and male random effects as an :class:`mcem.Model`.

    Parameters
    ----------
    y : (n,) array of 0/1
        Binary responses.
    X : (n, p) array
        Fixed-effects design (include an intercept column if wanted).
    female, male : (n,) arrays
        Unit ids (any sortable labels); re-indexed to ``0..n_females-1`` and ``0..n_males-1``.
    init : dict, optional
        Starting values; default ``beta = 0``, ``sigma2_f = sigma2_m = 1``.
    quadrature : int, optional
        Gauss-Hermite nodes per dimension for an exact (quadrature) log-likelihood, attached as
        ``loglik``; only for small designs (see :func:`crossed_logit_loglik`).

    Returns
    -------
    Model
        With ``log_joint`` (total per batch element), ``conditionals`` for ``f`` and ``g``,
        ``log_joint_total``, ``grad_params`` and ``n_obs = n``. The re-indexed design is in
        ``model.data`` (``y``, ``X``, ``female``, ``male``, ``female_labels``, ``male_labels``).
    """
    y, X, f_labels, f_idx, m_labels, m_idx = _check_inputs(y, X, female, male)
    n, p = X.shape
    n_f, n_m = f_labels.size, m_labels.size
    data = {
        "y": y, "X": X, "female": f_idx, "male": m_idx,
        "female_labels": f_labels, "male_labels": m_labels,
    }
    parts = _Parts(2.0 * y - 1.0, _grouping(f_idx, n_f), _grouping(m_idx, n_m), _OffsetCache(), Memo(_xb, ("beta",)))
    quad = ()
    if quadrature is not None:
        crossed_logit_loglik({"beta": np.zeros(p), "sigma2_f": 1.0, "sigma2_m": 1.0}, data, n_nodes=quadrature)
        quad = (partial(_loglik, quadrature),)

    init = {"beta": np.zeros(p), "sigma2_f": 1.0, "sigma2_m": 1.0} if init is None else init
    return ready_model(
        *bind(parts, _log_joint, _grad_params, _log_joint_total), *quad,
        params={"beta": C.real(shape=p), "sigma2_f": C.positive, "sigma2_m": C.positive},
        latents={
            "f": Continuous(C.real, shape=n_f, unit=True),
            "g": Continuous(C.real, shape=n_m, unit=True),
        },
        data=data, init=init, conditionals=dict(zip("fg", bind(parts, _cond_f, _cond_g), strict=True)),
        n_obs=n, name=name,
    )


def crossed_logit_loglik(theta, data, n_nodes=20) -> float:
    """The marginal log-likelihood of a small crossed logit design by nested Gauss-Hermite rules.

    The random effects of the set with fewer units (say the males, ``n_m`` of them) are
    integrated on a product grid of ``n_nodes ** n_m`` nodes; given them, the other set's units
    are independent and each is integrated with a one-dimensional rule of ``n_nodes`` nodes.
    The cost grows like ``n_nodes ** (min(n_f, n_m) + 1) * n``; the product grid is capped at
    one million nodes (a ``ValueError`` beyond).

    Parameters
    ----------
    theta : dict
        ``beta``, ``sigma2_f``, ``sigma2_m``.
    data : dict
        ``model.data`` of :func:`crossed_logit` (``y``, ``X``, re-indexed ``female``, ``male``).
    n_nodes : int
        Gauss-Hermite nodes per dimension.
    """
    if not isinstance(n_nodes, numbers.Integral) or isinstance(n_nodes, bool) or n_nodes < 2:
        raise ValueError(f"n_nodes must be an int >= 2, got {n_nodes!r}")
    for k in ("y", "X", "female", "male"):
        if k not in data:
            raise ValueError(f"data must be the model.data of crossed_logit (keys y, X, female, male), missing {k!r}")
    y = np.asarray(data["y"], dtype=float)
    X = np.asarray(data["X"], dtype=float)
    fi, mi = np.asarray(data["female"]), np.asarray(data["male"])
    n_f, n_m = int(fi.max()) + 1, int(mi.max()) + 1
    beta = np.asarray(theta["beta"], dtype=float)
    s2f, s2m = float(theta["sigma2_f"]), float(theta["sigma2_m"])
    # outer: the smaller set of units on a product grid; inner: the other set, one unit at a time
    males_outer = n_m <= n_f
    n_out, n_in, s2_out, s2_in = (n_m, n_f, s2m, s2f) if males_outer else (n_f, n_m, s2f, s2m)
    G = n_nodes**n_out
    if G > 1_000_000:
        raise ValueError(
            f"crossed_logit_loglik: the product grid would have n_nodes ** {n_out} = {G} nodes "
            "(> 1e6); use fewer nodes or a design with fewer units on its smaller side"
        )
    x, w = roots_hermite(n_nodes)
    nodes = np.sqrt(2.0) * x  # N(0, 1) nodes
    logw = np.log(w) - 0.5 * np.log(np.pi)
    # replicates (same female, male and linear predictor) as binomial counts: k successes of r
    base_all = X @ beta
    keys = np.column_stack([fi, mi, base_all])
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    n_succ = np.bincount(inv, weights=y, minlength=uniq.shape[0])
    n_fail = np.bincount(inv, weights=1.0 - y, minlength=uniq.shape[0])
    fi, mi, base = uniq[:, 0].astype(np.int64), uniq[:, 1].astype(np.int64), uniq[:, 2]
    outer_idx, inner_idx = (mi, fi) if males_outer else (fi, mi)
    inner = np.sqrt(s2_in) * nodes  # (K,)
    groups = _grouping(inner_idx, n_in)
    # all outer grid points, chunked so that chunk x K x n stays small
    chunk = max(1, _MAX_GRID // (n_nodes * base.size))
    total = []
    for start in range(0, G, chunk):  # a loop over chunks of grid nodes, not over data
        ids = np.arange(start, min(G, start + chunk))
        digits = (ids[:, None] // n_nodes ** np.arange(n_out)[None, :]) % n_nodes  # (c, n_out)
        u_out = np.sqrt(s2_out) * nodes[digits]  # (c, n_out)
        lw_out = logw[digits].sum(axis=1)  # (c,)
        eta = base + u_out[:, outer_idx]  # (c, n)
        t = eta[:, None, :] + inner[None, :, None]  # (c, K, n_rows)
        ll = n_succ * _log_expit(t) + n_fail * _log_expit(-t)
        per_unit = _group_sum(ll, groups)  # (c, K, n_in)
        li = logsumexp(per_unit + logw[None, :, None], axis=1)  # (c, n_in)
        total.append(lw_out + li.sum(axis=1))
    return float(logsumexp(np.concatenate(total)))


def salamander_design(data=None) -> dict:
    """The salamander design: ``y`` (Mate), ``X`` (4 cross indicators, columns RR, RW, WR, WW),
    ``female`` and ``male`` ids, from :func:`mcem.datasets.load_salamander` by default."""
    if data is None:
        data = load_salamander()
    for k in ("Cross", "Female", "Male", "Mate"):
        if k not in data:
            raise ValueError(f"data must have the columns Cross, Female, Male and Mate; missing {k!r}")
    cross = np.asarray(data["Cross"]).astype(str)
    unknown = sorted(set(cross.tolist()) - set(SALAMANDER_CROSSES))
    if unknown:
        raise ValueError(f"data['Cross'] must take the values {list(SALAMANDER_CROSSES)}, got {unknown}")
    X = (cross[:, None] == np.array(SALAMANDER_CROSSES)[None, :]).astype(float)
    return {"y": np.asarray(data["Mate"]), "X": X, "female": np.asarray(data["Female"]),
            "male": np.asarray(data["Male"])}


def salamander(data=None, init=None) -> Model:
    """The salamander mating model of Karim & Zeger (1992) and Booth & Hobert (1999).

    :func:`crossed_logit` with ``beta = (beta_RR, beta_RW, beta_WR, beta_WW)`` (one effect per
    cross type, female population first, no intercept) on the 360 matings of 60 females and 60
    males (McCullagh & Nelder 1989, sec. 14.5; each animal is in one experiment only, so the ids
    1..60 identify animals). Published MCEM estimates: :data:`BOOTH_HOBERT_1999`.
    """
    d = salamander_design(data)
    return crossed_logit(d["y"], d["X"], d["female"], d["male"], init=init, name="salamander")

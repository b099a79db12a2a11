"""The genetic-linkage multinomial of Dempster, Laird & Rubin (1977): the first EM example.

Data: 197 animals in four phenotype classes with counts ``y = (y1, y2, y3, y4) = (125, 18, 20,
34)`` (Rao 1973, sec. 5g; DLR 1977, sec. 1) and cell probabilities::

    (1/2 + theta/4,  (1 - theta)/4,  (1 - theta)/4,  theta/4),      0 < theta < 1.

Complete data: the first cell is split, ``y1 = x1 + x2`` with probabilities 1/2 and theta/4, so
that the latent ``x2`` (``Discrete(y1 + 1)``, values 0..y1) is, given theta and the data,

    x2 | y ~ Binomial(y1, (theta/4) / (1/2 + theta/4)),

and the complete-data log-likelihood is binomial in theta with ``x2 + y4`` successes and
``y2 + y3`` failures::

    log p(y, x2; theta) = x2 log(theta/4) + (y1 - x2) log(1/2) - log x2! - log (y1 - x2)!
                          + (y2 + y3) log((1 - theta)/4) + y4 log(theta/4) + log (n! / (y2! y3! y4!))

E step: ``E[x2] = y1 (theta/4) / (1/2 + theta/4)``; M step: ``theta = (x2 + y4) / (x2 + y2 + y3
+ y4)``. The MLE solves ``n theta^2 - (y1 - 2 y2 - 2 y3 - y4) theta - 2 y4 = 0``
(:func:`linkage_mle`); for the classic counts ``theta_hat = 0.6268214980``.
"""

from __future__ import annotations

import numbers
from functools import partial

import numpy as np
from scipy.special import gammaln

from .. import constraints as C
from .._validation import as_generator
from ..core import Discrete, Model
from ._common import ready_model

__all__ = ["genetic_linkage", "linkage_mle", "LINKAGE_COUNTS"]

#: Rao (1973), sec. 5g; Dempster, Laird & Rubin (1977), JRSS-B 39:1-38, sec. 1.
LINKAGE_COUNTS = (125, 18, 20, 34)


def _check_counts(counts, name="counts"):
    arr = np.asarray(counts)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be 4 non-negative integer counts, got {counts!r}")
    if arr.shape != (4,):
        raise ValueError(f"{name} must have shape (4,) (four phenotype classes), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must be non-negative integers, got {arr.tolist()!r}")
    arr = arr.astype(np.int64)
    if arr[1] + arr[2] == 0 or (arr[3] == 0 and arr[0] == 0):
        raise ValueError(
            f"{name}: need y2 + y3 > 0 and y1 + y4 > 0 for an interior MLE, got {arr.tolist()!r}"
        )
    return arr


def linkage_mle(counts=LINKAGE_COUNTS) -> float:
    """The closed-form MLE of theta: the root in (0, 1) of
    ``n theta^2 - (y1 - 2 y2 - 2 y3 - y4) theta - 2 y4 = 0``."""
    y1, y2, y3, y4 = _check_counts(counts)
    n = y1 + y2 + y3 + y4
    b = y1 - 2 * y2 - 2 * y3 - y4
    return float((b + np.sqrt(b * b + 8.0 * n * y4)) / (2.0 * n))


def genetic_linkage(counts=LINKAGE_COUNTS, init=0.5) -> Model:
    """The genetic-linkage model as an :class:`mcem.Model` with exact EM extras.

    Parameters
    ----------
    counts : sequence of 4 non-negative ints
        Phenotype counts ``(y1, y2, y3, y4)``; default the classic ``(125, 18, 20, 34)``.
    init : float
        Starting value of ``theta`` in (0, 1).

    Returns
    -------
    Model
        Parameter ``theta`` (``interval(0, 1)``); latent ``x2`` (``Discrete(y1 + 1)``, a scalar);
        ``exact_estep``, ``mstep``, ``sufficient_stats`` (``{"x2": mean x2}``), ``loglik`` (the
        observed multinomial log-likelihood including its constant), ``posterior_sampler``
        (binomial draws) and ``n_obs`` = the total count.
    """
    y = _check_counts(counts)
    if not isinstance(init, numbers.Real) or not 0.0 < float(init) < 1.0:
        raise ValueError(f"init must be a number in (0, 1), got {init!r}")
    y1, y2, y3, y4 = (int(v) for v in y)
    const = float(gammaln(y.sum() + 1) - gammaln(y[1:] + 1).sum())  # log n! / (y2! y3! y4!)
    return ready_model(
        partial(_log_joint, (y1, y2, y3, y4, const)), _exact_estep, _mstep, _sufficient_stats, _loglik, _posterior_sampler,
        params={"theta": C.unit_interval}, latents={"x2": Discrete(int(y[0]) + 1)}, data={"counts": y},
        init={"theta": float(init)}, n_obs=int(y.sum()), name="genetic_linkage",
    )


# --------------------------------------------------------------------------- the model's functions
def _log_joint(counts_and_const, theta, z, data):
    y1, y2, y3, y4, const = counts_and_const
    t = theta["theta"]
    x2 = np.asarray(z["x2"], dtype=float)
    return (
        x2 * np.log(t / 4) + (y1 - x2) * np.log(0.5) - gammaln(x2 + 1) - gammaln(y1 - x2 + 1)
        + (y2 + y3) * np.log((1 - t) / 4) + y4 * np.log(t / 4) + const
    )


def _p(t):
    return (t / 4) / (0.5 + t / 4)


def _exact_estep(theta, data):
    return {"x2": int(data["counts"][0]) * _p(float(theta["theta"]))}, _loglik(theta, data)


def _sufficient_stats(z, data):
    return {"x2": float(np.mean(z["x2"]))}


def _mstep(stats, data):
    _, y2, y3, y4 = (int(v) for v in data["counts"])
    x2 = float(stats["x2"])
    return {"theta": np.array((x2 + y4) / (x2 + y4 + y2 + y3))}


def _loglik(theta, data):
    y = data["counts"]
    t = float(theta["theta"])
    p = np.array([0.5 + t / 4, (1 - t) / 4, (1 - t) / 4, t / 4])
    return float(np.sum(y * np.log(p)) + gammaln(int(y.sum()) + 1) - gammaln(y + 1).sum())


def _posterior_sampler(theta, data, rng, batch=()):
    rng = as_generator(rng)
    return {"x2": rng.binomial(int(data["counts"][0]), _p(float(theta["theta"])), size=tuple(batch))}

"""The passes over draws x observations shared by the random-intercept GLMM's functions
(:mod:`mcem.models.glmm_model`) and its parameter-expanded M step (:mod:`mcem.models.glmm_expand`):
the linear predictor in blocks of the flattened batch of draws, the logistic mean and weight from
one ``exp``, the residuals ``y - mean``. Observations are sorted by group; no loop over groups or
observations."""

from __future__ import annotations

import numpy as np

__all__ = ["CHUNK", "eta_blocks", "group_sizes", "log1p_exp_neg_abs", "flat_u", "logistic", "residual_blocks"]

CHUNK = 1 << 16  # elements (draws x observations) per block of the vectorised evaluations


def eta_blocks(lin, u, reps):
    """Yield ``(rows, eta)`` over blocks of the flattened batch: eta = lin + u[rows] repeated over
    each group's observations (``reps``: the group sizes; observations are sorted by group).

    Working in blocks of about ``CHUNK`` elements keeps the temporaries in cache (a single
    (draws x observations) array of many draws is slow to allocate and to traverse); ``eta`` is
    a fresh array the caller may overwrite.
    """
    B, n = u.shape[0], lin.shape[0]
    step = max(1, CHUNK // n)
    for a in range(0, B, step):
        b = min(B, a + step)
        eta = np.repeat(u[a:b], reps, axis=1)  # contiguous groups: faster than a gather
        eta += lin
        yield slice(a, b), eta


def group_sizes(data):
    return data["counts"].astype(np.intp)


def log1p_exp_neg_abs(eta, out):
    """log(1 + exp(-|eta|)) into ``out`` (log of 1 + t rather than log1p: absolute error ~1e-16)."""
    np.abs(eta, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    out += 1.0
    return np.log(out, out=out)


def flat_u(z, G):
    u = np.asarray(z["u"], dtype=float)
    return u, u.reshape(-1, G)



def logistic(eta):
    """``(mean, t, r)`` of the logistic at ``eta``, overwriting ``eta`` with the mean: with
    ``t = exp(-|eta|)`` and ``r = 1 / (1 + t)``, the mean is ``r`` where ``eta >= 0`` and
    ``1 - r = t r`` elsewhere, i.e. ``1/2 + sign(eta) (r - 1/2)`` (one exp, no branch); the
    GLM weight is ``t r^2``."""
    t = np.abs(eta)
    np.negative(t, out=t)
    np.exp(t, out=t)
    r = t + 1.0
    np.reciprocal(r, out=r)
    np.sign(eta, out=eta)
    eta *= r - 0.5
    eta += 0.5
    return eta, t, r


def residual_blocks(beta, uf, data):
    """Yield ``(rows, y - mean)`` over blocks of the flattened batch (the mean of each observation
    at eta = X beta + offset + u_g; binomial means carry their trials)."""
    fam = data["family"]
    lin = data["X"] @ beta + data["offset"]
    for rows, eta in eta_blocks(lin, uf, group_sizes(data)):
        if fam != "poisson":
            logistic(eta)
            if data["trials"] is not None:
                eta *= data["trials"]
        else:
            with np.errstate(over="ignore"):
                np.exp(eta, out=eta)
        np.subtract(data["y"], eta, out=eta)
        yield rows, eta

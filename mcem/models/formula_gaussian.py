"""The exact pieces of a Gaussian mixed model from a formula (:func:`mcem.models.glmm` with
``family="gaussian"``): marginal log-likelihood, posterior of the latents, exact E step and
closed-form M step.

With ``v_f`` the coefficients of factor ``f`` (the hierarchically centred latents of
:mod:`mcem.models.formula_glmm`, unscaled), prior mean ``mu_f = W_f (beta_att A_f)`` and
``b_f = v_f - mu_f``, the data are ``y = offset + X_U beta_U + Z mu + Z b + e`` with
``b ~ N(0, Sigma_b)`` (block diagonal) and ``e ~ N(0, sigma^2 I)``. With ``r`` the residual at
``b = 0`` and ``P = Sigma_b^{-1} + Z'Z / sigma^2`` (the posterior precision of ``b``)::

    log p(y) = -1/2 [n log(2 pi sigma^2) + log|Sigma_b| + log|P| + r'r/sigma^2 - c' P^{-1} c],
    c = Z'r / sigma^2,      b | y ~ N(P^{-1} c, P^{-1})

(the matrix determinant lemma and the Woodbury identity for ``Z Sigma_b Z' + sigma^2 I``). With
one grouping factor ``P`` is block diagonal, one ``k x k`` block per level, and everything is
vectorised over the levels; with several (crossed or nested) factors ``P`` is the dense joint
precision of all random effects.

EM: the complete-data statistics are ``Zv`` (per observation), ``|Zv|^2``, and per factor
``sum_g v_g v_g'`` and ``sum_g v_g w_g'``. The M step regresses ``y - offset - Zv`` on the free
columns for ``beta_U`` and ``sigma``, and for each factor solves the regression of the levels on
their group-level covariates with a block-diagonal covariance (a seemingly-unrelated regression,
iterated to its maximum: generalised least squares for the coefficients given the covariance,
the block-diagonal residual covariance given the coefficients).
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy import sparse

from .formula_setup import prior_mean

__all__ = ["gaussian_hooks", "posterior", "covariance"]

LOG_2PI = np.log(2.0 * np.pi)
#: Largest number of random effects (all factors together) for the dense joint posterior.
MAX_DENSE = 6000


def covariance(f, theta):
    """Sigma of a factor (k, k) from ``sd_<group>`` and its correlation factors."""
    sd = np.asarray(theta[f["sd"]], dtype=float)
    L = np.eye(sd.size)
    for a, b, name in f["blocks"]:
        if name is not None:
            L[a:b, a:b] = theta[name]
    R = L @ L.T
    return R * np.outer(sd, sd)


def _plan(spec):
    """What the exact computations reuse: the data and the cross-products of Z."""
    fs = spec["factors"]
    offs = np.cumsum([0] + [f["n_levels"] * f["Z"].shape[1] for f in fs])
    plan = {"spec": spec, "XU": spec["X"][:, spec["free"]], "offsets": offs, "q": int(offs[-1])}
    if len(fs) == 1:
        f = fs[0]
        k = f["Z"].shape[1]
        ZtZ = np.zeros((f["n_levels"], k, k))
        np.add.at(ZtZ, f["index"], f["Z"][:, :, None] * f["Z"][:, None, :])
        plan["ZtZ"] = ZtZ
    else:
        if plan["q"] > MAX_DENSE:
            raise ValueError(
                f"formula: the Gaussian model with several grouping factors has {plan['q']} random effects; "
                f"its exact posterior is computed densely, up to {MAX_DENSE}"
            )
        n = spec["y"].shape[0]
        rows, cols, vals = [], [], []
        for f, o in zip(fs, offs[:-1]):
            k = f["Z"].shape[1]
            for j in range(k):  # a loop over the columns of a term
                rows.append(np.arange(n))
                cols.append(o + f["index"] * k + j)
                vals.append(f["Z"][:, j])
        Zall = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                 shape=(n, plan["q"]))
        plan["Zall"] = Zall
        plan["ZtZ"] = (Zall.T @ Zall).toarray()
    return plan


def _zv(spec, vs):
    """sum_f z_fi' v_f[g_f(i)] for v of shape (..., n_levels, k) per factor: (..., n)."""
    out = 0.0
    for f, v in zip(spec["factors"], vs):
        out = out + np.sum(f["Z"] * v[..., f["index"], :], axis=-1)
    return out


def posterior(plan, theta):
    """The exact posterior of the random effects at ``theta``.

    Returns a dict: ``mu`` (prior means per factor), ``mean`` (posterior means of b per factor),
    ``cov`` (per factor (n_levels, k, k) posterior covariances of each level's b), ``chol`` (the
    inverse of the Cholesky factor(s) of the precision), ``loglik``, and what the E step needs.
    """
    spec = plan["spec"]
    fs = spec["factors"]
    beta = np.asarray(theta["beta"], dtype=float)
    s2 = float(theta["sigma"]) ** 2
    mu = [prior_mean(f, beta) for f in fs]
    r = spec["y"] - spec["offset"] - plan["XU"] @ beta[spec["free"]] - _zv(spec, mu)
    n = r.size
    Sig = [covariance(f, theta) for f in fs]
    logdet_S = sum(f["n_levels"] * np.linalg.slogdet(S)[1] for f, S in zip(fs, Sig))
    out = {"mu": mu, "r": r, "sigma2": s2}
    if len(fs) == 1:
        f = fs[0]
        k = f["Z"].shape[1]
        c = np.zeros((f["n_levels"], k))
        np.add.at(c, f["index"], f["Z"] * (r / s2)[:, None])
        P = np.linalg.inv(Sig[0]) + plan["ZtZ"] / s2
        L = np.linalg.cholesky(P)
        m = np.linalg.solve(P, c[..., None])[..., 0]
        Linv = np.linalg.inv(L)
        C = np.swapaxes(Linv, -1, -2) @ Linv
        logdet_P = 2.0 * np.sum(np.log(np.diagonal(L, axis1=-2, axis2=-1)))
        quad = r @ r / s2 - np.sum(c * m)
        tr = float(np.sum(C * plan["ZtZ"]))
        out.update(mean=[m], cov=[C], chol=Linv, tr=tr, vv=[np.einsum("gj,gk->jk", m + mu[0], m + mu[0]) + C.sum(0)])
    else:
        offs = plan["offsets"]
        Pinv_prior = np.zeros((plan["q"], plan["q"]))
        for f, S, o, o2 in zip(fs, Sig, offs[:-1], offs[1:]):
            Pinv_prior[o:o2, o:o2] = np.kron(np.eye(f["n_levels"]), np.linalg.inv(S))
        P = Pinv_prior + plan["ZtZ"] / s2
        L = np.linalg.cholesky(P)
        Linv = np.linalg.inv(L)
        c = plan["Zall"].T @ (r / s2)
        Cfull = Linv.T @ Linv
        mflat = Cfull @ c
        logdet_P = 2.0 * np.sum(np.log(np.diag(L)))
        quad = r @ r / s2 - c @ mflat
        tr = float(np.sum(Cfull * plan["ZtZ"]))
        means, covs, vv = [], [], []
        for f, o, o2, mu_f in zip(fs, offs[:-1], offs[1:], mu):
            G, k = f["n_levels"], f["Z"].shape[1]
            m = mflat[o:o2].reshape(G, k)
            blk = Cfull[o:o2, o:o2].reshape(G, k, G, k)
            C = blk[np.arange(G), :, np.arange(G), :]
            means.append(m)
            covs.append(C)
            vv.append(np.einsum("gj,gk->jk", m + mu_f, m + mu_f) + C.sum(0))
        out.update(mean=means, cov=covs, chol=Linv, tr=tr, vv=vv)
    out["loglik"] = -0.5 * (n * (LOG_2PI + np.log(s2)) + logdet_S + logdet_P + quad)
    return out


# --------------------------------------------------------------------------- the Model hooks
def _loglik(plan, theta, data):
    return float(posterior(plan, theta)["loglik"])


def _exact_estep(plan, theta, data):
    post = posterior(plan, theta)
    spec = plan["spec"]
    ev = [mu + m for mu, m in zip(post["mu"], post["mean"])]
    zv = _zv(spec, ev)
    stats = {"zv": zv, "zv2": np.array(zv @ zv + post["tr"])}
    for i, (f, e) in enumerate(zip(spec["factors"], ev)):
        stats[f"vv{i}"] = post["vv"][i]
        stats[f"vw{i}"] = e.T @ f["W"]
    return stats, float(post["loglik"])


def _sufficient_stats(plan, z, data):
    spec = plan["spec"]
    vs = []
    for f in spec["factors"]:
        v = np.asarray(z[f["latent"]], dtype=float) * f["scale"]
        vs.append(v.reshape((-1,) + v.shape[-2:]))
    zv = _zv(spec, vs)  # (B, n)
    B = zv.shape[0]
    stats = {"zv": zv.mean(axis=0), "zv2": np.array(np.sum(zv * zv) / B)}
    for i, (f, v) in enumerate(zip(spec["factors"], vs)):
        stats[f"vv{i}"] = np.einsum("bgj,bgk->jk", v, v) / B
        stats[f"vw{i}"] = np.einsum("bgj,ga->ja", v, f["W"]) / B
    return stats


def _block_mask(f):
    k = f["Z"].shape[1]
    mask = np.eye(k)
    for a, b, name in f["blocks"]:
        mask[a:b, a:b] = 1.0
    return mask


def _factor_mstep(f, vv, vw, max_iter=500):
    """(beta of the attached columns, Sigma) maximising the levels' prior term of Q."""
    G = f["n_levels"]
    mask = _block_mask(f)
    na = f["W"].shape[1]
    if na == 0:
        return np.zeros(0), mask * vv / G
    W = f["W"]
    Sww = W.T @ W
    j = f["att_comp"]
    cols = np.arange(na)
    P = np.eye(vv.shape[0])
    beta = None
    for _ in range(max_iter):  # iterated generalised least squares (a loop over iterations)
        H = Sww * P[np.ix_(j, j)]
        rhs = (P @ vw)[j, cols]
        new = np.linalg.solve(H, rhs)
        B = np.zeros((vv.shape[0], na))
        B[j, cols] = new
        S = mask * (vv - vw @ B.T - B @ vw.T + B @ Sww @ B.T) / G
        P = np.linalg.inv(S)
        done = beta is not None and np.max(np.abs(new - beta)) <= 1e-13 * (1.0 + np.max(np.abs(new)))
        beta = new
        if done:
            break
    return beta, S


def _mstep(plan, stats, data):
    spec = plan["spec"]
    y0 = spec["y"] - spec["offset"]
    XU = plan["XU"]
    p = spec["X"].shape[1]
    beta = np.zeros(p)
    t = y0 - stats["zv"]
    if XU.shape[1]:
        beta_u, *_ = np.linalg.lstsq(XU, t, rcond=None)
        beta[spec["free"]] = beta_u
        fit = XU @ beta_u
    else:
        fit = np.zeros_like(y0)
    e = y0 - fit
    s2 = (e @ e - 2.0 * e @ stats["zv"] + float(stats["zv2"])) / y0.size
    theta = {"sigma": np.array(np.sqrt(max(s2, 1e-300)))}
    for i, f in enumerate(spec["factors"]):
        b_att, S = _factor_mstep(f, stats[f"vv{i}"], stats[f"vw{i}"])
        beta[f["att_cols"]] = b_att
        sd = np.sqrt(np.diag(S))
        theta[f["sd"]] = sd
        R = S / np.outer(sd, sd)
        for a, b, name in f["blocks"]:
            if name is not None:
                theta[name] = _corr_cholesky(R[a:b, a:b])
    theta["beta"] = beta
    return theta


def _corr_cholesky(R):
    """The Cholesky factor of a correlation matrix, rows renormalised (rounding); a matrix that
    rounding made singular (a correlation of +-1, which EM only approaches) is moved inside."""
    R = 0.5 * (R + R.T)
    try:
        L = np.linalg.cholesky(R)
    except np.linalg.LinAlgError:
        L = np.linalg.cholesky((1.0 - 1e-10) * R + 1e-10 * np.eye(R.shape[0]))
    return L / np.linalg.norm(L, axis=1, keepdims=True)


def _posterior_sampler(plan, theta, data, rng, batch):
    spec = plan["spec"]
    post = posterior(plan, theta)
    batch = tuple(batch)
    out = {}
    if len(spec["factors"]) == 1:
        f = spec["factors"][0]
        e = rng.standard_normal(batch + post["mean"][0].shape)
        b = post["mean"][0] + np.einsum("gkj,...gk->...gj", post["chol"], e)  # L^-T e
        out[f["latent"]] = (post["mu"][0] + b) / f["scale"]
        return out
    q = plan["q"]
    e = rng.standard_normal((int(np.prod(batch, dtype=int)), q))
    b = e @ post["chol"]  # rows of L^-T e: covariance P^-1
    offs = plan["offsets"]
    for f, o, o2, m, mu in zip(spec["factors"], offs[:-1], offs[1:], post["mean"], post["mu"]):
        shape = m.shape
        v = mu + m + b[:, o:o2].reshape((-1,) + shape)
        out[f["latent"]] = (v / f["scale"]).reshape(batch + shape)
    return out


def gaussian_hooks(spec):
    """The Model attributes of the exact Gaussian pieces, bound to the spec."""
    plan = _plan(spec)
    return {
        "loglik_fn": partial(_loglik, plan),
        "exact_estep_fn": partial(_exact_estep, plan),
        "mstep_fn": partial(_mstep, plan),
        "sufficient_stats_fn": partial(_sufficient_stats, plan),
        "posterior_sampler_fn": partial(_posterior_sampler, plan),
        "gaussian_plan": plan,
    }

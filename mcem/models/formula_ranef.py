"""The lme4-style methods of a mixed model from a formula: conditional modes of the random
effects (:func:`ranef`) and predictions (:func:`predict`), for :class:`mcem.models.MixedModel`.

The random effects are ``b = v - mu`` (the latents of :mod:`mcem.models.formula_glmm` less
their prior means) at the fit's estimate: exact conditional means and covariances for the
Gaussian family (:mod:`mcem.models.formula_gaussian`); for the others, the mean and covariance
of posterior draws at the estimate (the fit's final draws, taken at the estimate, or a fresh E
step when the fit holds none), with their Monte Carlo standard errors.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from scipy.special import expit

from .._validation import as_generator, check_choice
from ..diagnostics import mcse_mean
from ..estep import EStep
from .formula_gaussian import posterior
from .formula_setup import column, prior_mean

__all__ = ["RandomEffects", "ranef", "predict"]


class RandomEffects(dict):
    """``{group: DataFrame}`` of conditional means of the random effects (levels x names).

    Attributes
    ----------
    cond_var : dict
        ``{group: array (n_levels, k, k)}``: the conditional covariance of each level's effects.
    cond_sd : dict
        ``{group: DataFrame}``: the conditional standard deviations.
    mcse : dict
        ``{group: DataFrame}``: the Monte Carlo standard errors of the means (zero when exact).
    method : str
        ``"exact"`` or ``"posterior draws (N)"``.
    """

    def __init__(self, means, cond_var, cond_sd, mcse, method):
        super().__init__(means)
        self.cond_var = cond_var
        self.cond_sd = cond_sd
        self.mcse = mcse
        self.method = method

    def __repr__(self):
        body = "\n".join(f"${g}\n{df}" for g, df in self.items())
        return f"RandomEffects ({self.method})\n{body}"


def _check_fit(model, fit):
    params = fit.get("params") if isinstance(fit, dict) else None
    if not isinstance(params, dict):
        raise TypeError(f"fit must be a FitResult of this model (mcem.fit(model, ...)), got {type(fit).__name__}")
    return model.check_theta(params, "fit.params")


def _draws(model, fit, theta, n_draws, rng):
    """Posterior draws of the latents at ``theta``: the fit's own, or a new E step's."""
    draws = fit.get("draws")
    if draws is not None and all(k in draws for k in model.latent_names):
        return {k: np.asarray(draws[k], dtype=float) for k in model.latent_names}
    if not isinstance(n_draws, numbers.Integral) or n_draws < 10:
        raise ValueError(f"n_draws must be an int >= 10, got {n_draws!r}")
    es = EStep(model, warn=False)
    gen = as_generator(rng)
    state = es.init(theta, gen.spawn(1)[0])
    return es.run(theta, state, -(-int(n_draws) // es.n_chains), gen.spawn(1)[0]).draws


def _effects(model, fit, n_draws=2000, rng=0):
    """Per factor: (means (G, k), covariances (G, k, k), mcse (G, k)), and the method."""
    theta = _check_fit(model, fit)
    spec = model.spec
    if spec["family"] == "gaussian":
        post = posterior(model.gaussian_plan, theta)
        return [(m, C, np.zeros_like(m)) for m, C in zip(post["mean"], post["cov"])], "exact"
    draws = _draws(model, fit, theta, n_draws, rng)
    out = []
    n = None
    for f in spec["factors"]:
        v = draws[f["latent"]] * f["scale"]  # (chains, draws, G, k)
        b = v - prior_mean(f, np.asarray(theta["beta"], dtype=float))
        flat = b.reshape((-1,) + b.shape[-2:])
        n = flat.shape[0]
        mean = flat.mean(axis=0)
        dev = flat - mean
        cov = np.einsum("sgj,sgk->gjk", dev, dev) / max(n - 1, 1)
        mc = np.asarray(mcse_mean(b)) if b.shape[1] >= 4 else np.full(mean.shape, np.nan)
        out.append((mean, cov, mc))
    return out, f"posterior draws ({n})"


def ranef(model, fit, condVar=True, n_draws=2000, rng=0) -> RandomEffects:
    """The conditional means of the random effects; see :meth:`MixedModel.ranef`."""
    effects, method = _effects(model, fit, n_draws, rng)
    means, cvar, csd, mcse = {}, {}, {}, {}
    for f, (m, C, mc) in zip(model.spec["factors"], effects):
        idx = pd.Index(list(f["levels"]), name=f["group"])
        cols = list(f["names"])
        means[f["group"]] = pd.DataFrame(m, index=idx, columns=cols)
        mcse[f["group"]] = pd.DataFrame(mc, index=idx, columns=cols)
        if condVar:
            cvar[f["group"]] = C
            csd[f["group"]] = pd.DataFrame(np.sqrt(np.diagonal(C, axis1=-2, axis2=-1)), index=idx, columns=cols)
    return RandomEffects(means, cvar, csd, mcse, method)


def _inverse_link(eta, family):
    if family == "binomial":
        return expit(eta)
    if family == "poisson":
        with np.errstate(over="ignore"):
            return np.exp(eta)
    return eta


def _new_design(model, newdata):
    design = model.design.design_for(newdata)
    fs = model.spec["factors"]
    by_group = {}
    for t in design.terms:
        by_group.setdefault(t.group, []).append(t)
    if set(by_group) != {f["group"] for f in fs}:
        raise ValueError(f"newdata: the formula's grouping factors {[f['group'] for f in fs]} "
                         f"came out as {sorted(by_group)}")
    Zs, idx = [], []
    for f in fs:
        ts = by_group[f["group"]]
        Zs.append(np.column_stack([t.Z for t in ts]).astype(float))
        idx.append(np.asarray(ts[0].index, dtype=np.int64))
    return design, Zs, idx


def predict(model, fit, newdata=None, type="link", random=True, re_form=None) -> np.ndarray:
    """Predictions at the fit's estimate; see :meth:`MixedModel.predict`."""
    check_choice(type, "type", {"link", "response"})
    if re_form is not None:
        spelled = str(re_form).replace(" ", "")
        if spelled not in ("NA", "~0", "0"):
            raise ValueError(f"re_form must be None (all random effects) or 'NA' / '~0' (none), got {re_form!r}")
        random = False
    if not isinstance(random, bool):
        raise TypeError(f"random must be True or False, got {random!r}")
    theta = _check_fit(model, fit)
    spec = model.spec
    beta = np.asarray(theta["beta"], dtype=float)
    if newdata is None:
        X, offset = spec["X"], spec["offset"]
        Zs = [f["Z"] for f in spec["factors"]]
        idx = [f["index"] for f in spec["factors"]]
    else:
        design, Zs, idx = _new_design(model, newdata)
        X = np.asarray(design.X, dtype=float)
        offset = np.zeros(X.shape[0]) if design.offset is None else np.asarray(design.offset, dtype=float)
        if spec["offset_given"] and spec["offset_arg"] is None:
            raise ValueError("predict with newdata needs the model's offset as a column name (glmm(..., offset='col')); "
                             "it was given as an array, which has no values for new rows")
        if spec["offset_arg"] is not None:
            offset = offset + column(newdata, spec["offset_arg"], "offset", X.shape[0])
    eta = offset + X @ beta
    if random:
        effects, _ = _effects(model, fit)
        for (m, _, _), Z, ix in zip(effects, Zs, idx):
            seen = ix >= 0
            b = np.where(seen[:, None], m[np.where(seen, ix, 0)], 0.0)
            eta = eta + np.sum(Z * b, axis=1)
    return eta if type == "link" else _inverse_link(eta, spec["family"])

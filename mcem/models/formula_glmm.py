"""Generalized linear mixed models from lme4-style formulas, fitted by maximum likelihood.

``mcem.models.glmm("Reaction ~ Days + (Days | Subject)", sleepstudy, family="gaussian")`` reads
the formula (:func:`mcem.models.formula_terms.mixed_design`), builds the model in the model
language (:func:`mcem.model`) and returns it as a :class:`MixedModel`: an :class:`mcem.Model`
that :func:`mcem.fit` fits like any other, with labelled coefficients and the lme4-style methods
:meth:`MixedModel.ranef` and :meth:`MixedModel.predict`.

The model
---------
For observation ``i`` with fixed-effect row ``x_i`` and, for every grouping factor ``f``, the
level ``g_f(i)`` and random-effect row ``z_fi`` (k_f columns)::

    eta_i = offset_i + x_i' beta + sum_f z_fi' b_f[g_f(i)],     b_f[g] ~ N(0, Sigma_f)

    binomial:  y_i ~ Binomial(trials_i, expit(eta_i))   (Bernoulli without trials)
    poisson:   y_i ~ Poisson(exp(eta_i))
    gaussian:  y_i ~ Normal(eta_i, sigma)

``Sigma_f = diag(sd_f) R_f diag(sd_f)``: parameters ``sd_<group>`` (positive, shape (k_f,)) and,
for each term with k > 1 columns, the Cholesky factor of its correlation matrix
``corr_<group>`` (constraint :func:`~mcem.constraints.corr_cholesky`; ``corr[1, 0]`` of a
two-column term is the correlation). The terms of one grouping factor share its latent with a
block-diagonal covariance, one block per term: ``(Days || Subject)`` is ``(Days | Subject)``
with R = I. ``beta`` is labelled by the fixed-effect names, ``sd_<group>`` by the random-effect
names (``model.labels``).

The latents, and why
--------------------
One latent per grouping factor, ``v_<group>`` of shape ``(n_levels, k)``, declared with
``unit=True``: every observation is filed under its level of every factor. With one grouping
factor the levels are conditionally independent units and the sampler updates them all at once,
each accepted or rejected on its own. Crossed and nested factors are several unit latents whose
units differ; each observation is filed under one unit of each, and the sampler updates one
factor's levels at a time given the others (the scheme of :mod:`mcem.models.crossed`). A
non-centred form ``b = L eps`` was not chosen: its complete-data statistics depend on the
parameters, so it has no closed-form M step, and EM in it is slow whenever the levels are well
determined by their data (the fraction of missing information for the scales tends to one).

The latent is *hierarchically centred* (Gelfand, Sahu & Carlin 1995; the form of
:mod:`mcem.models.centred_glmm`): a fixed-effect column equal to a random-effect column times a
value constant within the levels of the factor (the intercept and group-level covariates for a
random intercept; ``Days`` for a random ``Days`` slope) moves into the prior mean of the latent,
so the latent is the level's coefficient ``v = W beta_attached + b`` rather than ``b``. The
likelihood is unchanged (a shift with unit Jacobian) but EM is much faster: the M step for those
coefficients is a regression of the drawn levels, not a re-fit that the draws hold back. Each
latent column is stored divided by the fixed scale ``1 / rms(z_j)`` (on the scale of the linear
predictor), so that a random-walk step suits every column whatever the units of the covariate.
The log joint is the density of the stored latent: it differs from the density in ``b`` by a
constant log-Jacobian, and the marginal likelihood is the same. :meth:`MixedModel.ranef` returns
the random effects ``b`` themselves.

Gaussian responses
------------------
For ``family="gaussian"`` the model also has its exact pieces (:mod:`mcem.models.formula_gaussian`):
the marginal log-likelihood, the exact posterior of the latents (exact draws), and an exact E
step with a closed-form M step, so ``mcem.fit(model, rng=0)`` runs exact EM and reports the exact
log-likelihood with standard errors from its Hessian. Nothing in that fit differentiates the log
joint, so the Gaussian model is evaluated by numpy (``@mcem.model(jit=False)``) and spares the
compilation; the other families are compiled by JAX, for the exact gradients of their M steps
and of Louis' standard errors (``glmm(..., jit=False)`` evaluates them by numpy too, which is
faster for a small data set, where compiling costs more than it saves).
"""

from __future__ import annotations

import numpy as np

from .. import constraints as C
from .. import distributions as dist
from ..core import Model
from ..lang import model as language_model
from . import formula_ranef
from .formula_gaussian import gaussian_hooks
from .formula_setup import FAMILIES, column, labels, model_spec
from .formula_terms import mixed_design

__all__ = ["glmm", "MixedModel", "FAMILIES"]


def _mixed(m, y, XU, free, p, offset, trials, family, factors, init):
    """The model function: the mixed model in the model language."""
    ns = m.np
    beta = m.param("beta", shape=p, init=init["beta"])
    eta = offset if XU is None else offset + XU @ beta[free]
    index = {}
    for f in factors:
        k = f["Z"].shape[1]
        sd = m.param(f["sd"], shape=k, constraint=C.positive, init=init[f["sd"]])
        loc = 0.0 if f["W"] is None else f["W"] @ (beta[f["att_cols"]][:, None] * f["A"]) / f["scale"]
        scale = sd / f["scale"]
        corr = [(a, b, m.param(name, constraint=C.corr_cholesky(b - a), init=init[name]))
                for a, b, name in f["blocks"] if name is not None]
        if corr:
            L = f["diag_eye"]
            for a, b, Lb in corr:
                E = f["select"][a]
                L = L + E @ Lb @ E.T
            prior = dist.MultivariateNormal(loc + ns.zeros((f["n_levels"], k)), scale_tril=scale[:, None] * L)
        else:
            prior = dist.Normal(loc, scale)
        v = m.latent(f["latent"], prior, shape=(f["n_levels"], k), unit=True, init=f["v0"])
        eta = eta + ns.sum(f["Zs"] * v[..., f["index"], :], axis=-1)
        index[f["latent"]] = f["index"]
    if len(index) == 1:
        index = next(iter(index.values()))
    if family == "gaussian":
        sigma = m.param("sigma", constraint=C.positive, init=init["sigma"])
        m.observe("y", dist.Normal(eta, sigma), y, unit_index=index)
    elif family == "poisson":
        m.observe("y", dist.Poisson(log_rate=eta), y, unit_index=index)
    elif trials is None:
        m.observe("y", dist.Bernoulli(logits=eta), y, unit_index=index)
    else:
        m.observe("y", dist.Binomial(trials, logits=eta), y, unit_index=index)


_BUILDER = language_model(_mixed)
#: The Gaussian model's fit needs no derivative of the log joint (exact EM, exact information):
#: by default it is evaluated by numpy, which spares the compilation.
_NUMPY_BUILDER = language_model(_mixed, jit=False)


def _model_data(spec):
    """The arguments of the model function: arrays and small dicts of arrays."""
    factors = []
    for f in spec["factors"]:
        k = f["Z"].shape[1]
        diag = np.eye(k)
        select = {}
        for a, b, name in f["blocks"]:
            if name is not None:
                diag[a:b, a:b] = 0.0
                E = np.zeros((k, b - a))
                E[np.arange(a, b), np.arange(b - a)] = 1.0
                select[a] = E
        factors.append({
            "sd": f["sd"], "latent": f["latent"], "blocks": f["blocks"], "n_levels": f["n_levels"],
            "index": f["index"], "Zs": f["Z"] * f["scale"], "Z": f["Z"], "scale": f["scale"],
            "v0": f["v0"], "diag_eye": diag, "select": select,
            **({"W": f["W"], "A": f["A"], "att_cols": f["att_cols"]} if f["W"].shape[1] else {"W": None}),
        })
    X, free = spec["X"], spec["free"]
    return {
        "y": spec["y"], "XU": X[:, free] if free.size else None, "free": free if free.size else None,
        "p": X.shape[1],
        "offset": spec["offset"], "trials": spec["trials"], "family": spec["family"],
        "factors": tuple(factors), "init": spec["init"],
    }


class MixedModel(Model):
    """A mixed model made by :func:`glmm`: an :class:`mcem.Model` with the formula's design.

    Attributes
    ----------
    design : MixedDesign
        The formula's design on the training data.
    family : str
    spec : dict
        What the model was built from (response, fixed design, factors, starting values).
    labels : dict
        Per-element names of ``beta``, ``sd_<group>`` and ``corr_<group>``.
    """

    def ranef(self, fit, condVar=True, *, n_draws=2000, rng=0):
        """The conditional means of the random effects at the fit's estimate.

        Parameters
        ----------
        fit : FitResult
            A fit of this model.
        condVar : bool
            Also give the conditional covariances and standard deviations.
        n_draws : int
            Draws for a non-Gaussian family when the fit holds none (an E step at the estimate).
        rng : None, int or Generator
            For those draws.

        Returns
        -------
        RandomEffects
            A dict ``{group: DataFrame}`` (levels x random-effect names) of conditional means;
            exact for the Gaussian family, the mean of posterior draws at the estimate for the
            others. ``.cond_var[group]`` (n_levels, k, k) and ``.cond_sd[group]`` (a DataFrame)
            when ``condVar``; ``.mcse[group]`` the Monte Carlo standard errors of the means
            (zeros when exact); ``.method`` says which.
        """
        return formula_ranef.ranef(self, fit, condVar=condVar, n_draws=n_draws, rng=rng)

    def predict(self, fit, newdata=None, type="link", random=True, *, re_form=None):
        """Predictions at the fit's estimate: ``X beta + offset + Z b`` (b the conditional means).

        Parameters
        ----------
        fit : FitResult
        newdata : DataFrame or mapping, optional
            New observations with the formula's columns (the response may be absent); default:
            the training data. Levels not seen in training get a zero random effect.
        type : {"link", "response"}
            The linear predictor, or the mean response (probability for the binomial family,
            rate for the Poisson family).
        random : bool
            Include the random effects (``False``: the population-level prediction, lme4's
            ``re.form = NA``).
        re_form : None or "NA", optional
            lme4's spelling: ``re_form="NA"`` (or ``"~0"``) is ``random=False``.

        Returns
        -------
        numpy.ndarray, one prediction per row.
        """
        return formula_ranef.predict(self, fit, newdata, type=type, random=random, re_form=re_form)


def _build(spec, design, name, jit=None) -> MixedModel:
    """The MixedModel of a spec (also what unpickling calls)."""
    if jit is None:
        jit = spec["family"] != "gaussian"
    base = (_BUILDER if jit else _NUMPY_BUILDER)(**_model_data(spec))
    model = object.__new__(MixedModel)
    model.__dict__.update(base.__dict__)
    model.name = name
    model.spec = spec
    model.design = design
    model.family = spec["family"]
    model.labels = labels(spec)
    if spec["family"] == "gaussian":
        for key, fn in gaussian_hooks(spec).items():
            setattr(model, key, fn)
        model.partial_mstep = None
    model._rebuild = (_build, (spec, design, name, jit))
    return model


def glmm(formula, data, family="gaussian", trials=None, offset=None, *, jit=None) -> Model:
    """A generalized linear mixed model from an lme4-style formula.

    Parameters
    ----------
    formula : str
        ``"response ~ fixed terms + (terms | group) + ..."`` as in lme4: ``(x | g)`` correlated
        random effects, ``(x || g)`` uncorrelated ones, ``(1 | a) + (1 | b)`` crossed factors,
        ``(1 | a/b)`` nested ones, ``offset(expr)`` a known term.
    data : pandas.DataFrame or mapping of 1-D arrays
        The columns the formula names (never modified).
    family : {"gaussian", "binomial", "poisson"}
        Identity link for Gaussian responses (the default, as in lme4's ``glmer``), logit link for
        binomial responses (0/1, or counts of successes with ``trials``), log link for Poisson
        counts.
    trials : str or array, optional
        Binomial totals (``family="binomial"`` only): a column name or an array; the response is
        then the count of successes out of ``trials`` (lme4's ``cbind(y, trials - y)``).
    offset : str or array, optional
        A known term added to the linear predictor (a column name or an array), besides any
        ``offset()`` in the formula.
    jit : bool, optional
        Compile the model with JAX (exact derivatives) or evaluate it with numpy (``False``:
        no compilation, derivatives by finite differences; faster for small data sets, slower
        for large ones). Default: numpy for the Gaussian family, whose fit needs no derivative,
        JAX for the others.

    Returns
    -------
    MixedModel
        Parameters ``beta`` (p,), ``sd_<group>`` (k,) and ``corr_<group>`` per grouping factor,
        and ``sigma`` (gaussian); latents ``v_<group>`` (see the module docstring). Starting
        values come from the data, so ``mcem.fit(model, rng=0)`` needs nothing else.
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a str such as 'y ~ x + (1 | g)', got {type(formula).__name__}")
    if not isinstance(family, str) or family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    if jit is not None and not isinstance(jit, bool):
        raise TypeError(f"jit must be True, False or None, got {jit!r}")
    if trials is not None and family != "binomial":
        raise ValueError(f"trials (binomial totals) needs family='binomial', got trials with family={family!r}")
    design = mixed_design(formula, data)
    n = design.y.shape[0]
    tr = None if trials is None else column(data, trials, "trials", n)
    off = None if offset is None else column(data, offset, "offset", n)
    spec = model_spec(design, family, tr, off)
    spec["offset_arg"] = offset if isinstance(offset, str) else None
    spec["offset_given"] = offset is not None
    groups = ", ".join(f["group"] for f in spec["factors"])
    return _build(spec, design, f"glmm({formula!r}, {family}; groups {groups})", jit)

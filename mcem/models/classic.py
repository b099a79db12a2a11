"""Two classic random-intercept GLMMs on real data, as fitted by R's ``lme4::glmer``.

* :func:`cbpp_model`: contagious bovine pleuropneumonia (Lesnoff et al. 2004; ``lme4::cbpp``),
  a binomial GLMM ``cbind(incidence, size - incidence) ~ period + (1 | herd)``: for herd ``h``
  in period ``k``, ``incidence ~ Binomial(size, expit(beta_0 + beta_k + u_h))`` with
  ``beta_1 = 0`` (period 1 is the baseline) and ``u_h ~ N(0, sigma^2)``; 56 observations of
  15 herds.
* :func:`epilepsy_model`: epileptic seizure counts (Thall & Vail 1990; Breslow & Clayton 1993;
  ``MASS::epil``), a Poisson GLMM ``y ~ lbase * trt + lage + V4 + (1 | subject)``: 236 two-week
  counts of 59 patients, ``log E[y | u] = x' beta + u_subject``.

Both are random-intercept GLMMs with the design matrix of ``glmer`` (the columns in the order and
under the names of ``fixef()``; :func:`cbpp_design`, :func:`epilepsy_design`), so the quadrature
oracle :func:`~mcem.models.random_intercept.fit_quadrature` gives their likelihood. By default
the latent is each group's level ``v_g = z_g' beta_Z + u_g``
(:func:`mcem.models.centred_glmm.centred_glmm`, the centred form, in which EM converges fast);
``latent="u"`` gives :func:`~mcem.models.random_intercept.random_intercept_glmm` with the random
intercepts themselves (and its ``mc_covariance`` and ``compare_to_quadrature``). The binomial
log-likelihood includes the binomial coefficients; ``glmer`` reports it with nAGQ = 1 on that
scale, but with nAGQ > 1 it reports it minus the log-likelihood of the saturated model (the
recorded references give both).
"""

from __future__ import annotations

import numpy as np

from .._validation import check_choice
from ..core import Model
from ..datasets import load_cbpp, load_epilepsy
from .centred_glmm import centred_glmm
from .glmm_model import random_intercept_glmm

__all__ = ["cbpp_model", "cbpp_design", "epilepsy_model", "epilepsy_design",
           "CBPP_NAMES", "EPILEPSY_NAMES"]

#: The coefficient names of ``fixef()`` in R, in the order of the columns of the design matrix.
CBPP_NAMES = ("(Intercept)", "period2", "period3", "period4")
EPILEPSY_NAMES = ("(Intercept)", "lbase", "trtprogabide", "lage", "V4", "lbase:trtprogabide")


def _columns(data, names, default):
    data = default() if data is None else data
    if not isinstance(data, dict):
        raise TypeError(f"data must be a dict of columns {list(names)}, got {type(data).__name__}")
    missing = [k for k in names if k not in data]
    if missing:
        raise ValueError(f"data must have the columns {list(names)}, missing {missing}")
    return data


def _numeric(data, k):
    a = np.asarray(data[k])
    if a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"data[{k!r}] must be a numeric array, got dtype {a.dtype}")
    return np.array(a, dtype=float)


def _labels(a):
    """Integer labels 0..G-1 of the distinct values of ``a``, in sorted order."""
    return np.unique(a, return_inverse=True)[1].reshape(-1).astype(np.int64)


def cbpp_design(data=None) -> dict:
    """The cbpp data as the arguments of ``random_intercept_glmm``: ``X`` (intercept and
    indicators of periods 2, 3, 4), ``y`` (incidence), ``trials`` (size), ``group`` (herd, 0..14)
    and ``names`` (:data:`CBPP_NAMES`). ``data``: columns ``herd``, ``incidence``, ``size`` and
    ``period`` (default :func:`mcem.datasets.load_cbpp`)."""
    data = _columns(data, ("herd", "incidence", "size", "period"), load_cbpp)
    period = _numeric(data, "period")
    if not set(np.unique(period)) <= {1.0, 2.0, 3.0, 4.0}:
        raise ValueError(f"data['period'] must hold periods 1..4, got {np.unique(period).tolist()}")
    X = np.column_stack([np.ones(period.size)] + [(period == k).astype(float) for k in (2, 3, 4)])
    return {"X": X, "y": _numeric(data, "incidence"), "trials": _numeric(data, "size"),
            "group": _labels(_numeric(data, "herd")), "names": CBPP_NAMES}


def _build(d, family, init, latent, name):
    check_choice(latent, "latent", {"u", "v"})
    build = centred_glmm if latent == "v" else random_intercept_glmm
    model = build(d["X"], d["y"], d["group"], family, init=init, trials=d.get("trials"))
    model.name = f"{name}(latent={latent})"
    return model


def cbpp_model(data=None, init=None, latent="v") -> Model:
    """The binomial GLMM of the cbpp data: ``glmer(cbind(incidence, size - incidence) ~ period +
    (1 | herd), family = binomial)``.

    Parameters ``beta`` (4: intercept, period2, period3, period4, as :data:`CBPP_NAMES`) and
    ``sigma`` (the standard deviation of the herd effects). Latent (one per herd): ``"v"`` the
    herd's level ``beta_0 + u_h`` (:func:`~mcem.models.centred_glmm.centred_glmm`, the
    default) or ``"u"`` the random intercept ``u_h``
    (:func:`~mcem.models.random_intercept.random_intercept_glmm`). ``init`` as in those
    (default: the GLM fit and ``sigma = 1``).
    """
    return _build(cbpp_design(data), "logit", init, latent, "cbpp")


def epilepsy_design(data=None) -> dict:
    """The epilepsy data as the arguments of ``random_intercept_glmm``: ``X`` (the columns of
    :data:`EPILEPSY_NAMES`: intercept, lbase, trt (1 for progabide), lage, V4, lbase x trt),
    ``y``, ``group`` (subject, 0..58) and ``names``. ``data``: columns ``y``, ``trt``
    (``"placebo"``/``"progabide"``, or 0/1), ``lbase``, ``lage``, ``V4`` and ``subject``
    (default :func:`mcem.datasets.load_epilepsy`)."""
    data = _columns(data, ("y", "trt", "lbase", "lage", "V4", "subject"), load_epilepsy)
    trt = np.asarray(data["trt"])
    if trt.dtype.kind in "US":
        bad = ~np.isin(trt, ["placebo", "progabide"])
        if bad.any():
            raise ValueError(f"data['trt'] must be 'placebo' or 'progabide', got {np.unique(trt[bad]).tolist()}")
        trt = (trt == "progabide").astype(float)
    else:
        trt = _numeric(data, "trt")
        if not np.all((trt == 0) | (trt == 1)):
            raise ValueError(f"data['trt'] must be 0 (placebo) or 1 (progabide), got {np.unique(trt).tolist()}")
    lbase = _numeric(data, "lbase")
    X = np.column_stack([np.ones(trt.size), lbase, trt, _numeric(data, "lage"), _numeric(data, "V4"), lbase * trt])
    return {"X": X, "y": _numeric(data, "y"), "group": _labels(_numeric(data, "subject")),
            "names": EPILEPSY_NAMES}


def epilepsy_model(data=None, init=None, latent="v") -> Model:
    """The Poisson GLMM of the epilepsy data: ``glmer(y ~ lbase * trt + lage + V4 + (1 |
    subject), family = poisson)``.

    Parameters ``beta`` (6, as :data:`EPILEPSY_NAMES`) and ``sigma`` (the standard deviation of
    the patient effects). Latent (one per patient): ``"v"`` the patient's level ``z_i' beta_Z +
    u_i`` with ``Z`` the patient-level columns (all but ``V4``;
    :func:`~mcem.models.centred_glmm.centred_glmm`, the default) or ``"u"`` the random
    intercept ``u_i`` (:func:`~mcem.models.random_intercept.random_intercept_glmm`). ``init`` as
    in those (default: the GLM fit and ``sigma = 1``).
    """
    return _build(epilepsy_design(data), "poisson", init, latent, "epilepsy")

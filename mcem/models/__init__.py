"""Ready-made models, each a :class:`mcem.Model` with a documented parameterisation.

The constructors are functions of this package (``mcem.models.tobit(...)``); the modules that
hold them have other names (``mcem.models.censored``, ``mixture``, ``missing``,
``random_intercept``, ...), so that ``from mcem.models import tobit`` is always the function.
"""

from . import (censored, crossed, formula_glmm, formula_terms, glmm_model, glmm_quadrature, hmm, level,
               linear_gaussian, linkage, missing, mixture, mixture_estimator,
               pumps, random_intercept, stochvol)
from .crossed import crossed_logit, salamander
from .mixture import gaussian_mixture
from .mixture_estimator import GaussianMixture
from .glmm_model import random_intercept_glmm
from .formula_glmm import MixedModel, glmm
from .formula_terms import MixedDesign, RandomTerm, mixed_design
from .hmm import gaussian_hmm
from .level import local_level
from .stochvol import stochastic_volatility
from .glmm_quadrature import fit_quadrature, quadrature_loglik
from .linear_gaussian import factor_analysis, implied_covariance
from .linkage import genetic_linkage, linkage_mle
from .missing import missing_normal
from .pumps import pump_failures, pumps_mle
from .censored import motorette, tobit, tobit_mle

__all__ = [
    "GaussianMixture",
    "MixedDesign",
    "MixedModel",
    "RandomTerm",
    "formula_glmm",
    "formula_terms",
    "glmm",
    "mixed_design",
    "censored",
    "glmm_model",
    "glmm_quadrature",
    "linear_gaussian",
    "missing",
    "mixture",
    "random_intercept",
    "crossed",
    "crossed_logit",
    "genetic_linkage",
    "linkage",
    "linkage_mle",
    "motorette",
    "pump_failures",
    "pumps",
    "pumps_mle",
    "salamander",
    "tobit",
    "tobit_mle",
    "factor_analysis",
    "fit_quadrature",
    "gaussian_mixture",
    "gaussian_hmm",
    "local_level",
    "stochastic_volatility",
    "stochvol",
    "hmm",
    "level",
    "implied_covariance",
    "missing_normal",
    "quadrature_loglik",
    "random_intercept_glmm",
]

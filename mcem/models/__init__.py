"""Ready-made models, each a :class:`mcem.Model` with a documented parameterisation."""

from . import crossed, glmm, linkage, pumps, tobit
from .crossed import crossed_logit, salamander
from .gaussian_mixture import GaussianMixture, gaussian_mixture
from .glmm_model import random_intercept_glmm
from .glmm_quadrature import fit_quadrature, quadrature_loglik
from .linear_gaussian import factor_analysis, implied_covariance
from .linkage import genetic_linkage, linkage_mle
from .missing_normal import missing_normal
from .pumps import pump_failures, pumps_mle
from .tobit import motorette, tobit, tobit_mle

__all__ = [
    "GaussianMixture",
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
    "glmm",
    "implied_covariance",
    "missing_normal",
    "quadrature_loglik",
    "random_intercept_glmm",
]

"""Ready-made models, each a :class:`mcem.Model` with a documented parameterisation."""

from . import glmm
from .gaussian_mixture import GaussianMixture, gaussian_mixture
from .glmm import fit_quadrature, quadrature_loglik, random_intercept_glmm
from .linear_gaussian import factor_analysis, implied_covariance
from .missing_normal import missing_normal

__all__ = [
    "GaussianMixture",
    "factor_analysis",
    "fit_quadrature",
    "gaussian_mixture",
    "glmm",
    "implied_covariance",
    "missing_normal",
    "quadrature_loglik",
    "random_intercept_glmm",
]

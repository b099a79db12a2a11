"""Random-intercept generalized linear mixed models (logit and Poisson links), and a quadrature oracle.

The model, for observations i = 1..n in groups g(i) in 0..G-1::

    y_i | u  ~ Bernoulli(logits = x_i' beta + u_g(i) + offset_i)          family="logit"
    y_i | u  ~ Poisson(exp(x_i' beta + u_g(i) + offset_i))                 family="poisson"
    y_i | u  ~ Binomial(trials_i, logits = x_i' beta + u_g(i) + offset_i)   family="logit", trials=...
    u_g      ~ N(0, sigma^2), independent

    params   beta   real, shape (p,)
             sigma  positive
    latent   u      Continuous(real, shape=G, unit=True)

This module gathers the public names of two modules:

* :mod:`mcem.models.glmm_model`: the model, :func:`random_intercept_glmm` (log joint, gradients,
  blocks of groups), the analytic Monte Carlo covariance of its M step :func:`mc_covariance` and
  :func:`simulate_random_intercept`;
* :mod:`mcem.models.glmm_quadrature`: the oracle. With a one-dimensional random effect per group
  the marginal likelihood is a product of one-dimensional integrals, which adaptive Gauss-Hermite
  quadrature computes to near machine precision (Liu & Pierce 1994; Pinheiro & Bates 1995).
  :func:`quadrature_loglik` evaluates it and :func:`fit_quadrature` maximises it, with standard
  errors from the numerical Hessian; :func:`compare_to_quadrature` sets a Monte Carlo fit next to
  it (an :class:`mcem.Comparison`) and :func:`plot_with_oracle` draws it on the fit's figure.
"""

from __future__ import annotations

from ..compare import Comparison
from .glmm_model import FAMILIES, mc_covariance, random_intercept_glmm, simulate_random_intercept
from .glmm_quadrature import (
    QuadratureFit,
    compare_to_quadrature,
    fit_quadrature,
    plot_with_oracle,
    quadrature_loglik,
)

__all__ = [
    "FAMILIES",
    "random_intercept_glmm",
    "quadrature_loglik",
    "fit_quadrature",
    "QuadratureFit",
    "mc_covariance",
    "compare_to_quadrature",
    "Comparison",
    "plot_with_oracle",
    "simulate_random_intercept",
]

"""Ready-made models."""

from .gaussian_mixture import GaussianMixture, gaussian_mixture

__all__ = ["GaussianMixture", "gaussian_mixture"]

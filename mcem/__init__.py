"""mcem: maximum likelihood in latent-variable models by Monte Carlo EM."""

from . import constraints, datasets, diagnostics, kernels, models
from . import distributions as dist
from .estep import EStep
from .exceptions import ConvergenceWarning, MonteCarloWarning
from .fit import fit
from .model import Continuous, Discrete, Model
from .result import FitResult, History
from .ppl import model  # after .model: the name mcem.model is the decorator

__version__ = "0.1.0"

__all__ = [
    "Continuous",
    "ConvergenceWarning",
    "Discrete",
    "EStep",
    "FitResult",
    "History",
    "Model",
    "MonteCarloWarning",
    "constraints",
    "datasets",
    "diagnostics",
    "dist",
    "fit",
    "kernels",
    "model",
    "models",
]

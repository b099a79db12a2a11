"""mcem: maximum likelihood in latent-variable models by Monte Carlo EM."""

from . import constraints, datasets, diagnostics, io, kernels, models, plots
from . import distributions as dist
from .algorithms import resume
from .compare import Comparison, compare
from .distributed import ShardedEStep
from .estep import EStep
from .exceptions import ConvergenceWarning, MonteCarloWarning
from .fit import fit
from .io import load_result, save_result
from .model import Continuous, Discrete, Model
from .result import FitResult, History
from .lang import model  # after .model: the name mcem.model is the decorator

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "Continuous",
    "ConvergenceWarning",
    "Discrete",
    "EStep",
    "FitResult",
    "History",
    "ShardedEStep",
    "Model",
    "MonteCarloWarning",
    "compare",
    "constraints",
    "datasets",
    "diagnostics",
    "dist",
    "fit",
    "io",
    "load_result",
    "save_result",
    "kernels",
    "model",
    "models",
    "plots",
    "resume",
]

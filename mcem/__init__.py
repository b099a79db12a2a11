"""mcem: maximum likelihood in latent-variable models by Monte Carlo EM.

The public names. ``mcem.model`` is the decorator of the model language (:mod:`mcem.lang`);
``mcem.Model`` is the class every model is (:mod:`mcem.core`).
"""

from . import (
    algorithms,
    constraints,
    core,
    datasets,
    derivatives,
    diagnostics,
    estep_factory,
    inference,
    io,
    kernels,
    lang,
    models,
    mstep,
    plots,
    schedules,
    serial,
)
from . import distributions as dist
from ._version import __version__
from .algorithms import resume
from .anova import anova
from .compare import Comparison, compare, compare_to_reference
from .core import Chain, Continuous, Discrete, Model
from .distributed import ShardedEStep
from .estep import EStep
from .estep_factory import make_estep
from .exceptions import ConvergenceWarning, MonteCarloWarning
from .fit import fit
from .history import History
from .io import load_result, save_result
from .lang import model
from .result import FitResult
from .summary import Summary

__all__ = [
    "Chain",
    "Comparison",
    "Continuous",
    "ConvergenceWarning",
    "Discrete",
    "EStep",
    "FitResult",
    "History",
    "Model",
    "MonteCarloWarning",
    "ShardedEStep",
    "Summary",
    "__version__",
    "algorithms",
    "anova",
    "compare",
    "compare_to_reference",
    "constraints",
    "core",
    "datasets",
    "derivatives",
    "diagnostics",
    "dist",
    "estep_factory",
    "fit",
    "inference",
    "io",
    "kernels",
    "lang",
    "load_result",
    "make_estep",
    "model",
    "models",
    "mstep",
    "plots",
    "resume",
    "save_result",
    "schedules",
    "serial",
]

"""After the fit: standard errors (Louis 1982), the marginal log-likelihood, degenerate fits.

Standard errors (:mod:`mcem.inference.information`)
    With draws z_j from p(z | x; theta_hat), Louis' identity gives the observed information

        I(theta_hat) = E[-Hessian log p(x, z; theta)] - Var[score of log p(x, z; theta)],

    both expectations over the posterior and estimated by averages over the draws. Derivatives
    are taken in the unconstrained coordinates by central differences (each difference one
    vectorised call over all draws), inverted there, and mapped to the constrained parameters by
    the delta method. Where the model has an exact log-likelihood, its Hessian is used instead.
    The Monte Carlo error of the standard errors is estimated by the jackknife over batches of
    draws.

Marginal log-likelihood (:mod:`mcem.inference.loglik`)
    Exact where the model has it. Otherwise by importance sampling: for conditionally
    independent units, one proposal per unit (Student-t on the unconstrained scale, fitted to the
    final draws; for finite discrete units the sum over states is exact), so the estimate is a
    sum of independent one-unit estimates; for a joint latent vector, one multivariate Student-t
    proposal. Samples are drawn in batches until the Monte Carlo standard error reaches a
    target (``target_se``, default 0.05) or a budget is spent (then a warning), and the known
    downward bias of the log of a mean weight is removed to first order.

Precision (:mod:`mcem.inference.precision`)
    The Monte Carlo error of an iterate against its standard errors, on the natural scale of
    every parameter: the measure behind the stopping rule of the Monte Carlo methods
    (``mcem.inference.precision.precision`` and ``newton_precision``).

Degenerate fits (:mod:`mcem.inference.degenerate`)
    :func:`degeneracy` names the parameters at the edge of their constraint (a collapsed
    mixture component, an empty one, a singular covariance); :func:`standard_errors` says in
    ``Inference.problems`` which standard errors are NaN and why.
"""

from ..derivatives import constrained_jacobian
from . import bound, categorical, variational
from .degenerate import degeneracy
from .information import Inference, observed_information, standard_errors
from .loglik import LoglikEstimate, marginal_loglik
from .precision import Precision

__all__ = [
    "Inference",
    "observed_information",
    "standard_errors",
    "marginal_loglik",
    "LoglikEstimate",
    "degeneracy",
    "Precision",
]

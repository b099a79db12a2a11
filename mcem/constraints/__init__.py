"""Constraints on parameters and latent variables, with bijections to unconstrained space.

A constraint describes the set a value lives in and carries a smooth bijection from an
unconstrained Euclidean space onto that set, with the log absolute determinant of its Jacobian.
The optimiser and the continuous samplers work on the unconstrained side; users only ever see
constrained values.

Every bijection is vectorised over leading batch axes: ``forward`` maps an array of shape
``(..., *unconstrained_shape)`` to ``(..., *shape)``, and ``log_abs_det_jacobian`` returns one value
per batch element, shape ``(...)``.

Constraints::

    real                         the real line (elementwise)
    positive                     (0, inf), via exp (elementwise)
    interval(a, b)               (a, b), via a scaled logistic (elementwise)
    unit_interval                interval(0, 1)
    simplex(K, batch=())         probability vectors of length K, via additive log-ratios
    positive_definite(d, batch=())  symmetric positive-definite d x d matrices, via a Cholesky
                                 factor whose diagonal is exp-transformed
    lower_cholesky(d, batch=())  lower-triangular d x d matrices with a positive diagonal (the
                                 Cholesky factor of a covariance), diagonal via exp
    corr_cholesky(d, batch=())   Cholesky factors of d x d correlation matrices (unit-norm rows),
                                 via tanh to partial correlations and stick-breaking

The bijections (``forward``, ``inverse``, ``log_abs_det_jacobian``) take numpy or JAX arrays
(tracers inside ``jax.jit``/``jax.grad`` included), so that compiled log densities can be
differentiated exactly in the unconstrained coordinates.

The elementwise constraints are also callables that set a shape: ``real(shape=(K, d))``.
Check-only constraints (no bijection) describe the supports of discrete distributions:
``boolean``, ``nonnegative_integer``, ``integer_interval(lo, hi)``.

Edges
    A fitted value can sit at the edge of its set, where the likelihood theory behind standard
    errors fails (a mixture component collapsed onto a point, an empty component). ``c.edge(x)``
    lists the elements (events) of ``x`` at the edge, ``c.at_edge(x)`` is the boolean mask. The
    criteria, chosen so that ordinary fits are never flagged, are in :mod:`mcem.constraints.boundary`.
"""

from .base import Constraint, as_shape
from .cholesky import CorrCholesky, LowerCholesky, corr_cholesky, lower_cholesky
from .continuous import (
    Interval,
    Positive,
    PositiveDefinite,
    Real,
    Simplex,
    interval,
    positive,
    positive_definite,
    real,
    simplex,
    unit_interval,
)
from .discrete import Boolean, IntegerInterval, NonnegativeInteger, boolean, integer_interval, nonnegative_integer

__all__ = [
    "Constraint",
    "real",
    "positive",
    "interval",
    "unit_interval",
    "simplex",
    "positive_definite",
    "lower_cholesky",
    "corr_cholesky",
    "boolean",
    "nonnegative_integer",
    "integer_interval",
    "as_shape",
]

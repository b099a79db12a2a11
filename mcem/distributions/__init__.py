"""Vectorised probability distributions, on numpy or traced by JAX.

Every distribution has ``log_prob(value)``, ``sample(rng, sample_shape=())``, ``batch_shape``,
``event_shape``, ``mean``, ``variance``, ``support`` (a constraint from :mod:`mcem.constraints`),
``is_discrete`` and ``num_states`` (the number of states of a finite discrete distribution with a
single state space, else ``None``).

Conventions
-----------
* Parameters are converted with ``np.asarray(..., dtype=float)``; they are never written into.
  Their shapes must broadcast together; the broadcast shape (less event axes) is ``batch_shape``.
* Parameters and values may be JAX arrays, tracers inside ``jax.jit`` / ``jax.grad`` included
  (run JAX inside :func:`mcem._jax.x64` for float64). A JAX parameter stays a JAX float array
  and its values are not checked (shapes are); ``log_prob`` then computes with jax.numpy and
  jax.scipy.special -- the same formulas as on numpy -- and returns a JAX array, with finite
  derivatives inside the support. ``sample``, ``mean``, ``variance``, ``support_mask`` and
  ``check_value`` work on numpy values only.
* ``log_prob(value)`` broadcasts ``value`` (shape ``sample_shape + batch_shape + event_shape``, or
  anything broadcastable to it) against the parameters and returns one log density per batch
  element, event axes summed out. Outside the support it returns ``-inf``, never NaN or an error.
* ``sample(rng, sample_shape)`` takes a ``numpy.random.Generator`` and returns an array of shape
  ``sample_shape + batch_shape + event_shape``. Discrete distributions return int64 arrays.
* ``support_mask(value)`` says where values (events) lie in the support, ``support_text`` says
  what the support is in words, and ``check_value(value, name)`` refuses values outside it with
  an error naming the first bad index and value (``TypeError`` for strings, objects or complex
  numbers, ``ValueError`` for numbers outside the support). The model language checks observed
  data with it when a model is built, with ``for_any_params=True`` (supports that move with
  continuous parameters, such as Uniform's, are then only checked for finite values).
* Parameter validation (cheap vectorised checks raising ``ValueError``) is on by default. Turn it
  off globally with ``mcem.distributions.validate_args = False`` or per instance with
  ``validate_args=False``; ``validate_args=None`` means "use the module default". Structural
  errors (non-broadcastable shapes, both/neither of probs and logits, wrong event sizes) are
  always raised.

Distributions
-------------
Continuous: Normal, HalfNormal, LogNormal, StudentT, Uniform, TruncatedNormal, Gamma,
Exponential, InverseGamma, Beta. Discrete: Bernoulli (probs or logits), Binomial (probs or
logits), Poisson (rate or log_rate), NegativeBinomial (concentration with mean or log_mean),
Categorical. With an event axis: Multinomial, Dirichlet, MultivariateNormal (covariance_matrix,
scale_tril or precision_matrix). Whole paths of a chain over time (``event_shape`` ``(T,)`` or
``(T, d)``, ``is_chain`` True): MarkovChain (finite states, time-varying transitions allowed),
GaussianRandomWalk, AR1 and LinearGaussianStateSpace, whose ``linear_gaussian()`` gives their
matrices as a LinearGaussian (m0, P0, F, c, Q).

The classes live in :mod:`mcem.distributions.continuous`, :mod:`~mcem.distributions.truncated`,
:mod:`~mcem.distributions.discrete`, :mod:`~mcem.distributions.multivariate` and
:mod:`~mcem.distributions.chains`; the base class,
with the declared-parameter machinery that converts, checks and broadcasts parameters, in
:mod:`mcem.distributions.base`, and the few operations that differ between numpy and JAX in
:mod:`mcem.distributions._ops`.
"""

from __future__ import annotations

from .base import Distribution
from .chains import AR1, GaussianRandomWalk, LinearGaussian, LinearGaussianStateSpace, MarkovChain
from .continuous import (
    Beta,
    Exponential,
    Gamma,
    HalfNormal,
    InverseGamma,
    LogNormal,
    Normal,
    StudentT,
    Uniform,
)
from .discrete import Bernoulli, Binomial, Categorical, NegativeBinomial, Poisson
from .multivariate import Dirichlet, Multinomial, MultivariateNormal
from .truncated import TruncatedNormal

__all__ = [
    "validate_args",
    "Distribution",
    "Normal",
    "MultivariateNormal",
    "Bernoulli",
    "Binomial",
    "Poisson",
    "NegativeBinomial",
    "Categorical",
    "Multinomial",
    "Gamma",
    "Exponential",
    "Beta",
    "LogNormal",
    "StudentT",
    "Uniform",
    "TruncatedNormal",
    "HalfNormal",
    "InverseGamma",
    "Dirichlet",
    "MarkovChain",
    "GaussianRandomWalk",
    "AR1",
    "LinearGaussianStateSpace",
    "LinearGaussian",
]

#: Module default for parameter validation; instances with ``validate_args=None`` read it at
#: construction time.
validate_args = True

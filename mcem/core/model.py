"""Model declaration: parameters with constraints, latent variables with supports, a log joint.

A :class:`Model` is plain data plus one vectorised function::

    log_joint(theta, z, data) -> array

``theta`` is a dict of constrained parameter arrays, ``z`` a dict of latent arrays that carry
leading batch axes (for example ``(chains, draws)``) in front of each latent's declared shape, and
the return value holds one log density per batch element, shape ``batch``, or, when the latent
units are conditionally independent given theta, one per batch element and unit, shape
``batch + (n_units,)``. Summing the unit axis gives the log joint. The latent declarations,
:class:`Discrete` and :class:`Continuous`, live in :mod:`mcem.core.latents`; the checks of the
declaration and of the first call (:meth:`Model.validate`) in :mod:`mcem.core.declaration`; those
behind :meth:`Model.subset` in :mod:`mcem.core.subset`; :meth:`Model.check` in
:mod:`mcem.core.check`.

Batch layouts
-------------
The package calls ``log_joint`` (and the optional functions) with these batch shapes. In the
last column, "batch" is the latents' batch shape, "units" is ``batch + (n_units,)``, "either"
means batch or units, and "summed" means either, the caller summing the unit axis
(:meth:`Model.log_joint_sum`). ``K`` is the number of states of a Discrete latent, ``N`` the
number of units.

=======================  =====================================  ==============================
Caller                   Latents' batch shape                   Shape expected back
=======================  =====================================  ==============================
``Model.validate``       ``(2,)`` (every fit; ``per_unit``)     either
MCMC site kernels        ``(chains,)`` (RWM, MALA, Gibbs)       either
one chain, emcee         ``(1,)``; ``(chains // 2,)`` (emcee    either (emcee sums units)
                         moves half the walkers at once)
Gibbs enumeration        updated Discrete site ``(K,            either
                         chains)``, other latents
                         ``(chains,)`` (broadcast)
E-step trace             ``(chains,)``; ``(chains, draws)``     summed
                         after an emcee block
Q estimate, Louis        ``(chains, draws)`` (Q, delta Q,       either
                         per-draw scores)
Adam M step              ``(1, batch_draws)``                   either
streamed MCEM            ``(chains,)`` (delta Q replay)         summed
sum over K states        ``(K,)``: state k in every unit of     ``(K, N)``: units required
                         the one Discrete unit latent (GEM's
                         Q, ``marginal_loglik``)
all-state enumeration    ``(n_states,)`` (every latent          summed
                         Discrete; ``marginal_loglik``)
importance sampling      ``(R,)`` (``marginal_loglik``)         ``(R, N)`` with one unit
                                                                latent (units required), else
                                                                summed
sharded blocks           ``(3,)`` on the whole model and on     summed
                         each ``subset`` model (also
                         ``batch_units``)
``conditionals[name]``   as ``log_joint``: ``(chains,)``,       ``batch + (n_units,)``
                         ``(K, chains)``
``grad_params``          ``(chains, draws)``;                   dict: ``batch + param_shape``
                         ``(1, batch_draws)``
``value_and_grad``       ``(chains, draws)``                    ``(total, grads)``, total of
                                                                shape batch
``log_joint_total``      any batch above                        batch
``sufficient_stats``     ``(chains * draws,)``; ``(chains,)``   dict, averaged over the batch
                         when streamed
``posterior_sampler``    argument ``batch = (chains,)``         latents ``batch + shape``
=======================  =====================================  ==============================

The batch shape says nothing about the values: a batch element's log density must not depend on
the layout it arrives in (a ``(chains, draws)`` batch gives the values of the same latents passed
as ``(chains * draws,)``). :meth:`Model.check` probes every layout above on a model.

Inside the package parameters travel as one flat unconstrained vector (``to_unconstrained`` /
``from_unconstrained``); at the edges they are dicts of constrained arrays.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Mapping

import numpy as np

from .. import constraints as C
from .._validation import check_data, conform, describe_array, with_context
from .latents import Continuous, Discrete, LatentSpec
from .chains import Chain, check_chains
from .check import CheckReport, check_model
from .describe import describe_model
from .gradients import Derivatives
from .declaration import (
    as_float_dict,
    check_conditionals,
    check_functions,
    check_latent_specs,
    check_param_specs,
    first_call,
    param_offsets,
)
from .subset import check_submodel, check_units

__all__ = ["Model", "Chain", "Discrete", "Continuous", "LatentSpec"]


class Model(Derivatives):
    """A latent-variable model: parameters, latents, data and a vectorised log joint density.

    Parameters
    ----------
    log_joint : callable
        ``log_joint(theta, z, data)``; see the module docstring for the shapes.
    params : dict
        Parameter name -> constraint with its shape, e.g. ``constraints.real(shape=(K, d))``.
    latents : dict
        Latent name -> :class:`Discrete` or :class:`Continuous`.
    data : any, optional
        Passed unchanged (as read-only copies of its arrays) to ``log_joint`` and the extras.
    init : dict, optional
        Default initial parameter values; missing names start at the constraint's canonical
        point.
    exact_estep : callable, optional
        ``exact_estep(theta, data) -> stats``: posterior expectations of the sufficient statistics.
    mstep : callable, optional
        ``mstep(stats, data) -> theta``: the closed-form maximiser of Q given (expected or
        Monte Carlo averaged) sufficient statistics. ``exact_estep`` may also return
        ``(stats, loglik)`` when the log-likelihood at theta comes for free.
    sufficient_stats : callable, optional
        ``sufficient_stats(z, data) -> stats``: the complete-data sufficient statistics averaged
        over the leading batch axes of ``z`` (the Monte Carlo counterpart of ``exact_estep``).
    loglik : callable, optional
        ``loglik(theta, data) -> float``: the exact marginal log-likelihood.
    posterior_sampler : callable, optional
        ``posterior_sampler(theta, data, rng, batch) -> z``: exact draws from p(z | x; theta).
    grad_params : callable, optional
        ``grad_params(theta, z, data) -> dict``: the gradient of the log joint (summed over
        units) with respect to each constrained parameter, shape ``batch + param_shape``. Used by
        the numerical and stochastic M steps instead of finite differences.
    value_and_grad : callable, optional
        ``value_and_grad(theta, z, data) -> (total, grads)``: ``log_joint_total`` and
        ``grad_params`` from one pass over the data, for the numerical M step, which needs both
        at every trial point.
    grad_latents : callable, optional
        ``grad_latents(theta, z, data) -> dict``: the gradient of the log joint (summed over
        units) with respect to each continuous latent, shaped like ``z[name]``. Gradient
        samplers (MALA) use it with no further code.
    scores : callable, optional
        ``scores(theta, z, data) -> array``: the gradient of the summed log joint in the
        unconstrained parameters per batch element, shape ``batch + (p,)``.
    unit_scores : callable, optional
        ``unit_scores(theta, z, data) -> array``: the same per unit of the per-unit terms,
        shape ``batch + (n_units, p)``.
    hessian : callable, optional
        ``hessian(theta, z, data) -> array``: the Hessian of the log joint in the unconstrained
        parameters averaged over the batch, shape ``(p, p)``.
    log_joint_total : callable, optional
        ``log_joint_total(theta, z, data)``: the log joint summed over units, shape ``batch``;
        a faster path for Q evaluations when ``log_joint`` spends time building unit terms.
    n_obs : int, optional
        The number of observations, for BIC.
    conditionals : dict, optional
        Latent name -> ``fn(theta, z, data)`` returning, per batch element and unit of that latent
        (shape ``batch + (n_units,)``), every term of the log joint that involves the unit; terms
        free of the latent may be left out. For models with several unit latents whose units
        differ (crossed random effects), so that a sampler can update one latent's units at once.
    chains : dict, optional
        Latent name -> :class:`mcem.Chain` for latents that form a chain over their first axis
        (hidden Markov states, random walks, state-space processes): the chain's prior and its
        per-time-step emission terms, which the chain samplers (FFBS, the Gaussian simulation
        smoother, conditional SMC) and the exact log-likelihood (forward algorithm, Kalman
        filter) use. The model language fills it for latents with a chain distribution.
    subset : callable, optional
        ``subset(units) -> Model``: the same model restricted to the units ``units`` (a sorted
        1-D array of unit indices), with its own data (the observations of those units) and unit
        latents of length ``len(units)``. The posterior of the latents must factor over the
        units, so that sampling each block of units on its own is sampling the whole. Enables
        the sharded E step (``make_estep(..., shards=k, executor=...)``) and unit minibatches in the
        stochastic M step. See :meth:`subset` and :meth:`with_subset`.
    labels : dict, optional
        Parameter name -> one label (str) per element in C order, e.g. ``{"beta": ["Intercept",
        "Days"]}``: the names results print (``fit.param_names``); also a settable attribute.
    name : str, optional
    """

    def __init__(
        self,
        log_joint: Callable,
        *,
        params: Mapping,
        latents: Mapping,
        data=None,
        init: Mapping | None = None,
        exact_estep: Callable | None = None,
        mstep: Callable | None = None,
        sufficient_stats: Callable | None = None,
        loglik: Callable | None = None,
        posterior_sampler: Callable | None = None,
        grad_params: Callable | None = None,
        log_joint_total: Callable | None = None,
        n_obs: int | None = None,
        conditionals: Mapping | None = None,
        subset: Callable | None = None,
        value_and_grad: Callable | None = None,
        grad_latents: Callable | None = None,
        scores: Callable | None = None,
        unit_scores: Callable | None = None,
        hessian: Callable | None = None,
        chains: Mapping | None = None,
        labels: Mapping | None = None,
        name: str | None = None,
    ):
        if not callable(log_joint):
            raise TypeError(f"log_joint must be callable, got {type(log_joint).__name__}")
        self.log_joint_fn = log_joint
        self.params = check_param_specs(params)
        self.latents = check_latent_specs(latents)
        self.data = check_data(data, "data")
        check_functions(
            exact_estep=exact_estep, mstep=mstep, sufficient_stats=sufficient_stats, loglik=loglik,
            posterior_sampler=posterior_sampler, grad_params=grad_params,
            log_joint_total=log_joint_total, subset=subset, value_and_grad=value_and_grad,
            grad_latents=grad_latents, scores=scores, unit_scores=unit_scores, hessian=hessian,
        )
        self.exact_estep_fn = exact_estep
        self.mstep_fn = mstep
        self.sufficient_stats_fn = sufficient_stats
        self.loglik_fn = loglik
        self.posterior_sampler_fn = posterior_sampler
        self.grad_params_fn = grad_params
        self.log_joint_total_fn = log_joint_total
        self.subset_fn = subset
        self.value_and_grad_fn = value_and_grad
        self.grad_latents_fn = grad_latents
        self.scores_fn = scores
        self.unit_scores_fn = unit_scores
        self.hessian_fn = hessian
        if n_obs is not None and (not isinstance(n_obs, numbers.Integral) or n_obs < 1):
            raise ValueError(f"n_obs must be a positive int or None, got {n_obs!r}")
        self.n_obs = None if n_obs is None else int(n_obs)
        self.conditionals = check_conditionals(conditionals, self.latents)
        self.chains = check_chains(chains, self.latents)
        self.name = name or getattr(log_joint, "__name__", "model")
        self.param_names = tuple(sorted(self.params))
        self.latent_names = tuple(sorted(self.latents))
        units = {s.n_units for s in self.latents.values() if s.unit}
        self.n_units = units.pop() if len(units) == 1 else None
        self._offsets, self.n_unconstrained = param_offsets(self.params)
        self.init = self.check_theta(init or {}, "init", partial=True)
        self._per_unit = None
        self.labels = labels

    labels = property(lambda self: self.__dict__.get("_labels"),
                      doc="Parameter name -> tuple of per-element labels (C order), or None.")

    @labels.setter
    def labels(self, value):  # a dict name -> tuple of str, checked against the parameters
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"labels must be a dict parameter name -> sequence of str, or None; got {type(value).__name__}")
        out = {}
        for n, v in (value or {}).items():
            if n not in self.params:
                raise ValueError(f"labels has unknown parameter {n!r}; the model's parameters are {list(self.param_names)}")
            if isinstance(v, str | bytes) or not hasattr(v, "__len__") or not all(isinstance(s, str) for s in v):
                raise TypeError(f"labels[{n!r}] must be a sequence of str (one per element), got {v!r}")
            if len(v) != self.params[n].size or len(set(v)) != len(v):
                raise ValueError(f"labels[{n!r}] must hold {self.params[n].size} distinct label(s) (one per element of "
                                 f"shape {self.params[n].shape}, C order), got {list(v)!r}")
            out[n] = tuple(v)
        self.__dict__["_labels"] = out or None

    # ------------------------------------------------------------------ parameters
    @property
    def has_exact_em(self) -> bool:
        return self.exact_estep_fn is not None and self.mstep_fn is not None

    def default_theta(self) -> dict:
        """Initial parameters: ``init`` where given, the constraint's canonical point otherwise."""
        return {
            n: (self.init[n].copy() if n in self.init else self.params[n].default())
            for n in self.param_names
        }

    def check_theta(self, theta, name="theta0", partial=False) -> dict:
        """Validate a parameter dict; return float copies in sorted-name order.

        Raises ``ValueError``/``TypeError`` naming the argument and the offending parameter.
        """
        theta = as_float_dict(theta, name)
        unknown = sorted(set(theta) - set(self.params))
        if unknown:
            raise ValueError(
                f"{name} has unknown parameter(s) {unknown}; the model's parameters are "
                f"{list(self.param_names)}"
            )
        missing = [n for n in self.param_names if n not in theta]
        if missing and not partial:
            raise ValueError(
                f"{name} is missing parameter(s) {missing}; expected all of {list(self.param_names)}"
            )
        out = {}
        for n in self.param_names:
            if n not in theta:
                continue
            c = self.params[n]
            out[n] = conform(theta[n], c, c.shape, f"{name}[{n!r}]", shape_words="must have shape",
                             show=describe_array, owned=True)
        return out

    def to_unconstrained(self, theta) -> np.ndarray:
        """Dict of constrained arrays -> one flat unconstrained vector (sorted names)."""
        parts = [
            np.asarray(self.params[n].inverse(theta[n]), dtype=float).ravel()
            for n in self.param_names
        ]
        return np.concatenate(parts) if parts else np.zeros(0)

    def from_unconstrained(self, u) -> dict:
        """One flat unconstrained vector -> dict of constrained arrays."""
        u = np.asarray(u, dtype=float)
        if u.shape != (self.n_unconstrained,):
            raise ValueError(
                f"unconstrained vector must have shape ({self.n_unconstrained},), got {u.shape}"
            )
        out = {}
        for n in self.param_names:
            a, b = self._offsets[n]
            c = self.params[n]
            out[n] = c.forward(u[a:b].reshape(c.unconstrained_shape))
        return out

    def grad_to_unconstrained(self, u, grad_theta) -> np.ndarray:
        """Chain rule: a gradient in the constrained parameters -> one in ``u``.

        ``grad_theta`` is a dict of arrays shaped like the parameters. The vector-Jacobian
        product is taken by central differences of ``u -> sum(theta(u) * grad_theta)``, which
        touches only the transforms (no data), one pair of evaluations per coordinate.
        """
        u = np.asarray(u, dtype=float)
        g = {n: np.asarray(grad_theta[n], dtype=float) for n in self.param_names}

        def phi(v):
            th = self.from_unconstrained(v)
            return sum(float(np.sum(th[n] * g[n])) for n in self.param_names)

        out = np.empty_like(u)
        for i in range(u.size):  # a loop over parameter coordinates only
            h = 1e-6 * max(1.0, abs(u[i]))
            e = np.zeros_like(u)
            e[i] = h
            out[i] = (phi(u + e) - phi(u - e)) / (2 * h)
        return out

    def log_abs_det_jacobian(self, u) -> float:
        """The log absolute Jacobian determinant of :meth:`from_unconstrained` at ``u``."""
        u = np.asarray(u, dtype=float)
        total = 0.0
        for n in self.param_names:
            a, b = self._offsets[n]
            c = self.params[n]
            total += float(np.sum(c.log_abs_det_jacobian(u[a:b].reshape(c.unconstrained_shape))))
        return total

    # ------------------------------------------------------------------ units
    def with_subset(self, fn) -> Model:
        """A copy of this model whose :meth:`subset` calls ``fn(units) -> Model``.

        For models compiled by :func:`mcem.model`, ``fn`` typically calls the model function
        again on the observations of ``units`` with the unit labels renumbered 0..len(units)-1.
        """
        if not callable(fn):
            raise TypeError(f"with_subset: fn must be callable, got {type(fn).__name__}")
        out = copy.copy(self)
        out.__dict__.pop("_unit_blocks", None)  # blocks built by the old subset function
        out.subset_fn = fn
        return out

    def subset(self, units) -> Model:
        """The model of the units ``units`` alone (a sorted array of distinct unit indices).

        Calls the ``subset`` function given to the model and checks that the result declares the
        same parameters and the same latents with ``len(units)`` units.
        """
        u = check_units(self, units)
        try:
            sub = self.subset_fn(u)
        except Exception as exc:
            raise with_context(
                exc, f"the subset function of model {self.name!r} raised {type(exc).__name__}"
            ) from exc
        if not isinstance(sub, Model):
            raise TypeError(
                f"the subset function of model {self.name!r} must return an mcem.Model, got "
                f"{type(sub).__name__}"
            )
        check_submodel(self, sub, u)
        sub.labels = sub.labels or self.labels  # the same parameters, so the same labels
        return sub

    # ------------------------------------------------------------------ latents
    def init_latents(self, rng: np.random.Generator, batch=()) -> dict:
        """Initial latent arrays with leading ``batch`` axes."""
        batch = C.as_shape(batch, "batch")
        return {n: self.latents[n].initial(rng, batch) for n in self.latent_names}

    def check_latents(self, z, name="z", batch_ndim=None) -> dict:
        if not isinstance(z, Mapping):
            raise TypeError(f"{name} must be a dict of latent arrays, got {type(z).__name__}")
        missing = [n for n in self.latent_names if n not in z]
        unknown = sorted(set(z) - set(self.latents))
        if missing or unknown:
            raise ValueError(
                f"{name} must have exactly the latents {list(self.latent_names)}; "
                f"missing {missing}, unknown {unknown}"
            )
        out = {}
        for n in self.latent_names:
            spec = self.latents[n]
            v = np.asarray(z[n])
            nd = len(spec.shape)
            if v.shape[v.ndim - nd :] != spec.shape or v.ndim < nd:
                raise ValueError(
                    f"{name}[{n!r}] must end in the latent shape {spec.shape}, got shape {v.shape}"
                )
            if not np.all(spec.contains(v)):
                raise ValueError(f"{name}[{n!r}] must lie in {spec.support!r}")
            out[n] = v
        return out

    # ------------------------------------------------------------------ densities
    def log_joint(self, theta, z) -> np.ndarray:
        """Evaluate ``log_joint(theta, z, data)`` (no checks; the hot path)."""
        return self.log_joint_fn(theta, z, self.data)

    def log_joint_sum(self, theta, z, batch_ndim) -> np.ndarray:
        """The log joint summed over units: one value per element of the ``batch_ndim`` leading axes."""
        if self.log_joint_total_fn is not None:
            return np.asarray(self.log_joint_total_fn(theta, z, self.data), dtype=float)
        lj = np.asarray(self.log_joint_fn(theta, z, self.data), dtype=float)
        return lj.reshape(lj.shape[:batch_ndim] + (-1,)).sum(-1) if lj.ndim > batch_ndim else lj

    @property
    def per_unit(self) -> bool:
        """Whether ``log_joint`` returns per-unit terms (known after :meth:`validate`)."""
        if self._per_unit is None:
            self.validate(self.default_theta())
        return self._per_unit

    def validate(self, theta, rng=None, name="theta0") -> dict:
        """Check ``theta`` and one call of ``log_joint``; learn whether it returns unit terms."""
        theta = self.check_theta(theta, name)
        self._per_unit = first_call(self, theta, rng, name)
        return theta

    def check(self, theta=None, rng=None) -> CheckReport:
        """Probe every batch layout the package uses (the table in :mod:`mcem.model`) on this model.

        Calls ``log_joint`` with latents of each batch shape and checks the shapes returned, the
        unit axis, NaN and +inf, and that a batch element has the same value in every layout;
        then, where given, ``log_joint_total``, the unit structure of per-unit terms,
        ``conditionals``, ``grad_params`` and ``value_and_grad`` (against central differences),
        ``sufficient_stats``, ``posterior_sampler`` and the ``subset`` blocks' additivity.

        Parameters
        ----------
        theta : dict, optional
            Parameters to probe at (default: :meth:`default_theta`).
        rng : None, int or Generator
            For the random latents of the probes (None: a fixed seed, so the check repeats).

        Returns
        -------
        CheckReport
            A dict layout name -> ``{"batch", "returned", "status"}`` (``"ok"`` or
            ``"skipped: why"``); ``print(report)`` shows it as a table.

        Raises
        ------
        ValueError, TypeError
            The first failure, its message starting ``Model.check: <layout>:``; errors raised by
            the model's own functions keep their type and gain that prefix.
        """
        return check_model(self, theta, rng)

    def describe(self) -> str:
        """What the model declares and what mcem found in it, as text: parameters, latents and
        their units, the sites of a model-language model, the M step (closed-form parts and
        numerical ones) and the derivatives available (exact or finite differences).
        ``print(model.describe())``."""
        return describe_model(self)

    def exact_loglik(self, theta) -> float | None:
        """The exact marginal log-likelihood, or None when the model does not supply it."""
        if self.loglik_fn is None:
            return None
        return float(self.loglik_fn(theta, self.data))

    #: The closed-form part of the M step (parameters set from sufficient statistics before the
    #: numerical M step maximises the rest); found by the model language's compiler.
    partial_mstep = None
    #: ``(u, z, w) -> (sum_j w_j log p(x, z_j; theta(u)), gradient in u)``, exact; set by the
    #: model language's compiler, used by the numerical M steps when present.
    weighted_value_and_grad_u = None
    #: ``(u, z, w) -> gradient in u`` of the same sum alone (Newton's M step); set with it.
    weighted_grad_u = None
    #: The closed-form structure the model language found (for :meth:`describe`), or None.
    structure = None

    def __copy__(self):
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        return out

    def __reduce_ex__(self, protocol):
        # A model built by the model language pickles as its function and data (compiled
        # again when loaded); other models pickle their attributes.
        rebuild = self.__dict__.get("_rebuild")
        if rebuild is None:
            return super().__reduce_ex__(protocol)
        return rebuild if self.labels is None else (*rebuild, {"_labels": self.labels})

    def __repr__(self):
        ps = ", ".join(f"{n}: {self.params[n]!r}" for n in self.param_names)
        ls = ", ".join(f"{n}: {self.latents[n]!r}" for n in self.latent_names)
        return f"Model({self.name!r}, params={{{ps}}}, latents={{{ls}}})"

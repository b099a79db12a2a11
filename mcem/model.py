"""Model declaration: parameters with constraints, latent variables with supports, a log joint.

A :class:`Model` is plain data plus one vectorised function::

    log_joint(theta, z, data) -> array

``theta`` is a dict of constrained parameter arrays, ``z`` a dict of latent arrays that carry
leading batch axes (for example ``(chains, draws)``) in front of each latent's declared shape, and
the return value holds one log density per batch element, shape ``batch``, or, when the latent
units are conditionally independent given theta, one per batch element and unit, shape
``batch + (n_units,)``. Summing the unit axis gives the log joint.

Inside the package parameters travel as one flat unconstrained vector (``to_unconstrained`` /
``from_unconstrained``); at the edges they are dicts of constrained arrays.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Mapping

import numpy as np

from . import constraints as C
from ._validation import as_real_array, check_data, describe_array, with_context

__all__ = ["Model", "Discrete", "Continuous", "LatentSpec"]


class LatentSpec:
    """Common part of latent declarations: a shape and an optional unit axis (axis 0)."""

    support: C.Constraint
    is_discrete = False

    def __init__(self, shape=(), unit=False):
        self.shape = C.as_shape(shape)
        if not isinstance(unit, bool):
            raise TypeError(f"unit must be True or False, got {unit!r}")
        if unit and not self.shape:
            raise ValueError(
                "unit=True needs a latent with at least one axis (axis 0 is the unit axis), "
                f"got shape={self.shape}"
            )
        self.unit = unit

    @property
    def n_units(self) -> int | None:
        return self.shape[0] if self.unit else None

    def contains(self, z) -> np.ndarray:
        return self.support.contains(np.asarray(z))


class Discrete(LatentSpec):
    """A latent with finitely many states 0, 1, ..., K-1 (for example mixture labels).

    Parameters
    ----------
    K : int
        Number of states.
    shape : int or tuple of int
        Shape of the latent array, without batch axes.
    unit : bool
        When True, axis 0 of ``shape`` indexes conditionally independent units.
    """

    is_discrete = True

    def __init__(self, K, shape=(), unit=False):
        if not isinstance(K, numbers.Integral) or isinstance(K, bool) or K < 1:
            raise ValueError(f"Discrete: K must be an int >= 1, got {K!r}")
        self.K = int(K)
        self.support = C.integer_interval(0, self.K - 1)
        super().__init__(shape, unit)

    def initial(self, rng: np.random.Generator, batch=()) -> np.ndarray:
        return rng.integers(0, self.K, size=tuple(batch) + self.shape)

    def __repr__(self):
        return f"Discrete({self.K}, shape={self.shape}, unit={self.unit})"


class Continuous(LatentSpec):
    """A continuous latent with an elementwise support (real, positive or an interval).

    Parameters
    ----------
    support : Constraint
        ``constraints.real``, ``constraints.positive`` or ``constraints.interval(a, b)``.
    shape, unit
        As for :class:`Discrete`.
    init : float or array, optional
        Initial value of the chains (default: the support's canonical point, 0 for real,
        1 for positive, the midpoint of an interval).
    """

    def __init__(self, support=C.real, shape=(), unit=False, init=None):
        if not isinstance(support, C.Constraint) or not support.elementwise or support.is_discrete:
            raise TypeError(
                "Continuous: support must be an elementwise continuous constraint "
                f"(constraints.real, positive or interval(a, b)), got {support!r}"
            )
        super().__init__(shape, unit)
        self.support = support(self.shape)
        if init is None:
            self.init = self.support.default()
        else:
            init = as_real_array(init, "Continuous: init")
            try:
                init = np.broadcast_to(init, self.shape).copy()
            except ValueError:
                raise ValueError(
                    f"Continuous: init must broadcast to shape {self.shape}, got shape {init.shape}"
                ) from None
            if not self.support.check(init):
                raise ValueError(f"Continuous: init must lie in {self.support!r}, got {init!r}")
            self.init = init

    def initial(self, rng: np.random.Generator, batch=()) -> np.ndarray:
        return np.broadcast_to(self.init, tuple(batch) + self.shape).copy()

    def __repr__(self):
        return f"Continuous({self.support!r}, shape={self.shape}, unit={self.unit})"


def _as_float_dict(theta, name):
    if not isinstance(theta, Mapping):
        raise TypeError(f"{name} must be a dict of parameter arrays, got {type(theta).__name__}")
    return {k: as_real_array(v, f"{name}[{k!r}]") for k, v in theta.items()}


class Model:
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
    subset : callable, optional
        ``subset(units) -> Model``: the same model restricted to the units ``units`` (a sorted
        1-D array of unit indices), with its own data (the observations of those units) and unit
        latents of length ``len(units)``. The posterior of the latents must factor over the
        units, so that sampling each block of units on its own is sampling the whole. Enables
        the sharded E step (``EStep(..., shards=k, executor=...)``) and unit minibatches in the
        stochastic M step. See :meth:`subset` and :meth:`with_subset`.
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
        name: str | None = None,
    ):
        if not callable(log_joint):
            raise TypeError(f"log_joint must be callable, got {type(log_joint).__name__}")
        self.log_joint_fn = log_joint
        self.params = self._check_params(params)
        self.latents = self._check_latents(latents)
        self.data = check_data(data, "data")
        for nm, fn in [
            ("exact_estep", exact_estep),
            ("mstep", mstep),
            ("sufficient_stats", sufficient_stats),
            ("loglik", loglik),
            ("posterior_sampler", posterior_sampler),
            ("grad_params", grad_params),
            ("log_joint_total", log_joint_total),
            ("subset", subset),
            ("value_and_grad", value_and_grad),
        ]:
            if fn is not None and not callable(fn):
                raise TypeError(f"{nm} must be callable or None, got {type(fn).__name__}")
        self.exact_estep_fn = exact_estep
        self.mstep_fn = mstep
        self.sufficient_stats_fn = sufficient_stats
        self.loglik_fn = loglik
        self.posterior_sampler_fn = posterior_sampler
        self.grad_params_fn = grad_params
        self.log_joint_total_fn = log_joint_total
        self.subset_fn = subset
        self.value_and_grad_fn = value_and_grad
        if value_and_grad is not None and grad_params is None:
            raise ValueError("value_and_grad needs grad_params as well (the other M steps use it alone)")
        if n_obs is not None and (not isinstance(n_obs, numbers.Integral) or n_obs < 1):
            raise ValueError(f"n_obs must be a positive int or None, got {n_obs!r}")
        self.n_obs = None if n_obs is None else int(n_obs)
        if conditionals is not None and not isinstance(conditionals, Mapping):
            raise TypeError(
                "conditionals must be a dict {latent name: fn(theta, z, data)} or None, got "
                f"{type(conditionals).__name__} {conditionals!r}"
            )
        self.conditionals = dict(conditionals or {})
        for k, fn in self.conditionals.items():
            if k not in self.latents or not self.latents[k].unit:
                raise ValueError(
                    f"conditionals[{k!r}]: expected the name of a latent declared with unit=True, "
                    f"got {k!r} (unit latents: {[n for n, s in self.latents.items() if s.unit]})"
                )
            if not callable(fn):
                raise TypeError(f"conditionals[{k!r}] must be callable, got {type(fn).__name__}")
        self.name = name or getattr(log_joint, "__name__", "model")
        self.param_names = tuple(sorted(self.params))
        self.latent_names = tuple(sorted(self.latents))
        units = {s.n_units for s in self.latents.values() if s.unit}
        self.n_units = units.pop() if len(units) == 1 else None
        self._offsets = {}
        off = 0
        for n in self.param_names:
            size = self.params[n].unconstrained_size
            self._offsets[n] = (off, off + size)
            off += size
        self.n_unconstrained = off
        self.init = self.check_theta(init or {}, "init", partial=True)
        self._per_unit = None

    # ------------------------------------------------------------------ declaration checks
    @staticmethod
    def _check_params(params):
        if not isinstance(params, Mapping) or not params:
            raise TypeError(
                "params must be a non-empty dict mapping names to constraints, "
                f"got {type(params).__name__} {params!r}"
            )
        out = {}
        for k, c in params.items():
            if not isinstance(k, str):
                raise TypeError(f"params: names must be str, got {k!r}")
            if not isinstance(c, C.Constraint) or not c.has_bijection:
                raise TypeError(
                    f"params[{k!r}] must be a continuous constraint (mcem.constraints.real, "
                    f"positive, interval, simplex or positive_definite), got {c!r}"
                )
            out[k] = c
        return out

    @staticmethod
    def _check_latents(latents):
        if not isinstance(latents, Mapping):
            raise TypeError(f"latents must be a dict of Discrete/Continuous, got {latents!r}")
        out = {}
        for k, s in latents.items():
            if not isinstance(k, str):
                raise TypeError(f"latents: names must be str, got {k!r}")
            if not isinstance(s, LatentSpec):
                raise TypeError(
                    f"latents[{k!r}] must be mcem.Discrete(...) or mcem.Continuous(...), got {s!r}"
                )
            out[k] = s
        return out

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
        theta = _as_float_dict(theta, name)
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
            c, v = self.params[n], theta[n]
            if v.shape != c.shape:
                try:
                    v = np.broadcast_to(v, c.shape).copy()
                except ValueError:
                    raise ValueError(
                        f"{name}[{n!r}] must have shape {c.shape}, got shape {v.shape}"
                    ) from None
            if not c.check(v):
                raise ValueError(f"{name}[{n!r}] must lie in {c!r}, got {describe_array(v)}")
            out[n] = v
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
        if self.subset_fn is None:
            raise ValueError(
                f"model {self.name!r} cannot be restricted to a subset of its units: it has no "
                "subset function. Pass Model(..., subset=fn) or use model.with_subset(fn), where "
                "fn(units) returns the model of those units"
            )
        not_unit = [n for n in self.latent_names if not self.latents[n].unit]
        if not_unit or self.n_units is None:
            raise ValueError(
                f"model {self.name!r}: subsets need every latent declared with unit=True and one "
                f"common number of units; latents without a unit axis: {not_unit}, unit counts: "
                f"{sorted({s.n_units for s in self.latents.values() if s.unit})}"
            )
        u = np.asarray(units)
        if u.ndim != 1 or u.size == 0 or not np.issubdtype(u.dtype, np.integer):
            raise ValueError(
                f"units must be a non-empty 1-D integer array, got {describe_array(u)}"
            )
        if np.any(np.diff(u) <= 0) or u[0] < 0 or u[-1] >= self.n_units:
            raise ValueError(
                f"units must be strictly increasing indices in 0..{self.n_units - 1}, got "
                f"{describe_array(u)}"
            )
        u = u.astype(np.int64)
        u.setflags(write=False)
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
        mine = {n: self.params[n].shape for n in self.param_names}
        theirs = {n: sub.params[n].shape for n in sub.param_names}
        if mine != theirs:
            raise ValueError(
                f"the subset function of model {self.name!r} returned a model with parameters "
                f"{theirs}; expected the same parameters as the whole model, {mine}"
            )
        want = {n: (len(u),) + self.latents[n].shape[1:] for n in self.latent_names}
        got = {n: sub.latents[n].shape for n in sub.latent_names}
        if want != got or not all(s.unit for s in sub.latents.values()):
            raise ValueError(
                f"the subset function of model {self.name!r} returned latents {got} for "
                f"{len(u)} units; expected unit latents of shapes {want}"
            )
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
        rng = np.random.default_rng(0 if rng is None else rng)
        batch = (2,)
        z = self.init_latents(rng, batch)
        try:
            out = self.log_joint_fn(theta, z, self.data)
        except Exception as exc:  # re-raised with the context a user needs
            raise with_context(
                exc,
                f"log_joint raised {type(exc).__name__} when called with {name} and latents of "
                f"batch shape {batch}",
            ) from exc
        arr = np.asarray(out)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(
                f"log_joint must return a float array, got {type(out).__name__} of dtype {arr.dtype}"
            )
        expected = [batch]
        if self.n_units is not None:
            expected.append(batch + (self.n_units,))
        if arr.shape not in expected:
            raise ValueError(
                "log_joint must return one value per batch element "
                f"(shape {expected[0]} for latents with batch shape {batch})"
                + (f" or per batch element and unit (shape {expected[1]})" if len(expected) > 1 else "")
                + f", got shape {arr.shape}"
            )
        if np.any(np.isnan(arr)):
            raise ValueError(f"log_joint returned NaN at {name} and the initial latents")
        if np.any(np.isposinf(arr)):
            raise ValueError(f"log_joint returned +inf at {name} and the initial latents")
        if np.all(np.isneginf(arr)):
            raise ValueError(
                f"log_joint is -inf at {name} and the initial latents: the starting point has zero "
                "density (check theta0 and the latents' init values)"
            )
        self._per_unit = arr.shape == batch + (self.n_units,) if self.n_units is not None else False
        return theta

    def exact_loglik(self, theta) -> float | None:
        """The exact marginal log-likelihood, or None when the model does not supply it."""
        if self.loglik_fn is None:
            return None
        return float(self.loglik_fn(theta, self.data))

    def __repr__(self):
        ps = ", ".join(f"{n}: {self.params[n]!r}" for n in self.param_names)
        ls = ", ".join(f"{n}: {self.latents[n]!r}" for n in self.latent_names)
        return f"Model({self.name!r}, params={{{ps}}}, latents={{{ls}}})"

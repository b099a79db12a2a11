"""The :class:`Distribution` base class: declared parameters, support checks, shapes and repr.

A distribution declares its parameters instead of converting and checking them itself::

    class Gamma(Distribution):
        param_checks = {"concentration": POSITIVE, "rate": POSITIVE}

        def __init__(self, concentration, rate=1.0, *, validate_args=None):
            super().__init__(validate_args, concentration=concentration, rate=rate)
            ...  # derived quantities only

:meth:`Distribution.__init__` then converts each parameter to a float array (stored as an
attribute of the same name), checks it with its :class:`ParamCheck` (errors name the distribution
and the parameter), and sets ``batch_shape`` to the broadcast of the parameters' shapes (less
their event axes, declared in ``param_event_dims``). Parameters named in ``one_of`` are
alternatives (``probs`` or ``logits``): exactly one must be given, the others are ``None``.

Parameters may be JAX arrays (tracers inside ``jax.jit`` / ``jax.grad`` included): they are
then kept as JAX float arrays, their values are not checked (they are unknown while tracing;
structural checks of shapes still run), and derived quantities and ``log_prob`` are computed
with jax.numpy / jax.scipy.special (:meth:`Distribution._ns`). ``log_prob`` of a JAX value
is a JAX array too. ``sample``, ``mean``, ``variance`` and the support checks stay numpy-only.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from .. import constraints
from .._jax import is_jax, jax_namespace, namespace, numpy_namespace
from ..constraints import as_shape

__all__ = [
    "Distribution",
    "ParamCheck",
    "FINITE",
    "POSITIVE",
    "NONNEGATIVE",
    "PROBABILITY",
    "COUNT",
    "NOT_NAN",
]

_NEG_INF = -np.inf
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
#: The numpy namespace, and the types that are never JAX arrays (checked first: fast numpy path)
_NUMPY_NS = numpy_namespace()
_PLAIN = frozenset(
    {np.ndarray, float, int, bool, np.float64, np.int64, np.bool_, list, tuple, type(None)}
)
#: The package whose ``validate_args`` is the default (read at construction time, so that
#: ``mcem.distributions.validate_args = False`` takes effect).
_PACKAGE = __name__.rpartition(".")[0]


# --------------------------------------------------------------------------------------------
# helpers


def _describe_bad(x, bad) -> str:
    """'got -1.0' or 'got array with 2 bad value(s), e.g. -1.0' for the offending entries."""
    x = np.asarray(x)
    bad = np.broadcast_to(bad, x.shape)
    if x.ndim == 0:
        return f"got {x.item()!r}"
    n = int(np.count_nonzero(bad))
    example = x[bad].flat[0].item() if n else None
    return f"got array of shape {x.shape} with {n} bad value(s), e.g. {example!r}"


def _mask_out(out, ok):
    """Set ``out`` to -inf where ``ok`` is False (in place when possible); returns the result.

    JAX arrays are never written into: ``jax.numpy.where`` gives a new array."""
    if isinstance(out, np.ndarray) and out.ndim and out.flags.writeable:
        np.copyto(out, _NEG_INF, where=~ok)
        return out
    if _is_jax(out) or _is_jax(ok):
        return jax_namespace().np.where(ok, out, _NEG_INF)
    return np.where(ok, out, _NEG_INF)


def _is_jax(x) -> bool:
    """:func:`mcem._jax.is_jax`, answered at once for numpy arrays and Python numbers."""
    return type(x) not in _PLAIN and is_jax(x)


def _is_integer(x, ns=None):
    return x == (np if ns is None else ns.np).floor(x)


def _contains_jax(x) -> bool:
    """Whether a (nested) list or tuple holds a JAX array."""
    if isinstance(x, (list, tuple)):
        return any(_contains_jax(v) for v in x)
    return is_jax(x)


def _support_words(support) -> str:
    """A constraint in words, for error messages ("values in {0, 1}", "positive values", ...)."""
    if isinstance(support, constraints.Real):
        return "finite values"
    if isinstance(support, constraints.Positive):
        return "positive values"
    if isinstance(support, constraints.Interval):
        return f"values in ({support.low!r}, {support.high!r})"
    if isinstance(support, constraints.Boolean):
        return "values in {0, 1}"
    if isinstance(support, constraints.NonnegativeInteger):
        return "non-negative integers"
    if isinstance(support, constraints.IntegerInterval):
        lo, hi = support.lo, support.hi
        if hi - lo <= 1:
            return "values in {" + ", ".join(str(k) for k in range(lo, hi + 1)) + "}"
        return f"integers in {{{lo}, ..., {hi}}}"
    if isinstance(support, constraints.Simplex):
        return "probability vectors (non-negative, summing to 1 over the last axis)"
    return f"values in {support!r}"


def _fmt_value(v):
    """A value for an error message: a Python scalar or a (short) list."""
    v = np.asarray(v)
    if v.ndim == 0:
        return repr(v.item())
    return repr(v.tolist()) if v.size <= 10 else f"<array of shape {v.shape}>"


def _fmt_param(x) -> str:
    if is_jax(x):
        try:
            x = np.asarray(x)
        except Exception:  # a tracer: its value is unknown
            return f"<traced {tuple(x.shape)}>"
    x = np.asarray(x)
    if x.ndim == 0:
        return repr(x.item())
    if x.size <= 6:
        return np.array2string(x, separator=", ", precision=4)
    return f"<array {x.shape}>"


def _default_validate_args() -> bool:
    return bool(getattr(sys.modules.get(_PACKAGE), "validate_args", True))


# --------------------------------------------------------------------------------------------
# parameter declarations


class ParamCheck:
    """A check of a parameter's values: a vectorised test and what it requires, in words.

    Parameters
    ----------
    test : callable
        ``test(x)`` returns a bool array, True where the float array ``x`` is acceptable
        (broadcastable to ``x``, e.g. one entry per row of the last axis).
    expected : str
        What the parameter must be, completing "``<name>`` must be ...".
    shown : callable, optional
        ``shown(x)`` gives the values named in the error (e.g. the sums of the rows); by
        default the parameter itself.
    """

    __slots__ = ("test", "expected", "shown")

    def __init__(self, test, expected, shown=None):
        self.test = test
        self.expected = expected
        self.shown = shown

    def __repr__(self):
        return f"ParamCheck({self.expected!r})"


FINITE = ParamCheck(np.isfinite, "finite")
POSITIVE = ParamCheck(lambda x: np.isfinite(x) & (x > 0), "positive and finite")
NONNEGATIVE = ParamCheck(lambda x: np.isfinite(x) & (x >= 0), "non-negative and finite")
PROBABILITY = ParamCheck(lambda x: (x >= 0) & (x <= 1), "in [0, 1]")
COUNT = ParamCheck(
    lambda x: np.isfinite(x) & (x >= 0) & _is_integer(x), "a non-negative integer"
)
NOT_NAN = ParamCheck(lambda x: ~np.isnan(x), "not NaN")


# --------------------------------------------------------------------------------------------
# base class


class Distribution:
    """Shared machinery: parameter conversion and checks, batch shape, support checks and repr.

    Subclasses declare their parameters in ``param_checks`` (name -> a :class:`ParamCheck`, a
    tuple of them, or None; in the order of the constructor) and pass them by keyword to
    ``Distribution.__init__``, which converts, checks and broadcasts them.
    """

    is_discrete = False
    num_states = None
    support = constraints.real
    #: The parameters, in order: name -> ParamCheck, tuple of ParamChecks, or None.
    param_checks: dict = {}
    #: Alternative parameters (exactly one is given, the others are None), e.g. probs/logits.
    one_of: tuple = ()
    #: Trailing event axes of a parameter (excluded from the batch shape); 0 when not listed.
    param_event_dims: dict = {}
    #: Names shown by ``repr`` (in order); None means the parameters of ``param_checks``.
    _repr_params: tuple | None = None

    def __init__(self, validate_args=None, **params):
        self.validate_args = (
            _default_validate_args() if validate_args is None else bool(validate_args)
        )
        self.batch_shape = ()
        self.event_shape = ()
        #: the alternative of ``one_of`` that was given (None without alternatives)
        self._alternative = None
        #: whether a parameter is a JAX array (then ``log_prob`` computes with JAX)
        self._traced = False
        if params or self.param_checks:
            self._set_params(params)

    # -- construction helpers ----------------------------------------------------------------

    def _name(self):
        return type(self).__name__

    def _set_params(self, params):
        """Convert, check and broadcast the declared parameters; store them as attributes."""
        if set(params) != set(self.param_checks):
            raise TypeError(
                f"{self._name()}: parameters {sorted(params)} given to Distribution.__init__ "
                f"do not match the declared {list(self.param_checks)}"
            )
        self._choose_alternative(params)
        values = {}
        for name in self.param_checks:
            x = params[name]
            values[name] = None if name in self.one_of and x is None else self._float(name, x)
            self._traced = self._traced or _is_jax(values[name])
            self._store_param(name, values[name])
        self._check_shapes()
        if self.validate_args:
            for name, checks in self.param_checks.items():
                x = values[name]
                if x is None or checks is None or _is_jax(x):  # JAX values are not known
                    continue
                for check in checks if isinstance(checks, tuple) else (checks,):
                    shown = x if check.shown is None else check.shown(x)
                    self._require(name, shown, check.test(x), check.expected)
        shapes = {}
        for name, x in values.items():
            if x is not None:
                k = self.param_event_dims.get(name, 0)
                label = f"{name}[..., {', '.join('0' * k)}]" if k else name
                shapes[label] = x.shape[: x.ndim - k]
        self.batch_shape = self._broadcast(**shapes)

    def _choose_alternative(self, params):
        """Exactly one of the ``one_of`` parameters must be given (a structural error)."""
        alts = self.one_of
        if not alts:
            return
        given = [n for n in alts if params[n] is not None]
        if len(given) != 1:
            if len(alts) == 2:
                got = "both" if given else "neither"
            else:
                got = sorted(given) or "none"
            names = ", ".join(alts[:-1]) + " or " + alts[-1]
            raise ValueError(f"{self._name()}: pass exactly one of {names}, got {got}")
        self._alternative = given[0]

    def _store_param(self, name, value):
        """Where a converted parameter goes (an attribute of its name by default)."""
        setattr(self, name, value)

    def _check_shapes(self):
        """Structural checks of the converted parameters' shapes (before their values)."""

    def _float(self, name, x):
        """Convert a parameter to a float array, with an error naming it.

        A JAX array stays one (a JAX float array: float64 inside :func:`mcem._jax.x64`)."""
        if _is_jax(x):
            return jax_namespace().np.asarray(x, dtype=float)
        try:
            return np.asarray(x, dtype=float)
        except (TypeError, ValueError) as e:
            if _contains_jax(x):  # a list of tracers
                return jax_namespace().np.asarray(x, dtype=float)
            raise ValueError(
                f"{self._name()}: {name} must be convertible to a float array, "
                f"got {type(x).__name__} {x!r} ({e})"
            ) from None

    def _broadcast(self, **shapes):
        """Broadcast named shapes; raise a ValueError naming the distribution and shapes."""
        try:
            return tuple(np.broadcast_shapes(*shapes.values()))
        except ValueError:
            desc = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
            raise ValueError(
                f"{self._name()}: parameter shapes do not broadcast: {desc}"
            ) from None

    def _require(self, name, x, ok, expected):
        """Raise ``ValueError`` unless ``ok`` (bool array) is True everywhere."""
        if not np.all(ok):
            raise ValueError(
                f"{self._name()}: {name} must be {expected}, "
                f"{_describe_bad(x, ~np.asarray(ok))}"
            )

    # -- generic helpers -----------------------------------------------------------------------

    def _ns(self, value=None):
        """The namespace of a computation on ``value`` and the parameters (JAX's when any is a
        JAX array; see :func:`mcem._jax.namespace`)."""
        if self._traced:
            return jax_namespace()
        return _NUMPY_NS if type(value) in _PLAIN else namespace(value)

    def _params_ns(self):
        """The namespace of the parameters (for derived quantities in constructors)."""
        return jax_namespace() if self._traced else _NUMPY_NS

    def _any_jax(self, *names):
        """Whether any of the named parameters is a JAX array (its values cannot be checked)."""
        return self._traced and any(_is_jax(getattr(self, n)) for n in names)

    def _full(self, x):
        """A fresh array of ``x`` broadcast to ``batch_shape + event_shape``."""
        return np.array(np.broadcast_to(x, self.batch_shape + self.event_shape), dtype=float)

    def _shape(self, sample_shape):
        return as_shape(sample_shape, "sample_shape") + self.batch_shape

    @staticmethod
    def _value(value, ns=None):
        """``value`` as a float array of the namespace ``ns`` (numpy by default)."""
        if ns is not None and ns.is_jax:
            return ns.np.asarray(value, dtype=float)
        return np.asarray(value, dtype=float)

    def _event_value(self, value, size, noun="entries", ns=None):
        """``value`` as floats with ``size`` ``noun`` on its last (event) axis, or a ValueError."""
        x = self._value(value, ns)
        if x.ndim < 1 or x.shape[-1] != size:
            raise ValueError(f"{type(self).__name__}.log_prob: value must have {size} {noun} on the last "
                             f"axis, got shape {x.shape}")
        return x

    # -- interface -----------------------------------------------------------------------------

    def log_prob(self, value):  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, rng, sample_shape=()):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def mean(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def variance(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def stddev(self):
        return np.sqrt(self.variance)

    # -- support of values ---------------------------------------------------------------------

    def support_mask(self, value):
        """Where ``value`` lies in the support: a bool array with one entry per element (per
        event when the distribution has event axes), broadcast against the parameters where
        the support depends on them.

        Agrees with :meth:`log_prob`: False exactly where ``log_prob`` returns ``-inf`` because
        the value lies outside the support (not because a probability parameter is 0 or 1).
        """
        x = np.asarray(value, dtype=float)
        with np.errstate(invalid="ignore"):
            ok = self.support.contains(x)
        n_event = len(self.event_shape)
        if n_event and self.support.elementwise:
            ok = np.all(ok, axis=tuple(range(np.ndim(ok) - n_event, np.ndim(ok))))
        return np.asarray(ok, dtype=bool)

    @property
    def support_text(self) -> str:
        """The support in words, e.g. ``"values in {0, 1}"`` or ``"positive values"``."""
        return _support_words(self.support)

    def _support_note(self, index) -> str:
        """Extra detail about the support at ``index`` (parameter-dependent supports)."""
        return ""

    #: The support for every value of the continuous parameters (a constraint), for
    #: distributions whose support moves with them (Uniform); None when it does not.
    _support_for_any_params = None

    def check_value(self, value, name="value", *, for_any_params=False):
        """Refuse values outside the support, naming ``name``, the first bad index and value.

        Raises ``TypeError`` when ``value`` is not numeric (strings, objects, complex numbers)
        and ``ValueError`` when an element (event) lies outside the support or the value does
        not end in the event shape. Vectorised: one pass over the values.

        With ``for_any_params=True`` only what no parameter value can change is checked: for
        Uniform(low, high), finiteness instead of ``low <= x <= high`` (data outside the bounds
        of the initial parameters are a matter of the starting point, not of the data). Integer
        parameters such as ``total_count`` are data, and are always checked.
        """
        arr = np.asarray(value)
        kind = arr.dtype.kind
        if kind not in "biuf":
            if kind == "c":
                what = "complex numbers"
            elif arr.ndim == 0:
                what = f"{type(value).__name__} {value!r}"
            else:
                what = f"an array of dtype {arr.dtype}"
            raise TypeError(
                f"{name}: {self._name()} needs real numbers ({self.support_text}); got {what}"
            )
        ev = tuple(self.event_shape)
        if ev and arr.shape[arr.ndim - len(ev):] != ev:
            raise ValueError(
                f"{name}: {self._name()} needs values whose last axes have the event shape {ev}, "
                f"got shape {arr.shape}"
            )
        free = self._support_for_any_params if for_any_params else None
        if free is not None:
            ok = np.asarray(free.contains(np.asarray(arr, dtype=float)), dtype=bool)
            text, note = _support_words(free), (lambda idx: "")
        else:
            ok = self.support_mask(arr)
            text, note = self.support_text, self._support_note
        if ok.all():
            return
        flat = int(np.argmin(ok.ravel()))  # the first False
        idx = tuple(int(i) for i in np.unravel_index(flat, ok.shape))
        try:
            shown = np.broadcast_to(arr, ok.shape + ev)[idx]
        except ValueError:  # pragma: no cover - value smaller than the parameters' shape
            shown = arr
        where = f" at index {idx}" if idx else ""
        raise ValueError(
            f"{name}: {self._name()} needs {text}; got {_fmt_value(shown)}{where}{note(idx)}"
        )

    def _repr_value(self, name):
        """The value of parameter ``name`` shown by ``repr`` (None: not shown)."""
        return getattr(self, name, None)

    def __repr__(self):
        names = tuple(self.param_checks) if self._repr_params is None else self._repr_params
        shown = {k: self._repr_value(k) for k in names}
        parts = [f"{k}={_fmt_param(v)}" for k, v in shown.items() if v is not None]
        if self.batch_shape:
            parts.append(f"batch_shape={self.batch_shape}")
        if self.event_shape:
            parts.append(f"event_shape={self.event_shape}")
        return f"{self._name()}({', '.join(parts)})"

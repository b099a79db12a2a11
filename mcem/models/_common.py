"""Pieces shared by the ready-made models: the :class:`mcem.Model` built from module-level
functions, and a one-entry memo.

Every ready model is made of module-level functions with the signatures of :class:`mcem.Model`
(``log_joint(theta, z, data)``, ...) that read the observations from ``model.data``. What a
constructor derives from the data once (indices, constants, options) and its memos (a value
computed once per parameter value and reused across the many calls at that value, an MCMC sweep
for example) are bound as their first argument with :func:`functools.partial` (:func:`bind`), so
``model.data`` holds what it always held. Both pickle with the standard library, so a ready model
can be sent to a process pool or saved with :mod:`pickle`.
"""

from __future__ import annotations

import functools

import numpy as np

from ..core import Model

__all__ = ["Memo", "bind", "float_matrix", "float_series", "ready_model"]

#: The keywords of :class:`mcem.Model` a ready model's functions fill, by their names.
_ROLES = (
    "log_joint",
    "exact_estep",
    "mstep",
    "sufficient_stats",
    "loglik",
    "posterior_sampler",
    "grad_params",
    "log_joint_total",
    "value_and_grad",
    "unit_scores",
    "hessian",
)


def _role(fn) -> str:
    """The Model keyword of ``fn``: its name without the leading underscore."""
    inner = fn.func if isinstance(fn, functools.partial) else fn
    role = getattr(inner, "__name__", "").lstrip("_")
    qualname = getattr(inner, "__qualname__", "")
    if role not in _ROLES or qualname != inner.__name__:  # a method, a closure or a lambda
        raise TypeError(
            f"a ready model's functions must be module-level functions named _<role> with role one of "
            f"{list(_ROLES)} (or partials of them), got {fn!r}"
        )
    return role


def ready_model(*functions, **declarations) -> Model:
    """The :class:`mcem.Model` of a ready-made model.

    Parameters
    ----------
    *functions : callable
        Module-level functions named after the Model keyword they fill with a leading
        underscore (``_log_joint``, ``_exact_estep``, ``_mstep``, ...), or :func:`functools.partial`
        objects of such functions; ``_log_joint`` is required.
    **declarations
        The other keywords of :class:`mcem.Model`: ``params``, ``latents``, ``data``, ``init``,
        ``n_obs``, ``conditionals``, ``name``, ...
    """
    roles = {}
    for fn in functions:
        role = _role(fn)
        if role in roles:
            raise TypeError(f"ready_model: two functions for {role!r}: {roles[role]!r} and {fn!r}")
        roles[role] = fn
    log_joint = roles.pop("log_joint")
    return Model(log_joint, **roles, **declarations)


def float_matrix(X, name="X") -> np.ndarray:
    """A private float copy of the 2-D numeric array ``X`` (the user's array is never written);
    TypeError for a non-numeric array, ValueError for another number of dimensions."""
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array of shape (n_samples, n_features), got dtype {arr.dtype}")
    arr = np.array(arr, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    return arr


def bind(first, *functions) -> tuple:
    """``functools.partial(fn, first)`` for each of ``functions``: ``first`` (a model's derived
    pieces) becomes their first argument."""
    return tuple(functools.partial(fn, first) for fn in functions)


class Memo:
    """``fn(theta, data, *extra)`` remembered for the last ``theta`` seen.

    The key is the shape and bytes (as float) of ``theta[k]`` for each ``k`` in ``keys`` and the
    identity of ``data``, so a different parameter value (or data) never gets a stale result.
    ``fn`` is a module-level function, so the memo pickles; a copy made by :mod:`pickle` starts
    empty. Key and value are stored together, so a reader never sees the key of one value with
    another value.
    """

    def __init__(self, fn, keys):
        self.fn = fn
        self.keys = tuple(keys)
        self._last = None

    def __call__(self, theta, data, *extra):
        key = []
        for k in self.keys:
            a = np.asarray(theta[k], dtype=float)
            key += (a.shape, a.tobytes())
        last = self._last
        if last is not None and last[1] is data and last[0] == key:  # lists: element by element
            return last[2]
        value = self.fn(theta, data, *extra)
        self._last = (key, data, value)
        return value

    def __getstate__(self):
        return {"fn": self.fn, "keys": self.keys}

    def __setstate__(self, state):
        self.fn, self.keys, self._last = state["fn"], state["keys"], None

    def __repr__(self):
        return f"Memo({getattr(self.fn, '__name__', self.fn)!r}, keys={list(self.keys)})"


def float_series(y, name="y", minimum=2) -> np.ndarray:
    """A private float copy of the 1-D real, finite series ``y`` with at least ``minimum``
    values (a time series: one observation per time step); TypeError for a non-numeric or
    complex array, ValueError otherwise."""
    arr = np.asarray(y)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array of shape (T,), got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got a complex array")
    arr = np.array(arr, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one observation per time step), got shape {arr.shape}")
    if arr.shape[0] < minimum:
        raise ValueError(f"{name} must hold at least {minimum} observations, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} must be finite, got {name}[{bad}] = {arr[bad]}")
    return arr

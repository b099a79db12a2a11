"""Argument checks shared by the public entry points.

Every message names the argument, what was expected and what arrived.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np


def describe_array(v) -> str:
    """A short description of an array for error messages."""
    v = np.asarray(v)
    if v.size <= 6:
        return f"{v.tolist()!r}"
    bad = ""
    if np.issubdtype(v.dtype, np.number):
        n_nan = int(np.isnan(v).sum()) if np.issubdtype(v.dtype, np.floating) else 0
        bad = f", {n_nan} NaN" if n_nan else ""
    return f"array of shape {v.shape} and dtype {v.dtype}{bad}"


def as_generator(rng, name="rng") -> np.random.Generator:
    """Normalise ``rng`` (None, int or Generator) to a numpy Generator."""
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng(rng)
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"{name} must be a non-negative int seed, got {rng}")
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    raise TypeError(
        f"{name} must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}"
    )


def check_positive_int(value, name, minimum=1) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_positive_float(value, name, allow_zero=False) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        need = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {need} number, got {value!r}")
    return v


def check_choice(value, name, choices):
    """``value`` if it is one of ``choices`` (strings); a list, a number or another string is refused."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {sorted(choices)} (a string), got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def as_real_array(value, name) -> np.ndarray:
    """``value`` as a new float array; ``TypeError`` naming ``name`` for anything not real.

    Complex numbers are refused (converting them would drop the imaginary part), and so are
    strings and objects that are not numbers.
    """
    try:
        arr = None if value is None else np.asarray(value)
    except (TypeError, ValueError):
        arr = None
    kind = None if arr is None else arr.dtype.kind
    if kind == "c":
        raise TypeError(
            f"{name} must be real (a float array), got complex {describe_array(arr)}"
        )
    if kind in ("b", "i", "u", "f"):
        return np.array(arr, dtype=float)
    if kind == "O":
        try:
            return np.array(arr, dtype=float)
        except (TypeError, ValueError):
            pass
    raise TypeError(
        f"{name} must be numeric (a float array), got {type(value).__name__} {value!r}"
    )


def _first_not_str(arr):
    """Index and value of the first element of an object array that is not a str, or None."""
    try:
        is_str = np.asarray(arr == arr.astype(str), dtype=bool)  # a C loop of Python ==
        if is_str.shape != arr.shape:
            raise ValueError
    except Exception:  # elements that do not convert or compare (arrays, ...)
        is_str = np.zeros(arr.shape, dtype=bool)
    if is_str.all():
        return None
    flat = int(np.argmin(is_str.ravel()))
    idx = tuple(int(i) for i in np.unravel_index(flat, arr.shape))
    return idx, arr[idx]


def _refuse_mixed(name, found, what):
    idx, v = found
    raise TypeError(
        f"{name} must be a numeric array (or an array of strings), got {what} "
        f"({type(v).__name__} {v!r} at index {idx}); convert it, e.g. with "
        "np.asarray(..., dtype=float)"
    )


def _check_array(a, name):
    arr = np.array(a, copy=True)
    if arr.dtype == object:
        # numbers, strings and other objects mixed in one array: refuse unless all strings
        found = _first_not_str(arr) if arr.size else None
        if found is not None:
            _refuse_mixed(name, found, "an array of dtype object")
        arr.flags.writeable = False
        return arr
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected at least one value")
    if np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
        if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
            n_nan = int(np.isnan(arr).sum())
            n_inf = int(np.isinf(arr).sum())
            raise ValueError(
                f"{name} must be finite, got {n_nan} NaN and {n_inf} inf value(s) "
                f"in an array of shape {arr.shape}"
            )
    arr.flags.writeable = False
    return arr


def check_data(data, name="data"):
    """Read-only copies of the numeric arrays in ``data`` (an array, a dict, a tuple or a list).

    NaN and inf raise a ValueError naming the entry; scalars and other objects pass unchanged.
    Arrays of dtype object, and lists that numpy would turn into strings, raise a TypeError
    naming the entry unless every element is a string (labels); a list whose elements numpy
    cannot put in one array is checked element by element.
    """
    if data is None:
        return None
    if isinstance(data, np.ndarray):
        return _check_array(data, name)
    if isinstance(data, Mapping):
        return {k: check_data(v, f"{name}[{k!r}]") for k, v in data.items()}
    if isinstance(data, tuple):
        return tuple(check_data(v, f"{name}[{i}]") for i, v in enumerate(data))
    if isinstance(data, list):
        try:
            arr = np.asarray(data)
        except ValueError:
            return [check_data(v, f"{name}[{i}]") for i, v in enumerate(data)]
        if arr.dtype.kind in "US":  # numbers turned into strings when mixed with strings
            found = _first_not_str(np.array(data, dtype=object))
            if found is not None:
                _refuse_mixed(name, found, "a list mixing strings with other values")
        if arr.dtype != object:
            return _check_array(arr, name)
        return [check_data(v, f"{name}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, numbers.Number) and not isinstance(data, bool):
        if isinstance(data, numbers.Real) and not np.isfinite(data):
            raise ValueError(f"{name} must be finite, got {data!r}")
    return data


def with_context(exc: BaseException, message: str) -> BaseException:
    """The same kind of exception with ``message`` in front, or ``exc`` itself when its type
    cannot be built from one string (so the user's real error is never hidden)."""
    try:
        new = type(exc)(f"{message}: {exc}")
    except Exception:
        return exc
    return new


def check_bool(value, name) -> bool:
    """``value`` as a bool; numpy bools pass, strings and numbers are refused."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def check_fraction(value, name) -> float:
    """A real number strictly inside (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in (0, 1), got {type(value).__name__} {value!r}")
    v = float(value)
    if not (0.0 < v < 1.0):
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return v


def check_mapping(value, name, allow_none=True, what="options") -> dict:
    """A dict (of ``what``: options by default); None gives an empty dict when allowed."""
    if value is None and allow_none:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of {what}{' or None' if allow_none else ''}, "
                        f"got {type(value).__name__} {value!r}")
    return dict(value)


def conform(value, constraint, shape, where, *, shape_words="must broadcast to shape", show=repr, owned=False):
    """``value`` broadcast to ``shape`` (a copy) and checked against ``constraint``; the messages
    start with ``where`` (e.g. ``"theta0['mu']"``, ``"param 'a': init"``). With ``owned=True``
    (``value`` is a new array nobody else holds, such as :func:`as_real_array`'s) a value that
    already has the shape is returned itself."""
    value = np.asarray(value)
    if not (owned and value.shape == tuple(shape)):
        try:
            value = np.broadcast_to(value, shape).copy()
        except ValueError:
            raise ValueError(f"{where} {shape_words} {shape}, got shape {value.shape}") from None
    if not constraint.check(value):
        raise ValueError(f"{where} must lie in {constraint!r}, got {show(value)}")
    return value


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
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        need = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {need} number, got {value!r}")
    return v


def check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def _check_array(a, name):
    arr = np.array(a, copy=True)
    if arr.dtype == object:
        return a
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

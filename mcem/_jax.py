"""JAX, imported lazily, and the array namespace of a computation.

``import mcem`` never imports JAX: the model language's compiler (:mod:`mcem.lang`) does, the
first time a model is built. Every JAX computation of the package runs inside :func:`x64`
(``jax.enable_x64(True)`` as a context manager), so it is float64 without touching the user's
global JAX configuration; a jitted function called outside that context would silently
compute in float32.

:func:`namespace` picks the array namespace of a computation from its inputs: numpy and
scipy.special for numpy inputs, jax.numpy and jax.scipy.special as soon as one input is a JAX
array (a tracer inside ``jit``/``grad`` included). Distributions and constraints use it so that
one implementation serves both the numpy path and the compiled (traced) path.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from types import SimpleNamespace

import numpy
import scipy.special

__all__ = ["is_jax", "namespace", "numpy_namespace", "jax_namespace", "jax", "x64", "available"]

_NUMPY_NS = SimpleNamespace(np=numpy, special=scipy.special, is_jax=False)
_JAX_NS = None


def is_jax(x) -> bool:
    """Whether ``x`` is a JAX array or tracer (checked without importing JAX)."""
    mod = type(x).__module__
    return mod.startswith(("jax", "jaxlib")) and "jax" in sys.modules


def numpy_namespace():
    """``SimpleNamespace(np=numpy, special=scipy.special, is_jax=False)``."""
    return _NUMPY_NS


def jax_namespace():
    """``SimpleNamespace(np=jax.numpy, special=jax.scipy.special, is_jax=True, jax=jax)``."""
    global _JAX_NS
    if _JAX_NS is None:
        j = jax()
        _JAX_NS = SimpleNamespace(
            np=importlib.import_module("jax.numpy"),
            special=importlib.import_module("jax.scipy.special"),
            is_jax=True,
            jax=j,
        )
    return _JAX_NS


def namespace(*xs):
    """The namespace of a computation on ``xs``: JAX's when any of them is a JAX array."""
    for x in xs:
        if x is not None and is_jax(x):
            return jax_namespace()
    return numpy_namespace()


def available() -> bool:
    """Whether JAX can be imported."""
    try:
        jax()
    except ImportError:
        return False
    return True


def jax():
    """The ``jax`` module (imported on first use)."""
    return importlib.import_module("jax")


@contextlib.contextmanager
def x64():
    """Float64 JAX for the duration of the block, whatever the user's global configuration."""
    j = jax()
    ctx = getattr(j, "enable_x64", None)
    if ctx is None:  # releases before the context manager moved to the top level
        ctx = importlib.import_module("jax.experimental").enable_x64
    with ctx(True):
        yield

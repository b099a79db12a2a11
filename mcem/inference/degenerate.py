"""Degenerate fits: the parameters of an estimate at the edge of their constraint.

:func:`degeneracy` names every parameter element (event) at the edge of its constraint's set,
by the criteria of :meth:`mcem.constraints.Constraint.edge` (see :mod:`mcem.boundary`); the
standard errors (:func:`mcem.inference.standard_errors`) are NaN for those elements.
"""

from __future__ import annotations

import numpy as np

from ..core import Model

__all__ = ["degeneracy"]


def _label(name, idx):
    return name if idx == () else f"{name}[{','.join(map(str, idx))}]"


def _check_param_values(model, theta, what="theta"):
    """Float arrays of every parameter, of the declared shapes (values are not checked)."""
    if not isinstance(theta, dict):
        raise TypeError(f"{what} must be a dict of parameter arrays, got {type(theta).__name__}")
    missing = [n for n in model.param_names if n not in theta]
    if missing:
        raise ValueError(f"{what} is missing parameter(s) {missing}; expected all of {list(model.param_names)}")
    out = {}
    for n in model.param_names:
        try:
            v = np.asarray(theta[n], dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f"{what}[{n!r}] must be numeric, got {type(theta[n]).__name__}") from None
        shape = model.params[n].shape
        if v.shape != shape:
            try:
                v = np.broadcast_to(v, shape)
            except ValueError:
                raise ValueError(f"{what}[{n!r}] must have shape {shape}, got shape {v.shape}") from None
        out[n] = v
    return out


def _edge_elements(model, theta):
    """[(parameter name, index, reason)] for every parameter element (event) at its edge."""
    out = []
    for n, v in _check_param_values(model, theta).items():
        c = model.params[n]
        for idx, reason in c.edge(v):
            out.append((n, idx, reason))
    return out


def degeneracy(model, theta) -> list:
    """Parameters at the edge of their constraint: one sentence per element, empty when none.

    A collapsed mixture component (a variance near 0), an empty component (a weight near 0), a
    nearly singular covariance matrix or a value at an end of its interval: at such a point the
    fit is degenerate (the likelihood may be unbounded there) and standard errors do not apply.
    The criteria are those of :meth:`mcem.constraints.Constraint.edge` (see
    :mod:`mcem.constraints`); non-finite values are reported too.

    Parameters
    ----------
    model : Model
    theta : dict
        Parameter values of the declared shapes (they need not lie inside their constraints).

    Returns
    -------
    list of str
        E.g. ``["covariances[1] is at the edge of positive_definite(2, batch=(2,)): smallest
        eigenvalue 1.2e-14 (condition number 3e+13)"]``.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
    out = []
    for n, idx, reason in _edge_elements(model, theta):
        label = _label(n, idx)
        if reason.startswith("not finite"):
            out.append(f"{label} is {reason}")
        else:
            out.append(f"{label} is at the edge of {model.params[n]!r}: {reason}")
    return out


def _flat_index(model):
    """Parameter name -> (offset, shape) in the flat constrained vector."""
    out, off = {}, 0
    for n in model.param_names:
        shape = model.params[n].shape
        out[n] = (off, shape)
        off += int(np.prod(shape, dtype=int))
    return out


def _edge_flat(model, edges):
    """Flat constrained indices covered by edge elements (a matrix event covers its entries)."""
    where = _flat_index(model)
    hit = set()
    for n, idx, _ in edges:
        off, shape = where[n]
        sub = np.zeros(shape, dtype=bool)
        sub[idx] = True
        hit.update((off + np.flatnonzero(sub.ravel())).tolist())
    return sorted(hit)

"""The row-subset guess: restricting a compiled model to a block of units, found from its data.

Used by the sharded E step and unit minibatches (:meth:`mcem.Model.subset`). The guess is
checked there (the blocks must add up to the whole model), so a wrong guess is refused, not used.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np

__all__ = ["row_subset"]


def row_subset(fn, data, trace, unit_latents, shapes, compile_block):
    """A subset function found from the data, or None when the pattern is not recognised.

    Recognised: one unit latent whose length is an int argument (``n_groups``), and every
    observation tied to its units by one and the same index argument (``unit_index=group``).
    A block then keeps the rows of that index's units (every array argument as long as the
    index), the units' entries of unit-level arrays (as long as the latent) and renumbers the
    index; other arguments are kept. ``compile_block(fn, data)`` compiles a block's model.
    The sharded E step and unit minibatches check that the blocks add up to the whole model,
    so a wrong guess is refused, not used.
    """
    try:
        return _find_row_subset(fn, data, trace, unit_latents, shapes, compile_block)
    except Exception:  # a guess, never a reason for a model not to compile
        return None


def _find_row_subset(fn, data, trace, unit_latents, shapes, compile_block):
    if len(unit_latents) != 1 or not isinstance(data, Mapping):
        return None
    n_units = shapes[unit_latents[0]][0]
    keys = set()
    for st in trace.sites.values():
        if st.kind != "observe":
            continue
        found = [k for k, v in data.items() if st.unit_index is not None and v is st.unit_index]
        if len(found) != 1:
            return None
        keys.add(found[0])
    counts = [k for k, v in data.items()
              if isinstance(v, numbers.Integral) and not isinstance(v, bool) and v == n_units]
    if len(keys) != 1 or len(counts) != 1:
        return None
    index_key, count_key = keys.pop(), counts[0]
    if not isinstance(data[index_key], np.ndarray) or data[index_key].ndim != 1:
        return None
    n_rows = data[index_key].shape[0]

    def length(v):
        return v.shape[0] if isinstance(v, np.ndarray) and v.ndim >= 1 else None

    rows_keys = [k for k, v in data.items() if k != index_key and length(v) == n_rows]
    unit_keys = [k for k, v in data.items() if length(v) == n_units and k not in rows_keys and k != index_key]
    if n_rows == n_units and not np.array_equal(data[index_key], np.arange(n_units)):
        return None  # rows and units alike in length but not in order: ambiguous

    def subset(units):
        index = data[index_key]
        rows = np.isin(index, units)
        new = dict(data)  # other arguments shared, read-only as they are
        new.update({k: data[k][rows] for k in rows_keys})
        new.update({k: data[k][units] for k in unit_keys})
        new[index_key] = np.searchsorted(units, index[rows])
        new[count_key] = len(units)
        for k in (*rows_keys, *unit_keys, index_key):
            new[k].flags.writeable = False  # already checked: no copy, and empty blocks allowed
        return compile_block(fn, new)

    return subset

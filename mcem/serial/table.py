"""A :class:`~mcem.History` as a table of columns (the ``"history"`` node of saved results).

The node holds ``n_rows``, ``layout`` (one ``[column name node, spec]`` per column),
``key_orders`` (the distinct orders of a row's keys, as column indices) and ``row_order`` (each
row's index into ``key_orders``). A column's spec has ``missing`` (the rows lacking it) and
``kind``:

* ``"param_paths"`` (the ``params`` column when every row has the same parameter names, shapes
  and dtypes): ``names`` and ``keys``, one archive entry per parameter, its path stacked over the
  rows (shape ``(n_rows, *shape)``);
* ``"array"``: one archive entry ``key`` stacking the values of a column of one ``type``
  (``"bool"``, ``"int"``, ``"float"``: Python values; ``"numpy"``: numpy scalars; ``"ndarray"``:
  equally shaped arrays), absent rows filled with zeros;
* ``"json"``: ``values``, one encoded node per present row.

Values come back with the types they had (a column of Python bools as Python bools).
The encoder and decoder (:mod:`mcem.serial.codec`) are passed in: this module only lays out rows.
"""

from __future__ import annotations

import numpy as np

from ..history import History
from .spelling import MalformedNode, at

__all__ = ["encode_history", "decode_history"]

_CAST = {"bool": bool, "int": int, "float": float}


def _param_paths(enc, rows, missing):
    """Stack each parameter's path when every row has the same names, shapes and dtypes."""
    if missing or not rows or not all(isinstance(r["params"], dict) for r in rows):
        return None
    names = list(rows[0]["params"])
    if any(list(r["params"]) != names for r in rows):
        return None
    paths = []
    for name in names:
        vals = [r["params"][name] for r in rows]
        if not all(type(v) is np.ndarray for v in vals):
            return None
        if len({(v.dtype, v.shape) for v in vals}) != 1 or vals[0].dtype.hasobject:
            return None
        paths.append(np.stack(vals))
    keys = [enc.entry(p, "params", name) for name, p in zip(names, paths, strict=True)]
    return {"kind": "param_paths", "names": names, "keys": keys}


def _column(enc, present, missing, n, where, name) -> dict:
    """A column: one typed array (absent rows filled) or, failing that, encoded values."""
    types = {type(v) for v in present}
    arr, typ = None, None
    if present and len(types) == 1:
        (t,) = types
        if t is bool:
            arr, typ = np.array(present, dtype=bool), "bool"
        elif t is int and all(-(2**63) <= v < 2**63 for v in present):
            arr, typ = np.array(present, dtype=np.int64), "int"
        elif t is float:
            arr, typ = np.array(present, dtype=np.float64), "float"
        elif issubclass(t, np.generic) and np.dtype(t).kind in "biufc":
            arr, typ = np.array(present), "numpy"
        elif t is np.ndarray:
            if len({(v.dtype, v.shape) for v in present}) == 1 and not present[0].dtype.hasobject:
                arr, typ = np.stack(present), "ndarray"
    if arr is None:
        sub = (name,) if isinstance(name, str) else ()
        return {"kind": "json", "values": [enc.child(v, where, *sub, str(i)) for i, v in enumerate(present)]}
    if missing:  # fill absent rows so that the column lines up with the rows
        full = np.zeros((n,) + arr.shape[1:], dtype=arr.dtype)
        gone = set(missing)
        full[[i for i in range(n) if i not in gone]] = arr
        arr = full
    return {"kind": "array", "type": typ, "key": enc.entry(arr, name)}


def encode_history(enc, h: History, where: str) -> dict:
    """The table node of ``h``, found at ``where``; its arrays go to ``enc``."""
    rows = h.rows
    n = len(rows)
    columns = h.columns
    orders, order_idx = [], []
    for r in rows:
        o = [columns.index(k) for k in r]
        if o not in orders:
            orders.append(o)
        order_idx.append(orders.index(o))
    layout = []
    for c in columns:
        missing = [i for i, r in enumerate(rows) if c not in r]
        present = [r[c] for r in rows if c in r]
        spec = _param_paths(enc, rows, missing) if c == "params" else None
        if spec is None:
            spec = _column(enc, present, missing, n, f"{where}[{c!r}]", c)
        spec["missing"] = missing
        layout.append([enc.child(c, f"{where} column", "#col"), spec])
    return enc.spelling.history(n, layout, orders, order_idx)


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _rows_of(a, n, where):
    if a.shape[:1] != (n,):
        raise MalformedNode(f"{where} has {a.shape[:1]} rows in its archive entry, expected ({n},)")
    return a


def _column_values(dec, spec, n, where) -> dict:
    """Row index -> value of one column."""
    missing = spec.get("missing")
    if not (isinstance(missing, list) and all(_count(i) and i < n for i in missing)):
        raise MalformedNode(f"{where} lists malformed missing rows")
    gone = set(missing)
    present = [i for i in range(n) if i not in gone]
    kind = spec.get("kind")
    if kind == "param_paths":
        names, keys = spec.get("names"), spec.get("keys")
        if not (isinstance(names, list) and isinstance(keys, list) and len(names) == len(keys)):
            raise MalformedNode(f"{where} is a malformed parameter-path column")
        paths = [_rows_of(dec.entry(k, where), n, where) for k in keys]
        return {i: {name: np.array(p[i]) for name, p in zip(names, paths, strict=True)} for i in present}
    if kind == "array":
        a = _rows_of(dec.entry(spec.get("key"), where), n, where)
        typ = spec.get("type")
        if typ == "ndarray":
            return {i: np.array(a[i]) for i in present}
        if typ == "numpy":
            return {i: a[i] for i in present}
        if typ in _CAST:
            cast = _CAST[typ]
            return {i: cast(a[i]) for i in present}
        raise MalformedNode(f"{where} is an array column of unknown type {typ!r}")
    if kind == "json":
        values = spec.get("values")
        if not isinstance(values, list) or len(values) != len(present):
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise MalformedNode(f"{where}: {got} values for {len(present)} rows")
        return {i: dec.unpack(v, f"{where}[{i}]") for i, v in zip(present, values, strict=True)}
    raise MalformedNode(f"{where} is a column of unknown kind {kind!r}")


def decode_history(dec, node: dict, where: str) -> History:
    """The :class:`~mcem.History` a table node describes (arrays from ``dec``)."""
    n, layout = node.get("n_rows"), node.get("layout")
    orders, row_order = node.get("key_orders"), node.get("row_order")
    if not (_count(n) and isinstance(layout, list) and isinstance(orders, list) and isinstance(row_order, list)):
        raise MalformedNode(f"{at(where)} is a malformed history node")
    cols, values = [], []
    for j, item in enumerate(layout):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)):
            raise MalformedNode(f"{at(where)} has a malformed column {j}")
        c = dec.unpack(item[0], f"{where} column {j}")
        if isinstance(c, list | dict):
            raise MalformedNode(f"{at(where)}: column {j} is named by a {type(c).__name__}")
        cols.append(c)
        values.append(_column_values(dec, item[1], n, f"{where}[{c!r}]"))
    if len(row_order) != n:
        raise MalformedNode(f"{at(where)}: its row order lists {len(row_order)} rows, expected {n}")
    for o in orders:
        if not (isinstance(o, list) and all(_count(j) and j < len(cols) for j in o)):
            raise MalformedNode(f"{at(where)} has a malformed key order")
    rows = []
    for i, k in enumerate(row_order):
        if not (_count(k) and k < len(orders)):
            raise MalformedNode(f"{at(where)}: row {i} has no key order")
        row = {cols[j]: values[j][i] for j in orders[k] if i in values[j]}
        if len(row) != len(orders[k]) or len(row) != sum(i in v for v in values):
            raise MalformedNode(f"{at(where)}: row {i}: its key order disagrees with the columns")
        rows.append(row)
    return History(rows)

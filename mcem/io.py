"""Saving and loading fit results without pickle, and conversion to an ArviZ ``DataTree``.

File format (``"mcem-result/1"``)
---------------------------------
:func:`save_result` writes one ``.npz`` archive (:func:`numpy.savez_compressed`) that
:func:`numpy.load` opens with ``allow_pickle=False``:

* every array of the result is one entry: the final parameters (``params/<name>``), the latent
  draws of the last E step (``draws/<name>``, shape ``(chain, draw, *latent_shape)``), the stacked
  parameter paths of the history (``history/params/<name>``, shape ``(n_rows, *shape)``) and its
  numeric columns (``history/<column>``, one value per row); any other array or numpy scalar is
  an entry too. Names that are not plain ``[A-Za-z0-9_.-]`` get a generated key.
* the entry ``__meta__.json`` is a ``uint8`` array holding a UTF-8 JSON document with the format
  (``"format": "mcem-result"``, ``"version": "mcem-result/1"``), every scalar, string and setting,
  the history layout (columns, their types, rows lacking a value, each row's key order), the dtype
  and shape of every array entry, ``"lossy"``: the notes on values converted with ``repr``, and,
  when the result carries its model (a result of :func:`mcem.fit`), ``"model"``: the model's
  fingerprint (name, parameter and latent declarations, SHA-256 of the data; see
  :mod:`mcem.serial`), which :func:`load_result` compares with the ``model=`` it is given.

Values are stored exactly: Python ``bool``/``int``/``float``/``str``/``None``, lists, tuples,
dicts (any keys of these types) and non-object numpy arrays and scalars (dtype and shape kept) come
back equal and of the same type; a history column of Python bools comes back as Python bools.
Anything else (a function, an arbitrary object, an object array) cannot be stored without pickle:
:func:`save_result` stores its ``repr`` string instead, records a note in ``"lossy"`` naming where
it was (for example ``settings['sampler_options']['proposal']``) and issues a ``UserWarning``;
:func:`load_result` returns that string.

A file is written atomically (a temporary file ``.<name>.<12 hex digits>.tmp`` in the same
directory, flushed and fsynced, then ``os.replace``), so an interrupted save never leaves a
half-written result under the target name; a later save of the same file removes the temporary
files a killed save of it left behind.
:func:`load_result` checks the archive's CRCs, the format, the version and every array's dtype and
shape against the metadata, and raises ``ValueError`` naming the file and the problem rather than
return a wrong result.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import math
import os
import re
import secrets
import stat
import warnings
import zipfile
from collections.abc import Mapping

import numpy as np

from .result import FitResult, History
from .serial import fingerprint_differences, model_fingerprint

__all__ = ["save_result", "load_result", "to_datatree", "FORMAT", "VERSION"]

FORMAT = "mcem-result"
VERSION = "mcem-result/1"
META_KEY = "__meta__.json"

_SAFE = re.compile(r"[A-Za-z0-9_.\-]{1,80}")
_RESERVED = {META_KEY, "file", "allow_pickle", "args", "kwds"}  # savez keywords and the meta entry
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _type_name(v) -> str:
    t = type(v)
    return f"{t.__module__}.{t.__qualname__}"


def _plain_array(a: np.ndarray) -> bool:
    return not a.dtype.hasobject


# --------------------------------------------------------------------------------------------
# encoding


class _Encoder:
    """Turns a result into a JSON-able tree plus a dict of arrays (the npz entries)."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self.lossy: list[dict] = []

    def key(self, prefix: str, name) -> str:
        leaf = name if isinstance(name, str) and _SAFE.fullmatch(name) else "#"
        base = f"{prefix}/{leaf}" if prefix else leaf
        k, n = base, 1
        while k in self.arrays or k in _RESERVED:
            k, n = f"{base}~{n}", n + 1
        return k

    def add(self, prefix, name, arr: np.ndarray) -> str:
        k = self.key(prefix, name)
        self.arrays[k] = np.ascontiguousarray(arr) if arr.ndim else arr
        return k

    def repr_node(self, v, where: str, why: str) -> dict:
        r = repr(v)
        self.lossy.append({"where": where, "type": _type_name(v), "repr": r, "why": why})
        return {"$t": "repr", "type": _type_name(v), "v": r}

    def enc(self, v, where: str, prefix: str, name):
        """Encode ``v`` (found at ``where``; arrays go to ``prefix/name``)."""
        if v is None or isinstance(v, bool):
            return v
        if isinstance(v, str):
            return str(v)
        if isinstance(v, np.ndarray | np.generic):
            a = np.asarray(v)
            if not _plain_array(a):
                return self.repr_node(v, where, "object arrays need pickle")
            node = {"$t": "array", "key": self.add(prefix, name, a)}
            if isinstance(v, np.generic):
                node["scalar"] = True
            return node
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            v = float(v)
            if math.isfinite(v):
                return v
            return {"$t": "float", "v": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
        if isinstance(v, complex):
            return {"$t": "complex", "re": self.enc(v.real, where, prefix, name),
                    "im": self.enc(v.imag, where, prefix, name)}
        if isinstance(v, History):
            return self.history(v, where, f"{prefix}/{name}" if prefix else str(name))
        if isinstance(v, list | tuple):
            sub = f"{prefix}/{name}" if prefix else str(name)
            items = [self.enc(x, f"{where}[{i}]", sub, str(i)) for i, x in enumerate(v)]
            return items if isinstance(v, list) else {"$t": "tuple", "items": items}
        if isinstance(v, Mapping):
            sub = f"{prefix}/{name}" if prefix else str(name)
            keys, vals = [], []
            for k, x in v.items():
                if k is not None and not isinstance(k, str | int | float | bool | tuple):
                    raise TypeError(f"{where}: cannot store a dict key of type {type(k).__name__}: {k!r}")
                keys.append(self.enc(k, f"{where} key", sub, "#key"))
                vals.append(self.enc(x, f"{where}[{k!r}]", sub, k))
            return {"$t": "dict", "keys": keys, "values": vals}
        return self.repr_node(v, where, "not storable without pickle")

    # -- history -------------------------------------------------------------------------------

    def history(self, h: History, where: str, prefix: str) -> dict:
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
            spec = None
            if c == "params":
                spec = self.param_paths(rows, missing, prefix)
            if spec is None:
                spec = self.column(present, missing, n, f"{where}[{c!r}]", prefix, c)
            spec["missing"] = missing
            layout.append([self.enc(c, f"{where} column", prefix, "#col"), spec])
        return {"$t": "history", "n_rows": n, "layout": layout, "key_orders": orders,
                "row_order": order_idx}

    def param_paths(self, rows, missing, prefix):
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
            if len({(v.dtype, v.shape) for v in vals}) != 1 or not _plain_array(vals[0]):
                return None
            paths.append(np.stack(vals))
        keys = [self.add(f"{prefix}/params", name, p) for name, p in zip(names, paths, strict=True)]
        return {"kind": "param_paths", "names": names, "keys": keys}

    def column(self, present, missing, n, where, prefix, name) -> dict:
        """A history column: one typed array (absent rows filled) or, failing that, JSON values."""
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
                if len({(v.dtype, v.shape) for v in present}) == 1 and _plain_array(present[0]):
                    arr, typ = np.stack(present), "ndarray"
        if arr is None:
            values = [self.enc(v, where, f"{prefix}/{name}" if isinstance(name, str) else prefix, str(i))
                      for i, v in enumerate(present)]
            return {"kind": "json", "values": values}
        if missing:  # fill absent rows so the column lines up with the rows
            full = np.zeros((n,) + arr.shape[1:], dtype=arr.dtype)
            gone = set(missing)
            full[[i for i in range(n) if i not in gone]] = arr
            arr = full
        return {"kind": "array", "type": typ, "key": self.add(prefix, name, arr)}


def _attached_model(result):
    """The model a result made by :func:`mcem.fit` (or loaded with ``model=``) carries, or None."""
    try:
        model = object.__getattribute__(result, "_model")
    except AttributeError:
        return None
    from .model import Model

    return model if isinstance(model, Model) else None


def _encode(result) -> tuple[dict, dict]:
    if not isinstance(result, Mapping):
        raise TypeError(f"save_result: expected a FitResult, got {type(result).__name__}")
    enc = _Encoder()
    bad = [k for k in result if not isinstance(k, str)]
    if bad:
        raise TypeError(f"save_result: result keys must be strings, got {bad!r}")
    fields = {k: enc.enc(v, k, "", k) for k, v in result.items()}
    from . import __version__

    meta = {
        "format": FORMAT,
        "version": VERSION,
        "mcem_version": __version__,
        "numpy_version": np.__version__,
        "keys": list(result.keys()),
        "fields": fields,
        "arrays": {k: [a.dtype.str, list(a.shape)] for k, a in enc.arrays.items()},
        "lossy": enc.lossy,
    }
    model = _attached_model(result)
    if model is not None:
        meta["model"] = model_fingerprint(model)
    return meta, enc.arrays


# --------------------------------------------------------------------------------------------
# decoding


class _Decoder:
    def __init__(self, arrays):
        self.arrays = arrays

    def array(self, key):
        return self.arrays[key]

    def dec(self, node):
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if isinstance(node, list):
            return [self.dec(x) for x in node]
        t = node["$t"]
        if t == "array":
            a = self.array(node["key"])
            return a[()] if node.get("scalar") else a
        if t == "float":
            return _NONFINITE[node["v"]]
        if t == "complex":
            return complex(self.dec(node["re"]), self.dec(node["im"]))
        if t == "tuple":
            return tuple(self.dec(x) for x in node["items"])
        if t == "dict":
            keys, vals = node["keys"], node["values"]
            if len(keys) != len(vals):
                raise ValueError("dict keys and values differ in length")
            return {self.dec(k): self.dec(v) for k, v in zip(keys, vals, strict=True)}
        if t == "repr":
            return node["v"]
        if t == "history":
            return self.history(node)
        raise ValueError(f"unknown node type {t!r}")

    def history(self, node) -> History:
        n = int(node["n_rows"])
        cols, values = [], []
        for cnode, spec in node["layout"]:
            c = self.dec(cnode)
            missing = set(spec["missing"])
            present = [i for i in range(n) if i not in missing]
            vals = {}
            if spec["kind"] == "param_paths":
                paths = [self.array(k) for k in spec["keys"]]
                for p in paths:
                    if p.shape[:1] != (n,):
                        raise ValueError(f"parameter path of shape {p.shape} for {n} history rows")
                for i in present:
                    vals[i] = {name: np.array(p[i]) for name, p in zip(spec["names"], paths, strict=True)}
            elif spec["kind"] == "array":
                a = self.array(spec["key"])
                if a.shape[:1] != (n,):
                    raise ValueError(f"history column {c!r} has {a.shape[:1]} rows, expected {n}")
                cast = {"bool": bool, "int": int, "float": float}.get(spec["type"])
                for i in present:
                    if spec["type"] == "ndarray":
                        vals[i] = np.array(a[i])
                    else:
                        vals[i] = cast(a[i]) if cast else a[i]
            elif spec["kind"] == "json":
                if len(spec["values"]) != len(present):
                    raise ValueError(
                        f"history column {c!r}: {len(spec['values'])} values for {len(present)} rows"
                    )
                for i, v in zip(present, spec["values"], strict=True):
                    vals[i] = self.dec(v)
            else:
                raise ValueError(f"unknown history column kind {spec['kind']!r}")
            cols.append(c)
            values.append(vals)
        orders, row_order = node["key_orders"], node["row_order"]
        if len(row_order) != n:
            raise ValueError(f"history row order lists {len(row_order)} rows, expected {n}")
        rows = []
        for i in range(n):
            order = orders[row_order[i]]
            row = {cols[j]: values[j][i] for j in order}
            if len(row) != sum(i in v for v in values):
                raise ValueError(f"history row {i}: key order disagrees with the columns")
            rows.append(row)
        return History(rows)


def _fail(path, what, exc=None):
    msg = f"{path}: {what}"
    if exc is not None:
        msg += f" ({type(exc).__name__}: {exc})"
    return ValueError(msg)


# --------------------------------------------------------------------------------------------
# public API


def save_result(result, path) -> None:
    """Write a :class:`~mcem.FitResult` to ``path`` as one ``.npz`` file, without pickle.

    The file is written to exactly ``path`` (no ``.npz`` is appended) and atomically: to a
    temporary file in the same directory, flushed and fsynced, then moved over ``path`` with
    :func:`os.replace`; on any error the temporary file is removed and an existing ``path`` is left
    untouched. An existing file's permission bits are kept.

    Values that cannot be stored without pickle (functions, arbitrary objects, object arrays) are
    saved as their ``repr`` string, with a note in the file's metadata and a ``UserWarning``.
    See the module docstring for the layout. Read it back with :func:`load_result`.

    Parameters
    ----------
    result : FitResult
        A fit result (any mapping with string keys).
    path : str or os.PathLike
        The file to write.
    """
    path = os.fsdecode(os.fspath(path))
    meta, arrays = _encode(result)
    if meta["lossy"]:
        where = ", ".join(f"{n['where']} ({n['type']})" for n in meta["lossy"])
        warnings.warn(
            f"save_result: stored the repr of value(s) that cannot be saved without pickle: {where}",
            UserWarning,
            stacklevel=2,
        )
    blob = np.frombuffer(json.dumps(meta, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    mode = None
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(os.stat(path).st_mode)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, allow_pickle=False, **arrays, **{META_KEY: blob})
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    leftover = re.compile(re.escape(f".{os.path.basename(path)}.") + r"[0-9a-f]{12}\.tmp")
    with contextlib.suppress(OSError):  # what a writer killed mid-save of this file left behind
        for e in os.scandir(directory):
            if leftover.fullmatch(e.name):
                with contextlib.suppress(OSError):
                    os.unlink(e.path)
    if hasattr(os, "O_DIRECTORY"):  # make the rename durable (POSIX)
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def load_result(path, model=None) -> FitResult:
    """Read a result written by :func:`save_result`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    model : Model, optional
        The fitted model, attached to the result (outside the dict, as :func:`mcem.fit` does) so
        that methods needing it (standard errors, ...) work without ``model=``. Its parameters
        must match the saved ones (names and shapes), else ``ValueError``. When the file holds
        the fingerprint of the model that made it (results of :func:`mcem.fit`) and ``model``
        differs from it (name, declarations, data), a ``UserWarning`` says what differs.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is truncated or corrupted, is not an mcem result, or has another format
        version; the message names the file and the problem.
    """
    path = os.fsdecode(os.fspath(path))
    with open(path, "rb") as f:
        data = f.read()
    try:
        with zipfile.ZipFile(_io.BytesIO(data)) as zf:
            bad = zf.testzip()  # reads every entry and checks its CRC
    except Exception as exc:
        raise _fail(path, "not a readable .npz archive (truncated or corrupted?)", exc) from exc
    if bad is not None:
        raise _fail(path, f"corrupted archive: entry {bad!r} fails its CRC check")
    try:
        with np.load(_io.BytesIO(data), allow_pickle=False) as npz:
            if META_KEY not in npz.files:
                raise _fail(path, f"not an mcem result: the archive has no {META_KEY!r} entry "
                                  f"(entries: {npz.files[:8]})")
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if str(exc).startswith(f"{path}:"):
            raise
        what = "corrupted or not an mcem result: an entry cannot be read without pickle"
        raise _fail(path, what, exc) from exc
    except Exception as exc:
        raise _fail(path, "corrupted archive: an entry cannot be read", exc) from exc
    raw = arrays.pop(META_KEY)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise TypeError(f"the metadata entry is {raw.dtype} of shape {raw.shape}, not uint8 bytes")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise TypeError("the metadata is not a JSON object")
    except Exception as exc:
        raise _fail(path, "not an mcem result: unreadable metadata", exc) from exc
    if meta.get("format") != FORMAT:
        raise _fail(path, f"not an mcem result: format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise _fail(path, f"unsupported mcem result version {meta.get('version')!r}; "
                          f"this mcem reads {VERSION!r}")
    try:
        expected = meta["arrays"]
        missing = sorted(set(expected) - set(arrays))
        if missing:
            raise KeyError(f"array entries missing from the archive: {missing}")
        for k, (dt, shape) in expected.items():
            a = arrays[k]
            if a.dtype.str != dt or list(a.shape) != list(shape):
                raise ValueError(f"entry {k!r} is {a.dtype.str}{list(a.shape)}, metadata says {dt}{shape}")
        dec = _Decoder(arrays)
        fields = meta["fields"]
        if list(fields) != list(meta["keys"]):
            raise ValueError("the metadata's keys and fields disagree")
        out = FitResult()
        for k in meta["keys"]:
            out[k] = dec.dec(fields[k])
    except Exception as exc:
        what = "corrupted mcem result: the metadata does not match the stored arrays"
        raise _fail(path, what, exc) from exc
    if model is not None:
        from .model import Model

        if not isinstance(model, Model):
            raise TypeError(f"load_result: model must be an mcem.Model, got {type(model).__name__}")
        try:
            model.check_theta(out.get("params"), "saved params")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: the result does not fit model {model.name!r}: {exc}") from exc
        if "model" in meta:
            try:
                diffs = fingerprint_differences(meta["model"], model_fingerprint(model), "the saved result")
            except ValueError as exc:
                diffs = [str(exc)]
            if diffs:
                warnings.warn(
                    f"load_result: model {model.name!r} is not the one that made the result in {path}: "
                    + "; ".join(diffs),
                    UserWarning,
                    stacklevel=2,
                )
        object.__setattr__(out, "_model", model)
    return out


def _attr_value(v):
    """A value usable as a DataTree attribute (None dropped, settings as JSON)."""
    if isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, np.generic):
        return v.item()
    return None


def to_datatree(result):
    """Convert a fit result to an :class:`xarray.DataTree` (built with ``arviz_base``).

    Groups:

    * ``posterior`` (only when the result has ``draws``, as Monte Carlo methods keep): the latent
      draws kept by the fit (the final E step's), one variable per latent with dims
      ``(chain, draw, <latent>_dim_0, ...)`` (ArviZ conventions, so ``arviz_stats`` diagnostics
      such as ``ess``/``rhat`` apply). They are draws from the conditional distribution of the
      latents given the data at fixed parameters, not a Bayesian posterior.
    * ``fit_history``: one entry per history row along dim ``iteration`` (coordinate: the ``iter``
      column). Each column is a variable (``loglik``, ``m``, ``delta_q``, ``mcse``, ``lower``,
      ``upper``, ``acceptance_mean``, ``rhat_loglik``, ``seconds``, ...). Columns present in every
      row keep their dtype (bool, int, float); a column missing in some rows becomes float with
      NaN there (as ``result.history[col]``). Parameter paths are ``params.<name>`` with dims
      ``(iteration, <name>_dim_0, ...)``. Columns that are neither numbers, bools, strings nor
      equally shaped arrays are left out and listed in the group attribute ``skipped_columns``.
    * ``fit_params``: the final parameters, variable ``<name>`` with dims ``(<name>_dim_0, ...)``.

    Root attributes: ``method``, ``converged``, ``message``, ``stopped_by``, ``n_iter``,
    ``loglik`` (absent when None), ``seconds``, ``model_name``, ``total_draws`` (when present)
    and ``settings`` (a JSON string; non-JSON values as their ``repr``).
    """
    import xarray as xr
    from arviz_base import dict_to_dataset, from_dict

    if not isinstance(result, Mapping):
        raise TypeError(f"to_datatree: expected a FitResult, got {type(result).__name__}")
    root = {}
    for k in ("method", "converged", "message", "stopped_by", "n_iter", "loglik", "seconds",
              "model_name", "total_draws"):
        v = _attr_value(result.get(k))
        if v is not None:
            root[k] = v
    root["settings"] = json.dumps(result.get("settings", {}), default=repr, sort_keys=False)

    draws = result.get("draws")
    if draws:
        dt = from_dict(
            {"posterior": {k: np.asarray(v) for k, v in draws.items()}},
            sample_dims=["chain", "draw"],
            attrs={"posterior": {"description": "latent draws of the final E step, from their "
                                 "conditional distribution given the data"}, "/": root},
        )
    else:
        dt = xr.DataTree()
        dt.attrs = root

    params = {k: np.asarray(v) for k, v in result.get("params", {}).items()}
    dt["fit_params"] = xr.DataTree(dict_to_dataset(params, sample_dims=[],
                                                   attrs={"description": "final parameter estimates"}))

    history = result.get("history")
    if history is not None and len(history):
        rows = history.rows
        n = len(rows)
        it = [r.get("iter") for r in rows]
        iteration = np.asarray(it) if all(isinstance(v, int | np.integer) for v in it) else np.arange(n)
        data, dims, skipped = {}, {}, []
        for c in history.columns:
            if c == "iter":
                continue
            if c == "params":
                try:
                    for name, path in history.params().items():
                        path = np.asarray(path)
                        data[f"params.{name}"] = path
                        dims[f"params.{name}"] = [f"{name}_dim_{i}" for i in range(path.ndim - 1)]
                except (KeyError, ValueError, TypeError):
                    skipped.append("params")
                continue
            vals = [r[c] for r in rows if c in r]
            complete = len(vals) == n
            arr = np.asarray(history[c])  # float with NaN where missing, object when not numeric
            if complete:
                try:
                    full = np.asarray(vals)
                except (TypeError, ValueError):
                    full = None
                if full is not None and full.dtype.kind in "biufcU":
                    arr = full
            if arr.dtype.kind not in "biufcU":
                skipped.append(str(c))
                continue
            data[str(c)] = arr
            dims[str(c)] = [f"{c}_dim_{i}" for i in range(arr.ndim - 1)]
        ds = dict_to_dataset(
            data, sample_dims=["iteration"], dims=dims, coords={"iteration": iteration},
            attrs={"description": "per-iteration history of the fit (row 0 is the start)",
                   "skipped_columns": skipped},
        )
        if not data:
            ds = ds.assign_coords(iteration=iteration)
        dt["fit_history"] = xr.DataTree(ds)
    return dt

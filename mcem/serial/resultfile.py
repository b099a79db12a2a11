"""The result file (format ``"mcem-result/1"``, described in :mod:`mcem.io`): writing and reading.

This module takes any mapping with string keys and gives back a plain dict of the stored
fields; it does not know :class:`~mcem.FitResult`, which sits above it and saves itself with
:func:`save_result`, while :func:`mcem.load_result` builds a FitResult from :func:`read_result`.
Values are encoded by :mod:`mcem.serial.codec` in the result spelling, the archive written by
:mod:`mcem.serial.archive` through :func:`mcem.serial.atomic.write_atomic`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping

import numpy as np

from .._version import __version__
from ..core import Model
from .archive import ArchiveError, read_archive, write_archive
from .atomic import RESULT_TMP_PREFIX, remove_leftovers, write_atomic
from .codec import Decoder, Encoder
from .fingerprint import model_fingerprint
from .spelling import RESULT, MalformedNode

__all__ = ["save_result", "read_result", "FORMAT", "VERSION", "META_KEY"]

FORMAT = "mcem-result"
VERSION = "mcem-result/1"
META_KEY = "__meta__.json"


def _attached_model(result):
    """The model a result made by :func:`mcem.fit` (or loaded with ``model=``) carries, or None."""
    try:
        model = object.__getattribute__(result, "_model")
    except AttributeError:
        return None
    return model if isinstance(model, Model) else None


def encode_result(result) -> tuple[dict, dict]:
    """The JSON description and the arrays of a result (see :mod:`mcem.io` for the layout)."""
    if not isinstance(result, Mapping):
        raise TypeError(f"save_result: expected a FitResult, got {type(result).__name__}")
    bad = [k for k in result if not isinstance(k, str)]
    if bad:
        raise TypeError(f"save_result: result keys must be strings, got {bad!r}")
    enc = Encoder(RESULT)
    fields = {k: enc.field(k, v) for k, v in result.items()}
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


def save_result(result, path) -> None:
    """Write a :class:`~mcem.FitResult` to ``path`` as one ``.npz`` file, without pickle.

    The file is written to exactly ``path`` (no ``.npz`` is appended) and atomically: to a
    temporary file in the same directory, flushed and fsynced, then moved over ``path`` with
    :func:`os.replace`; on any error the temporary file is removed and an existing ``path`` is left
    untouched. An existing file's permission bits are kept.

    Values that cannot be stored without pickle (functions, arbitrary objects, object arrays) are
    saved as their ``repr`` string, with a note in the file's metadata and a ``UserWarning``.
    See :mod:`mcem.io` for the layout. Read it back with :func:`mcem.load_result`.

    Parameters
    ----------
    result : FitResult
        A fit result (any mapping with string keys).
    path : str or os.PathLike
        The file to write.
    """
    path = os.fsdecode(os.fspath(path))
    meta, arrays = encode_result(result)
    if meta["lossy"]:
        where = ", ".join(f"{n['where']} ({n['type']})" for n in meta["lossy"])
        warnings.warn(
            f"save_result: stored the repr of value(s) that cannot be saved without pickle: {where}",
            UserWarning,
            stacklevel=2,
        )
    description = json.dumps(meta, allow_nan=False)
    write_atomic(path, lambda fh: write_archive(fh, arrays, META_KEY, description, compress=True),
                 prefix=RESULT_TMP_PREFIX)
    # what a writer killed mid-save of this file left behind
    remove_leftovers(os.path.dirname(os.path.abspath(path)), os.path.basename(path), RESULT_TMP_PREFIX)


def _fail(path, what, exc=None):
    msg = f"{path}: {what}"
    if exc is not None:
        msg += f" ({type(exc).__name__}: {exc})"
    return ValueError(msg)


def _archive_problem(path, err: ArchiveError):
    if err.kind == "unreadable":
        return _fail(path, "not a readable .npz archive (truncated or corrupted?)", err.cause)
    if err.kind == "crc":
        return _fail(path, f"corrupted archive: entry {err.entry!r} fails its CRC check")
    if err.kind == "no_description":
        return _fail(path, f"not an mcem result: the archive has no {META_KEY!r} entry (entries: {err.entries[:8]})")
    if err.kind == "pickle":
        return _fail(path, "corrupted or not an mcem result: an entry cannot be read without pickle", err.cause)
    if err.kind == "entry":
        return _fail(path, "corrupted archive: an entry cannot be read", err.cause)
    cause = err.cause if err.kind == "description" else TypeError("the metadata is not a JSON object")
    return _fail(path, "not an mcem result: unreadable metadata", cause)


def read_result(path) -> tuple[dict, dict]:
    """The stored fields (a dict, in the saved order) and the description of a result file.

    Raises ``FileNotFoundError`` when ``path`` does not exist and ``ValueError`` naming the file
    and the problem when it is truncated, corrupted, not an mcem result or of another version.
    """
    path = os.fsdecode(os.fspath(path))
    with open(path, "rb") as f:
        data = f.read()
    try:
        meta, arrays = read_archive(data, META_KEY)
    except ArchiveError as err:
        raise _archive_problem(path, err) from err
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
        fields, keys = meta["fields"], meta["keys"]
        if not isinstance(fields, dict) or list(fields) != list(keys):
            raise ValueError("the metadata's keys and fields disagree")
        dec = Decoder(arrays, RESULT)
        out = {k: dec.unpack(fields[k], k) for k in keys}
    except MalformedNode as exc:
        raise _fail(path, f"corrupted mcem result: {exc}") from exc
    except Exception as exc:
        raise _fail(path, "corrupted mcem result: the metadata does not match the stored arrays", exc) from exc
    return out, meta

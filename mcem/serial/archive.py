"""The container of both file formats: an ``.npz`` archive with a JSON description entry.

One entry (``__meta__.json`` for results, ``__checkpoint__.json`` for checkpoints) holds UTF-8
JSON as a ``uint8`` array; the other entries are the arrays the description refers to. Any
archive opens with ``numpy.load(..., allow_pickle=False)``. Reading checks every entry's CRC,
refuses entries that would need pickle and reports any problem as an :class:`ArchiveError`
saying which kind it is, which each format words in its own messages.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

__all__ = ["ArchiveError", "write_archive", "archive_bytes", "read_archive"]


class ArchiveError(ValueError):
    """A file that is not a readable archive of the kind expected.

    ``kind``: ``"unreadable"`` (not a zip archive, truncated), ``"crc"`` (``entry`` fails its
    CRC check), ``"no_description"`` (no description entry; ``entries`` lists the archive's),
    ``"pickle"`` (an entry needs pickle or has a malformed header), ``"entry"`` (an entry cannot
    be read), ``"description"`` (the description is not UTF-8 JSON), ``"not_object"`` (it is
    JSON but not an object). ``cause`` is the exception behind it, if any.
    """

    def __init__(self, kind, cause=None, *, entry=None, entries=()):
        self.kind, self.cause, self.entry, self.entries = kind, cause, entry, list(entries)
        detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        super().__init__(f"{kind}{detail}")


def write_archive(fh, arrays: dict, meta_key: str, description: str, *, compress: bool = False) -> None:
    """Write the archive of ``arrays`` and the JSON text ``description`` to the binary file ``fh``."""
    blob = np.frombuffer(description.encode("utf-8"), dtype=np.uint8)
    save = np.savez_compressed if compress else np.savez
    save(fh, allow_pickle=False, **arrays, **{meta_key: blob})


def archive_bytes(arrays: dict, meta_key: str, description: str, *, compress: bool = False) -> bytes:
    """The bytes :func:`write_archive` writes."""
    buf = io.BytesIO()
    write_archive(buf, arrays, meta_key, description, compress=compress)
    return buf.getvalue()


def read_archive(raw: bytes, meta_key: str) -> tuple[dict, dict]:
    """The JSON description (a dict) and the arrays of an archive's bytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            bad = zf.testzip()  # reads every entry and checks its CRC
    except Exception as exc:
        raise ArchiveError("unreadable", exc) from exc
    if bad is not None:
        raise ArchiveError("crc", entry=bad)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            if meta_key not in npz.files:
                raise ArchiveError("no_description", entries=npz.files)
            arrays = {k: npz[k] for k in npz.files}
    except ArchiveError:
        raise
    except ValueError as exc:
        raise ArchiveError("pickle", exc) from exc
    except Exception as exc:
        raise ArchiveError("entry", exc) from exc
    raw_meta = arrays.pop(meta_key)
    try:
        if raw_meta.dtype != np.uint8 or raw_meta.ndim != 1:
            raise TypeError(f"the description entry is {raw_meta.dtype} of shape {raw_meta.shape}, not bytes")
        meta = json.loads(raw_meta.tobytes().decode("utf-8"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ArchiveError("description", exc) from exc
    if not isinstance(meta, dict):
        raise ArchiveError("not_object")
    return meta, arrays

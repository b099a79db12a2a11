"""Checkpoints of a running fit, written without pickle (:func:`mcem.resume` reads them).

A checkpoint holds everything a Monte Carlo fit needs to continue exactly where it stopped:
the parameters, the history, the chains' states (positions, cached log densities, adapted
proposal scales), the random generators (bit-generator state and seed-sequence position), the
sample-size schedule's state, the options of the run and a fingerprint of the model (its name,
parameter and latent declarations and a SHA-256 hash of its data: :mod:`mcem.serial`).

Files (format ``"mcem-checkpoint/2"``)
--------------------------------------
The user names one file, ``checkpoint="run.mcem"``. Beside it appear:

* ``run.mcem``, the *main file*: one ``.npz`` archive (``numpy.load(..., allow_pickle=False)``
  opens it) whose ``__checkpoint__.json`` entry (UTF-8 JSON as ``uint8``) describes the payload
  as a tree of nodes; large arrays are entries of the archive, small ones are inline in the JSON
  (dtype, shape and base64 bytes). It holds the run's method, options and model fingerprint, the
  loop state of the last completed iteration and the *tail* of the history: the rows after the
  last full chunk (at most 63). It also records the history's run token, the number of chunks,
  the SHA-256 of the last chunk file and the number of rows. It is rewritten after completed
  iterations (at most once per ``checkpoint_every`` seconds): to ``.mcem-ckpt-run.mcem.<12 hex digits>.tmp`` in the same folder, flushed,
  fsynced and moved over ``run.mcem`` with :func:`os.replace`; so a crash leaves either the old or
  the new checkpoint, never a torn one. The folder itself (which makes the rename durable) is
  fsynced at the first write and then at most once a second: a killed process loses nothing,
  while after a power failure the checkpoint found may be up to about a second older than the
  last iteration (still complete and consistent).
* ``run.mcem.history/`` (once the history has 64 rows): immutable *chunk files*
  ``<token>-<k>.npz`` (``k`` = 000000, 000001, ...) of 64 history rows each, written once (via a
  temporary file, fsynced, renamed, the folder fsynced) before the main file that counts them.
  Each chunk records the SHA-256 of the previous chunk file, and the main file the SHA-256 of
  the last, so a missing, modified or foreign chunk is detected on load. ``token`` is random
  per writer (per :func:`mcem.fit` or :func:`mcem.resume` call): a new run writing to the same path
  writes its own chunks and never touches the chunks the current main file refers to; once its
  first main file is in place, the older runs' chunks are removed.

The description's values are nodes in the checkpoint spelling of :mod:`mcem.serial.spelling`,
encoded and decoded by the package's one serializer (:mod:`mcem.serial.codec`). The main file's
description is ``{"format", "tree", "history"}`` with ``history = {"token", "chunk_rows",
"n_chunks", "last_sha256", "n_rows", "tail"}``; a chunk's is ``{"format":
"mcem-checkpoint-chunk/2", "token", "index", "first_row", "prev_sha256", "rows"}``.

A write thus costs the same at every iteration (the loop state, at most 63 rows, and every 64th
iteration one chunk), whatever the length of the history. Copy or move ``run.mcem`` together
with ``run.mcem.history/``. The first write of a run (and every :func:`save_checkpoint`) also
removes what a killed writer of the same checkpoint left behind (its
``.mcem-ckpt-run.mcem.*.tmp`` files, unreferenced chunks); temporary files of other targets are
left alone.

Loading checks the archives' CRCs and the chunk hashes and rebuilds only plain values, arrays,
numpy generators of numpy's own bit generators (PCG64, PCG64DXSM, Philox, SFC64, MT19937) and
the chain-state named tuples of the allow-list (:mod:`mcem.serial.allowlist`; their stable names
are the keys of :data:`STATE_CLASSES`), looked up by name: a file never names code to import or
call. Anything else is a ``ValueError`` naming the file and the node (for example
``loop['state'].kernel_state``). Files of the previous format
``"mcem-checkpoint/1"`` (one ``.npz`` with the whole history inline, classes written as
``module:qualname``) are still read, their classes only when they name one of the same classes.

The model itself (user functions) cannot be stored without pickle, so :func:`mcem.resume` takes it
again and checks it against the stored fingerprint (older checkpoints: against the parameter and
latent declarations only), then validates the stored state before the run continues.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import time

from .serial.allowlist import STATE_CLASSES
from .serial.archive import ArchiveError, archive_bytes, read_archive
from .serial.atomic import TMP_PREFIX, fsync_directory, remove_leftovers, write_atomic
from .serial.codec import Decoder, Encoder, clone_generator
from .serial.fingerprint import model_fingerprint
from .serial.spelling import CHECKPOINT, MalformedNode

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "clone_generator",
    "CHECKPOINT_FORMAT",
    "STATE_CLASSES",
    "CHUNK_ROWS",
]

CHECKPOINT_FORMAT = "mcem-checkpoint/2"
LEGACY_FORMATS = ("mcem-checkpoint/1",)
CHUNK_FORMAT = "mcem-checkpoint-chunk/2"
CHUNK_ROWS = 64
_META = "__checkpoint__.json"
_INLINE_BYTES = 1024  # arrays up to this size are stored inline in the JSON description
_DIR_SYNC_SECONDS = 1.0  # the main file's folder is fsynced at most this often

_TOKEN = re.compile(r"[0-9a-f]{16}")
_CHUNK_FILE = re.compile(r"([0-9a-f]{16})-(\d{6})\.npz")
_CHUNK_TMP = re.compile(re.escape(TMP_PREFIX) + r"[0-9a-f]{16}-\d{6}\.npz\.[0-9a-f]{12}\.tmp")


def _dumps(node) -> str:
    return json.dumps(node, separators=(",", ":"))


def _encoder(prefix: str) -> Encoder:
    return Encoder(CHECKPOINT, prefix=prefix, inline=_INLINE_BYTES)


def _pack_items(items: dict, prefix: str) -> tuple[list, dict]:
    """Top-level entries -> their ``[key, node]`` JSON strings and arrays."""
    out, arrays = [], {}
    for i, (k, v) in enumerate(items.items()):
        enc = _encoder(f"{prefix}{i}_")
        out.append(f"[{_dumps(k)},{_dumps(enc.field(k, v))}]")
        arrays.update(enc.arrays)
    return out, arrays


def _read_archive(raw: bytes) -> tuple[dict, dict]:
    """The JSON description and the arrays of a checkpoint archive (main file or chunk)."""
    try:
        return read_archive(raw, _META)
    except ArchiveError as err:
        if err.kind == "crc":
            msg = f"entry {err.entry!r} fails its CRC check (truncated or corrupted)"
        elif err.kind == "no_description":
            msg = "it has no mcem checkpoint description (not an mcem checkpoint)"
        elif err.kind == "description":
            msg = (f"its description is unreadable (truncated or corrupted): "
                   f"{type(err.cause).__name__}: {err.cause}")
        elif err.kind == "not_object":
            msg = "its description is not a JSON object (not an mcem checkpoint)"
        else:
            msg = f"it is truncated or corrupted: {type(err.cause).__name__}: {err.cause}"
        raise MalformedNode(msg) from None


def _history_dir(path: str) -> str:
    return path + ".history"


def _chunk_name(token: str, k: int) -> str:
    return f"{token}-{k:06d}.npz"


class _Store:
    """Writes one checkpoint path: the main file and the history chunks beside it."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.folder = os.path.dirname(os.path.abspath(self.path))
        self.name = os.path.basename(self.path)
        self.hdir = _history_dir(self.path)
        self.token = None  # of this writer's chunks; None until the first write
        self.history_id = None
        self.n_rows = 0  # rows written (chunks and tail)
        self.n_chunks = 0
        self.last_sha = ""
        self.tail = []  # (json, arrays) of the rows after the last chunk
        self.cleaned = False
        self.dir_synced = -math.inf  # when the folder was last fsynced (the first write does)

    def _write_chunk(self, token, k, prev_sha, rows) -> str:
        if not os.path.isdir(self.hdir):
            os.makedirs(self.hdir, exist_ok=True)
            fsync_directory(self.folder)
        arrays = {}
        for _, a in rows:
            arrays.update(a)
        meta = (f'{{"format":"{CHUNK_FORMAT}","token":"{token}","index":{k},"first_row":{k * CHUNK_ROWS},'
                f'"prev_sha256":"{prev_sha}","rows":[{",".join(j for j, _ in rows)}]}}')
        data = archive_bytes(arrays, _META, meta)
        write_atomic(os.path.join(self.hdir, _chunk_name(token, k)), data)
        return hashlib.sha256(data).hexdigest()

    def write(self, items: list, arrays: dict, history) -> None:
        """Write the main file with the top-level ``items`` (``[key, node]`` JSON strings) and
        ``arrays``; ``history`` (a History or a list of rows, or None) goes to the chunks and the
        tail. Only rows this writer has not stored yet are encoded."""
        arrays = dict(arrays)
        hist_json = "null"
        if history is not None:
            n = len(history)
            fresh = self.token is None or id(history) != self.history_id or n < self.n_rows
            if fresh:
                token, n_rows, n_chunks, last, tail = secrets.token_hex(8), 0, 0, "", []
            else:
                token, n_rows, n_chunks, last = self.token, self.n_rows, self.n_chunks, self.last_sha
                tail = list(self.tail)
            for i in range(n_rows, n):
                enc = _encoder(f"r{i}_")
                tail.append((_dumps(enc.pack(history[i], f"history[{i}]")), enc.arrays))
                if len(tail) == CHUNK_ROWS:
                    last = self._write_chunk(token, n_chunks, last, tail)
                    n_chunks, tail = n_chunks + 1, []
            for _, a in tail:
                arrays.update(a)
            hist_json = (f'{{"token":"{token}","chunk_rows":{CHUNK_ROWS},"n_chunks":{n_chunks},'
                         f'"last_sha256":"{last}","n_rows":{n},"tail":[{",".join(j for j, _ in tail)}]}}')
        meta = f'{{"format":"{CHECKPOINT_FORMAT}","tree":{{"t":"d","v":[{",".join(items)}]}},"history":{hist_json}}}'
        now = time.monotonic()
        sync_dir = now - self.dir_synced >= _DIR_SYNC_SECONDS
        write_atomic(self.path, archive_bytes(arrays, _META, meta), sync_dir=sync_dir)
        if sync_dir:
            self.dir_synced = now
        if history is not None:  # committed: remember what is stored
            self.token, self.history_id, self.n_rows = token, id(history), n
            self.n_chunks, self.last_sha, self.tail = n_chunks, last, tail
        if not self.cleaned:
            self._clean()

    def _clean(self):
        """Remove a killed writer's temporary files and chunks no longer referenced."""
        self.cleaned = True
        remove_leftovers(self.folder, self.name)
        try:
            entries = list(os.scandir(self.hdir))
        except OSError:
            return
        for e in entries:
            m = _CHUNK_FILE.fullmatch(e.name)
            stale = (m is not None and (m.group(1) != self.token or int(m.group(2)) >= self.n_chunks)) \
                or _CHUNK_TMP.fullmatch(e.name) is not None
            if stale:
                try:
                    os.unlink(e.path)
                except OSError:
                    pass
        try:
            os.rmdir(self.hdir)  # only when empty
        except OSError:
            pass


def save_checkpoint(path, payload: dict) -> None:
    """Write ``payload`` (nested dicts, lists, arrays, mcem chain states, generators) atomically.

    A ``"history"`` entry (a list of row dicts or a History) is stored in chunks beside the main
    file (see the module docstring); the other entries in the main file.
    """
    if not isinstance(payload, dict):
        raise TypeError(f"save_checkpoint: payload must be a dict, got {type(payload).__name__}")
    items, arrays = _pack_items({k: v for k, v in payload.items() if k != "history"}, "p")
    _Store(path).write(items, arrays, payload.get("history"))


def _load_history(path, hist, arrays) -> list:
    if not isinstance(hist, dict):
        raise MalformedNode("its history description is not a JSON object")
    token, n_chunks, rows_per = hist.get("token"), hist.get("n_chunks"), hist.get("chunk_rows")
    n_rows, tail = hist.get("n_rows"), hist.get("tail")
    if not (isinstance(token, str) and _TOKEN.fullmatch(token)):
        raise MalformedNode(f"its history token {token!r} is malformed")
    for name, v in (("n_chunks", n_chunks), ("chunk_rows", rows_per), ("n_rows", n_rows)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise MalformedNode(f"its history count {name} = {v!r} is not an int >= 0")
    if not isinstance(tail, list):
        raise MalformedNode("its history tail is not a list")
    if n_chunks * rows_per + len(tail) != n_rows:
        raise MalformedNode(f"its history has {n_chunks} chunk(s) of {rows_per} rows and {len(tail)} more, "
                            f"not the {n_rows} rows it records")
    hdir = _history_dir(path)
    rows, prev = [], ""
    for k in range(n_chunks):
        fname = os.path.join(os.path.basename(hdir), _chunk_name(token, k))
        try:
            with open(os.path.join(hdir, _chunk_name(token, k)), "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raise MalformedNode(f"its history chunk {fname!r} is missing (keep the folder "
                                f"{os.path.basename(hdir)!r} beside the checkpoint)") from None
        except OSError as exc:
            raise MalformedNode(f"its history chunk {fname!r} cannot be read: {exc}") from exc
        sha = hashlib.sha256(raw).hexdigest()
        try:
            meta, carrays = _read_archive(raw)
        except MalformedNode as exc:
            raise MalformedNode(f"its history chunk {fname!r}: {exc}") from None
        if (meta.get("format") != CHUNK_FORMAT or meta.get("token") != token or meta.get("index") != k
                or meta.get("prev_sha256") != prev):
            raise MalformedNode(f"its history chunk {fname!r} is not chunk {k} of this checkpoint "
                                "(modified, or from another run)")
        crows = meta.get("rows")
        if not isinstance(crows, list) or len(crows) != rows_per:
            raise MalformedNode(f"its history chunk {fname!r} does not hold {rows_per} rows")
        up = Decoder(carrays, CHECKPOINT)
        rows += [up.unpack(r, f"history[{k * rows_per + i}]") for i, r in enumerate(crows)]
        prev = sha
    if n_chunks and prev != hist.get("last_sha256"):
        raise MalformedNode(f"its last history chunk {_chunk_name(token, n_chunks - 1)!r} does not match the "
                            "checkpoint (modified, or from another run)")
    up = Decoder(arrays, CHECKPOINT)
    base = n_chunks * rows_per
    rows += [up.unpack(r, f"history[{base + i}]") for i, r in enumerate(tail)]
    return rows


def load_checkpoint(path) -> dict:
    """Read a checkpoint; a truncated, corrupted, tampered or foreign file raises ValueError
    naming it and the problem."""
    return read_checkpoint(path)[0]


def read_checkpoint(path) -> tuple[dict, str]:
    """``(payload, format)``: :func:`load_checkpoint` and the file's format, on which what a
    reader requires depends (a model fingerprint from ``mcem-checkpoint/2`` on)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        meta, arrays = _read_archive(raw)
        fmt = meta.get("format")
        if fmt not in (CHECKPOINT_FORMAT, *LEGACY_FORMATS):
            raise MalformedNode(f"its format is {fmt!r}, expected {CHECKPOINT_FORMAT!r} (not an mcem checkpoint "
                                "of this version)")
        payload = Decoder(arrays, CHECKPOINT).unpack(meta.get("tree"), "")
        if not isinstance(payload, dict):
            raise MalformedNode(f"its root is a {type(payload).__name__}, not a dict")
        if fmt == CHECKPOINT_FORMAT and meta.get("history") is not None:
            payload["history"] = _load_history(path, meta["history"], arrays)
        return payload, fmt
    except MalformedNode as exc:
        raise ValueError(f"checkpoint {path!r} cannot be read: {exc}") from None
    except RecursionError:
        raise ValueError(f"checkpoint {path!r} cannot be read: its description is nested too deeply") from None
    except OSError as exc:
        raise ValueError(f"checkpoint {path!r} cannot be read: {type(exc).__name__}: {exc}") from exc


def _model_spec(model) -> dict:
    return {
        "params": {n: [type(model.params[n]).__name__, list(model.params[n].shape)] for n in model.param_names},
        "latents": {n: [type(s).__name__, list(s.shape), bool(s.unit)] for n, s in model.latents.items()},
    }


class Checkpointer:
    """Writes the loop state after each iteration (used by the algorithms).

    The run's method, options and model fingerprint are encoded once; each :meth:`save` encodes
    the loop state and only the history rows not stored yet (see the module docstring).
    """

    def __init__(self, path, model, method, options):
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise ValueError(f"checkpoint: the folder {folder!r} does not exist")
        base = {"method": method, "options": options, "spec": _model_spec(model),
                "model": model_fingerprint(model)}
        self._items, self._arrays = _pack_items(base, "b")  # fails now, not after the first iteration
        self._store = _Store(self.path)

    def save(self, loop_state: dict, history) -> None:
        items, arrays = _pack_items({"loop": loop_state}, "l")
        self._store.write(self._items + items, {**self._arrays, **arrays}, history)

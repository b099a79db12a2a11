"""Checkpoints of a running fit, written without pickle, and :func:`resume`.

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
  the SHA-256 of the last chunk file and the number of rows. It is rewritten after every
  iteration: to ``.mcem-ckpt-run.mcem.<12 hex digits>.tmp`` in the same folder, flushed,
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
  per writer (per :func:`mcem.fit` or :func:`resume` call): a new run writing to the same path
  writes its own chunks and never touches the chunks the current main file refers to; once its
  first main file is in place, the older runs' chunks are removed.

Nodes of the description: a JSON ``null``, boolean, number or string is that value; otherwise
an object with ``"t"``: ``"d"`` (a dict: ``"v"``, a list of ``[key, node]``), ``"l"``/``"tu"``
(a list/tuple: ``"v"``), ``"x"``/``"x0"`` (an inline array/numpy scalar: dtype ``"d"``, shape
``"s"``, base64 bytes ``"b"``, ``"f": 1`` for Fortran order), ``"a"``/``"a0"`` (an array/numpy
scalar in archive entry ``"k"``), ``"nt"`` (a state class by stable name ``"cls"``, fields
``"f"``), ``"rng"`` (a Generator: bit generator ``"bitgen"``, its ``"state"``, the seed
sequence ``"seq"``). The main file's description is ``{"format", "tree", "history"}`` with
``history = {"token", "chunk_rows", "n_chunks", "last_sha256", "n_rows", "tail"}``; a chunk's
is ``{"format": "mcem-checkpoint-chunk/2", "token", "index", "first_row", "prev_sha256",
"rows"}``.

A write thus costs the same at every iteration (the loop state, at most 63 rows, and every 64th
iteration one chunk), whatever the length of the history. Copy or move ``run.mcem`` together
with ``run.mcem.history/``. The first write of a run (and every :func:`save_checkpoint`) also
removes what a killed writer of the same checkpoint left behind (its
``.mcem-ckpt-run.mcem.*.tmp`` files, unreferenced chunks); temporary files of other targets are
left alone.

Loading checks the archives' CRCs and the chunk hashes and rebuilds only plain values, arrays,
numpy generators of numpy's own bit generators (PCG64, PCG64DXSM, Philox, SFC64, MT19937) and
the chain-state named tuples listed in :data:`STATE_CLASSES`, looked up by a stable name: a
file never names code to import or call. Anything else is a ``ValueError`` naming the file and
the node (for example ``loop['state'].kernel_state``). Files of the previous format
``"mcem-checkpoint/1"`` (one ``.npz`` with the whole history inline, classes written as
``module:qualname``) are still read, their classes only when they name one of the same classes.

The model itself (user functions) cannot be stored without pickle, so :func:`resume` takes it
again and checks it against the stored fingerprint (older checkpoints: against the parameter and
latent declarations only), then validates the stored state before the run continues.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import json
import math
import os
import re
import secrets
import time
import types
import zipfile

import numpy as np

from ._validation import check_bool, check_positive_int
from .serial import (
    TMP_PREFIX,
    fingerprint_differences,
    fsync_directory,
    model_fingerprint,
    remove_leftovers,
    write_atomic,
)

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "clone_generator",
    "CHECKPOINT_FORMAT",
    "STATE_CLASSES",
]

CHECKPOINT_FORMAT = "mcem-checkpoint/2"
LEGACY_FORMATS = ("mcem-checkpoint/1",)
CHUNK_FORMAT = "mcem-checkpoint-chunk/2"
CHUNK_ROWS = 64
_META = "__checkpoint__.json"
_INLINE_BYTES = 1024  # arrays up to this size are stored inline in the JSON description
_DIR_SYNC_SECONDS = 1.0  # the main file's folder is fsynced at most this often

#: The named tuples a checkpoint may hold, by stable name: (module, class name). Only these are
#: rebuilt on load; the module and class come from this table, never from the file. (MALA
#: chains never reach a checkpoint: the kernel takes a user gradient function, which the
#: checkpoint of the run's options refuses.)
STATE_CLASSES = types.MappingProxyType({
    "EStepState": ("mcem.estep", "EStepState"),
    "ShardedState": ("mcem.distributed", "ShardedState"),
    "ComposeState": ("mcem.kernels.compose", "ComposeState"),
    "ExactState": ("mcem.kernels.compose", "ExactState"),
    "RWMState": ("mcem.kernels.metropolis", "RWMState"),
    "GibbsState": ("mcem.kernels.gibbs", "GibbsState"),
    "EmceeState": ("mcem.kernels.ensemble", "EmceeState"),
})
_LEGACY_NAMES = {f"{m}:{q}": n for n, (m, q) in STATE_CLASSES.items()}  # format 1 spelling

#: numpy's bit generators, the only ones a checkpoint may name.
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")

_TOKEN = re.compile(r"[0-9a-f]{16}")
_CHUNK_FILE = re.compile(r"([0-9a-f]{16})-(\d{6})\.npz")
_CHUNK_TMP = re.compile(re.escape(TMP_PREFIX) + r"[0-9a-f]{16}-\d{6}\.npz\.[0-9a-f]{12}\.tmp")


def _state_class(name):
    module, qualname = STATE_CLASSES[name]
    return getattr(importlib.import_module(module), qualname)


_CLASS_NAMES: dict = {}


def _state_name(cls):
    """The stable name of an allow-listed state class, or None."""
    if not _CLASS_NAMES:
        for n in STATE_CLASSES:
            _CLASS_NAMES[_state_class(n)] = n
    return _CLASS_NAMES.get(cls)


class _Bad(ValueError):
    """A malformed node: the message names where it is."""


def _child(where, key):
    return key if not where else f"{where}[{key!r}]"


# --------------------------------------------------------------------------------------------
# packing


class _Packer:
    """Python values -> a JSON tree of nodes plus a dict of arrays (archive entries).

    Arrays of at most ``inline`` bytes are stored in the node itself (base64 of their bytes).
    """

    def __init__(self, prefix="a", inline=0):
        self.arrays = {}
        self.prefix = prefix
        self.inline = inline

    def _key(self):
        return f"{self.prefix}{len(self.arrays)}"

    def _array(self, a, scalar):
        if a.nbytes <= self.inline:
            fortran = a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous
            node = {"t": "x0" if scalar else "x", "d": a.dtype.str, "s": list(a.shape),
                    "b": base64.b64encode(a.tobytes(order="F" if fortran else "C")).decode("ascii")}
            if fortran:
                node["f"] = 1
            return node
        k = self._key()
        self.arrays[k] = a
        return {"t": "a0" if scalar else "a", "k": k}

    def pack(self, obj, where="state"):
        t = type(obj)
        if t is float or t is int or t is str or t is bool or obj is None:
            return obj  # a plain JSON scalar is its own node
        if t is dict:
            if not all(type(k) is str for k in obj):
                raise TypeError(f"checkpoint: {where} has non-string keys")
            return {"t": "d", "v": [[k, self.pack(v, _child(where, k))] for k, v in obj.items()]}
        if isinstance(obj, np.random.Generator):
            name = type(obj.bit_generator).__name__
            if name not in BIT_GENERATORS:
                raise TypeError(f"checkpoint: {where} uses the bit generator {name}; only numpy's "
                                f"{', '.join(BIT_GENERATORS)} are saved")
            seq = obj.bit_generator.seed_seq
            return {
                "t": "rng",
                "bitgen": name,
                "state": obj.bit_generator.state,
                "seq": {
                    "entropy": seq.entropy,
                    "spawn_key": list(seq.spawn_key),
                    "pool_size": seq.pool_size,
                    "n_children_spawned": seq.n_children_spawned,
                },
            }
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise TypeError(f"checkpoint: {where} is an object array, which cannot be saved without pickle")
            return self._array(obj, False)
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            cls = type(obj)
            name = _state_name(cls)
            if name is None:
                raise TypeError(
                    f"checkpoint: {where} is a {cls.__qualname__} from {cls.__module__}; only mcem's "
                    f"chain-state classes ({', '.join(STATE_CLASSES)}) are saved"
                )
            return {"t": "nt", "cls": name,
                    "f": {f: self.pack(getattr(obj, f), f"{where}.{f}") for f in obj._fields}}
        if isinstance(obj, dict):
            if not all(isinstance(k, str) for k in obj):
                raise TypeError(f"checkpoint: {where} has non-string keys")
            return {"t": "d", "v": [[k, self.pack(v, _child(where, k))] for k, v in obj.items()]}
        if isinstance(obj, list | tuple):
            return {"t": "l" if isinstance(obj, list) else "tu",
                    "v": [self.pack(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, np.generic):
            a = np.asarray(obj)
            if a.dtype.hasobject:
                raise TypeError(f"checkpoint: {where} is a numpy object, which cannot be saved without pickle")
            return self._array(a, True)
        for plain in (bool, int, float, str):  # subclasses (IntEnum, ...) as the plain type
            if isinstance(obj, plain):
                return plain(obj)
        raise TypeError(
            f"checkpoint: {where} is a {type(obj).__name__}, which cannot be saved without pickle "
            "(checkpoints take plain options: numbers, strings, lists and dicts of them)"
        )


def _dumps(node) -> str:
    return json.dumps(node, separators=(",", ":"))


def _pack_items(items: dict, prefix: str) -> tuple[list, dict]:
    """Top-level entries -> their ``[key, node]`` JSON strings and arrays."""
    out, arrays = [], {}
    for i, (k, v) in enumerate(items.items()):
        p = _Packer(f"{prefix}{i}_", _INLINE_BYTES)
        out.append(f"[{_dumps(k)},{_dumps(p.pack(v, k))}]")
        arrays.update(p.arrays)
    return out, arrays


# --------------------------------------------------------------------------------------------
# unpacking


class _Unpacker:
    """A JSON tree of nodes plus arrays -> Python values; any malformed node is a ``_Bad``."""

    def __init__(self, arrays):
        self.arrays = arrays

    def _entry(self, node, where):
        k = node.get("k")
        if not isinstance(k, str) or k not in self.arrays:
            raise _Bad(f"{where or 'the root'} refers to an array entry {k!r} the archive lacks")
        return self.arrays[k]

    @staticmethod
    def _inline(node, where):
        try:
            dtype = np.dtype(node["d"])
            shape = tuple(int(s) for s in node["s"])
            raw = base64.b64decode(node["b"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise _Bad(f"{where} is a malformed inline array ({type(exc).__name__}: {exc})") from None
        if dtype.hasobject or dtype.fields is not None or any(s < 0 for s in shape):
            raise _Bad(f"{where} is an inline array of dtype {dtype} and shape {shape}, which is not stored")
        if len(raw) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise _Bad(f"{where}: inline array of {len(raw)} bytes for dtype {dtype} and shape {shape}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if node.get("f") else "C").copy(
            order="K")

    def unpack(self, node, where=""):
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if not isinstance(node, dict):
            raise _Bad(f"{where or 'the root'} is not a checkpoint node (a JSON {type(node).__name__})")
        t = node.get("t")
        if t == "a":
            return np.array(self._entry(node, where))
        if t == "a0":
            return self._entry(node, where)[()]
        if t == "x":
            return self._inline(node, where)
        if t == "x0":
            return self._inline(node, where)[()]
        if t == "s":
            v = node.get("v")
            if v is not None and not isinstance(v, bool | int | float | str):
                raise _Bad(f"{where} is a scalar node holding a JSON {type(v).__name__}")
            return v
        if t in ("d", "l", "tu"):
            v = node.get("v")
            if not isinstance(v, list):
                raise _Bad(f"{where or 'the root'} is a container node without a list of values")
            if t == "d":
                out = {}
                for item in v:
                    if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                        raise _Bad(f"{where or 'the root'} has a malformed dict item")
                    out[item[0]] = self.unpack(item[1], _child(where, item[0]))
                return out
            items = [self.unpack(x, f"{where}[{i}]") for i, x in enumerate(v)]
            return items if t == "l" else tuple(items)
        if t == "nt":
            return self._named_tuple(node, where)
        if t == "rng":
            return self._generator(node, where)
        raise _Bad(f"{where or 'the root'} has an unknown node type {t!r}")

    def _named_tuple(self, node, where):
        name = node.get("cls")
        key = name if isinstance(name, str) and name in STATE_CLASSES else _LEGACY_NAMES.get(name)
        if key is None:
            raise _Bad(
                f"{where or 'the root'} names the class {name!r}, which is not one of mcem's chain-state "
                f"classes ({', '.join(STATE_CLASSES)}); refusing to rebuild it"
            )
        cls = _state_class(key)
        fields = node.get("f")
        if not isinstance(fields, dict) or set(fields) != set(cls._fields):
            got = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
            raise _Bad(f"{where} is a {key} with fields {got}, expected {list(cls._fields)}")
        return cls(**{f: self.unpack(v, f"{where}.{f}") for f, v in fields.items()})

    @staticmethod
    def _generator(node, where):
        name = node.get("bitgen")
        if name not in BIT_GENERATORS:
            raise _Bad(f"{where} names the bit generator {name!r}; only numpy's {', '.join(BIT_GENERATORS)} "
                       "are rebuilt")
        try:
            s = node["seq"]
            seq = np.random.SeedSequence(
                entropy=s["entropy"], spawn_key=tuple(s["spawn_key"]), pool_size=s["pool_size"],
                n_children_spawned=s["n_children_spawned"],
            )
            bitgen = getattr(np.random, name)(seq)
            bitgen.state = node["state"]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise _Bad(f"{where} holds an invalid {name} generator state ({type(exc).__name__}: {exc})") from None
        return np.random.Generator(bitgen)


def clone_generator(rng: np.random.Generator) -> np.random.Generator:
    """An independent copy of a numpy Generator: same bit-generator state and seed sequence, so
    both produce the same numbers and spawn the same children."""
    p = _Packer()
    return _Unpacker(p.arrays).unpack(p.pack(rng, "rng"), "rng")


# --------------------------------------------------------------------------------------------
# archives


def _npz_bytes(arrays: dict, meta: str) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{_META: np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)})
    return buf.getvalue()


def _read_archive(raw: bytes) -> tuple[dict, dict]:
    """The JSON description and the arrays of a checkpoint archive (main file or chunk)."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise _Bad(f"entry {bad!r} fails its CRC check (truncated or corrupted)")
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            if _META not in npz.files:
                raise _Bad("it has no mcem checkpoint description (not an mcem checkpoint)")
            arrays = {k: npz[k] for k in npz.files}
    except _Bad:
        raise
    except (OSError, KeyError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise _Bad(f"it is truncated or corrupted: {type(exc).__name__}: {exc}") from exc
    raw_meta = arrays.pop(_META)
    try:
        if raw_meta.dtype != np.uint8 or raw_meta.ndim != 1:
            raise TypeError(f"the description is {raw_meta.dtype} of shape {raw_meta.shape}")
        meta = json.loads(raw_meta.tobytes().decode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise _Bad(f"its description is unreadable (truncated or corrupted): {type(exc).__name__}: {exc}") from exc
    if not isinstance(meta, dict):
        raise _Bad("its description is not a JSON object (not an mcem checkpoint)")
    return meta, arrays


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
        data = _npz_bytes(arrays, meta)
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
                p = _Packer(f"r{i}_", _INLINE_BYTES)
                tail.append((_dumps(p.pack(history[i], f"history[{i}]")), p.arrays))
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
        write_atomic(self.path, _npz_bytes(arrays, meta), sync_dir=sync_dir)
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
        raise _Bad("its history description is not a JSON object")
    token, n_chunks, rows_per = hist.get("token"), hist.get("n_chunks"), hist.get("chunk_rows")
    n_rows, tail = hist.get("n_rows"), hist.get("tail")
    if not (isinstance(token, str) and _TOKEN.fullmatch(token)):
        raise _Bad(f"its history token {token!r} is malformed")
    for name, v in (("n_chunks", n_chunks), ("chunk_rows", rows_per), ("n_rows", n_rows)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _Bad(f"its history count {name} = {v!r} is not an int >= 0")
    if not isinstance(tail, list):
        raise _Bad("its history tail is not a list")
    if n_chunks * rows_per + len(tail) != n_rows:
        raise _Bad(f"its history has {n_chunks} chunk(s) of {rows_per} rows and {len(tail)} more, "
                   f"not the {n_rows} rows it records")
    hdir = _history_dir(path)
    rows, prev = [], ""
    for k in range(n_chunks):
        fname = os.path.join(os.path.basename(hdir), _chunk_name(token, k))
        try:
            with open(os.path.join(hdir, _chunk_name(token, k)), "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raise _Bad(f"its history chunk {fname!r} is missing (keep the folder "
                       f"{os.path.basename(hdir)!r} beside the checkpoint)") from None
        except OSError as exc:
            raise _Bad(f"its history chunk {fname!r} cannot be read: {exc}") from exc
        sha = hashlib.sha256(raw).hexdigest()
        try:
            meta, carrays = _read_archive(raw)
        except _Bad as exc:
            raise _Bad(f"its history chunk {fname!r}: {exc}") from None
        if (meta.get("format") != CHUNK_FORMAT or meta.get("token") != token or meta.get("index") != k
                or meta.get("prev_sha256") != prev):
            raise _Bad(f"its history chunk {fname!r} is not chunk {k} of this checkpoint "
                       "(modified, or from another run)")
        crows = meta.get("rows")
        if not isinstance(crows, list) or len(crows) != rows_per:
            raise _Bad(f"its history chunk {fname!r} does not hold {rows_per} rows")
        up = _Unpacker(carrays)
        rows += [up.unpack(r, f"history[{k * rows_per + i}]") for i, r in enumerate(crows)]
        prev = sha
    if n_chunks and prev != hist.get("last_sha256"):
        raise _Bad(f"its last history chunk {_chunk_name(token, n_chunks - 1)!r} does not match the "
                   "checkpoint (modified, or from another run)")
    up = _Unpacker(arrays)
    base = n_chunks * rows_per
    rows += [up.unpack(r, f"history[{base + i}]") for i, r in enumerate(tail)]
    return rows


def load_checkpoint(path) -> dict:
    """Read a checkpoint; a truncated, corrupted, tampered or foreign file raises ValueError
    naming it and the problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        meta, arrays = _read_archive(raw)
        fmt = meta.get("format")
        if fmt not in (CHECKPOINT_FORMAT, *LEGACY_FORMATS):
            raise _Bad(f"its format is {fmt!r}, expected {CHECKPOINT_FORMAT!r} (not an mcem checkpoint "
                       "of this version)")
        payload = _Unpacker(arrays).unpack(meta.get("tree"), "")
        if not isinstance(payload, dict):
            raise _Bad(f"its root is a {type(payload).__name__}, not a dict")
        if fmt == CHECKPOINT_FORMAT and meta.get("history") is not None:
            payload["history"] = _load_history(path, meta["history"], arrays)
        return payload
    except _Bad as exc:
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

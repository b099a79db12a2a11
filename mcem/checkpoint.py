"""Checkpoints of a running fit, written without pickle, and :func:`resume`.

A checkpoint holds everything a Monte Carlo fit needs to continue exactly where it stopped:
the parameters, the history, the chains' states (positions, cached log densities, adapted
proposal scales), the random generators (bit-generator state and seed-sequence position), the
sample-size schedule's state and the options of the run. It is one ``.npz`` file whose arrays
are the numeric leaves and whose ``__checkpoint__.json`` entry describes the structure. It is
written after every iteration to a temporary file in the same directory, flushed, fsynced and
renamed over the previous checkpoint, so a crash leaves either the old or the new checkpoint,
never a torn one. Loading uses ``allow_pickle=False``; only named tuples defined inside mcem are
rebuilt.

The model itself (user functions) cannot be stored without pickle, so :func:`resume` takes it
again and checks that it declares the same parameters and latents.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["resume", "save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "mcem-checkpoint/1"
_META = "__checkpoint__.json"


class _Packer:
    def __init__(self):
        self.arrays = {}

    def _key(self):
        return f"a{len(self.arrays)}"

    def pack(self, obj, where="state"):
        if isinstance(obj, np.random.Generator):
            seq = obj.bit_generator.seed_seq
            return {
                "t": "rng",
                "bitgen": type(obj.bit_generator).__name__,
                "state": obj.bit_generator.state,
                "seq": {
                    "entropy": seq.entropy,
                    "spawn_key": list(seq.spawn_key),
                    "pool_size": seq.pool_size,
                    "n_children_spawned": seq.n_children_spawned,
                },
            }
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                raise TypeError(f"checkpoint: {where} is an object array, which cannot be saved without pickle")
            k = self._key()
            self.arrays[k] = obj
            return {"t": "a", "k": k}
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            cls = type(obj)
            if not cls.__module__.startswith("mcem."):
                raise TypeError(f"checkpoint: {where} is a {cls.__name__} from {cls.__module__}; only mcem types are saved")
            return {
                "t": "nt",
                "cls": f"{cls.__module__}:{cls.__qualname__}",
                "f": {f: self.pack(getattr(obj, f), f"{where}.{f}") for f in obj._fields},
            }
        if isinstance(obj, dict):
            if not all(isinstance(k, str) for k in obj):
                raise TypeError(f"checkpoint: {where} has non-string keys")
            return {"t": "d", "v": [[k, self.pack(v, f"{where}[{k!r}]")] for k, v in obj.items()]}
        if isinstance(obj, list | tuple):
            return {"t": "l" if isinstance(obj, list) else "tu",
                    "v": [self.pack(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, np.generic):
            return {"t": "a0", "k": self._store_scalar(obj)}
        if obj is None or isinstance(obj, bool | int | float | str):
            return {"t": "s", "v": obj}
        raise TypeError(
            f"checkpoint: {where} is a {type(obj).__name__}, which cannot be saved without pickle "
            "(checkpoints take plain options: numbers, strings, lists and dicts of them)"
        )

    def _store_scalar(self, x):
        k = self._key()
        self.arrays[k] = np.asarray(x)
        return k


class _Unpacker:
    def __init__(self, arrays):
        self.arrays = arrays

    def unpack(self, node):
        t = node["t"]
        if t == "a":
            return np.array(self.arrays[node["k"]])
        if t == "a0":
            return self.arrays[node["k"]][()]
        if t == "s":
            return node["v"]
        if t == "d":
            return {k: self.unpack(v) for k, v in node["v"]}
        if t == "l":
            return [self.unpack(v) for v in node["v"]]
        if t == "tu":
            return tuple(self.unpack(v) for v in node["v"])
        if t == "nt":
            mod, qual = node["cls"].split(":")
            if not mod.startswith("mcem."):
                raise ValueError(f"refusing to rebuild {node['cls']}: not an mcem type")
            cls = importlib.import_module(mod)
            for part in qual.split("."):
                cls = getattr(cls, part)
            return cls(**{f: self.unpack(v) for f, v in node["f"].items()})
        if t == "rng":
            s = node["seq"]
            seq = np.random.SeedSequence(
                entropy=s["entropy"], spawn_key=tuple(s["spawn_key"]), pool_size=s["pool_size"],
                n_children_spawned=s["n_children_spawned"],
            )
            bitgen = getattr(np.random, node["bitgen"])(seq)
            bitgen.state = node["state"]
            return np.random.Generator(bitgen)
        raise ValueError(f"unknown node type {t!r}")


def save_checkpoint(path, payload: dict) -> None:
    """Write ``payload`` (nested dicts, lists, arrays, mcem named tuples, generators) atomically."""
    packer = _Packer()
    tree = packer.pack(payload)
    meta = json.dumps({"format": CHECKPOINT_FORMAT, "tree": tree}).encode()
    arrays = dict(packer.arrays)
    arrays[_META] = np.frombuffer(meta, dtype=np.uint8)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".mcem-ckpt-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - directories cannot be fsynced everywhere
        pass


def load_checkpoint(path) -> dict:
    """Read a checkpoint; a truncated, corrupted or foreign file raises ValueError naming it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise ValueError(f"entry {bad!r} fails its CRC check")
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            if _META not in npz.files:
                raise ValueError("it has no mcem checkpoint description (not an mcem checkpoint)")
            meta = json.loads(npz[_META].tobytes().decode())
            if meta.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"its format is {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
            arrays = {k: npz[k] for k in npz.files if k != _META}
        return _Unpacker(arrays).unpack(meta["tree"])
    except ValueError as exc:
        raise ValueError(f"checkpoint {path!r} cannot be read: {exc}") from exc
    except (OSError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"checkpoint {path!r} is truncated or corrupted: {type(exc).__name__}: {exc}") from exc


def resume(path, model, *, callback=None, progress=None, max_iter=None, checkpoint=True, executor=None):
    """Continue a fit from its checkpoint.

    Parameters
    ----------
    path : str or path
        The file given as ``checkpoint=`` to :func:`mcem.fit`.
    model : Model
        The same model (functions cannot be stored without pickle); its parameters and latents
        must match the checkpoint's.
    callback, progress
        As for :func:`mcem.fit` (not stored in the checkpoint).
    max_iter : int, optional
        A new iteration cap (default: the original one).
    checkpoint : bool
        Keep writing checkpoints to ``path`` (default True).
    executor : concurrent.futures.Executor, optional
        For a sharded E step (``shards=``): where the blocks run now. Executors are not stored;
        any executor, or none, continues the run with the same result.

    Returns
    -------
    FitResult
        Exactly what the uninterrupted run with the same seed would have returned.
    """
    from .fit import METHODS
    from .model import Model

    if not isinstance(model, Model):
        raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
    ck = load_checkpoint(path)
    for key in ("method", "options", "loop", "spec"):
        if key not in ck:
            raise ValueError(f"checkpoint {os.fspath(path)!r} cannot be read: it lacks {key!r}")
    spec = ck["spec"]
    mine = _model_spec(model)
    if spec != mine:
        raise ValueError(
            f"resume: model does not match the checkpoint {os.fspath(path)!r}: the checkpoint has "
            f"{spec}, the model declares {mine}"
        )
    options = dict(ck["options"])
    if max_iter is not None:
        options["max_iter"] = max_iter
    if executor is not None:
        if options.get("shards") is None:
            raise ValueError("resume: executor is only for runs with a sharded E step (shards=k)")
        options["executor"] = executor
    method = ck["method"]
    runner = METHODS[method]
    return runner(
        model, ck["loop"]["theta"], rng=None, callback=callback, progress=progress,
        checkpoint=os.fspath(path) if checkpoint else None, _resume=ck, **options,
    )


def _model_spec(model) -> dict:
    return {
        "params": {n: [type(model.params[n]).__name__, list(model.params[n].shape)] for n in model.param_names},
        "latents": {n: [type(s).__name__, list(s.shape), bool(s.unit)] for n, s in model.latents.items()},
    }


class Checkpointer:
    """Writes the loop state after each iteration (used by the algorithms)."""

    def __init__(self, path, model, method, options):
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise ValueError(f"checkpoint: the folder {folder!r} does not exist")
        self.base = {"method": method, "options": options, "spec": _model_spec(model)}
        _Packer().pack(options, "options")  # fail now, not after the first iteration

    def save(self, loop_state: dict, history) -> None:
        save_checkpoint(self.path, {**self.base, "loop": loop_state, "history": history.rows})

"""One encoder and one decoder of nested values for every file the package writes.

:class:`Encoder` turns a value into a tree of JSON nodes plus a dict of arrays (the entries of
an ``.npz`` archive); :class:`Decoder` turns them back. Both take the *spelling* of the file
format (:data:`~mcem.serial.spelling.CHECKPOINT` or :data:`~mcem.serial.spelling.RESULT`, see
:mod:`mcem.serial.spelling`), which says how each kind of node is written and which optional
kinds the format has; everything else is this one implementation:

* ``None``, bools, ints, finite floats and strings are their own nodes (subclasses such as
  ``IntEnum`` as the plain type); non-finite floats as the spelling writes them.
* numpy arrays and scalars (any non-object dtype; shape, dtype and memory order kept) are archive
  entries, or inline in the JSON (base64 bytes) when the spelling allows it and they are small.
* lists, tuples and mappings (keys as the spelling allows) recursively.
* where the spelling has them: numpy Generators of numpy's own bit generators (bit-generator
  state and seed-sequence position), mcem's chain-state named tuples by stable name
  (:mod:`mcem.serial.allowlist`), complex numbers, a :class:`~mcem.History` as a table
  (:mod:`mcem.serial.table`).
* anything else cannot be stored without pickle: a ``TypeError`` naming where it is, or (results)
  its ``repr`` string with a note in :attr:`Encoder.lossy`.

Decoding rebuilds only plain values, arrays and what :mod:`mcem.serial.allowlist` lists, looked up
by name in its tables: a file never names code to import or call. Any node that is not what the
format writes is a :class:`~mcem.serial.spelling.MalformedNode` (a ``ValueError``) naming the node
by its path, for example ``loop['state'].kernel_state``.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping

import numpy as np

from ..history import History
from .allowlist import BIT_GENERATORS, LEGACY_STATE_NAMES, STATE_NAMES, STATE_TYPES
from .spelling import CHECKPOINT, MalformedNode, at
from .table import decode_history, encode_history

__all__ = ["Encoder", "Decoder", "MalformedNode", "clone_generator", "child_where"]

_SAFE = re.compile(r"[A-Za-z0-9_.\-]{1,80}")
_NUMPY = (np.ndarray, np.generic)
_SCALARS = (bool, int, float, str)
_SEQUENCES = (list, tuple)
# archive names taken by the file formats' descriptions and by numpy.savez's own arguments
RESERVED = frozenset({"__meta__.json", "__checkpoint__.json", "file", "allow_pickle", "args", "kwds"})


def child_where(where: str, key) -> str:
    """The path of entry ``key`` of the dict at ``where`` (``loop``, ``loop['state']``, ...)."""
    return str(key) if not where else f"{where}[{key!r}]"


def _type_name(v) -> str:
    t = type(v)
    return f"{t.__module__}.{t.__qualname__}"


def _plain_state(v):
    """A bit generator's state as JSON values (some hold arrays of words)."""
    if isinstance(v, dict):
        return {k: _plain_state(x) for k, x in v.items()}
    if isinstance(v, np.ndarray | np.generic):
        return v.tolist()
    return v


class Encoder:
    """Python values -> JSON nodes plus a dict of arrays (:attr:`arrays`).

    Parameters
    ----------
    spelling
        The file format's node spelling.
    prefix : str, optional
        Archive entries are named ``<prefix><n>`` when given; otherwise after the path of the
        value (``params/means``, ``history/params/means``; names that are not plain
        ``[A-Za-z0-9_.-]`` become ``#``), made unique with ``~1``, ``~2``, ...
    inline : int
        Arrays of at most this many bytes are stored in the node itself, where the spelling
        allows it.
    """

    def __init__(self, spelling, *, prefix=None, inline=0):
        self.spelling = spelling
        self.prefix = prefix
        self.inline = inline if "inline" in spelling.kinds else -1
        self.arrays: dict[str, np.ndarray] = {}
        self.lossy: list[dict] = []  # values stored as their repr (results)
        self._path: list = []

    # -- archive entries
    def _key(self) -> str:
        if self.prefix is not None:
            return f"{self.prefix}{len(self.arrays)}"
        base = ""
        for c in self._path[:-1]:
            base = f"{base}/{c}" if base else str(c)
        leaf = self._path[-1] if self._path else "#"
        leaf = leaf if isinstance(leaf, str) and _SAFE.fullmatch(leaf) else "#"
        base = f"{base}/{leaf}" if base else leaf
        k, n = base, 1
        while k in self.arrays or k in RESERVED:
            k, n = f"{base}~{n}", n + 1
        return k

    def entry(self, a: np.ndarray, *names) -> str:
        """Store ``a`` as an archive entry named after the current path and ``names``."""
        self._path.extend(names)
        k = self._key()
        del self._path[len(self._path) - len(names):]
        self.arrays[k] = a
        return k

    def _array(self, a: np.ndarray, scalar: bool):
        if a.nbytes <= self.inline:
            fortran = a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous
            data = base64.b64encode(a.tobytes(order="F" if fortran else "C")).decode("ascii")
            return self.spelling.inline(a.dtype.str, list(a.shape), data, fortran, scalar)
        k = self._key()
        self.arrays[k] = a
        return self.spelling.array(k, scalar)

    # -- values
    def field(self, name, obj):
        """Encode the top-level entry ``name`` (its path, and that of its arrays, start there)."""
        self._path = [name]
        node = self.pack(obj, str(name))
        self._path = []
        return node

    def child(self, obj, where: str, name, *more):
        """Encode ``obj`` found at ``where``, below the current path by ``name`` (and ``more``)."""
        if self.prefix is not None:  # numbered entries: no path to follow
            return self.pack(obj, where)
        path = self._path
        path.append(name)
        if more:
            path.extend(more)
            node = self.pack(obj, where)
            del path[-1 - len(more):]
            return node
        node = self.pack(obj, where)
        path.pop()
        return node

    def pack(self, obj, where: str):
        """Encode ``obj`` found at ``where`` (a path such as ``loop['state']``, for messages)."""
        t = type(obj)
        if t is int or t is str or t is bool or obj is None:  # the common cases first
            return obj
        if t is float and math.isfinite(obj):
            return obj
        if t is dict:
            return self._mapping(obj, where)
        s = self.spelling
        if t is np.ndarray or isinstance(obj, _NUMPY):
            a = obj if t is np.ndarray else np.asarray(obj)
            if a.dtype.hasobject:
                return self._unstorable(obj, where, "object arrays need pickle")
            return self._array(a, a is not obj and isinstance(obj, np.generic))
        if isinstance(obj, _SEQUENCES):
            if hasattr(obj, "_fields") and "state" in s.kinds:
                return self._state(obj, where)
            items = [self.child(x, f"{where}[{i}]", str(i)) for i, x in enumerate(obj)]
            return s.sequence(items, isinstance(obj, list))
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            v = float(obj)
            return v if math.isfinite(v) else s.nonfinite(v)
        if isinstance(obj, complex) and "complex" in s.kinds:
            return s.complex(self.pack(obj.real, where), self.pack(obj.imag, where))
        if isinstance(obj, np.random.Generator) and "generator" in s.kinds:
            return self._generator(obj, where)
        if isinstance(obj, History) and "history" in s.kinds:
            return encode_history(self, obj, where)
        if isinstance(obj, Mapping):
            return self._mapping(obj, where)
        return self._unstorable(obj, where, "not storable without pickle")

    def _mapping(self, obj, where):
        self.spelling.check_keys(obj, where)
        if self.prefix is None:
            items = [[k if type(k) is str else self.child(k, f"{where} key", "#key"),
                      self.child(x, child_where(where, k), k)] for k, x in obj.items()]
        else:  # numbered entries: no path to follow
            items = [[k if type(k) is str else self.pack(k, f"{where} key"),
                      self.pack(x, f"{where}[{k!r}]" if where else str(k))] for k, x in obj.items()]
        return self.spelling.mapping(items)

    def _unstorable(self, obj, where, why):
        if "repr" in self.spelling.kinds:
            text = repr(obj)
            self.lossy.append({"where": where, "type": _type_name(obj), "repr": text, "why": why})
            return self.spelling.repr(_type_name(obj), text)
        if isinstance(obj, np.ndarray):
            raise TypeError(f"{self.spelling.name}: {where} is an object array, which cannot be saved "
                            "without pickle")
        raise TypeError(f"{self.spelling.name}: {where} is a {type(obj).__name__}, which cannot be saved "
                        f"without pickle{self.spelling.hint}")

    def _generator(self, rng, where):
        bitgen = rng.bit_generator
        name = type(bitgen).__name__
        if BIT_GENERATORS.get(name) is not type(bitgen):
            raise TypeError(f"{self.spelling.name}: {where} uses the bit generator {name}; only numpy's "
                            f"{', '.join(BIT_GENERATORS)} are saved")
        seq = bitgen.seed_seq
        return self.spelling.generator(name, _plain_state(bitgen.state), {
            "entropy": seq.entropy,
            "spawn_key": list(seq.spawn_key),
            "pool_size": seq.pool_size,
            "n_children_spawned": seq.n_children_spawned,
        })

    def _state(self, obj, where):
        cls = type(obj)
        name = STATE_NAMES.get(cls)
        if name is None:
            raise TypeError(
                f"{self.spelling.name}: {where} is a {cls.__qualname__} from {cls.__module__}; only mcem's "
                f"chain-state classes ({', '.join(STATE_TYPES)}) are saved"
            )
        if self.prefix is None:
            fields = {f: self.child(getattr(obj, f), f"{where}.{f}", f) for f in obj._fields}
        else:  # numbered entries: no path to follow
            fields = {f: self.pack(getattr(obj, f), f"{where}.{f}") for f in obj._fields}
        return self.spelling.state(name, fields)


class Decoder:
    """JSON nodes plus arrays -> Python values; a malformed node is a :class:`MalformedNode`."""

    def __init__(self, arrays: dict, spelling):
        self.arrays = arrays
        self.spelling = spelling
        self._used: set = set()

    def entry(self, key, where: str) -> np.ndarray:
        """Archive entry ``key`` (a copy when an earlier node took it already: no aliasing)."""
        if not isinstance(key, str) or key not in self.arrays:
            raise MalformedNode(f"{at(where)} refers to an array entry {key!r} the archive lacks")
        if key in self._used:
            return np.array(self.arrays[key])
        self._used.add(key)
        return self.arrays[key]

    def unpack(self, node, where: str = ""):
        if node is None or isinstance(node, _SCALARS):
            return node
        kind, *parts = self.spelling.read(node, where)
        if kind == "value":
            return parts[0]
        if kind == "array":
            a = self.entry(parts[0], where)
            return a[()] if parts[1] else a
        if kind == "inline":
            a = self._inline(parts[0], where)
            return a[()] if parts[1] else a
        if kind in ("list", "tuple"):
            items = [self.unpack(x, f"{where}[{i}]") for i, x in enumerate(parts[0])]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            out = {}
            for knode, vnode in parts[0]:
                k = self.unpack(knode, f"{where} key")
                try:
                    hash(k)
                except TypeError:
                    raise MalformedNode(f"{at(where)} has a dict key of type {type(k).__name__}") from None
                out[k] = self.unpack(vnode, child_where(where, k))
            return out
        if kind == "complex":
            re_, im = self.unpack(parts[0], where), self.unpack(parts[1], where)
            if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (re_, im)):
                raise MalformedNode(f"{at(where)} is a complex node whose parts are not numbers")
            return complex(re_, im)
        if kind == "state":
            return self._state(parts[0], parts[1], where)
        if kind == "generator":
            return self._generator(parts[0], where)
        if kind == "history":
            return decode_history(self, parts[0], where)
        raise AssertionError(kind)  # pragma: no cover - the spellings read only the kinds above

    @staticmethod
    def _inline(node, where):
        try:
            dtype = np.dtype(node["d"])
            shape = tuple(int(s) for s in node["s"])
            raw = base64.b64decode(node["b"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedNode(f"{at(where)} is a malformed inline array ({type(exc).__name__}: {exc})") from None
        if dtype.hasobject or dtype.fields is not None or any(s < 0 for s in shape):
            raise MalformedNode(f"{at(where)} is an inline array of dtype {dtype} and shape {shape}, which is "
                                "not stored")
        if len(raw) != dtype.itemsize * math.prod(shape):  # Python ints: no overflow to a small size
            raise MalformedNode(f"{at(where)}: inline array of {len(raw)} bytes for dtype {dtype} and shape {shape}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if node.get("f") else "C").copy(order="K")

    def _state(self, name, fields, where):
        key = None
        if isinstance(name, str):
            key = name if name in STATE_TYPES else LEGACY_STATE_NAMES.get(name)
        if key is None:
            raise MalformedNode(
                f"{at(where)} names the class {name!r}, which is not one of mcem's chain-state classes "
                f"({', '.join(STATE_TYPES)}); refusing to rebuild it"
            )
        cls = STATE_TYPES[key]
        if not isinstance(fields, dict) or set(fields) != set(cls._fields):
            got = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
            raise MalformedNode(f"{at(where)} is a {key} with fields {got}, expected {list(cls._fields)}")
        return cls(**{f: self.unpack(v, f"{where}.{f}") for f, v in fields.items()})

    @staticmethod
    def _generator(node, where):
        name = node.get("bitgen")
        if not isinstance(name, str) or name not in BIT_GENERATORS:
            raise MalformedNode(f"{at(where)} names the bit generator {name!r}; only numpy's "
                                f"{', '.join(BIT_GENERATORS)} are rebuilt")
        try:
            s = node["seq"]
            if s["pool_size"] != np.random.SeedSequence().pool_size:  # numpy's fixed pool of 4 words
                raise ValueError(f"pool_size {s['pool_size']!r}, expected {np.random.SeedSequence().pool_size}")
            seq = np.random.SeedSequence(
                entropy=s["entropy"], spawn_key=tuple(s["spawn_key"]), pool_size=s["pool_size"],
                n_children_spawned=s["n_children_spawned"],
            )
            bitgen = BIT_GENERATORS[name](seq)
            bitgen.state = node["state"]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise MalformedNode(f"{at(where)} holds an invalid {name} generator state "
                                f"({type(exc).__name__}: {exc})") from None
        return np.random.Generator(bitgen)


def clone_generator(rng: np.random.Generator) -> np.random.Generator:
    """An independent copy of a numpy Generator: same bit-generator state and seed sequence, so
    both produce the same numbers and spawn the same children."""
    enc = Encoder(CHECKPOINT)
    return Decoder(enc.arrays, CHECKPOINT).unpack(enc.pack(rng, "rng"), "rng")

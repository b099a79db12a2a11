"""Model fingerprints: what identifies a model in a file that cannot store the model itself.

A checkpoint (:mod:`mcem.checkpoint`) and a saved result (:mod:`mcem.io`) cannot store the model
(its functions need pickle), so they store its *fingerprint* (:func:`model_fingerprint`): the
model's name, its parameter declarations (constraint and shape), its latent declarations (kind,
shape, unit axis, support, ``K``) and a SHA-256 hash of its data. The data hash covers the
structure (dicts, tuples, lists, their keys and lengths) and, for every array, its dtype, shape
and bytes; for numbers and strings their type and exact ``repr``; other objects contribute their
type only (or their array form when they have one). Each top-level entry of the data (``data``
itself, ``data['y']``, ``data[0]``, ...) also gets its own hash, so that
:func:`fingerprint_differences` can say which entry differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import numbers
from collections.abc import Mapping

import numpy as np

__all__ = ["model_fingerprint", "fingerprint_differences", "data_fingerprint", "FINGERPRINT_VERSION"]

FINGERPRINT_VERSION = 1
_MAX_PARTS = 256  # top-level data entries hashed one by one (beyond that, only the whole)


def _feed(h, tag: str, *parts) -> None:
    h.update(tag.encode())
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)


def _hash_value(h, v) -> None:
    """Feed ``v`` (any data value) into the hash ``h``, with its structure."""
    if v is None or isinstance(v, bool):
        _feed(h, "const", repr(v))
    elif isinstance(v, np.ndarray):
        if v.dtype.hasobject:
            _feed(h, "objarray", v.shape)
            for x in v.reshape(-1):
                _hash_value(h, x)
        else:
            _feed(h, "array", v.dtype.str, v.shape, np.ascontiguousarray(v).tobytes())
    elif isinstance(v, np.generic):
        _feed(h, "npscalar", v.dtype.str, np.asarray(v).tobytes())
    elif isinstance(v, str):
        _feed(h, "str", v)
    elif isinstance(v, bytes):
        _feed(h, "bytes", v)
    elif isinstance(v, numbers.Number):
        _feed(h, "number", type(v).__name__, repr(v))
    elif isinstance(v, Mapping):
        items = sorted(v.items(), key=lambda kv: repr(kv[0]))
        _feed(h, "dict", len(items))
        for k, x in items:
            _hash_value(h, k)
            _hash_value(h, x)
    elif isinstance(v, list | tuple):
        _feed(h, type(v).__name__, len(v))
        for x in v:
            _hash_value(h, x)
    else:
        arr = None
        if hasattr(v, "__array__"):
            with contextlib.suppress(Exception):
                arr = np.asarray(v)
        t = type(v)
        if arr is not None and not arr.dtype.hasobject:
            _feed(h, "arraylike", f"{t.__module__}.{t.__qualname__}")
            _hash_value(h, arr)
        else:  # content unknown without pickle: the type only
            _feed(h, "object", f"{t.__module__}.{t.__qualname__}")


def _digest(v) -> str:
    h = hashlib.sha256()
    _hash_value(h, v)
    return h.hexdigest()


def data_fingerprint(data) -> dict:
    """``{"sha256": <hash of the whole>, "parts": {<entry>: <hash>}}`` for a model's data."""
    if isinstance(data, Mapping):
        entries = [(f"data[{k!r}]", x) for k, x in data.items()]
    elif isinstance(data, list | tuple):
        entries = [(f"data[{i}]", x) for i, x in enumerate(data)]
    else:
        entries = [("data", data)]
    parts = {}
    if len(entries) <= _MAX_PARTS:
        parts = {name: _digest(x) for name, x in entries}
    return {"sha256": _digest(data), "parts": parts}


def _latent_decl(spec) -> dict:
    return {
        "kind": type(spec).__name__,
        "shape": [int(s) for s in spec.shape],
        "unit": bool(spec.unit),
        "K": int(spec.K) if getattr(spec, "K", None) is not None else None,
        "support": repr(spec.support),
    }


def model_fingerprint(model) -> dict:
    """What identifies a model without its functions (plain JSON values).

    Returns
    -------
    dict
        ``name``, ``params`` (name -> constraint and shape), ``latents`` (name -> kind, shape,
        unit, K, support) and ``data`` (:func:`data_fingerprint`).
    """
    return {
        "version": FINGERPRINT_VERSION,
        "name": str(model.name),
        "params": {
            n: {"constraint": repr(model.params[n]), "shape": [int(s) for s in model.params[n].shape]}
            for n in model.param_names
        },
        "latents": {n: _latent_decl(model.latents[n]) for n in model.latent_names},
        "data": data_fingerprint(model.data),
    }


def _describe_latent(d) -> str:
    kind = d.get("kind")
    shape = tuple(d.get("shape", ()))
    if kind == "Discrete":
        return f"Discrete(K={d.get('K')}, shape={shape}, unit={d.get('unit')})"
    return f"{kind}({d.get('support')}, shape={shape}, unit={d.get('unit')})"


def _describe_param(d) -> str:
    return f"{d.get('constraint')} of shape {tuple(d.get('shape', ()))}"


def fingerprint_differences(saved, current, source="the checkpoint") -> list[str]:
    """What differs between a stored fingerprint and a model's, in words (empty when equal).

    ``source`` names where ``saved`` comes from (``"the checkpoint"``, ``"the saved result"``).
    A stored fingerprint that is not a well-formed one raises ``ValueError``.
    """
    try:
        if not isinstance(saved, Mapping):
            raise TypeError(f"a {type(saved).__name__}")
        diffs = []
        if saved["name"] != current["name"]:
            diffs.append(f"the model is named {saved['name']!r} in {source} and {current['name']!r} here")
        sp, cp = saved["params"], current["params"]
        for n in sp:
            if n not in cp:
                diffs.append(f"parameter {n!r} is in {source} but not in the model")
            elif sp[n] != cp[n]:
                a, b = sp[n], cp[n]
                if a.get("constraint") != b.get("constraint"):
                    diffs.append(f"parameter {n!r} is {a.get('constraint')} in {source} and "
                                 f"{b.get('constraint')} in the model")
                else:
                    diffs.append(f"parameter {n!r} is {_describe_param(a)} in {source} and "
                                 f"{_describe_param(b)} in the model")
        diffs += [f"the model has parameter {n!r}, which {source} lacks" for n in cp if n not in sp]
        sl, cl = saved["latents"], current["latents"]
        for n in sl:
            if n not in cl:
                diffs.append(f"latent {n!r} is in {source} but not in the model")
            elif sl[n] != cl[n]:
                diffs.append(f"latent {n!r} is {_describe_latent(sl[n])} in {source} and "
                             f"{_describe_latent(cl[n])} in the model")
        diffs += [f"the model has latent {n!r}, which {source} lacks" for n in cl if n not in sl]
        sd, cd = saved["data"], current["data"]
        if sd["sha256"] != cd["sha256"]:
            sparts, cparts = sd.get("parts") or {}, cd.get("parts") or {}
            names = [k for k in sparts if sparts[k] != cparts.get(k)]
            names += [k for k in cparts if k not in sparts]
            if sparts and cparts and names:
                diffs.append(f"the data differ ({', '.join(names)})")
            else:
                diffs.append("the data differ")
        return diffs
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"the model fingerprint stored in {source} is malformed ({exc})") from exc

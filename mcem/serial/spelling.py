"""How each file format spells the nodes of an encoded value (tables, not encoders).

Two spellings exist, one per file format, both frozen by the files already written:

:data:`CHECKPOINT` (``"mcem-checkpoint/1"`` and ``/2``)
    A JSON ``null``, boolean, number (``NaN``/``Infinity`` as JSON extensions) or string is that
    value; otherwise an object with ``"t"``: ``"d"`` (a dict with string keys: ``"v"``, a list
    of ``[key, node]``), ``"l"``/``"tu"`` (a list/tuple: ``"v"``), ``"x"``/``"x0"`` (an inline
    array/numpy scalar: dtype ``"d"``, shape ``"s"``, base64 bytes ``"b"``, ``"f": 1`` for
    Fortran order), ``"a"``/``"a0"`` (an array/numpy scalar in archive entry ``"k"``), ``"s"``
    (a JSON scalar ``"v"``), ``"nt"`` (an allow-listed state class by stable name ``"cls"``,
    fields ``"f"``), ``"rng"`` (a Generator: bit generator ``"bitgen"``, its ``"state"``, the
    seed sequence ``"seq"``).

:data:`RESULT` (``"mcem-result/1"``)
    A JSON ``null``, boolean, finite number or string is that value, a JSON list a list;
    otherwise an object with ``"$t"``: ``"array"`` (archive entry ``"key"``, ``"scalar": true``
    for a numpy scalar), ``"float"`` (``"v"``: ``"nan"``, ``"inf"``, ``"-inf"``), ``"complex"``
    (``"re"``, ``"im"``), ``"tuple"`` (``"items"``), ``"dict"`` (``"keys"`` and ``"values"``,
    keys of any plain type), ``"repr"`` (the ``repr`` ``"v"`` of a value stored without pickle,
    its type ``"type"``), ``"history"`` (a :class:`~mcem.History` as a table of columns: see
    :mod:`mcem.serial.table`).

A spelling says which optional kinds of node its format has (:attr:`kinds`), writes each kind
and reads a node back into ``(kind, *parts)`` for :class:`mcem.serial.codec.Decoder`; the walk
over the values, the arrays, the allow-list and every check are shared code.
"""

from __future__ import annotations

__all__ = ["CHECKPOINT", "RESULT", "MalformedNode", "at"]


class MalformedNode(ValueError):
    """A node of a file that is not what its format writes; the message names where it is."""


def at(where: str) -> str:
    return where or "the root"


def _container(node, key, where, what):
    v = node.get(key)
    if not isinstance(v, list):
        raise MalformedNode(f"{at(where)} is a {what} node without a list of {key!r}")
    return v


class _Checkpoint:
    name = "checkpoint"
    kinds = frozenset({"inline", "generator", "state"})
    hint = " (checkpoints take plain options: numbers, strings, lists and dicts of them)"

    # -- writing
    @staticmethod
    def array(key, scalar):
        return {"t": "a0" if scalar else "a", "k": key}

    @staticmethod
    def inline(dtype, shape, data, fortran, scalar):
        node = {"t": "x0" if scalar else "x", "d": dtype, "s": shape, "b": data}
        if fortran:
            node["f"] = 1
        return node

    @staticmethod
    def nonfinite(v):
        return v  # JSON NaN / Infinity

    @staticmethod
    def sequence(items, is_list):
        return {"t": "l" if is_list else "tu", "v": items}

    @staticmethod
    def check_keys(obj, where):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"checkpoint: {where} has non-string keys")

    @staticmethod
    def mapping(items):
        return {"t": "d", "v": items}

    @staticmethod
    def generator(name, state, seq):
        return {"t": "rng", "bitgen": name, "state": state, "seq": seq}

    @staticmethod
    def state(name, fields):
        return {"t": "nt", "cls": name, "f": fields}

    # -- reading
    @staticmethod
    def read(node, where):
        if not isinstance(node, dict):
            raise MalformedNode(f"{at(where)} is not a checkpoint node (a JSON {type(node).__name__})")
        t = node.get("t")
        if t in ("a", "a0"):
            return "array", node.get("k"), t == "a0"
        if t in ("x", "x0"):
            return "inline", node, t == "x0"
        if t == "s":
            v = node.get("v")
            if v is not None and not isinstance(v, bool | int | float | str):
                raise MalformedNode(f"{at(where)} is a scalar node holding a JSON {type(v).__name__}")
            return "value", v
        if t == "d":
            items = _container(node, "v", where, "dict")
            for item in items:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                    raise MalformedNode(f"{at(where)} has a malformed dict item")
            return "dict", items
        if t in ("l", "tu"):
            return "list" if t == "l" else "tuple", _container(node, "v", where, "list")
        if t == "nt":
            return "state", node.get("cls"), node.get("f")
        if t == "rng":
            return "generator", node
        raise MalformedNode(f"{at(where)} has an unknown node type {t!r}")


class _Result:
    name = "result"
    kinds = frozenset({"complex", "history", "repr"})
    hint = ""
    _NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}

    # -- writing
    @staticmethod
    def array(key, scalar):
        node = {"$t": "array", "key": key}
        if scalar:
            node["scalar"] = True
        return node

    @staticmethod
    def nonfinite(v):
        return {"$t": "float", "v": "nan" if v != v else ("inf" if v > 0 else "-inf")}

    @staticmethod
    def complex(re, im):
        return {"$t": "complex", "re": re, "im": im}

    @staticmethod
    def sequence(items, is_list):
        return items if is_list else {"$t": "tuple", "items": items}

    @staticmethod
    def check_keys(obj, where):
        for k in obj:
            if k is not None and not isinstance(k, str | int | float | bool | tuple):
                raise TypeError(f"{where}: cannot store a dict key of type {type(k).__name__}: {k!r}")

    @staticmethod
    def mapping(items):
        return {"$t": "dict", "keys": [k for k, _ in items], "values": [v for _, v in items]}

    @staticmethod
    def repr(type_name, text):
        return {"$t": "repr", "type": type_name, "v": text}

    @staticmethod
    def history(n_rows, layout, key_orders, row_order):
        return {"$t": "history", "n_rows": n_rows, "layout": layout, "key_orders": key_orders,
                "row_order": row_order}

    # -- reading
    @classmethod
    def read(cls, node, where):
        if isinstance(node, list):
            return "list", node
        if not isinstance(node, dict):
            raise MalformedNode(f"{at(where)} is not a result node (a JSON {type(node).__name__})")
        t = node.get("$t")
        if t == "array":
            return "array", node.get("key"), bool(node.get("scalar"))
        if t == "float":
            v = node.get("v")
            if not (isinstance(v, str) and v in cls._NONFINITE):
                raise MalformedNode(f"{at(where)} is a float node holding {v!r}")
            return "value", cls._NONFINITE[v]
        if t == "complex":
            return "complex", node.get("re"), node.get("im")
        if t == "tuple":
            return "tuple", _container(node, "items", where, "tuple")
        if t == "dict":
            keys, values = _container(node, "keys", where, "dict"), _container(node, "values", where, "dict")
            if len(keys) != len(values):
                raise MalformedNode(f"{at(where)} is a dict node of {len(keys)} keys and {len(values)} values")
            return "dict", list(zip(keys, values, strict=True))
        if t == "repr":
            v = node.get("v")
            if not isinstance(v, str):
                raise MalformedNode(f"{at(where)} is a repr node without its text")
            return "value", v
        if t == "history":
            return "history", node
        raise MalformedNode(f"{at(where)} has an unknown node type {t!r}")


#: The node spelling of checkpoints (and their history chunks).
CHECKPOINT = _Checkpoint()
#: The node spelling of saved results.
RESULT = _Result()

"""One warning per problem per fit.

A Monte Carlo fit can meet the same problem at every iteration (a large R-hat, a collapsed
acceptance rate). :class:`WarningLog` gathers the warnings raised while a fit runs and, when the
fit ends, issues one warning per problem: the problem is the warning's ``key`` (see
:mod:`mcem.exceptions`) or, for a warning without a key, its category and text. A problem met
once is re-issued as it was; one met several times is issued once with the count, the
iterations affected and the worst value. Every occurrence is kept in :attr:`WarningLog.records`
(the fit's ``warnings_record``), and the keys met during an iteration go into that iteration's
history row (column ``warnings``).

Filters apply as usual: a warning that the caller's filters turn into an error still raises at
once, and an ignored one is not recorded. Fits that overlap, nested (a fit inside a callback) or
in several threads of one process, share one catcher: nothing is lost, but a warning may be
recorded by the log of another fit that runs at the same time.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import warnings

from .exceptions import _KeyedWarning

__all__ = ["WarningLog", "active_log"]

_LOCK = threading.Lock()
_SHARED: dict = {"depth": 0, "catcher": None, "buffer": None}
_ACTIVE: contextvars.ContextVar[WarningLog | None] = contextvars.ContextVar("mcem_warning_log", default=None)


def active_log() -> WarningLog | None:
    """The log of the fit running in this context, if any."""
    return _ACTIVE.get()


class WarningLog:
    """Context manager gathering the warnings of one fit (see the module docstring)."""

    def __init__(self):
        self.records: list[dict] = []
        self.iteration = 0
        self._pending: list[str] = []

    def __enter__(self):
        with _LOCK:  # one catcher for the process: logs that overlap (threads, nesting) share it
            if _SHARED["depth"] == 0:
                _SHARED["catcher"] = warnings.catch_warnings(record=True)
                _SHARED["buffer"] = _SHARED["catcher"].__enter__()
                # every occurrence counts (the default action would show an identical text
                # once); appended, so that the caller's own filters still come first
                warnings.simplefilter("always", _KeyedWarning, append=True)
            _SHARED["depth"] += 1
        self._token = _ACTIVE.set(self)
        return self

    def set_iteration(self, it: int) -> list[str]:
        """Attribute what was raised so far to iteration ``it``; return the problems it met."""
        self._drain(it)
        self.iteration = it
        met, self._pending = self._pending, []
        return list(dict.fromkeys(met))

    def _drain(self, it):
        with _LOCK:
            taken = list(_SHARED["buffer"] or [])
            if _SHARED["buffer"] is not None:
                _SHARED["buffer"].clear()
        for w in taken:
            msg = w.message
            key = getattr(msg, "key", None)
            value = getattr(msg, "value", None)
            problem = key if key is not None else f"{w.category.__name__}: {msg}"
            self.records.append({
                "iteration": it, "category": w.category.__name__, "key": problem,
                "value": value, "worse": getattr(msg, "worse", None), "message": str(msg),
                "_w": w,
            })
            if key is not None:
                self._pending.append(key)

    def __exit__(self, *exc):
        self._drain(self.iteration + 1)
        _ACTIVE.reset(self._token)
        with _LOCK:
            _SHARED["depth"] -= 1
            if _SHARED["depth"] == 0:
                _SHARED["catcher"].__exit__(*exc)
                _SHARED["catcher"] = _SHARED["buffer"] = None
        self._reissue()
        for r in self.records:
            r.pop("_w", None)
        return False

    def _reissue(self):
        groups: dict[tuple, list[dict]] = {}
        for r in self.records:
            groups.setdefault((r["category"], r["key"]), []).append(r)
        for rows in groups.values():
            first = rows[0]["_w"]
            if len(rows) == 1:
                text = first.message
            else:
                text = _summary(rows)
                text = first.category(text, key=rows[0]["key"], value=_worst(rows),
                                      worse=rows[0]["worse"]) if _keyed(first.category) else first.category(text)
            warnings.warn_explicit(text, first.category, first.filename, first.lineno,
                                   module=_module_of(first.filename))


def _keyed(category) -> bool:
    return issubclass(category, _KeyedWarning)


def _worst(rows):
    worse = rows[0]["worse"]
    vals = [r["value"] for r in rows if isinstance(r["value"], int | float) and r["value"] == r["value"]]
    if not vals or worse not in ("high", "low"):
        return None
    return max(vals) if worse == "high" else min(vals)


def _iters(its) -> str:
    its = sorted(set(its))
    if len(its) <= 10:
        return ", ".join(map(str, its))
    return f"{', '.join(map(str, its[:3]))}, ..., {', '.join(map(str, its[-2:]))}"


def _summary(rows) -> str:
    worst = _worst(rows)
    its = [r["iteration"] for r in rows]
    where = f"in {len(set(its))} iteration(s) ({_iters(its)})"
    text = f"{rows[0]['message']} [met {len(rows)} times {where}"
    if worst is not None:
        text += f"; worst value {worst:.4g}"
    return text + "; every occurrence is in the result's warnings_record]"


def _module_of(filename: str) -> str:
    """The name of the module that raised a warning (so that module filters match as they did
    when it was first raised): the loaded module with that file, or a name read off the path."""
    for name, mod in list(sys.modules.items()):
        if getattr(mod, "__file__", None) == filename:
            return name
    name = filename.replace("\\", "/")
    if name.endswith(".py"):
        name = name[:-3]
    parts = name.split("/")
    if "mcem" in parts:
        parts = parts[len(parts) - 1 - parts[::-1].index("mcem"):]
    return ".".join(parts)

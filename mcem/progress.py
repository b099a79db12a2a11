"""The progress display of a fit: the iteration, the sample size and the stopping rule's measure
against its target, on one line that stays when the fit ends.

A fit stops when its rule says so, mostly long before ``max_iter``, so the display has no total
and no percentage: it shows what the rule compares, for example::

    mcem[mcem] iter 12 | m 400 | MC error 0.31 SE -> 0.1 | distance 0.8 SE -> 0.05 [00:03, 3.9it/s]

:data:`RULES` maps each method (and the variant of its rule, :func:`variant`) to the measures it
compares with ``tol``: the history column (or the function of two consecutive history rows) that
holds the measure, and the factor of ``tol`` that is its target. The same table gives the
figures' stopping-rule panel (:func:`measure_path`). tqdm draws the line (imported only when a
display is shown).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

__all__ = ["Measure", "RULES", "Progress", "variant", "rule_measures", "measure_value", "measure_path",
           "format_value", "stop_words"]


class Measure(NamedTuple):
    """One quantity a stopping rule compares with its target ``factor * tol``.

    ``source`` is a history column or a function ``(row, previous_row, model) -> float``;
    ``unit`` is printed after the value (``" SE"``: standard errors of the estimate).
    """

    label: str
    source: str | Callable
    factor: float
    unit: str = ""


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _relative_loglik_change(row, prev, model):
    """``|l_t - l_{t-1}| / max(1, |l_t|)``: exact EM's rule (:mod:`mcem.algorithms.em`)."""
    if prev is None:
        return math.nan
    ll, ll0 = _float(row.get("loglik")), _float(prev.get("loglik"))
    return abs(ll - ll0) / max(1.0, abs(ll)) if math.isfinite(ll) and math.isfinite(ll0) else math.nan


def _unconstrained(model, row, prev):
    if prev is None or model is None:
        return None, None
    try:
        return model.to_unconstrained(row["params"]), model.to_unconstrained(prev["params"])
    except (KeyError, TypeError, ValueError):
        return None, None


def _em_parameter_change(row, prev, model):
    """``max |u_t - u_{t-1}| / (1 + max |u_t|)`` on the unconstrained scale: exact EM's rule for a
    model without a log-likelihood."""
    u, u0 = _unconstrained(model, row, prev)
    if u is None:
        return math.nan
    return float(np.max(np.abs(u - u0), initial=0.0) / (1.0 + np.max(np.abs(u), initial=0.0)))


def _relative_parameter_change(row, prev, model):
    """``max |u_t - u_{t-1}| / (|u_{t-1}| + 1e-3)``: the ``stop="relative"`` rule of MCEM and SAEM."""
    u, u0 = _unconstrained(model, row, prev)
    if u is None:
        return math.nan
    return float(np.max(np.abs(u - u0) / (np.abs(u0) + 1e-3), initial=0.0))


_LOGLIK_CHANGE = (Measure("relative log-lik change", _relative_loglik_change, 1.0),)
_PARAM_CHANGE = (Measure("relative parameter change", _em_parameter_change, 1.0),)
_RELATIVE = (Measure("relative parameter change", _relative_parameter_change, 1.0),)
# the Monte Carlo error of the estimate and the distance EM still has to go, in standard errors
_PRECISION = (Measure("MC error", "mc_ratio", 1.0, " SE"), Measure("distance", "distance", 0.5, " SE"))

#: method -> rule variant -> the measures its stopping rule compares with ``factor * tol``.
RULES: dict[str, dict[str, tuple[Measure, ...]]] = {
    "em": {"loglik": _LOGLIK_CHANGE, "params": _PARAM_CHANGE},
    "mcem": {"precision": _PRECISION,
             "ascent": (Measure("delta-Q upper bound", "upper", 1.0),),
             "relative": _RELATIVE},
    "saem": {"precision": _PRECISION, "relative": _RELATIVE},
    "gem": {"exact": _LOGLIK_CHANGE, "mc": _PRECISION},
    "vbem": {"categorical": _LOGLIK_CHANGE, "gaussian": _PRECISION},
}


def variant(method, settings, first_row=None):
    """The variant of ``method``'s stopping rule (a key of ``RULES[method]``) from its settings;
    None for a method :data:`RULES` does not know."""
    settings = settings or {}
    if method == "em":
        ll = _float((first_row or {}).get("loglik"))
        return "loglik" if math.isfinite(ll) or first_row is None else "params"
    if method in ("mcem", "saem"):
        return settings.get("stop", "precision")
    if method == "gem":
        return settings.get("estep", "mc")
    if method == "vbem":
        return "categorical" if settings.get("family") == "categorical" else "gaussian"
    return None


def rule_measures(method, settings, first_row=None) -> tuple:
    """``(measures, tol)``: the :class:`Measure` tuple of ``method``'s rule (empty when unknown)
    and the ``tol`` its targets are fractions of (None when the settings lack it)."""
    measures = RULES.get(method, {}).get(variant(method, settings, first_row), ())
    tol = (settings or {}).get("tol")
    return measures, (None if tol is None else float(tol))


def measure_value(measure, row, prev=None, model=None) -> float:
    """The value of ``measure`` at history row ``row`` (NaN where it was not measured)."""
    if callable(measure.source):
        return float(measure.source(row, prev, model))
    return _float(row.get(measure.source))


def measure_path(measure, rows, model=None) -> np.ndarray:
    """The value of ``measure`` at every history row (NaN at row 0 and where not measured)."""
    out = np.full(len(rows), np.nan)
    for t in range(1, len(rows)):
        out[t] = measure_value(measure, rows[t], rows[t - 1], model)
    return out


def format_value(v) -> str:
    """A number in two significant digits; ``--`` when it is missing (NaN)."""
    v = _float(v)
    if math.isnan(v):
        return "--"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.2g}"


def stop_words(stop) -> str:
    """``"converged (tol)"`` or ``"stopped: max_iter"``: how a run ended, for the display's last line."""
    return f"converged ({stop.stopped_by})" if stop.converged else f"stopped: {stop.stopped_by}"


class Progress:
    """The progress line of one run (used by :class:`mcem.algorithms.loop.Loop`).

    Each measure shows its last measured value (``--`` before the first: MCEM measures where the
    ascent may be insignificant, SAEM at its checks). :meth:`close` writes the final state with
    how the run ended and keeps the line.

    Parameters
    ----------
    method : str
        The method's name (a key of :data:`RULES`).
    settings : dict
        The run's settings (``tol``, ``stop``, ...): they select the rule and its targets.
    model : Model, optional
        For the measures computed from the parameters (the relative parameter changes).
    show : bool or None
        Draw the line; None: only when stderr is a terminal.
    file : file-like, optional
        Where tqdm writes (default stderr).
    """

    def __init__(self, method, settings, model=None, *, show=None, file=None):
        self.method = str(method)
        self.settings = dict(settings or {})
        self.model = model
        self.measures, self.tol = None, None
        self.values = {}  # measure label -> its last measured value
        self.row = None
        self.bar = None
        if show is None:
            stream = file if file is not None else sys.stderr
            show = bool(getattr(stream, "isatty", lambda: False)())
        if show:
            if file is None:
                from tqdm.auto import tqdm
            else:  # a given stream gets the text bar, also inside a notebook
                from tqdm import tqdm
            self.bar = tqdm(total=None, desc=self.text(), leave=True, file=file, unit="it",
                            bar_format="{desc} [{elapsed}, {rate_fmt}]")

    def update(self, row: Mapping, prev: Mapping | None = None) -> None:
        """Take history row ``row`` (``prev``: the row before it) and redraw when due (nothing to
        do without a display)."""
        if self.bar is None:
            return
        if self.measures is None:
            self.measures, self.tol = rule_measures(self.method, self.settings, row)
        self.row = row
        for ms in self.measures:
            v = measure_value(ms, row, prev, self.model)
            if not math.isnan(v):
                self.values[ms.label] = v
        self.bar.set_description_str(self.text(), refresh=False)
        it = int(row.get("iter", self.bar.n))
        if it > self.bar.n:
            self.bar.update(it - self.bar.n)
        else:
            self.bar.refresh()

    def text(self, stop=None, note=None) -> str:
        """The line: method, iteration, sample size, each measure against its target, and (with
        ``stop``, a :class:`mcem.algorithms.loop.Stop`) how the run ended, with ``note``."""
        row = self.row or {}
        parts = [f"mcem[{self.method}] iter {int(row.get('iter', 0))}"]
        m = _float(row.get("m"))
        if math.isfinite(m) and m > 0:
            parts.append(f"m {int(m)}")
        burn = self.settings.get("burn_iter")
        if self.method == "saem" and burn and 0 < int(row.get("iter", 0)) <= burn:
            parts.append(f"burn-in {int(row['iter'])}/{burn}")
        for ms in self.measures or ():
            target = "" if self.tol is None else f" -> {ms.factor * self.tol:g}"
            v = self.values.get(ms.label)
            parts.append(f"{ms.label} {format_value(v)}{ms.unit if v is not None else ''}{target}")
        ll = _float(row.get("loglik"))
        if math.isfinite(ll):
            parts.append(f"loglik {ll:.6g}")
        elif math.isfinite(_float(row.get("elbo"))):
            parts.append(f"bound {_float(row['elbo']):.6g}")
        if stop is not None:
            parts.append(stop_words(stop) + (f"; {note}" if note else ""))
        return " | ".join(parts)

    def close(self, stop=None, note=None) -> None:
        """Draw the final state with how the run ended (and ``note``) and keep the line."""
        if self.bar is None:
            return
        self.bar.set_description_str(self.text(stop, note), refresh=False)
        self.bar.close()
        self.bar = None

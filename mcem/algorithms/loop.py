"""The loop every fitting algorithm shares.

A method is a module with a few functions on an explicit state (a ``NamedTuple`` with at least
``t``, the last completed iteration, and ``theta``), in the manner of blackjax's kernels::

    NAME = "mcem"                       # the name fit() knows it by
    USES_ESTEP = True                   # its options include mcem.EStep's (n_chains, burn, ...)
    State = NamedTuple(...)             # everything a checkpoint needs to continue exactly

    def configure(model, *, max_iter, tol, **options) -> Config     # validate, build the E step
    def init(cfg, model, theta, rng) -> (State, row0)              # iteration 0
    def step(cfg, model, state) -> (State, row, Stop | None)        # one iteration
    def advance(cfg, model, state) -> State                         # optional: before the next one
    def finish(cfg, model, state, stop, history) -> (theta, Stop, extra)

:func:`run` drives it: the history row of every iteration, the callback, the progress display,
the checkpoint after completed iterations (at most once per ``checkpoint_every`` seconds, 1.0
by default, 0 for every iteration, and always at max_iter), :func:`mcem.resume` from one, Ctrl-C
(the partial result of the last completed iteration), an update the method could not use (the run
stops with the last valid parameters, ``stopped_by="invalid_update"``), ``max_iter``, and the
warnings of the whole run gathered into one per problem (:mod:`mcem._warnlog`). ``step``
returns a :class:`Stop` when its own rule ends the run; the loop owns every other way to end.
"""

from __future__ import annotations

import os
import time
import warnings
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from .._validation import check_positive_float
from .._warnlog import WarningLog, active_log
from ..checkpoint import Checkpointer
from ..exceptions import ConvergenceWarning
from ..inference import degeneracy
from ..progress import Progress
from ..result import FitResult, History

__all__ = ["Stop", "Config", "Loop", "run", "checked_update"]


class Stop(NamedTuple):
    """Why a run ended: ``stopped_by`` ("tol", "max_iter", "callback", "interrupted",
    "invalid_update", ...), whether that is convergence, and the message for the result."""

    stopped_by: str
    converged: bool
    message: str


class Config(SimpleNamespace):
    """A method's validated options; ``max_iter`` and ``settings`` (recorded in the result) are
    always there."""


def checked_update(model, new, where="the M step's result"):
    """``(theta, None)`` with ``new`` checked, or ``(None, why)`` when it cannot be used (NaN,
    infinite, outside a constraint): an M step's result is never used unchecked."""
    try:
        return model.check_theta(new, where), None
    except (ValueError, TypeError) as exc:
        return None, str(exc)


def invalid(t, why) -> Stop:
    """The stop of an iteration whose update cannot be used."""
    return Stop("invalid_update", False,
                f"stopped at iteration {t}: {why}; the result holds the last valid parameters (iteration {t - 1})")


class Loop:
    """Bookkeeping of one run: history, timing, callback, progress display (:mod:`mcem.progress`)."""

    def __init__(self, model, method, max_iter, callback, progress, settings):
        self.model = model
        self.method = method
        self.max_iter = max_iter
        self.callback = callback
        self.history = History()
        self.settings = settings
        self.t_start = time.perf_counter()
        self._t_last = self.t_start
        # the iteration, m and the stopping rule's measure against its target; no total
        self.progress = Progress(method, settings, model, show=progress)

    def record(self, it, theta, **values) -> bool:
        """Append a history row; return True when the callback asks to stop."""
        now = time.perf_counter()
        row = {"iter": it, "params": {k: np.array(v) for k, v in theta.items()}}
        row.update(values)
        log = active_log()
        if log is not None:
            met = log.set_iteration(it)
            if met:
                row["warnings"] = ", ".join(met)
        row["seconds"] = now - self._t_last
        self._t_last = now
        self.history.append(row)
        self.progress.update(row, self.history[-2] if len(self.history) > 1 else None)
        if self.callback is not None and it > 0:
            return bool(self.callback(dict(row)))
        return False

    def finish(self, theta, stop: Stop, **extra) -> FitResult:
        problems = degeneracy(self.model, theta)
        # the last line stays: the final state and how the run ended
        self.progress.close(stop._replace(converged=False) if problems else stop,
                            note="degenerate fit" if problems else None)
        if stop.stopped_by == "max_iter":
            warnings.warn(
                ConvergenceWarning(f"{self.method}: stopped at max_iter={self.max_iter} without converging; "
                                   "increase max_iter or loosen tol", key="max_iter"),
                stacklevel=4,
            )
        if problems:  # a boundary estimate: standard errors do not apply there
            note = ("degenerate fit: " + "; ".join(problems[:3])
                    + (f"; and {len(problems) - 3} more" if len(problems) > 3 else ""))
            warnings.warn(ConvergenceWarning(f"{self.method}: {note}", key="degenerate_fit", value=len(problems)),
                          stacklevel=4)
            stop = stop._replace(converged=False, message=f"{stop.message}; not converged to an interior maximum: {note}")
        res = FitResult(
            params={k: np.array(v) for k, v in theta.items()},
            converged=bool(stop.converged),
            n_iter=len(self.history) - 1,
            message=stop.message,
            stopped_by=stop.stopped_by,
            method=self.method,
            loglik=extra.pop("loglik", None),
            history=self.history,
            seconds=time.perf_counter() - self.t_start,
            settings=dict(self.settings),
            model_name=self.model.name,
        )
        inference = extra.pop("_inference", None)
        res.update(extra)
        res["degenerate"] = problems
        if inference is not None:  # computed on the final draws already: the result's cache
            res.__dict__["_inference"] = {"auto": inference, "louis": inference}
            res["se_problems"] = list(inference.problems)
        object.__setattr__(res, "_model", self.model)  # for standard errors; not part of the data
        return res


def _stored_options(options, max_iter, tol):
    """The options of a run as given, for its checkpoint (executors are never stored)."""
    out = {"max_iter": max_iter, "tol": tol}
    out.update({k: v for k, v in options.items() if k != "executor"})
    return out


def run(method, model, theta, *, rng, max_iter, tol, callback, progress, checkpoint=None, _resume=None,
        **options):
    """Run ``method`` (a method module, see the module docstring) with its warnings gathered."""
    with WarningLog() as log:
        res = _run(method, model, theta, rng=rng, max_iter=max_iter, tol=tol, callback=callback,
                   progress=progress, checkpoint=checkpoint, _resume=_resume, **options)
    res["warnings_record"] = log.records
    return res


def _checkpointer(path, model, name, stored):
    if path is None:
        return None
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"checkpoint must be a file path (str or os.PathLike) or None, got {type(path).__name__} {path!r}")
    if os.fspath(path) == "":
        raise ValueError("checkpoint must be a file path, got the empty string ''")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint must be a file path, got {os.fspath(path)!r}, which is a directory")
    return Checkpointer(path, model, name, stored)


def _run(method, model, theta, *, rng, max_iter, tol, callback, progress, checkpoint, _resume,
         checkpoint_every=1.0, **options):
    stored = _stored_options(options, max_iter, tol)
    cfg = method.configure(model, max_iter=max_iter, tol=tol, **options)
    ckpt = _checkpointer(checkpoint, model, method.NAME, stored)
    every = check_positive_float(checkpoint_every, "checkpoint_every", allow_zero=True)
    last_save = -np.inf
    loop = Loop(model, method.NAME, cfg.max_iter, callback, progress, cfg.settings)
    if _resume is None:
        st, row0 = method.init(cfg, model, theta, rng)
        loop.record(0, st.theta, **row0)
    else:
        loop.history = History(_resume["history"])
        st = method.State(**dict(_resume["loop"]))
    advance = getattr(method, "advance", None)
    stop, done = None, st  # done: the state after the last completed iteration
    saved = st if _resume is not None else None  # the state the checkpoint file holds
    try:
        while st.t < cfg.max_iter:
            new, row, stop = method.step(cfg, model, st)
            if stop is not None and stop.stopped_by == "invalid_update":
                warnings.warn(ConvergenceWarning(f"{method.NAME}: {stop.message}", key="invalid_update"),
                              stacklevel=4)
                break  # the iteration is not recorded: the state stays at the last valid one
            st = new
            asked = loop.record(st.t, st.theta, **row)
            if stop is not None:
                break
            if asked:
                stop = Stop("callback", False, "stopped by the callback")
                break
            if advance is not None:
                st = advance(cfg, model, st)
            done = st
            if ckpt is not None and time.monotonic() - last_save >= every:
                ckpt.save(done._asdict(), loop.history)
                last_save, saved = time.monotonic(), done
        if ckpt is not None and stop is None and saved is not done:  # current at max_iter, to go on
            ckpt.save(done._asdict(), loop.history)
    except KeyboardInterrupt:
        # no write here: the interrupted iteration may have used part of the random stream that
        # `done` shares, so the file keeps the last state written at the end of an iteration
        loop.history.truncate(done.t + 1)
        stop = Stop("interrupted", False,
                    f"interrupted after iteration {done.t}: the result holds the last completed iteration")
        theta, extra = method.interrupted(cfg, model, done)
        return loop.finish(theta, stop, **extra)
    if stop is None:
        stop = Stop("max_iter", False, f"reached max_iter={cfg.max_iter}")
    theta, stop, extra = method.finish(cfg, model, st, stop, loop.history)
    return loop.finish(theta, stop, **extra)

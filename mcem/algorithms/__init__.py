"""The fitting algorithms of :func:`mcem.fit`: one shared loop and one small module per method.

:mod:`mcem.algorithms.loop` holds what every method shares (history, checkpoints, Ctrl-C,
progress, callback, stopping, warnings); each method is a module with the same few functions on
an explicit state (see the loop's docstring): :mod:`~mcem.algorithms.em` (exact EM),
:mod:`~mcem.algorithms.mcem` (Monte Carlo EM), :mod:`~mcem.algorithms.saem` (stochastic
approximation EM), :mod:`~mcem.algorithms.gem` (generalized EM) and :mod:`~mcem.algorithms.vbem` (variational-Bayes
EM).
:mod:`~mcem.algorithms.registry` names them (adding a method is one module and one line there)
and :mod:`~mcem.algorithms.resume` continues a run from its checkpoint.
"""

from __future__ import annotations

from . import em, gem, loop, saem, vbem
from . import mcem as mcem_
from .registry import METHODS, Runner
from .resume import resume

__all__ = ["METHODS", "Runner", "resume", "loop", "em", "gem", "saem", "vbem"]

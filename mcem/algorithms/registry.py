"""The methods :func:`mcem.fit` knows, by name: adding a method is one module and one line here."""

from __future__ import annotations

import inspect

from . import em, gem, loop, saem, vbem
from . import mcem as mcem_
from .common import estep_option_names

__all__ = ["METHODS", "Runner"]


class Runner:
    """A method module made callable as ``runner(model, theta, *, rng, max_iter, tol, callback,
    progress, checkpoint=None, **options)`` (what :func:`mcem.fit` and :func:`mcem.resume` call)."""

    def __init__(self, module):
        self.module = module
        self.name = module.NAME

    def __call__(self, model, theta, **kwargs):
        return loop.run(self.module, model, theta, **kwargs)

    def option_names(self) -> list:
        """The options this method takes besides the common ones (and mcem.EStep's, where used)."""
        params = inspect.signature(self.module.configure).parameters
        names = [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY and n not in ("max_iter", "tol")]
        names += ["checkpoint", "checkpoint_every"]
        if self.module.USES_ESTEP:
            names += estep_option_names()
        return names

    def __repr__(self):
        return f"Runner({self.name!r})"


#: Fitting algorithms by name: the registry :func:`mcem.fit` dispatches on.
METHODS = {m.NAME: Runner(m) for m in (em, mcem_, saem, gem, vbem)}

"""The core contract: a model's parameters, latents and vectorised log joint.

:class:`Model` (:mod:`mcem.core.model`) holds the declaration; the latent specifications
:class:`Discrete` and :class:`Continuous` are in :mod:`mcem.core.latents`; the checks of a
declaration in :mod:`mcem.core.declaration`; blocks of units in :mod:`mcem.core.subset`; and
:meth:`Model.check`, which probes every batch layout the package uses, in :mod:`mcem.core.check`.
The model language (:mod:`mcem.lang`, the decorator ``mcem.model``) compiles to a :class:`Model`.
"""

from __future__ import annotations

from .chains import Chain
from .check import CheckReport
from .latents import Continuous, Discrete, LatentSpec
from .model import Model

__all__ = ["Chain", "CheckReport", "Continuous", "Discrete", "LatentSpec", "Model"]

"""The model language (``@mcem.model``); it lives in :mod:`mcem.lang`, re-exported here."""

from .lang import ModelBuilder, model

__all__ = ["model", "ModelBuilder"]

"""Building a Monte Carlo E step: :func:`make_estep` returns an :class:`~mcem.EStep`, or a
:class:`~mcem.ShardedEStep` when ``shards=`` is given.

It sits above both classes (:mod:`mcem.estep` and :mod:`mcem.distributed`), so neither imports
the other's builder::

    es = make_estep(model, n_chains=4)                          # EStep
    es = make_estep(model, shards=4, executor=pool, n_chains=4)  # ShardedEStep
"""

from __future__ import annotations

import inspect

from .distributed import ShardedEStep
from .estep import EStep

__all__ = ["make_estep", "estep_option_names"]


def make_estep(model, sampler="auto", *, shards=None, executor=None, **options):
    """The E step for ``model``: an :class:`~mcem.EStep`, or a :class:`~mcem.ShardedEStep`.

    Parameters
    ----------
    model : Model
    sampler : str, kernel, Compose or dict
        As for :class:`mcem.EStep`.
    shards : int, optional
        Split the latent units into this many blocks and sample each block on its own (the
        model needs :meth:`mcem.Model.subset`); the result is then a
        :class:`mcem.ShardedEStep`. The draws depend on the seed and on ``shards``, not on the
        executor.
    executor : concurrent.futures.Executor, optional
        Run the blocks on it: a ``ProcessPoolExecutor``, or Dask's ``client.get_executor()``.
        Needs ``shards``.
    **options
        The keywords of :class:`mcem.EStep` (``n_chains``, ``burn``, ``warm_burn``, ``thin``,
        ``sampler_options``, ``warn``, ``min_acceptance``, ``max_rhat``, ``rhat_min_draws``).

    Returns
    -------
    EStep or ShardedEStep
    """
    if shards is None and executor is None:
        return EStep(model, sampler, **options)
    return ShardedEStep(model, sampler, shards=shards, executor=executor, **options)


def estep_option_names() -> list:
    """The keywords :func:`make_estep` takes besides ``model`` and ``sampler``: those of
    :class:`mcem.EStep`, then ``shards`` and ``executor``."""
    params = inspect.signature(EStep.__init__).parameters.values()
    return [p.name for p in params if p.kind == p.KEYWORD_ONLY] + ["shards", "executor"]

"""The sharded E step: blocks of latent units sampled in parallel on any executor.

When the latent units are conditionally independent given theta (a random-effects model, a
mixture), the E step factors over blocks of units. :class:`ShardedEStep` splits the units into
``shards`` contiguous blocks, builds each block's model with :meth:`mcem.Model.subset` and runs
one ordinary :class:`mcem.EStep` per block, on

- no executor: in this process, one block after the other;
- a :class:`concurrent.futures.ProcessPoolExecutor` (or any ``concurrent.futures.Executor``);
- Dask: ``dask.distributed.Client(...).get_executor()``, for clusters (``pip install mcem[dask]``).

Each block draws from its own generator, spawned from the E step's ``rng`` at every run, and
keeps its own chain state and proposal adaptation. The draws therefore depend on the seed and
on the number of shards, never on the executor, the number of workers or the order in which
the blocks finish: the same fit serially, on a process pool and on a Dask cluster is the same
to the last bit.

Use it through :func:`mcem.fit` (``shards=4, executor=pool``) or directly::

    with ProcessPoolExecutor(2) as pool:
        es = mcem.ShardedEStep(model, shards=2, executor=pool)
        state = es.init(theta, rng)
        res = es.run(theta, state, n_draws=100, rng=rng)

Models and their data travel to the workers pickled: with ``cloudpickle`` when it is installed
(it comes with Dask, ``pip install "mcem[dask]"``), which pickles closures and so the models
compiled by :func:`mcem.model`; otherwise with :mod:`pickle`, which needs module-level functions
(the ready-made models have them). Each worker keeps the blocks it has seen (those of the
two latest sharded E steps); a block goes out with its data the first time and again only to a
worker that lacks it, otherwise only the parameters and the chain states move. With a
``ProcessPoolExecutor`` the workers write their draws into memory-mapped files (in
``/dev/shm`` where there is one) instead of sending them back through a pipe; without room
there the draws come back through the executor. With ``keep=False`` and a reducer (streamed
MCEM), the blocks' draws of one run still come back to the driver, so sharding keeps the
memory of one run's draws.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

import numpy as np

from ._validation import as_generator, check_positive_int, with_context
from .estep import EStep, EStepResult, EStepState
from .core import Model
from .core.subset import check_additive, shard_units

__all__ = ["ShardedEStep", "ShardedState", "shard_units", "check_additive"]


class ShardedState(NamedTuple):
    """The chain states of every block of units, in block order."""

    shard_states: tuple
    n_runs: int = 0

    @property
    def z(self) -> dict:
        """Current latents of the whole model, dict name -> ``(chains, *latent_shape)``."""
        parts = [s.z for s in self.shard_states]
        return {n: np.concatenate([p[n] for p in parts], axis=1) for n in parts[0]}


# ------------------------------------------------------------------ the worker side
_CACHE: OrderedDict = OrderedDict()  # key -> EStep of one block, per worker process
_CACHE_RUNS = 2  # blocks of this many sharded E steps (the latest) stay in a worker
_LOCK = threading.Lock()  # thread-pool and Dask workers share the cache


class _Missing(Exception):
    """A worker has not seen this block yet: the driver resends it with its data."""


def _dumps(obj) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle comes with the dask extra
        cloudpickle = None
    try:
        if cloudpickle is not None:
            return cloudpickle.dumps(obj)
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise with_context(
            exc,
            "executor: the model could not be pickled to send it to the workers; define its "
            "functions at module level or install cloudpickle (pip install mcem[dask]), which "
            "also pickles closures",
        ) from exc


def _block_estep(key, payload):
    """The E step of one block, unpickled and built once per worker process."""
    with _LOCK:
        es = _CACHE.get(key)
        if es is not None:
            _CACHE.move_to_end(key)
            return es
    if payload is None:
        raise _Missing(key)
    model, sampler, options = pickle.loads(payload)
    es = EStep(model, sampler, **options)
    with _LOCK:
        _CACHE[key] = es
        runs = list(dict.fromkeys(k.split("-")[0] for k in reversed(_CACHE)))  # newest first
        for k in [k for k in _CACHE if k.split("-")[0] not in runs[:_CACHE_RUNS]]:
            del _CACHE[k]
    return es


def _init_task(key, payload, theta, rng):
    return _block_estep(key, payload).init(theta, rng)


def _run_task(key, payload, theta, state, n_draws, rng, burn, out=None):
    res = _block_estep(key, payload).run(theta, state, n_draws, rng, burn=burn)
    if out is None:
        return res
    # same machine: write the draws into the driver's memory-mapped files, send back the rest
    for name, (path, shape, dtype, start, stop) in out.items():
        mm = np.memmap(path, dtype=dtype, mode="r+", shape=shape)
        part = res.draws[name]
        if part.dtype != mm.dtype or part.shape != mm[:, :, start:stop].shape:
            raise TypeError(
                f"block draws of {name!r} have dtype {part.dtype} and shape {part.shape}; the "
                f"driver expected {mm.dtype} and {mm[:, :, start:stop].shape}"
            )
        mm[:, :, start:stop] = part
        del mm
    return res._replace(draws={})


def _scratch_dir():
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


# ------------------------------------------------------------------ the driver side
class ShardedEStep(EStep):
    """An :class:`mcem.EStep` that samples blocks of units separately, possibly in parallel.

    Built by ``ShardedEStep(model, ..., shards=k, executor=ex)`` or by
    :func:`mcem.estep_factory.make_estep` with ``shards=``; the arguments are those of
    :class:`mcem.EStep` plus:

    Parameters
    ----------
    shards : int
        Number of blocks of units (contiguous, nearly equal). The draws depend on it: keep it
        fixed to reproduce a run. Usually the number of workers, or a small multiple of it.
    executor : concurrent.futures.Executor, optional
        Where the blocks run; anything with ``submit(fn, *args)`` returning a future. ``None``
        runs them in this process. The executor never changes the draws.

    Notes
    -----
    The model needs :meth:`mcem.Model.subset`; each block's model is checked once against the
    whole one (the log joint must be the sum of the blocks' log joints, up to a term free of
    the latents).
    """

    def __init__(self, model, sampler="auto", *, shards=None, executor=None, **options):
        if not isinstance(model, Model):
            raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
        if shards is None:
            raise ValueError(
                "executor needs shards=k: the number of blocks the latent units are split into "
                "(for example the number of workers)"
            )
        self.shards = check_positive_int(shards, "shards")
        if executor is not None and not callable(getattr(executor, "submit", None)):
            raise TypeError(
                "executor must be a concurrent.futures.Executor (an object with submit(fn, *args)), "
                f"e.g. ProcessPoolExecutor or dask's client.get_executor(); got {type(executor).__name__}"
            )
        self.executor = executor
        if model.subset_fn is None or model.n_units is None:
            model.subset(np.arange(1))  # raises the error that says what is missing
        if self.shards > model.n_units:
            raise ValueError(
                f"shards must be at most the number of latent units ({model.n_units}), got {shards}"
            )
        self.blocks = shard_units(model.n_units, self.shards)
        sub_models = [model.subset(b) for b in self.blocks]
        # the whole EStep machinery (settings, thresholds, diagnostics) on the first block's
        # kernel choice; the blocks build their own kernels
        super().__init__(sub_models[0], sampler, **options)
        self.model = model
        self.modes = None
        self.settings = {**self.settings, "shards": self.shards}
        theta = model.default_theta()
        u0 = model.to_unconstrained(theta)
        shift = np.random.default_rng(20061).normal(scale=0.5, size=u0.shape)
        for th in (theta, model.from_unconstrained(u0 + shift)):  # starting values may hide terms
            check_additive(model, sub_models, self.blocks, th)
        self._options = {
            "n_chains": self.n_chains, "burn": self.burn, "warm_burn": self.warm_burn,
            "thin": self.thin, "sampler_options": options.get("sampler_options"), "warn": False,
            "min_acceptance": self.min_acceptance, "max_rhat": self.max_rhat,
            "rhat_min_draws": self.rhat_min_draws,
        }
        for m in sub_models:
            m.per_unit  # noqa: B018 - learn the unit structure here, not in every worker
        self._local = self._payloads = None
        if executor is None:
            self._local = [EStep(m, sampler, **self._options) for m in sub_models]
        else:  # the driver keeps the pickled blocks only, sent to a worker when it lacks them
            self._payloads = [_dumps((m, sampler, self._options)) for m in sub_models]
            run_id = uuid.uuid4().hex
            self._keys = [
                f"{run_id}-{i}-{hashlib.sha1(p).hexdigest()[:12]}" for i, p in enumerate(self._payloads)
            ]
            self._sent = [False] * self.shards

    def __repr__(self):
        return (
            f"ShardedEStep({self.model.name!r}, shards={self.shards}, sampler={self.kernel!r}, "
            f"n_chains={self.n_chains}, executor={type(self.executor).__name__ if self.executor else None})"
        )

    def target(self, theta):
        raise NotImplementedError("a sharded E step has one target per block of units")

    # ------------------------------------------------------------------ mapping over blocks
    def _map(self, task, local, args_per_block, what):
        if self.executor is None:
            out = []
            for i, args in enumerate(args_per_block):
                try:
                    out.append(local(self._local[i], *args))
                except Exception as exc:
                    raise self._block_error(exc, i, what) from exc
            return out

        def submit(i, with_data):
            self._sent[i] = self._sent[i] or with_data
            payload = self._payloads[i] if with_data else None
            return self.executor.submit(task, self._keys[i], payload, *args_per_block[i])

        futures = [submit(i, not self._sent[i]) for i in range(self.shards)]
        out = []
        for i in range(self.shards):  # results in block order, whatever order they finish
            try:
                try:
                    out.append(futures[i].result())
                except _Missing:  # that worker has not seen block i: send it with its data
                    out.append(submit(i, True).result())
            except Exception as exc:
                for g in futures[i + 1:]:  # let the others finish before the caller cleans up
                    if not g.cancel():
                        try:
                            g.result()
                        except Exception:  # noqa: S110 - the first error is the one reported
                            pass
                raise self._block_error(exc, i, what) from exc
        return out

    def _block_error(self, exc, i, what):
        b = self.blocks[i]
        msg = f"sharded E step: {what} of block {i} (units {b[0]}..{b[-1]}) raised {type(exc).__name__}"
        new = with_context(exc, msg)
        return new if new is not exc else RuntimeError(f"{msg}: {exc}")

    # ------------------------------------------------------------------ public interface
    def init(self, theta, rng) -> ShardedState:
        """Initial chain states of every block, each from its own spawned generator."""
        theta = self.model.check_theta(theta, "theta")
        rngs = as_generator(rng).spawn(self.shards)
        states = self._map(
            _init_task, lambda es, th, r: es.init(th, r), [(theta, r) for r in rngs], "init"
        )
        return ShardedState(tuple(states), 0)

    def run(self, theta, state, n_draws, rng, *, burn=None, keep=True, reducer=None) -> EStepResult:
        """As :meth:`mcem.EStep.run`; the blocks' draws are joined along the unit axis.

        With ``keep=False`` and a ``reducer``, each block's draws still come back to this
        process (the reducer sees whole-model latents); only the returned ``draws`` are empty.
        """
        if not isinstance(state, ShardedState) or len(state.shard_states) != self.shards:
            raise TypeError(
                f"state must be a ShardedState of {self.shards} blocks (from ShardedEStep.init or run), "
                f"got {type(state).__name__}"
            )
        n_draws, burn = self._run_args(state, n_draws, burn, reducer)
        theta = self.model.check_theta(theta, "theta")
        rngs = as_generator(rng).spawn(self.shards)
        t0 = time.perf_counter()
        files = self._draw_files(state, n_draws) if isinstance(self.executor, ProcessPoolExecutor) else None
        try:
            outs = [None] * self.shards if files is None else [
                {n: (path, shape, dtype, self.blocks[i][0], self.blocks[i][-1] + 1)
                 for n, (path, shape, dtype) in files.items()}
                for i in range(self.shards)
            ]
            results = self._map(
                _run_task,
                lambda es, th, st, n, r, b, o: es.run(th, st, n, r, burn=b),
                [(theta, st, n_draws, r, burn, o)
                 for st, r, o in zip(state.shard_states, rngs, outs, strict=True)],
                "run",
            )
            if files is None:
                draws = {
                    n: np.concatenate([r.draws[n] for r in results], axis=2)
                    for n in self.model.latent_names
                }
            else:
                # mapped, not copied: the mapping outlives the file's name, unlinked below
                draws = {
                    n: np.asarray(np.memmap(path, dtype=dtype, mode="r+", shape=shape))
                    for n, (path, shape, dtype) in files.items()
                }
        finally:
            for path, _, _ in (files or {}).values():
                os.unlink(path)
        trace = np.sum([r.loglik_trace for r in results], axis=0)
        if reducer is not None:
            for i in range(n_draws):
                reducer({n: v[:, i] for n, v in draws.items()})
        diag = self._merge_diagnostics(results, trace, burn, n_draws)
        diag["seconds"] = time.perf_counter() - t0
        self._maybe_warn(diag)
        new_state = ShardedState(tuple(r.state for r in results), state.n_runs + 1)
        return EStepResult(draws if keep else {}, new_state, diag, trace)

    def _draw_files(self, state, n_draws):
        """Memory-mapped files (in /dev/shm when there is one) that the workers write draws to.

        With a process pool on this machine this saves pickling every draw through a pipe.
        """
        z = state.shard_states[0].z
        files = {}
        try:
            for n in self.model.latent_names:
                spec = self.model.latents[n]
                dtype = np.asarray(z[n]).dtype
                shape = (self.n_chains, n_draws) + spec.shape
                fd, path = tempfile.mkstemp(prefix="mcem-draws-", suffix=".bin", dir=_scratch_dir())
                files[n] = (path, shape, dtype.str)
                with os.fdopen(fd, "wb") as fh:
                    size = max(1, int(np.prod(shape)) * dtype.itemsize)
                    if hasattr(os, "posix_fallocate"):
                        os.posix_fallocate(fh.fileno(), 0, size)  # no space: an error here, not a crash later
                    else:  # pragma: no cover - not Linux
                        fh.truncate(size)
        except OSError:  # no room in the scratch space: send the draws back through the executor
            for path, _, _ in files.values():
                os.unlink(path)
            return None
        except BaseException:
            for path, _, _ in files.values():
                os.unlink(path)
            raise
        return files

    def _merge_diagnostics(self, results, trace, burn, n_draws):
        sizes = np.array([len(b) for b in self.blocks], dtype=float)
        w = sizes / sizes.sum()
        acceptance = {}
        low = False
        for n in self.model.latent_names:
            parts = [r.diagnostics["acceptance"][n] for r in results]
            s = {
                "mean": float(np.dot(w, [p["mean"] for p in parts])),
                "min": float(np.min([p["min"] for p in parts])),
                "metropolis": bool(parts[0]["metropolis"]),
                "burn_mean": float(np.dot(w, [p["burn_mean"] for p in parts])),
            }
            low = low or (s["metropolis"] and np.isfinite(s["mean"]) and s["mean"] < self.min_acceptance)
            acceptance[n] = s
        metro = [s for s in acceptance.values() if s["metropolis"]]
        base = self._diagnostics(trace, _NoAcceptance(), _NoAcceptance(), burn, n_draws)
        base.update(
            acceptance=acceptance,
            acceptance_mean=float(np.mean([s["mean"] for s in metro])) if metro else 1.0,
            acceptance_min=float(np.min([s["min"] for s in metro])) if metro else 1.0,
            low_acceptance=bool(low),
            shards=self.shards,
            shard_seconds=[float(r.diagnostics["seconds"]) for r in results],
            sampler=results[0].diagnostics["sampler"],
        )
        return base


class _NoAcceptance:
    """Stands in for per-step acceptance records, which the blocks keep for themselves."""

    def rates(self, n):
        return None

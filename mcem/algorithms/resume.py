"""Continuing a fit from its checkpoint: :func:`resume`.

The checkpoint file itself (format, allow-listed state classes, atomic writes) is
:mod:`mcem.checkpoint`; this module checks that a checkpoint is one the run can continue from,
for the model given, and hands it to the method's loop.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

from .._validation import check_bool, check_positive_float, check_positive_int
from ..checkpoint import LEGACY_FORMATS, _model_spec, read_checkpoint
from ..distributed import ShardedState
from ..estep import EStepState
from ..core import Model
from ..serial import fingerprint_differences, model_fingerprint
from . import gem
from .registry import METHODS

__all__ = ["resume"]


def resume(path, model, *, callback=None, progress=None, max_iter=None, checkpoint=True, executor=None,
           checkpoint_every=1.0):
    """Continue a fit from its checkpoint.

    Parameters
    ----------
    path : str or path
        The file given as ``checkpoint=`` to :func:`mcem.fit` (with its ``.history`` folder
        beside it, if any).
    model : Model
        The same model (functions cannot be stored without pickle): the same name, parameter
        and latent declarations and data as the checkpoint's fingerprint records; any
        difference is a ``ValueError`` saying what differs.
    callback, progress
        As for :func:`mcem.fit` (not stored in the checkpoint).
    max_iter : int, optional
        A new iteration cap (default: the original one).
    checkpoint : bool
        Keep writing checkpoints to ``path`` (default True).
    checkpoint_every : float
        As for :func:`mcem.fit`: at most one write per this many seconds (0: every iteration).
    executor : concurrent.futures.Executor, optional
        For a sharded E step (``shards=``): where the blocks run now. Executors are not stored;
        any executor, or none, continues the run with the same result.

    Returns
    -------
    FitResult
        Exactly what the uninterrupted run with the same seed would have returned.

    Raises
    ------
    ValueError
        When the file cannot be read, was made with another model, or holds a state the run
        cannot continue from (unknown method, missing history, chains of the wrong shape,
        parameters outside their constraints, ...): the message names the file and the problem.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
    if max_iter is not None:
        max_iter = check_positive_int(max_iter, "max_iter")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    checkpoint = check_bool(checkpoint, "checkpoint")
    path = os.fspath(path)
    ck, fmt = read_checkpoint(path)
    _check_checkpoint(path, ck, model, fmt)
    options = dict(ck["options"])
    if max_iter is not None:
        options["max_iter"] = max_iter
    if executor is not None:
        if options.get("shards") is None:
            raise ValueError("resume: executor is only for runs with a sharded E step (shards=k)")
        options["executor"] = executor
    runner = METHODS[ck["method"]]
    return runner(
        model, ck["loop"]["theta"], rng=None, callback=callback, progress=progress,
        checkpoint=path if checkpoint else None, checkpoint_every=checkpoint_every, _resume=ck, **options,
    )


#: What each method's loop state holds: key -> kind of value.
_LOOP_KEYS = {
    "em": {"t": "count", "theta": "theta", "decreases": "count"},
    "mcem": {"t": "count", "theta": "theta", "state": "state", "rng": "rng", "m": "positive",
             "hits": "count", "swamped": "count", "total_draws": "count", "per_chain": "positive",
             "target": "count", "limited": "count", "opt_m": "nonnegative", "window": "any",
             "grow_to": "count", "expanded": "count"},
    "saem": {"t": "count", "theta": "theta", "state": "state", "rng": "rng", "s": "any", "memory": "memory",
             "avg": "theta_or_none", "n_avg": "count", "hits": "count", "total_draws": "count",
             "wdraws": "any", "scores": "any", "next_check": "count"},
    "gem": {"t": "count", "theta": "theta", "hits": "count", "state": "state_or_none", "rng": "rng",
            "per_chain": "count", "total_draws": "count"},
    "vbem": {"t": "count", "theta": "theta", "phi": "any", "rng": "rng", "m": "count", "hits": "count",
             "total_draws": "count", "rate": "nonnegative", "last_step": "any", "limited": "count"},
}


#: Keys added after a format was released: a checkpoint without them starts them at their default.
_OPTIONAL_KEYS = {"mcem": ("target", "limited", "opt_m", "window", "grow_to", "expanded"),
                  "saem": ("wdraws", "scores", "next_check"), "gem": ("per_chain", "total_draws")}


def _known_options(method) -> set:
    """The options a checkpoint of ``method`` may hold (as :func:`mcem.fit` takes them)."""
    return (set(METHODS[method].option_names()) - {"checkpoint", "checkpoint_every"}) | {"max_iter", "tol"}


def _check_checkpoint(path, ck, model, fmt) -> None:
    """Refuse, with a clear ValueError, a checkpoint the run cannot continue from."""
    def bad(what):
        return ValueError(f"checkpoint {path!r} is invalid: {what}")

    for key in ("method", "options", "loop", "history"):
        if key not in ck:
            raise ValueError(f"checkpoint {path!r} cannot be read: it lacks {key!r}")
    if "model" not in ck and ("spec" not in ck or fmt not in LEGACY_FORMATS):
        raise ValueError(f"checkpoint {path!r} cannot be read: it lacks 'model' (the model's fingerprint)")
    method = ck["method"]
    if not isinstance(method, str) or method not in METHODS:
        raise bad(f"unknown method {method!r}; expected one of {sorted(METHODS)}")
    # the model first: a different model explains most other mismatches
    if "model" in ck:
        diffs = fingerprint_differences(ck["model"], model_fingerprint(model), "the checkpoint")
        if diffs:
            raise ValueError(f"resume: model does not match the checkpoint {path!r}: " + "; ".join(diffs))
    else:  # format 1: declarations only
        spec, mine = ck["spec"], _model_spec(model)
        if spec != mine:
            raise ValueError(
                f"resume: model does not match the checkpoint {path!r}: the checkpoint has "
                f"{spec}, the model declares {mine}"
            )
    options = ck["options"]
    if not isinstance(options, dict):
        raise bad(f"its options are a {type(options).__name__}, not a dict")
    unknown = sorted(set(options) - _known_options(method))
    if unknown:
        raise bad(f"unknown option(s) {unknown} for method {method!r}")
    try:  # the stored options get the checks fit() gives them
        if options.get("max_iter") is not None:
            check_positive_int(options["max_iter"], "options['max_iter']")
        if options.get("tol") is not None:
            check_positive_float(options["tol"], "options['tol']", allow_zero=True)
        cfg = METHODS[method].module.configure(model, **{"max_iter": None, "tol": None, **options})
    except (TypeError, ValueError) as exc:
        raise bad(f"its options cannot be used: {exc}") from None
    history, loop = ck["history"], ck["loop"]
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise bad("its history is not a list of rows (dicts)")
    if not isinstance(loop, dict):
        raise bad(f"its loop state is a {type(loop).__name__}, not a dict")
    need = _LOOP_KEYS[method]
    missing = [k for k in need if k not in loop and k not in _OPTIONAL_KEYS.get(method, ())]
    if missing:
        raise bad(f"the loop state lacks {missing} (method {method!r})")
    extra = sorted(set(loop) - set(need))
    if extra:
        raise bad(f"the loop state has unknown key(s) {extra} (method {method!r})")
    for key, kind in need.items():
        if key not in loop:
            continue
        v, where = loop[key], f"loop[{key!r}]"
        if kind in ("count", "positive"):
            lo = 1 if kind == "positive" else 0
            if not isinstance(v, numbers.Integral) or isinstance(v, bool | np.bool_) or v < lo:
                raise bad(f"the counter {where} is {v!r}; expected an int >= {lo}")
        elif kind == "nonnegative":
            if not isinstance(v, numbers.Real) or isinstance(v, bool | np.bool_) or not (0 <= v < np.inf):
                raise bad(f"{where} is {v!r}; expected a finite number >= 0")
        elif kind == "theta" or (kind == "theta_or_none" and v is not None):
            try:
                model.check_theta(v, where)
            except (ValueError, TypeError) as exc:
                raise bad(str(exc)) from None
        elif kind == "rng" and not isinstance(v, np.random.Generator):
            raise bad(f"{where} is a {type(v).__name__}, not a numpy Generator")
        elif kind == "state" or (kind == "state_or_none" and v is not None):
            _check_state(bad, v, model, options)
        elif kind == "memory":
            _check_memory(bad, v, model)
    if method == "mcem":  # sizes the next iteration would draw: bounded by the run's m_max
        n_chains = cfg.es.n_chains
        if loop["m"] > cfg.m_max or loop["per_chain"] * n_chains > cfg.m_max:
            raise bad(f"the sample sizes loop['m'] = {loop['m']} and loop['per_chain'] = {loop['per_chain']} "
                      f"(x {n_chains} chains) exceed m_max = {cfg.m_max}")
    if method == "vbem":
        _check_phi(bad, loop["phi"], cfg)
    t = loop["t"]
    if len(history) != t + 1:
        raise bad(f"the iteration counter loop['t'] = {t} disagrees with the history's "
                  f"{len(history)} row(s) (expected {t + 1}: the start and one per iteration)")
    for i, row in enumerate(history):
        if row.get("iter") != i or not isinstance(row.get("params"), dict):
            raise bad(f"history row {i} is malformed (its 'iter' is {row.get('iter')!r}, expected {i}, "
                      "and it needs a 'params' dict)")
    if method == "gem" and loop["state"] is None and not _gem_exact(model, options):
        raise bad("loop['state'] is None, but this gem run draws its E step by MCMC")


def _check_phi(bad, phi, cfg):
    """A VB-EM loop's variational parameters: None for the categorical q, else a finite vector of
    the family's size."""
    if cfg.exact:
        if phi is not None:
            raise bad("loop['phi'] must be None for the categorical q of this model")
        return
    size = cfg.q.size
    if not (isinstance(phi, np.ndarray) and phi.dtype == np.float64 and phi.shape == (size,)
            and np.all(np.isfinite(phi))):
        got = f"{type(phi).__name__} {getattr(phi, 'dtype', '')} {getattr(phi, 'shape', '')}"
        raise bad(f"loop['phi'] must be a finite float64 vector of shape ({size},), got {got}")


def _gem_exact(model, options) -> bool:
    return gem.enumerable(model) and options.get("estep", "auto") != "mc"


def _check_state(bad, state, model, options):
    """The chains' state: its class, and positions shaped and valued as the model declares."""
    shards = options.get("shards")
    want = ShardedState if shards is not None else EStepState
    if not isinstance(state, want):
        raise bad(f"loop['state'] is a {type(state).__name__}, expected a {want.__name__}")
    if isinstance(state, ShardedState):
        if len(state.shard_states) != shards or not all(isinstance(s, EStepState) for s in state.shard_states):
            raise bad(f"loop['state'] does not hold {shards} block states (EStepState), as shards={shards} needs")
        parts = [("loop['state'].shard_states[%d]" % i, s) for i, s in enumerate(state.shard_states)]
    else:
        parts = [("loop['state']", state)]
    n_units_seen = {}
    chains = None
    for where, st in parts:
        try:
            z = st.z
        except Exception as exc:  # a malformed kernel state
            raise bad(f"{where}.kernel_state does not hold the chains' positions "
                      f"({type(exc).__name__}: {exc})") from None
        if not isinstance(z, dict) or set(z) != set(model.latents):
            got = sorted(z) if isinstance(z, dict) else type(z).__name__
            raise bad(f"{where} holds chains for latents {got}; the model declares {list(model.latent_names)}")
        for name in model.latent_names:
            spec, a = model.latents[name], z[name]
            if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
                raise bad(f"{where}: the chains' positions of latent {name!r} are not a numeric array")
            shape = spec.shape
            if isinstance(state, ShardedState) and spec.unit:  # a block of units
                ok = a.ndim == 1 + len(shape) and a.shape[2:] == shape[1:]
                n_units_seen[name] = n_units_seen.get(name, 0) + (a.shape[1] if a.ndim > 1 else 0)
            else:
                ok = a.shape[1:] == shape and a.ndim == 1 + len(shape)
            if not ok:
                dims = ["n_chains", *map(str, shape)]
                want_shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
                raise bad(f"{where}: the chains' positions of latent {name!r} have shape {a.shape}; the model "
                          f"declares {name!r} of shape {shape}, so expected {want_shape}")
            if chains is None:
                chains = a.shape[0]
            if a.shape[0] != chains or chains < 1:
                raise bad(f"{where}: the latents' chains disagree in number ({a.shape[0]} and {chains})")
            if not np.all(spec.contains(a)):
                raise bad(f"{where}: the chains' positions of latent {name!r} lie outside its support "
                          f"{spec.support!r}")
        _check_per_chain(bad, st.kernel_state, chains, f"{where}.kernel_state")
    for name, n in n_units_seen.items():
        if n != model.latents[name].shape[0]:
            raise bad(f"loop['state']: the blocks hold {n} units of latent {name!r}, the model declares "
                      f"{model.latents[name].shape[0]}")


def _check_per_chain(bad, ks, chains, where):
    """Every array in a kernel state is one row per chain."""
    if isinstance(ks, tuple) and hasattr(ks, "_fields"):
        for f in ks._fields:
            _check_per_chain(bad, getattr(ks, f), chains, f"{where}.{f}")
    elif isinstance(ks, dict):
        for k, v in ks.items():
            _check_per_chain(bad, v, chains, f"{where}[{k!r}]")
    elif isinstance(ks, np.ndarray) and ks.ndim >= 1 and ks.shape[0] != chains:
        raise bad(f"{where} has shape {ks.shape}, expected one row per chain ({chains})")


def _check_memory(bad, memory, model):
    if not isinstance(memory, list):
        raise bad(f"loop['memory'] is a {type(memory).__name__}, not a list")
    for i, item in enumerate(memory):
        where = f"loop['memory'][{i}]"
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[1], dict)):
            raise bad(f"{where} is not a (weight, draws) pair")
        w, draws = item
        if not isinstance(w, numbers.Real) or not np.isfinite(w) or w <= 0:
            raise bad(f"{where} has weight {w!r}; expected a positive number")
        for name in model.latent_names:
            a = draws.get(name)
            shape = model.latents[name].shape
            if not isinstance(a, np.ndarray) or a.shape[2:] != shape or a.ndim != 2 + len(shape):
                got = a.shape if isinstance(a, np.ndarray) else type(a).__name__
                raise bad(f"{where}: the draws of latent {name!r} are {got}; expected (chain, draw, *{shape})")

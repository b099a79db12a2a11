"""Conversion of a fit result to an ArviZ-style ``xarray.DataTree`` (:func:`to_datatree`).

It takes any mapping shaped like a :class:`~mcem.FitResult` (``draws``, ``params``, ``history``
and scalar fields) and does not know the class; :meth:`mcem.FitResult.to_datatree` calls it.
xarray and ``arviz_base`` are imported when a conversion runs, not with the package.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

__all__ = ["to_datatree"]


def _attr_value(v):
    """A value usable as a DataTree attribute that netCDF can store: None dropped, booleans as
    the integers 0 and 1 (netCDF has no boolean attributes), settings as JSON."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int | float | str):
        return v
    return None


def to_datatree(result):
    """Convert a fit result to an :class:`xarray.DataTree` (built with ``arviz_base``).

    Groups:

    * ``posterior`` (only when the result has ``draws``, as Monte Carlo methods keep): the latent
      draws kept by the fit (the final E step's), one variable per latent with dims
      ``(chain, draw, <latent>_dim_0, ...)`` (ArviZ conventions, so ``arviz_stats`` diagnostics
      such as ``ess``/``rhat`` apply). They are draws from the conditional distribution of the
      latents given the data at fixed parameters, not a Bayesian posterior.
    * ``fit_history``: one entry per history row along dim ``iteration`` (coordinate: the ``iter``
      column). Each column is a variable (``loglik``, ``m``, ``delta_q``, ``mcse``, ``lower``,
      ``upper``, ``acceptance_mean``, ``rhat_loglik``, ``seconds``, ...). Columns present in every
      row keep their dtype (bool, int, float); a column missing in some rows becomes float with
      NaN there (as ``result.history[col]``). Parameter paths are ``params.<name>`` with dims
      ``(iteration, <name>_dim_0, ...)``. Columns that are neither numbers, bools, strings nor
      equally shaped arrays are left out and listed in the group attribute ``skipped_columns``.
    * ``fit_params``: the final parameters, variable ``<name>`` with dims ``(<name>_dim_0, ...)``.

    Root attributes: ``method``, ``converged``, ``message``, ``stopped_by``, ``n_iter``,
    ``loglik`` and ``loglik_mcse`` (absent when None), ``seconds``, ``model_name``,
    ``total_draws`` (when present) and ``settings`` (a JSON string; non-JSON values as their
    ``repr``); booleans are stored as
    0 and 1, so that the tree can be written to netCDF (``dt.to_netcdf(path)``, with a netCDF
    engine such as ``h5netcdf`` installed: ``pip install "mcem[netcdf]"``).
    """
    import xarray as xr
    from arviz_base import dict_to_dataset, from_dict

    if not isinstance(result, Mapping):
        raise TypeError(f"to_datatree: expected a FitResult, got {type(result).__name__}")
    root = {}
    for k in ("method", "converged", "message", "stopped_by", "n_iter", "loglik", "loglik_mcse", "seconds",
              "model_name", "total_draws"):
        v = _attr_value(result.get(k))
        if v is not None:
            root[k] = v
    root["settings"] = json.dumps(result.get("settings", {}), default=repr, sort_keys=False)

    draws = result.get("draws")
    if draws:
        dt = from_dict(
            {"posterior": {k: np.asarray(v) for k, v in draws.items()}},
            sample_dims=["chain", "draw"],
            attrs={"posterior": {"description": "latent draws of the final E step, from their "
                                 "conditional distribution given the data"}, "/": root},
        )
    else:
        dt = xr.DataTree()
        dt.attrs = root

    params = {k: np.asarray(v) for k, v in result.get("params", {}).items()}
    dt["fit_params"] = xr.DataTree(dict_to_dataset(params, sample_dims=[],
                                                   attrs={"description": "final parameter estimates"}))

    history = result.get("history")
    if history is not None and len(history):
        rows = history.rows
        n = len(rows)
        it = [r.get("iter") for r in rows]
        iteration = np.asarray(it) if all(isinstance(v, int | np.integer) for v in it) else np.arange(n)
        data, dims, skipped = {}, {}, []
        for c in history.columns:
            if c == "iter":
                continue
            if c == "params":
                try:
                    for name, path in history.params().items():
                        path = np.asarray(path)
                        data[f"params.{name}"] = path
                        dims[f"params.{name}"] = [f"{name}_dim_{i}" for i in range(path.ndim - 1)]
                except (KeyError, ValueError, TypeError):
                    skipped.append("params")
                continue
            vals = [r[c] for r in rows if c in r]
            complete = len(vals) == n
            arr = np.asarray(history[c])  # float with NaN where missing, object when not numeric
            if complete:
                try:
                    full = np.asarray(vals)
                except (TypeError, ValueError):
                    full = None
                if full is not None and full.dtype.kind in "biufcU":
                    arr = full
            if arr.dtype.kind not in "biufcU":
                skipped.append(str(c))
                continue
            data[str(c)] = arr
            dims[str(c)] = [f"{c}_dim_{i}" for i in range(arr.ndim - 1)]
        ds = dict_to_dataset(
            data, sample_dims=["iteration"], dims=dims, coords={"iteration": iteration},
            attrs={"description": "per-iteration history of the fit (row 0 is the start)",
                   "skipped_columns": skipped},
        )
        if not data:
            ds = ds.assign_coords(iteration=iteration)
        dt["fit_history"] = xr.DataTree(ds)
    return dt

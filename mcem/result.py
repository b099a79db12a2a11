"""Fit results: plain data with attribute access and a per-iteration history."""

from __future__ import annotations

import numpy as np

__all__ = ["FitResult", "History"]


class History:
    """Per-iteration records of a fit; row 0 is the starting point.

    Each row is a dict with at least ``iter``, ``params`` (dict of constrained arrays) and
    ``seconds``. Indexing by a column name returns a numpy array over iterations (NaN where a row
    lacks the value); :meth:`params` stacks a parameter's path.
    """

    def __init__(self, rows=None):
        self._rows = list(rows or [])

    def append(self, row: dict) -> None:
        self._rows.append(dict(row))

    def __len__(self):
        return len(self._rows)

    def __iter__(self):
        return iter(self._rows)

    @property
    def rows(self) -> list:
        return list(self._rows)

    @property
    def columns(self) -> list:
        cols = []
        for r in self._rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
        return cols

    def __getitem__(self, key):
        if isinstance(key, int | slice):
            return self._rows[key]
        if key == "params":
            raise KeyError("use History.params(name) for parameter paths")
        vals = [r.get(key, np.nan) for r in self._rows]
        try:
            return np.asarray(vals, dtype=float)
        except (TypeError, ValueError):
            return np.asarray(vals, dtype=object)

    def params(self, name=None):
        """The path of parameter ``name`` stacked over iterations, or a dict of all paths."""
        if name is None:
            names = self._rows[0]["params"].keys() if self._rows else []
            return {n: self.params(n) for n in names}
        return np.stack([np.asarray(r["params"][name]) for r in self._rows])

    def to_dict(self) -> dict:
        """Columns as arrays; parameters as ``params.<name>`` stacked paths."""
        out = {}
        for c in self.columns:
            if c == "params":
                for n, v in self.params().items():
                    out[f"params.{n}"] = v
            else:
                out[c] = self[c]
        return out

    def __repr__(self):
        return f"History({len(self)} rows, columns={self.columns})"


class FitResult(dict):
    """The result of :func:`mcem.fit`: a dict with attribute access.

    Keys: ``params`` (dict of constrained arrays), ``converged`` (bool), ``n_iter``, ``message``,
    ``stopped_by`` (the rule that ended the run), ``method``, ``loglik`` (at ``params`` where the
    model has an exact log-likelihood, else None), ``history`` (:class:`History`), ``seconds``,
    ``settings`` (the options used).
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __dir__(self):
        return list(self.keys()) + list(super().__dir__())

    def summary(self) -> str:
        """A text table of estimates and the fit's bookkeeping."""
        lines = [f"mcem fit: method={self.method!r}, {self.stopped_by}: {self.message}"]
        lines.append(
            f"iterations: {self.n_iter}   converged: {self.converged}   "
            f"seconds: {self.seconds:.3f}"
        )
        if self.get("loglik") is not None:
            lines.append(f"log-likelihood: {self.loglik:.6f}")
        lines.append(f"{'parameter':<24}{'estimate':>14}")
        for name, v in self.params.items():
            v = np.asarray(v)
            if v.ndim == 0:
                lines.append(f"{name:<24}{float(v):>14.6g}")
            else:
                for idx in np.ndindex(v.shape):
                    label = f"{name}[{','.join(map(str, idx))}]"
                    lines.append(f"{label:<24}{float(v[idx]):>14.6g}")
        return "\n".join(lines)

    def __repr__(self):
        return (
            f"FitResult(method={self.get('method')!r}, converged={self.get('converged')}, "
            f"n_iter={self.get('n_iter')}, loglik={self.get('loglik')}, "
            f"message={self.get('message')!r})"
        )

"""The per-iteration history of a fit (:class:`History`), plain data without the fit around it.

:mod:`mcem.result` holds the fit result that carries it; the history lives here, below the result
and below the file formats (:mod:`mcem.serial`), which store and rebuild it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["History"]


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

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` rows (after an interrupted iteration)."""
        del self._rows[n:]

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


"""Soak run: memory over 1000 MCEM iterations stays flat (the history row is all that grows).

    python benchmarks/soak.py [--iterations 1000]

Prints the traced Python memory every 100 iterations and the growth per iteration; draws are
not accumulated (only the last E step's are kept), so the growth is the history row, a few KB.
"""

from __future__ import annotations

import argparse
import tracemalloc
import warnings

import numpy as np

import mcem


def main(iterations=1000):
    X = mcem.datasets.load_faithful()
    model = mcem.models.gaussian_mixture(X, 2)
    marks = {}

    def probe(row):
        if row["iter"] % 100 == 0:
            marks[row["iter"]] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mcem.fit(model, method="mcem", sampler="gibbs", schedule="fixed", m_init=40,
                       max_iter=iterations, tol=1e-12, rng=0, callback=probe)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{'iteration':>10}{'traced MB':>12}")
    for it, b in sorted(marks.items()):
        print(f"{it:>10}{b / 2**20:>12.2f}")
    its = sorted(marks)
    growth = (marks[its[-1]] - marks[its[0]]) / max(its[-1] - its[0], 1)
    print(f"growth per iteration: {growth / 1024:.2f} KB; peak {peak / 2**20:.1f} MB; "
          f"iterations {res.n_iter}; draws kept {res.draws['label'].shape}")
    return growth


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=1000)
    np.seterr(all="ignore")
    main(p.parse_args().iterations)

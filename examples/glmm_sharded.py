"""A large random-intercept GLMM with the E step spread over processes.

Simulates 10^4 groups x 10 binary responses (``--groups`` to change), fits the model by MCEM once
with the E step in this process and once sharded over a ``ProcessPoolExecutor`` with ``--workers``
processes (``shards=workers``), and prints, for both, the time to a fixed number of iterations,
the E step's share of it, and the estimates next to the adaptive-quadrature MLE. The two fits use
the same seed and the same number of shards, so they agree to the last bit: the executor never
changes a result. Writes a PNG of the sharded fit's parameter paths with the MLE overlaid. Usage::

    python examples/glmm_sharded.py [--groups 10000] [--workers 2] [--iterations 10] [--out glmm_sharded.png]
"""

from __future__ import annotations

import argparse
import time
import warnings
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import matplotlib
import numpy as np

matplotlib.use("Agg")

import mcem  # noqa: E402
from mcem.models import random_intercept as ri  # noqa: E402

TRUTH = {"beta": [-0.5, 1.0], "sigma": 1.0}


def simulate(n_groups, n_per_group=10, data_seed=2024):
    return ri.simulate_random_intercept(n_groups, n_per_group, TRUTH["beta"], TRUTH["sigma"], "logit",
                                          rng=data_seed)


def run(n_groups=10_000, workers=2, iterations=10, seed=1, out="glmm_sharded.png"):
    """Both fits; returns a dict with ``serial``, ``sharded`` (FitResults), ``oracle``, ``seconds``,
    ``same`` and ``figure``."""
    d = simulate(n_groups)
    X, y, group = d["X"], d["y"], d["group"]
    oracle = ri.fit_quadrature(X, y, group)
    model = ri.random_intercept_glmm(X, y, group)
    opts = dict(method="mcem", rng=seed, shards=workers, max_iter=iterations, progress=False)
    seconds, results = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (mcem.MonteCarloWarning, mcem.ConvergenceWarning))
        t0 = time.perf_counter()
        results["serial"] = mcem.fit(model, **opts)
        seconds["serial"] = time.perf_counter() - t0
        # spawned workers: forking a multithreaded process (BLAS, JAX) can deadlock
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            t0 = time.perf_counter()
            results["sharded"] = mcem.fit(model, **opts, executor=pool)
            seconds["sharded"] = time.perf_counter() - t0
    same = all(np.array_equal(results["serial"].params[k], results["sharded"].params[k])
               for k in results["serial"].params)
    print(f"random-intercept logit, {n_groups} groups x 10, {iterations} MCEM iterations, "
          f"{workers} shards")
    print(f"{'':<22}{'beta_0':>9}{'beta_1':>9}{'sigma':>9}{'seconds':>9}")
    print(f"{'quadrature MLE':<22}{oracle.params['beta'][0]:>9.4f}{oracle.params['beta'][1]:>9.4f}"
          f"{oracle.params['sigma']:>9.4f}{oracle.seconds:>9.1f}")
    for name in ("serial", "sharded"):
        p = results[name].params
        print(f"{'MCEM, ' + name:<22}{p['beta'][0]:>9.4f}{p['beta'][1]:>9.4f}{float(p['sigma']):>9.4f}"
              f"{seconds[name]:>9.1f}")
    print(f"quadrature standard errors: beta {np.round(oracle.se['beta'], 4)}, sigma {oracle.se['sigma']:.4f}")
    print(f"serial and sharded agree to the last bit: {same}; speed-up {seconds['serial'] / seconds['sharded']:.2f}x "
          "(the M step stays in this process)")
    fig = ri.plot_with_oracle(results["sharded"], oracle)
    if out:
        fig.savefig(out, dpi=80)
        print(f"wrote {out}")
    return {"serial": results["serial"], "sharded": results["sharded"], "oracle": oracle,
            "seconds": seconds, "same": same, "figure": fig}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="glmm_sharded.png")
    a = p.parse_args()
    run(a.groups, a.workers, a.iterations, a.seed, a.out)

"""Benchmark suite: speed and memory as ratios measured side by side in one run.

    python benchmarks/run.py [--quick] [--out docs/benchmarks.md]

Cases (targets from the project's performance issue):
1. one exact EM iteration on a Gaussian mixture vs scikit-learn's one EM iteration from the same
   start (full covariance), at (N, d, K) = (10^6, 2, 3) and (10^5, 10, 10): target <= 0.8;
2. one MCEM iteration with m Gibbs draws vs m exact E steps: target <= 1.5;
3. random-intercept logistic GLMM, 10^4 groups x 10: time to reach the quadrature MLE within 2
   standard errors, a naive emcee MCEM vs mcem: target >= 20 (benchmarks/glmm.py);
4. peak traced memory of one MCEM iteration on the mixture with N = 10^6 and 200 draws:
   target <= 2 GiB;
5. seconds per exact EM iteration for N from 10^3 to 10^6 and the fitted exponent (target 1);
6. the GLMM's E step serially vs sharded over a 2-process pool: target >= 1.6 (benchmarks/glmm.py).
7. checkpoint cost (benchmarks/bench_checkpoint.py).
8. the HMM's FFBS sweep against one log-joint evaluation, and the exponent of its cost in T
   (benchmarks/bench_chains.py): targets <= 3 and 1.
scikit-learn is needed for case 1 only (a benchmark-only dependency: pip install scikit-learn).
Machines here are noisy: compare the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np

import mcem
from mcem import mstep
from mcem.models.mixture import initial_params


def _data(N, d, K, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(K, d))
    return centres[rng.integers(K, size=N)] + rng.normal(size=(N, d))


def _best(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def case1(N, d, K):
    try:
        from sklearn.mixture import GaussianMixture as SK
    except ImportError:
        return None
    X = _data(N, d, K)
    model = mcem.models.gaussian_mixture(X, K)
    th = initial_params(X, K, rng=0)

    def ours():
        stats, _ = model.exact_estep_fn(th, model.data)
        model.mstep_fn(stats, model.data)

    prec = np.linalg.inv(th["covariances"])
    sk = SK(K, covariance_type="full", max_iter=1, tol=0.0, weights_init=th["weights"],
            means_init=th["means"], precisions_init=prec, reg_covar=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X)  # warm up
        t_sk = _best(lambda: sk.fit(X))
    t_ours = _best(ours)
    return t_ours, t_sk


def case2(N=100_000, m=20):
    X = _data(N, 2, 3)
    model = mcem.models.gaussian_mixture(X, 3)
    th = initial_params(X, 3, rng=0)
    es = mcem.EStep(model, "gibbs", n_chains=1, burn=0, warm_burn=0)
    state = es.init(th, 0)

    def one_mcem_iteration():
        r = es.run(th, state, m, np.random.default_rng(1))
        mstep.closed_form(model, r.draws)

    def m_exact():
        for _ in range(m):
            model.exact_estep_fn(th, model.data)

    return _best(one_mcem_iteration), _best(m_exact)


def case4(N=1_000_000, m=200, stream=True):
    """Peak traced memory of one MCEM iteration (m draws in all over 4 chains)."""
    X = _data(N, 2, 3)
    model = mcem.models.gaussian_mixture(X, 3)
    th = initial_params(X, 3, rng=0)
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcem.fit(model, th, method="mcem", sampler="gibbs", schedule="fixed", m_init=m, n_chains=4,
                 burn=0, warm_burn=0, max_iter=1, stream=stream, rng=0, track_loglik=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def case5(sizes):
    out = []
    for N in sizes:
        X = _data(N, 2, 3)
        model = mcem.models.gaussian_mixture(X, 3)
        th = initial_params(X, 3, rng=0)

        def it():
            stats, _ = model.exact_estep_fn(th, model.data)
            model.mstep_fn(stats, model.data)

        out.append(_best(it))
    slope = np.polyfit(np.log(sizes), np.log(out), 1)[0]
    return out, float(slope)


def main(quick=False, out=None):
    rows = []
    big = (100_000, 2, 3) if quick else (1_000_000, 2, 3)
    wide = (20_000, 10, 10) if quick else (100_000, 10, 10)
    for shape in (big, wide):
        r = case1(*shape)
        if r is None:
            rows.append((f"1. EM iteration vs scikit-learn {shape}", "n/a (no scikit-learn)", "<= 0.8"))
        else:
            rows.append((f"1. EM iteration vs scikit-learn {shape}", f"{r[0] / r[1]:.2f}", "<= 0.8"))
    t_mc, t_ex = case2(N=20_000 if quick else 100_000)
    rows.append(("2. MCEM iteration (m=20 Gibbs draws) vs 20 exact E steps", f"{t_mc / t_ex:.2f}", "<= 1.5"))
    import glmm  # noqa: E402 - the GLMM cases live beside this file

    glmm_rows = glmm.rows(quick)
    rows.append(glmm_rows[0])
    n4 = 100_000 if quick else 1_000_000
    peak = case4(N=n4, stream=True)
    rows.append((f"4. peak memory, streamed MCEM iteration, N={n4:.0e}, 200 draws (GiB)", f"{peak / 2**30:.2f}", "<= 2"))
    peak = case4(N=n4, stream=False)
    rows.append((f"   the same keeping every draw (GiB)", f"{peak / 2**30:.2f}", "(reference)"))
    sizes = [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    _, slope = case5(sizes)
    rows.append(("5. exponent of time per EM iteration in N", f"{slope:.2f}", "1 (linear)"))
    rows.append(glmm_rows[1])
    import bench_checkpoint  # noqa: E402 - beside this file

    rows.append(bench_checkpoint.row(repeats=3 if quick else 5))
    import bench_chains  # noqa: E402 - beside this file

    rows.append(bench_chains.row(quick))
    width = max(len(r[0]) for r in rows)
    lines = [f"| {'case':<{width}} | measured | target |", f"|{'-' * (width + 2)}|----------|--------|"]
    lines += [f"| {a:<{width}} | {b} | {c} |" for a, b, c in rows]
    table = "\n".join(lines)
    print(table)
    if out:
        with open(out, "w") as fh:
            fh.write("# Benchmarks\n\nMeasured by `python benchmarks/run.py` (ratios within one run).\n\n")
            fh.write(table + "\n")
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    main(a.quick, a.out)

"""Cost of checkpointing a long run (a script, not a test).

1000 iterations of MCEM on the genetic-linkage model (``schedule="fixed"``, m = 20 draws, 2
chains, a ``tol`` that never stops the run), with and without ``checkpoint=``, repeated
``--repeats`` times in alternation (one untimed warm-up of each first). Prints the wall-clock
and CPU times of every run, their medians and the median of the paired ratios
(with / without). Target: at most 1.2.

Run: ``python benchmarks/bench_checkpoint.py [--iters 1000] [--repeats 5]``. One BLAS thread.
:func:`row` gives the line of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import mcem  # noqa: E402
from mcem.models import genetic_linkage  # noqa: E402


def one_run(iters, checkpoint, every=1.0):
    folder = tempfile.mkdtemp(prefix="mcem-bench-ckpt-")
    path = os.path.join(folder, "run.mcem") if checkpoint else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w0, c0 = time.perf_counter(), time.process_time()
            res = mcem.fit(genetic_linkage(), method="mcem", schedule="fixed", m_init=20, n_chains=2,
                           max_iter=iters, tol=1e-300, rng=1, checkpoint=path, progress=False,
                           **({"checkpoint_every": every} if checkpoint else {}))
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        assert res.n_iter == iters, res.message
        if checkpoint:
            assert mcem.checkpoint.load_checkpoint(path)["loop"]["t"] == iters
        return wall, cpu
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(iters=1000, repeats=5, verbose=True, every=1.0):
    """Alternating timed runs; returns the paired ratios (with / without), wall and cpu.
    ``every``: the checkpoint_every of the checkpointed run (1.0 s, the default; 0 writes after
    every iteration)."""
    one_run(20, False)  # warm-up: imports, caches
    one_run(20, True, every)
    times = {False: [], True: []}
    for r in range(repeats):
        for ck in (False, True) if r % 2 == 0 else (True, False):  # alternate the order
            times[ck].append(one_run(iters, ck, every))
            if verbose:
                w, c = times[ck][-1]
                print(f"repeat {r}: {'with   ' if ck else 'without'} checkpoint  wall {w:7.2f} s  cpu {c:7.2f} s",
                      flush=True)
    out = {}
    for i, what in enumerate(("wall", "cpu")):
        a = [t[i] for t in times[False]]
        b = [t[i] for t in times[True]]
        out[what] = [y / x for x, y in zip(a, b, strict=True)]
        out[what + "_medians"] = (statistics.median(a), statistics.median(b))
    return out


def row(iters=1000, repeats=3):
    """The line of ``docs/benchmarks.md``: (case, measured, target), with the default
    checkpoint_every and, for reference, a write after every iteration."""
    m = measure(iters, repeats, verbose=False)
    e = measure(iters, repeats, verbose=False, every=0.0)
    med = statistics.median
    return (f"7. MCEM, {iters} linkage iterations: with / without checkpoint, wall (cpu)",
            f"{med(m['wall']):.2f} ({med(m['cpu']):.2f}); writing every iteration: "
            f"{med(e['wall']):.2f} ({med(e['cpu']):.2f})", "<= 1.2")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--every", type=float, default=1.0, help="checkpoint_every in seconds (0: every iteration)")
    args = ap.parse_args()
    m = measure(args.iters, args.repeats, every=args.every)
    for what in ("wall", "cpu"):
        (a, b), paired = m[what + "_medians"], m[what]
        print(f"{what}: median without {a:.2f} s, with {b:.2f} s; median paired ratio "
              f"{statistics.median(paired):.3f} (min {min(paired):.3f}, max {max(paired):.3f})")
    a, b = m["wall_medians"]
    print(f"checkpoint cost per iteration (wall, median): {1e3 * (b - a) / args.iters:.3f} ms")


if __name__ == "__main__":
    main()

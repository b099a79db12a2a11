"""The benchmark suite: every script in its own process, one BLAS thread, tables into docs/benchmarks.md.

    python benchmarks/run.py [--quick] [--only NAME ...]

Each script measures its contenders side by side in one process (medians of interleaved rounds,
marginal costs where a run has fixed costs, process peak memory from ``wait4``) and writes its
own section of ``docs/benchmarks.md`` with the command, the machine, the threads, the BLAS and
the versions it ran with (see ``benchmarks/harness.py``):

- ``bench_mixture.py``: exact EM iteration against scikit-learn, the Gibbs sweep against an exact
  E step, process peak memory of a streamed MCEM fit, the cost's exponent in N;
- ``glmm.py``: time to within 0.1 SE of the quadrature MLE on a 10^4-group logit GLMM against a
  naive emcee MCEM and R's glmer/glmmTMB (skipped without ``Rscript``), and the sharded E step;
- ``bench_lmm.py``: a linear mixed model against statsmodels' MixedLM and R's lmer (each skipped
  when absent);
- ``bench_compiler.py``: the model language against the ready-made GLMM per MCEM iteration;
- ``bench_chains.py``: the block samplers of chains against a log-joint evaluation;
- ``bench_checkpoint.py``: the cost of checkpointing.

scikit-learn is a dependency of mcem; statsmodels and R are benchmark-only and optional.
Machines here are noisy: compare the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402 - beside this file

SCRIPTS = {
    "mixture": ["bench_mixture.py", "--write"],
    "glmm": ["glmm.py"],
    "lmm": ["bench_lmm.py"],
    "compiler": ["bench_compiler.py"],
    "chains": ["bench_chains.py"],
    "checkpoint": ["bench_checkpoint.py"],
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="each script's small sizes (nothing is written)")
    p.add_argument("--only", nargs="*", choices=sorted(SCRIPTS), default=None)
    a = p.parse_args(argv)
    here = Path(__file__).resolve().parent
    for name in a.only or SCRIPTS:
        script, *args = SCRIPTS[name]
        if a.quick:
            args = [x for x in args if x != "--write"] + ["--quick"]  # quick runs write no docs
        print(f"== {name}: python benchmarks/{script} {' '.join(args)}", flush=True)
        r = harness.run_process([sys.executable, str(here / script), *args], env={"OPENBLAS_NUM_THREADS": "1"})
        print(r["stdout"][-6000:])
        print(f"== {name}: exit {r['returncode']}, {r['wall']:.0f} s wall, {r['cpu']:.0f} s CPU, "
              f"peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()

"""What every benchmark prints first: the command, thread settings, CPU affinity, machine, load,
numpy's BLAS and the versions (so that a table can be read next to the machine that made it)."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np

import mcem
from mcem import _jax

__all__ = ["THREAD_VARS", "header"]

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")


def header(argv):
    """Print the benchmark's context for the command line ``argv``."""
    print("command:", " ".join([os.path.basename(sys.executable)] + list(argv)))
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print("threads:", ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in THREAD_VARS),
          f"| os.cpu_count()={os.cpu_count()} | CPU affinity {affinity}")
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print("machine:", cpu, "|", platform.platform(), "| python", platform.python_version())
    try:
        print("load average (1, 5, 15 min):", ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    except OSError:
        pass
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    print(f"numpy {np.__version__}, BLAS: {blas.get('name', '?')} {blas.get('version', '')}"
          f" ({blas.get('openblas configuration', '').strip()})")
    print("jax", _jax.jax().__version__, "| mcem", mcem.__version__, flush=True)

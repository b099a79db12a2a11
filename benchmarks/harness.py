"""The benchmark suite's instrument: what every table is measured with.

- :func:`context` records the machine, the thread settings, numpy's BLAS and what threadpoolctl
  sees loaded, the load average and the versions; :func:`context_markdown` prints it under a table.
- :func:`interleaved` times several contenders in round robin (the order reversed every other
  round, so a drift in the machine's load touches them alike) and returns every repeat;
  :func:`median` summarises.
- :func:`marginal` measures the marginal cost of iterations: a contender runs ``k1`` and ``k2``
  iterations from the same start inside each round, and one iteration costs
  ``(t(k2) - t(k1)) / (k2 - k1)``; what a run pays once (validation, initialisation, start-up,
  the final pass) cancels.
- :func:`run_process` runs a whole Python process and returns its wall time, its CPU time and its
  peak resident memory (``ru_maxrss`` from ``wait4``: the process peak, not traced allocations).
- :func:`write_section` replaces one marked section of ``docs/benchmarks.md``, so each benchmark
  script owns its table and the command that made it.

CPU time is ``time.process_time`` (every thread of the process), wall time ``time.perf_counter``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

__all__ = [
    "DOC",
    "THREAD_VARS",
    "context",
    "context_markdown",
    "interleaved",
    "marginal",
    "median",
    "one_blas_thread",
    "last_json",
    "run_process",
    "run_python",
    "write_section",
]

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _blas_pools():
    """What threadpoolctl sees loaded in this process: library, version, threads, kernel."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        {k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads", "architecture")}
        for p in threadpool_info()
    ]


def _versions():
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("scipy", "sklearn", "jax", "emcee", "mcem", "statsmodels"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


def context(argv=None):
    """The context of a measurement, as a dict (JSON-serialisable)."""
    argv = sys.argv if argv is None else argv
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "command": " ".join(["python"] + [os.path.relpath(argv[0], ROOT) if argv else ""] + list(argv[1:])),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_cpu_model()}, {os.cpu_count()} logical CPUs, affinity {affinity}, {platform.system()}",
        "threads": {v: os.environ.get(v, "unset") for v in THREAD_VARS},
        "blas": _blas_pools(),
        "load_average": load,
        "versions": _versions(),
    }


def context_markdown(ctx):
    """A few lines for under a table: command, date, machine, threads and BLAS, load, versions."""
    blas = "; ".join(
        f"{p['internal_api']} {p['version']} ({p['architecture']}), {p['num_threads']} thread(s)"
        for p in ctx["blas"]
    ) or "not inspected"
    threads = ", ".join(f"{k}={v}" for k, v in ctx["threads"].items())
    versions = ", ".join(f"{k} {v}" for k, v in ctx["versions"].items())
    return "\n".join([
        f"Command: `{ctx['command']}` ({ctx['date']}).",
        f"Machine: {ctx['machine']}; load average before the run {ctx['load_average']}.",
        f"Threads: {threads}; BLAS pools seen by threadpoolctl: {blas}.",
        f"Versions: {versions}.",
    ])


@contextlib.contextmanager
def one_blas_thread():
    """Limit every BLAS/OpenMP pool of this process to one thread (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1):
        yield


def median(xs):
    return float(np.median(np.asarray(xs, dtype=float)))


def interleaved(contenders, repeats=5, clock="cpu", warmup=1):
    """Times of ``contenders`` (a dict name -> zero-argument callable) in interleaved rounds.

    Returns a dict name -> list of ``repeats`` times (seconds). ``warmup`` untimed rounds first.
    """
    tick = CLOCKS[clock]
    names = list(contenders)
    out = {n: [] for n in names}
    for r in range(warmup + repeats):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            t0 = tick()
            contenders[n]()
            dt = tick() - t0
            if r >= warmup:
                out[n].append(dt)
    return out


def marginal(contenders, k1, k2, repeats=5, clock="cpu", warmup=1):
    """Marginal seconds per iteration: ``contenders`` maps a name to ``run(k)`` that runs ``k``
    iterations from the same start. Returns a dict name -> list of per-round marginal costs."""
    if not k2 > k1 >= 0:
        raise ValueError(f"marginal: need k2 > k1 >= 0, got k1={k1}, k2={k2}")
    calls = {}
    for n, run in contenders.items():
        calls[(n, k1)] = (lambda run=run: run(k1))
        calls[(n, k2)] = (lambda run=run: run(k2))
    times = interleaved(calls, repeats=repeats, clock=clock, warmup=warmup)
    return {n: [(b - a) / (k2 - k1) for a, b in zip(times[(n, k1)], times[(n, k2)])] for n in contenders}


def run_process(argv, env=None, timeout=None):
    """Run ``argv`` as a child process (cwd: the repository) and return its wall time, CPU time,
    peak resident memory and output.

    The child is reaped with ``os.wait4``, so ``cpu`` (user + system) and ``peak_rss_bytes``
    (``ru_maxrss``, KiB on Linux) belong to that child alone: the process peak, not traced
    allocations. ``stdout`` holds its standard output and error together.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mcem-bench-{os.getpid()}-{time.monotonic_ns()}.out"
    with open(out_path, "w") as fout:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=full_env, stdout=fout, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.005)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = out_path.read_text()
    out_path.unlink()
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "returncode": proc.returncode,
        "stdout": text,
    }


def run_python(code, env=None, timeout=None):
    """:func:`run_process` on ``python -c code`` with this interpreter."""
    return run_process([sys.executable, "-c", code], env=env, timeout=timeout)


def last_json(text):
    """The last line of ``text`` that parses as JSON (what a child process printed as its result)."""
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    raise ValueError(f"no JSON line in the child's output:\n{text[-2000:]}")


def write_section(name, markdown, path=DOC):
    """Replace the text between ``<!-- bench:name -->`` and ``<!-- /bench:name -->`` in ``path``
    (appended at the end when the markers are absent)."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)

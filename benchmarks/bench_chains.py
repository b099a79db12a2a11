"""Block samplers for chain latents: FFBS, the Kalman simulation smoother and conditional SMC.

    OPENBLAS_NUM_THREADS=1 taskset -c 0 python benchmarks/bench_chains.py [--quick] [--repeats 15]

Every case runs an :class:`mcem.EStep` with 4 chains on one latent path of length T and measures,
as medians of interleaved repeats in CPU time (``time.process_time``, which counts XLA's threads)
and wall time, after a warm-up of each shape (JAX compilation excluded):

- ``E step``: ``es.run(theta, state, 1, rng, burn=0)`` at a theta never seen before (the mean
  ``mu`` or ``level0`` moved by a new small amount each call, so nothing is reused across
  thetas): everything one kept draw costs at a new theta (the chain's prior and the log-joint
  offset at theta, the kernel's refresh, one sweep, the E step's bookkeeping);
- ``step, new theta``: ``es.kernel.step`` on the E step's target right after
  ``es.kernel.refresh`` at another new theta (untimed): the sweep proper (FFBS: emissions over
  the K states, forward filter, backward sampling; Kalman: a draw from the factorisation that
  the refresh made; CSMC: one pass over the pools);
- ``step, same theta``: the next step at that theta (FFBS reuses the forward filter when the
  chain is the model's only latent; CSMC does not);
- ``log_joint``: ``model.log_joint(theta, z)`` on the 4 chains' paths, at yet another new theta
  (the ready HMM keeps its emission table for the last theta it saw).

1. Scaling of the FFBS sweep with T (10^3, 10^4, 10^5) on the Gaussian HMM written in the model
   language (K = 2): exponent of time vs T by least squares on logs. Target: near 1.
2. Sweep cost over one evaluation of the log joint: FFBS on the model-language HMM and on the
   ready ``mcem.models.gaussian_hmm`` (``sampler="ffbs"``, bypassing its exact sampler),
   KalmanSmoother on ``local_level`` (T = 10^3, 10^4), CSMC on ``stochastic_volatility``
   (T = 500, 10^3). Target: at most 3. A cProfile of one-draw E steps at the largest T of each
   case says where the time goes. For context, the same measures of the exact posterior samplers
   of the ready HMM and local level (``sampler="exact"``: no kernel, one draw of every path).
3. (CSMC) bulk ESS per sweep of each h_t and of the log-joint trace (T = 500, 300 sweeps).

Machines here are shared: compare the ratios, and read the load average printed at the top.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import os
import pstats
import sys
import time
import warnings

import numpy as np

import mcem
from machine import header  # noqa: E402 - beside this file
from mcem.models import stochvol

N_CHAINS, K = 4, 2
WHAT = ("run", "step_new", "step_same", "log_joint")
#: Package functions the profile always lists when they ran (the pieces of a sweep and of an E step).
NAMED = ("_emission_states", "_discrete_args", "path_log_prior", "_own", "chain_prior", "_diagnostics",
         "draw_band", "quadratic_emission", "factor_band", "gaussian_proposal", "pool_forward_backward_sample")


def _example(name):
    """The model of ``examples/<name>.py`` (the model a user writes, measured as written there)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


hmm = _example("hmm").hmm


# ---------------------------------------------------------------------------- data
def hmm_data(T, rng):
    """A 2-state Gaussian HMM series: switching probability 0.05, means (-1, 1.5), sds (1, 0.7)."""
    s = np.cumsum(rng.random(T) < 0.05) % 2
    return np.where(s == 1, 1.5, -1.0) + np.where(s == 1, 0.7, 1.0) * rng.normal(size=T)


def level_data(T, rng):
    """A local-level series: random-walk level (sd 0.3) observed with noise (sd 1)."""
    return np.cumsum(0.3 * rng.normal(size=T)) + rng.normal(size=T)


# ---------------------------------------------------------------------------- timing
def timed(fn):
    """(result, CPU seconds, wall seconds) of one call."""
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - w


class Case:
    """One model at one T with its E step, a start and a source of never-seen thetas."""

    _counter = 0  # shared by every case: each theta handed out is new

    def __init__(self, name, kernel, T, build, sampler, param, rng):
        self.name, self.kernel_name, self.T, self.param = name, kernel, T, param
        self.model, c, w = timed(build)
        self.build = (c, w)
        self.es = mcem.EStep(self.model, sampler, n_chains=N_CHAINS)
        site = self.model.latent_names[0]
        got = self.es.kernel if kernel == "exact" else getattr(self.es.kernel, "kernels", {}).get(site)
        if got is None or got.name != kernel:
            raise RuntimeError(f"{name}: the E step samples with {self.es.kernel!r}, not {kernel}")
        self.theta0 = self.model.default_theta()
        self.state = self.es.init(self.theta0, rng)
        self.times = {w: [] for w in WHAT}

    def new_theta(self):
        Case._counter += 1
        th = dict(self.theta0)
        th[self.param] = np.asarray(th[self.param], dtype=float) + 1e-5 * Case._counter
        return th

    def measure(self, rng, record=True):
        es, out = self.es, {}
        r, *out["run"] = timed(lambda: es.run(self.new_theta(), self.state, 1, rng, burn=0))
        self.state = r.state
        target = es.target(self.new_theta())
        ks = es.kernel.refresh(self.state.kernel_state, target)
        (ks, _), *out["step_new"] = timed(lambda: es.kernel.step(ks, target, rng))
        _, *out["step_same"] = timed(lambda: es.kernel.step(ks, target, rng))
        z, th = self.state.z, self.new_theta()
        _, *out["log_joint"] = timed(lambda: np.asarray(self.model.log_joint(th, z)))
        if record:
            for w in WHAT:
                self.times[w].append(out[w])

    def med(self, what):
        """Median (CPU, wall) seconds."""
        return np.median(np.array(self.times[what]), axis=0)


def build_cases(quick, rng, hmm_only=False):
    """The cases, in the order of the report (``hmm_only``: the model-language HMM alone)."""
    hmm_T = (1_000, 10_000, 30_000) if quick else (1_000, 10_000, 100_000)
    lvl_T = () if hmm_only else (1_000, 10_000)
    sv_T = () if hmm_only else (500, 1_000)
    cases = []
    for T in hmm_T:
        y = hmm_data(T, rng)
        cases.append(Case("HMM, model language", "ffbs", T, lambda y=y: hmm(y=y, K=K), "auto", "mu", rng))
        if hmm_only:
            continue
        cases.append(Case("HMM, ready gaussian_hmm", "ffbs", T, lambda y=y: mcem.models.gaussian_hmm(y, K), "ffbs",
                          "mu", rng))
        cases.append(Case("HMM, ready, its exact sampler (context)", "exact", T,
                          lambda y=y: mcem.models.gaussian_hmm(y, K), "exact", "mu", rng))
    for T in lvl_T:
        y = level_data(T, rng)
        cases.append(Case("local level", "kalman", T, lambda y=y: mcem.models.local_level(y), "kalman", "level0", rng))
        cases.append(Case("local level, its exact sampler (context)", "exact", T,
                          lambda y=y: mcem.models.local_level(y), "exact", "level0", rng))
    for T in sv_T:
        y, _ = stochvol.simulate(T, rng=rng)
        cases.append(Case("stochastic volatility", "csmc", T, lambda y=y: stochvol.stochastic_volatility(y), "auto",
                          "mu", rng))
    return cases


# ---------------------------------------------------------------------------- profile
def profile(case, n, rng, top=14):
    """cProfile of ``n`` one-draw E steps at new thetas: (total, top package functions by
    cumulative time and the NAMED ones, top functions by own time), in ms per E step."""
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(n):
        case.state = case.es.run(case.new_theta(), case.state, 1, rng, burn=0).state
    pr.disable()
    st = pstats.Stats(pr)
    rows = []
    for (path, line, fn), (_, _, tt, ct, _) in st.stats.items():
        short = path.split("/mcem/", 1)[1] if "/mcem/" in path and "site-packages" not in path else None
        label = fn if path == "~" else f"{short or os.path.basename(path)}:{fn}"
        rows.append((ct / n * 1e3, tt / n * 1e3, label, short is not None))
    cum = sorted((r for r in rows if r[3]), reverse=True)[:top]
    labels = {r[2] for r in cum}
    cum += sorted(r for r in rows if r[3] and r[2].split(":")[-1] in NAMED and r[2] not in labels)[::-1]
    own = sorted(rows, key=lambda r: -r[1])[:6]
    total = st.total_tt / n * 1e3
    return total, cum, own


# ---------------------------------------------------------------------------- CSMC ESS
def csmc_ess(T, n_draws, rng):
    y, _ = stochvol.simulate(T, rng=rng)
    model = stochvol.stochastic_volatility(y)
    es = mcem.EStep(model, n_chains=N_CHAINS, burn=50)
    th = model.default_theta()
    st = es.init(th, rng)
    st = es.run(th, st, 1, rng).state  # burn-in (proposal adapted)
    r, c, w = timed(lambda: es.run(th, st, n_draws, rng, burn=0))
    e = np.asarray(mcem.diagnostics.ess(r.draws["h"]), dtype=float)
    per = e / (N_CHAINS * n_draws)
    stay = (np.diff(r.draws["h"], axis=1) == 0).mean(axis=(0, 1))  # per t: sweeps that kept h_t
    return dict(T=T, n=n_draws, cpu=c / n_draws, wall=w / n_draws, median=float(np.median(per)),
                stay_median=float(np.median(stay)), stay_max=float(stay.max()),
                min=float(per.min()), q10=float(np.quantile(per, 0.1)),
                loglik=float(r.diagnostics["ess_loglik"]) / (N_CHAINS * n_draws))


# ---------------------------------------------------------------------------- main
def run_cases(cases, repeats, rng, verbose=True):
    """Warm up every case (two untimed rounds: JAX compiles each shape), then ``repeats``
    interleaved rounds; returns the warm-up's (CPU, wall) seconds."""
    _, c_w, w_w = timed(lambda: [c.measure(rng, record=False) for c in cases for _ in range(2)])
    if verbose:
        print(f"warm-up (JAX compilation of every shape): {c_w:.1f} s CPU, {w_w:.1f} s wall", flush=True)
    for rep in range(repeats):
        for c in cases:  # interleaved: a drift in the machine's load touches every case alike
            c.measure(rng)
        if verbose:
            print(f"repeat {rep + 1}/{repeats} done, load {os.getloadavg()[0]:.2f}", flush=True)
    return c_w, w_w


def row(quick=False, repeats=5, seed=2024):
    """One row for ``benchmarks/run.py``: (label, measured, target) of the model-language HMM's
    FFBS sweep at a new theta, over one log-joint evaluation at the largest T, and its exponent in T."""
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = build_cases(quick, rng, hmm_only=True)
        run_cases(cases, repeats, rng, verbose=False)
    big = max(cases, key=lambda c: c.T)
    Ts, sl = scaling_rows(cases, big.name)
    ratio = big.med("step_new")[0] / big.med("log_joint")[0]
    return (f"8. HMM FFBS sweep / log_joint (model language, T={big.T}, 4 chains); exponent in T",
            f"{ratio:.1f}; {sl['step_new'][0]:.2f}", "<= 3; 1")


def slope(Ts, t):
    return float(np.polyfit(np.log(Ts), np.log(t), 1)[0])


def scaling_rows(cases, name):
    """(T values, {what: (exponent from medians, min, max of per-repeat exponents)}) of one model."""
    sel = sorted((c for c in cases if c.name == name), key=lambda c: c.T)
    Ts = [c.T for c in sel]
    out = {}
    for w in ("run", "step_new", "step_same"):
        meds = [c.med(w)[0] for c in sel]
        per = [slope(Ts, [c.times[w][i][0] for c in sel]) for i in range(len(sel[0].times[w]))]
        out[w] = (slope(Ts, meds), min(per), max(per))
    return Ts, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="HMM up to T=3e4, 5 repeats, shorter profile (a smoke run)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 15; 5 with --quick)")
    ap.add_argument("--seed", type=int, default=2024)
    a = ap.parse_args()
    repeats = a.repeats or (5 if a.quick else 15)
    if repeats < 1:
        ap.error(f"--repeats must be >= 1, got {repeats}")
    header(sys.argv)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(a.seed)
    t_start = time.perf_counter()

    cases, c_b, w_b = timed(lambda: build_cases(a.quick, rng))
    print(f"built {len(cases)} cases (models, E steps, starts) in {w_b:.1f} s wall", flush=True)
    c_w, w_w = run_cases(cases, repeats, rng)

    n_prof = 8 if a.quick else 20
    prof = {}
    for name in dict.fromkeys(c.name for c in cases if c.kernel_name != "exact"):
        big = max((c for c in cases if c.name == name), key=lambda c: c.T)
        prof[(name, big.T)] = profile(big, n_prof, rng)
    ess = csmc_ess(500, 100 if a.quick else 300, rng)

    # ------------------------------------------------------------------ report
    print(f"\n{repeats} interleaved repeats, {N_CHAINS} chains, K = {K}; medians; ratios of medians; "
          f"load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| case | kernel | T | log_joint ms | E step, 1 draw, new theta: ms (x log_joint) | "
          "step, new theta: ms (x) | step, same theta: ms (x) | target |")
    print("|---|---|---|---|---|---|---|---|")
    for c in cases:
        lj = c.med("log_joint")
        cells = []
        for w in ("run", "step_new", "step_same"):
            m = c.med(w)
            cells.append(f"{1e3 * m[0]:.2f} ({m[0] / lj[0]:.1f})")
        target = "(context)" if c.kernel_name == "exact" else "<= 3"
        print(f"| {c.name} | {c.kernel_name} | {c.T} | {1e3 * lj[0]:.3f} | " + " | ".join(cells) + f" | {target} |")
    print("\nThe same in wall time:\n")
    print("| case | T | log_joint ms | E step ms (x) | step, new theta ms (x) | step, same theta ms (x) |")
    print("|---|---|---|---|---|---|")
    for c in cases:
        lj = c.med("log_joint")
        cells = [f"{1e3 * c.med(w)[1]:.2f} ({c.med(w)[1] / lj[1]:.1f})" for w in ("run", "step_new", "step_same")]
        print(f"| {c.name} | {c.T} | {1e3 * lj[1]:.3f} | " + " | ".join(cells) + " |")

    print("\nExponent of CPU time vs T (least squares on logs over T = "
          f"{', '.join(str(c.T) for c in cases if c.name == 'HMM, model language')}; in brackets the range "
          "of the exponents of single repeats; target near 1):\n")
    print("| model | E step, 1 draw, new theta | step, new theta | step, same theta |")
    print("|---|---|---|---|")
    for name in ("HMM, model language", "HMM, ready gaussian_hmm"):
        Ts, sl = scaling_rows(cases, name)
        print(f"| {name} | " + " | ".join(f"{s:.2f} [{lo:.2f}, {hi:.2f}]" for s, lo, hi in sl.values()) + " |")
    print("\nLocal exponents between consecutive T (CPU, E step / step new theta):")
    for name in ("HMM, model language", "HMM, ready gaussian_hmm"):
        sel = sorted((c for c in cases if c.name == name), key=lambda c: c.T)
        parts = []
        for c0, c1 in zip(sel, sel[1:]):
            e = [np.log(c1.med(w)[0] / c0.med(w)[0]) / np.log(c1.T / c0.T) for w in ("run", "step_new")]
            parts.append(f"{c0.T}->{c1.T}: {e[0]:.2f} / {e[1]:.2f}")
        print(f"  {name}: " + "; ".join(parts))

    print(f"\nBuild of every model: {c_b:.1f} s CPU; warm-up (compilation) {c_w:.1f} s CPU, {w_w:.1f} s wall")
    for c in cases:
        print(f"  build {c.name}, T={c.T}: {c.build[0]:.2f} s CPU")

    for (name, T), (total, cum, own) in prof.items():
        print(f"\nProfile, {name}, T={T}: {n_prof} one-draw E steps at new thetas, {total:.2f} ms per E step "
              "(cProfile on; time in a compiled JAX call counts to the Python function making it)")
        print("  cumulative ms per E step, package functions (the top 14, then the pieces named in NAMED):")
        for ct, tt, lab, _ in cum:
            print(f"    {ct:8.2f}  (own {tt:6.2f})  {lab}")
        print("  own ms per E step, any function:")
        for ct, tt, lab, _ in own:
            print(f"    {tt:8.2f}  (cum {ct:6.2f})  {lab}")

    print(f"\nCSMC on stochastic volatility, T = {ess['T']}, {ess['n']} sweeps x {N_CHAINS} chains at the default "
          f"theta ({1e3 * ess['cpu']:.1f} ms CPU, {1e3 * ess['wall']:.1f} ms wall per kept sweep incl. bookkeeping): "
          f"bulk ESS per sweep and chain of h_t: median {ess['median']:.2f}, 10% quantile {ess['q10']:.2f}, "
          f"min {ess['min']:.2f}; of the log-joint trace {ess['loglik']:.2f}. Fraction of sweeps leaving h_t "
          f"where it was: median over t {ess['stay_median']:.3f}, max {ess['stay_max']:.3f}")
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s wall")


if __name__ == "__main__":
    main()

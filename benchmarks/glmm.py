"""GLMM benchmarks: time to the quadrature MLE (mcem, a naive emcee MCEM, R's peers), and the
sharded E step.

    python benchmarks/glmm.py [--quick] [--case glmm|sharded|all] [--seeds 3] [--budget 3600]

Every process of the benchmark uses one BLAS thread: the thread variables are set to 1 before
numpy is imported (so the pool's workers and the R processes inherit them) and threadpoolctl
limits the pools of this process.

Case A (section ``glmm``). A random-intercept logistic GLMM, 10^4 groups x 10 observations
(:func:`data`), against its adaptive-quadrature MLE and standard errors
(``mcem.models.random_intercept.fit_quadrature``). Every contender starts from the same theta:
beta from a plain logistic regression without random effects, sigma = 1.

1. mcem as its users run it, ``mcem.fit(mcem.models.random_intercept_glmm(X, y, g), theta0,
   method="mcem", rng=seed)`` and nothing else; a callback (which never stops the run) notes
   the wall and CPU time when the iterate first lies within 0.1 reference SE in every
   coordinate. Also the time to its own stop with its standard errors, iterations, draws and
   the final distance. Seeds 1..k (``--seeds``).
2. A naive emcee MCEM written the way a competent user would (``benchmarks/naive_glmm.py``: one
   1-D emcee ensemble per group, DEMove, 32 walkers, warm-started, 160 draws per group and
   iteration, numpy/scipy M step), from the same start to the same finish line, with a fixed
   budget (``--budget``, default 3600 s); when it does not arrive, "> budget" with its distance.
   At a small G the same loop with emcee on the whole latent vector is set beside the per-group
   loop, to show why the per-group design is the fair one.
3. R's peers on the same data (``benchmarks/peers/glmm_timing.R``): glmer Laplace, glmer
   nAGQ = 10 and glmmTMB: R's own timing of each fit call and the whole process, and each
   estimate's distance from the quadrature MLE in its SEs (a Laplace fit is biased).

mcem's seeds and R's processes alternate (R's run in rounds between mcem's seeds, the order
reversed every other round); the naive loops run once, after them.

Case B (section ``sharded``). One E step of that GLMM (4 chains, 200 draws, warm chains)
serially vs sharded over a 2-process pool (``mcem.ShardedEStep(..., shards=2,
executor=pool)``): wall time, medians of interleaved repeats.

``--quick`` runs small sizes (a check that it runs, under about two minutes) and writes
``benchmarks/results/glmm_quick.json`` without touching docs/benchmarks.md; the full run writes
its sections there (``harness.write_section``) and ``benchmarks/results/glmm.json``.
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # before numpy: this process, its pool's workers and R inherit it

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import naive_glmm  # noqa: E402

import mcem  # noqa: E402
from mcem.models.random_intercept import fit_quadrature, random_intercept_glmm  # noqa: E402

HERE = Path(__file__).resolve().parent
R_SCRIPT = HERE / "peers" / "glmm_timing.R"
RESULTS = HERE / "results"
THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
K_SE = 0.1  # the finish line, in reference standard errors


def data(G=10_000, n_per=10, seed=0):
    rng = np.random.default_rng(seed)
    n = G * n_per
    g = np.repeat(np.arange(G), n_per)
    X = np.c_[np.ones(n), rng.normal(size=n)]
    u = rng.normal(scale=1.0, size=G)
    eta = X @ np.array([-0.5, 1.0]) + u[g]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return X, y, g


def start(X, y):
    """The common start: beta from a plain logistic regression, sigma = 1."""
    return {"beta": naive_glmm.logistic_start(X, y), "sigma": 1.0}


class _Reference:
    def __init__(self, q):
        self.beta = np.asarray(q.params["beta"], dtype=float)
        self.sigma = float(q.params["sigma"])
        self.se_beta = np.asarray(q.se["beta"], dtype=float)
        self.se_sigma = float(q.se["sigma"])
        self.loglik = float(q.loglik)
        self.seconds = float(q.seconds)

    def distances(self, beta, sigma):
        """Per-coordinate distances in reference SEs: beta..., sigma."""
        return np.append(np.abs(np.asarray(beta, dtype=float) - self.beta) / self.se_beta,
                         abs(float(sigma) - self.sigma) / self.se_sigma)

    def as_dict(self):
        return {"beta": self.beta.tolist(), "sigma": self.sigma, "se_beta": self.se_beta.tolist(),
                "se_sigma": self.se_sigma, "loglik": self.loglik, "seconds": self.seconds}


class _Arrival:
    """mcem callback: notes when the iterate first lies within ``K_SE`` reference SEs in every
    coordinate (wall and CPU seconds since construction) and its distance at every iteration.
    It never stops the run."""

    def __init__(self, ref):
        self.ref = ref
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.wall = self.cpu = self.at_iteration = None
        self.path = []

    def __call__(self, row):
        p = row["params"]
        d = float(self.ref.distances(p["beta"], p["sigma"]).max())
        now = time.perf_counter() - self.t0
        self.path.append((now, d, int(row.get("m", 0))))
        if self.wall is None and d <= K_SE:
            self.wall, self.cpu, self.at_iteration = now, time.process_time() - self.c0, len(self.path)
        return False


def run_mcem(X, y, g, theta0, ref, seed):
    arrival = _Arrival(ref)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = mcem.fit(random_intercept_glmm(X, y, g), theta0, method="mcem", rng=seed, callback=arrival)
        fit_wall = time.perf_counter() - arrival.t0
        se = res.standard_errors()
    stop_wall, stop_cpu = time.perf_counter() - arrival.t0, time.process_time() - arrival.c0
    d = ref.distances(res.params["beta"], res.params["sigma"])
    se_f = np.append(np.asarray(se["beta"], dtype=float), float(se["sigma"]))
    se_ref = np.append(ref.se_beta, ref.se_sigma)
    return {
        "seed": seed, "t01_wall": arrival.wall, "t01_cpu": arrival.cpu, "t01_iteration": arrival.at_iteration,
        "fit_wall": fit_wall, "stop_wall": stop_wall, "stop_cpu": stop_cpu, "stopped_by": res.stopped_by,
        "iterations": int(res.n_iter), "draws": int(res.total_draws), "final_distance": float(d.max()),
        "final_distances": d.tolist(), "se_ratio_worst": float(np.max(np.abs(se_f / se_ref - 1))),
        "beta": np.asarray(res.params["beta"], dtype=float).tolist(), "sigma": float(res.params["sigma"]),
        "path": arrival.path,
        "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught}),
    }


def run_naive(X, y, g, theta0, ref, budget, seed, whole_vector=False):
    trace = naive_glmm.NaiveTrace(ref.beta, ref.sigma, ref.se_beta, ref.se_sigma, k=K_SE)
    fn = naive_glmm.whole_vector_emcee_mcem if whole_vector else naive_glmm.per_group_emcee_mcem
    beta, sigma = fn(X, y, g, theta0["beta"], theta0["sigma"], trace, budget, seed=seed)
    return {
        "design": "whole latent vector" if whole_vector else "one 1-D ensemble per group", "seed": seed,
        "budget": budget, "G": int(np.unique(g).size), "t01_wall": trace.wall, "t01_cpu": trace.cpu,
        "t01_iteration": trace.at_iteration, "iterations": trace.iterations, "draws": trace.draws,
        "elapsed_wall": trace.elapsed(), "elapsed_cpu": time.process_time() - trace.c0,
        "final_distance": trace.last_distance, "beta": np.asarray(beta).tolist(), "sigma": float(sigma),
        "path": trace.path,
    }


def run_r(X, y, g, repeats):
    """One R process timing the three peers; None when Rscript is absent."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv, out = Path(tmp) / "glmm.csv", Path(tmp) / "out.json"
        np.savetxt(csv, np.c_[y, X[:, 1], g], delimiter=",", header="y,x,group", comments="",
                   fmt=["%d", "%.17g", "%d"])
        proc = harness.run_process(["Rscript", str(R_SCRIPT), str(csv), str(repeats), str(out)], env=THREAD_ENV)
        if proc["returncode"] != 0 or not out.exists():
            return {"error": proc["stdout"][-2000:], "returncode": proc["returncode"]}
        result = json.loads(out.read_text())
    result["process"] = {k: proc[k] for k in ("wall", "cpu", "peak_rss_bytes")}
    return result


def _summ(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": harness.median(xs), "min": float(min(xs)), "max": float(max(xs)), "n": len(xs)}


def case_a(G, seeds, budget, r_rounds, r_repeats, small_G, small_budget, naive_seed=1, log=print, peers=None):
    X, y, g = data(G)
    ref = _Reference(fit_quadrature(X, y, g))
    theta0 = start(X, y)
    log(f"[glmm] G={G}: quadrature MLE beta={ref.beta.round(4).tolist()} sigma={ref.sigma:.4f} "
        f"(SE {ref.se_beta.round(4).tolist()}, {ref.se_sigma:.4f}) in {ref.seconds:.1f} s; "
        f"start beta={np.round(theta0['beta'], 4).tolist()}, sigma=1")
    Xw, yw, gw = data(30)  # untimed warm-up: imports and caches of both loops
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcem.fit(random_intercept_glmm(Xw, yw, gw), start(Xw, yw), method="mcem", rng=0, max_iter=2)
    ours, r_runs = [], []
    have_r = shutil.which("Rscript") is not None
    for k, seed in enumerate(seeds):
        steps = ["mcem", "R"] if k % 2 == 0 else ["R", "mcem"]
        for s in steps:
            if s == "R" and peers is not None:
                continue
            if s == "mcem":
                r = run_mcem(X, y, g, theta0, ref, seed)
                log(f"[glmm] mcem seed {seed}: 0.1 SE at {r['t01_wall']} s (iteration {r['t01_iteration']}); "
                    f"stop {r['stop_wall']:.1f} s ({r['stopped_by']}), {r['iterations']} iterations, "
                    f"{r['draws']} draws, final {r['final_distance']:.3f} SE")
                ours.append(r)
            elif have_r and k < r_rounds:
                rr = run_r(X, y, g, r_repeats)
                r_runs.append(rr)
                log(f"[glmm] R round {k + 1}: " + ("error" if "error" in rr else
                    ", ".join(f"{n} {f['seconds']:.2f} s" for n, f in rr["fits"].items())))
    if peers is not None:  # the contenders' runs of an earlier command, mcem's seeds anew
        log(f"[glmm] naive loop, small cases and R taken from {peers['from']}")
        return {"G": G, "n_per": 10, "seeds": list(seeds), "reference": ref.as_dict(),
                "start": {"beta": np.asarray(theta0["beta"]).tolist(), "sigma": 1.0}, "mcem": ours,
                "naive": peers["naive"], "naive_design": naive_glmm.DESIGN,
                "small": {**peers["small"], "mcem": run_mcem(*_small(small_G), seeds[0])},
                "R": peers["R"], "r_repeats": peers["r_repeats"], "peers_from": peers["from"]}
    naive = run_naive(X, y, g, theta0, ref, budget, naive_seed)
    log(f"[glmm] naive per-group emcee MCEM: arrival {naive['t01_wall']} s, {naive['iterations']} iterations, "
        f"distance {naive['final_distance']:.3f} SE after {naive['elapsed_wall']:.0f} s")
    Xs, ys, gs = data(small_G, seed=1)
    ref_s = _Reference(fit_quadrature(Xs, ys, gs))
    th_s = start(Xs, ys)
    small = {"G": small_G, "budget": small_budget, "reference": ref_s.as_dict(),
             "per_group": run_naive(Xs, ys, gs, th_s, ref_s, small_budget, naive_seed),
             "whole_vector": run_naive(Xs, ys, gs, th_s, ref_s, small_budget, naive_seed, whole_vector=True),
             "mcem": run_mcem(Xs, ys, gs, th_s, ref_s, seeds[0])}
    log(f"[glmm] G={small_G}: whole-vector emcee {small['whole_vector']['t01_wall']} s "
        f"({small['whole_vector']['final_distance']:.2f} SE), per-group {small['per_group']['t01_wall']} s")
    return {"G": G, "n_per": 10, "seeds": list(seeds), "reference": ref.as_dict(),
            "start": {"beta": np.asarray(theta0["beta"]).tolist(), "sigma": 1.0},
            "mcem": ours, "naive": naive, "naive_design": naive_glmm.DESIGN, "small": small,
            "R": r_runs if have_r else None, "r_repeats": r_repeats}


def _small(small_G):
    Xs, ys, gs = data(small_G, seed=1)
    ref_s = _Reference(fit_quadrature(Xs, ys, gs))
    return Xs, ys, gs, start(Xs, ys), ref_s


def _r_fit_summary(r_runs, ref):
    """Per R fit: median fit seconds over every repeat of every process, estimates' distances."""
    runs = [r for r in r_runs or [] if r and "error" not in r]
    if not runs:
        return {}
    out = {}
    for name in runs[0]["fits"]:
        fits = [r["fits"][name] for r in runs]
        f = fits[-1]
        d = ref.distances(f["beta"], f["sd_group"])
        out[name] = {
            "label": f["fit"], "seconds": harness.median([s for x in fits for s in np.atleast_1d(x["seconds_all"])]),
            "cpu": harness.median([s for x in fits for s in np.atleast_1d(x["cpu_seconds_all"])]),
            "n": sum(np.atleast_1d(x["seconds_all"]).size for x in fits),
            "beta_distance": float(d[:-1].max()), "sigma_distance": float(d[-1]),
            "sigma_signed": (float(f["sd_group"]) - ref.sigma) / ref.se_sigma,
            "loglik_minus_quadrature": float(f["loglik"]) - ref.loglik, "converged": bool(f["converged"]),
        }
    out["_process"] = {"wall": harness.median([r["process"]["wall"] for r in runs]),
                       "cpu": harness.median([r["process"]["cpu"] for r in runs]),
                       "peak_rss_gib": max(r["process"]["peak_rss_bytes"] for r in runs) / 2**30,
                       "n": len(runs), "R": runs[0]["R"], "BLAS": runs[0]["BLAS"],
                       "threads": runs[0]["threads"], "versions": runs[0]["versions"]}
    return out


def _fmt(x, nd=1):
    return "n/a" if x is None else f"{x:.{nd}f}"


def table_a(res, ctx):
    ref = _Reference.__new__(_Reference)
    r = res["reference"]
    ref.beta, ref.sigma = np.array(r["beta"]), r["sigma"]
    ref.se_beta, ref.se_sigma, ref.loglik = np.array(r["se_beta"]), r["se_sigma"], r["loglik"]
    ours, naive, small = res["mcem"], res["naive"], res["small"]
    t01 = _summ([o["t01_wall"] for o in ours])
    c01 = _summ([o["t01_cpu"] for o in ours])
    tstop = _summ([o["stop_wall"] for o in ours])
    cstop = _summ([o["stop_cpu"] for o in ours])
    never = sum(o["t01_wall"] is None for o in ours)
    G, d = res["G"], naive_glmm.DESIGN
    lines = [
        f"Random-intercept logit GLMM, {G} groups x {res['n_per']} observations (`benchmarks/glmm.py` "
        f"`data()`, seed 0). Reference: the adaptive-quadrature MLE (20 nodes) beta = "
        f"{np.round(ref.beta, 4).tolist()}, sigma = {ref.sigma:.4f}, SEs {np.round(ref.se_beta, 4).tolist()}, "
        f"{ref.se_sigma:.4f}, log-likelihood {ref.loglik:.2f} ({r['seconds']:.1f} s). Every contender starts "
        f"from beta = {np.round(res['start']['beta'], 4).tolist()} (plain logistic regression) and sigma = 1. "
        f"\"0.1 SE\": the first iterate within 0.1 reference SE in every coordinate. Seconds since the "
        f"call, wall (CPU in brackets).",
        "",
        "| contender | to 0.1 SE, s | to its stop (with SEs), s | iterations | draws | final distance (SE) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    if t01:
        spread = f"median of {t01['n']} seeds; range {t01['min']:.1f}-{t01['max']:.1f}"
        lines.append(
            f"| mcem `fit(method=\"mcem\", rng=seed)`, seeds {res['seeds']} | **{t01['median']:.1f}** "
            f"({c01['median']:.1f}); {spread}{f'; {never} never' if never else ''} | {tstop['median']:.1f} "
            f"({cstop['median']:.1f}); range {tstop['min']:.1f}-{tstop['max']:.1f}; stopped by "
            f"{', '.join(sorted({o['stopped_by'] for o in ours}))} | {int(np.median([o['iterations'] for o in ours]))} "
            f"| {int(np.median([o['draws'] for o in ours]))} | {np.median([o['final_distance'] for o in ours]):.3f} "
            f"(worst {max(o['final_distance'] for o in ours):.3f}); SE ratio worst "
            f"{max(o['se_ratio_worst'] for o in ours):.3f} |")
    else:
        lines.append(f"| mcem, seeds {res['seeds']} | never within 0.1 SE before its stop | "
                     f"{tstop['median']:.1f} | | | |")
    if naive["t01_wall"] is not None:
        nv = f"{naive['t01_wall']:.1f} ({naive['t01_cpu']:.1f})"
    else:
        nv = (f"> {naive['budget']:.0f} (budget; still {naive['final_distance']:.2f} SE away after "
              f"{naive['elapsed_wall']:.0f} s)")
    lines.append(
        f"| naive emcee MCEM, one 1-D ensemble per group ({d['walkers']} walkers, DEMove, {d['steps']} steps "
        f"per iteration, {d['keep'] * d['walkers']} draws per group kept; seed {naive['seed']}) | **{nv}** | "
        f"(no rule of its own) | {naive['iterations']} | {naive['draws']} | {naive['final_distance']:.3f} |")
    rs = _r_fit_summary(res["R"], ref)
    for name, f in rs.items():
        if name == "_process":
            continue
        lines.append(
            f"| {f['label']} (R's timing of the fit call, median of {f['n']}) | the fit: {f['seconds']:.1f} "
            f"({f['cpu']:.1f}) | | | | sigma {f['sigma_signed']:+.2f}, beta {f['beta_distance']:.2f} (largest); "
            f"log-lik {f['loglik_minus_quadrature']:+.2f} vs the quadrature MLE"
            f"{'' if f['converged'] else '; not converged'} |")
    lines.append("")
    ratios = []
    if t01 and naive["t01_wall"] is not None:
        ratios.append(f"naive / mcem to 0.1 SE: **{naive['t01_wall'] / t01['median']:.1f}** (wall; CPU "
                      f"{naive['t01_cpu'] / c01['median']:.1f}); target >= 20")
    elif t01:
        ratios.append(f"naive / mcem to 0.1 SE: **> {naive['budget'] / t01['median']:.1f}** (the naive loop did "
                      f"not arrive within its budget); target >= 20")
    lap = rs.get("glmer_laplace")
    if t01 and lap:
        ratios.append(f"mcem to 0.1 SE / glmer Laplace fit: **{t01['median'] / lap['seconds']:.1f}** (wall; CPU "
                      f"{c01['median'] / lap['cpu']:.1f}); target <= 5; mcem to its stop / glmer Laplace: "
                      f"{tstop['median'] / lap['seconds']:.1f}")
    if "_process" in rs:
        p = rs["_process"]
        ratios.append(f"R process (3 fits x {res['r_repeats']} repeats, loading included): {p['wall']:.1f} s wall, "
                      f"{p['cpu']:.1f} s CPU, peak RSS {p['peak_rss_gib']:.2f} GiB (median of {p['n']} processes); "
                      f"{p['R']}, lme4 {p['versions']['lme4']}, glmmTMB {p['versions']['glmmTMB']}, BLAS "
                      f"{p['BLAS']}, threads {json.dumps(p['threads'])}")
    elif res["R"] is None:
        ratios.append("R rows skipped: `Rscript` not found on PATH.")
    else:
        ratios.append("R rows skipped: the R script failed (see the JSON results).")
    per_seed = "; ".join(
        f"seed {o['seed']}: {_fmt(o['t01_wall'])} s (iteration {o['t01_iteration']}), stop {o['stop_wall']:.1f} s "
        f"after {o['iterations']} iterations, {o['draws']} draws, {o['final_distance']:.3f} SE" for o in ours)
    per_iteration = naive["elapsed_wall"] / max(naive["iterations"], 1)
    ratios.insert(0, f"mcem per seed (wall): {per_seed}. The naive loop: {per_iteration:.1f} "
                     f"s per iteration ({naive['iterations']} iterations, {naive['elapsed_wall']:.0f} s)")
    lines += [f"- {x}" for x in ratios]
    wv, pg, sm = small["whole_vector"], small["per_group"], small["mcem"]

    def arr(x):
        return (f"{x['t01_wall']:.1f} s ({x['t01_iteration']} iterations)" if x["t01_wall"] is not None else
                f"not within {small['budget']:.0f} s: {x['final_distance']:.2f} SE after {x['iterations']} iterations")

    lines += [
        f"- Why one ensemble per group: at G = {small['G']} (data seed 1), emcee on the whole {small['G']}-dimensional "
        f"latent vector ({2 * small['G'] + 2} walkers, DEMove, the same iteration scheme and M step) to 0.1 SE: "
        f"{arr(wv)}; the per-group loop: {arr(pg)}; mcem (seed {sm['seed']}): "
        f"{_fmt(sm['t01_wall'], 2)} s.",
        "",
        f"mcem: `mcem.fit(mcem.models.random_intercept_glmm(X, y, g), theta0, method=\"mcem\", rng=seed)` with "
        f"no other setting, seeds {res['seeds']}, a callback noting the arrival (it never stops the run); the "
        f"time to the stop includes `standard_errors()`. The naive loop (`benchmarks/naive_glmm.py`): one run, "
        f"seed {naive['seed']}, a fixed budget of {naive['budget']:.0f} s checked between iterations; its design "
        f"and why it is fair are in that file's docstring. R (`benchmarks/peers/glmm_timing.R`): "
        f"{len(res['R'] or [])} processes of {res['r_repeats']} repeats of each fit, R's `system.time` of the "
        f"fit call; the figure is the median over every repeat. mcem's seeds and R's processes were run "
        f"alternately (order reversed every other round); the naive loops after them. Distances are in "
        f"reference (quadrature) SEs, the largest over the coordinates."
        + (f" This table's mcem rows are this command's; the naive loops and R's fits are those of "
           f"{res['peers_from']} on the same machine (`--reuse-peers`)." if res.get("peers_from") else ""),
        "",
        harness.context_markdown(ctx),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- case B
def case_b(G, repeats, n_draws=200):
    X, y, g = data(G)
    model = random_intercept_glmm(X, y, g)
    theta = start(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial = mcem.EStep(model, n_chains=4)
        s_state = serial.run(theta, serial.init(theta, 0), n_draws, 1).state
        inproc = mcem.ShardedEStep(model, shards=2, n_chains=4)  # the blocks one after the other, here
        i_state = inproc.run(theta, inproc.init(theta, 0), n_draws, 1).state
        with ProcessPoolExecutor(2) as pool:
            sharded = mcem.ShardedEStep(model, shards=2, executor=pool, n_chains=4)
            p_state = sharded.run(theta, sharded.init(theta, 0), n_draws, 1).state  # sends the blocks
            times = harness.interleaved(
                {"serial": lambda: serial.run(theta, s_state, n_draws, 2),
                 "sharded": lambda: sharded.run(theta, p_state, n_draws, 2),
                 "in_process": lambda: inproc.run(theta, i_state, n_draws, 2)},
                repeats=repeats, clock="wall", warmup=1)
    return {"G": G, "n_draws": n_draws, "n_chains": 4, "warm_burn": serial.warm_burn, "repeats": repeats,
            "times": times, **{k: harness.median(v) for k, v in times.items()}}


def table_b(res, ctx):
    ratio = res["serial"] / res["sharded"]
    return "\n".join([
        "| case | serial, s | 2 shards on a 2-process pool, s | serial / sharded | target | 2 shards in this "
        "process, s |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| one E step of the logit GLMM, {res['G']} groups x 10, 4 chains, {res['n_draws']} draws "
        f"(+{res['warm_burn']} warm-up steps) | {res['serial']:.2f} | {res['sharded']:.2f} | **{ratio:.2f}** | >= 1.6 "
        f"| {res['in_process']:.2f} |",
        "",
        f"Wall time, medians of {res['repeats']} interleaved repeats (one untimed round first; the pool's workers "
        f"had received their blocks before). `mcem.EStep(model, n_chains=4)` against "
        f"`mcem.ShardedEStep(model, shards=2, executor=ProcessPoolExecutor(2), n_chains=4)`, both from warm "
        f"chains at the common start; one BLAS thread in every process (the variables set before numpy and "
        f"the pool start, threadpoolctl in the parent). The last column runs the two blocks one after the "
        f"other in this process (no executor): the cost of sharding without parallelism, which bounds the "
        f"speed-up at serial / (that / 2). All repeats (s): serial {[round(t, 2) for t in res['times']['serial']]}, "
        f"sharded {[round(t, 2) for t in res['times']['sharded']]}, in this process "
        f"{[round(t, 2) for t in res['times']['in_process']]}. Two cores are needed: on a machine where another "
        f"process holds one, the pool cannot be faster (see the load average below).",
        "",
        harness.context_markdown(ctx),
    ])


# --------------------------------------------------------------------------- driver
def settings(quick):
    if quick:
        return dict(G=300, budget=60.0, r_repeats=1, small_G=30, small_budget=10.0, b_G=2000, b_repeats=3)
    return dict(G=10_000, budget=3600.0, r_repeats=2, small_G=100, small_budget=120.0, b_G=10_000, b_repeats=7)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def render(case, quick, write_doc):
    """The tables again from the JSON results of an earlier run (its context and command kept)."""
    suffix = "_quick" if quick else ""
    for name, fn, fname in (("glmm", table_a, "glmm"), ("sharded", table_b, "sharded")):
        path = RESULTS / f"{fname}{suffix}.json"
        if case in (name, "all") and path.exists():
            res = json.loads(path.read_text())
            md = fn(res, res.pop("context"))
            print(md)
            if write_doc:
                harness.write_section(name, md)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes; no docs written")
    p.add_argument("--case", choices=["glmm", "sharded", "all"], default="all")
    p.add_argument("--seeds", type=int, default=3, help="mcem seeds 1..k (default 3)")
    p.add_argument("--budget", type=float, default=None, help="the naive loop's budget, s (default 3600; quick 60)")
    p.add_argument("--r-rounds", type=int, default=3, help="R processes, alternating with mcem's seeds")
    p.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    p.add_argument("--reuse-peers", action="store_true",
                   help="run mcem's seeds anew and take the naive loop, the small cases and R from the last "
                        "results/glmm.json (same machine; the table says when they were measured)")
    p.add_argument("--render", action="store_true",
                   help="measure nothing: re-render the tables from benchmarks/results/*.json and write them")
    a = p.parse_args()
    if a.render:
        render(a.case, a.quick, write_doc=not (a.quick or a.no_doc))
        return
    s = settings(a.quick)
    budget = a.budget if a.budget is not None else s["budget"]
    write_doc = not (a.quick or a.no_doc)
    RESULTS.mkdir(exist_ok=True)
    suffix = "_quick" if a.quick else ""
    with harness.one_blas_thread():
        if a.case in ("glmm", "all"):
            ctx = harness.context()
            peers = None
            if a.reuse_peers:
                last = json.loads((RESULTS / f"glmm{suffix}.json").read_text())
                peers = {k: last[k] for k in ("naive", "small", "R", "r_repeats")}
                ctx0 = last["context"]
                peers["from"] = last.get("peers_from") or f"`{ctx0.get('command')}` ({ctx0.get('date')})"
            res = case_a(s["G"], list(range(1, a.seeds + 1)), budget, a.r_rounds, s["r_repeats"], s["small_G"],
                         s["small_budget"], peers=peers)
            md = table_a(res, ctx)
            print(md, flush=True)
            (RESULTS / f"glmm{suffix}.json").write_text(json.dumps(_jsonable({"context": ctx, **res}), indent=1))
            if write_doc:
                harness.write_section("glmm", md)
        if a.case in ("sharded", "all"):
            ctx = harness.context()
            res = case_b(s["b_G"], s["b_repeats"])
            md = table_b(res, ctx)
            print(md, flush=True)
            (RESULTS / f"sharded{suffix}.json").write_text(json.dumps(_jsonable({"context": ctx, **res}), indent=1))
            if write_doc:
                harness.write_section("sharded", md)


if __name__ == "__main__":
    main()

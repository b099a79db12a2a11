"""Linear mixed models: mcem's Gaussian formula model against statsmodels and lme4.

    python benchmarks/bench_lmm.py [--quick] [--repeats 5] [--no-doc]

The model ``y ~ x + (x | g)``: a fixed intercept and slope, a correlated random intercept and
slope per group, Gaussian residuals, fitted by maximum likelihood by

- mcem: ``mcem.fit(mcem.models.glmm("y ~ x + (x | g)", frame, family="gaussian"), rng=0)``, its
  defaults (exact EM for a Gaussian response; ``docs/formulas.md``);
- statsmodels: ``smf.mixedlm("y ~ x", frame, groups=frame["g"], re_formula="~x").fit(reml=False)``
  (skipped, with a line saying so, when statsmodels is not installed);
- lme4: ``lmer(y ~ x + (x | group), REML = FALSE)`` in R (``benchmarks/peers/lmm_timing.R``;
  skipped when ``Rscript`` is absent).

Data: simulated, 10^3 groups x 10 observations (``--quick``: 100 groups), and lme4's sleepstudy
(``mcem.datasets.load_sleepstudy()``: Reaction ~ Days + (Days | Subject)).

Each Python fit is timed as the whole call from the data frame to the fitted result (the formula
read, the model built, the fit), wall and CPU, in interleaved rounds (one untimed round first,
the order reversed every other round), one BLAS thread (the thread variables set before numpy,
threadpoolctl). R runs as one process per round inside the same interleaving; its figure is R's
own timing of the ``lmer`` call (``system.time``), and the process's wall time is reported too.
Every fit's log-likelihood is set against the best found, and its estimates against that fit's
in mcem's standard errors (the exact Hessian; the one set covering every parameter).

The full run writes the section ``lmm`` of docs/benchmarks.md and
``benchmarks/results/lmm.json``; ``--quick`` writes ``benchmarks/results/lmm_quick.json`` only.
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # before numpy

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

import mcem  # noqa: E402

try:
    import statsmodels.formula.api as smf
except ImportError:  # a benchmark-only dependency
    smf = None

HERE = Path(__file__).resolve().parent
R_SCRIPT = HERE / "peers" / "lmm_timing.R"
RESULTS = HERE / "results"
THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
NAMES = ["(Intercept)", "x", "sd (Intercept)", "sd x", "correlation", "residual sd"]


def simulate(G=1000, n_per=10, seed=0):
    """y = 1 + 0.5 x + b0_g + b1_g x + e: sd(b0) = 1, sd(b1) = 0.5, corr 0.3, sd(e) = 1."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n_per)
    x = rng.normal(size=G * n_per)
    cov = np.array([[1.0, 0.3 * 0.5], [0.3 * 0.5, 0.25]])
    b = rng.normal(size=(G, 2)) @ np.linalg.cholesky(cov).T
    y = 1.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(size=G * n_per)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def sleepstudy():
    d = mcem.datasets.load_sleepstudy()
    return pd.DataFrame({"y": d["Reaction"].to_numpy(float), "x": d["Days"].to_numpy(float),
                         "g": d["Subject"].astype(str).to_numpy()})


# --------------------------------------------------------------------------- the contenders
def fit_mcem(frame):
    return mcem.fit(mcem.models.glmm("y ~ x + (x | g)", frame, family="gaussian"), rng=0)


def mcem_summary(fit, se_seconds):
    p = fit.params
    se = fit.standard_errors()
    est = [*np.asarray(p["beta"], float), *np.asarray(p["sd_g"], float), float(p["corr_g"][1, 0]), float(p["sigma"])]
    ses = [*np.asarray(se["beta"], float), *np.asarray(se["sd_g"], float), float(se["corr_g"][1, 0]),
           float(se["sigma"])]
    return {"estimates": est, "se": ses, "loglik": float(fit.llf), "iterations": int(fit.n_iter),
            "stopped_by": fit.stopped_by, "method": getattr(fit, "method", None), "se_seconds": se_seconds}


def fit_statsmodels(frame):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = smf.mixedlm("y ~ x", frame, groups=frame["g"], re_formula="~x").fit(reml=False)
    r._bench_warnings = sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught})
    return r


def statsmodels_summary(r):
    cov = np.asarray(r.cov_re, float)
    sd = np.sqrt(np.diag(cov))
    est = [*np.asarray(r.fe_params, float), *sd, float(cov[0, 1] / (sd[0] * sd[1])), float(np.sqrt(r.scale))]
    return {"estimates": est, "loglik": float(r.llf), "converged": bool(r.converged),
            "warnings": getattr(r, "_bench_warnings", [])}


def run_r(csv, repeats):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        proc = harness.run_process(["Rscript", str(R_SCRIPT), str(csv), str(repeats), str(out)], env=THREAD_ENV)
        if proc["returncode"] != 0 or not out.exists():
            return {"error": proc["stdout"][-2000:], "returncode": proc["returncode"]}
        res = json.loads(out.read_text())
    res["process"] = {k: proc[k] for k in ("wall", "cpu", "peak_rss_bytes")}
    return res


def r_summary(runs):
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"] if runs else "no run"}
    f = ok[-1]
    est = [*f["beta"], *f["sd_group"], f["cor_group"], f["sigma"]]
    return {"estimates": est, "loglik": float(f["loglik"]), "converged": bool(f["converged"]),
            "messages": list(f["messages"]), "label": f["fit"],
            "fit_wall": [s for r in ok for s in np.atleast_1d(r["seconds_all"])],
            "fit_cpu": [s for r in ok for s in np.atleast_1d(r["cpu_seconds_all"])],
            "process_wall": [r["process"]["wall"] for r in ok], "process_cpu": [r["process"]["cpu"] for r in ok],
            "R": f["R"], "BLAS": f["BLAS"], "threads": f["threads"], "lme4": f["versions"]["lme4"]}


def measure(name, frame, repeats, r_repeats):
    """Interleaved rounds of every available contender on one data set."""
    have_r = shutil.which("Rscript") is not None
    results, cpu = {}, {}
    r_runs = []
    tmp = tempfile.TemporaryDirectory()
    csv = Path(tmp.name) / "lmm.csv"
    frame.rename(columns={"g": "group"}).to_csv(csv, index=False)

    def timed(key, fn):
        def call():
            c = time.process_time()
            results[key] = fn()
            cpu.setdefault(key, []).append(time.process_time() - c)
        return call

    contenders = {"mcem": timed("mcem", lambda: fit_mcem(frame))}
    if smf is not None:
        contenders["statsmodels"] = timed("statsmodels", lambda: fit_statsmodels(frame))
    if have_r:
        contenders["R process"] = lambda: r_runs.append(run_r(csv, r_repeats))
    wall = harness.interleaved(contenders, repeats=repeats, clock="wall", warmup=1)
    r_runs = r_runs[1:]  # the warm-up round's process
    tmp.cleanup()
    t = time.perf_counter()
    fit = results["mcem"]
    fit.standard_errors()
    se_seconds = time.perf_counter() - t
    out = {"data": name, "n_obs": len(frame), "n_groups": int(frame["g"].nunique()), "repeats": repeats,
           "fits": {}}
    out["fits"]["mcem"] = {**mcem_summary(fit, se_seconds), "wall": wall["mcem"], "cpu": cpu["mcem"][1:],
                           "label": f"mcem {mcem.__version__} glmm(family=\"gaussian\") + fit(rng=0)"}
    if smf is not None:
        version = sys.modules["statsmodels"].__version__
        out["fits"]["statsmodels"] = {**statsmodels_summary(results["statsmodels"]), "wall": wall["statsmodels"],
                                      "cpu": cpu["statsmodels"][1:],
                                      "label": f"statsmodels {version} MixedLM(reml=False)"}
    else:
        out["statsmodels_skipped"] = "statsmodels is not installed (pip install statsmodels)"
    if have_r:
        out["fits"]["lme4"] = r_summary(r_runs)
    else:
        out["lme4_skipped"] = "Rscript not found on PATH"
    # against the best log-likelihood found
    fits = {k: v for k, v in out["fits"].items() if "loglik" in v}
    best = max(fits, key=lambda k: fits[k]["loglik"])
    scale = np.asarray(out["fits"]["mcem"]["se"], float)
    for k, v in fits.items():
        v["loglik_minus_best"] = v["loglik"] - fits[best]["loglik"]
        v["distance_from_best"] = (np.abs(np.asarray(v["estimates"]) - np.asarray(fits[best]["estimates"]))
                                   / scale).tolist()
    out["best"] = best
    return out


def table(results, ctx, repeats, r_repeats):
    lines = [
        "| data | fit | time to fit, s: wall (CPU) | log-lik - best | largest distance from the best fit (mcem SEs) "
        "| estimates: " + ", ".join(NAMES) + " |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    notes = []
    for res in results:
        data = f"{res['data']} ({res['n_groups']} groups, {res['n_obs']} obs.)"
        for key, f in res["fits"].items():
            if "error" in f:
                lines.append(f"| {data} | lme4 | the R script failed (see the JSON results) | | | |")
                continue
            if key == "lme4":
                t = (f"{harness.median(f['fit_wall']):.3f} ({harness.median(f['fit_cpu']):.3f}), R's timing of lmer; "
                     f"process {harness.median(f['process_wall']):.1f}")
            else:
                t = f"{harness.median(f['wall']):.3f} ({harness.median(f['cpu']):.3f})"
            if key == "mcem":
                t += (f"; {f['iterations']} EM iterations, stopped by {f['stopped_by']}; "
                      f"`standard_errors()` {f['se_seconds']:.2f} more")
            flag = "" if f.get("converged", True) else " (not converged)"
            est = ", ".join(f"{x:.4g}" for x in f["estimates"])
            lines.append(f"| {data} | {f['label']}{flag} | {t} | {f['loglik_minus_best']:+.2e} | "
                         f"{max(f['distance_from_best']):.2e} | {est} |")
        for k in ("statsmodels_skipped", "lme4_skipped"):
            if k in res:
                notes.append(f"{res['data']}: {k.split('_')[0]} skipped: {res[k]}.")
        for key in ("statsmodels", "lme4"):
            f = res["fits"].get(key, {})
            w = f.get("warnings") or f.get("messages")
            if w:
                notes.append(f"{res['data']}, {key}: " + "; ".join(w))
    lme4 = next((r["fits"]["lme4"] for r in results if "lme4" in r["fits"] and "error" not in r["fits"]["lme4"]), None)
    lines += [
        "",
        f"Medians of {repeats} interleaved rounds (one untimed round first; the order reversed every other "
        f"round), wall time with CPU in brackets, one BLAS thread. mcem and statsmodels: the whole call from "
        f"the data frame to the fitted result. lme4: R's `system.time` of the `lmer` call, "
        f"{r_repeats} calls in each round's R process (the median over all of them), and the R process's wall "
        f"time (R's start and loading included). Log-likelihoods are each fit's own maximised ML "
        f"log-likelihood; distances are per parameter, |estimate - estimate of the best fit| / mcem's SE "
        f"(the exact Hessian). Simulated data: seed 0, beta = (1, 0.5), sd = (1, 0.5), correlation 0.3, "
        f"residual sd 1.",
    ]
    if lme4:
        lines.append(f"R: {lme4['R']}, lme4 {lme4['lme4']}, BLAS {lme4['BLAS']}, "
                     f"threads {json.dumps(lme4['threads'])}.")
    lines += [f"- {n}" for n in notes]
    lines += ["", harness.context_markdown(ctx)]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="100 simulated groups, 3 rounds; no docs written")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 5; quick 3)")
    p.add_argument("--no-doc", action="store_true")
    a = p.parse_args()
    repeats = a.repeats or (3 if a.quick else 5)
    r_repeats = 2
    G = 100 if a.quick else 1000
    if smf is None:
        print("statsmodels is not installed: its rows are skipped (pip install statsmodels)")
    if shutil.which("Rscript") is None:
        print("Rscript not found: the lme4 rows are skipped")
    with harness.one_blas_thread():
        ctx = harness.context()
        results = [measure(f"simulated, {G} x 10", simulate(G), repeats, r_repeats),
                   measure("sleepstudy", sleepstudy(), repeats, r_repeats)]
    md = table(results, ctx, repeats, r_repeats)
    print(md)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"lmm{'_quick' if a.quick else ''}.json").write_text(
        json.dumps({"context": ctx, "results": results}, indent=1, default=float))
    if not (a.quick or a.no_doc):
        harness.write_section("lmm", md)


if __name__ == "__main__":
    main()

"""Models written in the model language (``@mcem.model``, compiled with JAX) vs the ready-made models.

    python benchmarks/bench_compiler.py [--quick] [--repeats 3] [--k1 2] [--k2 6]

1. Per-iteration cost of the README's random-intercept logit GLMM declared with ``@mcem.model``
   against ``mcem.models.glmm_model.random_intercept_glmm`` on the same data (G groups x 10
   observations): a fixed-size MCEM iteration with 200 draws, its marginal cost being
   (time of a fit with ``max_iter=k2`` - with ``max_iter=k1``) / (k2 - k1), after one warm-up fit
   per model (its time, which holds JAX's compilation, is reported apart). Medians over
   interleaved repeats, in CPU time (``time.process_time``, which counts XLA's threads) and wall
   time. Target: ratio <= 1.2. The split: one ``model.log_joint`` on 4 chains (the E step's unit
   of work) and one ``mcem.mstep.numerical`` on 4 x 50 draws.
2. SAEM on the theophylline model written in the model language, ``mcem.fit(model,
   method="saem", rng=1)``: seconds to stop (first fit, compilation included, and warm fits),
   iterations, and the largest |estimate - reference| / reference SE against the recorded
   quadrature fit (``mcem/datasets/references.json``). Target: within 0.1 SE in under 30 s on
   one core. The ready-made ``theophylline_model()`` is run the same way for context.

Machines here are shared: compare the ratios, and read the load average printed at the top.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

import mcem
from machine import header  # noqa: E402 - beside this file
from mcem import constraints as C
from mcem import dist
from mcem.models import glmm_model
from mcem.models.theophylline import theophylline_data, theophylline_model



@mcem.model
def glmm(m, X, y, group, n_groups):
    beta = m.param("beta", shape=X.shape[1], init=0.0)
    sigma = m.param("sigma", constraint=C.positive, init=1.0)
    u = m.latent("u", dist.Normal(0.0, sigma), shape=n_groups, unit=True)
    m.observe("y", dist.Bernoulli(logits=X @ beta + u[..., group]), y, unit_index=group)


@mcem.model
def theoph(m, dose, time, conc, subject, n_subjects):
    lKe = m.param("lKe", init=-2.5)
    mu = m.param("mu", shape=2, init=[0.5, -3.0])
    omega = m.param("omega", shape=2, constraint=C.positive, init=[0.5, 0.5])
    sigma = m.param("sigma", constraint=C.positive, init=1.0)
    phi = m.latent("phi", dist.Normal(mu, omega), shape=(n_subjects, 2), unit=True,
                   init=np.tile([0.5, -3.0], (n_subjects, 1)))
    lka, lcl = phi[..., subject, 0], phi[..., subject, 1]
    ke, ka = m.np.exp(lKe), m.np.exp(lka)
    f = dose * m.np.exp(lKe + lka - lcl) * (m.np.exp(-ke * time) - m.np.exp(-ka * time)) / (ka - ke)
    m.observe("conc", dist.Normal(f, sigma), conc, unit_index=subject)


def timed(fn):
    """(result, CPU seconds, wall seconds) of one call."""
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - w


def med_time(fn, reps):
    """Median CPU and wall seconds of ``reps`` calls (after one warm-up call)."""
    fn()
    ts = np.array([timed(fn)[1:] for _ in range(reps)])
    return np.median(ts, axis=0)


def glmm_case(G, k1, k2, repeats):
    d = glmm_model.simulate_random_intercept(G, 10, [0.3, -0.5], 0.9, "logit", rng=1)
    lang, c_b, w_b = timed(lambda: glmm(X=d["X"], y=d["y"], group=d["group"], n_groups=G))
    ready = glmm_model.random_intercept_glmm(d["X"], d["y"], d["group"])
    models = {"lang": lang, "ready": ready}

    def fit(model, k):
        res, c, w = timed(lambda: mcem.fit(model, method="mcem", rng=1, schedule="fixed", m_init=200,
                                           max_iter=k, stop="relative", tol=1e-12))
        if res.n_iter != k:
            raise RuntimeError(f"the fit stopped after {res.n_iter} iterations, not max_iter={k}")
        return np.array([c, w]), np.asarray(res.history["seconds"], dtype=float)

    warm = {name: fit(m, k1)[0] for name, m in models.items()}  # the first fit compiles
    warm2 = {name: fit(m, k1)[0] for name, m in models.items()}
    per, hist = {name: [] for name in models}, {name: [] for name in models}
    for rep in range(repeats):
        for name, m in models.items():  # interleaved: the load drifts alike for both
            (t2, h), (t1, _) = fit(m, k2), fit(m, k1)
            per[name].append((t2 - t1) / (k2 - k1))
            hist[name].extend(h[k1:])  # the fit's own record of its later iterations (wall)
            print(f"repeat {rep}: {name:5s} per iteration cpu {per[name][-1][0]:.3f} s, "
                  f"wall {per[name][-1][1]:.3f} s; history seconds {np.round(h, 3).tolist()}", flush=True)
    per = {name: np.median(v, axis=0) for name, v in per.items()}
    hist = {name: float(np.nanmedian(v)) for name, v in hist.items()}

    theta = ready.default_theta()
    rng = np.random.default_rng(0)
    z4 = {"u": 0.9 * rng.normal(size=(4, G))}
    draws = {"u": 0.9 * rng.normal(size=(4, 50, G))}
    reps = 7 if repeats > 1 else 3
    split = {name: (med_time(lambda m=m: np.asarray(m.log_joint(theta, z4)), reps),
                    med_time(lambda m=m: mcem.mstep.numerical(m, theta, draws), reps))
             for name, m in models.items()}
    return dict(build=(c_b, w_b), hist=hist, warm=warm, warm2=warm2, per=per, split=split,
                structure=lang.structure.describe() if lang.structure is not None else None)


def theo_case(repeats):
    d = theophylline_data()
    ref = mcem.datasets.reference("theophylline")
    p = ref["params"]
    refv = np.array([p["lKe"], p["lKa"], p["lCl"], p["omega"][0], p["omega"][1], p["sigma"]])
    se = np.sqrt(np.diag(ref["cov"]))  # in ref["cov_order"]: lKe, lKa, lCl, omega_ka, omega_cl, sigma

    def flat(th, lang):
        ka, cl = (th["mu"][0], th["mu"][1]) if lang else (th["lKa"], th["lCl"])
        return np.array([th["lKe"], ka, cl, th["omega"][0], th["omega"][1], th["sigma"]], dtype=float)

    builds = {
        "lang": lambda: theoph(dose=d["dose"], time=d["time"], conc=d["conc"], subject=d["subject"],
                               n_subjects=d["n_subjects"]),
        "ready": theophylline_model,
    }
    out = {}
    for name, build in builds.items():
        model, c_b, w_b = timed(build)
        runs = []
        for _ in range(1 + repeats):  # the first fit compiles
            res, c, w = timed(lambda: mcem.fit(model, method="saem", rng=1))
            err = float(np.max(np.abs(flat(res.params, name == "lang") - refv) / se))
            runs.append((c, w, res.n_iter, err, res.stopped_by))
            print(f"theophylline {name}: cpu {c:.2f} s, wall {w:.2f} s, {res.n_iter} iterations, "
                  f"max |err|/SE {err:.3f}, stop {res.stopped_by}", flush=True)
        out[name] = dict(build=(c_b, w_b), runs=runs)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="G=2000, 1 repeat (a smoke run)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3; 1 with --quick)")
    ap.add_argument("--k1", type=int, default=2)
    ap.add_argument("--k2", type=int, default=6)
    a = ap.parse_args()
    repeats = a.repeats or (1 if a.quick else 3)
    if repeats < 1 or a.k1 < 1 or a.k2 <= a.k1:
        ap.error(f"need repeats >= 1 and 1 <= k1 < k2, got repeats={repeats}, k1={a.k1}, k2={a.k2}")
    G = 2000 if a.quick else 10_000
    header(sys.argv)
    warnings.simplefilter("ignore")

    g = glmm_case(G, a.k1, a.k2, repeats)
    print("lang GLMM structure:", g["structure"])
    t = theo_case(repeats)

    per, split, L, R = g["per"], g["split"], "lang", "ready"
    rows = [
        ("1. GLMM build of the `@mcem.model` (JAX trace), s", f"{g['build'][0]:.2f}", f"{g['build'][1]:.2f}", ""),
    ]
    for name in (L, R):
        rows.append((f"1. GLMM first fit ({a.k1} it.), {name} (compiles), s",
                     f"{g['warm'][name][0]:.2f}", f"{g['warm'][name][1]:.2f}", ""))
        rows.append((f"1. GLMM second fit ({a.k1} it.), {name}, s",
                     f"{g['warm2'][name][0]:.2f}", f"{g['warm2'][name][1]:.2f}", ""))
    for name in (L, R):
        rows.append((f"1. GLMM s per MCEM iteration (200 draws), {name}",
                     f"{per[name][0]:.3f}", f"{per[name][1]:.3f}", ""))
    for name in (L, R):
        rows.append((f"1. GLMM s per iteration from the fit's history, {name}", "", f"{g['hist'][name]:.3f}", ""))
    rows.append(("1. ratio from the history", "", f"{g['hist'][L] / g['hist'][R]:.2f}", ""))
    rows.append(("1. **ratio lang / ready per iteration**",
                 f"**{per[L][0] / per[R][0]:.2f}**", f"**{per[L][1] / per[R][1]:.2f}**", "<= 1.2"))
    for i, what in enumerate(("log_joint, 4 chains", "mstep.numerical, 4x50 draws")):
        for name in (L, R):
            rows.append((f"1. GLMM {what}, {name}, ms", f"{1e3 * split[name][i][0]:.1f}",
                         f"{1e3 * split[name][i][1]:.1f}", ""))
        rows.append((f"1. ratio {what}", f"{split[L][i][0] / split[R][i][0]:.2f}",
                     f"{split[L][i][1] / split[R][i][1]:.2f}", ""))
    theo = ["| theophylline SAEM | build s (CPU, wall) | first fit s, compiles (CPU, wall) | "
            "later fits s, median (CPU, wall) | iterations | stop | max \\|err\\|/SE per fit | target |",
            "|---|---|---|---|---|---|---|---|"]
    for name in (L, R):
        runs = t[name]["runs"]
        first, rest = runs[0], runs[1:]
        c, w = np.median([r[0] for r in rest]), np.median([r[1] for r in rest])
        target = "< 30 s on one core, all <= 0.1" if name == L else "(context)"
        theo.append(f"| {name} | {t[name]['build'][0]:.2f}, {t[name]['build'][1]:.2f} | {first[0]:.2f}, "
                    f"{first[1]:.2f} | {c:.2f}, {w:.2f} | {', '.join(str(r[2]) for r in runs)} | "
                    f"{', '.join(sorted({r[4] for r in runs}))} | {', '.join(f'{r[3]:.3f}' for r in runs)} | {target} |")
    width = max(len(r[0]) for r in rows)
    print(f"\nG = {G} groups x 10, k1 = {a.k1}, k2 = {a.k2}, {repeats} repeat(s); "
          f"load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print(f"| {'case':<{width}} | CPU | wall | target |")
    print(f"|{'-' * (width + 2)}|-----|------|--------|")
    for r in rows:
        print(f"| {r[0]:<{width}} | {r[1]} | {r[2]} | {r[3]} |")
    print()
    print("\n".join(theo))


if __name__ == "__main__":
    main()

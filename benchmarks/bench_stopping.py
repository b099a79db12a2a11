"""Fits that finish: every example with a seed as its only setting, against its reference.

    python benchmarks/bench_stopping.py [--seeds 3] [--cases "a;b;..."] [--out FILE.md]

For each case the model is fitted by ``mcem.fit(model, method=..., rng=seed)`` with no other
setting, and compared with an independent reference: exact EM (and its exact standard errors)
where the model has it, adaptive Gauss-Hermite quadrature for the random-intercept GLMMs, a
recorded reference (``mcem.datasets.reference``) for the classic data sets, Booth & Hobert's
published fit for the salamander data. Reported per case, as medians over the seeds (and the
worst seed where it matters):

* ``stop``: how the runs ended (``tol`` = by their own rule);
* ``max |err|/SE``: the largest distance from the reference over the parameters, in reference
  standard errors (natural scale); acceptance: at most 0.3 (three Monte Carlo standard errors
  at the default target of 0.1);
* ``SE ratio``: the largest ``|se / se_ref - 1|``; acceptance: at most 0.10;
* ``t_stop``: seconds to the end of the fit, standard errors included; ``t_0.1``: seconds until
  the iterate first lay within 0.1 reference SEs of the reference in every parameter (from the
  history's per-iteration times; "never" when it did not before the stop), and their ratio;
  acceptance for the 1000-group logit GLMM: ``t_stop <= 3 t_0.1``.

Times are wall-clock seconds of one process on a shared machine: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

import mcem
from mcem.models.random_intercept import fit_quadrature, random_intercept_glmm, simulate_random_intercept


def _flat(model, d):
    return np.concatenate([np.ravel(np.asarray(d[n], dtype=float)) for n in model.param_names])


def exact_case(model, theta0=None):
    em = mcem.fit(model, theta0, method="em", tol=1e-14, max_iter=50_000)
    se = em.standard_errors()
    return em.params, se, theta0


def quad_case(X, y, group, family="logit", offset=None):
    model = random_intercept_glmm(X, y, group, family, offset=offset)
    q = fit_quadrature(X, y, group, family, offset=offset)
    return model, {"beta": q.params["beta"], "sigma": q.params["sigma"]}, {"beta": q.se["beta"], "sigma": q.se["sigma"]}


def recorded(name, model):
    ref = mcem.datasets.reference(name)
    return {k: np.asarray(v) for k, v in ref["params"].items()}, {k: np.asarray(v) for k, v in ref["se"].items()}


def cases():
    """name -> function returning (model, ref_params, ref_se, method, theta0)."""
    from mcem.models import GaussianMixture  # noqa: F401  (import check)
    from mcem.models.censored import motorette
    from mcem.models.linear_gaussian import factor_analysis
    from mcem.models.linkage import genetic_linkage
    from mcem.models.missing import missing_normal
    from mcem.models.mixture import gaussian_mixture, initial_params
    from mcem.models.pumps import pump_failures

    def gmm():
        m = gaussian_mixture(mcem.datasets.load_faithful(), 2)
        th0 = initial_params(mcem.datasets.load_faithful(), 2, rng=0)
        p, s, _ = exact_case(m, th0)
        return m, p, s, "mcem", th0

    def simple(build):
        def f():
            m = build()
            p, s, _ = exact_case(m)
            return m, p, s, "mcem", None
        return f

    def fa():
        rng = np.random.default_rng(2024)
        lam = np.array([[0.9, 0.0], [0.8, 0.3], [0.7, 0.0], [0.0, 0.8], [0.2, 0.9], [0.0, 0.7]])
        X = np.linspace(-1, 1, 6) + rng.normal(size=(300, 2)) @ lam.T + rng.normal(size=(300, 6)) * 0.7
        m = factor_analysis(X, 2, loadings="lower")
        p, s, _ = exact_case(m)
        return m, p, s, "mcem", None

    def mn():
        rng = np.random.default_rng(5)
        X = rng.multivariate_normal([1.0, -1.0, 2.0], [[1.0, 0.6, 0.3], [0.6, 1.5, 0.5], [0.3, 0.5, 0.8]], 300)
        X[rng.random(X.shape) < 0.25] = np.nan
        X[np.all(np.isnan(X), axis=1), 0] = 1.0
        m = missing_normal(X)
        p, s, _ = exact_case(m)
        return m, p, s, "mcem", None

    def mcc():
        Y = mcem.datasets.load_mcculloch1997()
        x = np.tile(np.arange(1, Y.shape[1] + 1) / Y.shape[1], Y.shape[0])
        g = np.repeat(np.arange(Y.shape[0]), Y.shape[1])
        m, p, s = quad_case(x, Y.ravel().astype(float), g)
        return m, p, s, "mcem", None

    def sim(G, family, seed):
        def f():
            d = simulate_random_intercept(G, 10, [-0.5, 1.0, 0.5], 1.0 if family == "logit" else 0.5,
                                          family=family, rng=seed)
            m, p, s = quad_case(d["X"], d["y"], d["group"], family)
            return m, p, s, "mcem", None
        return f

    def classic(name, method="mcem"):
        def f():
            if name == "theophylline":
                from mcem.models.theophylline import theophylline_model as build
            else:
                from mcem.models import classic as c
                build = getattr(c, f"{name}_model")
            m = build()
            p, s = recorded(name, m)
            return m, p, s, method, None
        return f

    return {
        "gaussian mixture (faithful)": gmm,
        "genetic linkage": simple(genetic_linkage),
        "pump failures": simple(pump_failures),
        "motorette (tobit)": simple(motorette),
        "factor analysis": fa,
        "missing normal": mn,
        "McCulloch 1997": mcc,
        "logit GLMM, 100 groups": sim(100, "logit", 11),
        "Poisson GLMM, 100 groups": sim(100, "poisson", 12),
        "logit GLMM, 1000 groups": sim(1000, "logit", 7),
        "cbpp": classic("cbpp"),
        "epilepsy": classic("epilepsy"),
        "theophylline (MCEM)": classic("theophylline"),
        "theophylline (SAEM)": classic("theophylline", "saem"),
    }


def run_case(model, ref, ref_se, method, theta0, seed):
    names = model.param_names
    ref_f, se_f = _flat(model, {n: ref[n] for n in names}), _flat(model, {n: ref_se[n] for n in names})
    se_f = np.where(se_f > 0, se_f, np.nan)  # fixed elements (a zero loading) have no standard error
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mcem.fit(model, theta0, method=method, rng=seed)
        se = res.standard_errors()
    t_stop = time.perf_counter() - t
    H = res.history
    cum = np.cumsum(np.nan_to_num(H["seconds"]))
    path = np.stack([_flat(model, {n: H.params(n)[i] for n in names}) for i in range(len(H))])
    dist = np.nanmax(np.abs(path - ref_f) / se_f, axis=1)
    first = next((cum[i] for i in range(len(H)) if dist[i] < 0.1), np.nan)
    est = _flat(model, res.params)
    if method == "saem":  # the history holds the iterates; the estimate is their average
        first = np.nan
    err = float(np.nanmax(np.abs(est - ref_f) / se_f))
    se_ratio = float(np.nanmax(np.abs(_flat(model, se) / se_f - 1)))
    return dict(stop=res.stopped_by, err=err, se=se_ratio, t_stop=t_stop, t01=first, iters=res.n_iter,
                draws=res.total_draws)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cases", default="", help="case names separated by semicolons")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    table = cases()
    chosen = [c.strip() for c in a.cases.split(";") if c.strip()] or list(table)
    lines = ["| case | method | stop | max \\|err\\|/SE (median, worst) | SE ratio (worst) | t_stop s | t_0.1 s | "
             "t_stop / t_0.1 | iterations | draws |", "|" + " --- |" * 10]
    for name in chosen:
        model, ref, ref_se, method, theta0 = table[name]()
        rows = [run_case(model, ref, ref_se, method, theta0, seed) for seed in range(1, a.seeds + 1)]
        stops = ", ".join(sorted({r["stop"] for r in rows}))
        err = [r["err"] for r in rows]
        t01 = np.array([r["t01"] for r in rows])
        ts = np.array([r["t_stop"] for r in rows])
        ratio = ts / t01
        line = (f"| {name} | {method} | {stops} | {np.median(err):.3f}, {max(err):.3f} | "
                f"{max(r['se'] for r in rows):.3f} | {np.median(ts):.2f} | "
                f"{np.nanmedian(t01) if np.any(np.isfinite(t01)) else float('nan'):.2f} "
                f"({int(np.sum(~np.isfinite(t01)))} never) | "
                f"{np.nanmedian(ratio) if np.any(np.isfinite(ratio)) else float('nan'):.2f}, "
                f"worst {np.nanmax(ratio) if np.any(np.isfinite(ratio)) else float('nan'):.2f} | "
                f"{int(np.median([r['iters'] for r in rows]))} | {int(np.median([r['draws'] for r in rows]))} |")
        print(line, flush=True)
        lines.append(line)
    env = (f"{a.seeds} seeds per case; OMP/OPENBLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; "
           f"mcem {mcem.__version__}")
    print(env)
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n\n" + env + "\n")


if __name__ == "__main__":
    main()

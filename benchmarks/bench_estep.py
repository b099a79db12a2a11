"""E-step cost relative to the model's own work (a script, not a test).

1. One enumerated Gibbs sweep over the labels of a Gaussian mixture (N = 10^6, d = 2, K = 3,
   1 chain) vs one exact E step (``model.exact_estep_fn``) on the same data. Target ratio <= 1.5.
   Measured twice: with the mixture's component densities cached (same theta: the kernel's own
   cost) and with a new theta at every call (both recompute the densities, as in EM).
2. One per-unit RWM sweep over 10^4 random-effect units (random-intercept logistic model,
   10 observations per unit) vs one evaluation of the per-unit log joint. Target ratio <= 2.

Run: ``python benchmarks/bench_estep.py``. Prints the ratios measured in this run.
"""

from __future__ import annotations

import time

import numpy as np

import mcem
from mcem import constraints as C
from mcem.estep import EStep
from mcem.models import gaussian_mixture


def best_time(fn, reps=7):
    """Median wall time of ``reps`` calls (after one warm-up call)."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def mixture_benchmark(N=1_000_000, reps=7):
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [3.0, 1.0], [-1.0, 3.0]])
    X = means[rng.integers(0, 3, N)] + rng.normal(size=(N, 2))
    model = gaussian_mixture(X, 3)
    theta = {
        "weights": np.array([0.4, 0.35, 0.25]),
        "means": means + 0.1,
        "covariances": np.stack([np.eye(2)] * 3),
    }
    es = EStep(model, "gibbs", n_chains=1, burn=0)
    state = es.init(theta, 0)
    target = es.target(theta)
    ks = es.kernel.refresh(state.kernel_state, target)
    step_rng = np.random.default_rng(1)

    # (a) cached component densities: the kernel's own cost vs the exact E step's own cost
    t_exact = best_time(lambda: model.exact_estep_fn(theta, model.data), reps)
    t_gibbs = best_time(lambda: es.kernel.step(ks, target, step_rng), reps)
    t_run = best_time(lambda: es.run(theta, state, 1, step_rng, burn=0, keep=False), reps)

    # (b) a new theta at every call: both recompute the densities
    counter = [0]

    def fresh_theta():
        counter[0] += 1
        th = dict(theta)
        th["means"] = theta["means"] + 1e-9 * counter[0]
        return th

    t_exact_new = best_time(lambda: model.exact_estep_fn(fresh_theta(), model.data), reps)

    def gibbs_new():
        tgt = es.target(fresh_theta())
        es.kernel.step(ks, tgt, step_rng)

    t_gibbs_new = best_time(gibbs_new, reps)
    return {
        "exact E step (cached densities)": t_exact,
        "Gibbs sweep (cached densities)": t_gibbs,
        "EStep.run, 1 draw, no burn (cached)": t_run,
        "exact E step (new theta)": t_exact_new,
        "Gibbs sweep (new theta)": t_gibbs_new,
        "ratio_cached": t_gibbs / t_exact,
        "ratio_run_cached": t_run / t_exact,
        "ratio_new_theta": t_gibbs_new / t_exact_new,
    }


def glmm_model(G=10_000, m=10, seed=0):
    """Random-intercept logistic regression, groups of equal size m, per-unit log joint."""
    rng = np.random.default_rng(seed)
    n = G * m
    Xd = np.column_stack([np.ones(n), rng.normal(size=n)])
    u = rng.normal(0, 1.0, G)
    eta = Xd @ np.array([-0.5, 1.0]) + np.repeat(u, m)
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)

    def log_joint(theta, z, data):
        ui = z["u"]  # (..., G)
        eta = (data["X"] @ theta["beta"]).reshape(G, m) + ui[..., None]  # (..., G, m)
        ll = (data["y"] * eta - np.logaddexp(0.0, eta)).sum(-1)
        s = theta["sigma"]
        return ll - 0.5 * (ui / s) ** 2 - np.log(s)

    model = mcem.Model(
        log_joint,
        params={"beta": C.real(shape=2), "sigma": C.positive},
        latents={"u": mcem.Continuous(shape=G, unit=True)},
        data={"X": Xd, "y": y.reshape(G, m)},
    )
    return model, {"beta": np.array([-0.5, 1.0]), "sigma": 1.0}


def rwm_benchmark(G=10_000, chains=(1, 4), reps=15):
    model, theta = glmm_model(G)
    out = {}
    for c in chains:
        es = EStep(model, "rwm", n_chains=c, burn=50)
        res = es.run(theta, es.init(theta, 0), 1, 1)
        target = es.target(theta)
        ks = res.state.kernel_state
        z = ks.z
        rng = np.random.default_rng(2)
        t_eval = best_time(lambda: model.log_joint(theta, z), reps)
        t_step = best_time(lambda: es.kernel.step(ks, target, rng), reps)
        t_adapt = best_time(lambda: es.kernel.step(ks, target, rng, adapt=True), reps)
        out[c] = {"log joint eval": t_eval, "RWM sweep": t_step, "RWM sweep (adapting)": t_adapt,
                  "ratio": t_step / t_eval, "ratio_adapt": t_adapt / t_eval}
    return out


def main():
    print("mcem E-step benchmark")
    mix = mixture_benchmark()
    print("\n[1] Gaussian mixture, N = 10^6, d = 2, K = 3, 1 chain")
    for k, v in mix.items():
        if not k.startswith("ratio"):
            print(f"    {k:40s} {1e3 * v:8.1f} ms")
    print(f"    ratio Gibbs / exact, cached densities   {mix['ratio_cached']:.2f}   (target <= 1.5)")
    print(f"    ratio EStep.run / exact, cached          {mix['ratio_run_cached']:.2f}")
    print(f"    ratio Gibbs / exact, new theta          {mix['ratio_new_theta']:.2f}   (target <= 1.5)")
    rw = rwm_benchmark()
    print("\n[2] per-unit RWM, 10^4 random-intercept units (10 obs each)")
    for c, r in rw.items():
        print(
            f"    chains={c}: log joint {1e3 * r['log joint eval']:.2f} ms, RWM sweep "
            f"{1e3 * r['RWM sweep']:.2f} ms (adapting {1e3 * r['RWM sweep (adapting)']:.2f} ms); "
            f"ratio {r['ratio']:.2f} (adapting {r['ratio_adapt']:.2f})   (target <= 2)"
        )


if __name__ == "__main__":
    main()

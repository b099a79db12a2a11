"""Stochastic volatility: MCEM and SAEM against the likelihood of a fine-grid hidden Markov model.

Simulates T = 500 returns with a fixed seed from

    y_t | h_t ~ N(0, exp(h_t)),   h_t - mu = phi (h_{t-1} - mu) + sigma eta_t

(:mod:`mcem.models.stochvol`; in the model language the log-variance is
``m.latent("h", dist.AR1(phi, sigma, loc=mu, length=T))`` and the returns
``m.observe("y", dist.Normal(0.0, m.np.exp(h / 2)), y)``). The emission terms are not Gaussian in
``h_t``, so ``sampler="auto"`` draws the whole path by conditional SMC, and ``fit.llf`` is a
particle estimate with its Monte Carlo error. The reference is the maximum of the likelihood of
the chain discretised on a fine grid (exact by the forward algorithm, converged in the grid size),
with standard errors from its Hessian. MCEM and SAEM run with ``rng`` only; the script prints
the estimates next to the reference in its standard errors and writes a PNG of the returns with
the posterior volatility band. Usage::

    python examples/stochastic_volatility.py [--out stochastic_volatility.png] [--seed 1] [--T 500]
"""

from __future__ import annotations

import argparse
import time
import warnings

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import mcem  # noqa: E402
from mcem.models import stochvol  # noqa: E402

TRUE = {"mu": -1.0, "phi": 0.95, "sigma": 0.25}


def run(seed=1, out="stochastic_volatility.png", T=500, methods=("mcem", "saem")):
    """Fit by MCEM and SAEM; print the table; write the PNG. Returns a dict with ``model``,
    ``reference`` (:func:`mcem.models.stochvol.grid_mle`), ``results``, ``distance`` (per method
    and parameter, in the reference's standard errors), ``table`` and ``figure``."""
    y, h = stochvol.simulate(T, rng=3)
    reference = stochvol.grid_mle(y, n_grid=200)
    model = stochvol.stochastic_volatility(y)
    rng = np.random.default_rng(seed)
    results, seconds = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        for method in methods:
            t0 = time.perf_counter()
            results[method] = mcem.fit(model, method=method, rng=rng)
            seconds[method] = time.perf_counter() - t0
    names = ("mu", "phi", "sigma")
    distance = {m: {k: (float(r.params[k]) - reference["params"][k]) / reference["se"][k] for k in names}
                for m, r in results.items()}
    lines = [f"stochastic volatility, T={T} (truth {TRUE}); reference: fine-grid likelihood maximum",
             f"{'':<8}{'reference (se)':>20}" + "".join(f"{m:>12}{'dist/se':>9}" for m in results)]
    for k in names:
        row = f"{k:<8}{reference['params'][k]:>12.4f} ({reference['se'][k]:.4f})"
        row += "".join(f"{float(r.params[k]):>12.4f}{distance[m][k]:>9.3f}" for m, r in results.items())
        lines.append(row)
    lines.append(f"{'loglik':<8}{reference['loglik']:>20.3f}" + "".join(
        f"{stochvol.grid_loglik(y, *(float(r.params[k]) for k in names)):>12.3f}{'':>9}" for r in results.values()))
    lines.append(f"{'seconds':<8}{'':>20}" + "".join(f"{seconds[m]:>12.1f}{'':>9}" for m in results))
    lines.append(f"{'stopped':<8}{'':>20}" + "".join(f"{str(r.converged):>12}{'':>9}" for r in results.values()))
    table = "\n".join(lines)
    print(table)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True, constrained_layout=True)
    axes[0].plot(y, lw=0.7, color="0.3")
    axes[0].set(title="simulated returns", ylabel="y")
    first = next(iter(results.values()))
    vol = np.exp(0.5 * first.draws["h"].reshape(-1, T))
    lo, mid, hi = np.quantile(vol, [0.05, 0.5, 0.95], axis=0)
    axes[1].plot(np.exp(0.5 * h), color="k", lw=0.8, label="true volatility")
    axes[1].plot(mid, label=f"posterior median ({next(iter(results))} estimate)")
    axes[1].fill_between(np.arange(T), lo, hi, alpha=0.3, label="90% posterior band")
    axes[1].set(title="volatility exp(h_t / 2)", xlabel="t", ylabel="volatility")
    axes[1].legend()
    if out:
        fig.savefig(out, dpi=100)
        print(f"wrote {out}")
    return {"model": model, "reference": reference, "results": results, "distance": distance,
            "table": table, "figure": fig}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="stochastic_volatility.png")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--T", type=int, default=500)
    a = p.parse_args()
    run(seed=a.seed, out=a.out, T=a.T)

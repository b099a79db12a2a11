"""The Nile's local level in the model language: MCEM and SAEM against exact EM and the direct MLE.

The annual flow of the Nile at Aswan, 1871-1970 (``mcem.datasets.load_nile``), as a random walk
observed with noise, written as a user would::

    @mcem.model
    def local_level(m, y):
        level0 = m.param("level0", init=y[0])
        sigma_obs = m.param("sigma_obs", constraint=C.positive, init=np.std(np.diff(y)))
        sigma_level = m.param("sigma_level", constraint=C.positive, init=np.std(np.diff(y)))
        x = m.latent("x", dist.GaussianRandomWalk(sigma_level, init_loc=level0, init_scale=sigma_level,
                                                  length=len(y)))
        m.observe("y", dist.Normal(x, sigma_obs), y)

The compiler finds the emission terms Gaussian in the state, so ``sampler="auto"`` draws the whole
path exactly (the simulation smoother) and the log-likelihood is the Kalman filter's, exact. The
references: exact EM (Kalman smoother EM) on the ready-made ``mcem.models.local_level`` and the
direct maximum of the exact log-likelihood by L-BFGS. MCEM and SAEM run with ``rng`` only. The
script prints the side-by-side table and writes a PNG of the series with the smoothed level at
the estimate. Usage::

    python examples/local_level.py [--out local_level.png] [--seed 1]
"""

from __future__ import annotations

import argparse
import warnings

import matplotlib
import numpy as np
from scipy import optimize

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import mcem  # noqa: E402
from mcem import constraints as C  # noqa: E402
from mcem import dist  # noqa: E402
from mcem.datasets import load_nile  # noqa: E402


@mcem.model
def local_level(m, y):
    level0 = m.param("level0", init=float(y[0]))
    sigma_obs = m.param("sigma_obs", constraint=C.positive, init=float(np.std(np.diff(y))))
    sigma_level = m.param("sigma_level", constraint=C.positive, init=float(np.std(np.diff(y))))
    x = m.latent("x", dist.GaussianRandomWalk(sigma_level, init_loc=level0, init_scale=sigma_level, length=len(y)))
    m.observe("y", dist.Normal(x, sigma_obs), y)


def direct_mle(model, start):
    """The maximum of the exact log-likelihood by L-BFGS on the unconstrained scale."""
    res = optimize.minimize(lambda u: -model.exact_loglik(model.from_unconstrained(u)),
                            model.to_unconstrained(start), method="L-BFGS-B", options={"gtol": 1e-9})
    return model.from_unconstrained(res.x), -res.fun


def run(seed=1, out="local_level.png"):
    """Fit by exact EM, MCEM and SAEM; print the table; write the PNG. Returns a dict with
    ``model``, ``comparison`` (reference ``em``), ``direct`` (the L-BFGS MLE and its
    log-likelihood), ``table`` and ``figure``."""
    nile = load_nile()
    y = nile["flow"]
    model = local_level(y=y)
    oracle = mcem.models.local_level(y, init=model.default_theta())
    rng = np.random.default_rng(seed)
    results = {"em": mcem.fit(oracle, method="em", rng=rng, tol=1e-12, max_iter=100_000)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        for method in ("mcem", "saem"):
            results[method] = mcem.fit(model, method=method, rng=rng)
        ses = {k: r.standard_errors() for k, r in results.items()}
    direct, direct_ll = direct_mle(model, results["em"].params)
    comparison = mcem.Comparison(results, ses, "em")
    lines = ["Nile, local level (Kalman smoother EM = em; the model language = mcem, saem)",
             comparison.table(), "",
             "direct MLE (L-BFGS on the exact log-likelihood): "
             + ", ".join(f"{k} = {float(v):.4f}" for k, v in direct.items()) + f", loglik = {direct_ll:.4f}"]
    table = "\n".join(lines)
    print(table)
    draws = results["mcem"].draws["x"].reshape(-1, y.size)
    lo, mid, hi = np.quantile(draws, [0.05, 0.5, 0.95], axis=0)
    fig, ax = plt.subplots(figsize=(10, 4), constrained_layout=True)
    ax.plot(nile["year"], y, ".", color="0.4", label="annual flow")
    ax.plot(nile["year"], mid, label="level: posterior median at the MCEM estimate")
    ax.fill_between(nile["year"], lo, hi, alpha=0.3, label="90% posterior band")
    ax.set(title="Nile at Aswan: local-level model fitted by MCEM", xlabel="year", ylabel="flow (10^8 m^3)")
    ax.legend()
    if out:
        fig.savefig(out, dpi=100)
        print(f"wrote {out}")
    return {"model": model, "comparison": comparison, "direct": (direct, direct_ll), "table": table, "figure": fig}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="local_level.png")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    run(seed=a.seed, out=a.out)

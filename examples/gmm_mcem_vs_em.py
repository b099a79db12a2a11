"""Gaussian mixture on the Old Faithful data: Monte Carlo EM and SAEM against exact EM.

Runs exact EM (the oracle), MCEM (Gibbs-sampled labels, ascent-based sample size) and SAEM from
the same k-means++ start, prints a side-by-side table (estimates, log-likelihood, iterations,
total draws, seconds) and writes a PNG of the parameter paths. Usage::

    python examples/gmm_mcem_vs_em.py [--out gmm_mcem_vs_em.png] [--seed 1]
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import mcem  # noqa: E402
from mcem.datasets import load_faithful  # noqa: E402
from mcem.models.gaussian_mixture import initial_params  # noqa: E402


def run(seed=1, out="gmm_mcem_vs_em.png", X=None, K=2):
    X = load_faithful() if X is None else X
    model = mcem.models.gaussian_mixture(X, K)
    theta0 = initial_params(X, K, rng=seed)
    results = {}
    runs = {
        "em": dict(method="em", tol=1e-10, max_iter=1000),
        "mcem": dict(method="mcem", sampler="gibbs", tol=1e-3, m_max=5000),
        "saem": dict(method="saem", sampler="gibbs", max_iter=300, burn_iter=50, average=True),
    }
    for name, opts in runs.items():
        t0 = time.perf_counter()
        results[name] = mcem.fit(model, theta0, rng=seed, progress=False, **opts)
        results[name]["wall"] = time.perf_counter() - t0

    rows = []
    for name, r in results.items():
        order = np.argsort(r.params["means"][:, 0])
        rows.append(
            [name, *np.round(r.params["weights"][order], 4), *np.round(r.params["means"][order].ravel(), 3),
             f"{r['loglik']:.4f}", r.n_iter, r.get("total_draws", 0), f"{r.wall:.3f}"]
        )
    header = ["method", *[f"w{k}" for k in range(K)],
              *[f"mu{k}{j}" for k in range(K) for j in range(X.shape[1])], "loglik", "iters", "draws",
              "seconds"]
    widths = [max(len(str(h)), *(len(str(row[i])) for row in rows)) for i, h in enumerate(header)]
    print("  ".join(str(h).rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(v).rjust(w) for v, w in zip(row, widths, strict=True)))

    fig, (ax0, axm, ax1) = plt.subplots(1, 3, figsize=(15, 4))
    for name, r in results.items():
        ax0.plot(r.history["iter"], r.history["loglik"], marker=".", label=name)
        w = r.history.params("weights")[:, 0]
        axm.plot(r.history["iter"], w, label=name)
    for ax in (ax0, axm):
        ax.set_xscale("symlog", linthresh=10)
    ax0.set_xlabel("iteration")
    ax0.set_ylabel("log-likelihood")
    ax0.set_title("Log-likelihood path")
    ax0.set_ylim(results["em"]["loglik"] - 20, results["em"]["loglik"] + 2)
    ax0.legend()
    axm.set_xlabel("iteration")
    axm.set_ylabel("weight of component 0")
    axm.set_title("Parameter path")
    axm.legend()
    ax1.scatter(X[:, 0], X[:, 1], s=6, c="0.6")
    th = results["em"].params
    for k in range(K):
        vals, vecs = np.linalg.eigh(th["covariances"][k])
        t = np.linspace(0, 2 * np.pi, 100)
        ell = th["means"][k][:, None] + vecs @ (2 * np.sqrt(vals)[:, None] * np.array([np.cos(t), np.sin(t)]))
        ax1.plot(ell[0], ell[1], label=f"component {k} (2 sd)")
    ax1.set_xlabel("eruption duration (min)")
    ax1.set_ylabel("waiting time (min)")
    ax1.set_title("Old Faithful: fitted mixture")
    ax1.legend()
    fig.tight_layout()
    if out:
        fig.savefig(out, dpi=100)
        print(f"wrote {out}")
    return results, fig


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gmm_mcem_vs_em.png")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    run(seed=a.seed, out=a.out)

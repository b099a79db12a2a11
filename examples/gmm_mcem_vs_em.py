"""Gaussian mixture on the Old Faithful data: Monte Carlo EM and SAEM against exact EM.

Runs exact EM (the oracle), MCEM and SAEM (each with its defaults: exact draws of the labels, the
precision rule) from
the same k-means++ start with :func:`mcem.compare`, prints the side-by-side table (estimates with
standard errors, log-likelihood, iterations, total draws, seconds, distance from exact EM in
standard errors) and writes a PNG of the parameter paths. Usage::

    python examples/gmm_mcem_vs_em.py [--out gmm_mcem_vs_em.png] [--seed 1]
"""

from __future__ import annotations

import argparse
import warnings

import matplotlib

matplotlib.use("Agg")

import mcem  # noqa: E402
from mcem.datasets import load_faithful  # noqa: E402

OPTIONS = {
    "em": {"tol": 1e-10, "max_iter": 1000},
    "mcem": {},  # the defaults: the model's exact draws of the labels, the precision rule
    "saem": {},
}


def run(seed=1, out="gmm_mcem_vs_em.png", X=None, K=2):
    X = load_faithful() if X is None else X
    model = mcem.models.gaussian_mixture(X, K)  # starts from k-means++ (seed 0)
    with warnings.catch_warnings():
        # short early E steps trigger R-hat notes; the table reports the outcome
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        comparison = mcem.compare(model, ("em", "mcem", "saem"), rng=seed, options=OPTIONS)
    print(comparison.table())
    fig = comparison.plot(params=["weights", "means"])
    if out:
        fig.savefig(out, dpi=100)
        print(f"wrote {out}")
    return comparison, fig


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gmm_mcem_vs_em.png")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    run(seed=a.seed, out=a.out)

"""Gaussian mixture on the Old Faithful data: Monte Carlo EM and SAEM against exact EM.

Runs exact EM (the oracle), MCEM and SAEM (each with its defaults: exact draws of the labels, the
precision rule) from the same k-means++ start with :func:`mcem.compare`, prints the side-by-side
table (estimates with standard errors, log-likelihood, iterations, total draws, seconds, distance
from exact EM in standard errors) and writes one PNG with two parts:

* left, the data with each method's fitted components (the 1 and 2 standard-deviation ellipses,
  :func:`mcem.plots.plot_mixture`);
* right, how each method got there (:meth:`mcem.Comparison.plot`): the distance from exact EM in
  standard errors per iteration with the Monte Carlo band, the log-likelihood below its maximum,
  the draws per iteration, the stopping rules against their targets, R-hat, and every
  parameter's final distance from exact EM.

Usage::

    python examples/gmm_mcem_vs_em.py [--out gmm_mcem_vs_em.png] [--seed 1]
"""

from __future__ import annotations

import argparse
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import mcem  # noqa: E402
from mcem.datasets import load_faithful  # noqa: E402

OPTIONS = {
    "em": {"tol": 1e-10, "max_iter": 1000},
    "mcem": {},  # the defaults: the model's exact draws of the labels, the precision rule
    "saem": {},
}
LABELS = ("eruption (minutes)", "waiting time to the next eruption (minutes)")


def figure(X, comparison, labels=None):
    """The data with every method's components (left) and their convergence (right)."""
    fig = plt.figure(figsize=(20, 8.6), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1.0, 2.25])
    worst = max((r["max_abs_distance_se"] for r in comparison.rows if r["method"] != comparison.reference),
                default=float("nan"))
    others = [m for m in comparison.results if m != comparison.reference]
    mcem.plots.plot_mixture(X, comparison, ax=left.subplots(), labels=labels,
                            title=f"the fitted components (1 and 2 SD ellipses):\n{' and '.join(others)} within "
                                  f"{worst:.2g} standard errors of {comparison.reference}")
    comparison.plot(fig=right, title=f"how each method got there (distances in the standard errors of "
                                     f"{comparison.reference})")
    K = len(next(iter(comparison.results.values())).params["weights"])
    fig.suptitle(f"{len(X)} points, a {K}-component Gaussian mixture: exact EM, Monte Carlo EM and SAEM from the "
                 "same start", fontsize="x-large")
    return fig


def run(seed=1, out="gmm_mcem_vs_em.png", X=None, K=2):
    labels = LABELS if X is None else None
    X = load_faithful() if X is None else X
    model = mcem.models.gaussian_mixture(X, K)  # starts from k-means++ (seed 0)
    with warnings.catch_warnings():
        # short early E steps trigger R-hat notes; the table reports the outcome
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        comparison = mcem.compare(model, ("em", "mcem", "saem"), rng=seed, options=OPTIONS)
    print(comparison.table())
    fig = figure(X, comparison, labels)
    if labels:
        fig.suptitle(f"Old Faithful: {fig.get_suptitle()}", fontsize="x-large")
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

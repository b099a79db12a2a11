"""Epileptic seizures (Thall & Vail 1990; MASS's epil): Monte Carlo EM for a Poisson GLMM.

236 two-week seizure counts of 59 patients in a trial of progabide (four periods each), the
model of Breslow & Clayton (1993) as ``glmer(y ~ lbase * trt + lage + V4 + (1 | subject),
family = poisson)``:

    y_ij | u_i ~ Poisson(exp(x_ij' beta + u_i)),   u_i ~ N(0, sigma^2)

with x the intercept, lbase (log baseline count / 4, centred), trt (1 = progabide), lage (log
age, centred), V4 (fourth period) and lbase x trt. Fits it by MCEM with the default settings and prints the estimates and
Louis standard errors next to the adaptive-quadrature MLE recorded in
``mcem/datasets/references.json`` (which lme4 with nAGQ = 25 reproduces), with the distance in
the reference's standard errors; writes a PNG of the run with the MLE dotted. Usage::

    python examples/epilepsy.py [--out epilepsy.png] [--seed 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

import mcem  # noqa: E402
from mcem.compare import mark_reference  # noqa: E402
from mcem.datasets import reference, reference_rows, reference_table  # noqa: E402
from mcem.models import random_intercept as ri  # noqa: E402
from mcem.models.classic import epilepsy_design, epilepsy_model  # noqa: E402


def run(seed=1, out="epilepsy.png"):
    """Fit by MCEM (default settings); print the table; write the PNG. Returns a dict with
    ``model``, ``result``, ``reference`` (:func:`mcem.datasets.reference`), ``se``, ``rows``,
    ``table``, ``loglik`` (quadrature log-likelihood at the estimate), ``seconds`` and ``figure``."""
    model, ref, d = epilepsy_model(), reference("epilepsy"), epilepsy_design()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        result = mcem.fit(model, method="mcem", rng=seed)
        seconds = time.perf_counter() - t0
        se = result.standard_errors()
    loglik = ri.quadrature_loglik(result.params, d["X"], d["y"], d["group"], "poisson")
    rows = reference_rows("epilepsy", result.params, se)
    table = reference_table("epilepsy: y ~ lbase * trt + lage + V4 + (1 | subject), Poisson",
                         "mcem", rows, loglik, ref["loglik"])
    table += (f"\nMCEM: {result.n_iter} iterations, {result.total_draws} draws, {seconds:.1f} s; "
              f"{result.message}")
    print(table)
    fig = mark_reference(result.plot(), {k: np.asarray(v) for k, v in ref["params"].items()}, "quadrature MLE")
    if out:
        fig.savefig(out, dpi=80)
        print(f"wrote {out}")
    return {"model": model, "result": result, "reference": ref, "se": se, "rows": rows, "table": table,
            "loglik": loglik, "seconds": seconds, "figure": fig}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="epilepsy.png")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    run(seed=a.seed, out=a.out)

"""Motorette failure times (Schmee & Hahn 1979): MCEM for censored normal regression.

log10(hours) = b0 + b1 * 1000 / (temp + 273.2) + sigma * eps, with 23 of the 40 motorettes
right-censored. The latent variables are the unobserved log failure times of the censored units
(their excess over the censoring point). The script fits the model by exact EM
(truncated-normal moments) and by MCEM (default settings: exact truncated-normal draws), and
prints both, with standard errors, next to the oracle (the censored likelihood maximised directly
with scipy, ``tobit_mle``) and the estimates of Schmee & Hahn (1979). It writes a PNG of the MCEM
run (exact EM overlaid). Usage::

    python examples/motorette_tobit.py [--out motorette_tobit.png] [--seed 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import matplotlib

matplotlib.use("Agg")

import mcem  # noqa: E402
from mcem.models.censored import SCHMEE_HAHN_1979, motorette, motorette_data, tobit_mle  # noqa: E402


def run(seed=1, out="motorette_tobit.png", data=None, **fit_options):
    """Fit by EM and MCEM; print the table; write the PNG. Returns a dict with ``model``,
    ``result`` (MCEM), ``em``, ``oracle`` (:func:`tobit_mle` output), ``se`` (MCEM standard
    errors), ``table``, ``seconds`` and ``figure``."""
    model = motorette(data)
    oracle = tobit_mle(**motorette_data(data))
    em = mcem.fit(model, method="em", tol=1e-13, max_iter=5000)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        result = mcem.fit(model, method="mcem", rng=seed, **fit_options)
    seconds = time.perf_counter() - t0
    se = result.standard_errors()
    names = [("b0", "beta", 0), ("b1", "beta", 1), ("sigma", "sigma", None)]
    lit = {"b0": SCHMEE_HAHN_1979["beta"][0], "b1": SCHMEE_HAHN_1979["beta"][1],
           "sigma": SCHMEE_HAHN_1979["sigma"]}

    def get(d, k, i):
        v = d[k]
        return float(v[i]) if i is not None else float(v)

    lines = [
        "motorette: log10(hours) = b0 + b1 * 1000/(temp + 273.2) + sigma * eps, right-censored",
        f"{'parameter':<10}{'MCEM':>10}{'se':>9}{'exact EM':>10}{'oracle':>10}{'oracle se':>11}"
        f"{'Schmee-Hahn':>13}",
    ]
    for label, k, i in names:
        lines.append(
            f"{label:<10}{get(result.params, k, i):>10.4f}{get(se, k, i):>9.4f}"
            f"{get(em.params, k, i):>10.4f}{get(oracle['params'], k, i):>10.4f}"
            f"{get(oracle['se'], k, i):>11.4f}{lit[label]:>13.4f}"
        )
    lines.append(
        f"{'loglik':<10}{result['loglik']:>10.4f}{'':>9}{em['loglik']:>10.4f}{oracle['loglik']:>10.4f}"
    )
    lines.append(f"MCEM: {result.n_iter} iterations, {result.total_draws} draws, {seconds:.2f} s")
    table = "\n".join(lines)
    print(table)
    fig = result.plot(reference=em)
    if out:
        fig.savefig(out, dpi=100)
        print(f"wrote {out}")
    return {"model": model, "result": result, "em": em, "oracle": oracle, "se": se,
            "table": table, "seconds": seconds, "figure": fig}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="motorette_tobit.png")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    run(seed=a.seed, out=a.out)

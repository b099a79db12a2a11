"""Pump failures (Gaver & O'Muircheartaigh 1987): MCEM for a Gamma-Poisson hierarchy.

Ten pumps with failure counts y_i over operating times t_i (thousands of hours):
y_i ~ Poisson(lambda_i t_i), lambda_i ~ Gamma(alpha, beta) (beta a rate). The script fits
(alpha, beta) by exact EM and by MCEM (default settings: exact gamma draws of the rates) and
prints both, with standard errors, next to the oracle: the negative-binomial marginal likelihood
maximised directly with scipy (``pumps_mle``). It writes a PNG of the MCEM run (exact EM
overlaid). Usage::

    python examples/pump_failures.py [--out pump_failures.png] [--seed 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import matplotlib

matplotlib.use("Agg")

import mcem  # noqa: E402
from mcem.models.pumps import PUMP_FAILURES, PUMP_TIMES, pump_failures, pumps_mle  # noqa: E402


def run(seed=1, out="pump_failures.png", failures=PUMP_FAILURES, times=PUMP_TIMES, **fit_options):
    """Fit by EM and MCEM; print the table; write the PNG. Returns a dict with ``model``,
    ``result`` (MCEM), ``em``, ``oracle`` (:func:`pumps_mle` output), ``se`` (MCEM standard
    errors), ``table``, ``seconds`` and ``figure``."""
    model = pump_failures(failures, times)
    oracle = pumps_mle(failures, times)
    em = mcem.fit(model, method="em", tol=1e-13, max_iter=5000)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        result = mcem.fit(model, method="mcem", rng=seed, **fit_options)
    seconds = time.perf_counter() - t0
    se = result.standard_errors()
    lines = [
        "pump failures: Gamma(alpha, beta) rates, Poisson counts",
        f"{'parameter':<10}{'MCEM':>10}{'se':>9}{'exact EM':>10}{'oracle':>10}{'oracle se':>11}",
    ]
    for k in ("alpha", "beta"):
        lines.append(
            f"{k:<10}{float(result.params[k]):>10.4f}{float(se[k]):>9.4f}{float(em.params[k]):>10.4f}"
            f"{oracle['params'][k]:>10.4f}{oracle['se'][k]:>11.4f}"
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
    p.add_argument("--out", default="pump_failures.png")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    run(seed=a.seed, out=a.out)

"""Theophylline pharmacokinetics (R's Theoph, nlme's fm2Theo): MCEM and SAEM for a nonlinear mixed model.

Serum concentrations of theophylline in 12 subjects, 11 times each after an oral dose D_i
(mg/kg; Boeckmann, Sheiner & Beal 1994), with the one-compartment model of first-order
absorption and elimination:

    conc_ij = D_i exp(lKe + lKa_i - lCl_i) (exp(-ke t_ij) - exp(-ka_i t_ij)) / (ka_i - ke) + eps_ij
    lKa_i = lKa + b_i1,  lCl_i = lCl + b_i2,  b_i ~ N(0, diag(omega_ka^2, omega_cl^2)),  eps ~ N(0, sigma^2)

Fits it by MCEM and by SAEM with the default settings and prints the estimates and Louis
standard errors next to the exact maximum-likelihood estimate by adaptive 2-D Gauss-Hermite
quadrature recorded in ``mcem/datasets/references.json`` (nlme's first-order linearisation lands
near it), with the distance in the reference's standard errors and the quadrature
log-likelihood at each estimate; writes a PNG of the MCEM parameter paths with SAEM's dashed and
the MLE dotted. Usage::

    python examples/theophylline.py [--out theophylline.png] [--seed 1]
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
from mcem.models.theophylline import theophylline_model  # noqa: E402
from mcem.models.theophylline_quadrature import theophylline_loglik  # noqa: E402

LABELS = (("lKe", "lKe", None), ("lKa", "lKa", None), ("lCl", "lCl", None),
          ("omega_ka", "omega", 0), ("omega_cl", "omega", 1), ("sigma", "sigma", None))


def run(seed=1, out="theophylline.png", methods=("mcem", "saem")):
    """Fit by each of ``methods`` (default settings); print the tables; write the PNG. Returns a
    dict with ``model``, ``reference`` (:func:`mcem.datasets.reference`) and per method a dict
    with ``result``, ``se``, ``rows``, ``table``, ``loglik`` (the quadrature log-likelihood at the
    estimate) and ``seconds``; and ``figure``."""
    model, ref = theophylline_model(), reference("theophylline")
    out_dict = {"model": model, "reference": ref}
    for method in methods:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mcem.MonteCarloWarning)
            result = mcem.fit(model, method=method, rng=seed)
            seconds = time.perf_counter() - t0
            se = result.standard_errors()
        loglik = theophylline_loglik(result.params)
        rows = reference_rows("theophylline", result.params, se, LABELS)
        table = reference_table(f"theophylline (fm2Theo), {method}", method, rows, loglik, ref["loglik"],
                                label_width=10)
        table += (f"\n{method.upper()}: {result.n_iter} iterations, {result.total_draws} draws, {seconds:.1f} s; "
                  f"{result.message}")
        print(table)
        out_dict[method] = {"result": result, "se": se, "rows": rows, "table": table, "loglik": loglik,
                            "seconds": seconds}
    first = out_dict[methods[0]]["result"]
    other = out_dict[methods[1]]["result"] if len(methods) > 1 else None
    fig = mcem.plots.plot_paths(first, reference=other)
    fig = mark_reference(fig, {k: np.asarray(v) for k, v in ref["params"].items()}, "quadrature MLE")
    if out:
        fig.savefig(out, dpi=80)
        print(f"wrote {out}")
    out_dict["figure"] = fig
    return out_dict


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="theophylline.png")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    run(seed=a.seed, out=a.out)

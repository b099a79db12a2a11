"""Reference fit of the theophylline model (nlme's fm2Theo) by adaptive 2-D Gauss-Hermite quadrature.

    .venv/bin/python references/theophylline_aghq.py        (from the repository root)

Maximises the exact marginal likelihood of :func:`mcem.models.theophylline.theophylline_model`
with :func:`mcem.models.theophylline_quadrature.fit_theophylline_quadrature`: per subject the
posterior mode and Hessian of the two random effects by vectorised Newton steps, a 40 x 40
product grid of Gauss-Hermite nodes placed there, BFGS on (lKe, lKa, lCl, log omega, log sigma)
and standard errors on the natural scale of each parameter from the Hessian of the quadrature
log-likelihood. Checks the convergence in the number of nodes (the optimum refitted with 10, 20
and 30 nodes, and the log-likelihood at the optimum with 5..80 nodes) and records the results
in ``mcem/datasets/references.json`` next to nlme's fit (``references/peers.R``), whose
log-likelihood is that of a first-order linearisation of the model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from mcem.models import theophylline_quadrature as tq

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "mcem" / "datasets" / "references.json"
PEERS = ROOT / "references" / "peers_output.json"
NODES = 40
REFIT_NODES = (10, 20, 30)
CHECK_NODES = (5, 10, 20, 30, 40, 60, 80)


def _plain(theta):
    return {k: (np.asarray(v).tolist()) for k, v in theta.items()}


def compute(n_nodes=NODES, checks=True):
    """The quadrature MLE as the dict recorded in references.json (``checks``: add the node
    convergence study)."""
    fit = tq.fit_theophylline_quadrature(n_nodes=n_nodes)
    entry = {
        "model": "mcem.models.theophylline.theophylline_model()",
        "formula": "conc ~ SSfol(Dose, Time, lKe, lKa + b1, lCl + b2), b ~ N(0, diag(omega^2)), "
                   "residual N(0, sigma^2) (nlme's fm2Theo)",
        "params": _plain(fit["params"]),
        "se": _plain(fit["se"]),
        "cov": fit["cov"].tolist(),
        "cov_order": list(tq.PARAMETER_NAMES),
        "loglik": fit["loglik"],
        "method": f"adaptive Gauss-Hermite quadrature, {n_nodes} x {n_nodes} nodes per subject at the posterior "
                  "mode and Hessian of the random effects; BFGS on (lKe, lKa, lCl, log omega, log sigma); "
                  "standard errors on the natural scale from the Hessian by central differences of the gradient",
        "script": "references/theophylline_aghq.py",
        "converged": fit["converged"],
        "max_abs_gradient": float(np.max(np.abs(fit["grad"]))),
        "seconds": fit["seconds"],
    }
    if checks:
        entry["loglik_by_nodes"] = {str(k): tq.theophylline_loglik(fit["params"], n_nodes=k) for k in CHECK_NODES}
        v = tq._vector(fit["params"])
        entry["refit_by_nodes"] = {}
        for k in REFIT_NODES:
            other = tq.fit_theophylline_quadrature(n_nodes=k)
            entry["refit_by_nodes"][str(k)] = {
                "loglik": other["loglik"],
                "max_abs_change": float(np.max(np.abs(tq._vector(other["params"]) - v))),
            }
    return entry


def peers():
    p = json.loads(PEERS.read_text())["theophylline"]
    return {"nlme_ML": {
        "peer": p["peer"], "script": "references/peers.R", "names": p["names"], "beta": p["beta"],
        "se_beta": p["se_beta"], "se_beta_summary": p["se_beta_summary"], "omega": p["omega"],
        "sigma": p["sigma"], "loglik": p["loglik"], "omega_interval": p["omega_interval"],
        "sigma_interval": p["sigma_interval"],
        "note": "first-order conditional linearisation (Lindstrom & Bates 1990), not the exact likelihood; "
                "se_beta from varFix, se_beta_summary as printed by summary() (scaled by sqrt(N / (N - p)))",
    }}


def record(name, entry):
    refs = json.loads(OUT.read_text()) if OUT.exists() else {}
    refs[name] = entry
    OUT.write_text(json.dumps(refs, indent=1, sort_keys=True) + "\n")


def main():
    t0 = time.perf_counter()
    entry = compute()
    entry["peers"] = peers()
    record("theophylline", entry)
    nl = entry["peers"]["nlme_ML"]
    print(f"theophylline: loglik {entry['loglik']:.6f} (nlme, linearised: {nl['loglik']:.6f}); fit "
          f"{entry['seconds']:.2f} s, {time.perf_counter() - t0:.2f} s with the node checks")
    p, s = entry["params"], entry["se"]
    rows = [(k, p[k], s[k], nl["beta"][i]) for i, k in enumerate(("lKe", "lKa", "lCl"))]
    rows += [(f"omega_{c}", p["omega"][i], s["omega"][i], nl["omega"][i]) for i, c in enumerate(("ka", "cl"))]
    rows += [("sigma", p["sigma"], s["sigma"], nl["sigma"])]
    for k, est, se, ref in rows:
        print(f"  {k:<10}{est:>11.5f}{se:>10.5f}   nlme {ref:>10.5f}")
    print("  loglik at the optimum by nodes:", {k: round(v, 9) for k, v in entry["loglik_by_nodes"].items()})
    print("  refits:", entry["refit_by_nodes"])


if __name__ == "__main__":
    main()

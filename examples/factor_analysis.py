"""Factor analysis on simulated data: Monte Carlo EM against exact EM (continuous latents).

Simulates N = 300 observations of d = 6 variables from two factors,
x_n = mu + Lambda f_n + eps_n with f_n ~ N(0, I_2) and eps_n ~ N(0, diag(psi)), with a fixed seed.
The loadings are lower-trapezoidal (Lambda[0, 1] = 0), which removes the rotation and leaves them
identified up to column signs, so every parameter has a standard error. The script fits the
model by exact EM (the oracle: exact E step, exact log-likelihood, exact standard errors), by
MCEM with the default sampler (exact Gaussian draws of the factors) and by MCEM with per-unit
random-walk Metropolis, prints the side-by-side table (estimates with standard errors, the
distance from exact EM in standard errors) next to the simulation truth, and writes a PNG of the
parameter paths. Usage::

    python examples/factor_analysis.py [--out factor_analysis.png] [--seed 1]
"""

from __future__ import annotations

import argparse
import warnings

import matplotlib
import numpy as np

matplotlib.use("Agg")

import mcem  # noqa: E402
from mcem.models.linear_gaussian import factor_analysis, implied_covariance  # noqa: E402

LAMBDA = np.array([[0.9, 0.0], [0.8, 0.3], [0.7, 0.0], [0.0, 0.8], [0.2, 0.9], [0.0, 0.7]])
PSI = np.array([0.4, 0.5, 0.6, 0.4, 0.3, 0.5])
MU = np.linspace(-1.0, 1.0, 6)

OPTIONS = {
    "em": {"tol": 1e-14, "max_iter": 20_000},
    # the defaults: the model's exact posterior sampler, the precision rule
    "mcem": {},
    # generic per-unit random-walk Metropolis instead of the exact sampler
    "mcem-rwm": {"sampler": "rwm"},
}


def simulate(N=300, seed=2024):
    """Data from the model with the true ``MU``, ``LAMBDA``, ``PSI`` (fixed seed)."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(N, LAMBDA.shape[1]))
    return MU + f @ LAMBDA.T + rng.normal(size=(N, LAMBDA.shape[0])) * np.sqrt(PSI)


def run(seed=1, out="factor_analysis.png", X=None):
    """Fit by EM and two MCEM variants; print the tables; write the PNG.

    Returns a dict with ``model``, ``comparison`` (:class:`mcem.Comparison` of ``em``, ``mcem``
    and ``mcem-rwm``), ``table`` (the printed text) and ``figure``.
    """
    X = simulate() if X is None else X
    model = factor_analysis(X, 2, loadings="lower")
    rng = np.random.default_rng(seed)
    # the fixed zero Lambda[0, 1] has standard error 0: its distance in SEs is 0/0 (NaN, ignored)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        # short early E steps trigger R-hat notes; the table reports the outcome
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        cmp = mcem.compare(model, ("em", "mcem"), rng=rng, options={k: OPTIONS[k] for k in ("em", "mcem")})
        rwm = mcem.fit(model, method="mcem", rng=rng, **OPTIONS["mcem-rwm"])
        results = {**cmp.results, "mcem-rwm": rwm}
        ses = {**cmp.standard_errors, "mcem-rwm": rwm.standard_errors()}
        comparison = mcem.Comparison(results, ses, "em")
    lines = [f"factor analysis: N={X.shape[0]}, d={X.shape[1]}, q=2, lower-trapezoidal loadings",
             comparison.table(), ""]
    em = results["em"]
    sigma_em = implied_covariance(em.params)
    lines.append(f"{'':<10}{'truth':>9}" + "".join(f"{n:>11}" for n in results))
    for j in range(X.shape[1]):
        lines.append(f"{f'psi[{j}]':<10}{PSI[j]:>9.3f}"
                     + "".join(f"{float(r.params['psi'][j]):>11.4f}" for r in results.values()))
    lines.append(f"{'max |Sigma - Sigma_EM|':<19}" + "".join(
        f"{np.abs(implied_covariance(r.params) - sigma_em).max():>11.2e}" for r in results.values()))
    lines.append("(Sigma = Lambda Lambda^T + diag(psi), the rotation-invariant fitted covariance)")
    table = "\n".join(lines)
    print(table)
    fig = comparison.plot(params=["psi"])  # the slowest parameters of EM here
    if out:
        fig.savefig(out, dpi=100)
        print(f"wrote {out}")
    return {"model": model, "comparison": comparison, "table": table, "figure": fig}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="factor_analysis.png")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    run(seed=a.seed, out=a.out)

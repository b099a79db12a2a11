"""The evidence lower bound made visible, and VB-EM next to the other methods.

Part 1, the Old Faithful mixture: exact EM, VB-EM (its exact categorical q makes it exact EM) and
Monte Carlo EM from the same start, and :func:`mcem.plots.plot_bound`: per iteration the
log-likelihood and the bound with the KL between them, the increases of Q and H, and the estimated
ascent of Q of the Monte Carlo fit with its band.

Part 2, a random-intercept logistic model with three binary responses per group (simulated,
fixed seed): :func:`mcem.compare` runs MCEM, SAEM, GEM and VB-EM with their defaults from the same
start and measures each estimate in standard errors from the maximum-likelihood estimate by
adaptive quadrature. VB-EM's bias on the variance component shows in the table and in the
figure's distance panel; its bound lies below the quadrature log-likelihood by the KL it reports.
Usage::

    python examples/vbem_bound.py [--out vbem] [--seed 0] [--methods mcem,saem,gem,vbem]
"""

from __future__ import annotations

import argparse
import warnings

import matplotlib

matplotlib.use("Agg")

import mcem  # noqa: E402
from mcem.models import glmm_quadrature as gq  # noqa: E402
from mcem.models.glmm_model import random_intercept_glmm, simulate_random_intercept  # noqa: E402

DATA = {"n_groups": 300, "n_per_group": 3, "beta": [-0.5, 1.0], "sigma": 1.5, "seed": 3}


def mixture_bound(seed=0, out=None):
    """Part 1: the fits of the mixture and the bound's figure; returns ``(fits, figure)``."""
    model = mcem.models.gaussian_mixture(mcem.datasets.load_faithful(), 2, reg_covar=0.0)
    fits = {"em": mcem.fit(model, method="em", tol=1e-10), "vbem": mcem.fit(model, method="vbem", tol=1e-10, rng=seed)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)  # notes of short early E steps
        fits["mcem"] = mcem.fit(model, method="mcem", rng=seed)
    fig = mcem.plots.plot_bound(fits)
    if out:
        fig.savefig(out, dpi=100)
        print(f"wrote {out}")
    return fits, fig


def glmm_comparison(seed=0, methods=("mcem", "saem", "gem", "vbem"), out=None):
    """Part 2: the methods on the logit GLMM against quadrature; returns a dict with ``comparison``,
    ``oracle`` (the quadrature fit), ``loglik_at_vb`` (the quadrature log-likelihood at VB-EM's
    estimate, when it ran), ``data`` and ``figure``."""
    d = simulate_random_intercept(DATA["n_groups"], DATA["n_per_group"], DATA["beta"], DATA["sigma"],
                                  rng=DATA["seed"])
    model = random_intercept_glmm(d["X"], d["y"], d["group"])
    oracle = gq.fit_quadrature(d["X"], d["y"], d["group"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        cmp = mcem.compare(model, tuple(methods), rng=seed,
                           reference={"params": oracle.params, "se": oracle.se, "label": "quadrature"})
    print(f"random-intercept logit, {DATA['n_groups']} groups x {DATA['n_per_group']} binary responses")
    print(cmp.table())
    out_d = {"comparison": cmp, "oracle": oracle, "data": d, "loglik_at_vb": None}
    if "vbem" in cmp.results:
        vb = cmp.results["vbem"]
        ll = gq.quadrature_loglik(vb.params, d["X"], d["y"], d["group"])
        out_d["loglik_at_vb"] = ll
        print(f"VB-EM: bound {vb.elbo['value']:.3f} +- {vb.elbo['mcse']:.3f} below the log-likelihood {ll:.3f} "
              f"by {ll - vb.elbo['value']:.3f}; reported KL {vb.kl['value']:.3f} +- {vb.kl['mcse']:.3f}")
    fig = cmp.plot()
    if out:
        fig.savefig(out, dpi=100)
        print(f"wrote {out}")
    out_d["figure"] = fig
    return out_d


def run(seed=0, out="vbem", methods=("mcem", "saem", "gem", "vbem")):
    """Both parts; figures ``<out>_bound.png`` and ``<out>_compare.png`` (none when ``out`` is empty)."""
    fits, fig1 = mixture_bound(seed, f"{out}_bound.png" if out else None)
    glmm = glmm_comparison(seed, methods, f"{out}_compare.png" if out else None)
    return {"mixture": fits, "bound_figure": fig1, **glmm}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="vbem")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="mcem,saem,gem,vbem")
    a = p.parse_args()
    run(seed=a.seed, out=a.out, methods=tuple(a.methods.split(",")))

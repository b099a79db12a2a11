"""Salamander mating (McCullagh & Nelder 1989): MCEM for a logit model with crossed random effects.

360 matings of 60 female and 60 male salamanders from two populations (rough butt R, whiteside
W): logit P(mate) = beta_cross + f_female + g_male, f ~ N(0, sigma2_f), g ~ N(0, sigma2_m), with
one fixed effect per cross type (RR, RW, WR, WW; female population first). The 120 random
effects are sampled site by site (all females, then all males, each animal accepted or rejected
on its own by adaptive random-walk Metropolis); the M step is numerical. The script prints the
MCEM estimates with Louis standard errors next to the MCEM estimates of Booth & Hobert (1999),
and writes a PNG of the run. Usage::

    python examples/salamander.py [--out salamander.png] [--seed 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import matplotlib

matplotlib.use("Agg")

import mcem  # noqa: E402
from mcem.models.crossed import BOOTH_HOBERT_1999, SALAMANDER_CROSSES, salamander  # noqa: E402


def run(seed=1, out="salamander.png", data=None, **fit_options):
    """Fit by MCEM; print the table; write the PNG. Returns a dict with ``model``, ``result``,
    ``oracle`` (the published estimates, :data:`BOOTH_HOBERT_1999`), ``se`` (Louis standard
    errors), ``table``, ``seconds`` and ``figure``. ``fit_options`` go to :func:`mcem.fit`
    (for example ``m_max`` for a quick run)."""
    model = salamander(data)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        result = mcem.fit(model, method="mcem", rng=seed, **fit_options)
        se = result.standard_errors()
    seconds = time.perf_counter() - t0
    rows = [(f"beta_{c}", float(result.params["beta"][i]), float(se["beta"][i]),
             BOOTH_HOBERT_1999["beta"][i]) for i, c in enumerate(SALAMANDER_CROSSES)]
    rows += [(k, float(result.params[k]), float(se[k]), BOOTH_HOBERT_1999[k])
             for k in ("sigma2_f", "sigma2_m")]
    lines = [
        "salamander: logit P(mate) = beta_cross + f_female + g_male (crossed random effects)",
        f"{'parameter':<11}{'MCEM':>9}{'se':>8}{'Booth-Hobert':>14}",
    ]
    lines += [f"{name:<11}{est:>9.3f}{s:>8.3f}{ref:>14.2f}" for name, est, s, ref in rows]
    lines.append(
        f"MCEM: {result.n_iter} iterations, {result.total_draws} draws, final m = "
        f"{int(result.history['m'][-1])}, {seconds:.1f} s (with standard errors)"
    )
    table = "\n".join(lines)
    print(table)
    fig = result.plot()
    if out:
        fig.savefig(out, dpi=100)
        print(f"wrote {out}")
    return {"model": model, "result": result, "oracle": BOOTH_HOBERT_1999, "se": se,
            "table": table, "seconds": seconds, "figure": fig}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="salamander.png")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    run(seed=a.seed, out=a.out)

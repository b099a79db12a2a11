"""A Gaussian hidden Markov model in the model language: MCEM and SAEM against Baum-Welch.

Simulates T = 500 observations of a two-state Gaussian hidden Markov model with a fixed seed and
writes the model as a user would::

    @mcem.model
    def hmm(m, y, K):
        A = m.param("A", constraint=C.simplex(K, batch=(K,)))         # rows: transition probabilities
        mu = m.param("mu", shape=K, init=np.quantile(y, [0.25, 0.75]))
        sigma = m.param("sigma", shape=K, constraint=C.positive)
        s = m.latent("s", dist.MarkovChain(np.full(K, 1 / K), A, length=len(y)))
        m.observe("y", dist.Normal(mu[s], sigma[s]), y)

The compiler recognises the chain, so ``sampler="auto"`` draws the whole path of states by forward
filtering backward sampling, and ``fit.llf`` is the forward algorithm's exact value. The
oracle is exact EM (Baum-Welch) on the ready-made ``mcem.models.gaussian_hmm`` from the same start.
MCEM and SAEM run with ``rng`` as their only setting; the script prints the side-by-side table
(distance from Baum-Welch in its standard errors) and writes a PNG of the data coloured by the
posterior state probability with the parameter paths. Usage::

    python examples/hmm.py [--out hmm.png] [--seed 1]
"""

from __future__ import annotations

import argparse
import warnings

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import mcem  # noqa: E402
from mcem import constraints as C  # noqa: E402
from mcem import dist  # noqa: E402
from mcem.kernels.ffbs import forward_backward  # noqa: E402

A_TRUE = np.array([[0.95, 0.05], [0.10, 0.90]])
MU_TRUE, SIGMA_TRUE = np.array([0.0, 2.0]), np.array([0.7, 1.0])


@mcem.model
def hmm(m, y, K):
    A = m.param("A", constraint=C.simplex(K, batch=(K,)))
    mu = m.param("mu", shape=K, init=np.quantile(y, (np.arange(K) + 0.5) / K))
    sigma = m.param("sigma", shape=K, constraint=C.positive)
    s = m.latent("s", dist.MarkovChain(np.full(K, 1.0 / K), A, length=len(y)))
    m.observe("y", dist.Normal(mu[s], sigma[s]), y)


def simulate(T=500, seed=1):
    """Observations and states of the two-state model (fixed seed)."""
    rng = np.random.default_rng(seed)
    s = np.zeros(T, dtype=int)
    for t in range(1, T):  # simulation only
        s[t] = rng.choice(2, p=A_TRUE[s[t - 1]])
    return MU_TRUE[s] + SIGMA_TRUE[s] * rng.standard_normal(T), s


def smoothed(y, params):
    """p(s_t = 1 | y) at ``params`` by the forward-backward algorithm."""
    K = len(params["mu"])
    le = -0.5 * ((y[:, None] - params["mu"]) / params["sigma"]) ** 2 - np.log(params["sigma"])
    return forward_backward(np.full(K, -np.log(K)), np.log(params["A"]), le[None]).gamma[0, :, 1]


def run(seed=1, out="hmm.png", T=500):
    """Fit by Baum-Welch, MCEM and SAEM; print the table; write the PNG. Returns a dict with
    ``model``, ``comparison`` (:class:`mcem.Comparison`, reference ``em``), ``table`` and ``figure``."""
    y, states = simulate(T)
    model = hmm(y=y, K=2)
    oracle = mcem.models.gaussian_hmm(y, 2, init=model.default_theta())
    rng = np.random.default_rng(seed)
    results = {"em": mcem.fit(oracle, method="em", rng=rng, tol=1e-10, max_iter=5000)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        for method in ("mcem", "saem"):
            results[method] = mcem.fit(model, method=method, rng=rng)
        ses = {k: r.standard_errors() for k, r in results.items()}
    comparison = mcem.Comparison(results, ses, "em")
    table = (f"Gaussian HMM, T={T}, 2 states (Baum-Welch = em; the model language with FFBS = mcem, saem)\n"
             + comparison.table())
    print(table)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), constrained_layout=True)
    p1 = smoothed(y, results["mcem"].params)
    dots = axes[0].scatter(np.arange(T), y, c=p1, cmap="coolwarm", s=8, vmin=0, vmax=1)
    fig.colorbar(dots, ax=axes[0], label="p(state 1 | y)")
    axes[0].set(title="data coloured by p(state 1 | y) at the MCEM estimate", xlabel="t", ylabel="y")
    for name, r in results.items():
        axes[1].plot(r.history.params("mu")[:, 1], label=name)
    axes[1].set(title="mu[1] per iteration (Baum-Welch = em)", xlabel="iteration", ylabel="mu[1]")
    axes[1].legend()
    if out:
        fig.savefig(out, dpi=100)
        print(f"wrote {out}")
    return {"model": model, "comparison": comparison, "table": table, "figure": fig, "states": states}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="hmm.png")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    run(seed=a.seed, out=a.out)

"""GLMM benchmarks: time to the quadrature MLE against a naive emcee MCEM, and the sharded E step.

    python benchmarks/glmm.py [--quick]

Case 3. A random-intercept logistic GLMM with 10^4 groups x 10 observations. Time until the
iterate theta_t first lies within 2 standard errors (quadrature SEs) of the quadrature MLE in
every coordinate, from the same start, for

- ``mcem.fit(method="mcem")`` with its defaults (per-group random-walk Metropolis, ascent-based
  sample size), and
- a straightforward MCEM: emcee's ensemble sampler on the whole latent vector (it needs at least
  2 x 10^4 + 2 walkers), vectorised log density, warm-started, a few ensemble steps per
  iteration, the same L-BFGS M step on 200 of the walkers as draws.

The naive loop gets a time budget; when it has not arrived by then, the ratio is reported as a
lower bound ("> r").

Case 6. One E step of that GLMM (4 chains, 200 draws) serially vs sharded over a 2-process pool.
"""

from __future__ import annotations

import argparse
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import optimize

import mcem
from mcem.models.random_intercept import fit_quadrature, random_intercept_glmm

THETA0 = {"beta": np.array([0.0, 0.0]), "sigma": 0.5}


def data(G=10_000, n_per=10, seed=0):
    rng = np.random.default_rng(seed)
    n = G * n_per
    g = np.repeat(np.arange(G), n_per)
    X = np.c_[np.ones(n), rng.normal(size=n)]
    u = rng.normal(scale=1.0, size=G)
    eta = X @ np.array([-0.5, 1.0]) + u[g]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return X, y, g


class _Arrival:
    """Callback: stop when theta is within k SE of the MLE in every coordinate; note the time."""

    def __init__(self, mle, k=2.0):
        self.beta, self.sigma = np.asarray(mle.params["beta"]), float(mle.params["sigma"])
        self.se_beta, self.se_sigma = np.asarray(mle.se["beta"]), float(mle.se["sigma"])
        self.k = k
        self.t0 = time.perf_counter()
        self.seconds = None
        self.iterations = 0
        self.distance = float("inf")

    def close(self, beta, sigma):
        d = np.append(np.abs(np.asarray(beta) - self.beta) / self.se_beta,
                      abs(float(sigma) - self.sigma) / self.se_sigma)
        self.distance = float(d.max())  # in standard errors, the worst coordinate
        return self.distance <= self.k

    def __call__(self, row):
        self.iterations += 1
        p = row["params"]
        if self.close(p["beta"], p["sigma"]):
            self.seconds = time.perf_counter() - self.t0
            return True
        return False


def time_mcem(model, mle, budget):
    arrival = _Arrival(mle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcem.fit(model, THETA0, method="mcem", rng=1, callback=arrival, progress=False,
                 max_iter=500)
    return arrival


def time_naive_emcee(model, mle, budget, steps_per_iter=5, m=200):
    """Straightforward MCEM: emcee on the whole latent vector, warm-started, in a loop."""
    import emcee

    G = model.n_units
    nwalkers = 2 * G + 2
    arrival = _Arrival(mle)
    rng = np.random.default_rng(2)
    theta = {k: np.array(v, dtype=float) for k, v in THETA0.items()}
    pos = rng.normal(scale=0.1, size=(nwalkers, G))
    u0 = model.to_unconstrained(theta)

    def neg_q(v, draws):
        th = model.from_unconstrained(v)
        val = model.log_joint_sum(th, {"u": draws}, 1).mean()
        g = {k: np.mean(x, axis=0) for k, x in model.grad_params_fn(th, {"u": draws}, model.data).items()}
        return -val, -model.grad_to_unconstrained(v, g)

    while time.perf_counter() - arrival.t0 < budget:
        th = dict(theta)

        def logp(u, th=th):
            return model.log_joint_sum(th, {"u": u}, 1)

        sampler = emcee.EnsembleSampler(nwalkers, G, logp, vectorize=True)
        start = emcee.State(pos, random_state=np.random.RandomState(int(rng.integers(2**32))).get_state())
        state = sampler.run_mcmc(start, steps_per_iter, progress=False, skip_initial_state_check=True)
        pos = state.coords
        draws = pos[rng.choice(nwalkers, size=m, replace=False)]
        res = optimize.minimize(neg_q, u0, args=(draws,), jac=True, method="L-BFGS-B")
        u0 = res.x
        theta = model.from_unconstrained(u0)
        if arrival({"params": theta}):
            break
    return arrival


def case3(G=10_000, n_per=10, naive_budget=None):
    X, y, g = data(G, n_per)
    mle = fit_quadrature(X, y, g)
    model = random_intercept_glmm(X, y, g)
    ours = time_mcem(model, mle, budget=None)
    budget = naive_budget if naive_budget is not None else max(30.0, 25 * (ours.seconds or 60.0))
    naive = time_naive_emcee(model, mle, budget)
    return ours, naive, budget


def case6(G=10_000, n_per=10, n_draws=200, repeat=3):
    X, y, g = data(G, n_per)
    model = random_intercept_glmm(X, y, g)
    theta = model.default_theta()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial = mcem.EStep(model, n_chains=4, burn=100, warm_burn=0)
        s_state = serial.run(theta, serial.init(theta, 0), 1, 1).state
        with ProcessPoolExecutor(2) as pool:
            sharded = mcem.EStep(model, n_chains=4, burn=100, warm_burn=0, shards=2, executor=pool)
            p_state = sharded.run(theta, sharded.init(theta, 0), 1, 1).state  # warms the workers
            times = [(_timed(lambda: serial.run(theta, s_state, n_draws, 2)),
                      _timed(lambda: sharded.run(theta, p_state, n_draws, 2))) for _ in range(repeat)]
    return min(t for t, _ in times), min(t for _, t in times)


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def rows(quick=False):
    out = []
    G = 1_000 if quick else 10_000
    ours, naive, budget = case3(G=G, naive_budget=30.0 if quick else None)
    if ours.seconds is None:
        out.append((f"3. GLMM {G}x10 to the MLE (2 SE): naive emcee MCEM / mcem", "mcem did not arrive", ">= 20"))
    elif naive.seconds is None:
        out.append((f"3. GLMM {G}x10 to the MLE (2 SE): naive emcee MCEM / mcem",
                    f"> {budget / ours.seconds:.0f} (naive still {naive.distance:.0f} SE away after {budget:.0f} s "
                    f"and {naive.iterations} iterations; mcem {ours.seconds:.1f} s, {ours.iterations} iterations)",
                    ">= 20"))
    else:
        out.append((f"3. GLMM {G}x10 to the MLE (2 SE): naive emcee MCEM / mcem",
                    f"{naive.seconds / ours.seconds:.0f} ({naive.seconds:.1f} s / {ours.seconds:.1f} s)", ">= 20"))
    t_serial, t_pool = case6(G=G)
    out.append((f"6. GLMM {G}x10 E step, serial / 2-process sharded", f"{t_serial / t_pool:.2f}", ">= 1.6"))
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    for r in rows(a.quick):
        print(" | ".join(r))

"""Monte Carlo assertions shared by the sampler tests: tolerances from the MCSE."""

import numpy as np
from arviz_stats.base import array_stats


def mcse(x):
    """MCSE of the mean over (chain, draw) of an array (chain, draw, ...)."""
    return np.asarray(array_stats.mcse(np.asarray(x, float), chain_axis=0, draw_axis=1, method="mean"))


def assert_mean(x, truth, floor=0.005, k=4.0):
    """The (chain, draw) mean of x is within k MCSE (plus a small floor) of the truth."""
    x = np.asarray(x, float)
    est = x.mean(axis=(0, 1))
    se = mcse(x)
    err = np.abs(est - truth)
    assert np.all(err < k * se + floor), (est, truth, se)


def fd_grad(f, p, name, h=1e-6):
    """Central finite differences of the numpy function f(p) in the entries of p[name]."""
    x = np.array(p[name], dtype=float)
    g = np.empty_like(x)
    for i in np.ndindex(x.shape):
        step = h * max(1.0, abs(x[i]))
        up, dn = x.copy(), x.copy()
        up[i] += step
        dn[i] -= step
        g[i] = (f({**p, name: up}) - f({**p, name: dn})) / (2 * step)
    return g

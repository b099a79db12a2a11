"""SAEM's Polyak-Ruppert average stays inside every constraint, also where the set is not convex."""

import numpy as np

import mcem
from mcem import constraints as C
from mcem.algorithms.saem import _running_mean


def test_the_average_of_correlation_cholesky_factors_is_one():
    corr = C.corr_cholesky(3)
    model = mcem.Model(lambda theta, z, data: np.zeros(z["u"].shape[:-1]),
                       params={"L": corr, "s": C.positive(3)},
                       latents={"u": mcem.Continuous(shape=1)})
    rng = np.random.default_rng(0)
    us = [rng.normal(size=corr.unconstrained_shape) for _ in range(5)]
    ss = [np.exp(rng.normal(size=3)) for _ in range(5)]
    avg = {"L": np.asarray(corr.forward(us[0])), "s": ss[0]}
    for n in range(2, 6):
        avg = _running_mean(model, avg, {"L": np.asarray(corr.forward(us[n - 1])), "s": ss[n - 1]}, n)
    # a naive reference: the mean in the unconstrained coordinates, mapped back; plain mean for s
    np.testing.assert_allclose(avg["L"], corr.forward(np.mean(us, axis=0)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.sum(avg["L"] ** 2, axis=1), 1.0, rtol=1e-12)  # unit-norm rows
    np.testing.assert_allclose(avg["s"], np.mean(ss, axis=0), rtol=1e-12)
    model.check_theta(avg)  # inside the constraints

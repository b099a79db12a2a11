"""Fits that finish: a model and a seed are the only settings, and the fit stops by its own rule
within 0.3 reference standard errors of an independent reference (three Monte Carlo standard
errors at the default target of 0.1), with standard errors within 10% of the reference's.

The references: adaptive Gauss-Hermite quadrature recorded by the scripts in ``references/``
(``mcem.datasets.reference``), and exact EM where the model has it. The whole table, with times
to the stop and to the first iterate within 0.1 SE, is ``benchmarks/bench_stopping.py``.
"""

import warnings

import numpy as np
import pytest

import mcem
from mcem.models import classic
from mcem.models.theophylline import theophylline_model


def flat(model, d):
    return np.concatenate([np.ravel(np.asarray(d[n], dtype=float)) for n in model.param_names])


def check(model, res, ref, ref_se):
    assert res.converged and res.stopped_by == "tol", res.message
    r, s = flat(model, ref), flat(model, ref_se)
    err = np.abs(flat(model, res.params) - r) / s
    assert np.all(err < 0.3), dict(zip(model.param_names, err))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        se = flat(model, res.standard_errors())
    assert np.all(np.abs(se / s - 1) < 0.10), se / s
    assert res["mc_ratio"] <= 0.1


def fit(model, theta0=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        return mcem.fit(model, theta0, **kw)


@pytest.mark.parametrize("name", ["cbpp", "epilepsy"])
def test_classic_glmm_with_a_seed_only(name):
    model = getattr(classic, f"{name}_model")()
    ref = mcem.datasets.reference(name)
    res = fit(model, rng=1)
    assert res.method == "mcem"  # method="auto": no exact E step, so MCEM
    check(model, res, ref["params"], ref["se"])


@pytest.mark.slow
def test_theophylline_mcem_with_a_seed_only():
    model = theophylline_model()
    ref = mcem.datasets.reference("theophylline")
    check(model, fit(model, rng=1), ref["params"], ref["se"])


def test_gaussian_mixture_default_is_exact_em_and_mcem_stops_near_it():
    from mcem.models.mixture import gaussian_mixture, initial_params

    X = mcem.datasets.load_faithful()
    model = gaussian_mixture(X, 2)
    th0 = initial_params(X, 2, rng=0)
    em = fit(model, th0)
    assert em.method == "em" and em.converged
    se = em.standard_errors()
    res = fit(model, th0, method="mcem", rng=1)
    check(model, res, em.params, se)

"""The fitting loop never returns a silently wrong answer: invalid updates stop the run with the
last valid parameters, a non-finite delta-Q stops it, draws are at the returned estimate, and
a problem met at every iteration is one warning with its record."""

import warnings

import numpy as np
import pytest
from test_algorithms import linkage_model

import mcem
from mcem import constraints as C


def normal_means(x, sufficient=True, grad=None):
    """z_i ~ N(mu, tau^2), x_i | z_i ~ N(z_i, 1); posterior z_i | x ~ N((x_i + mu/tau^2) w, w),
    w = 1 / (1 + 1/tau^2)."""

    def lj(theta, z, data):
        return -0.5 * (data - z["z"]) ** 2 - 0.5 * ((z["z"] - theta["mu"]) / theta["tau"]) ** 2 - np.log(theta["tau"])

    extra = {}
    if sufficient:
        extra = dict(sufficient_stats=lambda z, d: {"m1": z["z"].mean(0), "m2": (z["z"] ** 2).mean(0)},
                     mstep=lambda s, d: {"mu": s["m1"].mean(),
                                         "tau": np.sqrt(max(s["m2"].mean() - s["m1"].mean() ** 2, 0.0))})
    if grad is not None:
        extra["grad_params"] = grad
    return mcem.Model(lj, params={"mu": C.real, "tau": C.positive},
                      latents={"z": mcem.Continuous(shape=x.size, unit=True)}, data=x, init={"mu": 0.0, "tau": 1.0},
                      **extra)


X = np.random.default_rng(3).normal(1.0, 1.5, size=40)


def test_mc_gem_returns_draws_at_the_returned_estimate():
    """One big gradient step from mu = 6: the draws must follow p(z | x; theta_returned), not
    p(z | x; theta_0) (their means differ by about 1.4 here)."""
    model = normal_means(X, sufficient=False)
    res = mcem.fit(model, {"mu": 6.0, "tau": 1.0}, method="gem", estep="mc", m=400, max_iter=1, step_size=0.05,
                   rng=0, n_chains=4)
    mu, tau = float(res.params["mu"]), float(res.params["tau"])
    assert abs(mu - 6.0) > 1.0  # the step moved the estimate
    w = 1 / (1 + 1 / tau**2)
    post_mean = (X + mu / tau**2) * w
    z = res.draws["z"]  # (chain, draw, 40)
    per_draw = z.mean(axis=2)  # the mean over units, one value per draw
    mcse = mcem.diagnostics.mcse_mean(per_draw)
    assert abs(per_draw.mean() - post_mean.mean()) < 4 * mcse + 0.01, (per_draw.mean(), post_mean.mean(), mcse)
    # the iteration's draws, then the final ones (as many as the standard errors need)
    assert res.total_draws == 400 + res.draws["z"].shape[0] * res.draws["z"].shape[1] >= 2 * 400


def test_closed_form_mstep_that_leaves_the_space_stops_with_the_last_valid_parameters():
    m = linkage_model()
    broken = mcem.Model(m.log_joint_fn, params=m.params, latents=m.latents, init={"t": 0.3},
                        sufficient_stats=m.sufficient_stats_fn, mstep=lambda s, d: {"t": 1.5})
    for method in ("mcem", "saem"):
        with pytest.warns(mcem.ConvergenceWarning, match=r"stopped at iteration 1: the M step's result\['t'\] must lie"):
            res = mcem.fit(broken, method=method, max_iter=5, rng=0)
        assert res.stopped_by == "invalid_update" and not res.converged, method
        assert res.params["t"] == pytest.approx(0.3)
        assert res.n_iter == 0
        assert "last valid parameters" in res.message


def test_numerical_mstep_returning_nan_stops_the_fit_and_keeps_it():
    """A gradient that turns NaN makes L-BFGS-B return NaN parameters."""

    def bad_grad(theta, z, data):
        nan = np.full(z["z"].shape[:2], np.nan)
        return {"mu": nan, "tau": nan}

    model = normal_means(X, sufficient=False, grad=bad_grad)
    with pytest.warns(mcem.ConvergenceWarning, match="invalid_update|stopped at iteration 1"):
        res = mcem.fit(model, method="mcem", mstep="numerical", max_iter=5, rng=0)
    assert res.stopped_by == "invalid_update" and not res.converged
    assert np.isfinite(res.params["mu"]) and res.params["tau"] > 0
    assert res.params["mu"] == pytest.approx(0.0) and res.draws is not None


def test_adam_step_that_overflows_stops_the_fit():
    model = normal_means(X, sufficient=False)
    with pytest.warns(mcem.ConvergenceWarning, match="stopped at iteration"):
        res = mcem.fit(model, {"mu": 0.0, "tau": 1.0}, method="mcem", mstep="adam", rng=0, max_iter=5,
                       optimizer_options={"lr": 1e4, "n_steps": 50})
    assert res.stopped_by == "invalid_update" and not res.converged
    assert np.all(np.isfinite(res.history.params("tau"))) and np.all(res.history.params("tau") > 0)


def test_non_finite_delta_q_stops_instead_of_running_on():
    """log p overflows at the new parameters (exp of a large rate): delta-Q is NaN/inf while the
    M step reports success; the run must stop at once and say why."""

    def lj(theta, z, data):
        lam = np.exp(theta["b"] * 400.0 + z["u"])  # overflows to inf once b > 1.8
        return data * np.log(lam) - lam - 0.5 * z["u"] ** 2

    model = mcem.Model(lj, params={"b": C.real}, latents={"u": mcem.Continuous(shape=5, unit=True)},
                       data=np.array([1.0, 2.0, 0.0, 3.0, 1.0]), init={"b": 0.0},
                       sufficient_stats=lambda z, d: {"u": z["u"].mean()},
                       mstep=lambda s, d: {"b": 2.0})  # a valid real value where the density overflows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.warns(mcem.ConvergenceWarning, match="delta-Q is"):
            res = mcem.fit(model, method="mcem", max_iter=50, rng=0, sampler="rwm")
    assert res.stopped_by == "invalid_update" and res.n_iter == 0
    assert res.params["b"] == pytest.approx(0.0)


def test_a_problem_met_at_every_iteration_is_one_warning_with_its_record():
    """A sampler that never accepts: one acceptance warning for the whole fit, not one per
    iteration; every occurrence in warnings_record and in the history's warnings column."""

    def stuck(theta, z, data):
        u = z["u"]
        return np.where(u == 0.0, -0.5 * (u - theta["mu"]) ** 2, -np.inf)

    model = mcem.Model(stuck, params={"mu": C.real}, latents={"u": mcem.Continuous(shape=3, unit=True)},
                       data=np.array([0.3, -1.2, 2.0]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = mcem.fit(model, {"mu": 0.5}, method="mcem", sampler="rwm", max_iter=6, tol=1e-12,
                       schedule="fixed", m_init=40, rng=0)
    acc = [w for w in caught if "acceptance" in str(w.message)]
    assert len(acc) == 1, [str(w.message) for w in caught]
    rec = [r for r in res.warnings_record if r["key"] == "low_acceptance"]
    # every iteration's E step, and the final one at the estimate (counted as n_iter + 1)
    its = list(range(1, res.n_iter + 2))
    # chains that never move give delta-Q = 0 exactly: that must not count as convergence
    assert res.n_iter == 6 and res.stopped_by == "max_iter" and not res.converged
    assert [r["iteration"] for r in rec] == its
    assert f"met {len(its)} times in {len(its)} iteration(s) ({', '.join(map(str, its))})" in str(acc[0].message)
    assert all("low_acceptance" in w for w in res.history["warnings"][1:])
    assert acc[0].message.value == min(r["value"] for r in rec)


def test_filters_still_apply_inside_a_fit():
    """A caller's filter that turns a warning into an error still raises at once."""
    m = linkage_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error", mcem.ConvergenceWarning)
        with pytest.raises(mcem.ConvergenceWarning, match="max_iter"):
            mcem.fit(m, method="mcem", max_iter=1, tol=1e-12, rng=0)


def test_a_collapsed_mixture_component_is_a_flagged_degenerate_fit_not_a_clean_convergence():
    """Exact EM with reg_covar=0 on data with three copies of one far point: a component collapses
    onto them (variance ~1e-14). The fit must say so: converged=False, a degenerate flag naming
    the component, a warning; standard errors then come with their reason."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(100, 2)), np.tile([[8.0, 8.0]], (3, 1))])
    model = mcem.models.gaussian_mixture(X, 2, covariance_type="diag", reg_covar=0)
    with pytest.warns(mcem.ConvergenceWarning, match="degenerate fit: covariances"):
        res = mcem.fit(model, tol=1e-10, max_iter=500)
    k = int(np.argmin(res.params["weights"]))
    assert not res.converged and res.stopped_by == "tol"
    assert res.degenerate and all(p.startswith(f"covariances[{k}") for p in res.degenerate)
    assert "not converged to an interior maximum" in res.message
    # an ordinary fit carries an empty flag
    ok = mcem.fit(mcem.models.gaussian_mixture(X[:100], 2), tol=1e-8, max_iter=500)
    assert ok.converged and ok.degenerate == []


def test_fits_in_threads_leave_the_warning_machinery_as_they_found_it():
    """Fits that overlap in threads share one catcher: when they are done, warnings are shown
    again as before (overlapping catch_warnings blocks would leave a dead handler behind)."""
    import threading

    import time

    results = []
    together = threading.Barrier(4)

    def run(seed):
        def cb(row):  # all four fits are running at once; they end in the order they began
            if row["iter"] == 1:
                together.wait(timeout=30)
            if row["iter"] == 2:
                time.sleep(0.1 * seed)

        results.append(mcem.fit(linkage_model(), method="mcem", max_iter=3, tol=1e-12, rng=seed, callback=cb))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mcem.ConvergenceWarning)
        warnings.simplefilter("ignore", mcem.MonteCarloWarning)
        before = warnings._showwarnmsg_impl
        threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.05)  # they begin in order
        for t in threads:
            t.join()
        assert len(results) == 4 and warnings._showwarnmsg_impl is before


def test_a_reissued_warning_keeps_the_module_that_raised_it():
    """Module filters match a gathered warning as they matched it when it was first raised."""
    from mcem._warnlog import _module_of

    assert _module_of(__file__) == __name__
    assert _module_of(mcem.algorithms.loop.__file__) == "mcem.algorithms.loop"

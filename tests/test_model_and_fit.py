"""Model declaration, parameter packing, the fit driver and its bad-input errors."""

import warnings

import numpy as np
import pytest

import mcem
from mcem import constraints as C
from mcem.models import gaussian_mixture
from mcem.models.mixture import initial_params


def normal_re_model(y=None):
    """y_i ~ N(u_i, 1), u_i ~ N(mu, tau^2): per-unit log joint."""
    if y is None:
        y = np.array([0.3, -1.2, 2.0, 0.7])

    def log_joint(theta, z, data):
        u = z["u"]
        return (-0.5 * (data - u) ** 2 - 0.5 * ((u - theta["mu"]) / theta["tau"]) ** 2
                - np.log(theta["tau"]) - np.log(2 * np.pi))

    return mcem.Model(log_joint, params={"mu": C.real, "tau": C.positive},
                      latents={"u": mcem.Continuous(shape=y.size, unit=True)}, data=y)


def test_pack_unpack_round_trip_and_order_independence():
    m1 = mcem.Model(lambda th, z, d: np.zeros(z["z"].shape[:-1]),
                    params={"b": C.simplex(3), "a": C.positive_definite(2), "c": C.interval(0, 2, shape=2)},
                    latents={"z": mcem.Continuous(shape=1)})
    m2 = mcem.Model(m1.log_joint_fn,
                    params={"c": C.interval(0, 2, shape=2), "a": C.positive_definite(2), "b": C.simplex(3)},
                    latents={"z": mcem.Continuous(shape=1)})
    theta = {"a": np.array([[2.0, 0.3], [0.3, 1.0]]), "b": np.array([0.2, 0.3, 0.5]), "c": np.array([0.5, 1.5])}
    u1, u2 = m1.to_unconstrained(theta), m2.to_unconstrained(theta)
    np.testing.assert_array_equal(u1, u2)
    assert u1.shape == (m1.n_unconstrained,) == (3 + 2 + 2,)
    back = m1.from_unconstrained(u1)
    for k in theta:
        np.testing.assert_allclose(back[k], theta[k], atol=1e-12)
    # the total log-Jacobian is the sum of the parts
    expect = sum(float(m1.params[k].log_abs_det_jacobian(m1.params[k].inverse(theta[k]))) for k in theta)
    np.testing.assert_allclose(m1.log_abs_det_jacobian(u1), expect)


def test_validate_learns_per_unit_terms():
    m = normal_re_model()
    assert m.per_unit
    m2 = mcem.Model(lambda th, z, d: m.log_joint_fn(th, z, d).sum(-1), params=m.params,
                    latents=m.latents, data=m.data)
    assert not m2.per_unit


def test_model_declaration_errors():
    lj = normal_re_model().log_joint_fn
    lat = {"u": mcem.Continuous(shape=4, unit=True)}
    with pytest.raises(TypeError, match="log_joint must be callable"):
        mcem.Model(3, params={"mu": C.real}, latents=lat)
    with pytest.raises(TypeError, match=r"params\['mu'\] must be a continuous constraint"):
        mcem.Model(lj, params={"mu": "real"}, latents=lat)
    with pytest.raises(TypeError, match="params must be a non-empty dict"):
        mcem.Model(lj, params={}, latents=lat)
    with pytest.raises(TypeError, match=r"latents\['u'\] must be mcem.Discrete"):
        mcem.Model(lj, params={"mu": C.real}, latents={"u": C.real})
    with pytest.raises(ValueError, match="unit=True needs a latent with at least one axis"):
        mcem.Continuous(shape=(), unit=True)
    with pytest.raises(ValueError, match="Discrete: K must be an int >= 1, got 0"):
        mcem.Discrete(0, shape=3)
    with pytest.raises(TypeError, match="support must be an elementwise continuous constraint"):
        mcem.Continuous(C.simplex(3))
    with pytest.raises(ValueError, match=r"data must be finite, got 1 NaN and 0 inf"):
        mcem.Model(lj, params={"mu": C.real, "tau": C.positive}, latents=lat,
                   data=np.array([1.0, np.nan, 0, 0]))
    with pytest.raises(ValueError, match=r"data\['y'\] must be finite, got 0 NaN and 1 inf"):
        mcem.Model(lj, params={"mu": C.real, "tau": C.positive}, latents=lat,
                   data={"y": np.array([1.0, np.inf])})
    with pytest.raises(ValueError, match=r"data\['y'\] is empty"):
        mcem.Model(lj, params={"mu": C.real, "tau": C.positive}, latents=lat, data={"y": np.zeros(0)})
    with pytest.raises(ValueError, match=r"init\['tau'\] must lie in positive"):
        mcem.Model(lj, params={"mu": C.real, "tau": C.positive}, latents=lat, init={"tau": -1.0})


def test_log_joint_contract_errors():
    base = normal_re_model()

    def with_fn(fn):
        return mcem.Model(fn, params=base.params, latents=base.latents, data=base.data)

    theta = {"mu": 0.0, "tau": 1.0}
    with pytest.raises(ValueError, match=r"log_joint must return one value per batch element .* got shape \(3,\)"):
        mcem.fit(with_fn(lambda th, z, d: np.zeros(3)), theta)
    with pytest.raises(ValueError, match="log_joint returned NaN"):
        mcem.fit(with_fn(lambda th, z, d: np.full(z["u"].shape, np.nan)), theta)
    with pytest.raises(TypeError, match="log_joint must return a float array"):
        mcem.fit(with_fn(lambda th, z, d: np.array(["a", "b"])), theta)

    with pytest.raises(ValueError, match="log_joint is -inf at theta0"):
        mcem.fit(with_fn(lambda th, z, d: np.full(z["u"].shape, -np.inf)), theta)
    with pytest.raises(ValueError, match=r"log_joint returned \+inf"):
        mcem.fit(with_fn(lambda th, z, d: np.full(z["u"].shape, np.inf)), theta)
    with pytest.raises(TypeError, match=r"fit: method='auto' got unknown option\(s\) \['foo'\], which no method"):
        mcem.fit(gaussian_mixture(np.arange(10.0)[:, None], 2), foo=1)
    with pytest.raises(TypeError, match=r"fit: method='em' got unknown option\(s\) \['foo'\]"):
        mcem.fit(gaussian_mixture(np.arange(10.0)[:, None], 2), method="em", foo=1)

    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(a, b)

    def odd(th, z, d):
        raise Odd(1, 2)

    with pytest.raises(Odd):  # an exception that cannot take a message passes through unchanged
        mcem.fit(with_fn(odd), theta)

    def boom(th, z, d):
        raise KeyError("sigma")

    with pytest.raises(KeyError, match="log_joint raised KeyError"):
        mcem.fit(with_fn(boom), theta)


def test_fit_argument_errors():
    X = np.random.default_rng(0).normal(size=(50, 2))
    model = gaussian_mixture(X, 2)
    th = initial_params(X, 2, rng=0)
    with pytest.raises(TypeError, match="model must be an mcem.Model"):
        mcem.fit("model")
    with pytest.raises(ValueError, match=r"method must be one of .*'em'.*got 'newton'"):
        mcem.fit(model, th, method="newton")
    with pytest.raises(ValueError, match=r"theta0 is missing parameter\(s\) \['weights'\]"):
        mcem.fit(model, {k: v for k, v in th.items() if k != "weights"})
    with pytest.raises(ValueError, match=r"theta0 has unknown parameter\(s\) \['sigma'\]"):
        mcem.fit(model, {**th, "sigma": 1.0})
    with pytest.raises(ValueError, match=r"theta0\['weights'\] must lie in simplex\(2\)"):
        mcem.fit(model, {**th, "weights": np.array([0.7, 0.7])})
    with pytest.raises(ValueError, match=r"theta0\['means'\] must have shape \(2, 2\), got shape \(3,\)"):
        mcem.fit(model, {**th, "means": np.zeros(3)})
    with pytest.raises(ValueError, match=r"theta0\['covariances'\] must lie in positive_definite"):
        mcem.fit(model, {**th, "covariances": np.stack([np.eye(2), -np.eye(2)])})
    with pytest.raises(ValueError, match="max_iter must be an int >= 1, got 0"):
        mcem.fit(model, th, max_iter=0)
    with pytest.raises(ValueError, match="tol must be a finite non-negative number"):
        mcem.fit(model, th, tol=-1.0)
    with pytest.raises(TypeError, match="rng must be None, an int seed or a numpy.random.Generator"):
        mcem.fit(model, th, rng="seed")
    with pytest.raises(TypeError, match="callback must be callable"):
        mcem.fit(model, th, callback=3)
    with pytest.raises(ValueError, match="method='em' needs a model with an exact E step"):
        mcem.fit(normal_re_model(), {"mu": 0.0, "tau": 1.0}, method="em")


def test_fit_result_history_callback_and_max_iter():
    X = np.random.default_rng(1).normal(size=(80, 2))
    model = gaussian_mixture(X, 3)
    th = initial_params(X, 3, rng=1)
    th_copy = {k: v.copy() for k, v in th.items()}
    seen = []
    res = mcem.fit(model, th, callback=lambda row: seen.append(row["iter"]) or row["iter"] >= 3)
    assert res.stopped_by == "callback" and not res.converged and res.n_iter == 3
    assert seen == [1, 2, 3]
    assert len(res.history) == 4 and res.history["iter"].tolist() == [0, 1, 2, 3]
    assert res.history.params("means").shape == (4, 3, 2)
    assert np.all(res.history["seconds"] >= 0)
    for k in th:
        np.testing.assert_array_equal(th[k], th_copy[k])
    with pytest.warns(mcem.ConvergenceWarning, match="max_iter=2"):
        res2 = mcem.fit(model, th, max_iter=2, tol=0.0)
    assert not res2.converged and res2.stopped_by == "max_iter" and res2.n_iter == 2
    assert res2["loglik"] == pytest.approx(model.exact_loglik(res2.params))
    assert res2.marginal_loglik().value == res2["loglik"] == res2.loglik == res2.llf
    assert res2.marginal_loglik().mcse == 0.0 == res2.loglik_mcse
    text = str(res2.summary())
    assert "weights[0]" in text and "Log-likelihood" in text and "std err" in text
    assert res2.method == res2["method"] == "em"


def test_em_warns_when_a_broken_mstep_decreases_the_likelihood():
    X = np.random.default_rng(2).normal(size=(60, 1))
    good = gaussian_mixture(X, 2)

    def bad_mstep(stats, data):
        th = good.mstep_fn(stats, data)
        th["means"] = th["means"] + 0.5  # not the maximiser
        return th

    broken = mcem.Model(good.log_joint_fn, params=good.params, latents=good.latents, data=good.data,
                        exact_estep=good.exact_estep_fn, mstep=bad_mstep, loglik=good.loglik_fn)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = mcem.fit(broken, initial_params(X, 2, rng=0), max_iter=20)
    assert any("decreased" in str(w.message) for w in rec)
    assert not res.converged


def test_progress_bar_runs_and_can_be_forced():
    X = np.random.default_rng(3).normal(size=(40, 1))
    model = gaussian_mixture(X, 2)
    res = mcem.fit(model, initial_params(X, 2, rng=0), progress=True, max_iter=50)
    assert res.n_iter >= 1
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        mcem.fit(model, progress="yes")

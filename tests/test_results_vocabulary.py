"""The statsmodels vocabulary of FitResult (bse, cov_params, conf_int, zvalues, pvalues, llf, aic,
bic, nobs, df_model, param_names, summary) against closed forms.

The oracle is the normal random-effects model y_i | u_i ~ N(u_i, 1), u_i ~ N(mu, tau^2), so that
y_i ~ N(mu, V) with V = 1 + tau^2: the MLE is mu = mean(y), V = mean((y - mean y)^2), and the
standard errors are se(mu) = sqrt(V / n), se(V) = V sqrt(2 / n), se(tau) = se(V) / (2 tau).
"""

import html.parser
import warnings

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import norm

import mcem
from mcem import constraints as C
from mcem.inference import marginal_loglik
from mcem.result import _interval


def re_model(y, *, with_mu=True, exact=True, labels=None):
    """The normal random-effects model of the module docstring (mu = 0 when not ``with_mu``)."""
    y = np.asarray(y, dtype=float)

    def mean(theta):
        return theta["mu"] if with_mu else 0.0

    def log_joint(theta, z, data):
        u = z["u"]
        return -0.5 * (data - u) ** 2 - 0.5 * np.log(2 * np.pi) + norm.logpdf(u, mean(theta), theta["tau"])

    def loglik(theta, data):
        return float(norm.logpdf(data, mean(theta), np.sqrt(1 + theta["tau"] ** 2)).sum())

    def exact_estep(theta, data):
        v = theta["tau"] ** 2 / (1 + theta["tau"] ** 2)
        m = mean(theta) + v * (data - mean(theta))
        return {"Eu": float(m.mean()), "Euu": float(np.mean(m**2 + v))}

    def mstep(stats, data):
        mu = stats["Eu"] if with_mu else 0.0
        out = {"tau": np.sqrt(stats["Euu"] - 2 * mu * stats["Eu"] + mu**2)}
        return {**out, "mu": mu} if with_mu else out

    params = {"mu": C.real, "tau": C.positive} if with_mu else {"tau": C.positive}
    return mcem.Model(log_joint, params=params, latents={"u": mcem.Continuous(shape=y.size, unit=True)}, data=y,
                      loglik=loglik if exact else None, exact_estep=exact_estep, mstep=mstep, n_obs=y.size,
                      labels=labels, name=f"re_normal(mu={'free' if with_mu else 0})")


def closed_form(y):
    n, ybar = y.size, y.mean()
    V = np.mean((y - ybar) ** 2)
    tau = np.sqrt(V - 1)
    return {"mu": ybar, "tau": tau}, {"mu": np.sqrt(V / n), "tau": V * np.sqrt(2 / n) / (2 * tau)}


def posterior_draws(theta, y, rng, chains=2, draws=300):
    v = theta["tau"] ** 2 / (1 + theta["tau"] ** 2)
    m = theta.get("mu", 0.0) + v * (y - theta.get("mu", 0.0))
    return {"u": m + np.sqrt(v) * rng.standard_normal((chains, draws, y.size))}


@pytest.fixture(scope="module")
def data():
    return 0.4 + np.sqrt(1 + 1.5**2) * np.random.default_rng(11).standard_normal(60)


@pytest.fixture(scope="module")
def em(data):
    return mcem.fit(re_model(data), method="em", tol=1e-13, max_iter=5000)


def test_bse_and_cov_params_are_the_delta_method_from_the_exact_information(data, em):
    mle, se = closed_form(data)
    assert em.params["mu"] == pytest.approx(mle["mu"], abs=1e-6)
    assert em.params["tau"] == pytest.approx(mle["tau"], rel=1e-6)
    assert em.param_names == ["mu", "tau"]
    np.testing.assert_allclose(em.bse.to_numpy(), [se["mu"], se["tau"]], rtol=1e-4)
    assert list(em.bse.index) == ["mu", "tau"]
    cov = em.cov_params()
    assert list(cov.index) == list(cov.columns) == ["mu", "tau"]
    np.testing.assert_allclose(np.diag(cov.to_numpy()), em.bse.to_numpy() ** 2, rtol=1e-12)
    assert abs(cov.loc["mu", "tau"]) < 1e-4 * se["mu"] * se["tau"]  # orthogonal at the MLE
    np.testing.assert_allclose(em.params_flat.to_numpy(), [em.params["mu"], em.params["tau"]])


def test_zvalues_and_pvalues_only_for_real_parameters_and_match_scipy(em):
    z, p = em.zvalues, em.pvalues
    assert z["mu"] == pytest.approx(em.params["mu"] / em.bse["mu"], rel=1e-12)
    assert p["mu"] == pytest.approx(2 * norm.sf(abs(z["mu"])), rel=1e-12)
    assert np.isnan(z["tau"]) and np.isnan(p["tau"])  # a test of tau = 0 is no Wald test
    assert em.tvalues.equals(z)


def test_conf_int_real_is_symmetric_and_positive_is_exp_of_the_log_interval(em):
    for alpha in (0.05, 0.2):
        q = norm.ppf(1 - alpha / 2)
        ci = em.conf_int(alpha)
        assert list(ci.columns) == ["lower", "upper"] and list(ci.index) == ["mu", "tau"]
        mu, se_mu = em.params["mu"], em.bse["mu"]
        np.testing.assert_allclose(ci.loc["mu"], [mu - q * se_mu, mu + q * se_mu], rtol=1e-9)
        tau, se_log = em.params["tau"], em.bse["tau"] / em.params["tau"]  # delta method: se(log tau)
        np.testing.assert_allclose(ci.loc["tau"], np.exp(np.log(tau) + np.array([-q, q]) * se_log), rtol=1e-6)


def test_a_positive_interval_never_goes_below_zero_where_the_wald_interval_would():
    z = np.random.default_rng(0).standard_normal(8)
    y = 2.0 + np.sqrt(1.3) * (z - z.mean()) / z.std()  # MLE: mu = 2, V = 1.3, tau = sqrt(0.3)
    mle, se = closed_form(y)
    res = mcem.FitResult(params={k: np.array(v) for k, v in mle.items()}, method="em", loglik=None)
    res.attach(re_model(y))
    assert res.params["tau"] - 1.96 * res.bse["tau"] < 0  # the Wald interval leaves the space
    np.testing.assert_allclose(res.bse["tau"], se["tau"], rtol=1e-4)
    lo, hi = res.conf_int().loc["tau"]
    q = norm.ppf(0.975)
    assert 0 < lo < res.params["tau"] < hi
    assert lo == pytest.approx(mle["tau"] * np.exp(-q * se["tau"] / mle["tau"]), rel=1e-4)


def test_alpha_is_checked(em):
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"alpha must lie strictly between 0 and 1, got"):
            em.conf_int(bad)
    with pytest.raises(TypeError, match=r"alpha must be a number in \(0, 1\), got str"):
        em.summary(alpha="0.05")


def test_mixture_weights_in_0_1_and_variances_positive():
    model = mcem.models.gaussian_mixture(mcem.datasets.load_faithful(), 2)
    em = mcem.fit(model, tol=1e-10, max_iter=1000)
    ci, se, est = em.conf_int(0.01), em.bse, em.params_flat
    q = norm.ppf(0.995)
    for k in range(2):
        n = f"weights[{k}]"
        w = est[n]
        want = expit(logit(w) + np.array([-q, q]) * se[n] / (w * (1 - w)))
        np.testing.assert_allclose(ci.loc[n], want, rtol=1e-12)
        assert 0 < ci.loc[n, "lower"] < w < ci.loc[n, "upper"] < 1
        for i in range(2):
            v = f"covariances[{k},{i},{i}]"
            np.testing.assert_allclose(ci.loc[v], est[v] * np.exp(np.array([-q, q]) * se[v] / est[v]), rtol=1e-12)
            assert ci.loc[v, "lower"] > 0
        c = f"covariances[{k},0,1]"  # a covariance: the symmetric interval
        np.testing.assert_allclose(ci.loc[c], est[c] + np.array([-q, q]) * se[c], rtol=1e-12)
    assert em.zvalues.filter(like="weights").isna().all() and em.zvalues.filter(like="means").notna().all()


def test_cholesky_intervals_stay_in_their_support():
    """A d = 3 normal sample with the Cholesky factor as the parameter (exact log-likelihood)."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((25, 3)) @ np.array([[1, 0, 0], [0.8, 0.5, 0], [-0.3, 0.2, 0.1]]).T

    def loglik(theta, data):
        L = theta["L"]
        sol = np.linalg.solve(L, data.T)
        return float(-0.5 * np.sum(sol**2) - data.shape[0] * (np.log(np.diag(L)).sum() + 1.5 * np.log(2 * np.pi)))

    model = mcem.Model(lambda t, z, d: np.zeros(np.shape(z["u"])[:-1]), params={"L": C.lower_cholesky(3)},
                       latents={"u": mcem.Continuous(shape=1)}, data=X, loglik=loglik, n_obs=25)
    L = np.linalg.cholesky(X.T @ X / 25)  # the MLE
    res = mcem.FitResult(params={"L": L}, method="em").attach(model)
    ci, se = res.conf_int(), res.bse
    q = norm.ppf(0.975)
    for i in range(3):
        for j in range(3):
            n, x = f"L[{i},{j}]", L[i, j]
            if j > i:
                assert se[n] == 0 and ci.loc[n, "lower"] == ci.loc[n, "upper"] == 0
            elif j == i:
                np.testing.assert_allclose(ci.loc[n], x * np.exp(np.array([-q, q]) * se[n] / x), rtol=1e-12)
                assert ci.loc[n, "lower"] > 0
            else:
                np.testing.assert_allclose(ci.loc[n], x + np.array([-q, q]) * se[n], rtol=1e-12)


def test_corr_cholesky_and_simplex_interval_rules_against_a_naive_reference():
    c = C.corr_cholesky(3)
    L = c.forward(np.array([0.9, -1.4, 2.5]))
    s = np.abs(np.array([[0, 0, 0], [0.3, 0.2, 0], [0.25, 0.4, 0.05]]))
    q = 1.7
    lo, hi = _interval(c, L, s, np.full(3, np.nan), q)
    for i in range(3):
        for j in range(3):
            x, sd = L[i, j], s[i, j]
            if sd == 0:
                want = (x, x)
            elif i > j:  # Fisher z
                want = (np.tanh(np.arctanh(x) - q * sd / (1 - x * x)), np.tanh(np.arctanh(x) + q * sd / (1 - x * x)))
            else:  # a diagonal entry in (0, 1): logit
                g, h = np.log(x / (1 - x)), q * sd / (x * (1 - x))
                want = (1 / (1 + np.exp(-(g - h))), 1 / (1 + np.exp(-(g + h))))
            assert (lo[i, j], hi[i, j]) == pytest.approx(want, rel=1e-12)
            assert -1 <= lo[i, j] <= x <= hi[i, j] <= 1
    w = np.array([0.01, 0.3, 0.69])
    lo, hi = _interval(C.simplex(3), w, np.array([0.05, 0.1, 0.1]), np.full(2, np.nan), 1.96)
    assert np.all((lo > 0) & (hi < 1) & (lo < w) & (w < hi))
    # NaN standard errors give NaN intervals
    lo, hi = _interval(C.positive, np.array([1.0, 2.0]), np.array([np.nan, 0.5]), np.array([np.nan, 0.25]), 1.96)
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and hi[1] == pytest.approx(2 * np.exp(1.96 * 0.25))


def test_names_come_from_model_labels():
    y = np.linspace(-2, 3, 20)
    res = mcem.FitResult(params=closed_form(y)[0], method="em")
    assert res.param_names == ["mu", "tau"]  # no model: the plain names
    res.attach(re_model(y, labels={"mu": ["(Intercept)"], "tau": ["sd(u)"]}))
    assert res.param_names == ["(Intercept)", "sd(u)"]
    assert list(res.bse.index) == list(res.conf_int().index) == ["(Intercept)", "sd(u)"]
    assert "(Intercept)" in str(res.summary())
    # a label shared by two parameters is qualified by the parameter's name
    res.attach(re_model(y, labels={"mu": ["x"], "tau": ["x"]}))
    assert res.param_names == ["mu[x]", "tau[x]"]
    with pytest.raises(ValueError, match=r"labels\['mu'\] must hold 1 distinct label\(s\) .* got \['a', 'b'\]"):
        re_model(y, labels={"mu": ["a", "b"]})
    with pytest.raises(ValueError, match=r"labels has unknown parameter 'sigma'"):
        re_model(y, labels={"sigma": ["s"]})
    with pytest.raises(TypeError, match=r"labels\['mu'\] must be a sequence of str .* got 'mu'"):
        re_model(y, labels={"mu": "mu"})
    with pytest.raises(TypeError, match=r"labels must be a dict parameter name -> sequence of str, or None; got list"):
        re_model(y, labels=["mu"])


def test_llf_is_the_exact_loglik_and_loglik_is_the_key(data, em):
    model = re_model(data)
    assert em.llf == model.exact_loglik(em.params) and em.llf_mcse == 0.0
    assert em.loglik == em["loglik"] == em.llf and em.loglik_mcse == em["loglik_mcse"] == 0.0
    assert em.nobs == data.size and em.df_model == 2
    assert em.aic == pytest.approx(-2 * em.llf + 4, rel=1e-14)
    assert em.bic == pytest.approx(-2 * em.llf + 2 * np.log(data.size), rel=1e-14)
    n = data.size
    V = np.mean((data - data.mean()) ** 2)
    assert em.llf == pytest.approx(-0.5 * n * (np.log(2 * np.pi * V) + 1), abs=1e-8)


def test_llf_is_the_importance_estimate_computed_once_and_stored(data):
    model = re_model(data, exact=False)
    mle = {k: np.array(v) for k, v in closed_form(data)[0].items()}
    draws = posterior_draws(mle, data, np.random.default_rng(5))
    res = mcem.FitResult(params=mle, draws=draws, method="mcem").attach(model)
    assert res.loglik is None and "loglik=None" in repr(res) and "_loglik" not in res.__dict__  # repr: no estimate
    want = marginal_loglik(model, mle, draws, rng=0)
    assert want.mcse > 0
    assert res.llf == want.value and res.llf_mcse == want.mcse
    assert res["loglik"] == res.loglik == want.value and res["loglik_mcse"] == want.mcse
    assert res["loglik_method"] == want.method
    assert "estimate" in repr(res) and f"{want.value:.6g}" in repr(res)
    est = res.marginal_loglik()
    assert est == want and len(res.__dict__["_loglik"]) == 1  # computed once
    exact = re_model(data).exact_loglik(mle)
    assert abs(res.llf - exact) < 4 * res.llf_mcse + 1e-9
    more = res.marginal_loglik(target_se=want.mcse / 3, rng=1)  # a new estimate replaces the stored one
    assert res.loglik == more.value and res.loglik_mcse == more.mcse < want.mcse
    text = str(res.summary())
    assert f"{more.value:.3f} +- {more.mcse:.3f}" in text


def test_summary_object_text_html_and_tables(em):
    s = em.summary(alpha=0.1)
    assert isinstance(s, mcem.summary.Summary)
    text = str(s)
    assert text == s.as_text() == repr(s)
    for word in ("Log-likelihood", "AIC", "BIC", "Observations", "std err", "P>|z|", "[0.05", "0.95]"):
        assert word in text
    stats, params = s.tables
    assert stats.loc["Log-likelihood", "value"] == em.llf and stats.loc["Observations", "value"] == em.nobs
    assert list(params.columns) == ["estimate", "std err", "z", "P>|z|", "[0.05", "0.95]"]
    np.testing.assert_allclose(params["[0.05"], em.conf_int(0.1)["lower"])
    np.testing.assert_allclose(params["P>|z|"].to_numpy(), em.pvalues.to_numpy(), equal_nan=True)
    page = s._repr_html_()
    assert page == s.as_html() and page.count("<table") == 2

    class Tags(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.cells = [], []

        def handle_starttag(self, tag, attrs):
            self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack.pop() == tag

        def handle_data(self, d):
            if self.stack and self.stack[-1] in ("td", "th"):
                self.cells.append(d)

    parser = Tags()
    parser.feed(page)
    assert parser.stack == [] and "P>|z|" in parser.cells and "mu" in parser.cells


def test_summary_of_a_loaded_result_without_its_model(tmp_path, data, em):
    path = tmp_path / "fit.npz"
    em.save(path)
    back = mcem.load_result(path)
    text = str(back.summary())
    assert "attach" in text and f"{em.llf:.3f}" in text  # the stored log-likelihood
    assert back.llf == em.llf and back.loglik_mcse == 0.0
    with pytest.raises(ValueError, match="does not hold its model"):
        back.bse
    assert back.attach(re_model(data)) is back
    np.testing.assert_allclose(back.bse, em.bse)
    assert back.nobs == em.nobs and back.aic == pytest.approx(em.aic)


def test_a_file_written_with_the_old_meaning_of_loglik_loads(tmp_path, data, em):
    """Before loglik_mcse existed the file held loglik (exact or None) alone."""
    old = {k: v for k, v in em.items() if k not in ("loglik_mcse", "loglik_method", "se_problems")}
    mcem.save_result(old, tmp_path / "old.npz")
    back = mcem.load_result(tmp_path / "old.npz", model=re_model(data))
    assert back.loglik == em.loglik and back.loglik_mcse == 0.0 and back.llf == em.llf
    assert "estimate" not in repr(back) and repr(em.loglik) in repr(back)
    none = {**old, "loglik": None}
    mcem.save_result(none, tmp_path / "none.npz")
    back = mcem.load_result(tmp_path / "none.npz")
    assert back.loglik is None and "loglik_mcse" not in back
    with pytest.raises(ValueError, match="does not hold its model"):
        back.llf


def test_nobs_and_df_model_without_a_model(em):
    res = mcem.FitResult(params=dict(em.params), loglik=em.loglik)
    with pytest.raises(ValueError, match=r"nobs is unknown: .* fit.nobs = n"):
        res.nobs
    res.nobs = 60
    assert res.nobs == 60
    with pytest.raises(ValueError, match="df_model is unknown"):
        res.aic


def test_ranef_and_predict_need_a_mixed_model(em):
    with pytest.raises(AttributeError, match=r"ranef\(\) needs a mixed model made by mcem.models.glmm; this model"):
        em.ranef()
    with pytest.raises(AttributeError, match=r"predict\(\) needs a mixed model"):
        em.predict()

    class Mixed(mcem.Model):
        def ranef(self, fit, **kw):
            return ("ranef", fit.method, kw)

        def predict(self, fit, newdata, **kw):
            return ("predict", newdata, kw)

    m = em.__dict__["_model"]
    mixed = Mixed(m.log_joint_fn, params=m.params, latents=m.latents, data=m.data)
    res = mcem.FitResult(dict(em)).attach(mixed)
    assert res.ranef(condvar=True) == ("ranef", "em", {"condvar": True})
    assert res.predict("new", level=0) == ("predict", "new", {"level": 0})


def test_labels_survive_copies_subsets_and_pickling():
    import copy
    import pickle

    y = np.linspace(-1, 1, 6)
    m = re_model(y, labels={"mu": ["centre"]})
    assert copy.copy(m).labels == {"mu": ("centre",)}
    sub = m.with_subset(lambda units: re_model(y[units]))
    assert sub.labels == m.labels and sub.subset(np.array([0, 2])).labels == m.labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lang = mcem.model(_lang_fn)(y)
    lang.labels = {"mu": ["centre"]}
    again = pickle.loads(pickle.dumps(lang))
    assert again.labels == {"mu": ("centre",)}
    m.labels = None
    assert m.labels is None


def _lang_fn(m, y):
    mu = m.param("mu")
    u = m.latent("u", mcem.dist.Normal(mu, 1.0), shape=y.size, unit=True)
    m.observe("y", mcem.dist.Normal(u, 1.0), y, unit_index=np.arange(y.size))

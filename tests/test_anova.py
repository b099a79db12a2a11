"""mcem.anova: likelihood-ratio tests of nested fits against the closed form of a normal
random-effects model, and the Monte Carlo error of Chisq against repeated estimates."""

import numpy as np
import pytest
from scipy.stats import chi2
from test_results_vocabulary import closed_form, posterior_draws, re_model

import mcem
from mcem.anova import COLUMNS, anova


@pytest.fixture(scope="module")
def data():
    return 0.4 + np.sqrt(1 + 1.5**2) * np.random.default_rng(11).standard_normal(60)


@pytest.fixture(scope="module")
def fits(data):
    full = mcem.fit(re_model(data), method="em", tol=1e-13, max_iter=5000)
    null = mcem.fit(re_model(data, with_mu=False), method="em", tol=1e-13, max_iter=5000)
    return full, null


def test_the_likelihood_ratio_test_of_nested_exact_fits_is_the_closed_form(data, fits):
    full, null = fits
    n = data.size
    va, vb = np.mean((data - data.mean()) ** 2), np.mean(data**2)  # the MLEs of V = 1 + tau^2
    assert va > 1 and vb > 1
    lr = n * np.log(vb / va)
    ll = {"null": -0.5 * n * (np.log(2 * np.pi * vb) + 1), "full": -0.5 * n * (np.log(2 * np.pi * va) + 1)}
    out = anova(full, null, names=["full", "null"])  # sorted by parameters: null first
    t = out.table
    assert list(t.index) == ["null", "full"] and list(t.columns) == COLUMNS
    np.testing.assert_allclose(t["llf"], [ll["null"], ll["full"]], atol=1e-8)
    np.testing.assert_array_equal(t["npar"], [1, 2])
    np.testing.assert_allclose(t["AIC"], -2 * t["llf"] + 2 * t["npar"], rtol=1e-14)
    np.testing.assert_allclose(t["BIC"], -2 * t["llf"] + t["npar"] * np.log(n), rtol=1e-14)
    np.testing.assert_allclose(t["deviance"], -2 * t["llf"], rtol=1e-14)
    assert t["Chisq"].iloc[1] == pytest.approx(lr, abs=1e-7)
    assert t["Df"].iloc[1] == 1 and t["Pr(>Chisq)"].iloc[1] == pytest.approx(chi2.sf(lr, 1), rel=1e-6)
    assert t["Chisq mcse"].iloc[1] == 0 and t["llf mcse"].eq(0).all()
    assert np.isnan(t["Chisq"].iloc[0]) and np.isnan(t["Pr(>Chisq)"].iloc[0])
    # the same table whatever the order the fits come in
    again = anova(null, full, names=["null", "full"]).table
    np.testing.assert_array_equal(again.to_numpy(), t.to_numpy())
    text, page = str(out), out.as_html()
    assert "Pr(>Chisq)" in text and "boundary" in text and "conservative" in text
    assert page.count("<table") == 1 and "Pr(&gt;Chisq)" in page and page == out._repr_html_()
    assert list(anova(full, null).table.index) == [null.model_name, full.model_name]


def test_bad_fits_get_clear_errors(data, fits):
    full, null = fits
    with pytest.raises(ValueError, match=r"anova needs at least two fits of nested models, got 1"):
        anova(full)
    with pytest.raises(TypeError, match=r"fits\[1\] must be an mcem.FitResult \(from mcem.fit\), got dict"):
        anova(full, dict(null))
    fewer = mcem.fit(re_model(data[:50], with_mu=False), method="em", tol=1e-10, max_iter=5000)
    with pytest.raises(ValueError, match=r"the fits are on different data: .*nobs\) differ: .*60.*50"):
        anova(full, fewer)
    with pytest.raises(ValueError, match=r"have the same number of free parameters \(2\), so they are not nested"):
        anova(full, full)
    with pytest.raises(ValueError, match=r"names must hold 2 distinct str"):
        anova(full, null, names=["a"])


def test_chisq_mcse_matches_repeated_estimates(data):
    """Importance-sampled log-likelihoods (no exact one): the spread of Chisq over independent
    estimates agrees with the reported 2 sqrt(mcse1^2 + mcse2^2)."""
    rng = np.random.default_rng(7)
    out = []
    for with_mu in (True, False):
        mle = {k: np.array(v) for k, v in closed_form(data)[0].items()}
        if not with_mu:
            mle = {"tau": np.array(np.sqrt(np.mean(data**2) - 1))}
        res = mcem.FitResult(params=mle, draws=posterior_draws(mle, data, rng), method="mcem", model_name=str(with_mu))
        out.append(res.attach(re_model(data, with_mu=with_mu, exact=False)))
    full, null = out
    reps, ses = [], []
    for r in range(60):
        full.marginal_loglik(n_samples=20, rng=2 * r)
        null.marginal_loglik(n_samples=20, rng=2 * r + 1)
        t = anova(full, null).table
        reps.append(t["Chisq"].iloc[1])
        ses.append(t["Chisq mcse"].iloc[1])
        assert t["llf mcse"].iloc[1] == full.loglik_mcse > 0 and t["llf"].iloc[1] == full.loglik
    sd, se = np.std(reps, ddof=1), np.mean(ses)
    # the sample SD of 60 draws is within about 9% of the truth (1 SE); allow 3.5 SE
    assert 0.69 < sd / se < 1.31, (sd, se)
    lr = 2 * (re_model(data).exact_loglik(full.params) - re_model(data, with_mu=False).exact_loglik(null.params))
    assert abs(np.mean(reps) - lr) < 4 * se / np.sqrt(60)  # the estimates are unbiased to first order
    assert "importance-sampling estimates" in str(anova(full, null))

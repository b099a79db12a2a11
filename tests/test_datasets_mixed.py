"""The mixed-model data sets (sleepstudy, Penicillin, Pastes, grouseticks, cbpp as a frame) and the
recorded lme4 / glmmTMB / nlme reference fits, checked without R: the log-likelihoods are
recomputed here at the recorded estimates (exact Gaussian marginal likelihoods, Gauss-Hermite
quadrature, the Laplace approximation), the fixed effects and their standard errors by
generalised least squares."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, gammaln, logsumexp

from mcem import datasets

GAUSSIAN = ["sleepstudy_lme4", "sleepstudy_uncorrelated_lme4", "penicillin_lme4", "pastes_lme4"]


def _peers(name):
    """The recorded fit and each of its peers: (label, entry) pairs."""
    ref = datasets.reference(name)
    return [("main", ref)] + sorted(ref["peers"].items())


# --- the loaders ------------------------------------------------------------------------------------

@pytest.mark.parametrize("loader, columns, floats, texts, n_rows, n_levels", [
    (datasets.load_sleepstudy, ["Reaction", "Days", "Subject"], ["Reaction", "Days"], ["Subject"],
     180, {"Subject": 18}),
    (datasets.load_penicillin, ["diameter", "plate", "sample"], ["diameter"], ["plate", "sample"],
     144, {"plate": 24, "sample": 6}),
    (datasets.load_pastes, ["strength", "batch", "cask", "sample"], ["strength"],
     ["batch", "cask", "sample"], 60, {"batch": 10, "cask": 3, "sample": 30}),
    (datasets.load_grouseticks, ["INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION", "cHEIGHT"],
     ["HEIGHT", "cHEIGHT"], ["INDEX", "BROOD", "YEAR", "LOCATION"], 403,
     {"INDEX": 403, "BROOD": 118, "YEAR": 3, "LOCATION": 63}),
    (lambda: datasets.load_cbpp(as_frame=True), ["herd", "incidence", "size", "period"], [],
     ["herd", "period"], 56, {"herd": 15, "period": 4}),
])
def test_loader_columns_dtypes_shapes(loader, columns, floats, texts, n_rows, n_levels):
    df = loader()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == columns and df.shape == (n_rows, len(columns))
    for c in floats:
        assert df[c].dtype == np.float64, c
    for c in texts:
        assert pd.api.types.is_string_dtype(df[c]) and all(isinstance(v, str) for v in df[c]), c
    for c in set(columns) - set(floats) - set(texts):
        assert df[c].dtype == np.int64, c
    assert {c: df[c].nunique() for c in n_levels} == n_levels
    assert not df.isna().any().any()
    df.columns = [c + "_changed" for c in columns]  # each call reads the file anew
    assert list(loader().columns) == columns


def test_designs_are_as_documented():
    ss = datasets.load_sleepstudy()
    assert (ss.groupby("Subject")["Days"].apply(sorted).map(lambda d: d == list(range(10)))).all()
    pe = datasets.load_penicillin()
    assert (pd.crosstab(pe["plate"], pe["sample"]).to_numpy() == 1).all()  # crossed, balanced
    pa = datasets.load_pastes()
    assert (pa["sample"] == pa["batch"] + ":" + pa["cask"]).all()  # nested: sample = batch:cask
    assert (pa["sample"].value_counts() == 2).all()
    gt = datasets.load_grouseticks()
    np.testing.assert_allclose(gt["cHEIGHT"], gt["HEIGHT"] - gt["HEIGHT"].mean(), atol=1e-9)
    assert sorted(gt["YEAR"].unique()) == ["95", "96", "97"]


def test_cbpp_frame_matches_the_dict():
    d, df = datasets.load_cbpp(), datasets.load_cbpp(as_frame=True)
    assert isinstance(d, dict) and isinstance(d["incidence"], np.ndarray)
    for c in ["incidence", "size"]:
        np.testing.assert_array_equal(df[c].to_numpy(), d[c])
    for c in ["herd", "period"]:
        assert list(df[c]) == [str(int(v)) for v in d[c]]
    assert sorted(df["period"].unique()) == ["1", "2", "3", "4"]
    with pytest.raises(TypeError, match="as_frame must be True or False, got int 1"):
        datasets.load_cbpp(as_frame=1)


def test_reference_names_and_structure():
    for old in ["theophylline", "cbpp", "epilepsy"]:
        assert datasets.reference(old)["script"].startswith("references/")
    for name in GAUSSIAN + ["cbpp_lme4", "grouseticks_lme4"]:
        for label, e in _peers(name):
            p = e["params"]
            assert len(p["beta"]) == len(e["names"]) == len(e["se"]["beta"]), (name, label)
            for k, v in p.items():
                if k.startswith("sd_"):
                    assert len(v) == len(e["labels"][k]) and min(v) > 0, (name, label, k)
            assert np.isfinite(e["loglik"]) and e["converged"] and e["seconds"] > 0, (name, label)
    with pytest.raises(ValueError, match="name must be one of"):
        datasets.reference("sleepstudy")
    # The two quadratures of cbpp agree: lme4's nAGQ = 25 and the package's own reference.
    assert datasets.reference("cbpp_lme4")["loglik"] == pytest.approx(datasets.reference("cbpp")["loglik"],
                                                                      abs=1e-6)


# --- Gaussian models: exact marginal likelihood and generalised least squares -----------------------

def _gaussian_design(name):
    """y, X and the random terms (group codes, Z columns, params key) of a recorded LMM."""
    if name.startswith("sleepstudy"):
        df = datasets.load_sleepstudy()
        Z = np.column_stack([np.ones(len(df)), df["Days"]])
        return df["Reaction"].to_numpy(), Z, [(df["Subject"], Z, "Subject")]
    if name == "penicillin_lme4":
        df = datasets.load_penicillin()
        one = np.ones((len(df), 1))
        return df["diameter"].to_numpy(), one, [(df["plate"], one, "plate"), (df["sample"], one, "sample")]
    df = datasets.load_pastes()
    one = np.ones((len(df), 1))
    return (df["strength"].to_numpy(), one,
            [(df["batch"], one, "batch"), (df["batch"] + ":" + df["cask"], one, "batch:cask")])


def _marginal_cov(params, terms, n):
    """sigma^2 I + sum over terms of Z_g Sigma Z_g' within the same level of the group."""
    V = params["sigma"] ** 2 * np.eye(n)
    for group, Z, key in terms:
        sd = np.asarray(params["sd_" + key])
        C = np.asarray(params.get("cor_" + key, np.eye(len(sd))))
        codes = pd.factorize(group)[0]
        V += (codes[:, None] == codes[None, :]) * (Z @ (sd[:, None] * C * sd[None, :]) @ Z.T)
    return V


def _gaussian_loglik(y, X, beta, V):
    L = np.linalg.cholesky(V)
    r = np.linalg.solve(L, y - X @ beta)
    return -0.5 * (len(y) * np.log(2 * np.pi) + 2 * np.log(np.diag(L)).sum() + r @ r)


@pytest.mark.parametrize("name", GAUSSIAN)
def test_gaussian_loglik_recomputed_at_the_estimates(name):
    y, X, terms = _gaussian_design(name)
    for label, e in _peers(name):
        V = _marginal_cov(e["params"], terms, len(y))
        ll = _gaussian_loglik(y, X, np.asarray(e["params"]["beta"]), V)
        assert ll == pytest.approx(e["loglik"], abs=1e-6), (name, label)
    # ... and the recorded estimates maximise it: scaling any variance component by 1 +- 1% lowers it.
    ref = datasets.reference(name)
    p, beta = ref["params"], np.asarray(ref["params"]["beta"])
    best = _gaussian_loglik(y, X, beta, _marginal_cov(p, terms, len(y)))
    for key in [k for k in p if k.startswith("sd_") or k == "sigma"]:
        for f in (0.99, 1.01):
            q = dict(p, **{key: np.asarray(p[key]) * f})
            assert _gaussian_loglik(y, X, beta, _marginal_cov(q, terms, len(y))) < best, (name, key, f)


def test_sleepstudy_recorded_values():
    """The classic maximum-likelihood fit, the three R packages within their optimisers' tolerance."""
    for label, e in _peers("sleepstudy_lme4"):
        p = e["params"]
        np.testing.assert_allclose(p["beta"], [251.405, 10.467], atol=1e-3, err_msg=label)
        np.testing.assert_allclose(p["sd_Subject"], [23.780, 5.717], atol=1e-3, err_msg=label)
        assert p["cor_Subject"][0][1] == pytest.approx(0.081, abs=1e-3) and p["cor_Subject"][0][0] == 1
        assert p["sigma"] == pytest.approx(25.592, abs=1e-3) and e["loglik"] == pytest.approx(-875.970, abs=1e-3)


@pytest.mark.parametrize("name", GAUSSIAN)
def test_fixed_effects_and_se_are_gls(name):
    """At the variance components, the ML fixed effects are the GLS estimate (lme4 and nlme profile
    them out; glmmTMB optimises them numerically, to within 1e-4 standard errors), and lme4's and
    nlme's standard errors are the square roots of diag((X' V^-1 X)^-1)."""
    y, X, terms = _gaussian_design(name)
    for label, e in _peers(name):
        V = _marginal_cov(e["params"], terms, len(y))
        XtViX = X.T @ np.linalg.solve(V, X)
        beta = np.linalg.solve(XtViX, X.T @ np.linalg.solve(V, y))
        se = np.sqrt(np.diag(np.linalg.inv(XtViX)))
        if label == "glmmTMB":  # which inverts the Hessian of all parameters together for its SEs
            assert np.all(np.abs(e["params"]["beta"] - beta) < 1e-4 * se), (name, label)
        else:
            np.testing.assert_allclose(e["params"]["beta"], beta, rtol=1e-9, err_msg=f"{name} {label}")
            np.testing.assert_allclose(e["se"]["beta"], se, rtol=1e-6, err_msg=f"{name} {label}")


# --- GLMMs: quadrature and the Laplace approximation -----------------------------------------------

def _cbpp():
    df = datasets.load_cbpp(as_frame=True)
    X = np.column_stack([np.ones(len(df))] + [(df["period"] == k).to_numpy(float) for k in "234"])
    codes = pd.factorize(df["herd"])[0]
    return df["incidence"].to_numpy(float), df["size"].to_numpy(float), X, codes


def _binom_logpmf(y, n, eta):
    return (gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
            + y * eta - n * np.logaddexp(0.0, eta))


def test_cbpp_quadrature_loglik():
    """lme4's nAGQ = 25 log-likelihood (on the full scale) = Gauss-Hermite quadrature per herd."""
    y, n, X, codes = _cbpp()
    e = datasets.reference("cbpp_lme4")
    beta, sd = np.asarray(e["params"]["beta"]), e["params"]["sd_herd"][0]
    H = (codes[None, :] == np.arange(codes.max() + 1)[:, None]).astype(float)  # herds x rows

    def loglik(nodes):
        t, w = np.polynomial.hermite.hermgauss(nodes)
        logp = _binom_logpmf(y[:, None], n[:, None], (X @ beta)[:, None] + np.sqrt(2) * sd * t[None, :])
        return logsumexp(H @ logp + np.log(w / np.sqrt(np.pi))[None, :], axis=1).sum()

    assert loglik(60) == pytest.approx(loglik(120), abs=1e-8)
    assert loglik(120) == pytest.approx(e["loglik"], abs=1e-6)
    assert e["loglik"] == pytest.approx(e["loglik_reported"] + e["saturated_loglik"], abs=1e-9)


def _laplace(logp_and_derivs, Z, sds, n_iter=50):
    """The Laplace approximation of log int p(y | u) N(u; 0, diag(sds^2)) du, by Newton's method."""
    u = np.zeros(Z.shape[1])
    for _ in range(n_iter):
        _, g, w = logp_and_derivs(Z @ u)
        H = -(Z.T * w) @ Z - np.diag(1 / sds**2)
        u = u - np.linalg.solve(H, Z.T @ g - u / sds**2)
    lp, _, w = logp_and_derivs(Z @ u)
    H = -(Z.T * w) @ Z - np.diag(1 / sds**2)
    prior = -0.5 * (u**2 / sds**2 + np.log(2 * np.pi * sds**2)).sum()
    return lp + prior + 0.5 * len(u) * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(-H)[1]


@pytest.mark.parametrize("peer", ["lme4_laplace", "lme4_laplace_tolPwrss", "glmmTMB"])
def test_cbpp_laplace_loglik(peer):
    """glmer's and glmmTMB's Laplace log-likelihoods recomputed at their estimates. glmer's default
    PIRLS tolerance (tolPwrss = 1e-7) leaves its value up to 1e-3 below; with 1e-10, 1e-6."""
    y, n, X, codes = _cbpp()
    e = datasets.reference("cbpp_lme4")["peers"][peer]
    beta, sd = np.asarray(e["params"]["beta"]), e["params"]["sd_herd"][0]
    Z = (codes[:, None] == np.arange(codes.max() + 1)[None, :]).astype(float)

    def binomial(eta_u):
        eta = X @ beta + eta_u
        p = expit(eta)
        return _binom_logpmf(y, n, eta).sum(), y - n * p, n * p * (1 - p)

    laplace = _laplace(binomial, Z, np.full(Z.shape[1], sd))
    if peer == "lme4_laplace":
        assert laplace - 1e-3 < e["loglik"] <= laplace
    else:
        assert laplace == pytest.approx(e["loglik"], abs=1e-6)


@pytest.mark.parametrize("label", ["main", "glmmTMB"])
def test_grouseticks_laplace_loglik(label):
    """Poisson, crossed BROOD and LOCATION intercepts: the Laplace log-likelihood of glmer (and
    glmmTMB) recomputed at the recorded estimates."""
    df = datasets.load_grouseticks()
    e = dict(_peers("grouseticks_lme4"))[label]
    year = df["YEAR"].to_numpy()
    X = np.column_stack([np.ones(len(df)), year == "96", year == "97", df["cHEIGHT"]]).astype(float)
    Zs, sds = [], []
    for g in ["BROOD", "LOCATION"]:
        codes, levels = pd.factorize(df[g])
        Zs.append(codes[:, None] == np.arange(len(levels)))
        sds.append(np.full(len(levels), e["params"]["sd_" + g][0]))
    Z, sds = np.hstack(Zs).astype(float), np.concatenate(sds)
    y, beta = df["TICKS"].to_numpy(float), np.asarray(e["params"]["beta"])

    def poisson(eta_u):
        eta = X @ beta + eta_u
        mu = np.exp(eta)
        return (y * eta - mu - gammaln(y + 1)).sum(), y - mu, mu

    assert _laplace(poisson, Z, sds) == pytest.approx(e["loglik"], abs=1e-5)

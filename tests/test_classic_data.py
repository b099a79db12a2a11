"""Three classic data sets (Theoph, cbpp, epil): the data against R's column sums, the models
against naive references, the binomial GLMM family against scipy and brute-force integration,
and the recorded reference fits against the scripts that made them and against R's lme4/nlme
(whose numbers are recorded in references/peers_output.json by references/peers.R)."""

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import expit

import mcem
from mcem import datasets
from mcem.models import centred_glmm, classic, theophylline as th, theophylline_quadrature as tq
from mcem.models import random_intercept as ri

ROOT = Path(__file__).resolve().parents[1]
PEERS = json.loads((ROOT / "references" / "peers_output.json").read_text())


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"references_{name}", ROOT / "references" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- data (sums from R)
def test_theophylline_data_match_r():
    d = datasets.load_theophylline()
    assert list(d) == ["Subject", "Wt", "Dose", "Time", "conc"] and d["conc"].shape == (132,)
    np.testing.assert_array_equal(np.bincount(d["Subject"].astype(int))[1:], np.full(12, 11))
    # colSums(Theoph[, c("Wt", "Dose", "Time", "conc")]) in R 4.2.2
    for k, want in {"Wt": 9185.0, "Dose": 610.61, "Time": 778.09, "conc": 654.78}.items():
        assert d[k].sum() == pytest.approx(want, abs=1e-9), k
    assert d["conc"][:3].tolist() == [0.74, 2.84, 6.57] and d["Dose"][0] == 4.02


def test_cbpp_and_epilepsy_data_match_r():
    c = datasets.load_cbpp()
    assert list(c) == ["herd", "incidence", "size", "period"] and c["herd"].shape == (56,)
    assert (c["incidence"].sum(), c["size"].sum(), np.unique(c["herd"]).size) == (99, 842, 15)
    assert set(c["period"]) == {1, 2, 3, 4}
    e = datasets.load_epilepsy()
    assert list(e) == ["y", "trt", "base", "age", "V4", "subject", "period", "lbase", "lage"]
    assert e["y"].shape == (236,) and np.unique(e["subject"]).size == 59
    assert (e["y"].sum(), e["base"].sum(), e["age"].sum(), e["V4"].sum()) == (1948, 7368, 6688, 59)
    assert (e["trt"] == "placebo").sum() == 112 and e["y"][e["trt"] == "progabide"].sum() == 987
    assert np.sum(e["lbase"] ** 2) == pytest.approx(130.825530089283, rel=1e-12)
    assert np.sum(e["lage"] ** 2) == pytest.approx(11.6294711836823, rel=1e-12)
    # MASS: lbase = log(base / 4) centred over patients (each patient counted once per period)
    np.testing.assert_allclose(e["lbase"], np.log(e["base"] / 4) - np.mean(np.log(e["base"] / 4)), atol=1e-12)


def test_reference_returns_a_copy_and_refuses_unknown_names():
    r = datasets.reference("cbpp")
    assert r["script"] == "references/glmm_aghq.py" and "lme4_nAGQ25" in r["peers"]
    r["params"]["sigma"] = -1.0
    assert datasets.reference("cbpp")["params"]["sigma"] > 0
    with pytest.raises(ValueError, match=r"name must be one of \['cbpp', 'cbpp_lme4', 'epilepsy', 'grouseticks_lme4', 'pastes_lme4', 'penicillin_lme4', 'sleepstudy_lme4', 'sleepstudy_uncorrelated_lme4', 'theophylline'\], got 'x'"):
        datasets.reference("x")


# --------------------------------------------------------------------------- theophylline model
def naive_fol(dose, t, lKe, lKa, lCl):
    ke, ka = np.exp(lKe), np.exp(lKa)
    return dose * np.exp(lKe + lKa - lCl) * (np.exp(-ke * t) - np.exp(-ka * t)) / (ka - ke)


def test_fol_concentration_is_ssfol_and_reproduces_nlme_fitted_values():
    t = np.linspace(0.0, 24.0, 49)
    for lka in (0.5, -1.0, 2.0):
        np.testing.assert_allclose(th.fol_concentration(4.0, t, -2.5, lka, -3.0), naive_fol(4.0, t, -2.5, lka, -3.0),
                                   rtol=1e-12, atol=1e-14)
    # ka -> ke: the limit D ke^2 / Cl t exp(-ke t), where the difference formula cancels
    for eps in (0.0, 1e-9, 1e-6):
        want = 4.0 * np.exp(2 * -2.5 + eps + 3.0) * t * np.exp(-np.exp(-2.5) * t)
        np.testing.assert_allclose(th.fol_concentration(4.0, t, -2.5, -2.5 + eps, -3.0), want, rtol=3e-6)
    # nlme's fitted values of fm2Theo (fixed + random effects) from our prediction function
    p, d = PEERS["theophylline"], datasets.load_theophylline()
    ka = dict(zip(p["ranef_subject"], p["ranef_lKa"]))
    cl = dict(zip(p["ranef_subject"], p["ranef_lCl"]))
    subj = d["Subject"].astype(int)
    pred = th.fol_concentration(d["Dose"], d["Time"], p["beta"][0], p["beta"][1] + np.array([ka[s] for s in subj]),
                                p["beta"][2] + np.array([cl[s] for s in subj]))
    np.testing.assert_allclose(pred, p["fitted_subject"], rtol=1e-10, atol=1e-12)


THETA = {"lKe": -2.4, "lKa": 0.55, "lCl": -3.1, "omega": np.array([0.7, 0.2]), "sigma": 0.8}


def naive_theophylline_log_joint(theta, b):
    """Per-subject log joint for one draw b (G, 2): a loop over subjects with scipy.stats."""
    d = datasets.load_theophylline()
    out = []
    for i, s in enumerate(np.unique(d["Subject"])):
        rows = d["Subject"] == s
        f = naive_fol(d["Dose"][rows], d["Time"][rows], theta["lKe"], theta["lKa"] + b[i, 0], theta["lCl"] + b[i, 1])
        out.append(stats.norm.logpdf(d["conc"][rows], f, theta["sigma"]).sum()
                   + stats.norm.logpdf(b[i], 0.0, theta["omega"]).sum())
    return np.array(out)


@pytest.mark.parametrize("latent", ["phi", "b"])
def test_theophylline_log_joint_matches_naive_and_gradient_matches_differences(latent):
    model = th.theophylline_model(latent=latent)
    b = 0.3 * np.random.default_rng(3).standard_normal((2, 3, 12, 2))
    shift = np.array([THETA["lKa"], THETA["lCl"]]) if latent == "phi" else 0.0
    z = {latent: b + shift}  # the same random effects in either parameterisation
    lj = model.log_joint(THETA, z)
    assert lj.shape == (2, 3, 12)
    for idx in np.ndindex(2, 3):
        np.testing.assert_allclose(lj[idx], naive_theophylline_log_joint(THETA, b[idx]), rtol=1e-12)
    total, grads = model.value_and_grad_fn(THETA, z, model.data)
    np.testing.assert_allclose(total, lj.sum(-1), rtol=1e-12)
    np.testing.assert_allclose(model.log_joint_total_fn(THETA, z, model.data), total, rtol=1e-13)
    np.testing.assert_allclose(model.grad_params_fn(THETA, z, model.data)["lKe"], grads["lKe"], rtol=1e-13)
    for k, h in (("lKe", 1e-6), ("lKa", 1e-6), ("lCl", 1e-6), ("sigma", 1e-6)):
        up, dn = dict(THETA, **{k: THETA[k] + h}), dict(THETA, **{k: THETA[k] - h})
        fd = (model.log_joint(up, z).sum(-1) - model.log_joint(dn, z).sum(-1)) / (2 * h)
        np.testing.assert_allclose(grads[k], fd, rtol=1e-6, atol=1e-6, err_msg=k)
    for j in range(2):
        e = np.eye(2)[j] * 1e-6
        fd = (model.log_joint(dict(THETA, omega=THETA["omega"] + e), z).sum(-1)
              - model.log_joint(dict(THETA, omega=THETA["omega"] - e), z).sum(-1)) / 2e-6
        np.testing.assert_allclose(grads["omega"][..., j], fd, rtol=1e-6, atol=1e-6)


def test_theophylline_model_declaration_start_and_bad_input():
    model = th.theophylline_model()
    assert model.latents["phi"].shape == (12, 2) and model.latents["phi"].unit and model.n_obs == 132
    t0 = model.default_theta()
    assert (float(t0["lKe"]), float(t0["lKa"]), float(t0["lCl"])) == (-2.5, 0.5, -3.0)
    z0 = model.init_latents(np.random.default_rng(0), (2,))["phi"]
    np.testing.assert_array_equal(z0, np.broadcast_to([0.5, -3.0], (2, 12, 2)))  # at (lKa, lCl)
    assert np.all(th.theophylline_model(latent="b").init_latents(np.random.default_rng(0), (2,))["b"] == 0)
    with pytest.raises(ValueError, match=r"latent must be one of \['b', 'phi'\], got 'eta'"):
        th.theophylline_model(latent="eta")
    with pytest.raises(ValueError, match=r"data must have the columns Subject, Dose, Time and conc, missing \['conc'\]"):
        th.theophylline_model({"Subject": [1], "Dose": [1.0], "Time": [0.5]})
    with pytest.raises(ValueError, match=r"Dose'\] must be constant within each subject"):
        th.theophylline_model({"Subject": [1, 1], "Dose": [1.0, 2.0], "Time": [0.5, 1.0], "conc": [1.0, 2.0]})
    with pytest.raises(TypeError, match=r"init must be a dict"):
        th.theophylline_model(init=[1.0])
    with pytest.raises(ValueError, match=r"theta must be finite with omega > 0"):
        tq.theophylline_loglik(dict(THETA, sigma=-1.0))
    with pytest.raises(ValueError, match=r"n_nodes"):
        tq.theophylline_loglik(THETA, n_nodes=0)


# --------------------------------------------------------------------------- the quadrature oracle
def test_theophylline_quadrature_matches_a_brute_force_grid():
    """The adaptive rule against a plain trapezoid grid over the prior's +-7 SD, one subject at a
    time (the integrands are smooth, so the grid converges fast)."""
    d = datasets.load_theophylline()
    om, s = THETA["omega"], THETA["sigma"]
    g1, g2 = np.linspace(-7 * om[0], 7 * om[0], 301), np.linspace(-7 * om[1], 7 * om[1], 301)
    B1, B2 = np.meshgrid(g1, g2, indexing="ij")
    total = 0.0
    for subj in np.unique(d["Subject"]):
        rows = d["Subject"] == subj
        f = naive_fol(d["Dose"][rows][0], d["Time"][rows][:, None, None], THETA["lKe"], THETA["lKa"] + B1,
                      THETA["lCl"] + B2)
        log_int = (stats.norm.logpdf(d["conc"][rows][:, None, None], f, s).sum(0)
                   + stats.norm.logpdf(B1, 0, om[0]) + stats.norm.logpdf(B2, 0, om[1]))
        m = log_int.max()
        total += m + np.log(integrate.trapezoid(integrate.trapezoid(np.exp(log_int - m), g2, axis=1), g1))
    # observed: 1.6e-7 with 30 x 30 nodes, 1.2e-10 with 60 x 60 (the grid agrees with 1201^2 points to 1e-13)
    assert tq.theophylline_loglik(THETA, n_nodes=60) == pytest.approx(total, abs=1e-9)
    assert tq.theophylline_loglik(THETA, n_nodes=30) == pytest.approx(total, abs=1e-6)


def test_recorded_theophylline_reference_is_the_maximum():
    ref = datasets.reference("theophylline")
    assert ref["script"] == "references/theophylline_aghq.py"
    d = th.theophylline_data()
    v = tq._vector(ref["params"])
    value, grad = tq._loglik_and_grad(v, d, 40)
    assert value == pytest.approx(ref["loglik"], abs=1e-9)
    assert np.max(np.abs(grad)) < 1e-5  # the score vanishes at the recorded estimate
    assert tq.theophylline_loglik(ref["params"], n_nodes=80) == pytest.approx(ref["loglik"], abs=1e-7)
    # the estimates reported for the exact MLE: lKe -2.459, lKa 0.481, lCl -3.227, loglik -177.74
    assert np.round(v[:3], 3).tolist() == [-2.459, 0.481, -3.227] and round(ref["loglik"], 2) == -177.74
    # nlme's linearised estimate is close, and below the exact maximum
    nl = ref["peers"]["nlme_ML"]
    at_nlme = tq.theophylline_loglik({"lKe": nl["beta"][0], "lKa": nl["beta"][1], "lCl": nl["beta"][2],
                                      "omega": nl["omega"], "sigma": nl["sigma"]}, n_nodes=40)
    assert ref["loglik"] - 0.05 < at_nlme < ref["loglik"]
    assert nl["loglik"] == pytest.approx(-177.0215, abs=1e-4)


def test_theophylline_script_reproduces_the_recorded_fit():
    ref = datasets.reference("theophylline")
    new = load_script("theophylline_aghq").compute(checks=False)
    np.testing.assert_allclose(tq._vector(new["params"]), tq._vector(ref["params"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(tq._vector(new["se"]), tq._vector(ref["se"]), rtol=1e-4)
    assert new["loglik"] == pytest.approx(ref["loglik"], abs=1e-9)


# --------------------------------------------------------------------------- binomial family
def binomial_data(rng=0):
    rng = np.random.default_rng(rng)
    group = rng.permutation(np.repeat(np.arange(4), [2, 3, 4, 3]))
    n = group.size
    X = np.column_stack([np.ones(n), rng.standard_normal(n)])
    trials = rng.integers(1, 9, n).astype(float)
    offset = 0.2 * rng.standard_normal(n)
    y = rng.binomial(trials.astype(int), expit(X @ [0.3, -0.7] + 0.8 * rng.standard_normal(4)[group] + offset))
    return X, y.astype(float), group, offset, trials


def test_binomial_log_joint_gradient_and_total_match_scipy():
    X, y, group, offset, trials = binomial_data()
    model = ri.random_intercept_glmm(X, y, group, "logit", offset=offset, trials=trials)
    theta = {"beta": np.array([0.2, -0.5]), "sigma": 0.9}
    u = np.random.default_rng(1).standard_normal((3, 2, 4))
    lj = model.log_joint(theta, {"u": u})
    for idx in np.ndindex(3, 2):
        eta = X @ theta["beta"] + offset + u[idx][group]
        want = [stats.binom.logpmf(y[group == g], trials[group == g], expit(eta[group == g])).sum()
                + stats.norm.logpdf(u[idx][g], 0, 0.9) for g in range(4)]
        np.testing.assert_allclose(lj[idx], want, rtol=1e-12)
    total, grads = model.value_and_grad_fn(theta, {"u": u}, model.data)
    np.testing.assert_allclose(total, lj.sum(-1), rtol=1e-12)
    np.testing.assert_allclose(model.log_joint_total_fn(theta, {"u": u}, model.data), total, rtol=1e-12)
    for j in range(2):
        e = np.eye(2)[j] * 1e-6
        fd = (model.log_joint(dict(theta, beta=theta["beta"] + e), {"u": u}).sum(-1)
              - model.log_joint(dict(theta, beta=theta["beta"] - e), {"u": u}).sum(-1)) / 2e-6
        np.testing.assert_allclose(grads["beta"][..., j], fd, rtol=1e-6, atol=1e-7)
    sub = model.subset(np.array([1, 3]))
    np.testing.assert_allclose(sub.log_joint(theta, {"u": u[..., [1, 3]]}), lj[..., [1, 3]], rtol=1e-12)


def test_binomial_quadrature_matches_brute_force_and_the_bernoulli_expansion():
    X, y, group, offset, trials = binomial_data(2)
    theta = {"beta": np.array([0.4, -0.6]), "sigma": 1.1}
    brute = 0.0
    for g in range(4):
        i = group == g
        lin = X[i] @ theta["beta"] + offset[i]

        def f(u, lin=lin, i=i):
            return np.exp(stats.binom.logpmf(y[i], trials[i], expit(lin + u)).sum() + stats.norm.logpdf(u, 0, 1.1))

        brute += np.log(integrate.quad(f, -20, 20, epsabs=0, epsrel=1e-12, limit=200)[0])
    quad = ri.quadrature_loglik(theta, X, y, group, "logit", offset=offset, trials=trials)
    assert quad == pytest.approx(brute, abs=1e-8)
    # the same likelihood on one Bernoulli row per trial, plus the log binomial coefficients
    reps = trials.astype(int)
    yb = np.concatenate([np.r_[np.ones(int(k)), np.zeros(int(n - k))] for k, n in zip(y, trials)])
    bern = ri.quadrature_loglik(theta, np.repeat(X, reps, axis=0), yb, np.repeat(group, reps), "logit",
                                offset=np.repeat(offset, reps))
    const = np.sum(stats.binom.logpmf(y, trials, 0.5) - trials * np.log(0.5))
    assert quad == pytest.approx(bern + const, abs=1e-9)


def test_binomial_bad_input_names_the_argument():
    X, y, group, _, trials = binomial_data()
    with pytest.raises(ValueError, match=r"trials \(binomial counts\) needs family='logit', got trials with family='poisson'"):
        ri.random_intercept_glmm(X, y, group, "poisson", trials=trials)
    with pytest.raises(ValueError, match=r"y must hold integer counts between 0 and trials"):
        ri.random_intercept_glmm(X, trials + 1, group, "logit", trials=trials)
    with pytest.raises(ValueError, match=r"trials must hold positive integers, got 1 other value"):
        ri.fit_quadrature(X, y, group, "logit", trials=np.where(np.arange(y.size) == 0, 0.5, trials))
    with pytest.raises(ValueError, match=r"trials must have shape \(12,\)"):
        ri.quadrature_loglik({"beta": [0, 0], "sigma": 1.0}, X, y, group, "logit", trials=trials[:5])
    with pytest.raises(ValueError, match=r"y must hold 0/1"):  # without trials: Bernoulli, as before
        ri.random_intercept_glmm(X, y, group, "logit")


# --------------------------------------------------------------------------- cbpp and epilepsy
def test_designs_have_glmer_columns():
    c = classic.cbpp_design()
    assert c["names"] == tuple(PEERS["cbpp"]["names"]) and c["X"].shape == (56, 4)
    np.testing.assert_array_equal(c["X"].sum(0), [56, 14, 14, 13])  # table(cbpp$period): 15 14 14 13
    e = classic.epilepsy_design()
    assert e["names"] == tuple(PEERS["epilepsy"]["names"]) and e["X"].shape == (236, 6)
    assert e["X"][:, 2].sum() == 124 and e["X"][:, 4].sum() == 59
    np.testing.assert_allclose(e["X"][:, 5], e["X"][:, 1] * e["X"][:, 2])
    with pytest.raises(ValueError, match=r"data\['trt'\] must be 'placebo' or 'progabide', got \['drug'\]"):
        classic.epilepsy_design({**datasets.load_epilepsy(), "trt": np.full(236, "drug")})
    with pytest.raises(ValueError, match=r"data must have the columns .* missing \['size'\]"):
        classic.cbpp_model({"herd": [1], "incidence": [0], "period": [1]})


@pytest.mark.parametrize("name", ["cbpp", "epilepsy"])
def test_glmm_references_reproduced_by_their_script_and_by_lme4(name):
    ref = datasets.reference(name)
    new = load_script("glmm_aghq").compute(name)
    np.testing.assert_allclose(new["params"]["beta"], ref["params"]["beta"], atol=1e-7)
    assert new["params"]["sigma"] == pytest.approx(ref["params"]["sigma"], abs=1e-7)
    np.testing.assert_allclose(new["se"]["beta"], ref["se"]["beta"], rtol=1e-5)
    assert new["loglik"] == pytest.approx(ref["loglik"], abs=1e-9)
    assert abs(ref["loglik_by_nodes"]["40"] - ref["loglik"]) < 1e-8  # converged in the nodes
    # lme4 (nAGQ = 25) on the same data: observed agreement 1.1e-4 reference SEs at most for
    # the estimates, 4.3e-6 relative for the SEs, 1.2e-8 for the log-likelihood (on our scale)
    lme4 = ref["peers"]["lme4_nAGQ25"]
    se = np.array(ref["se"]["beta"])
    assert np.max(np.abs(np.array(ref["params"]["beta"]) - lme4["beta"]) / se) < 1e-3
    assert abs(ref["params"]["sigma"] - lme4["sigma"]) < 1e-3 * ref["se"]["sigma"]
    np.testing.assert_allclose(se, lme4["se_beta"], rtol=1e-4)
    assert ref["loglik"] == pytest.approx(lme4["loglik_reported"] + lme4["saturated_loglik"], abs=1e-6)
    assert lme4["loglik_laplace"] < ref["loglik"] + 0.1  # Laplace: near, on the same scale


# --------------------------------------------------------------------------- the centred GLMM
def _centred_case(family, rng):
    rng = np.random.default_rng(rng)
    group = rng.permutation(np.repeat(np.arange(5), [3, 2, 4, 3, 2]))
    level = rng.standard_normal(5)  # a group-level covariate
    X = np.column_stack([np.ones(14), level[group], rng.standard_normal(14)])
    trials = rng.integers(1, 6, 14).astype(float) if family == "binomial" else None
    eta = X @ [0.2, 0.5, -0.4] + 0.7 * rng.standard_normal(5)[group]
    y = rng.binomial(trials.astype(int), expit(eta)) if family == "binomial" else rng.poisson(np.exp(eta))
    return X, y.astype(float), group, ("logit" if family == "binomial" else family), trials


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_centred_glmm_is_the_glmm_shifted_with_exact_gradients(family):
    X, y, group, fam, trials = _centred_case(family, 4)
    offset = np.linspace(-0.3, 0.3, 14)
    cen = centred_glmm.centred_glmm(X, y, group, fam, offset=offset, trials=trials)
    plain = ri.random_intercept_glmm(X, y, group, fam, offset=offset, trials=trials)
    assert cen.data["z_cols"].tolist() == [0, 1] and cen.data["w_cols"].tolist() == [2]
    theta = {"beta": np.array([0.1, 0.4, -0.3]), "sigma": 0.8}
    u = np.random.default_rng(5).standard_normal((2, 3, 5))
    Zb = cen.data["Z"] @ theta["beta"][:2]
    np.testing.assert_allclose(Zb, (X[:, :2] @ theta["beta"][:2])[np.unique(group, return_index=True)[1]])
    v = u + Zb  # the same random effects: the densities agree (the shift has Jacobian 1)
    lj = cen.log_joint(theta, {"v": v})
    np.testing.assert_allclose(lj, plain.log_joint(theta, {"u": u}), rtol=1e-12)
    total, grads = cen.value_and_grad_fn(theta, {"v": v}, cen.data)
    np.testing.assert_allclose(total, lj.sum(-1), rtol=1e-12)
    np.testing.assert_allclose(cen.log_joint_total_fn(theta, {"v": v}, cen.data), total, rtol=1e-12)
    for j in range(3):
        e = np.eye(3)[j] * 1e-6
        fd = (cen.log_joint(dict(theta, beta=theta["beta"] + e), {"v": v}).sum(-1)
              - cen.log_joint(dict(theta, beta=theta["beta"] - e), {"v": v}).sum(-1)) / 2e-6
        np.testing.assert_allclose(grads["beta"][..., j], fd, rtol=1e-6, atol=1e-7)
    fd = (cen.log_joint(dict(theta, sigma=0.8 + 1e-6), {"v": v}).sum(-1)
          - cen.log_joint(dict(theta, sigma=0.8 - 1e-6), {"v": v}).sum(-1)) / 2e-6
    np.testing.assert_allclose(grads["sigma"], fd, rtol=1e-6)
    # the latents start at the groups' levels Z beta_Z of the starting beta
    t0 = cen.default_theta()
    np.testing.assert_allclose(cen.init_latents(np.random.default_rng(0), (1,))["v"][0],
                               cen.data["Z"] @ t0["beta"][:2])
    with pytest.raises(ValueError, match=r"init\['beta'\] must have shape \(3,\)"):
        centred_glmm.centred_glmm(X, y, group, fam, trials=trials, init={"beta": [0.0]})


def test_classic_models_latents_and_bad_latent():
    assert classic.epilepsy_model().data["w_cols"].tolist() == [4]  # V4 varies within a patient
    assert classic.cbpp_model().data["z_cols"].tolist() == [0]      # the intercept only
    assert "u" in classic.cbpp_model(latent="u").latents
    with pytest.raises(ValueError, match=r"latent must be one of \['u', 'v'\], got 'w'"):
        classic.epilepsy_model(latent="w")


def test_models_evaluate_the_reference_and_pickle():
    for build in (classic.cbpp_model, classic.epilepsy_model, th.theophylline_model,
                  lambda: th.theophylline_model(latent="b"), lambda: classic.cbpp_model(latent="u")):
        model = build()
        loaded = pickle.loads(pickle.dumps(model))
        theta = model.default_theta()
        z = model.init_latents(np.random.default_rng(0), (2, 3))
        np.testing.assert_array_equal(loaded.log_joint(theta, z), model.log_joint(theta, z))
        assert isinstance(model, mcem.Model)
    c = classic.cbpp_design()
    ref = datasets.reference("cbpp")
    assert ri.quadrature_loglik(ref["params"], c["X"], c["y"], c["group"], "logit", trials=c["trials"]) == \
        pytest.approx(ref["loglik"], abs=1e-9)


def test_reference_rows_measure_distance_in_the_references_standard_errors():
    ref = datasets.reference("cbpp")
    moved = {"beta": np.array(ref["params"]["beta"]) + np.array([0, 2, 0, 0]) * np.array(ref["se"]["beta"]),
             "sigma": ref["params"]["sigma"]}
    rows = datasets.reference_rows("cbpp", moved, ref["se"])
    assert [r[0] for r in rows] == ["(Intercept)", "period2", "period3", "period4", "sigma"]
    np.testing.assert_allclose([r[-1] for r in rows], [0, 2, 0, 0, 0], atol=1e-12)
    text = datasets.reference_table("cbpp", "mcem", rows, -92.0, ref["loglik"])
    assert "largest |dist/SE| 2.000" in text and text.splitlines()[2].startswith("(Intercept)")
    with pytest.raises(ValueError, match="name must be one of"):
        datasets.reference_rows("cbp", moved, ref["se"])

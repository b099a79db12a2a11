"""mcem.inference.bound and mcem.boundplot: the bound L, the log-likelihood and their gap along a
fit, checked against naive references (scipy.stats mixture densities, a Gauss-Hermite
quadrature log-likelihood) and Monte Carlo errors."""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import mcem
from mcem.boundplot import FLOOR, TITLES, plot_bound
from mcem.inference.bound import NoBoundError, bound_path, loglik_path
from mcem.models import glmm_quadrature as gq
from mcem.models.glmm_model import random_intercept_glmm, simulate_random_intercept
from mcem.result import FitResult


def _fit(model, method, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter is small on purpose
        return mcem.fit(model, method=method, rng=0, **kw)


@pytest.fixture(scope="module")
def mix():
    rng = np.random.default_rng(7)
    X = np.vstack([rng.normal([0.0, 0.0], 1.0, (50, 2)), rng.normal([2.5, 1.5], 0.8, (40, 2))])
    model = mcem.models.gaussian_mixture(X, 2, reg_covar=0.0)
    fits = {m: _fit(model, m, max_iter=20, tol=0) for m in ("em", "vbem", "gem")}
    fits["mcem"] = _fit(model, "mcem", max_iter=5)
    return X, model, fits


@pytest.fixture(scope="module")
def glmm():
    """A logit random-intercept GLMM whose posteriors are skewed enough (few binary responses per
    group, a large variance) for the mean-field KL to stand out of the bound's Monte Carlo error."""
    d = simulate_random_intercept(200, 4, [-0.5, 1.0], 2.5, rng=3)
    model = random_intercept_glmm(d["X"], d["y"], d["group"])

    def quad(th):
        return gq.quadrature_loglik(th, d["X"], d["y"], d["group"])

    vb = _fit(model, "vbem", max_iter=12, m=128, m_max=128)
    mc = _fit(model, "mcem", max_iter=3)
    return model, quad, vb, mc


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------- naive references


def _log_components(X, th):
    """log w_k + log N(x_n | mu_k, Sigma_k), (N, K), by scipy.stats."""
    cols = []
    for k in range(len(th["weights"])):
        dens = multivariate_normal(th["means"][k], th["covariances"][k])
        cols.append(np.log(th["weights"][k]) + dens.logpdf(X))
    return np.column_stack(cols)


def _naive(X, th_old, th_new):
    """(log p(x; th_new), L(q, th_new), KL(q || p(z | x; th_new)), Q(th_new; th_old)), q the posterior at th_old."""
    a, b = _log_components(X, th_old), _log_components(X, th_new)
    r = np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)
    marg = np.exp(b).sum(axis=1, keepdims=True)
    log_post = b - np.log(marg)
    kl = np.sum(r * (np.log(r) - log_post))
    q = np.sum(r * b)
    return float(np.log(marg).sum()), q - float(np.sum(r * np.log(r))), float(kl), float(q)


# ----------------------------------------------------------------------------- exact (mixture)


@pytest.mark.parametrize("method", ["em", "vbem", "gem", "mcem"])
def test_mixture_terms_match_a_naive_reference_at_every_row(mix, method):
    X, model, fits = mix
    res = fits[method]
    b = bound_path(res)
    rows = res.history.rows
    assert set(b) == {"iter", "loglik", "elbo", "elbo_mcse", "kl", "q", "h", "delta_q", "delta_h"}
    assert all(len(v) == len(rows) for v in b.values())
    np.testing.assert_array_equal(b["iter"], res.history["iter"])
    np.testing.assert_allclose(b["loglik"], b["elbo"] + b["kl"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(b["loglik"], b["q"] + b["h"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(b["elbo_mcse"], 0.0)
    # row 0: the start, where the bound touches
    ll0 = _naive(X, rows[0]["params"], rows[0]["params"])[0]
    assert b["loglik"][0] == pytest.approx(ll0, abs=1e-9) and b["elbo"][0] == b["loglik"][0] and b["kl"][0] == 0.0
    assert np.isnan(b["delta_q"][0]) and np.isnan(b["delta_h"][0])
    for t in range(1, len(rows)):
        ll, elbo, kl, q = _naive(X, rows[t - 1]["params"], rows[t]["params"])
        assert b["loglik"][t] == pytest.approx(ll, abs=1e-8)
        assert b["elbo"][t] == pytest.approx(elbo, abs=1e-8)
        assert b["kl"][t] == pytest.approx(kl, rel=1e-6, abs=1e-10)
        assert b["q"][t] == pytest.approx(q, abs=1e-8)
        q_base = _naive(X, rows[t - 1]["params"], rows[t - 1]["params"])[3]
        assert b["delta_q"][t] == pytest.approx(q - q_base, abs=1e-8)
    # the two brackets add up to the rise of the log-likelihood; H's is >= 0 for every method (Gibbs)
    np.testing.assert_allclose(b["delta_q"][1:] + b["delta_h"][1:], np.diff(b["loglik"]), rtol=0, atol=1e-9)
    assert np.all(b["delta_h"][1:] >= -1e-9)
    assert np.all(b["kl"] >= -1e-9)
    # the log-likelihood the fit recorded
    np.testing.assert_allclose(b["loglik"], res.history["loglik"], rtol=0, atol=1e-8)


@pytest.mark.parametrize("method", ["em", "vbem", "gem"])
def test_em_brackets_are_both_non_negative(mix, method):
    b = bound_path(mix[2][method])
    assert np.all(b["delta_q"][1:] >= -1e-9) and np.all(b["delta_h"][1:] >= -1e-9)
    assert b["kl"][1] > 1e-6  # the gap is there before it closes


def test_categorical_vbem_history_agrees(mix):
    res = mix[2]["vbem"]
    b = bound_path(res)
    for k in ("elbo", "kl", "q", "h"):
        np.testing.assert_allclose(b[k][1:], res.history[k][1:], rtol=0, atol=1e-8, err_msg=k)


def test_mcem_q_can_fall_but_h_cannot(mix):
    """The exact Q rise of MCEM's step need not be >= 0 (the M step maximises a Monte Carlo Q);
    the H rise is (Gibbs), and the recorded Monte Carlo delta-Q estimates the exact one."""
    res = mix[2]["mcem"]
    b = bound_path(res)
    dq, se = res.history["delta_q"], res.history["mcse"]
    assert np.all(b["delta_h"][1:] >= -1e-9)
    assert np.all(np.abs(dq[1:] - b["delta_q"][1:]) <= 4 * se[1:] + 1e-3)


def test_loglik_path_exact_for_the_mixture(mix):
    X, model, fits = mix
    res = fits["mcem"]
    want = [_naive(X, r["params"], r["params"])[0] for r in res.history.rows]
    np.testing.assert_allclose(loglik_path(res), want, rtol=0, atol=1e-8)
    # the callable is not needed (nor used) when the model is enumerable
    np.testing.assert_allclose(bound_path(res, loglik=lambda th: 0.0)["loglik"], want, rtol=0, atol=1e-8)


# ----------------------------------------------------------------------------- VB-EM on a continuous latent


def test_glmm_vbem_gap_is_loglik_minus_elbo_and_positive(glmm):
    model, quad, vb, _ = glmm
    b = bound_path(vb, loglik=quad)
    rows = vb.history.rows
    assert len(rows) >= 8
    want = np.array([quad(r["params"]) for r in rows])
    np.testing.assert_allclose(b["loglik"], want, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(b["elbo"], vb.history["elbo"])
    np.testing.assert_array_equal(b["elbo_mcse"], vb.history["elbo_mcse"])
    np.testing.assert_allclose(b["kl"], want - vb.history["elbo"], rtol=0, atol=1e-12)
    for k in ("q", "h", "delta_q", "delta_h"):
        assert np.isnan(b[k]).all()
    # past the first steps: the mean gap, against the KL at the estimate from the fit's own
    # precise bound (final draws) and the quadrature; a positive KL, many standard errors out
    late = slice(3, None)
    kl_bar = float(np.mean(b["kl"][late]))
    se = float(np.sqrt(np.sum(b["elbo_mcse"][late] ** 2)) / b["kl"][late].size)
    ref = quad(vb.params) - vb.elbo["value"]
    assert abs(kl_bar - ref) <= 4 * np.hypot(se, vb.elbo["mcse"]) + 0.1
    assert kl_bar - 4 * se > 0 and ref > 0


def test_glmm_without_the_model_uses_the_callable_or_the_history(glmm):
    model, quad, vb, _ = glmm
    loaded = FitResult(dict(vb))  # holds no model
    np.testing.assert_allclose(bound_path(loaded, loglik=quad)["kl"], bound_path(vb, loglik=quad)["kl"])
    b = bound_path(loaded)
    assert np.isnan(b["loglik"]).all() and np.isnan(b["kl"]).all()  # no exact log-likelihood anywhere


def test_exact_loglik_of_the_model_is_used():
    """factor analysis has an exact log-likelihood: the gap of its VB-EM fit uses it."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)) @ rng.normal(size=(4, 4))
    model = mcem.models.factor_analysis(X, 1)
    res = _fit(model, "vbem", max_iter=4)
    b = bound_path(res)
    want = np.array([model.exact_loglik(r["params"]) for r in res.history.rows])
    np.testing.assert_allclose(b["loglik"], want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b["kl"][1:], want[1:] - res.history["elbo"][1:], rtol=0, atol=1e-10)
    # the loglik callable comes first
    np.testing.assert_allclose(bound_path(res, loglik=lambda th: 1.0)["loglik"], 1.0)


def test_loglik_path_from_a_callable_for_mcem(glmm):
    model, quad, _, mc = glmm
    np.testing.assert_allclose(loglik_path(mc, loglik=quad), [quad(r["params"]) for r in mc.history.rows],
                               rtol=0, atol=1e-10)
    assert np.isnan(loglik_path(mc)).all()


def test_the_callable_gets_a_copy(glmm):
    model, quad, vb, _ = glmm
    before = vb.history.params("beta").copy()

    def spoil(th):
        th["beta"][:] = 99.0
        return 0.0

    bound_path(vb, loglik=spoil)
    np.testing.assert_array_equal(vb.history.params("beta"), before)


# ----------------------------------------------------------------------------- errors


def test_bad_arguments(mix, glmm):
    X, model, fits = mix
    gmodel, quad, vb, mc = glmm
    with pytest.raises(TypeError, match="result must be a FitResult"):
        bound_path(3)
    with pytest.raises(ValueError, match="History"):
        bound_path({"history": [1, 2]})
    with pytest.raises(TypeError, match="model must be an mcem.Model.*got str"):
        bound_path(fits["em"], "mixture")
    with pytest.raises(TypeError, match="loglik must be None or a callable.*got float"):
        bound_path(vb, loglik=1.5)
    with pytest.raises(TypeError, match="loglik must return a float.*row 0.*str"):
        bound_path(vb, loglik=lambda th: "high")
    with pytest.raises(NoBoundError, match="elbo") as info:
        bound_path(mc, loglik=quad)
    assert isinstance(info.value, ValueError) and "'mcem'" in str(info.value)
    with pytest.raises(ValueError, match="does not hold its model"):
        bound_path(FitResult(dict(fits["em"])))
    with pytest.raises(ValueError, match=r"result.history\[0\]\['params'\]"):
        bound_path(fits["em"], mcem.models.gaussian_mixture(X, 3, reg_covar=0.0))
    empty = FitResult(dict(fits["em"]), history=mcem.History())
    with pytest.raises(ValueError, match="empty history"):
        bound_path(empty, model)


# ----------------------------------------------------------------------------- plot_bound


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


def _line(ax, label):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)


def test_plot_mixture_three_methods(mix, tmp_path):
    X, model, fits = mix
    fig = plot_bound({k: fits[k] for k in ("em", "vbem", "mcem")})
    assert _titles(fig) == [TITLES[k] for k in ("bound", "kl", "brackets", "ascent")]
    fig.savefig(tmp_path / "mix.png")
    ax_b, ax_kl, ax_br, ax_asc = fig.axes
    for ax in fig.axes:
        assert ax.get_xlabel() == "iteration" and ax.get_ylabel() and ax.get_legend() is not None
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log", "log", "linear"]
    paths = {k: bound_path(fits[k]) for k in ("em", "vbem", "mcem")}
    ref = max(p["loglik"].max() for p in paths.values())
    x, y = _line(ax_b, "em: log p(x; θ_t)")
    want = ref - paths["em"]["loglik"]
    np.testing.assert_allclose(y, np.where(want > FLOOR, want, np.nan))
    x, y = _line(ax_kl, "em: KL(q_(t−1) || p(z | x; θ_t))")
    kl = np.where(paths["em"]["iter"] > 0, paths["em"]["kl"], np.nan)
    np.testing.assert_allclose(y, np.where(kl > FLOOR, kl, np.nan))
    x, y = _line(ax_br, "vbem: H increase (≥ 0 by Gibbs)")
    dh = paths["vbem"]["delta_h"]
    np.testing.assert_allclose(y, np.where(dh > FLOOR, dh, np.nan))
    h = fits["mcem"].history
    x, y = _line(ax_asc, "mcem: estimated Q ascent (Σ delta Q)")
    np.testing.assert_allclose(y, np.r_[0.0, np.cumsum(h["delta_q"][1:])])
    x, y = _line(ax_asc, "mcem: log p(x; θ_t) − log p(x; θ_0)")
    np.testing.assert_allclose(y, h["loglik"] - h["loglik"][0], atol=1e-8)
    x, y = _line(ax_asc, "mcem: exact Q ascent (Σ exact delta Q)")
    np.testing.assert_allclose(y, np.r_[0.0, np.cumsum(paths["mcem"]["delta_q"][1:])])
    band = [c for c in ax_asc.collections if c.get_label() == "mcem: ± 2 sqrt(Σ mcse²)"]
    assert len(band) == 1
    top = band[0].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(np.max(np.r_[0.0, np.cumsum(h["delta_q"][1:])]
                                       + 2 * np.sqrt(np.r_[0.0, np.cumsum(h["mcse"][1:] ** 2)])))


def test_plot_one_exact_fit_and_a_list(mix):
    fits = mix[2]
    assert _titles(plot_bound(fits["em"])) == [TITLES[k] for k in ("bound", "kl", "brackets")]
    fig = plot_bound([fits["em"], fits["em"]])
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert "em: log p(x; θ_t)" in labels and "em (2): log p(x; θ_t)" in labels


def test_plot_glmm_vbem_shows_the_persistent_gap(glmm, tmp_path):
    model, quad, vb, mc = glmm
    fig = plot_bound(vb, loglik=quad)
    assert _titles(fig) == [TITLES["bound"], TITLES["kl"]]
    fig.savefig(tmp_path / "glmm.png")
    ax_kl = fig.axes[1]
    (fin,) = [ln for ln in ax_kl.get_lines() if ln.get_label().startswith("vbem: KL at the estimate")]
    assert np.asarray(fin.get_ydata())[0] == pytest.approx(vb.kl["value"])
    x, y = _line(ax_kl, "vbem: log p − L (L a Monte Carlo estimate)")
    kl = bound_path(vb, loglik=quad)["kl"]
    np.testing.assert_allclose(y[1:], np.where(kl[1:] > 0, kl[1:], np.nan))
    fig = plot_bound({"vbem": vb, "mcem": mc}, loglik=quad)
    assert _titles(fig) == [TITLES["bound"], TITLES["kl"], TITLES["ascent"]]
    x, y = _line(fig.axes[2], "mcem: log p(x; θ_t) − log p(x; θ_0)")
    ll = [quad(r["params"]) for r in mc.history.rows]
    np.testing.assert_allclose(y, np.asarray(ll) - ll[0], atol=1e-10)


def test_plot_mcem_alone_and_into_a_subfigure(glmm):
    model, quad, vb, mc = glmm
    fig = plot_bound(mc)  # no bound, no log-likelihood: only the estimated ascent
    assert _titles(fig) == [TITLES["ascent"]]
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert not any("log p" in lab for lab in labels)
    outer = plt.figure(layout="constrained")
    left, right = outer.subfigures(1, 2)
    assert plot_bound(vb, loglik=quad, fig=right) is right
    assert [ax.get_title() for ax in right.axes] == [TITLES["bound"], TITLES["kl"]]


def test_plot_errors(mix):
    X, model, fits = mix
    rng = np.random.default_rng(0)
    fa = mcem.models.factor_analysis(rng.normal(size=(40, 3)), 1)
    em_fa = _fit(fa, "em", max_iter=3)
    with pytest.raises(ValueError, match="nothing to show.*'elbo'|nothing to show.*VB-EM"):
        plot_bound(em_fa)
    with pytest.raises(ValueError, match="results is empty"):
        plot_bound([])
    with pytest.raises(TypeError, match="results must be a FitResult.*got int"):
        plot_bound(3)
    with pytest.raises(TypeError, match=r"results\['a'\] must be a FitResult.*got str"):
        plot_bound({"a": "em"})
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure.*got str"):
        plot_bound(fits["em"], fig="figure")

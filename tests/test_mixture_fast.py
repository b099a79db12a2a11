"""The Gaussian mixture's fast arithmetic against naive references.

Log densities from the feature matrix (one matrix product) against scipy's multivariate normal
per component, including data far from the origin and a tight component far from the data's
centre, where the rounding guard must choose the direct form; the fused log-sum-exp against
scipy's ``logsumexp``; the sufficient statistics (one matrix product) against loops over
components; the label draws of the Gibbs kernel against exact probabilities by chi-square
tests with fixed seeds, with the picked log weights equal to the log weights at the labels.
"""

import pickle

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import mcem
import mcem.kernels.gibbs as gibbs_module
import mcem.models.mixture_stats as ms
from mcem.kernels import categorical_from_logits
from mcem.models.mixture import gaussian_mixture, precision_cholesky

TYPES = ("full", "tied", "diag", "spherical")


def _params(covariance_type, K, d, rng, scale=1.0):
    """Weights, means and covariances of ``covariance_type`` with K components in d dimensions."""
    w = rng.dirichlet(np.full(K, 3.0))
    means = 3.0 * rng.standard_normal((K, d))
    if covariance_type == "full":
        B = rng.standard_normal((K, d, d)) * 0.4
        cov = scale * (B @ np.swapaxes(B, 1, 2) + 0.5 * np.eye(d))
    elif covariance_type == "tied":
        B = rng.standard_normal((d, d)) * 0.4
        cov = scale * (B @ B.T + 0.5 * np.eye(d))
    elif covariance_type == "diag":
        cov = scale * rng.uniform(0.3, 2.0, (K, d))
    else:
        cov = scale * rng.uniform(0.3, 2.0, K)
    return {"weights": w, "means": means, "covariances": cov}


def _full_cov(theta, covariance_type, k, d):
    cov = theta["covariances"]
    return {"full": lambda: cov[k], "tied": lambda: cov, "diag": lambda: np.diag(cov[k]),
            "spherical": lambda: cov[k] * np.eye(d)}[covariance_type]()


def naive_log_densities(X, theta, covariance_type):
    """log w_k + log N(x_n | mu_k, Sigma_k), (K, N), from scipy per component."""
    K, d = theta["means"].shape
    return np.array([np.log(theta["weights"][k])
                     + stats.multivariate_normal.logpdf(X, theta["means"][k], _full_cov(theta, covariance_type, k, d))
                     for k in range(K)])


def fast_log_densities(X, theta, covariance_type):
    """The log densities as the model computes them: (K, N) and which components went direct."""
    shift = X.mean(axis=0)
    Xc = X - shift
    P, ld = precision_cholesky(theta["covariances"], covariance_type)
    feats = ms._build_features(Xc, covariance_type)
    return ms._log_densities(feats, Xc, theta["weights"], theta["means"] - shift, P, ld, covariance_type)


def looped_stats(R, Xc, covariance_type):
    """Weighted counts, sums and second moments of the centred data, one component at a time."""
    K, (N, d) = R.shape[0], Xc.shape
    S0 = np.array([R[k].sum() for k in range(K)])
    S1 = np.array([(R[k][:, None] * Xc).sum(axis=0) for k in range(K)])
    outer = [np.einsum("n,ni,nj->ij", R[k], Xc, Xc) for k in range(K)]
    S2 = {"full": lambda: np.array(outer), "tied": lambda: sum(outer),
          "diag": lambda: np.array([np.diag(o) for o in outer]),
          "spherical": lambda: np.array([np.trace(o) for o in outer])}[covariance_type]()
    return {"S0": S0, "S1": S1, "S2": S2}


def _close(a, b, rtol):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    err = np.max(np.abs(a - b) / (1.0 + np.abs(b)))
    assert err <= rtol, err


# ----------------------------------------------------------------------------- log densities
@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_densities_match_scipy(covariance_type):
    rng = np.random.default_rng(1)
    d, K = 3, 4
    theta = _params(covariance_type, K, d, rng)
    X = theta["means"][rng.integers(K, size=2000)] + rng.standard_normal((2000, d))
    lp, direct = fast_log_densities(X, theta, covariance_type)
    assert not direct.any()  # reasonable data: every component from the matrix product
    _close(lp, naive_log_densities(X, theta, covariance_type), 1e-12)
    # the model's memoised log densities, seen through the Gibbs kernel's enumeration of states
    model = gaussian_mixture(X, K, covariance_type)
    states = np.broadcast_to(np.arange(K).reshape(K, 1, 1), (K, 2, X.shape[0]))
    got = model.log_joint(theta, {"label": states})
    assert got.shape == (K, 2, X.shape[0])
    _close(got[:, 1], lp, 1e-14)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_far_from_the_origin_the_centred_features_stay_accurate(covariance_type):
    """Data near 1e6 with unit spread: x and the means are exact binary fractions, so x - mu is
    exact and scipy's reference is accurate; the centred feature matrix keeps every digit."""
    rng = np.random.default_rng(2)
    d, K = 2, 3
    theta = _params(covariance_type, K, d, rng)
    theta["means"] = np.round((1e6 + theta["means"]) * 2**20) / 2**20
    X = theta["means"][rng.integers(K, size=1500)] + rng.standard_normal((1500, d))
    X = np.round(X * 2**20) / 2**20
    lp, direct = fast_log_densities(X, theta, covariance_type)
    assert not direct.any()
    _close(lp, naive_log_densities(X, theta, covariance_type), 1e-11)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_a_tight_component_far_from_the_centre_goes_direct(covariance_type, monkeypatch):
    """A component of standard deviation 1e-3 at distance 70 from the data's centre: the
    expanded quadratic would cancel (its error is shown to exceed the tolerance), so the guard
    computes that component directly, and only that one, to full accuracy."""
    rng = np.random.default_rng(3)
    d, K = 2, 3
    X = np.concatenate([rng.standard_normal((3000, d)), 50.0 + 1e-3 * rng.standard_normal((300, d))])
    theta = _params(covariance_type, K, d, rng)
    theta["means"][1] = 50.0
    if covariance_type == "tied":
        theta["covariances"] = 1e-6 * np.eye(d)  # one matrix: every component is tight
    else:
        theta["covariances"][1] = {"full": 1e-6 * np.eye(d), "diag": np.full(d, 1e-6), "spherical": 1e-6}[
            covariance_type]
    ref = naive_log_densities(X, theta, covariance_type)
    lp, direct = fast_log_densities(X, theta, covariance_type)
    assert direct[1] and (direct.all() if covariance_type == "tied" else not direct[[0, 2]].any())
    _close(lp, ref, 1e-10)
    monkeypatch.setattr(ms, "QUAD_TOL", np.inf)  # force the expanded form: it would be wrong
    expanded, direct = fast_log_densities(X, theta, covariance_type)
    assert not direct.any()
    assert np.max(np.abs(expanded[1] - ref[1])) > 1e-7


@pytest.mark.parametrize("covariance_type", TYPES)
def test_without_the_feature_matrix_every_component_is_direct(covariance_type, monkeypatch):
    rng = np.random.default_rng(4)
    theta = _params(covariance_type, 3, 4, rng)
    X = theta["means"][rng.integers(3, size=500)] + rng.standard_normal((500, 4))
    monkeypatch.setattr(ms, "MAX_FEATURES", 5)
    lp, direct = fast_log_densities(X, theta, covariance_type)
    assert direct.all()
    _close(lp, naive_log_densities(X, theta, covariance_type), 1e-12)
    model = gaussian_mixture(X, 3, covariance_type)
    stats_, ll = model.exact_estep_fn(theta, model.data)
    ref = naive_log_densities(X, theta, covariance_type)
    R = np.exp(ref - logsumexp(ref, axis=0))
    np.testing.assert_allclose(ll, logsumexp(ref, axis=0).sum(), rtol=1e-12)
    for key, want in looped_stats(R, model.data["Xc"], covariance_type).items():
        np.testing.assert_allclose(stats_[key], want, rtol=1e-10, atol=1e-10, err_msg=key)


def test_zero_weight_gives_minus_infinity():
    rng = np.random.default_rng(5)
    theta = _params("full", 3, 2, rng)
    theta["weights"] = np.array([0.4, 0.0, 0.6])
    X = rng.standard_normal((200, 2))
    lp, _ = fast_log_densities(X, theta, "full")
    assert np.all(lp[1] == -np.inf) and np.all(np.isfinite(lp[[0, 2]]))
    with np.errstate(divide="ignore"):
        _close(lp[[0, 2]], naive_log_densities(X, theta, "full")[[0, 2]], 1e-12)


# ----------------------------------------------------------------------------- log-sum-exp
def test_responsibilities_and_loglik_match_logsumexp(monkeypatch):
    rng = np.random.default_rng(6)
    K, N = 4, 5003
    lp = rng.normal(-5.0, 30.0, (K, N))
    lp[2, :100] = -np.inf  # a component impossible for some samples
    lp[:, 200] = -800.0  # every exp(lp) underflows: the maximum is subtracted first
    want_lse = logsumexp(lp, axis=0)
    for block_bytes in (ms._BLOCK_BYTES, 1000):  # one block, and many with a remainder
        monkeypatch.setattr(ms, "_BLOCK_BYTES", block_bytes)
        R, ll = ms._normalise(lp)
        np.testing.assert_allclose(R, np.exp(lp - want_lse), rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(ll, want_lse.sum(), rtol=1e-13)
        assert ms._normalise(lp, resp=False) == (None, ll)
    assert np.all(R[2, :100] == 0.0)


def test_a_sample_with_every_component_impossible_gives_no_nan():
    with np.errstate(divide="ignore"):
        lp = np.log(np.array([[0.2, 0.0, 0.5], [0.8, 0.0, 0.5]]))  # sample 1 has no component
    R, ll = ms._normalise(lp)
    assert not np.isnan(R).any()
    np.testing.assert_array_equal(R[:, 1], 0.0)
    np.testing.assert_allclose(R[:, [0, 2]], [[0.2, 0.5], [0.8, 0.5]], rtol=1e-15)
    assert ll == -np.inf


# ----------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("covariance_type", TYPES)
def test_sufficient_statistics_match_loops(covariance_type, monkeypatch):
    rng = np.random.default_rng(7)
    d, K, N = 3, 3, 1200
    theta = _params(covariance_type, K, d, rng)
    X = 5.0 + theta["means"][rng.integers(K, size=N)] + rng.standard_normal((N, d))
    model = gaussian_mixture(X, K, covariance_type)
    Xc = model.data["Xc"]
    ref = naive_log_densities(X, theta, covariance_type)
    R = np.exp(ref - logsumexp(ref, axis=0))
    monkeypatch.setattr(ms, "_BLOCK_BYTES", 20_000)  # several blocks of samples
    got, ll = model.exact_estep_fn(theta, model.data)
    np.testing.assert_allclose(ll, logsumexp(ref, axis=0).sum(), rtol=1e-12)
    for key, want in looped_stats(R, Xc, covariance_type).items():
        assert got[key].shape == want.shape, key
        np.testing.assert_allclose(got[key], want, rtol=1e-11, atol=1e-11 * np.abs(want).max(), err_msg=key)
    # from Gibbs labels: the fraction of draws in each component per sample
    labels = rng.integers(K, size=(5, N))
    frac = np.array([(labels == k).mean(axis=0) for k in range(K)])
    got = model.sufficient_stats_fn({"label": labels}, model.data)
    for key, want in looped_stats(frac, Xc, covariance_type).items():
        np.testing.assert_allclose(got[key], want, rtol=1e-12, atol=1e-12 * np.abs(want).max(), err_msg=key)


def test_the_features_are_not_pickled_and_come_back():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((20_000, 3))
    model = gaussian_mixture(X, 2, "full")
    before = model.exact_estep_fn(model.init, model.data)
    blob = pickle.dumps(model)
    assert len(blob) < X.nbytes * 2.5  # X and Xc, not the (N, 10) feature matrix
    copy = pickle.loads(blob)
    after = copy.exact_estep_fn(copy.init, copy.data)
    assert after[1] == before[1]
    for key in before[0]:
        np.testing.assert_array_equal(after[0][key], before[0][key])


# ----------------------------------------------------------------------------- Gibbs draws
def _chi2_pvalue(labels, probs):
    """Chi-square test of labels (G, n) against the G categorical laws probs (G, K)."""
    G, K = probs.shape
    counts = np.array([np.bincount(labels[g], minlength=K) for g in range(G)])
    expect = probs * labels.shape[1]
    pos = expect > 0
    assert np.all(counts[~pos] == 0)  # a state of weight 0 is never drawn
    stat = np.sum((counts[pos] - expect[pos]) ** 2 / expect[pos])
    return stats.chi2.sf(stat, pos.sum() - G)


@pytest.mark.parametrize("K", [2, 3, 7])
def test_categorical_draws_have_the_exact_probabilities(K, monkeypatch):
    rng = np.random.default_rng(10 + K)
    G, n = 6, 20_000  # six laws, each drawn n times; with leading axes (2, 3)
    probs = rng.dirichlet(np.ones(K), size=G)
    probs[0, K // 2] = 0.0
    probs[0] /= probs[0].sum()
    with np.errstate(divide="ignore"):
        logits = np.log(probs) + rng.normal(0, 300, (G, 1))  # unnormalised, far from 0
    lp = np.broadcast_to(logits.T.reshape(K, 2, 3, 1), (K, 2, 3, n))  # read-only, broadcast
    monkeypatch.setattr(gibbs_module, "_BLOCK", 4096)  # several blocks with a remainder
    labels, picked = categorical_from_logits(lp, np.random.default_rng(0))
    assert labels.shape == picked.shape == (2, 3, n) and labels.dtype == np.int64
    assert _chi2_pvalue(labels.reshape(G, n), probs) > 1e-3
    np.testing.assert_array_equal(picked, np.take_along_axis(lp, labels[None], axis=0)[0])


def test_categorical_with_a_unit_of_weight_zero_everywhere():
    lp = np.array([[0.0, -np.inf], [np.log(3.0), -np.inf]])
    labels, picked = categorical_from_logits(lp, np.random.default_rng(1))
    assert labels[0] in (0, 1) and labels[1] == 1  # as before: the last state
    np.testing.assert_array_equal(picked, lp[labels, [0, 1]])


def test_gibbs_sweep_on_the_mixture_draws_the_exact_conditionals():
    """One Gibbs sweep from a fixed seed: per component, the number of samples drawn into it
    is within a few standard deviations of the sum of the responsibilities; the kernel's
    per-unit log densities are the model's at the drawn labels, exactly."""
    rng = np.random.default_rng(20)
    theta = _params("full", 3, 2, rng)
    X = theta["means"][rng.integers(3, size=30_000)] + 1.5 * rng.standard_normal((30_000, 2))
    model = gaussian_mixture(X, 3, "full")
    ref = naive_log_densities(X, theta, "full")
    R = np.exp(ref - logsumexp(ref, axis=0))
    es = mcem.EStep(model, "gibbs", n_chains=2, burn=0, warm_burn=0, warn=False)
    res = es.run(theta, es.init(theta, 0), 1, np.random.default_rng(21))
    z = res.draws["label"][:, 0]  # (chains, N)
    counts = np.array([(z == k).sum(axis=1) for k in range(3)])  # (K, chains)
    sd = np.sqrt(np.sum(R * (1 - R), axis=1))[:, None]
    assert np.all(np.abs(counts - R.sum(axis=1)[:, None]) < 4.5 * sd)
    lj = model.log_joint(theta, {"label": z})
    np.testing.assert_array_equal(lj, np.take_along_axis(model.log_joint(
        theta, {"label": np.broadcast_to(np.arange(3).reshape(3, 1, 1), (3, 2, X.shape[0]))}), z[None], 0)[0])
    _close(lj, np.take_along_axis(ref, z, 0), 1e-12)


def test_log_joint_gathers_any_labels():
    rng = np.random.default_rng(22)
    K, N = 4, 300
    lp = rng.standard_normal((K, N))
    rows = np.arange(N)
    z = rng.integers(K, size=(3, N))
    np.testing.assert_array_equal(ms._pick(lp, z), lp[z, rows])
    rev = np.broadcast_to(np.arange(K)[::-1].reshape(K, 1, 1), (K, 2, N))  # enumeration, reversed
    np.testing.assert_array_equal(ms._pick(lp, rev), lp[rev, rows])
    one = np.broadcast_to(np.int64(2), (5, N))
    np.testing.assert_array_equal(ms._pick(lp, one, rows), lp[one, rows])
    with pytest.raises(IndexError):
        ms._pick(lp, np.full((1, N), K))


def test_posterior_sampler_draws_the_responsibilities():
    rng = np.random.default_rng(23)
    theta = _params("diag", 3, 2, rng)
    X = theta["means"][rng.integers(3, size=400)] + rng.standard_normal((400, 2))
    model = gaussian_mixture(X, 3, "diag")
    ref = naive_log_densities(X, theta, "diag")
    R = np.exp(ref - logsumexp(ref, axis=0))
    z = model.posterior_sampler_fn(theta, model.data, np.random.default_rng(24), batch=(500,))["label"]
    assert z.shape == (500, 400)
    counts = np.array([(z == k).sum(axis=0) for k in range(3)])  # (K, N)
    expect = 500 * R
    # the totals per component, and a chi-square over the samples whose expected counts are >= 5
    assert np.all(np.abs(counts.sum(axis=1) - expect.sum(axis=1)) < 4.5 * np.sqrt(np.sum(500 * R * (1 - R), axis=1)))
    ok = expect.min(axis=0) >= 5
    assert ok.sum() > 50
    stat = np.sum((counts[:, ok] - expect[:, ok]) ** 2 / expect[:, ok])
    assert stats.chi2.sf(stat, 2 * ok.sum()) > 1e-3


@pytest.mark.parametrize("covariance_type", TYPES)
def test_public_component_log_density_matches_scipy(covariance_type):
    rng = np.random.default_rng(21)
    theta = _params(covariance_type, 3, 2, rng)
    X = rng.standard_normal((50, 2)) * 2.0 + 5.0
    out = mcem.models.mixture.component_log_density(X, theta["weights"], theta["means"], theta["covariances"],
                                                    covariance_type)
    assert out.shape == (50, 3)
    np.testing.assert_allclose(out, naive_log_densities(X, theta, covariance_type).T, rtol=1e-10, atol=1e-10)

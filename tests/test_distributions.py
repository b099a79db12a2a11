"""Tests for mcem.distributions, with scipy.stats as the oracle."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

import mcem.distributions as D
from mcem import constraints

# numpy floating-point warnings (log(0), 0 * inf, ...) must not leak out of log_prob / sample
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

RTOL = 1e-10
BATCHES = [(), (3,), (2, 3)]


# --------------------------------------------------------------------------------------------
# elementwise distributions: parameter makers, value makers and scipy oracles


def _pos(r, b, lo=0.5, hi=3.0):
    return r.uniform(lo, hi, size=b)


ELEMENTWISE = {
    "Normal": (
        lambda r, b: dict(loc=r.normal(size=b), scale=_pos(r, b)),
        lambda r, p, s: 3 * r.normal(size=s),
        lambda x, p: stats.norm.logpdf(x, p["loc"], p["scale"]),
    ),
    "HalfNormal": (
        lambda r, b: dict(scale=_pos(r, b)),
        lambda r, p, s: np.abs(2 * r.normal(size=s)),
        lambda x, p: stats.halfnorm.logpdf(x, scale=p["scale"]),
    ),
    "LogNormal": (
        lambda r, b: dict(loc=r.normal(size=b), scale=_pos(r, b)),
        lambda r, p, s: np.exp(2 * r.normal(size=s)),
        lambda x, p: stats.lognorm.logpdf(x, s=p["scale"], scale=np.exp(p["loc"])),
    ),
    "StudentT": (
        lambda r, b: dict(df=_pos(r, b, 0.5, 10), loc=r.normal(size=b), scale=_pos(r, b)),
        lambda r, p, s: 5 * r.standard_t(2, size=s),
        lambda x, p: stats.t.logpdf(x, p["df"], p["loc"], p["scale"]),
    ),
    "Uniform": (
        lambda r, b: dict(low=-_pos(r, b), high=_pos(r, b)),
        lambda r, p, s: r.uniform(-0.5, 0.5, size=s),
        lambda x, p: stats.uniform.logpdf(x, p["low"], p["high"] - p["low"]),
    ),
    "Gamma": (
        lambda r, b: dict(concentration=_pos(r, b, 0.3, 5), rate=_pos(r, b)),
        lambda r, p, s: r.exponential(2.0, size=s),
        lambda x, p: stats.gamma.logpdf(x, p["concentration"], scale=1 / p["rate"]),
    ),
    "Exponential": (
        lambda r, b: dict(rate=_pos(r, b)),
        lambda r, p, s: r.exponential(2.0, size=s),
        lambda x, p: stats.expon.logpdf(x, scale=1 / p["rate"]),
    ),
    "InverseGamma": (
        lambda r, b: dict(concentration=_pos(r, b, 0.3, 5), rate=_pos(r, b)),
        lambda r, p, s: r.exponential(2.0, size=s),
        lambda x, p: stats.invgamma.logpdf(x, p["concentration"], scale=p["rate"]),
    ),
    "Beta": (
        lambda r, b: dict(concentration1=_pos(r, b, 0.3, 5), concentration0=_pos(r, b, 0.3, 5)),
        lambda r, p, s: r.uniform(0.001, 0.999, size=s),
        lambda x, p: stats.beta.logpdf(x, p["concentration1"], p["concentration0"]),
    ),
    "Poisson": (
        lambda r, b: dict(rate=_pos(r, b, 0.5, 20)),
        lambda r, p, s: r.poisson(8.0, size=s),
        lambda x, p: stats.poisson.logpmf(x, p["rate"]),
    ),
    "Bernoulli": (
        lambda r, b: dict(probs=r.uniform(0.05, 0.95, size=b)),
        lambda r, p, s: r.integers(0, 2, size=s),
        lambda x, p: stats.bernoulli.logpmf(x, p["probs"]),
    ),
    "BernoulliLogits": (
        lambda r, b: dict(logits=3 * r.normal(size=b)),
        lambda r, p, s: r.integers(0, 2, size=s),
        lambda x, p: stats.bernoulli.logpmf(x, expit(p["logits"])),
    ),
    "Binomial": (
        lambda r, b: dict(total_count=12, probs=r.uniform(0.05, 0.95, size=b)),
        lambda r, p, s: r.integers(0, 13, size=s),
        lambda x, p: stats.binom.logpmf(x, p["total_count"], p["probs"]),
    ),
    "BinomialLogits": (
        lambda r, b: dict(total_count=r.integers(0, 30, size=b), logits=2 * r.normal(size=b)),
        lambda r, p, s: r.integers(0, 30, size=s) % (np.asarray(p["total_count"]) + 1),
        lambda x, p: stats.binom.logpmf(x, p["total_count"], expit(p["logits"])),
    ),
}


def _make(name, params, **kw):
    cls = getattr(D, name.replace("Logits", ""))
    return cls(**params, **kw)


@pytest.mark.parametrize("batch", BATCHES, ids=str)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_log_prob_matches_scipy(name, batch):
    make_params, make_values, oracle = ELEMENTWISE[name]
    r = np.random.default_rng(1)
    p = make_params(r, batch)
    d = _make(name, p)
    assert d.batch_shape == batch and d.event_shape == ()
    # values with an extra leading sample axis
    x = make_values(r, p, (4,) + batch)
    lp = d.log_prob(x)
    assert lp.shape == (4,) + batch and lp.dtype == np.float64
    np.testing.assert_allclose(lp, oracle(x, p), rtol=RTOL, atol=1e-12)
    # a single value broadcast against the batch
    x0 = make_values(r, p, ())
    lp0 = np.asarray(d.log_prob(x0))
    assert lp0.shape == batch
    np.testing.assert_allclose(lp0, oracle(x0, p), rtol=RTOL, atol=1e-12)


def test_broadcast_of_mixed_parameter_shapes():
    r = np.random.default_rng(2)
    loc, scale = r.normal(size=(2, 1)), _pos(r, (3,))
    d = D.Normal(loc, scale)
    assert d.batch_shape == (2, 3)
    x = r.normal(size=(5, 1, 1))
    lp = d.log_prob(x)
    assert lp.shape == (5, 2, 3)
    np.testing.assert_allclose(lp, stats.norm.logpdf(x, loc, scale), rtol=RTOL)
    g = D.Gamma(np.array([1.5, 2.5, 3.5]), 2.0)
    np.testing.assert_allclose(
        g.log_prob(0.7), stats.gamma.logpdf(0.7, [1.5, 2.5, 3.5], scale=0.5), rtol=RTOL
    )


# --------------------------------------------------------------------------------------------
# event distributions


def _random_spd(r, batch, d):
    A = r.normal(size=batch + (d, d))
    return A @ np.swapaxes(A, -1, -2) + d * np.eye(d)


@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_mvn_log_prob_matches_scipy_all_parametrisations(batch):
    r = np.random.default_rng(3)
    d = 4
    loc = r.normal(size=batch + (d,))
    cov = _random_spd(r, batch, d)
    x = loc + 2 * r.normal(size=(5,) + batch + (d,))
    expected = np.empty((5,) + batch)
    for idx in np.ndindex(*batch):
        expected[(slice(None),) + idx] = stats.multivariate_normal.logpdf(
            x[(slice(None),) + idx], loc[idx], cov[idx]
        )
    dists = [
        D.MultivariateNormal(loc, cov),
        D.MultivariateNormal(loc, scale_tril=np.linalg.cholesky(cov)),
        D.MultivariateNormal(loc, precision_matrix=np.linalg.inv(cov)),
    ]
    for dist in dists:
        assert dist.batch_shape == batch and dist.event_shape == (d,)
        np.testing.assert_allclose(dist.log_prob(x), expected, rtol=1e-9)
        np.testing.assert_allclose(dist.covariance_matrix, cov, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            dist.variance, np.diagonal(cov, axis1=-2, axis2=-1), rtol=1e-9
        )
        # a single value broadcast against the batch
        assert dist.log_prob(x[0]).shape == batch


def test_mvn_broadcasts_loc_against_shared_matrix_and_vice_versa():
    r = np.random.default_rng(4)
    d = 3
    cov = _random_spd(r, (), d)
    loc = r.normal(size=(2, d))
    x = r.normal(size=(6, 2, d))
    dist = D.MultivariateNormal(loc, cov)
    exp = np.stack([stats.multivariate_normal.logpdf(x[:, i], loc[i], cov) for i in range(2)], 1)
    np.testing.assert_allclose(dist.log_prob(x), exp, rtol=1e-10)
    covs = _random_spd(r, (2,), d)
    dist = D.MultivariateNormal(np.zeros(d), covs)
    assert dist.batch_shape == (2,)
    exp = np.stack(
        [stats.multivariate_normal.logpdf(x[:, i], np.zeros(d), covs[i]) for i in range(2)], 1
    )
    np.testing.assert_allclose(dist.log_prob(x), exp, rtol=1e-10)


@pytest.mark.parametrize("use_logits", [False, True])
@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_categorical_log_prob(batch, use_logits):
    r = np.random.default_rng(5)
    K = 4
    probs = r.dirichlet(np.ones(K), size=batch) if batch else r.dirichlet(np.ones(K))
    dist = (
        D.Categorical(logits=np.log(probs) + 1.7) if use_logits else D.Categorical(probs)
    )
    assert dist.batch_shape == batch and dist.num_states == K
    assert dist.support == constraints.integer_interval(0, K - 1)
    x = r.integers(0, K, size=(5,) + batch)
    expected = np.empty(x.shape)
    for idx in np.ndindex(*x.shape):
        onehot = np.eye(K)[x[idx]]
        expected[idx] = stats.multinomial.logpmf(onehot, 1, probs[idx[1:]])
    np.testing.assert_allclose(dist.log_prob(x), expected, rtol=RTOL, atol=1e-13)
    np.testing.assert_allclose(dist.log_prob(x.astype(float)), expected, rtol=RTOL, atol=1e-13)


@pytest.mark.parametrize("use_logits", [False, True])
@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_multinomial_log_prob(batch, use_logits):
    r = np.random.default_rng(6)
    K, n = 3, 7
    probs = r.dirichlet(np.ones(K), size=batch) if batch else r.dirichlet(np.ones(K))
    dist = D.Multinomial(n, logits=np.log(probs)) if use_logits else D.Multinomial(n, probs)
    assert dist.batch_shape == batch and dist.event_shape == (K,)
    x = r.multinomial(n, np.ones(K) / K, size=(4,) + batch)
    expected = np.empty((4,) + batch)
    for idx in np.ndindex(*expected.shape):
        expected[idx] = stats.multinomial.logpmf(x[idx], n, probs[idx[1:]])
    np.testing.assert_allclose(dist.log_prob(x), expected, rtol=RTOL)


@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_dirichlet_log_prob(batch):
    r = np.random.default_rng(7)
    K = 3
    a = r.uniform(0.5, 4, size=batch + (K,))
    dist = D.Dirichlet(a)
    x = r.dirichlet(np.ones(K), size=(4,) + batch)
    expected = np.empty((4,) + batch)
    for idx in np.ndindex(*expected.shape):
        expected[idx] = stats.dirichlet.logpdf(x[idx], a[idx[1:]])
    np.testing.assert_allclose(dist.log_prob(x), expected, rtol=1e-9)


# --------------------------------------------------------------------------------------------
# out-of-support values give -inf (never NaN, never an exception)

OUT_OF_SUPPORT = [
    (lambda: D.Poisson(3.0), [-1, 0.5, 2.5, np.inf, np.nan]),
    (lambda: D.Gamma(2.0, 1.0), [0.0, -1.0, -np.inf]),
    (lambda: D.Gamma(0.5, 1.0), [0.0, -3.0]),
    (lambda: D.Exponential(2.0), [-0.1, -np.inf]),
    (lambda: D.InverseGamma(2.0, 1.0), [0.0, -1.0]),
    (lambda: D.LogNormal(0.0, 1.0), [0.0, -1.0]),
    (lambda: D.HalfNormal(1.0), [-0.1]),
    (lambda: D.Beta(2.0, 3.0), [0.0, 1.0, -0.5, 1.5]),
    (lambda: D.Beta(0.5, 0.5), [0.0, 1.0, -0.5, 1.5]),
    (lambda: D.Uniform(0.0, 1.0), [-0.1, 1.1]),
    (lambda: D.Bernoulli(0.3), [2, -1, 0.5]),
    (lambda: D.Bernoulli(logits=0.3), [2, -1, 0.5]),
    (lambda: D.Binomial(5, 0.3), [-1, 6, 2.5]),
    (lambda: D.Binomial(5, logits=0.3), [-1, 6, 2.5]),
    (lambda: D.Categorical([0.2, 0.3, 0.5]), [3, -1, 1.5, np.nan]),
    (lambda: D.Categorical(logits=np.zeros((2, 3))), [[3, -1]]),
    (lambda: D.Multinomial(3, [0.5, 0.5]), [[1, 1], [4, -1], [1.5, 1.5]]),
    (lambda: D.Dirichlet([1.0, 2.0, 3.0]), [[0.5, 0.6, -0.1], [0.2, 0.2, 0.2]]),
]


@pytest.mark.parametrize("case", range(len(OUT_OF_SUPPORT)))
def test_out_of_support_is_minus_inf(case):
    make, values = OUT_OF_SUPPORT[case]
    dist = make()
    for v in values:
        lp = np.asarray(dist.log_prob(v))
        assert np.all(lp == -np.inf), (dist, v, lp)
        if dist.event_shape == ():
            assert not dist.support.check(v)


def test_per_element_count_limits_are_minus_inf():
    dist = D.Binomial(np.array([2, 5]), 0.3)
    lp = dist.log_prob([[3, 6], [2, 5], [3, 5]])
    np.testing.assert_array_equal(np.isinf(lp), [[True, True], [False, False], [True, False]])


def test_categorical_out_of_support_in_a_big_batch():
    dist = D.Categorical(logits=np.zeros((2, 3)))
    v = np.array([[0, 3], [-1, 2], [1.5, 1]])
    lp = dist.log_prob(v)
    assert lp.shape == (3, 2)
    np.testing.assert_array_equal(np.isinf(lp), [[False, True], [True, False], [True, False]])
    np.testing.assert_allclose(lp[~np.isinf(lp)], -np.log(3))


def test_logits_are_numerically_stable():
    b = D.Bernoulli(logits=np.array([800.0, -800.0]))
    np.testing.assert_allclose(b.log_prob(0), [-800.0, 0.0])
    np.testing.assert_allclose(b.log_prob(1), [0.0, -800.0])
    bn = D.Binomial(10, logits=np.array([40.0, -40.0]))
    np.testing.assert_allclose(bn.log_prob(10), [0.0, -400.0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bn.log_prob(0), [-400.0, 0.0], rtol=1e-12, atol=1e-14)
    c = D.Categorical(logits=[1000.0, 0.0, -np.inf])
    np.testing.assert_allclose(c.log_prob([0, 1, 2]), [0.0, -1000.0, -np.inf])


def test_degenerate_probabilities():
    assert D.Bernoulli(1.0).log_prob(1) == 0.0
    assert D.Bernoulli(0.0).log_prob(1) == -np.inf
    assert D.Poisson(0.0).log_prob(0) == 0.0
    assert D.Poisson(0.0).log_prob(1) == -np.inf
    assert D.Binomial(4, 0.0).log_prob(0) == 0.0
    assert D.Multinomial(2, [1.0, 0.0]).log_prob([2, 0]) == 0.0
    assert D.Multinomial(2, [1.0, 0.0]).log_prob([1, 1]) == -np.inf


# --------------------------------------------------------------------------------------------
# sampling

B3 = dict(
    Normal=lambda: D.Normal([-1.0, 0.0, 2.0], [0.5, 1.0, 2.0]),
    HalfNormal=lambda: D.HalfNormal([0.5, 1.0, 2.0]),
    LogNormal=lambda: D.LogNormal([0.0, 0.5, -1.0], [0.2, 0.3, 0.5]),
    StudentT=lambda: D.StudentT([9.0, 12.0, 20.0], [0.0, 1.0, -2.0], [1.0, 0.5, 2.0]),
    Uniform=lambda: D.Uniform([-1.0, 0.0, 2.0], [1.0, 0.1, 5.0]),
    Gamma=lambda: D.Gamma([0.5, 2.0, 10.0], [1.0, 3.0, 0.5]),
    Exponential=lambda: D.Exponential([0.5, 1.0, 4.0]),
    InverseGamma=lambda: D.InverseGamma([6.0, 8.0, 10.0], [1.0, 2.0, 3.0]),
    Beta=lambda: D.Beta([0.5, 2.0, 5.0], [0.5, 3.0, 1.0]),
    Poisson=lambda: D.Poisson([0.5, 3.0, 40.0]),
    Bernoulli=lambda: D.Bernoulli([0.1, 0.5, 0.9]),
    BernoulliLogits=lambda: D.Bernoulli(logits=[-2.0, 0.0, 3.0]),
    Binomial=lambda: D.Binomial([3, 10, 50], [0.1, 0.5, 0.7]),
    BinomialLogits=lambda: D.Binomial(10, logits=[-2.0, 0.0, 1.0]),
    Categorical=lambda: D.Categorical([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.1, 0.1, 0.8]]),
    CategoricalLogits=lambda: D.Categorical(logits=[[0.0, 1.0], [2.0, -1.0], [0.0, 0.0]]),
    Multinomial=lambda: D.Multinomial([5, 10, 20], [[0.2, 0.8], [0.5, 0.5], [0.1, 0.9]]),
    Dirichlet=lambda: D.Dirichlet([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5], [5.0, 1.0, 1.0]]),
    MVN=lambda: D.MultivariateNormal(
        [[0.0, 1.0], [2.0, -1.0], [0.0, 0.0]],
        np.array([[[1.0, 0.5], [0.5, 2.0]], [[1.0, 0.0], [0.0, 0.1]], [[3.0, -1.0], [-1.0, 1.0]]]),
    ),
    MVNPrecision=lambda: D.MultivariateNormal(
        [1.0, -1.0], precision_matrix=np.array([[2.0, 0.5], [0.5, 1.0]])
    ),
)

N_DRAWS = 20_000


@pytest.mark.parametrize("name", sorted(B3))
def test_sample_shape_reproducibility_and_moments(name):
    dist = B3[name]()
    shape = dist.batch_shape + dist.event_shape
    x = dist.sample(np.random.default_rng(11), (N_DRAWS,))
    assert x.shape == (N_DRAWS,) + shape
    assert dist.sample(np.random.default_rng(0), (2, 5)).shape == (2, 5) + shape
    assert np.shape(dist.sample(np.random.default_rng(0))) == shape
    np.testing.assert_array_equal(x, dist.sample(np.random.default_rng(11), (N_DRAWS,)))
    if dist.is_discrete:
        assert x.dtype.kind == "i"
    # samples lie in the support and have finite log density
    assert np.all(np.isfinite(dist.log_prob(x)))
    # moments within 5 Monte Carlo standard errors
    sd = x.std(axis=0)
    se_mean = sd / np.sqrt(N_DRAWS)
    assert np.all(np.abs(x.mean(axis=0) - dist.mean) <= 5 * se_mean + 1e-12), (
        x.mean(axis=0), dist.mean)
    sq = (x - x.mean(axis=0)) ** 2
    se_var = sq.std(axis=0) / np.sqrt(N_DRAWS)
    assert np.all(np.abs(sq.mean(axis=0) - dist.variance) <= 5 * se_var + 1e-12), (
        sq.mean(axis=0), dist.variance)


def test_sample_uses_only_the_given_generator():
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    D.Normal(0, 1).sample(np.random.default_rng(1), 10)
    D.Categorical([0.5, 0.5]).sample(np.random.default_rng(1), 10)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_mvn_sample_covariance():
    cov = np.array([[1.0, 0.8], [0.8, 2.0]])
    x = D.MultivariateNormal([0.0, 0.0], cov).sample(np.random.default_rng(3), N_DRAWS)
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.08)


# --------------------------------------------------------------------------------------------
# support, num_states, repr


def test_support_and_num_states():
    assert D.Normal().support == constraints.real
    assert D.Gamma(1.0).support == constraints.positive
    assert D.Beta(1.0, 1.0).support == constraints.unit_interval
    assert D.Bernoulli(0.5).support == constraints.boolean
    assert D.Bernoulli(0.5).num_states == 2
    assert D.Binomial(4, 0.5).support == constraints.integer_interval(0, 4)
    assert D.Binomial(4, 0.5).num_states == 5
    assert D.Binomial([4, 5], 0.5).support == constraints.nonnegative_integer
    assert D.Binomial([4, 5], 0.5).num_states is None
    assert D.Poisson(1.0).num_states is None and D.Poisson(1.0).is_discrete
    assert D.Categorical(np.full((2, 5), 0.2)).num_states == 5
    assert D.Dirichlet([1.0, 1.0]).support == constraints.simplex(2)
    assert not D.Normal().is_discrete and D.Categorical([1.0]).is_discrete


def test_repr_names_parameters():
    assert repr(D.Normal(0.0, 2.0)) == "Normal(loc=0.0, scale=2.0)"
    r = repr(D.Gamma(np.ones((10, 3)), 2.0))
    assert "Gamma(" in r and "concentration=" in r and "batch_shape=(10, 3)" in r
    assert "logits=" in repr(D.Bernoulli(logits=0.0))
    assert "event_shape=(2,)" in repr(D.MultivariateNormal([0.0, 0.0], np.eye(2)))


# --------------------------------------------------------------------------------------------
# validation

BAD = [
    (lambda: D.Normal(0.0, -1.0), "Normal: scale must be positive"),
    (lambda: D.Normal([0.0, np.nan], 1.0), "loc must be finite"),
    (lambda: D.Normal(0.0, [1.0, 0.0, 2.0]), r"scale .*1 bad value\(s\), e.g. 0.0"),
    (lambda: D.Normal(0.0, "abc"), "scale must be convertible"),
    (lambda: D.Normal([0.0, 1.0], [1.0, 1.0, 1.0]), r"Normal: .*loc \(2,\), scale \(3,\)"),
    (lambda: D.Gamma(-1.0), "concentration must be positive"),
    (lambda: D.Gamma(1.0, 0.0), "rate must be positive"),
    (lambda: D.Exponential(-2.0), "rate must be positive"),
    (lambda: D.Beta(1.0, -1.0), "concentration0 must be positive"),
    (lambda: D.StudentT(0.0), "df must be positive"),
    (lambda: D.LogNormal(0.0, -1.0), "scale must be positive"),
    (lambda: D.Poisson(-1.0), "rate must be non-negative"),
    (lambda: D.Uniform(1.0, 0.0), "high must be greater than low"),
    (lambda: D.Bernoulli(1.5), r"probs must be in \[0, 1\]"),
    (lambda: D.Bernoulli(), "exactly one of probs or logits, got neither"),
    (lambda: D.Bernoulli(0.5, 0.0), "exactly one of probs or logits, got both"),
    (lambda: D.Binomial(2.5, 0.5), "total_count must be a non-negative integer"),
    (lambda: D.Binomial(-1, 0.5), "total_count must be a non-negative integer"),
    (lambda: D.Binomial([2, 3], [0.5, 0.5, 0.5]), r"total_count \(2,\), probs \(3,\)"),
    (lambda: D.Categorical([0.5, 0.6]), "probs must be normalised"),
    (lambda: D.Categorical([-0.5, 1.5]), "probs must be non-negative"),
    (lambda: D.Categorical(0.5), "probs must have at least one dimension"),
    (lambda: D.Categorical(logits=[np.nan, 0.0]), "logits must be"),
    (lambda: D.Multinomial(3), "exactly one of probs or logits"),
    (lambda: D.Dirichlet([1.0, 0.0]), "concentration must be positive"),
    (lambda: D.MultivariateNormal([0.0, 0.0]), "exactly one of covariance_matrix"),
    (
        lambda: D.MultivariateNormal([0.0, 0.0], np.eye(2), precision_matrix=np.eye(2)),
        "exactly one of covariance_matrix",
    ),
    (lambda: D.MultivariateNormal([0.0, 0.0], np.eye(3)), r"covariance_matrix must have shape"),
    (
        lambda: D.MultivariateNormal([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]]),
        "covariance_matrix must be symmetric positive definite",
    ),
    (
        lambda: D.MultivariateNormal([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]]),
        "covariance_matrix must be symmetric",
    ),
    (
        lambda: D.MultivariateNormal([0.0, 0.0], scale_tril=[[1.0, 0.5], [0.0, 1.0]]),
        "scale_tril must be lower triangular",
    ),
    (
        lambda: D.MultivariateNormal([0.0, 0.0], scale_tril=[[1.0, 0.0], [0.5, -1.0]]),
        "scale_tril must be with a positive diagonal|scale_tril .*positive diagonal",
    ),
    (
        lambda: D.MultivariateNormal(np.zeros((2, 2)), np.stack([np.eye(2)] * 3)),
        r"MultivariateNormal: .*\(2,\).*\(3,\)",
    ),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_parameters_raise_value_error_naming_the_argument(case):
    make, match = BAD[case]
    with pytest.raises(ValueError, match=match):
        make()


def test_validation_switches(monkeypatch):
    with pytest.raises(ValueError):
        D.Normal(0.0, -1.0)
    with np.errstate(all="ignore"):  # unchecked garbage parameters may warn, not raise
        D.Normal(0.0, -1.0, validate_args=False)  # per-instance off
        monkeypatch.setattr(D, "validate_args", False)
        D.Normal(0.0, -1.0)  # module default off
        D.Gamma(-1.0, 1.0)
    with pytest.raises(ValueError, match="scale"):
        D.Normal(0.0, -1.0, validate_args=True)  # per-instance on wins
    # structural errors are raised regardless
    with pytest.raises(ValueError, match="probs or logits"):
        D.Bernoulli()
    with pytest.raises(ValueError, match="do not broadcast"):
        D.Normal([0.0, 1.0], [1.0, 2.0, 3.0])


# --------------------------------------------------------------------------------------------
# no in-place modification of inputs


def test_inputs_are_not_modified():
    r = np.random.default_rng(8)
    arrays = dict(
        loc=r.normal(size=(2, 3)),
        scale=_pos(r, (2, 3)),
        probs=r.dirichlet(np.ones(3), size=2),
        cov=_random_spd(r, (2,), 3),
        x=r.normal(size=(4, 2, 3)),
        k=r.integers(0, 3, size=(4, 2)),
        conc=_pos(r, (2, 3)),
    )
    copies = {k: v.copy() for k, v in arrays.items()}
    a = arrays
    rng = np.random.default_rng(0)
    for dist, value in [
        (D.Normal(a["loc"], a["scale"]), a["x"]),
        (D.LogNormal(a["loc"], a["scale"]), np.abs(a["x"])),
        (D.StudentT(a["scale"], a["loc"], a["scale"]), a["x"]),
        (D.Gamma(a["conc"], a["scale"]), np.abs(a["x"])),
        (D.Beta(a["conc"], a["scale"]), a["x"]),
        (D.Poisson(a["scale"]), a["x"]),
        (D.Exponential(a["scale"]), a["x"]),
        (D.Bernoulli(a["probs"]), a["x"]),
        (D.Binomial(5, a["probs"]), a["x"]),
        (D.Categorical(a["probs"]), a["k"]),
        (D.Categorical(logits=a["loc"]), a["k"]),
        (D.Multinomial(5, a["probs"]), a["x"]),
        (D.Dirichlet(a["conc"]), a["x"]),
        (D.MultivariateNormal(a["loc"], a["cov"]), a["x"]),
        (D.MultivariateNormal(a["loc"], scale_tril=a["cov"] * 0 + np.eye(3)), a["x"]),
    ]:
        dist.log_prob(value)
        dist.sample(rng, (2,))
        dist.mean, dist.variance
        for k in arrays:
            np.testing.assert_array_equal(arrays[k], copies[k], err_msg=f"{dist!r} changed {k}")


# --------------------------------------------------------------------------------------------
# the support of values: support_mask agrees with log_prob, check_value names the first bad one

GRID = np.array([-2.0, -1.0, -0.5, 0.0, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0,
                 np.inf, -np.inf, np.nan])

SUPPORT_CASES = {
    "Normal": lambda: D.Normal(0.5, 2.0),
    "HalfNormal": lambda: D.HalfNormal(1.5),
    "LogNormal": lambda: D.LogNormal(0.1, 0.8),
    "StudentT": lambda: D.StudentT(3.0, 0.0, 1.0),
    "Uniform": lambda: D.Uniform(-0.5, 1.5),
    "Uniform (array bounds)": lambda: D.Uniform(np.array([-1.0, 0.0, 0.3]), np.array([0.5, 1.0, 4.0])),
    "Gamma": lambda: D.Gamma(2.5, 1.5),
    "Gamma (shape < 1)": lambda: D.Gamma(0.5, 1.0),
    "Exponential": lambda: D.Exponential(0.7),
    "InverseGamma": lambda: D.InverseGamma(2.0, 1.0),
    "Beta": lambda: D.Beta(2.0, 3.0),
    "Bernoulli": lambda: D.Bernoulli(probs=0.3),
    "Bernoulli (logits)": lambda: D.Bernoulli(logits=np.array([-1.0, 0.5, 2.0])),
    "Binomial": lambda: D.Binomial(5, probs=0.4),
    "Binomial (array n)": lambda: D.Binomial(np.array([3, 4, 6]), logits=0.2),
    "Poisson": lambda: D.Poisson(2.0),
    "Categorical": lambda: D.Categorical(probs=[0.2, 0.3, 0.5]),
}


@pytest.mark.parametrize("name", list(SUPPORT_CASES))
def test_support_mask_agrees_with_log_prob(name):
    """The oracle: an element is in the support exactly where log_prob is not -inf (NaN)."""
    d = SUPPORT_CASES[name]()
    x = GRID.reshape((-1,) + (1,) * len(d.batch_shape))
    with np.errstate(all="ignore"):
        lp = np.broadcast_to(d.log_prob(x), np.broadcast_shapes(x.shape, d.batch_shape))
    mask = np.broadcast_to(d.support_mask(x), lp.shape)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(mask, lp > -np.inf)
    assert mask.any() and not mask.all()
    # integer arrays give the same answer as floats
    xi = np.array([-1, 0, 1, 2, 3, 5, 6, 7]).reshape((-1,) + x.shape[1:])
    np.testing.assert_array_equal(
        np.broadcast_to(d.support_mask(xi), np.broadcast_shapes(xi.shape, d.batch_shape)),
        np.broadcast_to(d.support_mask(xi.astype(float)), np.broadcast_shapes(xi.shape, d.batch_shape)),
    )


def test_support_mask_of_events():
    mn = D.Multinomial(3, probs=[0.5, 0.2, 0.3])
    x = np.array([[1, 1, 1], [3, 0, 0], [2, 2, 0], [-1, 2, 2], [1.5, 1.5, 0]])
    np.testing.assert_array_equal(mn.support_mask(x), mn.log_prob(x) > -np.inf)
    np.testing.assert_array_equal(mn.support_mask(x), [True, True, False, False, False])
    di = D.Dirichlet(np.ones(3))
    x = np.array([[0.2, 0.3, 0.5], [0.2, 0.2, 0.2], [-0.1, 0.6, 0.5]])
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_array_equal(di.support_mask(x), di.log_prob(x) > -np.inf)
    mvn = D.MultivariateNormal(np.zeros(2), np.eye(2))
    np.testing.assert_array_equal(mvn.support_mask(np.array([[0.0, 1.0], [np.inf, 0.0]])), [True, False])


def test_check_value_names_the_first_bad_index_and_value():
    d = D.Poisson(2.0)
    d.check_value(np.array([[0, 1], [2, 3]]), "y")  # fine: nothing raised
    y = np.array([[0, 1], [2, -3], [-1, 4]])
    with pytest.raises(ValueError, match=r"^y: Poisson needs non-negative integers; got -3 at index \(1, 1\)$"):
        d.check_value(y, "y")
    with pytest.raises(ValueError, match=r"^v: Normal needs finite values; got nan$"):
        D.Normal(0.0, 1.0).check_value(np.nan, "v")
    with pytest.raises(ValueError, match=r"Uniform needs values in \[low, high\]; got 2.0 at index \(1,\) \(low 0.0, high 1.0 there\)"):
        D.Uniform(np.zeros(2), 1.0).check_value(np.array([0.5, 2.0]), "y")
    with pytest.raises(TypeError, match=r"^y: Gamma needs real numbers \(positive values\); got complex numbers$"):
        D.Gamma(2.0, 1.0).check_value(np.array([1.0 + 1j]), "y")
    with pytest.raises(TypeError, match=r"Bernoulli needs real numbers \(values in \{0, 1\}\); got an array of dtype object"):
        D.Bernoulli(probs=0.5).check_value(np.array([1, None]), "y")
    with pytest.raises(ValueError, match=r"MultivariateNormal needs values whose last axes have the event shape \(2,\), got shape \(3,\)"):
        D.MultivariateNormal(np.zeros(2), np.eye(2)).check_value(np.zeros(3), "y")
    # the value is not modified
    y0 = y.copy()
    with pytest.raises(ValueError):
        d.check_value(y, "y")
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("d, value, match", [
    (lambda: D.Dirichlet(np.ones(3)), np.ones(2), r"Dirichlet\.log_prob: value must have 3 entries on the last axis, got shape \(2,\)"),
    (lambda: D.MultivariateNormal(np.zeros(2), np.eye(2)), np.ones(3), r"MultivariateNormal\.log_prob: value must have 2 entries"),
    (lambda: D.Multinomial(3, np.ones(3) / 3), np.ones((4, 2)), r"Multinomial\.log_prob: value must have 3 counts on the last axis, got shape \(4, 2\)"),
])
def test_event_values_of_the_wrong_size_are_refused(d, value, match):
    with pytest.raises(ValueError, match=match):
        d().log_prob(value)

"""TruncatedNormal, NegativeBinomial, Poisson(log_rate) and the logits forms, on numpy, with
scipy.stats (or a closed form / a quadrature) as the oracle."""

import math

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import gammaln, log_ndtr

import mcem.distributions as D
from mcem import constraints

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

RTOL = 1e-10
BATCHES = [(), (3,), (2, 3)]
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# --------------------------------------------------------------------------------------------
# TruncatedNormal


def _truncnorm_params(r, batch):
    loc, scale = r.normal(size=batch), r.uniform(0.5, 2.0, size=batch)
    low = loc + scale * r.uniform(-2.5, 1.0, size=batch)
    high = low + scale * r.uniform(0.2, 3.0, size=batch)
    return loc, scale, low, high


def _scipy_truncnorm(loc, scale, low, high):
    return stats.truncnorm((low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale)


@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_truncated_normal_log_prob_matches_scipy(batch):
    r = np.random.default_rng(20)
    loc, scale, low, high = _truncnorm_params(r, batch)
    d = D.TruncatedNormal(loc, scale, low, high)
    assert d.batch_shape == batch and d.event_shape == ()
    x = low + (high - low) * r.uniform(size=(5,) + batch)
    np.testing.assert_allclose(
        d.log_prob(x), _scipy_truncnorm(loc, scale, low, high).logpdf(x), rtol=RTOL
    )


@pytest.mark.parametrize("low, high", [(-np.inf, 0.5), (-1.0, np.inf), (-np.inf, np.inf),
                                       (2.5, 6.0), (-7.0, -4.0), (4.0, np.inf)])
def test_truncated_normal_infinite_and_tail_bounds_match_scipy(low, high):
    loc, scale = 0.3, 1.2
    x = np.linspace(max(low, -10.0), min(high, 10.0), 7)[1:-1]
    d = D.TruncatedNormal(loc, scale, low, high)
    np.testing.assert_allclose(
        d.log_prob(x), _scipy_truncnorm(loc, scale, np.float64(low), np.float64(high)).logpdf(x),
        rtol=RTOL,
    )
    if low == -np.inf and high == np.inf:
        np.testing.assert_allclose(d.log_prob(x), stats.norm.logpdf(x, loc, scale), rtol=RTOL)


def _log_mass_by_quadrature(a, b):
    """log(Phi(b) - Phi(a)) for 0 < a < b: phi(a) times the integral of exp(-(a s + s^2/2))."""
    val, _ = integrate.quad(lambda s: math.exp(-(a * s + 0.5 * s * s)), 0.0, b - a,
                            epsabs=0, epsrel=1e-13)
    return -0.5 * a * a - HALF_LOG_2PI + math.log(val)


@pytest.mark.parametrize("a, b", [(30.0, 31.0), (40.0, np.inf), (1.0, 1.0 + 1e-4), (9.0, 9.5)])
def test_truncated_normal_stays_accurate_far_in_the_tail_and_for_narrow_bounds(a, b):
    d = D.TruncatedNormal(0.0, 1.0, a, b)
    x = a + 0.25 * (min(b, a + 1.0) - a)
    log_mass = _log_mass_by_quadrature(a, min(b, a + 60.0))
    expected = -0.5 * x * x - HALF_LOG_2PI - log_mass
    np.testing.assert_allclose(d.log_prob(x), expected, rtol=1e-11)
    # the same interval mirrored into the lower tail
    m = D.TruncatedNormal(0.0, 1.0, -b, -a)
    np.testing.assert_allclose(m.log_prob(-x), expected, rtol=1e-11)


def test_truncated_normal_mean_variance_and_samples():
    r = np.random.default_rng(21)
    loc = np.array([0.0, 1.0, -2.0, 0.5])
    scale = np.array([1.0, 2.0, 0.5, 1.5])
    low = np.array([-1.0, -np.inf, -1.0, 4.0])
    high = np.array([2.0, 0.0, np.inf, 6.0])
    d = D.TruncatedNormal(loc, scale, low, high)
    ref = _scipy_truncnorm(loc, scale, low, high)
    m, v = ref.stats(moments="mv")
    np.testing.assert_allclose(d.mean, m, rtol=1e-9)
    np.testing.assert_allclose(d.variance, v, rtol=1e-8)
    x = d.sample(r, (20_000,))
    assert x.shape == (20_000, 4) and np.all((x >= low) & (x <= high))
    np.testing.assert_array_equal(x, d.sample(np.random.default_rng(21), (20_000,)))
    for j in range(4):  # the draws follow scipy's CDF
        cdf = _scipy_truncnorm(loc[j], scale[j], low[j], high[j]).cdf
        assert stats.kstest(x[:, j], cdf).pvalue > 1e-3
    se = np.sqrt(v / 20_000)
    assert np.all(np.abs(x.mean(axis=0) - m) <= 5 * se)


def test_truncated_normal_samples_far_in_the_upper_tail():
    d = D.TruncatedNormal(0.0, 1.0, 40.0, 41.0)
    x = d.sample(np.random.default_rng(22), (5000,))
    assert np.all((x >= 40.0) & (x <= 41.0))
    # the excess over 40 is close to Exponential(40): mean ~ 1/40
    assert abs(np.mean(x - 40.0) - d.mean + 40.0) < 5 * np.std(x) / np.sqrt(5000)
    assert abs(d.mean - 40.0 - 1 / 40) < 1e-3


def test_truncated_normal_support():
    assert D.TruncatedNormal(0.0, 1.0, -1.0, 2.0).support == constraints.interval(-1.0, 2.0)
    assert D.TruncatedNormal(0.0, 1.0, 0.0).support == constraints.positive
    assert D.TruncatedNormal(0.0, 1.0).support == constraints.real
    half = D.TruncatedNormal(0.0, 1.0, 2.0).support  # no bijection onto (2, inf) here
    assert half.elementwise and not half.has_bijection and not half.is_discrete
    d = D.TruncatedNormal(np.zeros(3), 1.0, np.array([-1.0, 0.0, 1.0]), 3.0)
    x = np.array([[-1.5, 0.5, 1.5], [0.0, -0.1, 3.0], [np.inf, 1.0, np.nan]])
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(d.support_mask(x), d.log_prob(x) > -np.inf)
    np.testing.assert_array_equal(
        d.support_mask(x), [[False, True, True], [True, False, True], [False, True, False]]
    )
    with pytest.raises(ValueError, match=r"^y: TruncatedNormal needs finite values in \[low, high\]; "
                       r"got -1.5 at index \(0,\) \(low -1.0, high 3.0 there\)$"):
        d.check_value(np.array([-1.5, 0.5, 1.5]), "y")
    with pytest.raises(ValueError, match=r"TruncatedNormal needs finite values in \[0.0, inf\]; got -2.0"):
        D.TruncatedNormal(0.0, 1.0, 0.0).check_value(-2.0, "y")
    # bounds move with the parameters: when a model is built, data are checked for finiteness
    d.check_value(np.array([-9.0, 0.5, 1.5]), "y", for_any_params=True)
    with pytest.raises(ValueError, match="needs finite values"):
        d.check_value(np.array([np.inf, 0.5, 1.5]), "y", for_any_params=True)


# --------------------------------------------------------------------------------------------
# NegativeBinomial


def _scipy_nb(r, mu):
    return stats.nbinom(r, r / (r + mu))


@pytest.mark.parametrize("use_log", [False, True])
@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_negative_binomial_log_prob_matches_scipy(batch, use_log):
    r = np.random.default_rng(23)
    conc, mu = r.uniform(0.3, 5.0, size=batch), r.uniform(0.2, 25.0, size=batch)
    d = D.NegativeBinomial(conc, log_mean=np.log(mu)) if use_log else D.NegativeBinomial(conc, mu)
    assert d.batch_shape == batch and d.is_discrete and d.num_states is None
    assert d.support == constraints.nonnegative_integer
    k = r.integers(0, 40, size=(6,) + batch)
    np.testing.assert_allclose(d.log_prob(k), _scipy_nb(conc, mu).logpmf(k), rtol=RTOL)
    np.testing.assert_allclose(d.log_prob(k.astype(float)), _scipy_nb(conc, mu).logpmf(k),
                               rtol=RTOL)
    np.testing.assert_allclose(d.mean, np.broadcast_to(mu, batch), rtol=1e-12)
    np.testing.assert_allclose(d.variance, np.broadcast_to(_scipy_nb(conc, mu).var(), batch),
                               rtol=1e-12)


def test_negative_binomial_log_mean_is_stable_at_extremes():
    r = 2.5
    # log_mean -800: mean exp(-800) underflows, but P(k = 1) = exp(log_mean) to first order
    d = D.NegativeBinomial(r, log_mean=-800.0)
    np.testing.assert_allclose(d.log_prob(np.array([0, 1, 3])), [0.0, -800.0,
                               gammaln(3 + r) - gammaln(r) - gammaln(4) + 3 * (-800 - math.log(r))],
                               rtol=1e-12)
    assert D.NegativeBinomial(r, 0.0).log_prob(1) == -np.inf  # the point mass at 0
    assert D.NegativeBinomial(r, 0.0).log_prob(0) == 0.0
    # log_mean 800: mean overflows; log P(k) = lgamma terms - r (log_mean - log r)
    k = np.array([0, 5, 50])
    expected = gammaln(k + r) - gammaln(r) - gammaln(k + 1) - r * (800.0 - math.log(r))
    np.testing.assert_allclose(D.NegativeBinomial(r, log_mean=800.0).log_prob(k), expected,
                               rtol=1e-12)


def test_negative_binomial_samples():
    d = D.NegativeBinomial(np.array([0.5, 3.0, 50.0]), log_mean=np.log([2.0, 10.0, 4.0]))
    x = d.sample(np.random.default_rng(24), (40_000,))
    assert x.shape == (40_000, 3) and x.dtype.kind == "i" and np.all(x >= 0)
    np.testing.assert_array_equal(x, d.sample(np.random.default_rng(24), (40_000,)))
    se_mean = np.sqrt(d.variance / 40_000)
    assert np.all(np.abs(x.mean(axis=0) - d.mean) <= 5 * se_mean)
    # frequencies of 0, 1, 2 against the pmf (5 binomial standard errors)
    for k in range(3):
        p = np.exp(d.log_prob(k))
        assert np.all(np.abs((x == k).mean(axis=0) - p) <= 5 * np.sqrt(p * (1 - p) / 40_000) + 1e-4)


def test_negative_binomial_check_value_and_repr():
    d = D.NegativeBinomial(2.0, 3.0)
    d.check_value(np.array([0, 4, 100]), "y")
    with pytest.raises(ValueError, match=r"^y: NegativeBinomial needs non-negative integers; got 1.5 at index \(1,\)$"):
        d.check_value(np.array([0, 1.5]), "y")
    assert repr(d) == "NegativeBinomial(concentration=2.0, mean=3.0)"
    assert repr(D.NegativeBinomial(2.0, log_mean=0.5)) == "NegativeBinomial(concentration=2.0, log_mean=0.5)"
    assert np.all(d.log_prob(np.array([-1, 0.5, np.inf])) == -np.inf)


# --------------------------------------------------------------------------------------------
# Poisson(log_rate), and logits far out


def test_poisson_log_rate_matches_scipy_and_rate():
    r = np.random.default_rng(25)
    log_rate = r.normal(1.0, 1.5, size=(2, 3))
    k = r.poisson(4.0, size=(5, 2, 3))
    d = D.Poisson(log_rate=log_rate)
    assert d.batch_shape == (2, 3) and d.rate is None
    np.testing.assert_allclose(d.log_prob(k), stats.poisson.logpmf(k, np.exp(log_rate)), rtol=RTOL)
    np.testing.assert_allclose(d.log_prob(k), D.Poisson(np.exp(log_rate)).log_prob(k), rtol=RTOL)
    np.testing.assert_allclose(d.mean, np.exp(log_rate), rtol=1e-15)
    np.testing.assert_allclose(d.variance, np.exp(log_rate), rtol=1e-15)
    x = D.Poisson(log_rate=np.log([0.5, 30.0])).sample(np.random.default_rng(26), (20_000,))
    assert np.all(np.abs(x.mean(axis=0) - [0.5, 30.0]) <= 5 * np.sqrt(np.array([0.5, 30.0]) / 20_000))
    # far out: no overflow of exp(log_rate) into the log of an exponential
    np.testing.assert_allclose(D.Poisson(log_rate=-800.0).log_prob(3), 3 * -800.0 - math.log(6),
                               rtol=1e-14)
    assert D.Poisson(log_rate=-800.0).log_prob(0) == 0.0
    assert D.Poisson(2.0).log_prob(1) == pytest.approx(math.log(2.0) - 2.0, rel=1e-15)  # positional
    assert repr(D.Poisson(log_rate=0.5)) == "Poisson(log_rate=0.5)"


def test_binomial_and_bernoulli_logits_far_out():
    logits = np.array([800.0, -800.0, 40.0, -40.0])
    tail = math.log1p(math.exp(-40.0))  # -log sigmoid(40)
    bn = D.Binomial(10, logits=logits)
    # (the binomial coefficient's log-gammas, ~15, bound the absolute error near 0)
    np.testing.assert_allclose(bn.log_prob(0), [-8000.0, 0.0, -400.0 - 10 * tail, -10 * tail],
                               rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(bn.log_prob(4), gammaln(11) - gammaln(5) - gammaln(7) + np.array(
        [-6 * 800.0, -4 * 800.0, -6 * 40.0 - 10 * tail, -4 * 40.0 - 10 * tail]), rtol=1e-14)
    b = D.Bernoulli(logits=logits)
    np.testing.assert_allclose(b.log_prob(1), [0.0, -800.0, -tail, -40.0 - tail], rtol=1e-14,
                               atol=1e-17)
    np.testing.assert_allclose(b.log_prob(0), [-800.0, 0.0, -40.0 - tail, -tail], rtol=1e-14,
                               atol=1e-17)


# --------------------------------------------------------------------------------------------
# MultivariateNormal(scale_tril=...)


def test_mvn_scale_tril_matches_scipy_and_the_covariance():
    r = np.random.default_rng(27)
    L = np.tril(r.normal(size=(4, 4)), -1) + np.diag(r.uniform(0.5, 2.0, size=4))
    loc = r.normal(size=4)
    x = r.normal(size=(6, 4))
    d = D.MultivariateNormal(loc, scale_tril=L)
    np.testing.assert_allclose(d.log_prob(x), stats.multivariate_normal(loc, L @ L.T).logpdf(x),
                               rtol=1e-11)
    np.testing.assert_allclose(d.covariance_matrix, L @ L.T, rtol=1e-14)
    np.testing.assert_array_equal(d.scale_tril, L)
    y = d.sample(np.random.default_rng(28), (20_000,))
    np.testing.assert_allclose(np.cov(y.T), L @ L.T, atol=0.12)


# --------------------------------------------------------------------------------------------
# bad input

BAD = [
    (lambda: D.TruncatedNormal(0.0, 1.0, 2.0, 1.0), "TruncatedNormal: high must be greater than low, got 1.0"),
    (lambda: D.TruncatedNormal(0.0, 1.0, np.array([0.0, 1.0]), 1.0), r"high must be greater than low, got array of shape \(2,\) with 1 bad"),
    (lambda: D.TruncatedNormal(0.0, -1.0), "TruncatedNormal: scale must be positive and finite, got -1.0"),
    (lambda: D.TruncatedNormal(np.nan, 1.0), "TruncatedNormal: loc must be finite"),
    (lambda: D.TruncatedNormal(0.0, 1.0, np.nan), r"TruncatedNormal: low must be finite or -inf \(not NaN or \+inf\), got nan"),
    (lambda: D.TruncatedNormal(0.0, 1.0, np.inf), r"TruncatedNormal: low must be finite or -inf"),
    (lambda: D.TruncatedNormal(0.0, 1.0, 0.0, -np.inf), r"TruncatedNormal: high must be finite or \+inf"),
    (lambda: D.TruncatedNormal(0.0, 1.0, "a"), "TruncatedNormal: low must be convertible to a float array"),
    (lambda: D.TruncatedNormal(np.zeros(2), 1.0, np.zeros(3)), r"TruncatedNormal: parameter shapes do not broadcast: loc \(2,\), scale \(\), low \(3,\)"),
    (lambda: D.NegativeBinomial(0.0, 1.0), "NegativeBinomial: concentration must be positive and finite, got 0.0"),
    (lambda: D.NegativeBinomial(-1.0, log_mean=1.0), "NegativeBinomial: concentration must be positive"),
    (lambda: D.NegativeBinomial(2.0, -1.0), "NegativeBinomial: mean must be non-negative and finite, got -1.0"),
    (lambda: D.NegativeBinomial(2.0, log_mean=np.nan), "NegativeBinomial: log_mean must be finite, got nan"),
    (lambda: D.NegativeBinomial(2.0), "NegativeBinomial: pass exactly one of mean or log_mean, got neither"),
    (lambda: D.NegativeBinomial(2.0, 1.0, log_mean=0.0), "NegativeBinomial: pass exactly one of mean or log_mean, got both"),
    (lambda: D.NegativeBinomial([1.0, 2.0], [1.0, 2.0, 3.0]), r"NegativeBinomial: parameter shapes do not broadcast: concentration \(2,\), mean \(3,\)"),
    (lambda: D.Poisson(), "Poisson: pass exactly one of rate or log_rate, got neither"),
    (lambda: D.Poisson(1.0, log_rate=0.0), "Poisson: pass exactly one of rate or log_rate, got both"),
    (lambda: D.Poisson(log_rate=np.inf), "Poisson: log_rate must be finite, got inf"),
    (lambda: D.Poisson(log_rate=[0.0, np.nan]), r"Poisson: log_rate must be finite, got array of shape \(2,\) with 1 bad value\(s\), e.g. nan"),
    (lambda: D.Binomial(3, logits=np.inf), "Binomial: logits must be finite, got inf"),
    (lambda: D.Bernoulli(logits=np.nan), "Bernoulli: logits must be not NaN, got nan"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_parameters_raise_value_error_naming_the_distribution_and_argument(case):
    make, match = BAD[case]
    with pytest.raises(ValueError, match=match):
        make()

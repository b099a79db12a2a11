"""The model language never gives a silently wrong answer.

* Units declared independent (``unit=True`` with ``unit_index``) but coupled by an observation
  are detected when the model is built: the model falls back to joint updates with one warning
  that names the observation and a dependent pair of units, and the E step then samples the
  exact posterior (a linear Gaussian model: precision I + A^T A, checked within 4 MCSE plus a
  small floor, fixed seeds).
* Observed data outside the support of their distribution are refused when the model is built,
  naming the site, the first bad index and the value.
"""

import re
import warnings

import numpy as np
import pytest
from _mc import assert_mean

import mcem
from mcem import constraints as C
from mcem import dist
from mcem.estep import EStep

COUPLED = r"observe 'y': the log-density terms filed under unit (\d+) of the unit latent 'u' change when unit (\d+) of 'u' changes"


# ----------------------------------------------------------------------------- models
@mcem.model
def chain(m, y, idx, G):
    """u_g ~ N(0, 1); y_g ~ N(u_g + u_(g+1), 1), filed under unit g only: units are coupled."""
    mu = m.param("mu", init=0.0)
    u = m.latent("u", dist.Normal(0.0, 1.0), shape=G, unit=True)
    m.observe("y", dist.Normal(mu + u[..., idx] + u[..., idx + 1], 1.0), y, unit_index=idx)


@mcem.model
def one_link(m, y, idx, G, j):
    """Observation 0 (filed under unit 0) also involves unit j; everything else is per unit."""
    s = m.param("s", constraint=C.positive, init=1.0)
    u = m.latent("u", dist.Normal(0.0, s), shape=G, unit=True)
    loc = u[..., idx] + np.where(np.arange(idx.size) == 0, 1.0, 0.0) * u[..., [j]]
    m.observe("y", dist.Normal(loc, 1.0), y, unit_index=idx)


@mcem.model
def hidden_at_init(m, y, idx, G):
    """The coupling has coefficient b, which starts at 0: invisible at the initial theta."""
    b = m.param("b", init=0.0)
    u = m.latent("u", dist.Normal(0.0, 1.0), shape=G, unit=True)
    m.observe("y", dist.Normal(u[..., idx] + b * u[..., (idx + 1) % G], 1.0), y, unit_index=idx)


@mcem.model
def labels_chain(m, x, idx, G):
    """Discrete labels: x_g ~ N(mu[z_g] + mu[z_(g+1)], 1) filed under unit g."""
    w = m.param("w", constraint=C.simplex(2))
    mu = m.param("mu", shape=2, init=[-1.0, 1.0])
    z = m.latent("z", dist.Categorical(probs=w), shape=G, unit=True)
    m.observe("x", dist.Normal(mu[z[..., idx]] + mu[z[..., (idx + 1) % G]], 1.0), x, unit_index=idx)


@mcem.model
def labels_ok(m, x, idx, G):
    w = m.param("w", constraint=C.simplex(2))
    mu = m.param("mu", shape=2, init=[-1.0, 1.0])
    z = m.latent("z", dist.Categorical(probs=w), shape=G, unit=True)
    m.observe("x", dist.Normal(mu[z[..., idx]], 1.0), x, unit_index=idx)


@mcem.model
def crossed_coupled(m, y, female, male, nf, nm):
    """Crossed effects where the female effect of the next female leaks into each row."""
    b = m.param("b", init=0.0)
    f = m.latent("f", dist.Normal(0.0, 1.0), shape=nf, unit=True)
    g = m.latent("g", dist.Normal(0.0, 1.0), shape=nm, unit=True)
    eta = b + f[..., female] + 0.5 * f[..., (female + 1) % nf] + g[..., male]
    m.observe("y", dist.Normal(eta, 1.0), y, unit_index={"f": female, "g": male})


@mcem.model
def coin(m, y):
    """Bernoulli observations (for the bad-input matrix)."""
    p = m.param("p", constraint=C.unit_interval, init=0.5)
    m.latent("u", dist.Normal(0.0, 1.0), shape=1)
    m.observe("y", dist.Bernoulli(probs=p), y)


def chain_data(G=6, seed=0):
    rng = np.random.default_rng(seed)
    idx = np.arange(G - 1)
    y = 2.0 * rng.normal(size=G - 1)
    return y, idx


def build_warned(builder, **data):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        model = builder(**data)
    found = [w for w in rec if issubclass(w.category, UserWarning) and "not conditionally independent" in str(w.message)]
    return model, found


# ----------------------------------------------------------------------------- item 1
def test_coupled_units_fall_back_to_the_exact_joint_posterior():
    G = 6
    y, idx = chain_data(G)
    model, found = build_warned(chain, y=y, idx=idx, G=G)
    assert len(found) == 1, [str(w.message) for w in found]
    msg = str(found[0].message)
    m = re.match(COUPLED, msg)
    assert m, msg
    j, i = int(m.group(1)), int(m.group(2))
    assert i == j + 1  # y_j (filed under unit j) involves u_(j+1): a truly dependent pair
    # the per-unit path is not used, nor conditionals, nor blocks of units
    assert not model.per_unit
    assert "u" not in model.conditionals
    assert model.subset_fn is None

    # the exact posterior of u given y: the model is linear Gaussian, y = A u + noise
    A = np.zeros((G - 1, G))
    A[idx, idx] = 1.0
    A[idx, idx + 1] = 1.0
    prec = np.eye(G) + A.T @ A
    mean = np.linalg.solve(prec, A.T @ y)
    theta = {"mu": np.array(0.0)}
    es = EStep(model, n_chains=4, burn=500)
    res = es.run(theta, es.init(theta, 0), 3000, 1)
    u = res.draws["u"]
    assert u.shape == (4, 3000, G)
    assert_mean(u, mean, floor=0.01)
    # and the log joint is the joint density (no per-unit terms, nothing spread over units)
    zz = np.random.default_rng(3).normal(size=(2, G))
    lj = model.log_joint(theta, {"u": zz})
    assert lj.shape == (2,)
    ref = (-0.5 * (zz**2).sum(-1) - 0.5 * ((y - zz @ A.T) ** 2).sum(-1) - (2 * G - 1) * 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(lj, ref, rtol=1e-12)


def test_a_single_coupled_pair_among_many_units_is_found():
    # one observation out of 64 couples units 0 and 37: random subsets could miss it, the check
    # must not (it splits every ordered pair of units)
    G = 64
    rng = np.random.default_rng(1)
    idx = np.repeat(np.arange(G), 2)
    y = rng.normal(size=idx.size)
    for j in (1, 2, 5, 12, 17, 31, 32, 37, 48, 63):
        model, found = build_warned(one_link, y=y, idx=idx, G=G, j=j)
        assert len(found) == 1, j
        m = re.match(COUPLED, str(found[0].message))
        assert m and (int(m.group(1)), int(m.group(2))) == (0, j), str(found[0].message)
        assert not model.per_unit and model.conditionals == {}
    # without the link the same model is per unit, silently
    model, found = build_warned(one_link, y=y, idx=idx, G=G, j=0)
    assert found == [] and model.per_unit and set(model.conditionals) == {"u"}


def test_coupling_invisible_at_the_initial_parameters_is_found():
    G = 5
    idx = np.arange(G)
    model, found = build_warned(hidden_at_init, y=np.linspace(-1, 1, G), idx=idx, G=G)
    assert len(found) == 1 and not model.per_unit


def test_discrete_latents_are_moved_to_another_state():
    G = 8
    idx = np.arange(G)
    x = np.random.default_rng(2).normal(size=G)
    model, found = build_warned(labels_chain, x=x, idx=idx, G=G)
    assert len(found) == 1 and "observe 'x'" in str(found[0].message)
    assert "unit latent 'z'" in str(found[0].message)
    assert not model.per_unit
    model, found = build_warned(labels_ok, x=x, idx=idx, G=G)
    assert found == [] and model.per_unit


def test_crossed_effects_drop_only_the_coupled_conditional():
    rng = np.random.default_rng(4)
    female = np.repeat(np.arange(4), 3)
    male = np.tile(np.arange(3), 4)
    y = rng.normal(size=12)
    model, found = build_warned(crossed_coupled, y=y, female=female, male=male, nf=4, nm=3)
    assert len(found) == 1
    assert "unit latent 'f'" in str(found[0].message)
    assert set(model.conditionals) == {"g"}  # the male effects still factorise


@pytest.mark.parametrize("jit", [False, True])
def test_the_check_costs_a_few_batched_evaluations(jit):
    # the model function is run a small, fixed number of times however many units there are
    calls = {"n": 0}

    @mcem.model(jit=jit)
    def counted(m, y, idx, G):
        calls["n"] += 1
        s = m.param("s", constraint=C.positive, init=1.0)
        u = m.latent("u", dist.Normal(0.0, s), shape=G, unit=True)
        m.observe("y", dist.Normal(u[..., idx], 1.0), y, unit_index=idx)

    counts = []
    for G in (4, 100, 3000):
        calls["n"] = 0
        idx = np.arange(G)
        model = counted(y=np.zeros(G), idx=idx, G=G)
        assert model.per_unit
        counts.append(calls["n"])
    if jit:  # compiled: one run per traced function (trace, probes, pieces, per-unit terms)
        assert counts[0] == counts[1] == counts[2] <= 10, counts
    else:
        # a trace, per parameter point (two) ceil((2 + 2 ceil(log2 G)) / 16) batched
        # evaluations, and one more for model.per_unit (Model.validate)
        assert counts == [4, 4, 6], counts


# ----------------------------------------------------------------------------- item 2
def _obs_model(make_dist):
    @mcem.model
    def obs(m, y):
        mu = m.param("mu", init=0.0)
        m.latent("u", dist.Normal(mu, 1.0), shape=1)
        m.observe("y", make_dist(), y)

    return obs


OUT_OF_SUPPORT = [
    ("Bernoulli 2", lambda: dist.Bernoulli(probs=0.3), np.array([0, 1, 0, 2, 1]),
     r"observe 'y': Bernoulli needs values in \{0, 1\}; got 2 at index \(3,\)"),
    ("Poisson -2", lambda: dist.Poisson(2.0), np.array([1, 0, -2]),
     r"observe 'y': Poisson needs non-negative integers; got -2 at index \(2,\)"),
    ("Poisson 1.5", lambda: dist.Poisson(2.0), np.array([1.0, 1.5]),
     r"observe 'y': Poisson needs non-negative integers; got 1.5 at index \(1,\)"),
    ("Binomial above its trials", lambda: dist.Binomial(5, probs=0.4), np.array([[0, 5], [6, 1]]),
     r"observe 'y': Binomial needs integers in \{0, ..., 5\}; got 6 at index \(1, 0\)"),
    ("Binomial above its own trials", lambda: dist.Binomial(np.array([3, 4, 5]), probs=0.4), np.array([3, 5, 5]),
     r"observe 'y': Binomial needs integers in \{0, ..., total_count\}; got 5 at index \(1,\) \(total_count 4 there\)"),
    ("Gamma -1", lambda: dist.Gamma(2.0, 1.0), np.array([0.5, -1.0]),
     r"observe 'y': Gamma needs positive values; got -1.0 at index \(1,\)"),
    ("Exponential -1", lambda: dist.Exponential(1.0), np.array([0.0, -1.0]),
     r"observe 'y': Exponential needs non-negative values; got -1.0 at index \(1,\)"),
    ("Beta 1.5", lambda: dist.Beta(2.0, 2.0), np.array([0.5, 1.5]),
     r"observe 'y': Beta needs values in \(0.0, 1.0\); got 1.5 at index \(1,\)"),
    ("Categorical out of range", lambda: dist.Categorical(probs=[0.2, 0.3, 0.5]), np.array([0, 2, 3]),
     r"observe 'y': Categorical needs integers in \{0, ..., 2\}; got 3 at index \(2,\)"),
    ("Multinomial not summing to n", lambda: dist.Multinomial(3, probs=[0.5, 0.5]), np.array([[1, 2], [2, 2]]),
     r"observe 'y': Multinomial needs non-negative integer counts summing to total_count \(3\); got \[2, 2\] at index \(1,\)"),
]


@pytest.mark.parametrize("what, make_dist, y, match", OUT_OF_SUPPORT, ids=[c[0] for c in OUT_OF_SUPPORT])
def test_observed_data_outside_the_support_are_refused_at_build(what, make_dist, y, match):
    with pytest.raises(ValueError, match=match):
        _obs_model(make_dist)(y=y)


def test_observed_data_that_are_not_numbers_are_refused_at_build():
    obs = _obs_model(lambda: dist.Bernoulli(probs=0.3))
    with pytest.raises(TypeError, match=r"observe 'y': Bernoulli needs real numbers \(values in \{0, 1\}\); got an array of dtype <U1"):
        obs(y=np.array(["0", "1"]))
    with pytest.raises(TypeError, match=r"data\['y'\] must be a numeric array .*got an array of dtype object \(int 1 at index \(0,\)\)"):
        obs(y=np.array([1, "a"], dtype=object))
    with pytest.raises(TypeError, match=r"observe 'y': Normal needs real numbers \(finite values\); got complex numbers"):
        _obs_model(lambda: dist.Normal(0.0, 1.0))(y=np.array([1 + 2j]))


def test_coin_builds_on_zeros_and_ones_only():
    assert coin(y=np.array([0, 1, 1])).n_obs == 3
    with pytest.raises(ValueError, match=r"^observe 'y': Bernoulli needs values in \{0, 1\}; got 2 at index \(3,\)$"):
        coin(y=np.array([0, 1, 0, 2]))


def test_data_inside_the_support_still_build_and_fit():
    # boundary values that log_prob accepts are accepted: 0 for Exponential and HalfNormal,
    # booleans for Bernoulli, total_count for Binomial
    for make, y in [
        (lambda: dist.Exponential(1.0), np.array([0.0, 2.0])),
        (lambda: dist.HalfNormal(1.0), np.array([0.0, 2.0])),
        (lambda: dist.Bernoulli(probs=0.3), np.array([True, False])),
        (lambda: dist.Binomial(5, probs=0.4), np.array([0, 5])),
        (lambda: dist.Uniform(0.0, 1.0), np.array([0.0, 1.0])),
    ]:
        model = _obs_model(make)(y=y)
        lj = model.log_joint(model.default_theta(), {"u": np.zeros((2, 1))})
        assert np.all(np.isfinite(lj))


def test_supports_that_move_with_the_parameters_are_not_checked_at_the_initial_values():
    # Uniform(0, b) with b starting at 1: data up to 3 are a matter of theta0, not of the data
    @mcem.model
    def box(m, y):
        b = m.param("b", constraint=C.positive, init=1.0)
        m.latent("u", dist.Normal(0.0, 1.0), shape=1)
        m.observe("y", dist.Uniform(0.0, b), y)

    y = np.array([0.5, 3.0])
    model = box(y=y)
    lj = model.log_joint({"b": np.array(4.0)}, {"u": np.zeros((1, 1))})
    assert np.isfinite(lj).all()
    # check_value checks the bounds of the distribution at hand, or only what no bound can fix
    with pytest.raises(ValueError, match=r"Uniform needs values in \[0.0, 1.0\]; got 3.0 at index \(1,\)"):
        dist.Uniform(0.0, 1.0).check_value(y, "y")
    dist.Uniform(0.0, 1.0).check_value(y, "y", for_any_params=True)
    with pytest.raises(ValueError, match=r"^y: Uniform needs finite values; got inf at index \(1,\)$"):
        dist.Uniform(0.0, 1.0).check_value(np.array([0.5, np.inf]), "y", for_any_params=True)

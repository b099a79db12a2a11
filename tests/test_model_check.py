"""Model.check: every batch layout the package uses, probed on a model; a clear error naming the
layout that fails, a report when all pass."""

import re
import warnings

import numpy as np
import pytest

import mcem
from mcem import constraints as C
from mcem import dist
from mcem.core import CheckReport

Y = np.array([0.4, -1.1, 2.3, 0.7, -0.2])
N = Y.size


# --------------------------------------------------------------------------- a correct model
# y_i ~ N(u_i, 1), u_i ~ N(mu, tau^2): every optional function, written from the closed forms.
def _terms(theta, z, y):
    u, mu, tau = z["u"], theta["mu"], theta["tau"]
    return -0.5 * (y - u) ** 2 - 0.5 * ((u - mu) / tau) ** 2 - np.log(tau) - np.log(2 * np.pi)


def _total(theta, z, y):
    return _terms(theta, z, y).sum(axis=-1)


def _grads(theta, z, y):
    u, mu, tau = z["u"], theta["mu"], theta["tau"]
    return {"mu": ((u - mu) / tau**2).sum(-1), "tau": ((u - mu) ** 2 / tau**3 - 1 / tau).sum(-1)}


def _value_and_grad(theta, z, y):
    return _total(theta, z, y), _grads(theta, z, y)


def _stats(z, y):
    u = z["u"].reshape(-1, y.size)
    return {"m1": u.mean(axis=0), "m2": (u**2).mean(axis=0)}


def _mstep(stats, y):
    mu = stats["m1"].mean()
    return {"mu": mu, "tau": np.sqrt(np.mean(stats["m2"] - 2 * mu * stats["m1"] + mu**2))}


def _posterior(theta, y, rng, batch):
    prec = 1 + 1 / theta["tau"] ** 2
    mean = (y + theta["mu"] / theta["tau"] ** 2) / prec
    return {"u": mean + rng.standard_normal(tuple(batch) + y.shape) / np.sqrt(prec)}


def normal_effects(y=Y, **change):
    def subset(units):
        return normal_effects(Y[units], **change)

    parts = dict(
        log_joint=_terms, log_joint_total=_total, conditionals={"u": _terms}, grad_params=_grads,
        value_and_grad=_value_and_grad, sufficient_stats=_stats, mstep=_mstep,
        posterior_sampler=_posterior, subset=subset,
    )
    parts.update(change)
    return mcem.Model(
        parts.pop("log_joint"), params={"mu": C.real, "tau": C.positive},
        latents={"u": mcem.Continuous(shape=y.size, unit=True)}, data=y, init={"mu": 0.2, "tau": 1.3},
        name="normal_effects", **parts,
    )


# A two-component mixture with a continuous shift m (not a unit latent): labels c_i, one per unit.
def _mix_terms(theta, z, y):
    c, m = z["c"], z["m"][..., None]
    return (np.log(theta["w"])[c] - 0.5 * (y - theta["means"][c] - m) ** 2
            - 0.5 * m**2 / y.size)  # the prior of m, spread over the units


def mixture(log_joint=_mix_terms, **extra):
    return mcem.Model(
        log_joint, params={"means": C.real(shape=2), "w": C.simplex(2)},
        latents={"c": mcem.Discrete(2, shape=N, unit=True), "m": mcem.Continuous()},
        data=Y, init={"means": np.array([-1.0, 1.0])}, name="mixture", **extra,
    )


def _labels_only(theta, z, y):
    c = z["c"]
    return np.log(theta["w"])[c] - 0.5 * (y - theta["means"][c]) ** 2


def labels_only(log_joint=_labels_only):
    return mcem.Model(log_joint, params={"means": C.real(shape=2), "w": C.simplex(2)},
                      latents={"c": mcem.Discrete(2, shape=N, unit=True)}, data=Y,
                      init={"means": np.array([-1.0, 1.0])}, name="labels")


# --------------------------------------------------------------------------- passing models
def test_a_correct_model_passes_every_layout():
    model = normal_effects()
    report = model.check()
    assert isinstance(report, CheckReport) and isinstance(report, dict)
    assert report.per_unit and report.n_units == N
    for layout in ["validate (2,)", "MCMC chains (chains,)", "one chain (1,)", "Q estimate (chains, draws)",
                   "Adam minibatch (1, batch_draws)", "importance sampling, enumeration (R,)",
                   "log_joint_total", "unit structure (per-unit terms)", "grad_params (chains, draws)",
                   "value_and_grad (chains, draws)", "sufficient_stats (chains * draws,)",
                   "posterior_sampler (chains,)", "sharded blocks (3,)", "conditionals['u'] (chains,)"]:
        assert report[layout]["status"] == "ok", (layout, report[layout])
    assert report["Q estimate (chains, draws)"]["returned"] == (4, 3, N)
    assert report["grad_params (chains, draws)"]["returned"] == {"mu": (4, 3), "tau": (4, 3)}
    assert report["sum over K states (K,)"]["status"].startswith("skipped")
    text = str(report)
    assert "Q estimate (chains, draws)" in text and "normal_effects" in text
    assert model.check(rng=5).passed == report.passed  # another seed, the same verdict


def test_correct_discrete_models_pass_the_gibbs_and_enumeration_layouts():
    report = mixture().check(rng=1)
    assert report["Gibbs enumeration (K, chains) of 'c'"] == {"batch": (2, 4), "returned": (2, 4, N), "status": "ok"}
    report = labels_only().check()
    assert report["sum over K states (K,)"]["status"] == "ok"
    assert report["sum over K states (K,)"]["returned"] == (2, N)


def test_a_discrete_site_with_a_conditional_is_enumerated_through_it():
    report = mixture(conditionals={"c": _mix_terms}).check()
    row = report["Gibbs enumeration (K, chains) of 'c' (conditionals)"]
    assert row == {"batch": (2, 4), "returned": (2, 4, N), "status": "ok"}
    assert report["conditionals['c'] (chains,)"]["status"] == "ok"


def test_the_models_of_the_package_pass():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    group = np.repeat(np.arange(6), 5)
    y = (rng.random(30) < 0.5).astype(float)
    models = [
        mcem.models.gaussian_mixture(X, 2),
        mcem.models.random_intercept_glmm(np.c_[np.ones(30), X[:, 0]], y, group),
        mcem.models.genetic_linkage(),
    ]

    @mcem.model
    def ppl(m, y, group, n_groups):
        mu = m.param("mu")
        u = m.latent("u", dist.Normal(mu, 1.0), shape=n_groups, unit=True)
        m.observe("y", dist.Normal(u[..., group], 1.0), y, unit_index=group)

    models.append(ppl(y=X[:, 0], group=group, n_groups=6))
    for model in models:
        report = model.check()
        assert "validate (2,)" in report.passed, model.name


# --------------------------------------------------------------------------- broken models
def _flat_only(theta, z, y):  # reduces axis 1: right for (chains, N), wrong for (chains, draws, N)
    return _terms(theta, z, y).sum(axis=1)


def _squeezing(theta, z, y):  # np.squeeze drops the batch axis of one chain
    return _terms(theta, {"u": np.squeeze(z["u"])}, y)


def _units_folded(theta, z, y):  # per-unit terms with the draws folded into the unit axis
    t = _terms(theta, z, y)
    return t.reshape(t.shape[0], -1)


def _batch_mixing(theta, z, y):  # centres u over the batch: the shape is right, the values are not
    u = z["u"] - z["u"].mean(axis=0) + Y.mean()
    return _terms(theta, {"u": u}, y)


def _neighbour(theta, z, y):  # the term of unit i reads the latent of unit i + 1
    return _terms(theta, {"u": np.roll(z["u"], 1, axis=-1)}, y)


def _sqrt_of_u(theta, z, y):  # NaN wherever u < 0 (not at the initial u = 0)
    with np.errstate(invalid="ignore"):
        return _terms(theta, z, y) + np.sqrt(z["u"]) * 0


def _same_batch(theta, z, y):  # assumes every latent has the same batch shape
    batch = z["c"].shape[:-1]
    return _mix_terms(theta, {"c": z["c"], "m": z["m"].reshape(batch)}, y)


def _in_place(theta, z, y):  # writes into the latents it was given
    c = z["c"]
    c[c < 0] = 0
    return _labels_only(theta, z, y)


def _grads_halved(theta, z, y):
    g = _grads(theta, z, y)
    return {"mu": g["mu"], "tau": 0.5 * g["tau"]}


def _grads_flat(theta, z, y):  # one value per parameter, no batch axes
    return {k: v.mean() for k, v in _grads(theta, z, y).items()}


def _stats_summed(z, y):
    u = z["u"].reshape(-1, y.size)
    return {"m1": u.sum(axis=0), "m2": (u**2).sum(axis=0)}


def _posterior_no_batch(theta, y, rng, batch):
    return {"u": _posterior(theta, y, rng, ())["u"]}


BROKEN = [
    (lambda: normal_effects(log_joint=_flat_only, log_joint_total=None),
     "Q estimate (chains, draws)", ValueError, r"log_joint returned shape \(4, 5\).*expected \(4, 3\) "),
    (lambda: normal_effects(log_joint=_squeezing),
     "one chain (1,)", ValueError, r"returned shape \(5,\) for latents with batch shape \(1,\)"),
    (lambda: normal_effects(log_joint=_units_folded),
     "Q estimate (chains, draws)", ValueError, r"returned shape \(4, 15\).*expected \(4, 3, 5\)"),
    (lambda: normal_effects(log_joint=_batch_mixing, log_joint_total=None, conditionals=None),
     "one chain (1,)", ValueError, r"other values for the same latents"),
    (lambda: normal_effects(log_joint=_neighbour, log_joint_total=None, conditionals=None),
     "unit structure (per-unit terms)", ValueError, r"changed the log_joint terms of other units"),
    (lambda: normal_effects(log_joint=_sqrt_of_u),
     "MCMC chains (chains,)", ValueError, r"NaN or \+inf"),
    (lambda: normal_effects(log_joint_total=lambda th, z, y: _total(th, z, y) + 1.0),
     "log_joint_total", ValueError, r"equal to log_joint summed"),
    (lambda: normal_effects(conditionals={"u": lambda th, z, y: -0.5 * (y - z["u"]) ** 2}),
     "conditionals['u'] (chains,)", ValueError, r"changed the log joint by .* but conditionals\['u'\] by"),
    (lambda: normal_effects(grad_params=_grads_halved, value_and_grad=None),
     "grad_params (chains, draws)", ValueError, r"disagrees with central differences"),
    (lambda: normal_effects(grad_params=_grads_flat, value_and_grad=None),
     "grad_params (chains, draws)", ValueError, r"grad_params\['mu'\] has shape \(\).*expected \(4, 3\)"),
    (lambda: normal_effects(value_and_grad=lambda th, z, y: (_total(th, z, y) * 2, _grads(th, z, y))),
     "value_and_grad (chains, draws)", ValueError, r"total has shape \(4, 3\).*largest difference"),
    (lambda: normal_effects(sufficient_stats=_stats_summed),
     "sufficient_stats (chains * draws,)", ValueError, r"averaged over the leading batch axes"),
    (lambda: normal_effects(posterior_sampler=_posterior_no_batch),
     "posterior_sampler (chains,)", ValueError, r"returned 'u' of shape \(5,\); expected \(4, 5\)"),
    (lambda: normal_effects(subset=lambda units: normal_effects(Y[: len(units)] + 1.0)),
     "sharded blocks (3,)", ValueError, r"not the sum of the log joints of its subsets"),
    (lambda: mixture(log_joint=_same_batch),
     "Gibbs enumeration (K, chains) of 'c'", ValueError, r"log_joint raised ValueError"),
    (lambda: mixture(conditionals={"c": lambda th, z, y: _mix_terms(th, z, y).sum(-1)}),
     "Gibbs enumeration (K, chains) of 'c' (conditionals)", ValueError,
     r"conditionals\['c'\] returned shape \(2, 4\).*expected \(2, 4, 5\)"),
    (lambda: labels_only(log_joint=_in_place),
     "sum over K states (K,)", ValueError, r"log_joint raised ValueError: .*read-only"),
    (lambda: normal_effects(log_joint=lambda th, z, y: _terms(th, z, y)[..., :-1]),
     "validate (2,)", ValueError, r"got shape \(2, 4\)"),
]


@pytest.mark.parametrize("model, layout, kind, what", BROKEN, ids=[f"{i}-{c[1]}" for i, c in enumerate(BROKEN)])
def test_a_broken_model_fails_naming_its_layout(model, layout, kind, what):
    m = model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(kind, match=r"^Model\.check: " + re.escape(layout) + ": .*" + what):
            m.check()


def test_check_leaves_the_model_and_theta_untouched():
    model = normal_effects()
    theta = {"mu": np.array(0.5), "tau": np.array(2.0)}
    before = {k: v.copy() for k, v in theta.items()}
    data = model.data.copy()
    model.check(theta=theta, rng=np.random.default_rng(3))
    assert all(np.array_equal(theta[k], before[k]) for k in theta)
    assert np.array_equal(model.data, data)


def test_check_at_bad_theta_names_the_argument():
    with pytest.raises(ValueError, match=r"^Model\.check: validate \(2,\): theta\['tau'\] must lie in"):
        normal_effects().check(theta={"mu": 0.0, "tau": -1.0})
    with pytest.raises(TypeError, match=r"rng must be None, an int seed or a numpy.random.Generator"):
        normal_effects().check(rng="seed")

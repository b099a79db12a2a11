"""The sharded E step: blocks of units on an executor, same bits everywhere, right posterior."""

import glob
import multiprocessing
import os
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import mcem
from mcem import constraints as C
from mcem import dist
from mcem.distributed import ShardedState, shard_units
from mcem.estep_factory import make_estep
from mcem.models.random_intercept import random_intercept_glmm

from _mc import assert_mean


def _glmm_data(G=60, n_per=6, seed=0):
    rng = np.random.default_rng(seed)
    n = G * n_per
    g = np.repeat(np.arange(G), n_per)
    X = np.c_[np.ones(n), rng.normal(size=n)]
    u = rng.normal(size=G)
    eta = X @ np.array([0.3, -0.5]) + u[g]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return X, y, g


@pytest.fixture(scope="module")
def glmm():
    return random_intercept_glmm(*_glmm_data())


@pytest.fixture(scope="module")
def pool():
    # spawned workers: forking a process whose other threads (JAX's, BLAS's) hold locks can deadlock
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        yield ex


def _fit(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (mcem.MonteCarloWarning, mcem.ConvergenceWarning))
        return mcem.fit(model, method="mcem", rng=7, shards=3, max_iter=4, schedule="fixed", m_init=40,
                        n_chains=2, burn=50, warm_burn=5, **kw)


def _same(a, b):
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
    assert np.array_equal(a.draws["u"], b.draws["u"])
    ha, hb = a.history.rows, b.history.rows
    dq = [np.array([r.get("delta_q", np.nan) for r in h], dtype=float) for h in (ha, hb)]
    assert len(ha) == len(hb) and np.array_equal(*dq, equal_nan=True)


def test_sharded_fit_is_bit_identical_serially_and_on_a_process_pool(glmm, pool):
    serial = _fit(glmm)
    pooled = _fit(glmm, executor=pool)
    threads = ThreadPoolExecutor(3)
    try:
        threaded = _fit(glmm, executor=threads)
    finally:
        threads.shutdown()
    _same(serial, pooled)
    _same(serial, threaded)
    scratch = tempfile.gettempdir() if not os.path.isdir("/dev/shm") else "/dev/shm"
    assert not glob.glob(os.path.join(scratch, "mcem-draws-*")), "draw files left behind"
    pooled.draws["u"][0, 0, 0] = 1.0  # the draws are an ordinary writable array
    assert serial.draws["u"].shape[-1] == glmm.n_units


def test_ready_made_glmm_pickles_without_cloudpickle(glmm, pool, monkeypatch):
    """Process pools need the blocks pickled; the GLMM's functions are module-level."""
    import pickle
    import sys

    serial = _fit(glmm)
    monkeypatch.setitem(sys.modules, "cloudpickle", None)  # import cloudpickle fails
    _same(serial, _fit(glmm, executor=pool))
    compiled, *_ = _normal_model()  # closures: stdlib pickle cannot send them
    with pytest.raises(Exception, match="could not be pickled.*install cloudpickle"):
        make_estep(compiled, shards=2, executor=pool)

    copy = pickle.loads(pickle.dumps(glmm.subset(np.arange(10, 20))))
    z = {"u": np.random.default_rng(3).normal(size=(2, 10))}
    theta = glmm.default_theta()
    np.testing.assert_array_equal(copy.log_joint(theta, z), glmm.subset(np.arange(10, 20)).log_joint(theta, z))
    assert pickle.loads(pickle.dumps(glmm)).subset(np.arange(3)).n_units == 3


def test_without_room_for_draw_files_the_draws_come_back_through_the_pool(glmm, pool, monkeypatch):
    import errno

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    serial = _fit(glmm)
    monkeypatch.setattr(os, "posix_fallocate", full)
    _same(serial, _fit(glmm, executor=pool))


def test_workers_get_a_block_with_its_data_only_when_they_lack_it(glmm):
    """Threads share one cache: after init every block is known, so runs send keys only. (On a
    process pool a worker that lacks a block gets it with its data: the bit-identity tests.)"""
    from mcem import distributed as D

    threads = ThreadPoolExecutor(2)
    try:
        es = make_estep(glmm, shards=2, executor=threads, n_chains=2, burn=5, warm_burn=1)
        theta = glmm.default_theta()
        state = es.init(theta, 1)
        assert es._sent == [True, True]
        sent = []
        submit = threads.submit

        class Spy:
            def submit(self, fn, key, payload, *args):
                sent.append(payload is not None)
                return submit(fn, key, payload, *args)

        es.executor = Spy()
        for seed in range(6):
            state = es.run(theta, state, 3, seed).state
        assert sent == [False] * 12
        D._CACHE.clear()  # a worker that lost its blocks gets them again, with their data
        state = es.run(theta, state, 3, 7).state
        assert sent[12:] == [False, False, True, True]  # both tried without data, then resent
    finally:
        threads.shutdown()
    with pytest.raises(D._Missing):
        D._block_estep("never-seen-0-0", None)


def test_sharded_fit_is_bit_identical_on_a_dask_cluster(glmm):
    distributed = pytest.importorskip("distributed")
    serial = _fit(glmm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cluster start-up chatter (ports, resources)
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        on_dask = _fit(glmm, executor=client.get_executor())
    finally:
        client.close()
        cluster.close()
    _same(serial, on_dask)


def test_blocks_are_independent_estep_runs_with_spawned_generators(glmm):
    """Reference: one plain EStep per block's model, generators spawned per run, joined by unit."""
    theta = glmm.default_theta()
    es = make_estep(glmm, shards=4, n_chains=2, burn=30, warm_burn=3)
    assert isinstance(es, mcem.ShardedEStep)
    state = es.init(theta, 11)
    res = es.run(theta, state, 25, 12)
    res = es.run(theta, res.state, 10, 13)

    blocks = shard_units(glmm.n_units, 4)
    ref_es = [mcem.EStep(glmm.subset(b), n_chains=2, burn=30, warm_burn=3) for b in blocks]
    states = [e.init(theta, r) for e, r in zip(ref_es, np.random.default_rng(11).spawn(4))]
    runs = [e.run(theta, s, 25, r) for e, s, r in zip(ref_es, states, np.random.default_rng(12).spawn(4))]
    runs = [e.run(theta, r.state, 10, g) for e, r, g in zip(ref_es, runs, np.random.default_rng(13).spawn(4))]
    expected = np.concatenate([r.draws["u"] for r in runs], axis=2)
    assert np.array_equal(res.draws["u"], expected)
    assert np.allclose(res.loglik_trace, sum(r.loglik_trace for r in runs))
    assert isinstance(res.state, ShardedState) and res.state.n_runs == 2
    assert res.state.z["u"].shape == (2, glmm.n_units)
    assert res.diagnostics["shards"] == 4 and len(res.diagnostics["shard_seconds"]) == 4


# --------------------------------------------------------------------------- an analytic posterior
@mcem.model
def normal_effects(m, y, group, n_groups):
    mu = m.param("mu", init=0.5)
    tau = m.param("tau", constraint=C.positive, init=1.5)
    u = m.latent("u", dist.Normal(0.0, tau), shape=n_groups, unit=True)
    m.observe("y", dist.Normal(mu + u[..., group], 1.0), y, unit_index=group)


@mcem.model
def normal_effects_computed_index(m, y, group, n_groups):
    mu = m.param("mu", init=0.5)
    tau = m.param("tau", constraint=C.positive, init=1.5)
    u = m.latent("u", dist.Normal(0.0, tau), shape=n_groups, unit=True)
    m.observe("y", dist.Normal(mu + u[..., group], 1.0), y, unit_index=np.asarray(group) * 1)


@mcem.model
def unit_covariate_effects(m, y, x, group, w, n_groups, scale):
    b = m.param("b", shape=2)
    tau = m.param("tau", constraint=C.positive, init=1.0)
    u = m.latent("u", dist.Normal(b[1] * w, tau), shape=n_groups, unit=True)   # unit-level w
    m.observe("y", dist.Normal(b[0] * x + u[..., group], scale), y, unit_index=group)


@mcem.model
def centred_covariates(m, y, X, xmean, group, n_groups):
    beta = m.param("beta", shape=X.shape[1])  # starts at 0, where xmean plays no part
    u = m.latent("u", dist.Normal(0.0, 1.0), shape=n_groups, unit=True)
    m.observe("y", dist.Normal((X - xmean) @ beta + u[..., group], 1.0), y, unit_index=group)


def test_a_wrong_guess_is_refused_not_used():
    """xmean is as long as the number of units by chance and is taken for a unit-level array;
    at the starting values (beta = 0) the blocks still add up, elsewhere they do not."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(20, 2))
    group = np.repeat(np.arange(2), 10)
    model = centred_covariates(y=rng.normal(size=20), X=X, xmean=X.mean(axis=0), group=group, n_groups=2)
    assert model.subset_fn is not None
    with pytest.raises(ValueError, match="not the sum of the log joints of its subsets.*with_subset"):
        make_estep(model, shards=2)


def test_compiled_models_find_their_subset_function():
    model, y, group, counts = _normal_model()
    auto = normal_effects(y=y, group=group, n_groups=40)
    assert auto.subset_fn is not None
    units = np.array([1, 4, 5, 17, 39])
    a, b = auto.subset(units), model.subset(units)  # found vs written by hand
    z = {"u": np.random.default_rng(1).normal(size=(3, 5))}
    theta = auto.default_theta()
    np.testing.assert_array_equal(a.log_joint(theta, z), b.log_joint(theta, z))
    # unit-level arrays follow the units, row arrays the rows; a scalar stays
    rng = np.random.default_rng(2)
    G, n = 12, 30
    grp = rng.integers(0, G, size=n)
    grp[:G] = np.arange(G)
    x, w = rng.normal(size=n), rng.normal(size=G)
    yy = rng.normal(size=n)
    m = unit_covariate_effects(y=yy, x=x, group=grp, w=w, n_groups=G, scale=0.7)
    sub = m.subset(np.array([3, 8]))
    assert np.array_equal(sub.data["w"], w[[3, 8]]) and sub.data["scale"] == 0.7
    assert np.array_equal(sub.data["x"], x[np.isin(grp, [3, 8])])
    es = make_estep(m, shards=3)  # the blocks add up to the whole (checked on construction)
    res = es.run(m.default_theta(), es.init(m.default_theta(), 0), 5, 1)
    assert res.draws["u"].shape == (4, 5, G)
    # not recognised: rows as many as units in another order, two index arrays, no count
    perm = rng.permutation(G)
    assert unit_covariate_effects(y=yy[:G], x=x[:G], group=perm, w=w, n_groups=G, scale=1.0).subset_fn is None
    assert normal_effects_computed_index(y=y, group=group, n_groups=40).subset_fn is None


def _normal_model(G=40, seed=3, n_per=(1, 6)):
    rng = np.random.default_rng(seed)
    counts = rng.integers(*n_per, size=G)
    group = np.repeat(np.arange(G), counts)
    y = 0.5 + rng.normal(scale=1.5, size=G)[group] + rng.normal(size=group.size)
    full = normal_effects(y=y, group=group, n_groups=G)

    def subset(units):
        rows = np.isin(group, units)
        return normal_effects(y=y[rows], group=np.searchsorted(units, group[rows]), n_groups=len(units))

    return full.with_subset(subset), y, group, counts


def test_sharded_draws_follow_the_analytic_posterior():
    model, y, group, counts = _normal_model()
    theta = model.default_theta()  # mu = 0.5, tau = 1.5, unit noise variance 1
    prec = counts + 1 / 1.5**2
    post_mean = np.bincount(group, weights=y - 0.5) / prec
    post_sd = 1 / np.sqrt(prec)
    es = make_estep(model, shards=3, n_chains=4, burn=300)
    res = es.run(theta, es.init(theta, 5), 1500, 6)
    u = res.draws["u"]
    assert_mean(u, post_mean, floor=0.01)
    assert_mean((u - post_mean) ** 2, post_sd**2, floor=0.01)


def test_sharded_mcem_reaches_the_closed_form_mle():
    """Normal random effects have a closed-form marginal likelihood: maximise it directly."""
    from scipy.optimize import minimize

    model, y, group, counts = _normal_model(G=60, seed=4, n_per=(6, 12))  # EM converges fast

    def negll(v):
        mu, tau2 = v[0], np.exp(v[1])
        ll = 0.0
        for g in range(60):  # test oracle: per-group multivariate normal, written plainly
            yg = y[group == g]
            S = np.eye(yg.size) + tau2
            _, logdet = np.linalg.slogdet(S)
            r = yg - mu
            ll += -0.5 * (logdet + r @ np.linalg.solve(S, r) + yg.size * np.log(2 * np.pi))
        return -ll

    opt = minimize(negll, [0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (mcem.MonteCarloWarning, mcem.ConvergenceWarning))
        res = mcem.fit(model, method="mcem", rng=2, shards=2)  # the default rule: 0.1 SE of Monte Carlo error
    se = res.standard_errors()
    assert res.converged and res.stopped_by == "tol", res.message
    # three Monte Carlo standard errors at the default target
    assert abs(res.params["mu"] - opt.x[0]) < 0.3 * se["mu"]
    assert abs(res.params["tau"] - np.exp(opt.x[1] / 2)) < 0.3 * se["tau"]


# --------------------------------------------------------------------------- checkpoints
def test_resume_a_sharded_fit_on_another_executor(glmm, pool, tmp_path):
    path = tmp_path / "ck.npz"
    whole = _fit(glmm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (mcem.MonteCarloWarning, mcem.ConvergenceWarning))
        mcem.fit(glmm, method="mcem", rng=7, shards=3, max_iter=2, schedule="fixed", m_init=40,
                 n_chains=2, burn=50, warm_burn=5, checkpoint=path)
        resumed = mcem.resume(path, glmm, executor=pool, max_iter=4)
    _same(whole, resumed)


# --------------------------------------------------------------------------- bad input
def test_bad_sharding_input_is_named(glmm):
    X, y, g = _glmm_data()
    with pytest.raises(ValueError, match="executor needs shards"):
        make_estep(glmm, executor=ThreadPoolExecutor(1))
    with pytest.raises(ValueError, match="shards must be at most the number of latent units"):
        make_estep(glmm, shards=61)
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor"):
        make_estep(glmm, shards=2, executor="processes")
    with pytest.raises(ValueError, match="shards must be"):
        make_estep(glmm, shards=0)
    no_subset = normal_effects_computed_index(y=y, group=g, n_groups=60)
    assert no_subset.subset_fn is None  # unit_index is not one of the arguments: not recognised
    with pytest.raises(ValueError, match="no subset function.*with_subset"):
        make_estep(no_subset, shards=2)
    # a subset function that ignores the units: its models do not add up to the whole
    wrong = no_subset.with_subset(
        lambda units: normal_effects(y=y[: units.size], group=np.arange(units.size), n_groups=units.size)
    )
    with pytest.raises(ValueError, match="not the sum of the log joints of its subsets"):
        make_estep(wrong, shards=2)
    with pytest.raises(ValueError, match="strictly increasing"):
        glmm.subset(np.array([3, 1]))
    with pytest.raises(ValueError, match="returned latents"):
        no_subset.with_subset(lambda units: normal_effects(y=y, group=g, n_groups=60)).subset(np.arange(5))


def test_resume_refuses_an_executor_for_an_unsharded_run(glmm, tmp_path):
    path = tmp_path / "plain.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (mcem.MonteCarloWarning, mcem.ConvergenceWarning))
        mcem.fit(glmm, method="mcem", rng=7, max_iter=1, schedule="fixed", m_init=20, n_chains=2,
                 burn=10, checkpoint=path)
    with pytest.raises(ValueError, match="executor is only for runs with a sharded"):
        mcem.resume(path, glmm, executor=ThreadPoolExecutor(1))


def test_make_estep_returns_the_plain_or_the_sharded_e_step(glmm):
    plain = make_estep(glmm, "rwm", n_chains=3, burn=7)
    assert type(plain) is mcem.EStep and plain.n_chains == 3 and plain.burn == 7
    sharded = make_estep(glmm, "rwm", shards=2, n_chains=3, burn=7)
    assert type(sharded) is mcem.ShardedEStep and sharded.shards == 2 and sharded.n_chains == 3
    direct = mcem.ShardedEStep(glmm, "rwm", shards=2, n_chains=3, burn=7)
    th = glmm.default_theta()
    a = sharded.run(th, sharded.init(th, 1), n_draws=5, rng=2)
    b = direct.run(th, direct.init(th, 1), n_draws=5, rng=2)
    assert np.array_equal(a.draws["u"], b.draws["u"])  # the factory builds exactly the class


def test_estep_itself_refuses_shards_and_points_to_the_factory(glmm):
    with pytest.raises(TypeError, match=r"EStep takes no shards: .*ShardedEStep.*make_estep"):
        mcem.EStep(glmm, shards=2)
    with pytest.raises(TypeError, match=r"EStep takes no executor: "):
        mcem.EStep(glmm, executor=object())
    with pytest.raises(TypeError, match=r"EStep got unexpected keyword argument\(s\) \['chains'\]"):
        mcem.EStep(glmm, chains=2)

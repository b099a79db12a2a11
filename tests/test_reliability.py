"""Checkpoints and resume, interruption, reproducibility, properties and long runs."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_algorithms import _batch_se, linkage_model, mixture

import mcem
from mcem.checkpoint import load_checkpoint
from mcem.models import gaussian_mixture

TESTS = Path(__file__).resolve().parent
FAST = dict(method="mcem", schedule="fixed", m_init=400, n_chains=4, max_iter=12, tol=1e-12)


def _same(a, b):
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    for col in ("m", "delta_q", "mcse"):
        np.testing.assert_array_equal(a.history[col], b.history[col])
    for k in a.history.params():
        np.testing.assert_array_equal(a.history.params(k), b.history.params(k))
    for k in a.draws:
        np.testing.assert_array_equal(a.draws[k], b.draws[k])


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
def test_fit_killed_with_sigkill_and_resumed_matches_an_uninterrupted_run(tmp_path):
    ck = tmp_path / "run.mcem"
    script = textwrap.dedent(f"""
        import sys, time, warnings
        sys.path.insert(0, {str(TESTS)!r})
        warnings.simplefilter("ignore")
        import mcem
        from test_algorithms import linkage_model
        mcem.fit(linkage_model(), rng=7, checkpoint={str(ck)!r}, callback=lambda row: time.sleep(0.15),
                 **{FAST!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if ck.exists():
                try:
                    if load_checkpoint(ck)["loop"]["t"] >= 4:
                        break
                except ValueError:
                    pass  # being replaced right now: try again
            time.sleep(0.05)
        else:
            pytest.fail("the subprocess wrote no checkpoint in time")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    t_killed = load_checkpoint(ck)["loop"]["t"]
    assert 4 <= t_killed < FAST["max_iter"]
    resumed = mcem.resume(ck, linkage_model())
    full = mcem.fit(linkage_model(), rng=7, checkpoint=tmp_path / "other.mcem", **FAST)
    _same(full, resumed)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".mcem-ckpt-")]  # no temp files


@pytest.mark.filterwarnings("ignore::mcem.ConvergenceWarning")
def test_saem_resume_matches_and_checkpoint_without_pickle(tmp_path):
    ck = tmp_path / "saem.ckpt"
    opts = dict(method="saem", mstep="numerical", burn_iter=5, max_iter=20, tol=1e-12, average=True)
    full = mcem.fit(linkage_model(), rng=2, **opts)
    mcem.fit(linkage_model(), rng=2, checkpoint=ck, **{**opts, "max_iter": 9})
    resumed = mcem.resume(ck, linkage_model(), max_iter=20)
    _same(full, resumed)
    np.load(ck, allow_pickle=False).close()


def test_corrupted_or_foreign_checkpoints_are_refused(tmp_path):
    ck = tmp_path / "run.mcem"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcem.fit(linkage_model(), rng=1, checkpoint=ck, **{**FAST, "max_iter": 3})
    raw = ck.read_bytes()
    (tmp_path / "half.mcem").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="half.mcem.*(truncated or corrupted|cannot be read)"):
        mcem.resume(tmp_path / "half.mcem", linkage_model())
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    (tmp_path / "flip.mcem").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="flip.mcem"):
        mcem.resume(tmp_path / "flip.mcem", linkage_model())
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not an mcem checkpoint"):
        mcem.resume(tmp_path / "other.npz", linkage_model())
    X = mixture()
    with pytest.raises(ValueError, match="model does not match the checkpoint"):
        mcem.resume(ck, gaussian_mixture(X, 2))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mcem.resume(tmp_path / "missing.mcem", linkage_model())
    with pytest.raises(TypeError, match="cannot be saved without pickle"):
        mcem.fit(linkage_model(), method="mcem", rng=1, checkpoint=ck, schedule=lambda t: 10, max_iter=2)
    with pytest.raises(ValueError, match="the folder .* does not exist"):
        mcem.fit(linkage_model(), rng=1, checkpoint=tmp_path / "no" / "run.mcem", **FAST)


def test_ctrl_c_returns_the_partial_result_flagged_interrupted():
    def interrupt(row):
        if row["iter"] == 4:
            raise KeyboardInterrupt

    res = mcem.fit(linkage_model(), rng=1, callback=interrupt, **FAST)
    assert res.stopped_by == "interrupted" and not res.converged
    assert "interrupted after iteration 3" in res.message
    assert res.n_iter == 3 and len(res.history) == 4
    np.testing.assert_array_equal(res.params["t"], res.history.params("t")[-1])
    res = mcem.fit(linkage_model(), rng=1, callback=interrupt, method="saem", max_iter=10, burn_iter=2)
    assert res.stopped_by == "interrupted" and res.n_iter == 3


def test_no_global_random_state_and_key_order_does_not_matter():
    X = mixture(3, N=120)
    model = gaussian_mixture(X, 2)
    th = model.default_theta()
    np.random.seed(0)
    a = mcem.fit(model, th, method="mcem", rng=4, max_iter=5, tol=1e-12, sampler="gibbs")
    np.random.seed(12345)
    np.random.random(100)
    reordered = {k: th[k] for k in reversed(list(th))}
    b = mcem.fit(model, reordered, method="mcem", rng=4, max_iter=5, tol=1e-12, sampler="gibbs")
    _same(a, b)
    c = mcem.fit(model, th, method="saem", rng=np.random.default_rng(4), max_iter=8, burn_iter=2)
    d = mcem.fit(model, th, method="saem", rng=np.random.default_rng(4), max_iter=8, burn_iter=2)
    np.testing.assert_array_equal(c.params["means"], d.params["means"])


@settings(max_examples=10)
@given(seed=st.integers(0, 1000))
def test_permuting_units_leaves_exact_em_unchanged(seed):
    X = mixture(seed % 7, N=80)
    perm = np.random.default_rng(seed).permutation(len(X))
    th0 = gaussian_mixture(X, 2).default_theta()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = mcem.fit(gaussian_mixture(X, 2), th0, max_iter=50, tol=0.0)
        b = mcem.fit(gaussian_mixture(X[perm], 2), th0, max_iter=50, tol=0.0)
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-8, atol=1e-8)  # summation order
    n = min(len(a.history), len(b.history))  # an exactly-zero change may stop one run a step early
    np.testing.assert_allclose(a.history["loglik"][:n], b.history["loglik"][:n], rtol=1e-10)


@settings(max_examples=10)
@given(seed=st.integers(0, 1000))
def test_duplicating_the_data_doubles_the_exact_loglik(seed):
    X = mixture(seed % 5, N=60)
    m1, m2 = gaussian_mixture(X, 2), gaussian_mixture(np.concatenate([X, X]), 2)
    theta = m1.default_theta()
    np.testing.assert_allclose(m2.exact_loglik(theta), 2 * m1.exact_loglik(theta), rtol=1e-12)


def test_permuted_units_mcem_stays_within_monte_carlo_error():
    X = mixture(0)
    perm = np.random.default_rng(1).permutation(len(X))
    model, pmodel = gaussian_mixture(X, 2), gaussian_mixture(X[perm], 2)
    th0 = model.default_theta()
    em = mcem.fit(model, th0, tol=1e-13, max_iter=2000)
    res = mcem.fit(pmodel, th0, method="mcem", sampler="gibbs", rng=3, m_max=4000)
    se = _batch_se(pmodel, res.draws)
    for k in ("weights", "means"):
        assert np.all(np.abs(res.params[k] - em.params[k]) < 5 * se[k] + 2e-3)


def test_user_arrays_are_never_modified():
    X = mixture(2, N=100)
    X0 = X.copy()
    th = gaussian_mixture(X, 2).default_theta()
    th0 = {k: v.copy() for k, v in th.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcem.fit(gaussian_mixture(X, 2), th, method="mcem", sampler="gibbs", rng=0, max_iter=3)
        mcem.compare(gaussian_mixture(X, 2), ("em", "saem"), th, rng=0, options={"saem": {"max_iter": 5}})
        mcem.models.GaussianMixture(2, means_init=th["means"], rng=0).fit(X)
    np.testing.assert_array_equal(X, X0)
    for k in th:
        np.testing.assert_array_equal(th[k], th0[k])


@pytest.mark.slow
def test_memory_stays_flat_over_many_mcem_iterations():
    """A soak run: 250 iterations with fixed m (tracemalloc makes each cost ~0.4 s); memory per
    iteration after the first 100 is the history row only."""
    marks = {}

    def probe(row):
        if row["iter"] in (100, 250):
            marks[row["iter"]] = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mcem.fit(linkage_model(), method="mcem", schedule="fixed", m_init=16, n_chains=2,
                           max_iter=250, tol=1e-12, rng=0, callback=probe)
    finally:
        tracemalloc.stop()
    assert res.n_iter == 250
    per_iter = (marks[250] - marks[100]) / 150
    assert per_iter < 8_000, f"{per_iter:.0f} bytes per iteration"
    # the draws are not accumulated: only the last E step's are kept
    assert res.draws["x2"].shape == (2, 8)


def test_exact_em_checkpoint_and_resume(tmp_path):
    X = mixture(4, N=150)
    model = gaussian_mixture(X, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = mcem.fit(model, max_iter=30, tol=0.0)
        mcem.fit(model, max_iter=12, tol=0.0, checkpoint=tmp_path / "em.ckpt")
        resumed = mcem.resume(tmp_path / "em.ckpt", model, max_iter=30)
    np.testing.assert_array_equal(full.history["loglik"], resumed.history["loglik"])
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], resumed.params[k])


@pytest.mark.parametrize("estep", ["exact", "mc"])
def test_gem_checkpoint_and_resume(tmp_path, estep):
    X = mixture(5, N=120)
    model = gaussian_mixture(X, 2)
    opts = dict(method="gem", estep=estep, step_size=0.02, tol=0.0, m=40, n_chains=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = mcem.fit(model, rng=3, max_iter=10, **opts)
        mcem.fit(model, rng=3, max_iter=4, checkpoint=tmp_path / "g.ckpt", **opts)
        resumed = mcem.resume(tmp_path / "g.ckpt", model, max_iter=10)
    np.testing.assert_array_equal(full.history.params("means"), resumed.history.params("means"))
    np.testing.assert_array_equal(full.history["loglik"], resumed.history["loglik"])

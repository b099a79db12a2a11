"""mcem.io: saving/loading results without pickle, corruption handling, atomic writes, DataTree."""

import json
import math
import os
import pathlib
import warnings
import zipfile

import arviz_stats
import numpy as np
import pytest

import mcem
from mcem import io as mio
from mcem.diagnostics import ess
from mcem.models import glmm_model
from mcem.result import FitResult, History


@pytest.fixture(scope="module")
def model():
    return mcem.models.gaussian_mixture(mcem.datasets.load_faithful(), 2)


@pytest.fixture(scope="module")
def em(model):
    return mcem.fit(model, method="em")


@pytest.fixture(scope="module")
def mc(model):
    return mcem.fit(model, method="mcem", sampler="gibbs", rng=1)


def assert_same(a, b, where="result"):
    """Equal values of the same type, recursively (NaN equals NaN; arrays: dtype and shape too)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=where, strict=True)
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float):
        same_sign = math.copysign(1, a) == math.copysign(1, b)
        assert (math.isnan(a) and math.isnan(b)) or (a == b and same_sign), where
    elif isinstance(a, History):
        assert a.columns == b.columns, where
        assert len(a) == len(b), where
        for col in a.columns:
            if col != "params":
                np.testing.assert_array_equal(a[col], b[col], err_msg=f"{where} column {col}")
        for name, path in a.params().items():
            np.testing.assert_array_equal(path, b.params(name), err_msg=f"{where} path {name}", strict=True)
        for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
            assert list(ra) == list(rb), f"{where} row {i} keys"
            assert_same(ra, rb, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def roundtrip(result, tmp_path, name="fit.npz"):
    path = tmp_path / name
    mio.save_result(result, path)
    return mio.load_result(path), path


# ---------------------------------------------------------------------------------- round trip


def test_roundtrip_exact_em(em, tmp_path):
    back, path = roundtrip(em, tmp_path)
    assert isinstance(back, FitResult) and isinstance(back.history, History)
    assert_same(dict(em), dict(back))
    assert back["loglik"] == em["loglik"] and back.settings == em.settings and back.n_iter == em.n_iter
    # bool column absent in row 0 stays absent there and bool elsewhere
    assert "decreased" not in back.history[0]
    assert all(type(r["decreased"]) is bool for r in back.history.rows[1:])
    assert getattr(back, "_model", None) is None  # the model is not saved


def test_roundtrip_mcem_with_draws_and_diagnostics(mc, tmp_path):
    assert "draws" in mc and {"rhat_loglik", "acceptance_mean", "mcse", "upper"} <= set(mc.history.columns)
    back, _ = roundtrip(mc, tmp_path)
    assert_same(dict(mc), dict(back))
    for col in mc.history.columns:
        if col != "params":
            np.testing.assert_array_equal(back.history[col], mc.history[col], err_msg=col)
    for name, d in mc.draws.items():
        np.testing.assert_array_equal(back.draws[name], d, strict=True)
    for i, row in enumerate(mc.history):
        for k, v in row.items():
            if k != "params":
                assert type(back.history[i][k]) is type(v), (i, k)
        assert set(back.history[i]["params"]) == set(row["params"])
    assert back.total_draws == mc.total_draws


def test_file_needs_no_pickle_and_has_layout(mc, tmp_path):
    path = tmp_path / "fit.npz"
    mio.save_result(mc, path)
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    assert all(not a.dtype.hasobject for a in entries.values())
    meta = json.loads(entries.pop(mio.META_KEY).tobytes().decode("utf-8"))
    assert meta["format"] == "mcem-result" and meta["version"] == "mcem-result/1"
    assert set(meta["arrays"]) == set(entries)
    np.testing.assert_array_equal(entries["params/means"], mc.params["means"])
    np.testing.assert_array_equal(entries["history/params/means"], mc.history.params("means"))
    np.testing.assert_array_equal(entries["draws/label"], mc.draws["label"])
    assert entries["history/mstep_success"].dtype == bool
    assert meta["lossy"] == []


@pytest.mark.parametrize("as_path", [str, pathlib.Path])
def test_writes_exactly_the_given_name(em, tmp_path, as_path):
    target = tmp_path / "my result.mcem"  # np.savez would append ".npz" to a plain name
    mio.save_result(em, as_path(target))
    assert sorted(os.listdir(tmp_path)) == ["my result.mcem"]
    assert_same(dict(mio.load_result(as_path(target))), dict(em))


def test_roundtrip_unusual_values(tmp_path):
    rows = [
        {"iter": 0, "params": {"a": np.array(1.0), "b": np.zeros(2, np.float32)}, "note": "start",
         "mixed": 1, "npf": np.float32(0.5), "vec": np.arange(3), "seconds": 0.1},
        {"iter": 1, "params": {"a": np.array(2.0), "b": np.ones(2, np.float32)}, "note": None,
         "mixed": 2.5, "npf": np.float32(-1.5), "flag": True, "vec": np.arange(3) + 1, "seconds": 0.2,
         "big": 2**70},
    ]
    res = FitResult(
        params={"a": np.array(2.0), "b": np.ones(2, np.float32)},
        converged=False, n_iter=1, message="ünïcode ✓", stopped_by="max_iter", method="em",
        loglik=None, history=History(rows), seconds=float("inf"),
        settings={"tol": float("nan"), "shape": (2, 3), "nested": {1: [1, -0.0, "x"], "k": None},
                  "np_int": np.int32(7), "cplx": 1 + 2j, "flag": np.bool_(True)},
        model_name="toy", extra_int_array=np.arange(6, dtype=np.int16).reshape(2, 3),
        empty=np.zeros((0, 3)), draws={"z": np.zeros((2, 3, 4), dtype=np.int8)},
    )
    back, _ = roundtrip(res, tmp_path, "odd")
    assert_same(dict(res), dict(back))
    assert back.history[0]["mixed"] == 1 and type(back.history[1]["mixed"]) is float
    assert type(back.settings["np_int"]) is np.int32 and back.settings["shape"] == (2, 3)
    assert back.history[1]["big"] == 2**70


def test_unstorable_values_are_stored_as_repr_with_a_note(em, tmp_path):
    objs = np.array([1, "a"], dtype=object)
    res = FitResult(em, settings={**em.settings, "schedule_fn": len, "objs": objs})
    path = tmp_path / "lossy.npz"
    with pytest.warns(UserWarning, match=r"settings\['schedule_fn'\]"):
        mio.save_result(res, path)
    back = mio.load_result(path)
    assert back.settings["schedule_fn"] == repr(len)
    assert back.settings["objs"] == repr(res.settings["objs"])
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z[mio.META_KEY].tobytes())
    assert [n["where"] for n in meta["lossy"]] == ["settings['schedule_fn']", "settings['objs']"]
    assert_same(back.history, em.history)


def test_load_with_model(em, model, tmp_path):
    path = tmp_path / "fit.npz"
    mio.save_result(em, path)
    assert mio.load_result(path, model=model)._model is model
    other = mcem.models.gaussian_mixture(mcem.datasets.load_faithful(), 3)
    with pytest.raises(ValueError, match=r"fit\.npz: the result does not fit model"):
        mio.load_result(path, model=other)


def test_rejects_non_results(tmp_path):
    with pytest.raises(TypeError, match="expected a FitResult"):
        mio.save_result([1, 2], tmp_path / "x")
    with pytest.raises(TypeError, match="dict key"):
        mio.save_result(FitResult(settings={frozenset(): 1}), tmp_path / "x")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------- corruption


@pytest.fixture
def saved(mc, tmp_path):
    path = tmp_path / "fit.npz"
    mio.save_result(mc, path)
    return path


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"fit\.npz: not a readable \.npz archive \(truncated or corrupted"):
        mio.load_result(saved)
    saved.write_bytes(b"")
    with pytest.raises(ValueError, match="fit.npz: not a readable"):
        mio.load_result(saved)


def test_flipped_bytes_never_give_a_wrong_result(em, tmp_path):
    path = tmp_path / "fit.npz"
    mio.save_result(em, path)
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("history/loglik.npy")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    broken = bytearray(data)
    broken[middle] ^= 0xFF  # inside the compressed loglik column
    path.write_bytes(bytes(broken))
    with pytest.raises(ValueError, match=r"fit\.npz: .*corrupted"):
        mio.load_result(path)
    # anywhere else: a ValueError naming the file, or (a harmless byte) the exact result
    rng = np.random.default_rng(0)
    for pos in rng.choice(len(data), size=60, replace=False):
        broken = bytearray(data)
        broken[pos] ^= 0x5A
        path.write_bytes(bytes(broken))
        try:
            back = mio.load_result(path)
        except ValueError as exc:
            assert str(exc).startswith(f"{path}:"), str(exc)
        else:
            assert_same(dict(back), dict(em), f"byte {pos}")


def test_plain_npz_without_meta(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.arange(3))
    with pytest.raises(ValueError, match=r"other\.npz: not an mcem result: .*no '__meta__\.json' entry"):
        mio.load_result(path)


def test_other_files(tmp_path):
    npy = tmp_path / "arr.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ValueError, match=r"arr\.npy: not a readable \.npz archive"):
        mio.load_result(npy)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt: not a readable"):
        mio.load_result(txt)
    with pytest.raises(FileNotFoundError):
        mio.load_result(tmp_path / "missing.npz")


def _rewrite_meta(path, change):
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    meta = json.loads(entries[mio.META_KEY].tobytes())
    change(meta)
    entries[mio.META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez_compressed(f, **entries)


def test_wrong_version(saved):
    _rewrite_meta(saved, lambda m: m.update(version="mcem-result/99"))
    with pytest.raises(ValueError, match=r"fit\.npz: unsupported mcem result version 'mcem-result/99'"):
        mio.load_result(saved)


def test_wrong_format_or_bad_meta(saved, tmp_path):
    _rewrite_meta(saved, lambda m: m.update(format="something-else"))
    with pytest.raises(ValueError, match=r"fit\.npz: not an mcem result: format 'something-else'"):
        mio.load_result(saved)
    other = tmp_path / "junk.npz"
    np.savez(other, **{mio.META_KEY: np.frombuffer(b"\xff{not json", dtype=np.uint8)})
    with pytest.raises(ValueError, match=r"junk\.npz: not an mcem result: unreadable metadata"):
        mio.load_result(other)


def test_meta_disagreeing_with_arrays(saved):
    def drop_rows(meta):
        meta["fields"]["history"]["n_rows"] += 1

    _rewrite_meta(saved, drop_rows)
    with pytest.raises(ValueError, match=r"fit\.npz: corrupted mcem result"):
        mio.load_result(saved)


def test_missing_array_entry(em, tmp_path):
    path = tmp_path / "fit.npz"
    mio.save_result(em, path)
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files if k != "params/means"}
    np.savez_compressed(path, **entries)
    with pytest.raises(ValueError, match=r"corrupted mcem result.*missing.*params/means"):
        mio.load_result(path)


# ---------------------------------------------------------------------------------- atomic write


def test_overwrite_leaves_no_temporary_files(em, mc, tmp_path):
    path = tmp_path / "fit.npz"
    mio.save_result(em, path)
    os.chmod(path, 0o640)
    mio.save_result(mc, path)
    assert os.listdir(tmp_path) == ["fit.npz"]
    assert mio.load_result(path).method == "mcem"
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_failure_mid_write_keeps_the_old_file(em, mc, tmp_path, monkeypatch):
    path = tmp_path / "fit.npz"
    mio.save_result(em, path)
    before = path.read_bytes()

    def fail_mid_write(f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", fail_mid_write)
    with pytest.raises(OSError, match="disk full"):
        mio.save_result(mc, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["fit.npz"]
    monkeypatch.undo()

    def fail_fsync(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(mio.os, "fsync", fail_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        mio.save_result(mc, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["fit.npz"]
    assert_same(dict(mio.load_result(path)), dict(em))


# ---------------------------------------------------------------------------------- DataTree


def test_to_datatree_mcem(mc):
    dt = mio.to_datatree(mc)
    assert set(dt.children) == {"posterior", "fit_history", "fit_params"}
    post = dt["posterior"].to_dataset()
    assert post["label"].dims == ("chain", "draw", "label_dim_0")
    np.testing.assert_array_equal(post["label"].values, mc.draws["label"])
    hist = dt["fit_history"].to_dataset()
    assert hist.sizes["iteration"] == len(mc.history)
    np.testing.assert_array_equal(hist["iteration"].values, mc.history["iter"])
    for col in mc.history.columns:
        if col not in ("iter", "params"):
            assert hist[col].dims == ("iteration",)
            np.testing.assert_array_equal(hist[col].values, mc.history[col], err_msg=col)
    assert hist["m"].dtype.kind == "i"  # complete int column keeps its dtype
    for name, path in mc.history.params().items():
        var = hist[f"params.{name}"]
        assert var.dims == ("iteration",) + tuple(f"{name}_dim_{i}" for i in range(path.ndim - 1))
        np.testing.assert_array_equal(var.values, path)
    fp = dt["fit_params"].to_dataset()
    for name, v in mc.params.items():
        np.testing.assert_array_equal(fp[name].values, v)
    assert dt.attrs["method"] == "mcem" and dt.attrs["converged"] == int(mc.converged)  # netCDF: no bool
    assert dt.attrs["message"] == mc.message and dt.attrs["n_iter"] == mc.n_iter
    assert json.loads(dt.attrs["settings"]) == mc.settings
    assert hist.attrs["skipped_columns"] == []


def test_to_datatree_em_and_after_load(em, tmp_path):
    dt = mio.to_datatree(em)
    assert set(dt.children) == {"fit_history", "fit_params"}  # no draws, no posterior
    hist = dt["fit_history"].to_dataset()
    assert hist["loglik"].dtype == np.float64 and np.isnan(hist["decreased"].values[0])
    np.testing.assert_array_equal(hist["loglik"].values, em.history["loglik"])
    assert dt.attrs["loglik"] == em["loglik"] and dt.attrs["stopped_by"] == em.stopped_by
    back, _ = roundtrip(em, tmp_path)
    dt2 = mio.to_datatree(back)
    for group in ("fit_history", "fit_params"):
        a, b = dt[group].to_dataset(), dt2[group].to_dataset()
        assert a.drop_attrs().identical(b.drop_attrs()), group


def test_to_datatree_bool_column_and_skipped(tmp_path):
    rows = [{"iter": i, "params": {"a": np.array(float(i))}, "ok": i % 2 == 0, "tag": {"x": i},
             "seconds": 0.0} for i in range(3)]
    res = FitResult(params={"a": np.array(2.0)}, converged=True, n_iter=2, message="m", stopped_by="tol",
                    method="em", loglik=None, history=History(rows), seconds=0.0, settings={})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dt = mio.to_datatree(res)
    hist = dt["fit_history"].to_dataset()
    assert hist["ok"].dtype == bool and hist["params.a"].dims == ("iteration",)
    assert hist.attrs["skipped_columns"] == ["tag"] and "loglik" not in dt.attrs


def test_arviz_stats_summarises_the_datatree_of_a_fit_on_a_plain_install():
    # the dependency is arviz-stats[xarray]: ess, rhat and summary need xarray-einstats
    d = glmm_model.simulate_random_intercept(6, 5, [0.2, -0.3], 0.8, "logit", rng=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mcem.fit(glmm_model.random_intercept_glmm(d["X"], d["y"], d["group"]), rng=1)
    table = arviz_stats.summary(fit.to_datatree(), kind="stats", round_to="none")
    u = fit.draws["u"]  # (chain, draw, 6)
    np.testing.assert_allclose(table["mean"].to_numpy(dtype=float), u.mean(axis=(0, 1)), rtol=1e-12)
    found = arviz_stats.ess(fit.to_datatree(), group="posterior")["u"].values
    np.testing.assert_allclose(found, [ess(u[..., i]) for i in range(6)], rtol=1e-10)

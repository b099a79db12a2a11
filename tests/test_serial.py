"""mcem.serial: one serializer for results and checkpoints (one encoder and decoder, one atomic
writer, one allow-list), every bit generator numpy ships saved, malformed result nodes named by
their path, no aliasing between decoded arrays."""

import json
import os
import stat
import tempfile
import warnings

import numpy as np
import pytest

import mcem
from mcem import checkpoint as ckmod
from mcem.checkpoint import load_checkpoint, save_checkpoint
from mcem.estep import EStepState
from mcem.history import History
from mcem.result import FitResult
from mcem.serial import atomic
from mcem.serial.codec import Decoder, Encoder, clone_generator
from mcem.serial.resultfile import META_KEY


def _small_result():
    rows = [{"iter": i, "params": {"a": np.array(float(i))}, "note": "x" * i, "seconds": 0.1} for i in range(3)]
    return FitResult(params={"a": np.array(2.0)}, converged=True, n_iter=2, message="m", stopped_by="tol",
                     method="em", loglik=None, history=History(rows), seconds=0.3,
                     settings={"tol": 1e-6, "nested": {"k": [1, 2]}})


def _rewrite_result(path, change):
    """Rewrite a result file's description with ``change(meta, arrays)`` (arrays kept unless changed)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop(META_KEY).tobytes())
    change(meta, arrays)
    meta["arrays"] = {k: [a.dtype.str, list(a.shape)] for k, a in arrays.items()}
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays, **{META_KEY: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})


def _set_setting(name, node):
    def change(meta, arrays):
        meta["fields"]["settings"]["keys"].append(name)
        meta["fields"]["settings"]["values"].append(node)
    return change


def _history(change_history):
    def change(meta, arrays):
        change_history(meta["fields"]["history"])
    return change


def _note_values(h):
    spec = next(s for c, s in h["layout"] if c == "note")
    spec["values"] = spec["values"][:1]


MALFORMED = {
    "unknown": (_set_setting("x", {"$t": "eval", "v": "1"}), r"settings\['x'\] has an unknown node type 'eval'"),
    "float": (_set_setting("x", {"$t": "float", "v": "NaN?"}), r"settings\['x'\] is a float node holding 'NaN\?'"),
    "entry": (_set_setting("x", {"$t": "array", "key": "nope"}),
              r"settings\['x'\] refers to an array entry 'nope' the archive lacks"),
    "key": (_set_setting("x", {"$t": "dict", "keys": [[1]], "values": [2]}),
            r"settings\['x'\] has a dict key of type list"),
    "complex": (_set_setting("x", {"$t": "complex", "re": "1", "im": 0}),
                r"settings\['x'\] is a complex node whose parts are not numbers"),
    "row order": (_history(lambda h: h["row_order"].__setitem__(0, 7)), r"history: row 0 has no key order"),
    "column values": (_history(_note_values), r"history\['note'\]: 1 values for 3 rows"),
    "column kind": (_history(lambda h: h["layout"][0][1].update(kind="pickle")),
                    r"history\['iter'\] is a column of unknown kind 'pickle'"),
}


def crafted_result(kind):
    """A saved result with one malformed node (for the bad-input matrix): ``kind`` is one of
    the keys of ``MALFORMED``. Returns the path (in a new temporary folder)."""
    path = os.path.join(tempfile.mkdtemp(), "fit.npz")
    mcem.save_result(_small_result(), path)
    _rewrite_result(path, MALFORMED[kind][0])
    return path


# ------------------------------------------------------------------------ one serializer

def test_results_and_checkpoints_go_through_the_one_encoder_and_decoder(tmp_path, monkeypatch):
    seen = []
    real_pack, real_unpack = Encoder.pack, Decoder.unpack

    def pack(self, obj, where):
        seen.append(("pack", self.spelling.name))
        return real_pack(self, obj, where)

    def unpack(self, node, where=""):
        seen.append(("unpack", self.spelling.name))
        return real_unpack(self, node, where)

    monkeypatch.setattr(Encoder, "pack", pack)
    monkeypatch.setattr(Decoder, "unpack", unpack)
    mcem.load_result(_save(_small_result(), tmp_path / "fit.npz"))
    load_checkpoint(_save_ck({"x": np.arange(3.0), "rng": np.random.default_rng(1)}, tmp_path / "run.mcem"))
    assert {("pack", "result"), ("unpack", "result"), ("pack", "checkpoint"), ("unpack", "checkpoint")} <= set(seen)


def _save(result, path):
    mcem.save_result(result, path)
    return path


def _save_ck(payload, path):
    save_checkpoint(path, payload)
    return path


def test_the_allow_list_keeps_the_names_files_hold():
    """Format 2 names states by these stable names, format 1 by these module:class spellings."""
    assert dict(ckmod.STATE_CLASSES) == {
        "EStepState": ("mcem.estep", "EStepState"),
        "ShardedState": ("mcem.distributed", "ShardedState"),
        "ComposeState": ("mcem.kernels.compose", "ComposeState"),
        "ExactState": ("mcem.kernels.compose", "ExactState"),
        "RWMState": ("mcem.kernels.metropolis", "RWMState"),
        "GibbsState": ("mcem.kernels.gibbs", "GibbsState"),
        "EmceeState": ("mcem.kernels.ensemble", "EmceeState"),
        "FFBSState": ("mcem.kernels.ffbs", "FFBSState"),
        "CSMCState": ("mcem.kernels.csmc", "CSMCState"),
        "KalmanState": ("mcem.kernels.kalman", "KalmanState"),
    }
    from mcem.serial.allowlist import STATE_TYPES

    assert {n: c.__name__ for n, c in STATE_TYPES.items()} == {n: n for n in ckmod.STATE_CLASSES}


# ------------------------------------------------------------------------ generators

@pytest.mark.parametrize("bitgen", ["PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"])
def test_every_numpy_bit_generator_round_trips_through_a_checkpoint(tmp_path, bitgen):
    rng = np.random.Generator(getattr(np.random, bitgen)(np.random.SeedSequence(11)))
    rng.normal(size=3)
    rng.spawn(2)
    back = load_checkpoint(_save_ck({"rng": rng}, tmp_path / "g.mcem"))["rng"]
    twin = clone_generator(rng)
    for other in (back, twin):
        assert type(other.bit_generator) is type(rng.bit_generator)
    expected = rng.bit_generator.state
    np.testing.assert_equal(back.bit_generator.state, expected)
    draws = [g.integers(1 << 62, size=5) for g in (rng, back, twin)]
    np.testing.assert_array_equal(draws[1], draws[0])
    np.testing.assert_array_equal(draws[2], draws[0])
    kids = [g.spawn(1)[0].integers(1 << 62, size=3) for g in (rng, back, twin)]
    np.testing.assert_array_equal(kids[1], kids[0])
    np.testing.assert_array_equal(kids[2], kids[0])


# ------------------------------------------------------------------------ one atomic writer

def test_a_rewritten_checkpoint_keeps_its_permission_bits_as_a_result_does(tmp_path):
    ck = _save_ck({"x": 1}, tmp_path / "run.mcem")
    os.chmod(ck, 0o640)
    save_checkpoint(ck, {"x": 2})
    assert stat.S_IMODE(os.stat(ck).st_mode) == 0o640 and load_checkpoint(ck) == {"x": 2}
    res = _save(_small_result(), tmp_path / "fit.npz")
    os.chmod(res, 0o604)
    mcem.save_result(_small_result(), res)
    assert stat.S_IMODE(os.stat(res).st_mode) == 0o604
    assert sorted(os.listdir(tmp_path)) == ["fit.npz", "run.mcem"]


def test_the_atomic_writer_streams_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "f.bin"
    atomic.write_atomic(str(target), b"old")

    def half(fh):
        fh.write(b"new, but")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_atomic(str(target), half, prefix=atomic.RESULT_TMP_PREFIX)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]
    atomic.write_atomic(str(target), lambda fh: fh.write(b"streamed"))
    assert target.read_bytes() == b"streamed" and os.listdir(tmp_path) == ["f.bin"]


# ------------------------------------------------------------------------ decoding

@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_result_node_is_named_by_its_path(kind):
    path = crafted_result(kind)
    with pytest.raises(ValueError, match=r"fit\.npz: corrupted mcem result: " + MALFORMED[kind][1]):
        mcem.load_result(path)


def test_two_nodes_naming_one_array_entry_get_independent_arrays(tmp_path):
    res = _small_result()
    res["a"], res["b"] = np.arange(4.0), np.zeros(4)
    path = _save(res, tmp_path / "fit.npz")

    def same_entry(meta, arrays):
        del arrays[meta["fields"]["b"]["key"]]
        meta["fields"]["b"]["key"] = meta["fields"]["a"]["key"]

    _rewrite_result(path, same_entry)
    back = mcem.load_result(path)
    back["a"][0] = 99.0
    np.testing.assert_array_equal(back["b"], np.arange(4.0))


def test_arrays_come_back_in_their_memory_order(tmp_path):
    res = _small_result()
    res["settings"]["f"] = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    back = mcem.load_result(_save(res, tmp_path / "fit.npz"))
    assert back.settings["f"].flags.f_contiguous and not back.settings["f"].flags.c_contiguous
    np.testing.assert_array_equal(back.settings["f"], res["settings"]["f"])


def test_a_result_holds_no_chain_state(tmp_path):
    """The result spelling has no state node: a named tuple is stored as a plain tuple, and a
    crafted state node is refused."""
    state = EStepState(kernel_state=(1, 2), n_runs=3)
    res = _small_result()
    res["settings"]["state"] = state
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = mcem.load_result(_save(res, tmp_path / "fit.npz"))
    assert type(back.settings["state"]) is tuple and back.settings["state"] == ((1, 2), 3)
    _rewrite_result(tmp_path / "fit.npz", _set_setting("s", {"$t": "nt", "cls": "EStepState", "f": {}}))
    with pytest.raises(ValueError, match=r"settings\['s'\] has an unknown node type 'nt'"):
        mcem.load_result(tmp_path / "fit.npz")

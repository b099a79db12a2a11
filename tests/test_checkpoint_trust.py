"""Checkpoints and saved results: files are data (never code), tampering is refused clearly,
a checkpoint belongs to one model, killed writers leave nothing behind for long, and a write
costs the same at every iteration."""

import io
import json
import os
import re
import sys
import warnings

import numpy as np
import pytest

import mcem
from mcem import checkpoint as ckmod
from mcem import constraints as C
from mcem.checkpoint import CHUNK_ROWS, load_checkpoint, save_checkpoint
from mcem.models import genetic_linkage
from mcem.serial.codec import Encoder
from mcem.serial.spelling import CHECKPOINT

FAST = dict(method="mcem", schedule="fixed", m_init=20, n_chains=2, tol=1e-12)


def _fit(model, path=None, max_iter=3, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mcem.fit(model, rng=5, checkpoint=path, **{**FAST, "max_iter": max_iter, **kw})


def _resume(path, model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mcem.resume(path, model, **kw)


def _same(a, b):
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], strict=True)
    assert len(a.history) == len(b.history)
    for ra, rb in zip(a.history, b.history, strict=True):
        assert [k for k in ra if k != "seconds"] == [k for k in rb if k != "seconds"]
        for k in ra:
            if k == "params":
                for n in ra[k]:
                    np.testing.assert_array_equal(ra[k][n], rb[k][n], strict=True)
            elif k != "seconds":
                assert ra[k] == rb[k] or (ra[k] != ra[k] and rb[k] != rb[k]), k
    for k in a.draws:
        np.testing.assert_array_equal(a.draws[k], b.draws[k], strict=True)


def _rows_equal(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert list(ra) == list(rb)
        for k in ra:
            if k == "params":
                for n in ra[k]:
                    np.testing.assert_array_equal(ra[k][n], rb[k][n], strict=True)
            else:
                assert type(ra[k]) is type(rb[k]) and (ra[k] == rb[k] or ra[k] != ra[k]), k


def _edit_main(path, edit):
    """Rewrite the main file's JSON description with ``edit(meta)`` (the arrays kept)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop(ckmod._META).tobytes())
    edit(meta)
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{ckmod._META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    with open(path, "wb") as fh:
        fh.write(buf.getvalue())


def _tree_item(meta, key):
    return next(v for k, v in meta["tree"]["v"] if k == key)


def _dict_item(node, key):
    return next(v for k, v in node["v"] if k == key)


def _write_format_1(path, payload):
    """A checkpoint in the previous format (one archive, history inline, module:qualname classes)."""
    p = Encoder(CHECKPOINT, prefix="a")
    tree = p.pack(payload, "payload")

    def legacy(node):
        if isinstance(node, dict):
            if node.get("t") == "nt":
                node["cls"] = ":".join(ckmod.STATE_CLASSES[node["cls"]])
            for v in node.values():
                legacy(v)
        elif isinstance(node, list):
            for v in node:
                legacy(v)

    legacy(tree)
    meta = json.dumps({"format": "mcem-checkpoint/1", "tree": tree}).encode()
    with open(path, "wb") as fh:
        np.savez(fh, **p.arrays, **{ckmod._META: np.frombuffer(meta, dtype=np.uint8)})


# ------------------------------------------------------------------------ 1. files are never code

def _crafted(tmp_path):
    """(class string, fields) that, rebuilt by importing and calling, would leave a trace."""
    m = {i: tmp_path / f"marker{i}" for i in range(6)}
    s = lambda v: {"t": "s", "v": v}  # noqa: E731
    return m, [
        ("mcem.checkpoint:os.system", {"command": s(f"touch {m[0]}")}),
        ("mcem.checkpoint:importlib.import_module", {"name": s("this")}),
        ("mcem.checkpoint:json.codecs.builtins.open", {"file": s(str(m[2])), "mode": s("w")}),
        ("builtins:open", {"file": s(str(m[3])), "mode": s("w")}),
        ("mcem.io:np.save", {"file": s(str(m[4])), "arr": s(1)}),
        ("mcem.kernels:metropolis.np.save", {"file": s(str(m[5])), "arr": s(1)}),
    ]


@pytest.mark.parametrize("deep", [False, True], ids=["state", "kernel_state"])
def test_a_checkpoint_naming_code_is_refused_and_nothing_runs(tmp_path, deep):
    ck = tmp_path / "run.mcem"
    _fit(genetic_linkage(), ck)
    raw = ck.read_bytes()
    markers, cases = _crafted(tmp_path)
    sys.modules.pop("this", None)
    for cls, fields in cases:
        ck.write_bytes(raw)
        crafted = {"t": "nt", "cls": cls, "f": fields}

        def edit(meta, crafted=crafted):
            loop = _tree_item(meta, "loop")
            state = _dict_item(loop, "state")
            if deep:
                state["f"]["kernel_state"] = crafted
            else:
                loop["v"] = [[k, crafted if k == "state" else v] for k, v in loop["v"]]

        _edit_main(ck, edit)
        node = r"loop\['state'\]" + (r"\.kernel_state" if deep else "")
        with pytest.raises(ValueError, match=rf"checkpoint '.*run\.mcem' cannot be read: {node} names the "
                                             rf"class '{re.escape(cls)}', which is not one of mcem's"):
            mcem.resume(ck, genetic_linkage())
        with pytest.raises(ValueError, match=re.escape(cls)):
            load_checkpoint(ck)
    assert not [m for m in markers.values() if m.exists()]
    assert "this" not in sys.modules


def test_format_1_files_are_read_but_only_their_state_classes_rebuilt(tmp_path):
    model = genetic_linkage()
    full = _fit(model, max_iter=8, sampler="gibbs")
    _fit(model, tmp_path / "new.mcem", max_iter=4, sampler="gibbs")
    payload = load_checkpoint(tmp_path / "new.mcem")
    del payload["model"]  # format 1 had no fingerprint
    old = tmp_path / "old.mcem"
    _write_format_1(old, payload)
    with np.load(old, allow_pickle=False) as z:
        text = z[ckmod._META].tobytes().decode()
    assert '"mcem.kernels.gibbs:GibbsState"' in text and '"mcem.estep:EStepState"' in text
    _same(full, _resume(old, model, max_iter=8))  # the legacy spelling maps to the allow-list
    markers, cases = _crafted(tmp_path)
    sys.modules.pop("this", None)
    for cls, fields in cases:
        _write_format_1(old, payload)

        def edit(meta, cls=cls, fields=fields):
            loop = _tree_item(meta, "loop")
            _dict_item(loop, "state")["f"]["kernel_state"] = {"t": "nt", "cls": cls, "f": fields}

        _edit_main(old, edit)
        with pytest.raises(ValueError, match=rf"old\.mcem' cannot be read: loop\['state'\]\.kernel_state "
                                             rf"names the class '{re.escape(cls)}'"):
            mcem.resume(old, model)
    assert not [m for m in markers.values() if m.exists()] and "this" not in sys.modules
    # a format-1 file with another model's declarations is still refused (spec check)
    _write_format_1(old, payload)
    other = mcem.Model(model.log_joint_fn, params={"theta": C.positive}, latents={"x2": mcem.Discrete(126)},
                       data=model.data, name=model.name)
    with pytest.raises(ValueError, match="model does not match the checkpoint .*old.mcem': the checkpoint has"):
        mcem.resume(old, other)


@pytest.mark.parametrize("model, sampler, state", [
    (genetic_linkage, "auto", "ExactState"),
    (genetic_linkage, "gibbs", "GibbsState"),
    (lambda: _re_model(), "rwm", "RWMState"),
    (lambda: _re_model(), "emcee", "EmceeState"),
    (lambda: mcem.models.gaussian_hmm(np.sin(np.arange(30.0)) + np.arange(30.0) % 3, 2), "ffbs", "FFBSState"),
    (lambda: mcem.models.local_level(np.cumsum(np.cos(np.arange(25.0))) + 0.5), "kalman", "KalmanState"),
    (lambda: mcem.models.stochastic_volatility(np.sin(np.arange(12.0))), "csmc", "CSMCState"),
], ids=["exact", "gibbs", "rwm", "emcee", "ffbs", "kalman", "csmc"])
def test_every_kernel_state_is_rebuilt_and_resumes_bit_identically(tmp_path, model, sampler, state):
    kw = dict(sampler=sampler, n_chains=8)
    full = _fit(model(), max_iter=7, **kw)
    ck = tmp_path / "run.mcem"
    _fit(model(), ck, max_iter=4, **kw)
    with np.load(ck, allow_pickle=False) as z:
        assert f'"cls":"{state}"' in z[ckmod._META].tobytes().decode()
    _same(full, _resume(ck, model(), max_iter=7))


def test_clone_generator_is_an_independent_copy():
    rng = np.random.default_rng(3)
    rng.normal(size=5)
    rng.spawn(2)
    twin = ckmod.clone_generator(rng)
    assert twin is not rng and twin.bit_generator is not rng.bit_generator
    np.testing.assert_array_equal(twin.normal(size=7), rng.normal(size=7))
    a, b = twin.spawn(1)[0], rng.spawn(1)[0]
    np.testing.assert_array_equal(a.integers(1 << 60, size=3), b.integers(1 << 60, size=3))
    with pytest.raises(TypeError, match="bit generator"):
        Encoder(CHECKPOINT).pack(np.random.Generator(_OddBitGen()), "rng")


class _OddBitGen(np.random.PCG64):
    pass


# ------------------------------------------------------------------ 2. tampered checkpoints

def _tampered(tmp_path, alter, sampler="auto", max_iter=3):
    """A real checkpoint, loaded, altered and re-saved with the module's own writer."""
    src = tmp_path / "real.mcem"
    if not src.exists():
        _fit(genetic_linkage(), src, max_iter=max_iter, sampler=sampler)
    ck = load_checkpoint(src)
    alter(ck)
    out = tmp_path / "bad.mcem"
    save_checkpoint(out, ck)
    return out


def _set_loop(key, value):
    def alter(ck):
        ck["loop"][key] = value
    return alter


def _wider_chains(ck):
    state = ck["loop"]["state"]
    site = state.kernel_state.sites["x2"]
    sites = {"x2": site._replace(z=np.stack([site.z] * 3, axis=-1))}
    ck["loop"]["state"] = state._replace(kernel_state=state.kernel_state._replace(sites=sites))


def _out_of_support(ck):
    state = ck["loop"]["state"]
    site = state.kernel_state.sites["x2"]
    sites = {"x2": site._replace(z=site.z + 500)}
    ck["loop"]["state"] = state._replace(kernel_state=state.kernel_state._replace(sites=sites))


def _short_logp(ck):
    state = ck["loop"]["state"]
    site = state.kernel_state.sites["x2"]
    sites = {"x2": site._replace(logp=site.logp[:1])}
    ck["loop"]["state"] = state._replace(kernel_state=state.kernel_state._replace(sites=sites))


TAMPERED = [
    ("unknown method", lambda ck: ck.update(method="mcmc"),
     r"bad\.mcem' is invalid: unknown method 'mcmc'; expected one of \['em', 'gem', 'mcem', 'saem', 'vbem'\]"),
    ("history removed", lambda ck: ck.pop("history"), r"bad\.mcem' cannot be read: it lacks 'history'"),
    ("history cut short", lambda ck: ck.update(history=ck["history"][:2]),
     r"bad\.mcem' is invalid: the iteration counter loop\['t'\] = 3 disagrees with the history's 2 row\(s\) "
     r"\(expected 4"),
    ("chains of the wrong shape", _wider_chains,
     r"bad\.mcem' is invalid: loop\['state'\]: the chains' positions of latent 'x2' have shape \(2, 3\); the "
     r"model declares 'x2' of shape \(\), so expected \(n_chains,\)"),
    ("chains outside the support", _out_of_support,
     r"bad\.mcem' is invalid: loop\['state'\]: the chains' positions of latent 'x2' lie outside its support"),
    ("cached densities of the wrong shape", _short_logp,
     r"bad\.mcem' is invalid: loop\['state'\]\.kernel_state\.sites\['x2'\]\.logp has shape \(1,\), expected "
     r"one row per chain \(2\)"),
    ("negative iteration counter", _set_loop("t", -1),
     r"bad\.mcem' is invalid: the counter loop\['t'\] is -1; expected an int >= 0"),
    ("counter of the wrong type", _set_loop("m", "20"),
     r"bad\.mcem' is invalid: the counter loop\['m'\] is '20'; expected an int >= 1"),
    ("theta outside its constraint", _set_loop("theta", {"theta": np.array(1.5)}),
     r"bad\.mcem' is invalid: loop\['theta'\]\['theta'\] must lie in interval\(0\.0, 1\.0\), got"),
    ("theta missing", _set_loop("theta", {}),
     r"bad\.mcem' is invalid: loop\['theta'\] is missing parameter\(s\) \['theta'\]"),
    ("loop state key removed", lambda ck: ck["loop"].pop("rng"),
     r"bad\.mcem' is invalid: the loop state lacks \['rng'\] \(method 'mcem'\)"),
    ("generator replaced", _set_loop("rng", 7), r"bad\.mcem' is invalid: loop\['rng'\] is a int, not a numpy"),
    ("state replaced", _set_loop("state", {"x2": np.zeros(2)}),
     r"bad\.mcem' is invalid: loop\['state'\] is a dict, expected a EStepState"),
    ("unknown option", lambda ck: ck["options"].update(n_chain=3),
     r"bad\.mcem' is invalid: unknown option\(s\) \['n_chain'\] for method 'mcem'"),
]


def tampered_checkpoint(kind):
    """A tampered checkpoint of ``genetic_linkage()`` in a new temporary folder (for the
    bad-input matrix): ``kind`` is one of "method", "history", "chains", "counter", "theta",
    "bitgen", "code", "chunk"; "fine" gives the untouched checkpoint."""
    import tempfile

    folder = tempfile.mkdtemp()
    src = os.path.join(folder, "real.mcem")
    _fit(genetic_linkage(), src, max_iter=CHUNK_ROWS + 2 if kind == "chunk" else 3, sampler="gibbs")
    if kind == "fine":
        return src
    if kind in ("bitgen", "code"):
        def edit(meta):
            loop = _tree_item(meta, "loop")
            if kind == "bitgen":
                _dict_item(loop, "rng")["bitgen"] = "RandomState"
            else:
                _dict_item(loop, "state")["f"]["kernel_state"] = {
                    "t": "nt", "cls": "mcem.checkpoint:os.system", "f": {"command": "true"}}

        _edit_main(src, edit)
        return src
    if kind == "chunk":
        (chunk,) = os.listdir(src + ".history")
        os.unlink(os.path.join(src + ".history", chunk))
        return src
    alter = {"method": lambda ck: ck.update(method="mcmc"), "history": lambda ck: ck.pop("history"),
             "chains": _wider_chains, "counter": _set_loop("t", -1),
             "theta": _set_loop("theta", {"theta": np.array(1.5)})}[kind]
    ck = load_checkpoint(src)
    alter(ck)
    out = os.path.join(folder, "bad.mcem")
    save_checkpoint(out, ck)
    return out


def test_the_matrix_helper_builds_what_it_says():
    for kind, match in [("method", "unknown method"), ("history", "lacks 'history'"), ("chains", "have shape"),
                        ("counter", r"loop\['t'\] is -1"), ("theta", "must lie in"),
                        ("bitgen", "RandomState"), ("code", "os.system"), ("chunk", "is missing")]:
        with pytest.raises(ValueError, match=match):
            mcem.resume(tampered_checkpoint(kind), genetic_linkage())


@pytest.mark.parametrize("what, alter, match", TAMPERED, ids=[t[0] for t in TAMPERED])
def test_tampered_checkpoints_end_in_a_clear_error_before_the_run(tmp_path, what, alter, match):
    path = _tampered(tmp_path, alter, sampler="gibbs")
    calls = []
    with pytest.raises(ValueError, match=match):
        mcem.resume(path, genetic_linkage(), callback=calls.append)
    assert calls == []  # refused before any iteration ran


def test_unknown_bit_generator_and_malformed_nodes(tmp_path):
    ck = tmp_path / "run.mcem"
    _fit(genetic_linkage(), ck)
    raw = ck.read_bytes()
    edits = [
        (lambda m: _dict_item(_tree_item(m, "loop"), "rng").update(bitgen="RandomState"),
         r"loop\['rng'\] names the bit generator 'RandomState'; only numpy's PCG64, PCG64DXSM, Philox, SFC64, "
         r"MT19937 are rebuilt"),
        (lambda m: _dict_item(_tree_item(m, "loop"), "rng").update(bitgen="__import__"),
         r"names the bit generator '__import__'"),
        (lambda m: _dict_item(_tree_item(m, "loop"), "rng")["state"].update(bit_generator="MT19937"),
         r"loop\['rng'\] holds an invalid PCG64 generator state"),
        (lambda m: _dict_item(_tree_item(m, "loop"), "state")["f"].pop("n_runs"),
         r"loop\['state'\] is a EStepState with fields \['kernel_state'\], expected \['kernel_state', 'n_runs'\]"),
        (lambda m: _tree_item(m, "loop")["v"].append(["x", {"t": "a", "k": "nope"}]),
         r"loop\['x'\] refers to an array entry 'nope' the archive lacks"),
        (lambda m: _tree_item(m, "loop")["v"].append(["x", {"t": "x", "d": "|O", "s": [1], "b": ""}]),
         r"loop\['x'\] is an inline array of dtype object"),
        (lambda m: _tree_item(m, "loop")["v"].append(["x", {"t": "x", "d": "<f8", "s": [3], "b": "AAAA"}]),
         r"loop\['x'\]: inline array of 3 bytes for dtype float64 and shape \(3,\)"),
        (lambda m: _tree_item(m, "loop")["v"].append(["x", {"t": "eval", "v": "1"}]),
         r"loop\['x'\] has an unknown node type 'eval'"),
        (lambda m: m["history"].update(n_rows=99), r"not the 99 rows it records"),
        (lambda m: m.update(format="mcem-checkpoint/9"), r"its format is 'mcem-checkpoint/9'"),
    ]
    for edit, match in edits:
        ck.write_bytes(raw)
        _edit_main(ck, edit)
        with pytest.raises(ValueError, match=r"checkpoint '.*run\.mcem' cannot be read: .*" + match):
            mcem.resume(ck, genetic_linkage())


def test_missing_or_modified_history_chunks_are_refused(tmp_path):
    ck = tmp_path / "run.mcem"
    _fit(genetic_linkage(), ck, max_iter=2 * CHUNK_ROWS + 5)
    hdir = tmp_path / "run.mcem.history"
    chunks = sorted(hdir.iterdir())
    assert len(chunks) == 2
    saved = {p: p.read_bytes() for p in chunks}
    # a chunk modified (well-formed: re-written with other rows)
    payload = load_checkpoint(ck)
    other = tmp_path / "other.mcem"
    payload["history"] = [dict(r, loglik=0.0) for r in payload["history"]]
    save_checkpoint(other, payload)
    (other_chunk,) = [p for p in (tmp_path / "other.mcem.history").iterdir() if p.name.endswith("000000.npz")]
    chunks[0].write_bytes(other_chunk.read_bytes())
    with pytest.raises(ValueError, match=r"run\.mcem' cannot be read: its history chunk "
                                         r"'run\.mcem\.history/[0-9a-f]{16}-000000\.npz' is not chunk 0 of this "
                                         r"checkpoint"):
        mcem.resume(ck, genetic_linkage())
    chunks[0].write_bytes(saved[chunks[0]])
    chunks[1].write_bytes(saved[chunks[0]])  # chunk 0 in the place of chunk 1
    with pytest.raises(ValueError, match=r"-000001\.npz' is not chunk 1 of this checkpoint"):
        mcem.resume(ck, genetic_linkage())
    chunks[1].unlink()
    with pytest.raises(ValueError, match=r"run\.mcem' cannot be read: its history chunk "
                                         r"'run\.mcem\.history/[0-9a-f]{16}-000001\.npz' is missing \(keep the "
                                         r"folder 'run\.mcem\.history' beside the checkpoint\)"):
        mcem.resume(ck, genetic_linkage())
    chunks[1].write_bytes(saved[chunks[1]][:-40])
    with pytest.raises(ValueError, match=r"-000001\.npz'.*(truncated or corrupted|is not chunk 1)"):
        mcem.resume(ck, genetic_linkage())
    chunks[1].write_bytes(saved[chunks[1]])
    assert len(_resume(ck, genetic_linkage(), max_iter=2 * CHUNK_ROWS + 6).history) == 2 * CHUNK_ROWS + 7


# ------------------------------------------------------------------------ 3. the same model

def _re_model(y=(0.3, -1.2, 2.0), w=(1.0, 2.0, 3.0), sigma=C.positive, name="re", K=None):
    data = {"y": np.array(y), "w": np.array(w)}

    def log_joint(theta, z, data):
        u = z["u"]
        return (-0.5 * data["w"] * (data["y"] - u) ** 2 / theta["sigma"] ** 2 - np.log(np.abs(theta["sigma"]))
                - 0.5 * (u - theta["mu"]) ** 2)

    latents = {"u": mcem.Continuous(shape=3, unit=True)}
    if K is not None:
        latents["k"] = mcem.Discrete(K)
        base = log_joint

        def log_joint(theta, z, data):  # noqa: F811 - the discrete latent adds nothing
            return base(theta, z, data) + 0.0 * z["k"][..., None]

    return mcem.Model(log_joint, params={"mu": C.real, "sigma": sigma}, latents=latents, data=data, name=name,
                      init={"sigma": 1.0})


@pytest.fixture
def re_checkpoint(tmp_path):
    path = tmp_path / "re.mcem"
    _fit(_re_model(), path, max_iter=2, sampler="rwm")
    return path


@pytest.mark.parametrize("model, match", [
    (lambda: _re_model(y=(0.3, -1.2, 2.5)), r"the data differ \(data\['y'\]\)$"),
    (lambda: _re_model(w=(1.0, 2.0, 3.0001), y=(0.3, -1.2, 2.1)), r"the data differ \(data\['y'\], data\['w'\]\)$"),
    (lambda: _re_model(sigma=C.real), r"parameter 'sigma' is positive in the checkpoint and real in the model$"),
    (lambda: _re_model(name="other"), r"the model is named 're' in the checkpoint and 'other' here$"),
], ids=["data y", "data y and w", "constraint", "name"])
def test_resume_refuses_another_model_saying_what_differs(re_checkpoint, model, match):
    calls = []
    with pytest.raises(ValueError, match=r"resume: model does not match the checkpoint '.*re\.mcem': " + match):
        mcem.resume(re_checkpoint, model(), callback=calls.append)
    assert calls == []
    _resume(re_checkpoint, _re_model(), max_iter=3)  # the same model, built again, resumes


def test_resume_refuses_another_number_of_states(tmp_path):
    """Same names and shapes as before (the old check), but K differs."""
    path = tmp_path / "k.mcem"
    _fit(_re_model(K=3), path, max_iter=2, sampler={"u": "rwm", "k": "gibbs"})
    with pytest.raises(ValueError, match=r"latent 'k' is Discrete\(K=3, shape=\(\), unit=False\) in the checkpoint "
                                         r"and Discrete\(K=4, shape=\(\), unit=False\) in the model"):
        mcem.resume(path, _re_model(K=4))


def test_a_checkpoint_without_fingerprint_falls_back_to_the_declarations(re_checkpoint, tmp_path):
    payload = load_checkpoint(re_checkpoint)
    del payload["model"]
    old = tmp_path / "old.mcem"
    _write_format_1(old, payload)  # the format before fingerprints
    _resume(old, _re_model(y=(0.3, -1.2, 2.5)), max_iter=3, checkpoint=False)  # data not comparable
    with pytest.raises(ValueError, match=r"model does not match the checkpoint '.*old\.mcem': the checkpoint has"):
        mcem.resume(old, _re_model(sigma=C.real))
    payload["model"] = {"name": "re"}
    save_checkpoint(old, payload)
    with pytest.raises(ValueError, match=r"the model fingerprint stored in the checkpoint is malformed"):
        mcem.resume(old, _re_model())


def test_load_result_warns_when_the_model_differs(tmp_path):
    res = _fit(_re_model(), max_iter=2, sampler="rwm")
    path = tmp_path / "fit.npz"
    mcem.save_result(res, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = mcem.load_result(path, model=_re_model())  # the same model: silent
    assert back.n_iter == 2
    with pytest.warns(UserWarning, match=r"load_result: model 're' is not the one that made the result in "
                                         r".*fit\.npz: the data differ \(data\['y'\]\)"):
        mcem.load_result(path, model=_re_model(y=(0.3, -1.2, 2.5)))
    with pytest.warns(UserWarning, match=r"parameter 'sigma' is positive in the saved result and real in the model"):
        mcem.load_result(path, model=_re_model(sigma=C.real))
    # a result that does not carry its model has no fingerprint: nothing to compare
    plain = tmp_path / "plain.npz"
    mcem.save_result(mcem.load_result(path), plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mcem.load_result(plain, model=_re_model(y=(0.3, -1.2, 2.5)))


def test_data_fingerprint_covers_structure_dtype_and_bytes():
    from mcem.serial import data_fingerprint

    base = {"y": np.arange(3.0), "n": 3, "t": (np.zeros(2), "a")}
    h = data_fingerprint(base)["sha256"]
    assert data_fingerprint({"n": 3, "t": (np.zeros(2), "a"), "y": np.arange(3.0)})["sha256"] == h  # key order
    for other in [
        {**base, "y": np.arange(3)},                       # dtype
        {**base, "y": np.arange(3.0).reshape(3, 1)},       # shape
        {**base, "y": np.array([0.0, 1.0, 2.0000001])},    # bytes
        {**base, "n": 3.0},                                # type of a scalar
        {**base, "t": [np.zeros(2), "a"]},                 # list vs tuple
        {**base, "t": (np.zeros(2), "b")},
        {"y": np.arange(3.0), "n": 3},                     # an entry less
    ]:
        assert data_fingerprint(other)["sha256"] != h
    assert data_fingerprint([np.ones(2), np.zeros(2)])["parts"].keys() == {"data[0]", "data[1]"}
    assert data_fingerprint(np.ones(2))["parts"].keys() == {"data"}


# ------------------------------------------------------------------------ 4. killed writers

def test_a_write_removes_what_a_killed_writer_of_the_same_checkpoint_left(tmp_path):
    ck = tmp_path / "run.mcem"
    hdir = tmp_path / "run.mcem.history"
    hdir.mkdir()
    mine = [tmp_path / ".mcem-ckpt-run.mcem.0123456789ab.tmp",
            hdir / ".mcem-ckpt-0123456789abcdef-000001.npz.a1b2c3d4e5f6.tmp",
            hdir / "0123456789abcdef-000000.npz"]  # a half-written main file, chunk temp, a dead run's chunk
    others = [tmp_path / ".mcem-ckpt-other.mcem.0123456789ab.tmp",
              tmp_path / ".mcem-ckpt-run.mcem.x.0123456789ab.tmp",  # belongs to "run.mcem.x"
              tmp_path / ".mcem-ckpt-run.mcem.0123456789ab.tmp.keep", hdir / "notes.txt"]
    for p in mine + others:
        p.write_bytes(b"PK\x03\x04 partial")
    _fit(genetic_linkage(), ck, max_iter=2)
    assert [p.name for p in mine if p.exists()] == []
    assert [p.name for p in others if p.exists()] == [p.name for p in others]
    # the module's writer too
    mine[0].write_bytes(b"partial")
    save_checkpoint(ck, load_checkpoint(ck))
    assert not mine[0].exists()
    # and saving a result removes a killed save's temporary file of that result
    res = _fit(genetic_linkage(), max_iter=2)
    left = tmp_path / ".fit.npz.0123456789ab.tmp"
    left.write_bytes(b"partial")
    res.save(tmp_path / "fit.npz")
    assert not left.exists()


def test_an_interrupted_first_write_of_a_new_run_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    ck = tmp_path / "run.mcem"
    first = _fit(genetic_linkage(), ck, max_iter=CHUNK_ROWS + 4)
    real = ckmod.write_atomic

    def fail_on_main(path, data, **kw):
        if os.path.basename(path) == "run.mcem":
            raise OSError("disk full")
        return real(path, data, **kw)

    payload = load_checkpoint(ck)
    payload["history"] = [dict(r, loglik=1.0) for r in payload["history"]]
    monkeypatch.setattr(ckmod, "write_atomic", fail_on_main)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(ck, payload)  # its chunk is written, the main file is not replaced
    monkeypatch.undo()
    assert len(list((tmp_path / "run.mcem.history").iterdir())) == 2
    _rows_equal(load_checkpoint(ck)["history"], first.history.rows)
    save_checkpoint(ck, payload)  # a complete write of the new run removes the old run's chunks
    assert len(list((tmp_path / "run.mcem.history").iterdir())) == 1
    _rows_equal(load_checkpoint(ck)["history"], payload["history"])


# ------------------------------------------------------------------------ 5. cost O(1) per write

def test_each_history_row_is_encoded_once_and_the_main_file_stays_bounded(tmp_path, monkeypatch):
    n_iter = 3 * CHUNK_ROWS + 10
    encoded, sizes = [], []
    real_pack = Encoder.pack

    def counting_pack(self, obj, where="state"):
        if re.fullmatch(r"history\[\d+\]", where):
            encoded.append(where)
        return real_pack(self, obj, where)

    real_save = ckmod.Checkpointer.save

    def sized_save(self, loop_state, history):
        real_save(self, loop_state, history)
        sizes.append(os.path.getsize(self.path))

    monkeypatch.setattr(Encoder, "pack", counting_pack)
    monkeypatch.setattr(ckmod.Checkpointer, "save", sized_save)
    ck = tmp_path / "run.mcem"
    res = _fit(genetic_linkage(), ck, max_iter=n_iter, checkpoint_every=0)  # a write every iteration
    monkeypatch.undo()
    assert sorted(encoded) == sorted(f"history[{i}]" for i in range(n_iter + 1))  # once each
    assert len(sizes) == n_iter
    # the main file holds at most CHUNK_ROWS - 1 rows: its size repeats with the chunk period
    assert max(sizes[2 * CHUNK_ROWS:]) <= 1.05 * max(sizes[:CHUNK_ROWS])
    assert sorted(p.name[-10:] for p in (tmp_path / "run.mcem.history").iterdir()) == \
        ["000000.npz", "000001.npz", "000002.npz"]
    with np.load(ck, allow_pickle=False) as z:
        meta = json.loads(z[ckmod._META].tobytes())
    assert meta["format"] == "mcem-checkpoint/2"
    assert meta["history"]["n_chunks"] == 3 and len(meta["history"]["tail"]) == n_iter + 1 - 3 * CHUNK_ROWS
    _rows_equal(load_checkpoint(ck)["history"], res.history.rows)


@pytest.mark.parametrize("method, opts", [
    ("mcem", dict(schedule="fixed", m_init=20, n_chains=2, sampler="gibbs")),
    ("saem", dict(burn_iter=20, draws_per_chain=2, n_chains=2)),
], ids=["mcem", "saem"])
def test_resume_across_chunks_is_bit_identical_and_rewrites_no_old_chunk(tmp_path, method, opts):
    model = genetic_linkage()
    n1, n2, n3 = CHUNK_ROWS + 6, 2 * CHUNK_ROWS + 3, 2 * CHUNK_ROWS + 20
    kw = dict(method=method, tol=1e-12, **opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = mcem.fit(model, rng=9, max_iter=n3, **kw)
        ck = tmp_path / "run.mcem"
        mcem.fit(model, rng=9, max_iter=n1, checkpoint=ck, **kw)
        tokens1 = {p.name[:16] for p in (tmp_path / "run.mcem.history").iterdir()}
        mcem.resume(ck, genetic_linkage(), max_iter=n2)
        tokens2 = {p.name[:16] for p in (tmp_path / "run.mcem.history").iterdir()}
        resumed = mcem.resume(ck, genetic_linkage(), max_iter=n3)
    assert len(tokens1) == len(tokens2) == 1 and tokens1 != tokens2  # each run its own chunks, old ones gone
    _same(full, resumed)


def test_writes_are_throttled_by_time_and_the_file_ends_current(tmp_path, monkeypatch):
    """By default a checkpoint is written at most once per second (a cheap iteration would
    otherwise be dominated by the fsync), the first iteration always, and the last state when
    the run ends at max_iter, so that resume(max_iter=more) goes on from where it stopped."""
    saved = []
    real_save = ckmod.Checkpointer.save

    def spy(self, loop_state, history):
        saved.append(loop_state["t"])
        real_save(self, loop_state, history)

    monkeypatch.setattr(ckmod.Checkpointer, "save", spy)
    ck = tmp_path / "run.mcem"
    _fit(genetic_linkage(), ck, max_iter=40)
    assert saved[0] == 1 and saved[-1] == 40 and len(saved) < 40  # iterations take far less than 1 s
    assert load_checkpoint(ck)["loop"]["t"] == 40
    saved.clear()
    _fit(genetic_linkage(), tmp_path / "every.mcem", max_iter=40, checkpoint_every=0)
    assert saved == list(range(1, 41))
    with pytest.raises(ValueError, match="checkpoint_every must be a finite non-negative number, got -1"):
        _fit(genetic_linkage(), tmp_path / "bad.mcem", checkpoint_every=-1)



@pytest.mark.parametrize("stop_at", [2, 5, 9])
def test_ctrl_c_then_resume_gives_the_uninterrupted_result(tmp_path, stop_at):
    """Ctrl-C during iteration k (after its E step drew from the generator) with the default
    checkpoint_every: the file keeps a state written at the end of an iteration, so resume
    continues to exactly the uninterrupted result."""
    full = _fit(genetic_linkage(), None, max_iter=12)

    def interrupt(row):
        if row["iter"] == stop_at:
            raise KeyboardInterrupt

    ck = tmp_path / "run.mcem"
    part = _fit(genetic_linkage(), ck, max_iter=12, callback=interrupt)
    assert part.stopped_by == "interrupted" and part.n_iter == stop_at - 1
    done = _resume(ck, genetic_linkage(), max_iter=12)
    np.testing.assert_array_equal(done.params["theta"], full.params["theta"])
    np.testing.assert_array_equal(done.history["delta_q"], full.history["delta_q"])


def test_a_current_checkpoint_without_the_model_fingerprint_is_refused(tmp_path):
    """Only a format-1 file may lack the fingerprint: removing it from a format-2 file does not
    turn the data check off."""
    src = tmp_path / "real.mcem"
    _fit(genetic_linkage(), src)
    ck = load_checkpoint(src)
    del ck["model"]
    out = tmp_path / "nofp.mcem"
    save_checkpoint(out, ck)
    with pytest.raises(ValueError, match="lacks 'model'"):
        _resume(out, genetic_linkage(counts=(125, 18, 20, 35)))


def test_an_unknown_key_in_the_loop_state_is_refused(tmp_path):
    src = tmp_path / "real.mcem"
    _fit(genetic_linkage(), src)
    ck = load_checkpoint(src)
    ck["loop"]["extra"] = 1
    out = tmp_path / "extra.mcem"
    save_checkpoint(out, ck)
    with pytest.raises(ValueError, match=r"the loop state has unknown key\(s\) \['extra'\]"):
        _resume(out, genetic_linkage())


@pytest.mark.parametrize("edit, match", [
    (lambda ck: ck["options"].update(max_iter="5"), r"its options cannot be used: options\['max_iter'\] must be an int"),
    (lambda ck: ck["options"].update(n_chains="x"), r"its options cannot be used: n_chains must be"),
    (lambda ck: ck["options"].update(tol=-1.0), r"its options cannot be used: options\['tol'\] must be a finite"),
    (lambda ck: ck["loop"].update(per_chain=10**12), r"exceed m_max"),
    (lambda ck: ck["loop"].update(m=10**30), r"exceed m_max"),
])
def test_stored_options_and_sizes_get_the_checks_of_fit(tmp_path, edit, match):
    """A crafted checkpoint cannot smuggle in an option fit() would refuse, nor sizes that would
    exhaust memory: each is a ValueError naming the file."""
    src = tmp_path / "real.mcem"
    _fit(genetic_linkage(), src)
    ck = load_checkpoint(src)
    edit(ck)
    out = tmp_path / "edited.mcem"
    save_checkpoint(out, ck)
    with pytest.raises(ValueError, match=r"checkpoint '.*edited\.mcem' is invalid: .*" + match):
        _resume(out, genetic_linkage())

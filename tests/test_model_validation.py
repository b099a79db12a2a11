"""Model construction refuses bad declarations with errors that name the argument.

``conditionals`` of the wrong type, ``unit_index`` of the wrong type, length or range, complex
parameter values (theta0, init) and data arrays of dtype object; plain objects in the data
(callables, strings, string labels) still pass, and nothing the user gave is modified.
"""

import numpy as np
import pytest

import mcem
from mcem import constraints as C
from mcem import dist


def lj(theta, z, data):
    return -0.5 * (z["u"] - theta["mu"]) ** 2


def simple_model(**kw):
    return mcem.Model(lj, params={"mu": C.real}, latents={"u": mcem.Continuous(shape=3, unit=True)}, **kw)


@mcem.model
def indexed(m, y, idx, G):
    mu = m.param("mu")
    u = m.latent("u", dist.Normal(mu, 1.0), shape=G, unit=True)
    m.observe("y", dist.Normal(u[..., np.asarray(idx).astype(int) % G], 1.0), y, unit_index=idx)


@mcem.model
def complex_init(m, y):
    mu = m.param("mu", init=1 + 1j)
    m.latent("u", dist.Normal(mu, 1.0), shape=1)


# ----------------------------------------------------------------------------- conditionals
def test_conditionals_must_be_a_dict():
    with pytest.raises(TypeError, match=r"^conditionals must be a dict \{latent name: fn\(theta, z, data\)\} or None, got list \[1\]$"):
        simple_model(conditionals=[1])
    with pytest.raises(TypeError, match=r"conditionals must be a dict .* got function"):
        simple_model(conditionals=lj)
    assert simple_model(conditionals=None).conditionals == {}
    assert set(simple_model(conditionals={"u": lj}).conditionals) == {"u"}


# ----------------------------------------------------------------------------- unit_index
def test_unit_index_of_the_wrong_type_length_or_range():
    y = np.zeros(4)
    with pytest.raises(TypeError, match=r"observe 'y': unit_index\['u'\] must be a 1-D integer array, got float64 of shape \(4,\)"):
        indexed(y=y, idx=np.array([0.0, 1.0, 1.0, 2.0]), G=3)
    with pytest.raises(TypeError, match=r"unit_index\['u'\] must be a 1-D integer array, got bool"):
        indexed(y=y, idx=np.array([True, False, True, False]), G=3)
    with pytest.raises(ValueError, match=r"observe 'y': unit_index\['u'\] must be a 1-D integer array, got int64 of shape \(2, 2\)"):
        indexed(y=y, idx=np.array([[0, 1], [1, 2]]), G=3)
    with pytest.raises(ValueError, match=r"^observe 'y': unit_index\['u'\] must lie in 0..2, got values from -1 to 2 \(first bad: -1 at index 2\)$"):
        indexed(y=y, idx=np.array([0, 1, -1, 2]), G=3)
    with pytest.raises(ValueError, match=r"unit_index\['u'\] must lie in 0..2, got values from 0 to 3 \(first bad: 3 at index 3\)"):
        indexed(y=y, idx=np.array([0, 1, 2, 3]), G=3)
    with pytest.raises(ValueError, match=r"^observe 'y': unit_index\['u'\] must have one entry per element of the first axis of the observation \(shape \(4,\)\), got 3 entries$"):
        indexed(y=y, idx=np.array([0, 1, 2]), G=3)
    with pytest.raises(ValueError, match=r"must have one entry per element of the first axis of the observation \(shape \(\)\), got 1 entries"):
        indexed(y=np.array(0.5), idx=np.array([0]), G=3)
    # the right index builds, per unit, and lists are fine
    model = indexed(y=y, idx=[0, 1, 2, 2], G=3)
    assert model.per_unit


# ----------------------------------------------------------------------------- complex theta
def test_complex_parameters_are_refused_not_truncated():
    model = simple_model()
    with pytest.raises(TypeError, match=r"^theta0\['mu'\] must be real \(a float array\), got complex \(1\+2j\)$"):
        mcem.fit(model, {"mu": 1 + 2j})
    with pytest.raises(TypeError, match=r"theta0\['mu'\] must be real"):
        model.check_theta({"mu": np.array([1 + 0j])})
    with pytest.raises(TypeError, match=r"^init\['mu'\] must be real \(a float array\), got complex 2j$"):
        simple_model(init={"mu": 2j})
    with pytest.raises(TypeError, match=r"^Continuous: init must be real \(a float array\), got complex"):
        mcem.Continuous(init=np.array([1j, 0]), shape=2)
    # strings are still refused as before, numbers of every real kind accepted
    with pytest.raises(TypeError, match=r"theta0\['mu'\] must be numeric \(a float array\), got str '1.5'"):
        model.check_theta({"mu": "1.5"})
    for v in (1, 1.5, np.float32(2.0), True, np.array(3), np.array([0.5], dtype=object)[0]):
        assert model.check_theta({"mu": v})["mu"].dtype == float
    with pytest.raises(TypeError, match=r"^param 'mu': init must be real \(a float array\), got complex \(1\+1j\)$"):
        complex_init(y=np.zeros(2))


# ----------------------------------------------------------------------------- object data
def test_object_arrays_in_data_are_refused():
    with pytest.raises(TypeError, match=r"^data\['y'\] must be a numeric array \(or an array of strings\), got an array of dtype object \(int 1 at index \(0,\)\)"):
        simple_model(data={"y": np.array([1, "a"], dtype=object)})
    with pytest.raises(TypeError, match=r"^data must be a numeric array .*dtype object \(float 1.0 at index \(0,\)\)"):
        simple_model(data=np.array([1.0, None]))
    with pytest.raises(TypeError, match=r"data\['y'\] must be a numeric array \(or an array of strings\), got a list mixing strings with other values \(float 2.5 at index \(1,\)\)"):
        simple_model(data={"y": ["a", 2.5]})
    with pytest.raises(TypeError, match=r"data\['y'\]\[1\] must be a numeric array .*dtype object \(ndarray"):
        simple_model(data={"y": (np.zeros(2), np.array([np.zeros(2), np.zeros(3)], dtype=object))})

    @mcem.model
    def obs(m, y):
        mu = m.param("mu")
        m.latent("u", dist.Normal(mu, 1.0), shape=1)

    with pytest.raises(TypeError, match=r"^data\['y'\] must be a numeric array \(or an array of strings\), got an array of dtype object"):
        obs(y=np.array([1, "a"], dtype=object))
    with pytest.raises(TypeError, match=r"^data\['y'\] must be a numeric array .*got a list mixing strings"):
        obs(y=[1, "a"])


def test_plain_objects_and_string_labels_still_pass():
    labels = np.array(["m1", "m2", "m1"])
    obj_labels = np.array(["a", "b"], dtype=object)
    given = {"f": len, "family": "binomial", "labels": labels, "obj_labels": obj_labels,
             "names": ["x", "y"], "nested": {"k": 3, "opts": [1, None]}, "x": np.arange(3.0)}
    model = simple_model(data=given)
    d = model.data
    assert d["f"] is len and d["family"] == "binomial"
    np.testing.assert_array_equal(d["labels"], labels)
    np.testing.assert_array_equal(d["obj_labels"], obj_labels)
    assert d["obj_labels"] is not obj_labels and not d["obj_labels"].flags.writeable
    assert list(d["names"]) == ["x", "y"] and d["nested"]["opts"] == [1, None]
    assert obj_labels.flags.writeable  # the user's array is untouched
    # the ready-made crossed model keeps its string labels
    y = np.array([0, 1, 1, 0, 1, 0])
    X = np.ones((6, 1))
    female = np.array(["a", "a", "b", "b", "c", "c"], dtype=object)
    model = mcem.models.crossed_logit(y, X, female, np.array(["m", "n", "m", "n", "m", "n"]))
    assert list(model.data["female_labels"]) == ["a", "b", "c"]

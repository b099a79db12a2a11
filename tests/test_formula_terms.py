"""Mixed-model formulas: designs against hand-built references, new data, bad input, and the
invariance of the design to whitespace and term order."""

import pickle
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcem.models.formula_terms import MixedDesign, RandomTerm, mixed_design


def make_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "y": rng.normal(size=n),
        "x1": rng.normal(size=n),
        "x2": rng.normal(size=n),
        "f": rng.choice(["lo", "mid", "hi"], n),
        "g": rng.choice([f"s{i}" for i in range(6)], n),
        "a": rng.choice(["A", "B", "C"], n),
        "b": rng.choice(["p", "q", "r", "s"], n),
        "h": rng.permutation(np.resize(np.arange(1, 13), n)),  # ids 1..12: sorted as numbers, not strings
        "n": rng.integers(1, 9, n).astype(float),
    })


DF = make_data()


def hand_codes(values):
    """Naive level coding: sorted distinct labels and each row's position among them."""
    levels = sorted(set(values))
    pos = {v: i for i, v in enumerate(levels)}
    return np.array([pos[v] for v in values]), tuple(levels)


def columns_by_name(names, X):
    return {nm: X[:, j] for j, nm in enumerate(names)}


# ------------------------------------------------------------------------------ fixed effects

def test_interaction_design_equals_hand_built():
    d = mixed_design("y ~ x1 * x2 + (1 | g)", DF)
    x1, x2 = DF.x1.to_numpy(), DF.x2.to_numpy()
    assert d.fixed_names == ("Intercept", "x1", "x2", "x1:x2")
    np.testing.assert_array_equal(d.X, np.column_stack([np.ones(len(DF)), x1, x2, x1 * x2]))
    np.testing.assert_array_equal(d.y, DF.y.to_numpy())
    assert d.response == "y" and d.offset is None and (d.n_obs, d.p) == (60, 4)


def test_categorical_fixed_effect_treatment_coding():
    d = mixed_design("y ~ f + x1 + (1 | g)", DF)
    ref = sorted(set(DF.f))[0]  # formulaic's reference level: the first in sorted order
    expected = {"Intercept": np.ones(len(DF)), "x1": DF.x1.to_numpy()}
    for lev in sorted(set(DF.f))[1:]:
        expected[f"f[T.{lev}]"] = (DF.f.to_numpy() == lev).astype(float)
    assert ref == "hi" and set(d.fixed_names) == set(expected) and d.p == len(expected)
    got = columns_by_name(d.fixed_names, d.X)
    for nm, col in expected.items():
        np.testing.assert_array_equal(got[nm], col, err_msg=nm)


def test_bar_inside_a_function_call_is_a_fixed_term():
    d = mixed_design("y ~ I((x1 > 0) | (x2 > 0)) + (1 | g)", DF)
    assert len(d.terms) == 1 and d.p == 2
    np.testing.assert_array_equal(d.X[:, 1], ((DF.x1 > 0) | (DF.x2 > 0)).to_numpy().astype(float))


def test_response_expression_and_intercept_only_fixed_part():
    d = mixed_design("I(y / n) ~ (1 | g)", DF)
    np.testing.assert_allclose(d.y, DF.y.to_numpy() / DF.n.to_numpy(), rtol=1e-15)
    assert d.response == "I(y / n)" and d.fixed_names == ("Intercept",)
    assert mixed_design("y ~ 0 + (1 | g)", DF).X.shape == (60, 0)


def test_offset_is_evaluated_and_not_a_column():
    d = mixed_design("y ~ x1 + offset(log(n)) + (1 | g)", DF)
    np.testing.assert_allclose(d.offset, np.log(DF.n.to_numpy()), rtol=1e-15)
    assert d.fixed_names == ("Intercept", "x1")
    two = mixed_design("y ~ offset(n) + x1 + offset(x2 * 2) + (1 | g)", DF)
    np.testing.assert_allclose(two.offset, DF.n.to_numpy() + 2 * DF.x2.to_numpy(), rtol=1e-15)


# ----------------------------------------------------------------------------- random effects

def test_correlated_slope_term():
    d = mixed_design("y ~ x1 + (x1 | g)", DF)
    codes, levels = hand_codes(DF.g.tolist())
    (t,) = d.terms
    assert isinstance(t, RandomTerm) and t.group == "g" and t.names == ("(Intercept)", "x1")
    assert t.levels == levels and (t.n_levels, t.k) == (6, 2)
    np.testing.assert_array_equal(t.index, codes)
    np.testing.assert_array_equal(t.Z, np.column_stack([np.ones(len(DF)), DF.x1]))
    assert t.index.dtype == np.int64 and t.Z.dtype == np.float64


def test_uncorrelated_double_bar_gives_one_term_per_column():
    d = mixed_design("y ~ x1 + (x1 + log(n) || g)", DF)
    codes, levels = hand_codes(DF.g.tolist())
    assert [t.names for t in d.terms] == [("(Intercept)",), ("x1",), ("log(n)",)]
    cols = [np.ones(len(DF)), DF.x1.to_numpy(), np.log(DF.n.to_numpy())]
    for t, col in zip(d.terms, cols):
        assert t.group == "g" and t.levels == levels and t.k == 1
        np.testing.assert_array_equal(t.index, codes)
        np.testing.assert_allclose(t.Z[:, 0], col, rtol=1e-15)


@pytest.mark.parametrize("bar", ["(0 + x1 | g)", "(x1 - 1 | g)", "(-1 + x1 | g)"])
def test_no_intercept_inside_the_bar(bar):
    (t,) = mixed_design(f"y ~ x1 + {bar}", DF).terms
    assert t.names == ("x1",)
    np.testing.assert_array_equal(t.Z[:, 0], DF.x1.to_numpy())


def test_factor_on_the_left_of_the_bar():
    (t,) = mixed_design("y ~ 1 + (0 + f | g)", DF).terms
    levels = sorted(set(DF.f))
    assert t.names == tuple(f"f[{lev}]" for lev in levels)
    np.testing.assert_array_equal(t.Z, np.column_stack([(DF.f == lev).to_numpy() for lev in levels]).astype(float))


def test_nested_terms_equal_hand_built_pairing():
    d = mixed_design("y ~ 1 + (1 | a/b)", DF)
    assert [t.group for t in d.terms] == ["a", "a:b"]
    a_codes, a_levels = hand_codes(DF.a.tolist())
    pairs = list(zip(DF.a, DF.b))
    pair_codes, pair_levels = hand_codes(pairs)
    assert d.terms[0].levels == a_levels
    np.testing.assert_array_equal(d.terms[0].index, a_codes)
    assert d.terms[1].levels == tuple(f"{u}:{v}" for u, v in pair_levels)
    np.testing.assert_array_equal(d.terms[1].index, pair_codes)
    inter = mixed_design("y ~ 1 + (1 | a:b)", DF).terms[0]
    assert inter.levels == d.terms[1].levels
    np.testing.assert_array_equal(inter.index, pair_codes)
    three = mixed_design("y ~ 1 + (1 | a/b/h)", DF).terms
    assert [t.group for t in three] == ["a", "a:b", "a:b:h"]
    triple_codes, _ = hand_codes(list(zip(DF.a, DF.b, DF.h)))
    np.testing.assert_array_equal(three[2].index, triple_codes)


def test_crossed_terms_and_numeric_and_categorical_levels():
    cat = DF.assign(b=pd.Categorical(DF.b, categories=["s", "r", "q", "p", "unused"]))
    d = mixed_design("y ~ x1 + (1 | h) + (1 | b)", cat)
    h_codes, h_levels = hand_codes(DF.h.tolist())  # numeric sort of the ids
    assert d.terms[0].levels == tuple(str(v) for v in h_levels) and d.terms[0].levels[:3] == ("1", "2", "3")
    np.testing.assert_array_equal(d.terms[0].index, h_codes)
    assert d.terms[1].levels == ("s", "r", "q", "p")  # category order, unused category dropped
    order = {"s": 0, "r": 1, "q": 2, "p": 3}
    np.testing.assert_array_equal(d.terms[1].index, [order[v] for v in DF.b])


def test_mapping_input_and_data_not_modified():
    before = DF.copy(deep=True)
    d = mixed_design("y ~ x1 * f + (x2 | g)", DF)
    pd.testing.assert_frame_equal(DF, before)
    m = mixed_design("y ~ x1 * f + (x2 | g)", {c: DF[c].to_numpy() for c in DF.columns})
    np.testing.assert_array_equal(m.X, d.X)
    np.testing.assert_array_equal(m.terms[0].Z, d.terms[0].Z)
    np.testing.assert_array_equal(m.terms[0].index, d.terms[0].index)
    with pytest.raises(ValueError):
        d.X[0, 0] = 1.0  # the design is read-only


def test_repr_describe_and_pickle():
    d = mixed_design("y ~ x1 + offset(log(n)) + (x1 | g) + (1 | a/b)", DF)
    r = repr(d)
    assert "n_obs=60" in r and "p=2" in r and "g: 6 levels, k=2 ((Intercept), x1)" in r and "a:b:" in r
    text = d.describe()
    lines = text.splitlines()
    assert lines[1] == "Random effects:" and lines[2].split() == ["Groups", "Name", "Levels"]
    assert lines[3].split() == ["g", "(Intercept)", "6"] and lines[4].split() == ["x1"]
    n_ab = len(set(zip(DF.a, DF.b)))
    assert lines[6].split() == ["a:b", "(Intercept)", str(n_ab)] and "Offset: log(n)" in text
    back = pickle.loads(pickle.dumps(d))
    np.testing.assert_array_equal(back.design_for(DF).X, d.X)


# ------------------------------------------------------------------------------------ new data

def test_design_for_new_data_with_unseen_level():
    d = mixed_design("y ~ center(x1) + f + offset(log(n)) + (x2 | g) + (1 | a:b)", DF)
    new = DF.drop(columns="y").iloc[:5].copy()
    new["g"] = ["s3", "zz", "s0", "s3", "s5"]
    new["a"] = ["A", "A", "Z", "C", "B"]
    new["f"] = ["mid", "lo", "hi", "hi", "mid"]
    e = d.design_for(new)
    assert isinstance(e, MixedDesign) and e.fixed_names == d.fixed_names and e.n_obs == 5
    assert np.isnan(e.y).all()
    cols = columns_by_name(e.fixed_names, e.X)
    np.testing.assert_allclose(cols["center(x1)"], new.x1 - DF.x1.mean(), rtol=1e-12)  # training mean
    np.testing.assert_array_equal(cols["f[T.mid]"], [1, 0, 0, 0, 1])
    np.testing.assert_allclose(e.offset, np.log(new.n), rtol=1e-15)
    g_pos = {lev: i for i, lev in enumerate(d.terms[0].levels)}
    np.testing.assert_array_equal(e.terms[0].index, [g_pos["s3"], -1, g_pos["s0"], g_pos["s3"], g_pos["s5"]])
    np.testing.assert_array_equal(e.terms[0].Z, np.column_stack([np.ones(5), new.x2]))
    assert e.terms[0].levels == d.terms[0].levels
    ab_pos = {lev: i for i, lev in enumerate(d.terms[1].levels)}
    want = [ab_pos.get(f"{u}:{v}", -1) for u, v in zip(new.a, new.b)]
    assert want[2] == -1 and sum(w >= 0 for w in want) >= 2
    np.testing.assert_array_equal(e.terms[1].index, want)
    same = d.design_for(DF)  # the training data give the training design back
    np.testing.assert_array_equal(same.X, d.X)
    np.testing.assert_array_equal(same.y, d.y)
    np.testing.assert_array_equal(same.terms[1].index, d.terms[1].index)


def test_design_for_numeric_ids_given_as_floats():
    d = mixed_design("y ~ 1 + (1 | h)", DF)
    e = d.design_for({"h": np.array([1.0, 12.0, 13.0])})
    pos = {lev: i for i, lev in enumerate(d.terms[0].levels)}
    np.testing.assert_array_equal(e.terms[0].index, [pos["1"], pos["12"], -1])


# ------------------------------------------------------------------------------------ bad input

def _with(**cols):
    return DF.assign(**cols)


BAD = [
    ("y ~ x1", DF, "formula 'y ~ x1' has no random-effect term"),
    ("y ~ x1 + (1 | g", DF, r"formula .* unclosed '\('"),
    ("y ~ x1) + (1 | g)", DF, r"formula .* unbalanced '\)'"),
    ("y ~ x1 | g", DF, "formula .* whole terms in parentheses"),
    ("y ~ x1:(1 | g)", DF, "formula .* whole terms in parentheses"),
    ("y ~ x1 - (1 | g)", DF, r"formula .* must be added with '\+'"),
    ("y ~ x1 + (1 | g | a)", DF, r"formula .* one '\|' or '\|\|'"),
    ("y ~ x1 + ( | g)", DF, "formula .* needs effects on the left"),
    ("y ~ x1 + (1 || )", DF, "formula .* grouping factor on the right"),
    ("y ~ x1 + (1 | g + a)", DF, "formula .* grouping factor of .* must be column names"),
    ("y ~ x1 + (0 | g)", DF, r"formula .*\(0 \| g\) has no effects"),
    ("~ x1 + (1 | g)", DF, "formula .* a response is needed"),
    ("cbind(y, n) ~ x1 + (1 | g)", DF, r"formula .* cbind\(successes, failures\) response is not supported"),
    ("y ~ x1 ~ x2 + (1 | g)", DF, "formula .* expected one '~'"),
    ("y ~ x1 + + (1 | g)", DF, "formula .* has no term after it"),
    ("y ~ x1 + offset() + (1 | g)", DF, r"formula .* offset\(\) needs an expression"),
    ("y ~ x1 + (1 | zz)", DF, r"data has no column\(s\) \['zz'\]"),
    ("y ~ zz + (1 | g)", DF, r"data has no column\(s\) \['zz'\]"),
    ("y ~ x1 + (1 | g)", _with(x1=np.where(DF.index == 3, np.nan, DF.x1)),
     r"data has missing values in column\(s\) \['x1'\].*dropna"),
    ("y ~ x1 + (1 | g)", _with(g=DF.g.where(DF.index != 7, None)), r"missing values in column\(s\) \['g'\]"),
    ("y ~ x1 + (1 | one)", _with(one="same"), "data: the grouping factor 'one' .* has one level"),
    ("g ~ x1 + (1 | a)", DF, r"data: the response 'g' .* must be numeric; column\(s\) \['g'\]"),
    ("y ~ log(x1) + (1 | g)", DF, r"data: .* non-finite values in column\(s\) \['log\(x1\)'\]"),
    ("y ~ x1 + (1 | g)", {"y": np.ones(3), "x1": np.ones(2), "g": np.arange(3)}, "data columns must have equal"),
    ("y ~ x1 + (1 | g)", {"y": np.ones((3, 2))}, "data columns must be 1-D"),
    ("y ~ x1 + (1 | g)", DF.iloc[:0], "data has no rows"),
]


@pytest.mark.parametrize("formula, data, message", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_input_messages(formula, data, message):
    with pytest.raises(ValueError, match=message):
        mixed_design(formula, data)


def test_bad_types_and_bad_new_data():
    with pytest.raises(TypeError, match="formula must be a string"):
        mixed_design(["y ~ x1 + (1 | g)"], DF)
    with pytest.raises(TypeError, match="data must be a pandas DataFrame or a mapping"):
        mixed_design("y ~ x1 + (1 | g)", DF.to_numpy())
    d = mixed_design("y ~ f + (1 | g)", DF)
    with pytest.raises(ValueError, match="data: .* not seen in the training"):
        d.design_for(DF.assign(f="new"))
    with pytest.raises(ValueError, match=r"data has no column\(s\) \['g'\]"):
        d.design_for(DF.drop(columns="g"))


# ------------------------------------------------------------------------- invariance property

FIXED = [["x1"], ["x2"], ["x1", ":", "x2"], ["C", "(", "f", ")"], ["log", "(", "n", ")"]]
RANDOM = [["(", "1", "|", "g", ")"], ["(", "x1", "|", "a", ")"], ["(", "0", "+", "x2", "||", "b", ")"],
          ["(", "1", "|", "a", "/", "b", ")"], ["(", "log", "(", "n", ")", "|", "h", ")"]]


def canonical(d):
    fixed = {nm: d.X[:, j].tobytes() for j, nm in enumerate(d.fixed_names)}
    terms = sorted((t.group, t.names, t.levels, t.index.tobytes(), t.Z.tobytes()) for t in d.terms)
    return d.y.tobytes(), fixed, terms


@settings(max_examples=25)
@given(fixed=st.permutations(range(len(FIXED))), n_fixed=st.integers(0, len(FIXED)),
       rand=st.permutations(range(len(RANDOM))), n_rand=st.integers(1, len(RANDOM)),
       interleave=st.randoms(use_true_random=False), spaces=st.lists(st.sampled_from(["", " ", "  ", "\t", "\n"]),
                                                                   min_size=80, max_size=80))
def test_whitespace_and_term_order_do_not_change_the_design(fixed, n_fixed, rand, n_rand, interleave, spaces):
    chosen = [FIXED[i] for i in fixed[:n_fixed]] + [RANDOM[i] for i in rand[:n_rand]]
    reference = " + ".join("".join(t) for t in sorted(chosen, key=lambda t: (t[0] == "(", "".join(t))))
    interleave.shuffle(chosen)
    tokens = ["y", "~"] + [tok for k, term in enumerate(chosen) for tok in (["+"] if k else []) + term]
    spaced = "".join(tok + spaces[k % len(spaces)] for k, tok in enumerate(tokens))
    a = mixed_design(f"y~{reference}", DF)
    b = mixed_design(spaced, DF)
    assert canonical(a) == canonical(b), (reference, spaced)
    assert re.sub(r"\s", "", b.formula) == re.sub(r"\s", "", spaced)

"""Mixed-model formulas in lme4's syntax, turned into fixed and random-effect designs.

``mixed_design("y ~ x1 * x2 + offset(log(n)) + (x | g) + (1 | a/b)", data)`` removes the bar terms
from the right-hand side and gives the rest to ``formulaic`` (treatment coding, its column names and
transforms). Each bar term becomes :class:`RandomTerm` objects whose columns formulaic builds from
the bar's left side (intercept first, named ``"(Intercept)"`` as in lme4): ``(x | g)`` one term with
correlated effects; ``(x || g)`` one single-column term per column; ``(0 + x | g)`` no intercept;
``(1 | a:b)`` the observed pairs, labelled ``"a_level:b_level"``; ``(1 | a/b)`` the same as
``(1 | a) + (1 | a:b)``. ``offset(expr)`` is evaluated and returned as ``offset``. Terms keep the
order written; levels are sorted (numerically for numeric columns, in category order for pandas
categoricals, as strings otherwise) and only observed levels are kept. Rows with missing values
are refused, not dropped. :meth:`MixedDesign.design_for` applies the training encoding to new
data, coding new group levels -1.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace

import formulaic
import numpy as np
import pandas as pd
from formulaic.errors import DataMismatchWarning, FormulaicError

__all__ = ["MixedDesign", "RandomTerm", "mixed_design"]

_OPEN, _CLOSE = "([{", ")]}"
_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`")
_OFFSET = re.compile(r"offset\(")
_QUOTED = re.compile(r"""('[^']*'|"[^"]*"|`[^`]*`)""")


@dataclass(frozen=True, eq=False)
class RandomTerm:
    """One random-effect term: its grouping factor, level codes and design columns.

    Attributes
    ----------
    group : str
        The grouping label as written, e.g. ``"Subject"`` or ``"batch:cask"``.
    index : numpy.ndarray
        ``(n_obs,)`` int64 level codes ``0..n_levels-1`` (``-1``: a level unseen in training).
    levels : tuple of str
        The level labels in code order.
    Z : numpy.ndarray
        ``(n_obs, k)`` float design columns of the term's random effects.
    names : tuple of str
        The ``k`` column names, e.g. ``("(Intercept)", "Days")``.
    """

    group: str
    index: np.ndarray
    levels: tuple
    Z: np.ndarray
    names: tuple

    @property
    def n_levels(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.levels)

    @property
    def k(self) -> int:
        """Number of random effects per level (columns of ``Z``)."""
        return self.Z.shape[1]


@dataclass(frozen=True, eq=False)
class MixedDesign:
    """Fixed and random-effect designs of a mixed-model formula on one data set.

    Attributes
    ----------
    formula : str
        The formula as given.
    response : str
        The response's name (formulaic's name of the left-hand side, e.g. ``"Reaction"``).
    y : numpy.ndarray
        ``(n_obs,)`` float response (NaN when the data have no response).
    X : numpy.ndarray
        ``(n_obs, p)`` float fixed-effect design built by formulaic.
    fixed_names : tuple of str
        formulaic's column names of ``X``, e.g. ``("Intercept", "Days")``.
    terms : tuple of RandomTerm
        One per bar term after expansion (``||`` and ``a/b`` expand to several).
    offset : numpy.ndarray or None
        ``(n_obs,)`` sum of the ``offset(...)`` terms, or None.
    """

    formula: str
    response: str
    y: np.ndarray
    X: np.ndarray
    fixed_names: tuple
    terms: tuple
    offset: np.ndarray | None = None
    _plan: object = field(default=None, repr=False)

    @property
    def n_obs(self) -> int:
        """Number of observations (rows)."""
        return self.X.shape[0]

    @property
    def p(self) -> int:
        """Number of fixed-effect columns."""
        return self.X.shape[1]

    def design_for(self, data) -> MixedDesign:
        """The same formula and encoding applied to new data.

        Parameters
        ----------
        data : pandas.DataFrame or mapping of 1-D arrays
            New observations with the columns the formula uses (the response may be absent).

        Returns
        -------
        MixedDesign
            ``X``, ``Z`` and ``offset`` with the training encoding (formulaic's model specs), level
            codes of the training levels (``-1`` for a level not seen in training), ``y`` NaN when
            the response is absent.
        """
        if self._plan is None:
            raise ValueError("design_for needs a MixedDesign made by mixed_design(formula, data)")
        return _build(self._plan, _frame(data), training=False)

    def __repr__(self) -> str:
        terms = ", ".join(f"{t.group}: {t.n_levels} levels, k={t.k} ({', '.join(t.names)})" for t in self.terms)
        off = ", offset" if self.offset is not None else ""
        return f"MixedDesign(formula={self.formula!r}, n_obs={self.n_obs}, p={self.p}{off}, terms=[{terms}])"

    def describe(self) -> str:
        """The design as text: the random-effect terms as in lme4's summary, then the fixed part.

        Returns
        -------
        str
            A "Random effects" table (groups, names, levels), the fixed-effect columns and the
            number of observations.
        """
        rows = [("Groups", "Name", "Levels")]
        for t in self.terms:
            rows += [(t.group if j == 0 else "", name, str(t.n_levels) if j == 0 else "")
                     for j, name in enumerate(t.names)]
        w = [max(len(r[c]) for r in rows) for c in range(3)]
        out = [f"Formula: {self.formula}", "Random effects:"]
        out += [f" {a:<{w[0]}} {b:<{w[1]}} {c}".rstrip() for a, b, c in rows]
        out.append(f"Fixed effects ({self.p}): {', '.join(self.fixed_names) or 'none'}")
        groups = {t.group: t.n_levels for t in self.terms}
        out.append(f"Number of obs: {self.n_obs}, groups: " + "; ".join(f"{g}, {n}" for g, n in groups.items()))
        if self.offset is not None:
            out.append("Offset: " + " + ".join(self._plan.offsets))
        return "\n".join(out)


@dataclass(frozen=True)
class _Bar:
    text: str            # the term as written, for messages
    lhs: str             # formula of its design columns
    correlated: bool     # | (True) or || (False)
    groups: tuple        # expanded grouping factors, each a tuple of column names


def _syntax(formula, why) -> ValueError:
    return ValueError(f"formula {formula!r} is not a mixed-model formula: {why}")


def _scan(text, formula):
    """Depth and whether inside a function call, for each character (None inside quotes)."""
    info, stack, quote = [], [], None
    for i, ch in enumerate(text):
        if quote or ch in "'\"`":
            info.append(None)
            quote = (None if ch == quote and text[i - 1] != "\\" else quote) if quote else ch
            continue
        if ch in _CLOSE:
            if not stack or _OPEN.index(stack[-1][0]) != _CLOSE.index(ch):
                raise _syntax(formula, f"unbalanced {ch!r} at position {i} of {text!r}")
            stack.pop()
        info.append((len(stack), any(c for _, c in stack)))
        if ch in _OPEN:  # a call if a name (or a closing bracket) comes just before
            before = text[:i].rstrip()
            stack.append((ch, bool(before) and (before[-1].isalnum() or before[-1] in "_.)]`")))
    if quote:
        raise _syntax(formula, f"unterminated quote {quote} in {text!r}")
    if stack:
        raise _syntax(formula, f"unclosed {stack[-1][0]!r} in {text!r}")
    return info


def _top(text, info, chars):
    """Positions of the characters ``chars`` at depth 0 (outside quotes)."""
    return [i for i, ch in enumerate(text) if ch in chars and info[i] is not None and info[i][0] == 0]


def _bare_bar(text, info) -> bool:
    """Whether ``text`` has a ``|`` that is not inside a function call (a misplaced bar term)."""
    return any(ch == "|" and info[i] is not None and not info[i][1] for i, ch in enumerate(text))


def _close_of(text, info, start):
    """Position of the bracket closing the one opened at ``start``."""
    d = info[start][0]
    return next(i for i in range(start + 1, len(text)) if text[i] in _CLOSE and info[i] is not None and info[i][0] == d)


def _unwrap(s, formula):
    """``s`` without redundant enclosing parentheses."""
    while s.startswith("(") and _close_of(s, _scan(s, formula), 0) == len(s) - 1:
        s = s[1:-1].strip()
    return s


def _parse_group(text, term, formula):
    comps = [tuple(n.strip() for n in part.split(":")) for part in text.split("/")]
    if not all(_NAME.fullmatch(n) for names in comps for n in names):
        raise _syntax(formula, f"the grouping factor of {term} must be column names joined by ':' or "
                               f"'/' (like g, a:b or a/b), got {text.strip()!r}")
    comps = [tuple(n.strip("`") for n in names) for names in comps]
    return tuple(sum(comps[: i + 1], ()) for i in range(len(comps)))


def _parse_bar(s, formula):
    info = _scan(s, formula)
    bars = _top(s, info, "|")
    double = len(bars) == 2 and bars[1] == bars[0] + 1
    if not bars or len(bars) > 2 or (len(bars) == 2 and not double):
        raise _syntax(formula, f"a random-effect term has one '|' or '||', got ({s})")
    lhs, rhs = s[: bars[0]].strip(), s[bars[-1] + 1:].strip()
    term = f"({s})"
    if not lhs or not rhs:
        raise _syntax(formula, f"{term} needs effects on the left of the bar and a grouping factor on the right")
    if _bare_bar(lhs, _scan(lhs, formula)) or _OFFSET.match(lhs) or "~" in lhs:
        raise _syntax(formula, f"the left side of {term} must be an effects formula like 1, x or 0 + x")
    return _Bar(term, lhs, not double, _parse_group(rhs, term, formula))


def _parse(formula: str) -> SimpleNamespace:
    # R allows "log (x)"; formulaic does not: join a name to its call's "(" outside quotes
    text = "".join(p if p[:1] in "'\"`" else re.sub(r"(?<=[\w.])\s+\(", "(", p) for p in _QUOTED.split(formula))
    tildes = _top(text, _scan(text, formula), "~")
    if len(tildes) != 1:
        raise _syntax(formula, f"expected one '~' (response ~ terms), found {len(tildes)}")
    lhs, rhs = text[: tildes[0]].strip(), text[tildes[0] + 1:]
    if not lhs:
        raise _syntax(formula, "a response is needed on the left of '~'")
    if _bare_bar(lhs, _scan(lhs, formula)):
        raise _syntax(formula, "the response contains a bar '|'")
    if lhs.startswith("cbind("):
        raise _syntax(formula, "a cbind(successes, failures) response is not supported: give the successes (or "
                               "proportions) as the response and the numbers of trials separately (trials=...)")
    info = _scan(rhs, formula)
    cuts = _top(rhs, info, "+-")
    pieces = [(rhs[a] if a >= 0 else "+", rhs[a + 1: b].strip()) for a, b in zip([-1] + cuts, cuts + [len(rhs)])]
    fixed, offsets, bars = [], [], []
    for k, (sign, s) in enumerate(pieces):
        if not s:
            if k == 0:
                continue
            raise _syntax(formula, f"an operator '{sign}' has no term after it")
        inner = _unwrap(s, formula)
        s_info = _scan(inner, formula)
        if s.startswith("(") and _top(inner, s_info, "|"):
            if sign == "-":
                raise _syntax(formula, f"random-effect term ({inner}) must be added with '+', not removed")
            bars.append(_parse_bar(inner, formula))
        elif _bare_bar(s, _scan(s, formula)):
            raise _syntax(formula, f"bar terms must be whole terms in parentheses added with '+', "
                                   f"like + (1 | g); got {s!r}")
        elif _OFFSET.match(s) and _close_of(s, _scan(s, formula), s.index("(")) == len(s) - 1:
            if sign == "-":
                raise _syntax(formula, f"{s} must be added with '+'")
            expr = s[s.index("(") + 1: -1].strip()
            if not expr:
                raise _syntax(formula, "offset() needs an expression, like offset(log(n))")
            offsets.append(expr)
        else:
            fixed.append(f"{sign} {s}" if fixed or sign == "-" else s)
    if not bars:
        raise ValueError(f"formula {formula!r} has no random-effect term like (1 | g) or (x | g); "
                         "a mixed model needs at least one")
    return SimpleNamespace(formula=formula, lhs=lhs, fixed=" ".join(fixed) or "1", offsets=offsets, bars=bars,
                           levels={}, keys={})  # levels: column -> (codes, labels); keys: group -> level keys


def _frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, Mapping):
        cols = {key: np.asarray(v) for key, v in data.items()}
        bad = {key: a.shape for key, a in cols.items() if a.ndim != 1}
        if bad:
            raise ValueError(f"data columns must be 1-D arrays, got shapes {bad}")
        lengths = {k: len(a) for k, a in cols.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"data columns must have equal lengths, got {lengths}")
        frame = pd.DataFrame(cols)
    else:
        raise TypeError(f"data must be a pandas DataFrame or a mapping of 1-D arrays, got {type(data).__name__}")
    if frame.columns.has_duplicates:
        raise ValueError(f"data has duplicate column names {sorted(set(frame.columns[frame.columns.duplicated()]))}")
    if len(frame) == 0:
        raise ValueError("data has no rows")
    return frame


def _variables(text, formula) -> set:
    try:
        return set(formulaic.Formula(text).required_variables)
    except FormulaicError as e:
        raise _syntax(formula, f"formulaic cannot parse {text!r}: {e}") from None


def _check_columns(plan, frame, needed, what="data"):
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise ValueError(f"{what} has no column(s) {missing} used by formula {plan.formula!r}; "
                         f"columns are {list(frame.columns)}")
    cols = sorted(needed)
    nan = [c for c, bad in zip(cols, frame[cols].isna().any().to_numpy()) if bad]
    if nan:
        raise ValueError(f"{what} has missing values in column(s) {nan} used by formula {plan.formula!r}; "
                         f"rows with missing values are not dropped (lme4 drops them): pass "
                         f"data.dropna(subset={nan}) to drop them")


def _matrix(plan, spec_or_formula, frame, what):
    """A formulaic model matrix as (float array, column names, spec); errors as ValueError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataMismatchWarning)
            warnings.simplefilter("ignore", RuntimeWarning)  # non-finite results are refused below
            if isinstance(spec_or_formula, str):
                mm = formulaic.model_matrix(spec_or_formula, frame, context={}, na_action="ignore")
            else:
                mm = spec_or_formula.get_model_matrix(frame, context={})
    except DataMismatchWarning as e:
        raise ValueError(f"data: {what} of formula {plan.formula!r} meets values not seen in the training "
                         f"data: {e}") from None
    except FormulaicError as e:
        raise ValueError(f"formula {plan.formula!r}: formulaic cannot build {what} from data: {e}") from None
    parts = (mm.lhs, mm.rhs) if isinstance(spec_or_formula, str) and "~" in spec_or_formula else (mm,)
    out = []
    for m in parts:
        a = np.asarray(m.to_numpy(), dtype=float).reshape(len(frame), -1)
        names = tuple(str(c) for c in m.columns)
        bad = [n for n, ok in zip(names, np.isfinite(a).all(axis=0)) if not ok]
        if bad:
            raise ValueError(f"data: {what} of formula {plan.formula!r} has non-finite values in column(s) {bad}")
        out.append((a, names, m.model_spec))
    return out


def _row_labels(col: pd.Series) -> np.ndarray:
    """String label of each row of a grouping column (integer-valued floats print as integers)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = _row_labels(pd.Series(col.cat.categories))
        return cats[col.cat.codes.to_numpy()]
    v = col.to_numpy()
    if v.dtype.kind not in "biuf":
        return col.astype(str).to_numpy(dtype=object)
    out = v.astype(str).astype(object)
    if v.dtype.kind == "f":
        whole = (v == np.round(v)) & (np.abs(v) < 2.0**53)
        out[whole] = v[whole].astype(np.int64).astype(str)
    return out


def _codes(col: pd.Series):
    """Level codes (0..L-1) and the observed levels' labels in order."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        used, codes = np.unique(col.cat.codes.to_numpy(), return_inverse=True)
        return codes.astype(np.int64), tuple(_row_labels(pd.Series(col.cat.categories))[used])
    v = col.to_numpy()
    key = v if v.dtype.kind in "biuf" else col.astype(str).to_numpy(dtype=object)
    uniq, codes = np.unique(key, return_inverse=True)
    return codes.astype(np.int64), tuple(_row_labels(pd.Series(uniq, dtype=col.dtype if v.dtype.kind in "biuf"
                                                                 else object)))


def _group_index(plan, frame, group, training):
    """Level codes and labels of a grouping factor (a tuple of column names)."""
    comps, labels = [], []
    for name in group:
        if training:
            if name not in plan.levels:
                plan.levels[name] = _codes(frame[name])
            codes, levs = plan.levels[name]
            comps.append(codes)
        else:
            levs = plan.levels[name][1]
            comps.append(pd.Index(levs).get_indexer(_row_labels(frame[name])).astype(np.int64))
        labels.append(np.asarray(levs, dtype=object))
    key = np.zeros(len(frame), np.int64)
    for c, levs in zip(comps, labels):
        key = key * len(levs) + c
    if training:
        keys, index = np.unique(key, return_inverse=True)
        plan.keys[group] = keys
    else:
        keys = plan.keys[group]
        seen = np.all(np.stack(comps) >= 0, axis=0)
        pos = np.clip(np.searchsorted(keys, key), 0, len(keys) - 1)
        index = np.where(seen & (keys[pos] == key), pos, -1)
    text, rest = None, keys.copy()
    for levs in reversed(labels):
        part, rest = levs[rest % len(levs)], rest // len(levs)
        text = part if text is None else part + ":" + text
    return index.astype(np.int64), tuple(str(s) for s in text)


def _frozen(a):
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _prepare(plan, frame):
    """Check the variables the formula needs (training data) and record them in the plan."""
    plan.response_vars = _variables(plan.lhs, plan.formula)
    needed = set(plan.response_vars) | _variables(plan.fixed, plan.formula)
    needed |= {v for e in plan.offsets for v in _variables(f"I({e})", plan.formula)}
    for bar in plan.bars:
        needed |= _variables(bar.lhs, plan.formula) | {n for g in bar.groups for n in g}
    plan.needed = needed
    _check_columns(plan, frame, needed)
    bad = [v for v in sorted(plan.response_vars) if not pd.api.types.is_numeric_dtype(frame[v])]
    if bad:
        raise ValueError(f"data: the response {plan.lhs!r} of formula {plan.formula!r} must be numeric; column(s) "
                         f"{bad} have dtype {[str(frame[v].dtype) for v in bad]}")


def _build(plan, frame: pd.DataFrame, training: bool) -> MixedDesign:
    if training:
        _prepare(plan, frame)
        (y, ynames, plan.lhs_spec), (X, xnames, plan.rhs_spec) = _matrix(
            plan, f"{plan.lhs} ~ {plan.fixed}", frame, "the fixed-effect design")
        if y.shape[1] != 1:
            raise ValueError(f"formula {plan.formula!r}: the response {plan.lhs!r} must be one numeric column, "
                             f"formulaic makes {list(ynames)} from it")
        response = ynames[0]
        offs = [_matrix(plan, f"0 + I({e})", frame, f"offset({e})")[0] for e in plan.offsets]
        plan.offset_specs = [s for _, _, s in offs]
        plan.response_name = response
        zs = [_matrix(plan, bar.lhs, frame, f"the design of {bar.text}")[0] for bar in plan.bars]
        for bar in [bar for bar, (Zb, _, _) in zip(plan.bars, zs) if Zb.shape[1] == 0]:
            raise _syntax(plan.formula, f"{bar.text} has no effects (its left side makes no columns)")
        plan.bar_specs = [spec for _, _, spec in zs]
        plan.bar_names = [tuple("(Intercept)" if c == "Intercept" else c for c in names) for _, names, _ in zs]
    else:
        has_y = plan.response_vars <= set(frame.columns)
        _check_columns(plan, frame, plan.needed - (set() if has_y else plan.response_vars))
        X, xnames, _ = _matrix(plan, plan.rhs_spec, frame, "the fixed-effect design")[0]
        y = (_matrix(plan, plan.lhs_spec, frame, "the response")[0][0] if has_y else np.full((len(frame), 1), np.nan))
        response = plan.response_name
        offs = [_matrix(plan, s, frame, f"offset({e})")[0] for e, s in zip(plan.offsets, plan.offset_specs)]
        zs = [_matrix(plan, spec, frame, f"the design of {bar.text}")[0] for bar, spec in zip(plan.bars, plan.bar_specs)]
    offset = _frozen(sum(a[:, 0] for a, _, _ in offs)) if offs else None
    terms = []
    for bar, (Zb, _, _), names in zip(plan.bars, zs, plan.bar_names):
        for group in bar.groups:
            index, levels = _group_index(plan, frame, group, training)
            label = ":".join(group)
            if training and len(levels) < 2:
                raise ValueError(f"data: the grouping factor {label!r} of {bar.text} in formula {plan.formula!r} "
                                 f"has one level ({levels[0]!r}); a random effect needs at least two levels")
            cols = [[j] for j in range(len(names))] if not bar.correlated else [list(range(len(names)))]
            terms += [RandomTerm(label, _frozen(index), levels, _frozen(Zb[:, c]), tuple(names[j] for j in c))
                      for c in cols]
    return MixedDesign(plan.formula, response, _frozen(y[:, 0]), _frozen(X), tuple(xnames), tuple(terms),
                       offset, plan)


def mixed_design(formula: str, data) -> MixedDesign:
    """Designs of a mixed-model formula in lme4's syntax.

    Parameters
    ----------
    formula : str
        ``response ~ fixed terms + (effects | group) + ...``: the fixed part in formulaic's syntax
        (transforms, ``C()``, interactions, ``offset(expr)``), random-effect terms ``(x | g)``
        (correlated), ``(x || g)`` (uncorrelated), ``(0 + x | g)``, ``(1 | a:b)``, ``(1 | a/b)``.
    data : pandas.DataFrame or mapping of 1-D arrays
        The observations; never modified. Rows with missing values in the columns the formula
        uses are refused (drop them first, e.g. ``data.dropna()``).

    Returns
    -------
    MixedDesign
        Response, fixed-effect design, offset, and one :class:`RandomTerm` per expanded bar term.

    Raises
    ------
    TypeError
        If ``formula`` is not a string or ``data`` not a DataFrame or mapping.
    ValueError
        On bad syntax, no bar term, an unknown column, missing values, a non-numeric response, or a
        grouping factor with one level.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "x": [0.0, 1.0, 0.0, 1.0], "g": list("aabb")})
    >>> d = mixed_design("y ~ x + (x | g)", df)
    >>> d.fixed_names, d.terms[0].names, d.terms[0].levels
    (('Intercept', 'x'), ('(Intercept)', 'x'), ('a', 'b'))
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string like 'y ~ x + (1 | g)', got {type(formula).__name__}")
    frame = _frame(data)
    return _build(_parse(formula), frame, training=True)

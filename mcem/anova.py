"""Likelihood-ratio tests of nested fits: :func:`anova`, in the layout of lme4's ``anova``.

The fits are sorted by their number of free parameters (``df_model``) and each is tested against
the one above it: ``Chisq = 2 (llf - llf_above)`` on ``Df = npar - npar_above`` degrees of
freedom, ``Pr(>Chisq)`` from the chi-squared distribution. Log-likelihoods that are
importance-sampling estimates carry a Monte Carlo standard error (``llf mcse``); that of
``Chisq`` is ``2 sqrt(mcse^2 + mcse_above^2)``, taking the two estimates as independent.
"""

from __future__ import annotations

import html
import textwrap

import numpy as np
from scipy.stats import chi2

from .result import FitResult
from .summary import html_table, text_table

__all__ = ["anova", "AnovaTable"]

COLUMNS = ["npar", "llf", "llf mcse", "AIC", "BIC", "deviance", "Chisq", "Chisq mcse", "Df", "Pr(>Chisq)"]
_FORMATS = {"npar": "d", "llf": ".3f", "llf mcse": ".3f", "AIC": ".2f", "BIC": ".2f", "deviance": ".3f",
            "Chisq": ".3f", "Chisq mcse": ".3f", "Df": "d"}


def _cell(col, v):
    if v is None or not np.isfinite(v):
        return ""
    if col == "Pr(>Chisq)":
        return f"{v:.4g}" if v >= 1e-16 else "<1e-16"
    return format(int(v) if _FORMATS[col] == "d" else float(v), _FORMATS[col])


class AnovaTable:
    """The table of :func:`anova`: ``table`` (a pandas DataFrame, one row per fit in the order
    tested, columns :data:`COLUMNS`), ``notes`` (sentences printed below it), ``str()`` /
    :meth:`as_text` and :meth:`as_html` (shown by notebooks through ``_repr_html_``)."""

    def __init__(self, table, notes):
        self.table = table
        self.notes = list(notes)

    def _rows(self):
        return [[name, *(_cell(c, r[c]) for c in COLUMNS)] for name, r in self.table.iterrows()]

    def as_text(self) -> str:
        """The table as fixed-width text, with its notes."""
        lines = text_table(COLUMNS, self._rows())
        width = max(len(t) for t in lines)
        return "\n".join(["Likelihood-ratio tests of nested fits", *lines, "-" * width,
                          *(textwrap.fill(n, width=max(width, 60), subsequent_indent="  ") for n in self.notes)])

    def as_html(self) -> str:
        """The table as HTML (a ``<table>`` and the notes)."""
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (html_table(COLUMNS, self._rows(), caption="Likelihood-ratio tests of nested fits", css="mcem-anova")
                + (f"\n<ul>{notes}</ul>" if notes else ""))

    def _repr_html_(self):
        return self.as_html()

    def __str__(self):
        return self.as_text()

    __repr__ = __str__


def _names(fits, names):
    if names is None:
        base = [str(f.get("model_name") or f"fit{i + 1}") for i, f in enumerate(fits)]
        return base if len(set(base)) == len(base) else [f"{b} ({i + 1})" for i, b in enumerate(base)]
    if isinstance(names, str) or not hasattr(names, "__len__") or not all(isinstance(n, str) for n in names):
        raise TypeError(f"anova: names must be a list of str (one per fit), got {names!r}")
    if len(names) != len(fits) or len(set(names)) != len(names):
        raise ValueError(f"anova: names must hold {len(fits)} distinct str (one per fit), got {list(names)!r}")
    return list(names)


def anova(*fits, names=None) -> AnovaTable:
    """Likelihood-ratio tests of nested fits, like lme4's ``anova(m1, m2, ...)``.

    Parameters
    ----------
    *fits : FitResult
        At least two fits of nested models to the same data. They are sorted by their number of
        free parameters (``df_model``); each is tested against the one above it, which must be
        the same model with some parameters held at a value (the larger model nests the
        smaller). The numbers come from each fit's ``llf`` (exact, or estimated once by
        importance sampling), ``df_model``, ``aic``, ``bic`` and ``nobs``.
    names : list of str, optional
        Row labels (default: the fits' ``model_name``, numbered when two agree).

    Returns
    -------
    AnovaTable
        One row per fit: ``npar``, ``llf``, ``llf mcse`` (the Monte Carlo SE of an estimated
        log-likelihood, 0 when exact), ``AIC``, ``BIC`` (NaN when ``nobs`` is unknown),
        ``deviance`` (``-2 llf``), and from the second row ``Chisq`` (``2 (llf - llf_above)``),
        ``Chisq mcse`` (``2 sqrt(mcse^2 + mcse_above^2)``), ``Df`` and ``Pr(>Chisq)``.

    Raises
    ------
    TypeError
        A fit that is not a FitResult, or ``names`` not a list of str.
    ValueError
        Fewer than two fits; fits on different data (their ``nobs`` differ); two fits with the
        same number of free parameters (they cannot be nested, so the order is undefined).

    Notes
    -----
    The chi-squared reference assumes the smaller model lies inside the larger one's parameter
    space. A test that a variance component is zero is on the boundary of that space: there
    the chi-squared p-value is conservative (too large); for a single variance the reference
    is the 50:50 mixture of chi2(0) and chi2(Df), which halves the p-value.
    """
    import pandas as pd

    if len(fits) < 2:
        raise ValueError(f"anova needs at least two fits of nested models, got {len(fits)}")
    for i, f in enumerate(fits):
        if not isinstance(f, FitResult):
            raise TypeError(f"anova: fits[{i}] must be an mcem.FitResult (from mcem.fit), got {type(f).__name__}")
    labels = _names(fits, names)
    npar = [f.df_model for f in fits]
    notes = []
    nobs = []
    for f in fits:
        try:
            nobs.append(f.nobs)
        except ValueError:
            nobs.append(None)
    known = {n for n in nobs if n is not None}
    if len(known) > 1:
        raise ValueError("anova: the fits are on different data: their numbers of observations (nobs) differ: "
                         + ", ".join(f"{lab}: {n}" for lab, n in zip(labels, nobs, strict=True))
                         + "; a likelihood-ratio test compares models of the same data")
    if None in nobs:
        notes.append("The number of observations of some fits is unknown (set fit.nobs = n or Model(n_obs=...)): "
                     "BIC is missing there and the fits could not be checked to share their data.")
    order = sorted(range(len(fits)), key=lambda i: npar[i])
    for a, b in zip(order, order[1:]):
        if npar[a] == npar[b]:
            raise ValueError(f"anova: fits {labels[a]!r} and {labels[b]!r} have the same number of free parameters "
                             f"({npar[a]}), so they are not nested and cannot be ordered by parameters; anova "
                             "tests each fit against one with fewer parameters")
    llf = np.array([fits[i].llf for i in order])
    mcse = np.array([fits[i].llf_mcse for i in order])
    k = np.array([npar[i] for i in order], dtype=float)
    n = nobs[order[0]]
    chisq = np.r_[np.nan, 2 * np.diff(llf)]
    df = np.r_[np.nan, np.diff(k)]
    with np.errstate(invalid="ignore"):
        p = np.r_[np.nan, chi2.sf(chisq[1:], df[1:])]
    chisq_se = np.r_[np.nan, 2 * np.sqrt(mcse[1:] ** 2 + mcse[:-1] ** 2)]

    table = pd.DataFrame({
        "npar": k, "llf": llf, "llf mcse": mcse, "AIC": -2 * llf + 2 * k,
        "BIC": -2 * llf + k * np.log(n) if n is not None else np.full(len(k), np.nan),
        "deviance": -2 * llf, "Chisq": chisq, "Chisq mcse": chisq_se, "Df": df, "Pr(>Chisq)": p,
    }, index=[labels[i] for i in order])
    if np.any(mcse > 0):
        notes.append("Some log-likelihoods are importance-sampling estimates: Chisq carries the Monte Carlo "
                     "standard error 'Chisq mcse' = 2 sqrt(mcse^2 + mcse_above^2) (the estimates taken as "
                     "independent); fit.marginal_loglik(target_se=...) makes it smaller.")
    if np.any(chisq[1:] < 0):
        notes.append("A negative Chisq: a larger model fits worse than the smaller one it nests, so it did not "
                     "reach its maximum (refit it, e.g. from the smaller model's estimate) or the Monte Carlo "
                     "error of the log-likelihoods is as large as the difference (see Chisq mcse).")
    notes.append("Pr(>Chisq) uses the chi-squared reference. A test that a variance component is zero lies on "
                 "the boundary of the parameter space, where this p-value is conservative (too large); for one "
                 "variance the reference is the 50:50 mixture of chi2(0) and chi2(Df): halve the p-value.")
    return AnovaTable(table, notes)

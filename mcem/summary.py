"""The summary of a fit: :class:`Summary`, a statsmodels-style table as text, HTML and pandas.

:meth:`mcem.FitResult.summary` builds it (:func:`make_summary`) from the result's statsmodels
vocabulary (``params_flat``, ``bse``, ``conf_int``, ``zvalues``, ``pvalues``, ``llf``, ``aic``,
``bic``, ``nobs``, ``df_model``); it knows nothing of the result class beyond those names. The
table helpers :func:`text_table` and :func:`html_table` also draw :mod:`mcem.anova`'s tables.
"""

from __future__ import annotations

import html
import textwrap

import numpy as np

from ._validation import check_fraction

__all__ = ["Summary", "make_summary", "text_table", "html_table"]

WIDTH = 84


def text_table(columns, rows, index_name="") -> list:
    """Lines of a fixed-width table: the first column (row labels) left-aligned, the others
    right-aligned; ``columns`` the header strings, ``rows`` lists ``[label, *cells]`` of strings."""
    head = [index_name, *columns]
    widths = [max(len(str(r[j])) for r in [head, *rows]) for j in range(len(head))]

    def line(r):
        cells = "".join("  " + str(c).rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))
        return (str(r[0]).ljust(widths[0]) + cells).rstrip()

    return [line(head), *[line(r) for r in rows]]


def html_table(columns, rows, caption=None, index_name="", css="mcem-table") -> str:
    """An HTML ``<table>`` of the same content as :func:`text_table` (every string escaped)."""
    e = html.escape
    out = [f'<table class="{e(css)}">']
    if caption:
        out.append(f"<caption>{e(caption)}</caption>")
    out.append("<thead><tr>" + f"<th>{e(index_name)}</th>" + "".join(f"<th>{e(str(c))}</th>" for c in columns)
               + "</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>" + f"<th>{e(str(r[0]))}</th>" + "".join(f"<td>{e(str(c))}</td>" for c in r[1:]) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _num(v, spec):
    return "" if v is None or not np.isfinite(v) else format(v, spec)


def _pval(p):
    return "" if not np.isfinite(p) else f"{p:.3g}" if p >= 1e-16 else "<1e-16"


class Summary:
    """A fit's summary: the fit statistics, one row per parameter, and notes.

    ``str(summary)`` (or :meth:`as_text`) is the text table, :meth:`as_html` (shown by
    notebooks through ``_repr_html_``) the same as HTML tables, and :attr:`tables` the content as
    pandas DataFrames: ``tables[0]`` the fit statistics (column ``value``), ``tables[1]`` the
    parameters (columns ``estimate``, ``std err``, ``z``, ``P>|z|`` and the two interval ends,
    named like ``[0.025`` and ``0.975]``; NaN where a value does not apply). :attr:`notes` lists
    the notes printed below the table; :attr:`flags` maps a parameter to the reason its standard
    error is missing (``"at edge"``, ``"info not PD"``).
    """

    def __init__(self, title, stats, params, notes, flags, alpha, n_left=None):
        self.title = title
        self.stats = stats  # [(label, value, text)], the fit statistics: the left column, then the right
        self._n_left = (len(stats) + 1) // 2 if n_left is None else n_left
        self.params = params  # DataFrame, the parameter table
        self.notes = list(notes)
        self.flags = dict(flags)
        self.alpha = alpha

    @property
    def tables(self) -> list:
        """``[fit statistics, parameters]`` as pandas DataFrames."""
        import pandas as pd

        stats = pd.DataFrame({"value": [v for _, v, _ in self.stats]}, index=[k for k, _, _ in self.stats])
        return [stats, self.params.copy()]

    def _param_rows(self):
        rows = []
        for name, r in self.params.iterrows():
            est, se, z, p, lo, hi = (float(v) for v in r.to_numpy())
            if np.isfinite(se):
                cells = [_num(est, ".4g"), _num(se, ".4g"), _num(z, ".3f"), _pval(p), _num(lo, ".4g"),
                         _num(hi, ".4g"), ""]
            else:
                why = self.flags.get(name, "see notes")
                cells = [_num(est, ".4g"), "n/a", "", "", "", "", f"({why})"]
            rows.append([name, *cells])
        if all(not r[-1] for r in rows):
            rows = [r[:-1] for r in rows]
        return rows

    def _stat_pairs(self):
        left, right = self.stats[: self._n_left], self.stats[self._n_left :]
        n = max(len(left), len(right))
        return [(left[i] if i < len(left) else None, right[i] if i < len(right) else None) for i in range(n)]

    def as_text(self) -> str:
        """The summary as fixed-width text."""
        cols = list(self.params.columns)
        rows = self._param_rows()
        table = text_table(cols + ([""] if rows and len(rows[0]) > len(cols) + 1 else []), rows)
        pairs = self._stat_pairs()
        width = max(WIDTH, *(len(t) for t in table), *(58 + len(b[2]) for _, b in pairs if b))
        lines = [self.title.center(width).rstrip(), "=" * width]
        for a, b in pairs:
            left = f"{a[0] + ':':<16}{a[2]:<24}" if a else " " * 40
            right = f"{b[0] + ':':<18}{b[2]:>{width - 58}}" if b else ""
            lines.append((left + right).rstrip())
        lines += ["=" * width, table[0], "-" * width, *table[1:], "=" * width]
        lines.extend(textwrap.fill(n, width=width, subsequent_indent="  ") for n in self.notes)
        return "\n".join(lines)

    def as_html(self) -> str:
        """The summary as HTML: a table of the fit statistics, one of the parameters, the notes."""
        e = html.escape
        stats = ["<table class=\"mcem-summary-stats\">", f"<caption>{e(self.title)}</caption>"]
        for a, b in self._stat_pairs():
            cells = "".join(f"<th>{e(x[0])}</th><td>{e(x[2])}</td>" for x in (a, b) if x)
            stats.append(f"<tr>{cells}</tr>")
        stats.append("</table>")
        rows = self._param_rows()
        cols = list(self.params.columns) + ([""] if rows and len(rows[0]) > len(self.params.columns) + 1 else [])
        notes = "".join(f"<li>{e(n)}</li>" for n in self.notes)
        return ('<div class="mcem-summary">\n' + "\n".join(stats) + "\n"
                + html_table(cols, rows, css="mcem-summary-params") + "\n"
                + (f"<ul>{notes}</ul>\n" if notes else "") + "</div>")

    def _repr_html_(self):
        return self.as_html()

    def __str__(self):
        return self.as_text()

    __repr__ = __str__


def _try(fn, notes, what):
    try:
        return fn()
    except Exception as exc:  # the table is still useful without this value
        if what:
            notes.append(f"{what} unavailable: {exc}")
        return None


def make_summary(result, alpha=0.05, scales=None) -> Summary:
    """The :class:`Summary` of ``result`` (a FitResult); ``scales`` maps a parameter to the
    words naming the scale of its intervals (for the notes)."""
    import pandas as pd

    alpha = check_fraction(alpha, "alpha")
    notes, flags = [], {}
    est = result.params_flat
    names = list(est.index)
    nan = np.full(len(names), np.nan)
    se = lo = hi = z = p = nan
    inf = _try(result.inference, notes, "standard errors")
    cols = _try(lambda: (result.bse, result.conf_int(alpha), result.zvalues, result.pvalues), notes,
                "standard errors") if inf is not None else None
    if cols is not None:
        se, lo, hi = cols[0].to_numpy(), cols[1]["lower"].to_numpy(), cols[1]["upper"].to_numpy()
        z, p = cols[2].to_numpy(), cols[3].to_numpy()
        flags = {n: inf.flags[d] for n, d in zip(names, inf.names, strict=True) if d in inf.flags}
        flags.update({n: "fixed" for n, s in zip(names, se, strict=True) if s == 0})
        notes.extend(f"Standard errors: {q}" for q in inf.problems)
    cols = ["estimate", "std err", "z", "P>|z|", f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"]
    table = pd.DataFrame(dict(zip(cols, [est.to_numpy(), se, z, p, lo, hi], strict=True)), index=names)
    ll = _try(lambda: (result.llf, result.llf_mcse), notes, "log-likelihood")
    aic = _try(lambda: result.aic, notes, None) if ll else None
    bic = _try(lambda: result.bic, notes, None) if ll else None
    nobs, k = _try(lambda: result.nobs, notes, None), _try(lambda: result.df_model, notes, None)
    mc, se_mc = result.get("mc_ratio"), result.get("se_mc_ratio")
    ll_txt = "n/a" if ll is None else f"{ll[0]:.3f}" + (f" +- {ll[1]:.3f}" if ll[1] else "")
    left = [
        ("Method", result.get("method"), str(result.get("method"))),
        ("Converged", result.get("converged"), f"{result.get('converged')} ({result.get('stopped_by')})"),
        ("Iterations", result.get("n_iter"), str(result.get("n_iter"))),
        ("Total draws", result.get("total_draws", 0), str(result.get("total_draws", 0))),
        ("Time (s)", result.get("seconds"), _num(result.get("seconds"), ".3f") or "n/a"),
        ("SE method", inf.method if inf is not None else None, inf.method if inf is not None else "n/a"),
    ]
    how = result.get("loglik_method") or (None if ll is None else "estimate" if ll[1] else "exact")
    right = [
        ("Log-likelihood", None if ll is None else ll[0], ll_txt),
        ("AIC", aic, "n/a" if aic is None else f"{aic:.2f}"),
        ("BIC", bic, "n/a" if bic is None else f"{bic:.2f}"),
        ("Observations", nobs, "n/a" if nobs is None else str(nobs)),
        ("Df model", k, "n/a" if k is None else str(k)),
        ("LL method", how, str(how or "n/a")),
    ]
    if mc is not None and np.isfinite(mc):
        left.append(("MC error / SE", mc, f"{mc:.3g}"))
    if se_mc is not None and np.isfinite(se_mc) and se_mc > 0:
        right.append(("MC error of SEs", se_mc, f"{se_mc:.1%}"))
    head = [str(result["message"])] if result.get("message") is not None else []
    if mc is not None and np.isfinite(mc):
        more = (f"; of the standard errors: {se_mc:.1%} of their size" if se_mc is not None and np.isfinite(se_mc)
                and se_mc > 0 else "")
        head.append(f"Monte Carlo error of the estimate: at most {mc:.3g} standard errors{more}.")
    notes[:0] = head
    shown = {n: s for n, s in (scales or {}).items() if s != "symmetric"}
    if shown and inf is not None:
        notes.append(f"Intervals ({1 - alpha:.0%}): Wald on a scale where the parameter is unbounded, mapped back "
                     "into its support: " + "; ".join(f"{n}: {s}" for n, s in shown.items())
                     + ". z and P>|z| are given only for parameters on the whole real line.")
    title = f"mcem fit: {result.get('model_name', 'model')}"
    return Summary(title, left + right, table, notes, flags, alpha, len(left))

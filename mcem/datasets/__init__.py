"""Small classic data sets (provenance in README.md beside this file), and the reference fits of
some of them (``references.json``, made by the scripts in the repository's ``references/``, and
``references_lme4.json``, made by ``benchmarks/peers/lme4_references.R``)."""

from __future__ import annotations

import copy
import json
from importlib import resources

import numpy as np

__all__ = [
    "load_faithful",
    "load_salamander",
    "load_mcculloch1997",
    "load_motorette",
    "load_theophylline",
    "load_cbpp",
    "load_epilepsy",
    "load_nile",
    "load_sleepstudy",
    "load_penicillin",
    "load_pastes",
    "load_grouseticks",
    "reference",
    "reference_rows",
    "reference_table",
]


def _read_csv(name) -> dict:
    text = resources.files(__package__).joinpath(name).read_text()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0].split(",")
    cols = list(zip(*(ln.split(",") for ln in lines[1:]), strict=True))
    out = {}
    for h, c in zip(header, cols, strict=True):
        try:
            out[h] = np.array([float(v) for v in c])
        except ValueError:
            out[h] = np.array(c)
    return out


def load_nile() -> dict:
    """The Nile series: annual flow at Aswan 1871-1970 (10^8 m^3), ``year`` and ``flow`` (100
    values); Cobb (1978), Durbin & Koopman (2001), as R's ``datasets::Nile``."""
    d = _read_csv("nile.csv")
    return {"year": d["year"].astype(int), "flow": d["flow"]}


def load_faithful() -> np.ndarray:
    """Old Faithful: array (272, 2) of eruption duration and waiting time, in minutes.

    Azzalini & Bowman (1990), Applied Statistics 39:357-365, as in R's ``datasets::faithful``.
    """
    d = _read_csv("faithful.csv")
    return np.column_stack([d["eruptions"], d["waiting"]])


def load_salamander() -> dict:
    """Salamander mating data (360 rows): columns as arrays, ``Mate`` binary.

    McCullagh & Nelder (1989), sec. 14.5; Booth & Hobert (1999), JRSS-B 61:265-285.
    """
    return _read_csv("salamander.csv")


def load_mcculloch1997() -> np.ndarray:
    """McCulloch (1997) logit-normal data: int array (10 clusters, 15 responses)."""
    text = resources.files(__package__).joinpath("mcculloch1997.txt").read_text()
    return np.array([[int(v) for v in ln.split()] for ln in text.splitlines() if ln.strip()])


def load_motorette() -> dict:
    """Motorette failure times (40 rows): ``temp``, ``time``, ``cens`` (1 = failure observed).

    Schmee & Hahn (1979), Technometrics 21:417-432.
    """
    return _read_csv("motorette.csv")


def load_theophylline() -> dict:
    """Theophylline pharmacokinetics (132 rows): ``Subject`` (1..12), ``Wt`` (kg), ``Dose``
    (mg/kg), ``Time`` (hours after the oral dose) and ``conc`` (serum concentration, mg/L).

    Boeckmann, Sheiner & Beal (1994), NONMEM Users Guide Part V, as R's ``datasets::Theoph``.
    """
    return _read_csv("theophylline.csv")


def load_cbpp(as_frame=False):
    """Contagious bovine pleuropneumonia (56 rows): ``herd`` (1..15), ``incidence`` (new
    serological cases), ``size`` (herd size at the start of the period) and ``period`` (1..4).

    Lesnoff et al. (2004), Preventive Veterinary Medicine 64:27-40, as R's ``lme4::cbpp``.

    Parameters
    ----------
    as_frame : bool, default False
        False: a dict of float arrays. True: a pandas DataFrame with ``herd`` (str), ``incidence``
        and ``size`` (int64) and ``period`` (str ``"1"`` .. ``"4"``), as lme4 has it, e.g. for
        ``"cbind(incidence, size - incidence) ~ period + (1 | herd)"``.
    """
    if not isinstance(as_frame, bool):
        raise TypeError(f"as_frame must be True or False, got {type(as_frame).__name__} {as_frame!r}")
    if as_frame:
        return _read_frame("cbpp.csv", text=("herd", "period"), counts=("incidence", "size"))
    return _read_csv("cbpp.csv")


def load_epilepsy() -> dict:
    """Epileptic seizure counts (236 rows: 59 patients x 4 two-week periods), R's ``MASS::epil``:
    ``y`` (seizures in the period), ``trt`` (``"placebo"`` or ``"progabide"``), ``base`` (seizures
    in the 8-week baseline), ``age`` (years), ``V4`` (1 in the fourth period), ``subject``,
    ``period``, ``lbase`` (log(base / 4), centred) and ``lage`` (log age, centred).

    Thall & Vail (1990), Biometrics 46:657-671; Breslow & Clayton (1993), JASA 88:9-25.
    """
    return _read_csv("epilepsy.csv")


def _read_frame(name, text=(), counts=()):
    """A packaged CSV file as a DataFrame: columns ``text`` as str, ``counts`` as int64, the
    others as float64."""
    import pandas as pd

    with resources.files(__package__).joinpath(name).open("r") as fh:
        df = pd.read_csv(fh, dtype={c: str for c in text}, keep_default_na=False, na_filter=False)
    for c in df.columns:
        if c in counts:
            df[c] = df[c].astype(np.int64)
        elif c not in text:
            df[c] = df[c].astype(np.float64)
    return df


def load_sleepstudy():
    """Reaction times in a sleep-deprivation study: DataFrame (180 rows) with ``Reaction``
    (average reaction time, ms, float), ``Days`` (days of sleep deprivation 0..9, float) and
    ``Subject`` (18 subjects, str ``"308"`` .. ``"372"``).

    Belenky et al. (2003), Journal of Sleep Research 12:1-12, as R's ``lme4::sleepstudy``; the
    classic model is ``"Reaction ~ Days + (Days | Subject)"`` (``reference("sleepstudy_lme4")``).
    """
    return _read_frame("sleepstudy.csv", text=("Subject",))


def load_penicillin():
    """Penicillin potency assay: DataFrame (144 rows) with ``diameter`` (mm, float) of the zone of
    inhibition, ``plate`` (24 plates, str ``"a"`` .. ``"x"``) and ``sample`` (6 samples, str ``"A"``
    .. ``"F"``); every sample on every plate (crossed factors).

    Davies & Goldsmith (1972), Statistical Methods in Research and Production, sec. 6.6, as R's
    ``lme4::Penicillin``; model ``"diameter ~ 1 + (1 | plate) + (1 | sample)"``
    (``reference("penicillin_lme4")``).
    """
    return _read_frame("penicillin.csv", text=("plate", "sample"))


def load_pastes():
    """Paste strength: DataFrame (60 rows) with ``strength`` (float), ``batch`` (10 delivery
    batches, str ``"A"`` .. ``"J"``), ``cask`` (3 casks within each batch, str ``"a"`` .. ``"c"``)
    and ``sample`` (the 30 batch-cask pairs, str ``"A:a"`` .. ``"J:c"``), two assays per sample
    (nested factors).

    Davies & Goldsmith (1972), sec. 6.5, as R's ``lme4::Pastes``; model
    ``"strength ~ 1 + (1 | batch/cask)"`` (``reference("pastes_lme4")``).
    """
    return _read_frame("pastes.csv", text=("batch", "cask", "sample"))


def load_grouseticks():
    """Ticks on red grouse chicks: DataFrame (403 rows) with ``INDEX`` (chick, str), ``TICKS``
    (count, int64), ``BROOD`` (118 broods, str), ``HEIGHT`` (altitude, m, float), ``YEAR`` (str
    ``"95"``, ``"96"``, ``"97"``), ``LOCATION`` (63 locations, str) and ``cHEIGHT`` (``HEIGHT``
    centred, float).

    Elston et al. (2001), Parasitology 122:563-569, as R's ``lme4::grouseticks``; Poisson model
    ``"TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"`` (``reference("grouseticks_lme4")``).
    """
    return _read_frame("grouseticks.csv", text=("INDEX", "BROOD", "YEAR", "LOCATION"),
                       counts=("TICKS",))


_REFERENCES = None
_REFERENCE_FILES = ("references.json", "references_lme4.json")


def reference(name) -> dict:
    """The recorded reference fit of a data set (a copy).

    ``"theophylline"``, ``"cbpp"`` and ``"epilepsy"`` hold the maximum-likelihood ``params``,
    their standard errors ``se``, the ``loglik``, the ``script`` that computed them (by adaptive
    Gauss-Hermite quadrature, independently of Monte Carlo EM), how the model is parameterised,
    and ``peers``: the estimates of R packages (lme4, nlme) on the same data, recorded by
    ``references/peers.R``.

    ``"sleepstudy_lme4"``, ``"sleepstudy_uncorrelated_lme4"``, ``"penicillin_lme4"``,
    ``"pastes_lme4"``, ``"cbpp_lme4"`` and ``"grouseticks_lme4"`` are R's lme4 fits by maximum
    likelihood (``formula`` and ``call`` as written in R): ``params`` with ``beta`` (named by
    ``names``), ``sd_<group>`` (random-effect standard deviations, labelled in ``labels``),
    ``cor_<group>`` (their correlation matrix, for correlated terms) and ``sigma`` (residual SD
    of the Gaussian models); ``se`` of ``beta``, ``loglik``, ``seconds`` (median of 5 fits),
    ``versions``, and in ``peers`` the same from glmmTMB, nlme and other lme4 settings. Recorded
    by ``benchmarks/peers/lme4_references.R``; see the datasets README.
    """
    global _REFERENCES
    if _REFERENCES is None:
        merged = {}
        for file in _REFERENCE_FILES:
            part = json.loads(resources.files(__package__).joinpath(file).read_text())
            clash = sorted(set(merged) & set(part))
            if clash:
                raise RuntimeError(f"reference names {clash} are recorded twice (in {file})")
            merged.update(part)
        _REFERENCES = merged
    if not isinstance(name, str) or name not in _REFERENCES:
        raise ValueError(f"name must be one of {sorted(_REFERENCES)}, got {name!r}")
    return copy.deepcopy(_REFERENCES[name])


def reference_rows(name, params, se, labels=None) -> list:
    """A fit next to the recorded reference of data set ``name``, one row per scalar parameter:
    ``(label, estimate, se, reference, reference se, distance in reference standard errors)``.

    ``labels``: ``(label, parameter, index or None)`` triples in the order to print; default the
    reference's coefficient ``names`` for ``beta`` and then ``sigma`` (the GLMMs).
    """
    ref = reference(name)
    if labels is None:
        labels = [(n, "beta", i) for i, n in enumerate(ref["names"])] + [("sigma", "sigma", None)]

    def get(d, k, i):
        return float(np.asarray(d[k], dtype=float).reshape(-1)[0 if i is None else i])

    rows = []
    for label, k, i in labels:
        e, s, r, rs = get(params, k, i), get(se, k, i), get(ref["params"], k, i), get(ref["se"], k, i)
        rows.append((label, e, s, r, rs, (e - r) / rs))
    return rows


def reference_table(title, method, rows, loglik, ref_loglik, label_width=20) -> str:
    """:func:`reference_rows` as text, with the log-likelihoods at the estimate and at the MLE."""
    w = label_width
    lines = [title, f"{'parameter':<{w}}{method.upper():>9}{'SE':>8}{'MLE (AGQ)':>11}{'SE':>8}{'dist/SE':>9}"]
    lines += [f"{k:<{w}}{e:>9.4f}{s:>8.4f}{r:>11.4f}{rs:>8.4f}{d:>9.3f}" for k, e, s, r, rs, d in rows]
    lines.append(f"log-likelihood at the estimate {loglik:.4f}, at the MLE {ref_loglik:.4f} "
                 f"(gap {ref_loglik - loglik:.2g}); largest |dist/SE| {max(abs(r[-1]) for r in rows):.3f}")
    return "\n".join(lines)


"""Small classic data sets (provenance in README.md beside this file)."""

from __future__ import annotations

from importlib import resources

import numpy as np

__all__ = ["load_faithful", "load_salamander", "load_mcculloch1997", "load_motorette"]


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

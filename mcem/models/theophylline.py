"""Theophylline pharmacokinetics: a nonlinear mixed-effects model (one-compartment, first-order
absorption), parameterised as R's ``nlme`` example ``fm2Theo``.

Data (Boeckmann, Sheiner & Beal 1994, NONMEM Users Guide Part V; R's ``datasets::Theoph``;
:func:`mcem.datasets.load_theophylline`): 12 subjects given an oral dose ``D_i`` (mg/kg) of
theophylline, serum concentrations ``y_ij`` (mg/L) at 11 times ``t_ij`` (hours) each. Model::

    y_ij = f(D_i, t_ij; lKe, lKa + b_i1, lCl + b_i2) + eps_ij,     eps_ij ~ N(0, sigma^2)
    b_i  ~ N(0, diag(omega_ka^2, omega_cl^2)), independent of eps

    f(D, t; lKe, lKa, lCl) = D exp(lKe + lKa - lCl) (exp(-ke t) - exp(-ka t)) / (ka - ke),
                             ke = exp(lKe), ka = exp(lKa)

``f`` is ``SSfol`` of R's ``stats`` (elimination rate constant ``ke``, absorption rate constant
``ka``, clearance ``exp(lCl)``; :func:`fol_concentration`). Random effects on ``lKa`` and ``lCl``
with a diagonal covariance (``pdDiag(lKa + lCl ~ 1)``). ``nlme`` maximises a first-order
linearisation of this likelihood (Lindstrom & Bates 1990); the exact likelihood is a product of
two-dimensional integrals, which :mod:`mcem.models.theophylline_quadrature` computes by adaptive
Gauss-Hermite quadrature.

    params   lKe, lKa, lCl   real
             omega           positive, shape (2,): (omega_ka, omega_cl)
             sigma           positive
    latent   phi             Continuous(real, shape=(12, 2), unit=True): per subject the
                             individual (lKa_i, lCl_i) = (lKa + b_i1, lCl + b_i2); or b,
                             the offsets (b_i1, b_i2) themselves, with ``latent="b"``

The two latents give the same likelihood; EM converges much faster with ``phi`` (the centred
parameterisation: the data pin each subject's curve down, and lKa, lCl, omega then follow as the
mean and spread of the draws), so it is the default. The log joint returns one term per subject;
the model also has ``log_joint_total``, the analytic ``grad_params`` and ``value_and_grad``. The
functions work through the draws in cache-sized blocks (no loop over subjects or observations)
and read everything from ``model.data``, so the model pickles with the standard library.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy.special import exprel

from .. import constraints as C
from .._validation import check_choice
from ..core import Continuous, Model
from ..datasets import load_theophylline
from ._common import ready_model

__all__ = ["theophylline_model", "fol_concentration", "theophylline_data", "NLME_START"]

HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
_CHUNK = 1 << 15  # elements (draws x observations) per block of the vectorised evaluations
#: The starting values of R's fm2Theo example (``start = c(-2.5, 0.5, -3)``), the model's default.
NLME_START = {"lKe": -2.5, "lKa": 0.5, "lCl": -3.0}


# --------------------------------------------------------------------------- the concentration curve
def _g(x):
    """d/dx log((1 - exp(-x)) / x) = 1 / expm1(x) - 1 / x, stable at 0 (where it is -1/2)."""
    small = np.abs(x) < 1e-4
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        g = 1.0 / np.expm1(x) - 1.0 / np.where(small, 1.0, x)
    return np.where(small, -0.5 + x / 12.0, g)


def _g_prime(x):
    """The derivative of :func:`_g`, stable at 0 (where it is 1/12)."""
    small = np.abs(x) < 1e-3
    xs = np.where(small, 1.0, x)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(-np.abs(xs))  # -e^x / (e^x - 1)^2 = -e^-|x| / (1 - e^-|x|)^2
        gp = 1.0 / xs**2 - e / (1.0 - e) ** 2
    return np.where(small, 1.0 / 12.0 - x**2 / 240.0, gp)


def _fol_value(dose, t, lKe, lka, lcl):
    """The concentration ``f`` alone (see :func:`_fol_parts`)."""
    ke = np.exp(lKe)
    with np.errstate(over="ignore", invalid="ignore"):
        return dose * np.exp(lKe + lka - lcl) * t * np.exp(-ke * t) * exprel(-(np.exp(lka) - ke) * t)


def _fol_parts(dose, t, lKe, lka, lcl, second=False):
    """The concentration ``f`` and its log-derivatives: ``(f, dlog f / dlKe, dlog f / dlKa)``
    (``dlog f / dlCl = -1``); with ``second=True`` also ``d^2 log f / dlKa^2``. Broadcasts.

    ``f = D ke ka / Cl * t exp(-ke t) * (1 - exp(-x)) / x`` with ``x = (ka - ke) t``: the same
    value as the difference formula, without its cancellation when ``ka`` is near ``ke``.
    """
    ke, ka = np.exp(lKe), np.exp(lka)
    x = (ka - ke) * t
    with np.errstate(over="ignore", invalid="ignore"):
        f = dose * np.exp(lKe + lka - lcl) * t * np.exp(-ke * t) * exprel(-x)
    g = _g(x)
    dka = 1.0 + ka * t * g
    dke = 1.0 - ke * t - ke * t * g
    if not second:
        return f, dke, dka
    kt = ka * t
    return f, dke, dka, kt * g + kt * kt * _g_prime(x)


def fol_concentration(dose, time, lKe, lKa, lCl):
    """R's ``SSfol(Dose, Time, lKe, lKa, lCl)``: the one-compartment model with first-order
    absorption, ``Dose exp(lKe + lKa - lCl) (exp(-ke t) - exp(-ka t)) / (ka - ke)``, evaluated
    without cancellation when ``ka`` is near ``ke`` (arrays broadcast)."""
    args = [np.asarray(a, dtype=float) for a in (dose, time, lKe, lKa, lCl)]
    return _fol_parts(*args)[0]


# --------------------------------------------------------------------------- data
def theophylline_data(data=None) -> dict:
    """The checked observations of the model, sorted by subject: ``dose``, ``time``, ``conc``,
    ``subject`` (0..G-1), ``starts`` (first row of each subject), ``labels`` (the original
    subject ids), ``order`` (rows of the input in this order), ``n_subjects``.

    ``data``: a dict with arrays ``Subject``, ``Dose`` (mg/kg), ``Time`` (hours) and ``conc``
    (mg/L), as :func:`mcem.datasets.load_theophylline` returns (the default).
    """
    data = load_theophylline() if data is None else data
    if not isinstance(data, dict):
        raise TypeError(f"data must be a dict of arrays (Subject, Dose, Time, conc), got {type(data).__name__}")
    missing = [k for k in ("Subject", "Dose", "Time", "conc") if k not in data]
    if missing:
        raise ValueError(f"data must have the columns Subject, Dose, Time and conc, missing {missing}")
    cols = {}
    for k in ("Subject", "Dose", "Time", "conc"):
        a = np.asarray(data[k])
        if a.dtype == object or not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"data[{k!r}] must be a numeric array, got dtype {a.dtype}")
        a = np.array(a, dtype=float)
        if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
            raise ValueError(f"data[{k!r}] must be a non-empty finite 1-D array, got shape {a.shape} "
                             f"with {int(np.sum(~np.isfinite(a)))} non-finite value(s)")
        cols[k] = a
    n = cols["Subject"].size
    if any(a.size != n for a in cols.values()):
        raise ValueError(f"data columns must have the same length, got { {k: a.size for k, a in cols.items()} }")
    if np.any(cols["Dose"] <= 0) or np.any(cols["Time"] < 0):
        raise ValueError("data['Dose'] must be positive and data['Time'] non-negative, got "
                         f"min Dose {cols['Dose'].min()!r}, min Time {cols['Time'].min()!r}")
    labels, subject = np.unique(cols["Subject"], return_inverse=True)
    order = np.argsort(subject, kind="stable")
    s = subject[order]
    if np.any(np.diff(cols["Dose"][order])[np.diff(s) == 0] != 0):
        raise ValueError("data['Dose'] must be constant within each subject (one oral dose per subject)")
    return {
        "dose": cols["Dose"][order], "time": cols["Time"][order], "conc": cols["conc"][order],
        "subject": s, "starts": np.concatenate([[0], np.flatnonzero(np.diff(s)) + 1]),
        "counts": np.bincount(s).astype(float), "labels": labels, "order": order,
        "n_subjects": int(labels.size),
    }


# --------------------------------------------------------------------------- the model's functions
def _latent(theta, z, data):
    """The latents as (B, G, 2) and the shifts of (lKa, lCl) inside and outside the likelihood:
    offsets ``b`` enter as ``lKa + b_1`` with prior mean 0; individual parameters ``phi`` enter
    as they are, with prior mean ``(lKa, lCl)``."""
    x = np.asarray(z[data["latent"]], dtype=float)
    mu = np.array([float(theta["lKa"]), float(theta["lCl"])])
    inside, centre = (np.zeros(2), mu) if data["latent"] == "phi" else (mu, np.zeros(2))
    return x, x.reshape(-1, data["n_subjects"], 2), inside, centre


def _blocks(theta, z, data, derivs=True):
    """Yield ``(rows, f, dke, dka, resid)`` over blocks of the flattened batch of draws
    (``dke``, ``dka`` None unless ``derivs``)."""
    _, xf, inside, _ = _latent(theta, z, data)
    s, t, dose = data["subject"], data["time"], data["dose"]
    lKe = float(theta["lKe"])
    step = max(1, _CHUNK // t.size)
    for a in range(0, xf.shape[0], step):
        rows = slice(a, min(xf.shape[0], a + step))
        lka = inside[0] + np.take(xf[rows, :, 0], s, axis=1)
        lcl = inside[1] + np.take(xf[rows, :, 1], s, axis=1)
        if derivs:
            f, dke, dka = _fol_parts(dose, t, lKe, lka, lcl)
        else:
            f, dke, dka = _fol_value(dose, t, lKe, lka, lcl), None, None
        yield rows, f, dke, dka, data["conc"] - f


def _prior_terms(b, omega):
    """log N(b_i; 0, diag(omega^2)) per subject, shape ``b.shape[:-1]``."""
    return np.sum(-0.5 * (b / omega) ** 2 - np.log(omega) - HALF_LOG_2PI, axis=-1)


def _log_joint(theta, z, data):
    G, sigma = data["n_subjects"], float(theta["sigma"])
    omega = np.asarray(theta["omega"], dtype=float)
    x, xf, _, centre = _latent(theta, z, data)
    out = np.empty(xf.shape[:2])
    for rows, _, _, _, r in _blocks(theta, z, data, derivs=False):
        out[rows] = np.add.reduceat(r * r, data["starts"], axis=-1)
    obs = -0.5 * out / sigma**2 - data["counts"] * (np.log(sigma) + HALF_LOG_2PI)
    return obs.reshape(x.shape[:-1]) + _prior_terms(x - centre, omega)


def _log_joint_total(theta, z, data):
    return _value_and_grad(theta, z, data, grad=False)[0]


def _grad_params(theta, z, data):
    return _value_and_grad(theta, z, data)[1]


def _value_and_grad(theta, z, data, grad=True):
    """The log joint summed over subjects and, with ``grad``, its gradient in each parameter."""
    sigma = float(theta["sigma"])
    omega = np.asarray(theta["omega"], dtype=float)
    x, xf, _, centre = _latent(theta, z, data)
    batch, (B, G, _), n = x.shape[:-2], xf.shape, data["time"].size
    ss = np.empty(B)
    g = np.empty((B, 3)) if grad else None
    for rows, f, dke, dka, r in _blocks(theta, z, data, derivs=grad):
        ss[rows] = np.einsum("ij,ij->i", r, r)
        if grad:
            w = r * f / sigma**2  # d(obs term)/d f times f: the chain rule to log f
            g[rows] = np.column_stack([np.einsum("ij,ij->i", w, dke), np.einsum("ij,ij->i", w, dka), -w.sum(axis=1)])
    dev = xf - centre  # (B, G, 2): the random effects
    total = -0.5 * ss / sigma**2 - n * (np.log(sigma) + HALF_LOG_2PI) + _prior_terms(dev, omega).sum(axis=-1)
    if not grad:
        return total.reshape(batch), None
    if data["latent"] == "phi":  # lKa and lCl are the prior's mean, not in the likelihood
        g[:, 1:] = np.sum(dev, axis=1) / omega**2
    grads = {
        "lKe": g[:, 0].reshape(batch), "lKa": g[:, 1].reshape(batch), "lCl": g[:, 2].reshape(batch),
        "omega": (np.sum(dev**2, axis=1) / omega**3 - G / omega).reshape(batch + (2,)),
        "sigma": (ss / sigma**3 - n / sigma).reshape(batch),
    }
    return total.reshape(batch), grads


# --------------------------------------------------------------------------- the model
def theophylline_model(data=None, init=None, latent="phi") -> Model:
    """The fm2Theo nonlinear mixed model of the theophylline data as an :class:`mcem.Model`.

    Parameters
    ----------
    data : dict, optional
        Columns ``Subject``, ``Dose`` (mg/kg), ``Time`` (h), ``conc`` (mg/L); default
        :func:`mcem.datasets.load_theophylline` (R's ``Theoph``, 12 subjects x 11 times).
    init : dict, optional
        Starting values; default the fm2Theo start ``lKe = -2.5, lKa = 0.5, lCl = -3``
        (:data:`NLME_START`) with ``omega = (0.5, 0.5)`` and ``sigma = 1``.
    latent : {"phi", "b"}
        What the sampler draws for subject i (the likelihood is the same): ``"phi"`` the
        individual parameters ``phi_i = (lKa + b_i1, lCl + b_i2) ~ N((lKa, lCl),
        diag(omega^2))`` (the centred parameterisation, in which EM's M step for ``lKa``,
        ``lCl`` and ``omega`` is a mean and a variance of the draws and EM converges fast when
        the data pin down each subject), or ``"b"`` the random effects themselves (in which
        moving ``lKa`` or ``lCl`` moves every subject's curve, and EM creeps).

    Returns
    -------
    Model
        Parameters ``lKe``, ``lKa``, ``lCl`` (real), ``omega`` (positive, ``(omega_ka,
        omega_cl)``), ``sigma`` (positive); latent ``phi`` or ``b``
        (``Continuous(shape=(G, 2), unit=True)``, last axis (ka, cl); ``phi`` starts at
        ``(lKa, lCl)`` of the start, ``b`` at 0). Per-subject ``log_joint``,
        ``log_joint_total``, ``grad_params``, ``value_and_grad`` and ``n_obs``.
    """
    d = theophylline_data(data)
    check_choice(latent, "latent", {"phi", "b"})
    if init is not None and not isinstance(init, dict):
        raise TypeError(f"init must be a dict of parameter values, got {type(init).__name__}")
    start = {**NLME_START, "omega": np.array([0.5, 0.5]), "sigma": 1.0, **(init or {})}
    G = d["n_subjects"]
    d["latent"] = latent
    centre = np.array([float(start["lKa"]), float(start["lCl"])]) if latent == "phi" else np.zeros(2)
    return ready_model(
        _log_joint, _log_joint_total, _grad_params, partial(_value_and_grad, grad=True),
        params={"lKe": C.real, "lKa": C.real, "lCl": C.real, "omega": C.positive(shape=2), "sigma": C.positive},
        latents={latent: Continuous(C.real, shape=(G, 2), unit=True, init=np.tile(centre, (G, 1)))},
        data=d, init=start, n_obs=int(d["time"].size), name=f"theophylline(G={G}, latent={latent})",
    )

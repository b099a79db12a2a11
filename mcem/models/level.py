"""The local-level model (a random walk observed with noise), with exact EM by the Kalman smoother.

Model (T observations ``y_0 .. y_{T-1}``)::

    y_t = x_t + eps_t,          eps_t ~ N(0, sigma_obs^2)
    x_t = x_{t-1} + eta_t,      eta_t ~ N(0, sigma_level^2)      (t >= 1)
    x_0 ~ N(level0, sigma_level^2)

    level0        real        the level one step before the first observation
    sigma_obs     positive    the standard deviation of the observation noise
    sigma_level   positive    the standard deviation of the level's steps
    latent x      Continuous(real, shape=(T,)), a chain: its prior is
                  GaussianRandomWalk(sigma_level, init_loc=level0, init_scale=sigma_level, length=T)

The first state is one step of the walk away from ``level0``, so every one of the T states
enters ``sigma_level`` alike.

The posterior of the path x is Gaussian with a tridiagonal precision matrix (the band of
:mod:`mcem.kernels.gaussian_chain`): its means, variances and lag-one covariances (the Kalman
smoother's output) give the expected sufficient statistics exactly::

    x0   = E[x_0]
    x0sq = E[x_0^2]
    dsq  = sum_{t >= 1} E[(x_t - x_{t-1})^2]
    rsq  = sum_t E[(y_t - x_t)^2]

and the M step is closed-form::

    level0 = x0,    sigma_level^2 = (x0sq - x0^2 + dsq) / T,    sigma_obs^2 = rsq / T

(both variances floored at ``1e-12`` times the variance of y, so that a fit drifting to the
boundary stays inside the parameter space). The log-likelihood is the log of the Gaussian
integral of prior times observations (the Kalman filter's prediction-error decomposition).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import constraints as C
from ..core import Chain, Continuous, Model
from ..distributions import Normal
from ..distributions.chains import GaussianRandomWalk
from ..kernels.gaussian_chain import (
    add_emission,
    band_moments,
    factor_band,
    log_integral,
    prior_band,
    sample_band,
)
from ._common import Memo, bind, float_series, ready_model

__all__ = ["local_level", "initial_params"]

_LOG_2PI = math.log(2.0 * math.pi)
_VAR_FLOOR = 1e-12


def _check_y(y) -> np.ndarray:
    return float_series(y, "y")


def initial_params(y) -> dict:
    """A start from the data: ``level0 = y[0]`` and both standard deviations
    ``sd(diff(y)) / sqrt(2)`` (half the variance of a difference to each source), or ``sd(y)``
    (or 1) when that is 0."""
    y = _check_y(y)
    s = float(np.std(np.diff(y))) / math.sqrt(2.0)
    if not s > 0:
        s = float(np.std(y)) or 1.0
    return {"level0": np.array(y[0]), "sigma_obs": np.array(s), "sigma_level": np.array(s)}


def local_level(y, *, init=None) -> Model:
    """The local-level model of the series ``y`` as an :class:`mcem.Model` with exact EM.

    Parameters
    ----------
    y : array (T,)
        The observations (finite, T >= 2).
    init : dict, optional
        Initial ``level0``, ``sigma_obs``, ``sigma_level``; default :func:`initial_params`.

    Returns
    -------
    Model
        Parameters ``level0``, ``sigma_obs``, ``sigma_level``; latent ``x`` of shape (T,), a
        chain (``model.chains["x"]``, Gaussian emissions, so the Gaussian simulation smoother
        applies); ``exact_estep``, ``mstep``, ``sufficient_stats``, ``loglik`` and
        ``posterior_sampler``. See the module docstring for the parameterisation.
    """
    y = _check_y(y)
    T = y.size
    data = {"y": y, "var_floor": np.array(_VAR_FLOOR * max(float(np.var(y)), 1e-300))}
    params = {"level0": C.real, "sigma_obs": C.positive, "sigma_level": C.positive}
    parts = _Parts(Memo(_posterior, ("level0", "sigma_obs", "sigma_level")))
    chains = {"x": Chain(_chain_prior, _chain_emission, gaussian=True)}
    return ready_model(
        _log_joint, _mstep, _sufficient_stats,
        *bind(parts, _exact_estep, _loglik, _posterior_sampler),
        params=params, latents={"x": Continuous(C.real, shape=(T,))}, data=data,
        init=initial_params(y) if init is None else init, n_obs=T, chains=chains, name="local_level",
    )


# --------------------------------------------------------------------------- the model's functions
class _Parts(NamedTuple):
    post: Memo  # of _posterior


class _Walk(NamedTuple):
    """The chain prior in the form of :func:`~mcem.kernels.gaussian_chain.prior_band`."""

    m0: np.ndarray
    P0: np.ndarray
    F: np.ndarray
    c: np.ndarray
    Q: np.ndarray


def _scalars(theta):
    return (float(np.asarray(theta["level0"], dtype=float)), float(np.asarray(theta["sigma_obs"], dtype=float)),
            float(np.asarray(theta["sigma_level"], dtype=float)))


def _posterior(theta, data):
    """The factored band of prior times observations in ``delta = x - y`` (read around the data,
    so that a series far from 0 costs no precision): the posterior of x is ``y + delta``."""
    y = data["y"]
    level0, so, sl = _scalars(theta)
    walk = _Walk(np.array([level0]), np.array([[sl * sl]]), np.ones((1, 1)), np.zeros(1), np.array([[sl * sl]]))
    so2, T = so * so, y.size
    H, c = np.full((T, 1, 1), 1.0 / so2), np.full(T, -0.5 * (_LOG_2PI + math.log(so2)))  # at x = y
    return factor_band(add_emission(prior_band(walk, T, center=y[:, None]), H, np.zeros((T, 1)), c), "local_level")


def _normal_lp(x, loc, scale):
    z = (x - loc) / scale
    return -0.5 * (z * z + _LOG_2PI) - math.log(scale)


def _log_joint(theta, z, data):
    y = data["y"]
    level0, so, sl = _scalars(theta)
    x = np.asarray(z["x"], dtype=float)
    walk = _normal_lp(x[..., 0], level0, sl) + _normal_lp(x[..., 1:], x[..., :-1], sl).sum(-1)
    return walk + _normal_lp(y, x, so).sum(-1)


def _chain_prior(theta, data):
    level0, _, sl = _scalars(theta)
    return GaussianRandomWalk(sl, init_loc=level0, init_scale=sl, length=data["y"].size)


def _chain_emission(theta, z, data):
    return Normal(np.asarray(z["x"], dtype=float), theta["sigma_obs"]).log_prob(data["y"])


def _loglik(parts, theta, data):
    return float(log_integral(parts.post(theta, data)))


def _exact_estep(parts, theta, data):
    fb = parts.post(theta, data)
    y = data["y"]
    delta, cov, cross = band_moments(fb)
    m, v, k = y + delta[:, 0], cov[:, 0, 0], cross[:, 0, 0]  # k[t] = Cov(x_{t+1}, x_t)
    dm = np.diff(m)
    stats = {
        "x0": m[0],
        "x0sq": v[0] + m[0] ** 2,
        "dsq": float(np.sum(v[1:] + v[:-1] - 2.0 * k + dm * dm)),
        "rsq": float(np.sum(v + (y - m) ** 2)),
    }
    return stats, float(log_integral(fb))


def _sufficient_stats(z, data):
    y = data["y"]
    x = np.asarray(z["x"], dtype=float).reshape(-1, y.size)
    d = np.diff(x, axis=1)
    r = y - x
    return {
        "x0": float(x[:, 0].mean()),
        "x0sq": float(np.mean(x[:, 0] ** 2)),
        "dsq": float(np.sum(d * d) / x.shape[0]),
        "rsq": float(np.sum(r * r) / x.shape[0]),
    }


def _mstep(stats, data):
    T = data["y"].size
    floor = float(data["var_floor"])
    x0 = float(stats["x0"])
    s_level = max((max(float(stats["x0sq"]) - x0 * x0, 0.0) + float(stats["dsq"])) / T, floor)
    s_obs = max(float(stats["rsq"]) / T, floor)
    return {"level0": np.array(x0), "sigma_obs": np.array(math.sqrt(s_obs)),
            "sigma_level": np.array(math.sqrt(s_level))}


def _posterior_sampler(parts, theta, data, rng, batch=()):
    return {"x": data["y"] + sample_band(parts.post(theta, data), rng, sample_shape=tuple(batch))}

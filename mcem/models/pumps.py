"""The Gamma-Poisson hierarchy on the pump failure data of Gaver & O'Muircheartaigh (1987).

Data (Gaver & O'Muircheartaigh 1987, Technometrics 29:1-15, Table 2; the "pumps" example of
Gelfand & Smith 1990 and of the BUGS manual): for each of ten pumps of a nuclear power plant the
number of failures ``y_i`` and the operating time ``t_i`` in thousands of hours::

    y = (5, 1, 5, 14, 3, 19, 1, 1, 4, 22)
    t = (94.320, 15.720, 62.880, 125.760, 5.240, 31.440, 1.048, 1.048, 2.096, 10.480)

Model (``alpha`` the shape, ``beta`` the *rate* of the gamma distribution)::

    lambda_i ~ Gamma(alpha, beta)             density beta^alpha lambda^(alpha-1) e^(-beta lambda) / Gamma(alpha)
    y_i | lambda_i ~ Poisson(lambda_i t_i)

Latent: the failure rates ``lambda`` (``Continuous(positive, shape=10, unit=True)``); the log
joint returns one term per pump. Everything is conjugate:

* posterior ``lambda_i | y ~ Gamma(alpha + y_i, beta + t_i)`` (the exact sampler);
* exact E step ``E[lambda_i] = (alpha + y_i) / (beta + t_i)``,
  ``E[log lambda_i] = digamma(alpha + y_i) - log(beta + t_i)``;
* M step from ``S1 = mean_i E[lambda_i]`` and ``S2 = mean_i E[log lambda_i]``:
  ``log alpha - digamma(alpha) = log S1 - S2`` (solved by Newton's method), ``beta = alpha / S1``;
* marginal: ``y_i`` is negative binomial,
  ``log p(y_i) = lgamma(alpha + y_i) - lgamma(alpha) - lgamma(y_i + 1) + alpha log beta
  + y_i log t_i - (alpha + y_i) log(beta + t_i)``; :func:`pumps_mle` maximises it directly
  (the oracle).
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy import optimize
from scipy.special import digamma, gammaln, polygamma

from .. import constraints as C
from .._validation import as_generator
from ..core import Continuous, Model
from ._common import ready_model

__all__ = ["pump_failures", "pumps_mle", "pumps_loglik", "PUMP_FAILURES", "PUMP_TIMES"]

#: Failures of the ten pumps (Gaver & O'Muircheartaigh 1987, Table 2).
PUMP_FAILURES = (5, 1, 5, 14, 3, 19, 1, 1, 4, 22)
#: Operating times in thousands of hours (same table).
PUMP_TIMES = (94.320, 15.720, 62.880, 125.760, 5.240, 31.440, 1.048, 1.048, 2.096, 10.480)


def _check_data(failures, times):
    y = np.asarray(failures)
    t = np.asarray(times)
    for name, a in (("failures", y), ("times", t)):
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise TypeError(f"{name} must be a 1-D numeric array, got dtype {a.dtype}")
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
        if not np.all(np.isfinite(a.astype(float))):
            raise ValueError(f"{name} must be finite, got {a.tolist()!r}")
    if y.shape != t.shape:
        raise ValueError(
            f"failures and times must have the same length, got {y.size} failures and {t.size} times"
        )
    if np.any(y < 0) or np.any(y != np.round(y)):
        raise ValueError(f"failures must be non-negative integer counts, got {y.tolist()!r}")
    if np.any(t <= 0):
        raise ValueError(f"times must be positive operating times, got {t.tolist()!r}")
    return np.array(y, dtype=float), np.array(t, dtype=float)


def _nb_terms(alpha, beta, y, t):
    return (
        gammaln(alpha + y) - gammaln(alpha) - gammaln(y + 1) + alpha * np.log(beta)
        + y * np.log(t) - (alpha + y) * np.log(beta + t)
    )


def pumps_loglik(alpha, beta, failures=PUMP_FAILURES, times=PUMP_TIMES) -> float:
    """The negative-binomial marginal log-likelihood of ``(alpha, beta)`` (rate parameterisation)."""
    y, t = _check_data(failures, times)
    return float(np.sum(_nb_terms(float(alpha), float(beta), y, t)))


def _solve_alpha(s, alpha0=None, tol=1e-12, max_iter=100):
    """The root of ``log a - digamma(a) = s`` (s > 0): Newton's method in log a."""
    s = max(float(s), 1e-12)
    # Minka's (2002) closed-form start, accurate to a few per cent
    a = (3.0 - s + np.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s) if alpha0 is None else alpha0
    for _ in range(max_iter):
        f = np.log(a) - digamma(a) - s
        fp = 1.0 / a - polygamma(1, a)  # negative
        step = f / (fp * a)  # Newton in log a
        a_new = a * np.exp(-np.clip(step, -5.0, 5.0))
        if abs(a_new - a) <= tol * a:
            return float(a_new)
        a = a_new
    return float(a)


def pumps_mle(failures=PUMP_FAILURES, times=PUMP_TIMES) -> dict:
    """Maximise the negative-binomial marginal likelihood directly (the oracle for EM/MCEM).

    Returns
    -------
    dict
        ``params`` ({"alpha", "beta"}), ``se`` (from the inverse observed information, exact
        second derivatives), ``loglik``, ``success`` and ``message`` of ``scipy.optimize``.
    """
    y, t = _check_data(failures, times)
    n = y.size

    def negll(v):
        a, b = np.exp(v)
        return -float(np.sum(_nb_terms(a, b, y, t)))

    def grad(v):
        a, b = np.exp(v)
        ga = np.sum(digamma(a + y) - digamma(a) + np.log(b) - np.log(b + t))
        gb = np.sum(a / b - (a + y) / (b + t))
        return -np.array([ga * a, gb * b])

    # moment start: lambda_hat = y / t, alpha / beta = mean, alpha / beta^2 = variance
    r = y / t
    m, v = r.mean(), max(r.var(ddof=1), 1e-3)
    v0 = np.log([max(m * m / v, 0.1), max(m / v, 0.1)])
    res = optimize.minimize(negll, v0, jac=grad, method="BFGS", options={"gtol": 1e-10})
    a, b = np.exp(res.x)
    H = np.array(
        [
            [np.sum(polygamma(1, a + y) - polygamma(1, a)), np.sum(1.0 / b - 1.0 / (b + t))],
            [np.sum(1.0 / b - 1.0 / (b + t)), np.sum(-a / b**2 + (a + y) / (b + t) ** 2)],
        ]
    )
    cov = np.linalg.inv(-H)
    return {
        "params": {"alpha": float(a), "beta": float(b)},
        "se": {"alpha": float(np.sqrt(cov[0, 0])), "beta": float(np.sqrt(cov[1, 1]))},
        "cov": cov,
        "loglik": -float(res.fun),
        "success": bool(res.success),
        "message": str(res.message),
        "n": n,
    }


def pump_failures(failures=PUMP_FAILURES, times=PUMP_TIMES, init=None) -> Model:
    """The Gamma-Poisson model as an :class:`mcem.Model` with exact EM extras.

    Parameters
    ----------
    failures : 1-D array of non-negative ints
        Event counts ``y_i`` (default: the ten pumps).
    times : 1-D array of positive floats
        Exposures ``t_i`` (default: the pumps' operating times, thousands of hours).
    init : dict, optional
        Starting ``{"alpha": ..., "beta": ...}``; default ``alpha = beta = 1``.

    Returns
    -------
    Model
        Parameters ``alpha`` (shape) and ``beta`` (rate), both ``positive``; latent ``lambda``
        (``Continuous(positive, shape=n, unit=True)``, starting at ``(y + 0.5) / t``); per-unit
        log joint; ``exact_estep``, ``mstep``, ``sufficient_stats``, ``loglik``,
        ``posterior_sampler`` (gamma draws), ``grad_params`` and ``n_obs = n``.
    """
    y, t = _check_data(failures, times)
    n = y.size
    const = y * np.log(t) - gammaln(y + 1)  # Poisson terms free of the parameters and latents
    init = {"alpha": 1.0, "beta": 1.0} if init is None else init
    return ready_model(
        partial(_log_joint, const), _exact_estep, _mstep, _sufficient_stats, _loglik, _posterior_sampler,
        _grad_params,
        params={"alpha": C.positive, "beta": C.positive},
        latents={"lambda": Continuous(C.positive, shape=n, unit=True, init=(y + 0.5) / t)},
        data={"failures": y, "times": t}, init=init, n_obs=n, name="pump_failures",
    )


# --------------------------------------------------------------------------- the model's functions
def _log_joint(const, theta, z, data):
    y, t = data["failures"], data["times"]
    a, b = theta["alpha"], theta["beta"]
    lam = z["lambda"]
    with np.errstate(divide="ignore"):
        loglam = np.log(lam)
    return (
        a * np.log(b) - gammaln(a) + (a - 1.0 + y) * loglam - (b + t) * lam + const
    )


def _exact_estep(theta, data):
    y, t = data["failures"], data["times"]
    a, b = float(theta["alpha"]), float(theta["beta"])
    s1 = np.mean((a + y) / (b + t))
    s2 = np.mean(digamma(a + y) - np.log(b + t))
    return {"mean_lambda": s1, "mean_log_lambda": s2}, float(np.sum(_nb_terms(a, b, y, t)))


def _sufficient_stats(z, data):
    lam = np.asarray(z["lambda"], dtype=float)
    return {"mean_lambda": float(lam.mean()), "mean_log_lambda": float(np.log(lam).mean())}


def _mstep(stats, data):
    s1, s2 = float(stats["mean_lambda"]), float(stats["mean_log_lambda"])
    a = _solve_alpha(np.log(s1) - s2)
    return {"alpha": np.array(a), "beta": np.array(a / s1)}


def _loglik(theta, data):
    return float(np.sum(_nb_terms(float(theta["alpha"]), float(theta["beta"]), data["failures"], data["times"])))


def _posterior_sampler(theta, data, rng, batch=()):
    y, t = data["failures"], data["times"]
    rng = as_generator(rng)
    a, b = float(theta["alpha"]), float(theta["beta"])
    shape = tuple(batch) + (y.size,)
    return {"lambda": rng.gamma(np.broadcast_to(a + y, shape), 1.0 / (b + t))}


def _grad_params(theta, z, data):
    a, b = theta["alpha"], theta["beta"]
    lam = np.asarray(z["lambda"], dtype=float)
    n = data["failures"].size
    return {
        "alpha": n * (np.log(b) - digamma(a)) + np.log(lam).sum(axis=-1),
        "beta": n * a / b - lam.sum(axis=-1),
    }

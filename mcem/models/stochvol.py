"""The stochastic-volatility model, and its likelihood by a fine-grid hidden Markov approximation.

Model (T returns y_t)::

    y_t | h_t ~ N(0, exp(h_t)),    h_t - mu = phi (h_{t-1} - mu) + sigma eta_t,   eta_t ~ N(0, 1),
    h_0 ~ N(mu, sigma^2 / (1 - phi^2))                                  (the stationary law)

    mu      real        the mean log-variance
    phi     (-1, 1)     the persistence of the log-variance
    sigma   positive    the standard deviation of its innovations
    latent h            an AR(1) chain of length T (the model language's ``dist.AR1``)

:func:`stochastic_volatility` is the model written in the model language; its emission terms are
not quadratic in ``h_t``, so ``sampler="auto"`` samples the path by conditional SMC and
``fit.llf`` (:meth:`~mcem.FitResult.marginal_loglik`) is a particle estimate with its Monte
Carlo error ``fit.llf_mcse``.

The reference: on a grid of ``n_grid`` points covering ``width`` stationary standard deviations
either side of ``mu``, the chain becomes a discrete hidden Markov chain (transition probabilities
proportional to the AR(1) density between grid points, initial probabilities to the stationary
density), whose likelihood the forward algorithm computes exactly (:func:`grid_loglik`). As the
grid is refined it converges to the model's likelihood; :func:`grid_mle` maximises it (Nelder-Mead
on (mu, atanh(phi), log sigma), then standard errors from a finite-difference Hessian).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from .. import constraints as C
from .. import distributions as dist
from .._validation import check_positive_int
from ..core import Model
from ..derivatives import central_hessian
from ..kernels.ffbs import forward_backward
from ..lang import model
from ._common import float_series

__all__ = ["stochastic_volatility", "simulate", "grid_loglik", "grid_mle"]


def _sv(m, y):
    """The stochastic-volatility model of this module in the model language."""
    mu = m.param("mu", init=float(np.log(np.var(y))))
    phi = m.param("phi", constraint=C.interval(-1.0, 1.0), init=0.9)
    sigma = m.param("sigma", constraint=C.positive, init=0.3)
    h = m.latent("h", dist.AR1(phi, sigma, loc=mu, length=len(y)))
    m.observe("y", dist.Normal(0.0, m.np.exp(0.5 * h)), y)


def _returns(y):
    return float_series(y, "y", minimum=3)


def stochastic_volatility(y) -> Model:
    """The stochastic-volatility model on the returns ``y`` (1-D), as an :class:`mcem.Model`."""
    return model(_sv)(y=_returns(y))


def simulate(T=500, mu=-1.0, phi=0.95, sigma=0.25, rng=None):
    """Returns ``(y, h)`` of length ``T`` simulated from the model (``rng``: int or Generator)."""
    T = check_positive_int(T, "T", minimum=3)
    rng = np.random.default_rng(rng)
    h = np.empty(T)
    h[0] = mu + sigma / np.sqrt(1 - phi**2) * rng.standard_normal()
    eta = sigma * rng.standard_normal(T)
    for t in range(1, T):  # simulation only
        h[t] = mu + phi * (h[t - 1] - mu) + eta[t]
    return np.exp(0.5 * h) * rng.standard_normal(T), h


def grid_loglik(y, mu, phi, sigma, n_grid=300, width=6.0):
    """The log-likelihood of the model at (mu, phi, sigma) by the grid approximation."""
    y = _returns(y)
    n_grid = check_positive_int(n_grid, "n_grid", minimum=10)
    if not (-1.0 < phi < 1.0 and sigma > 0):
        return -np.inf
    sd = sigma / np.sqrt(1.0 - phi**2)
    g = mu + sd * np.linspace(-width, width, n_grid)
    lt = -0.5 * ((g[None, :] - mu - phi * (g[:, None] - mu)) / sigma) ** 2
    lt -= np.logaddexp.reduce(lt, axis=1, keepdims=True)
    li = -0.5 * ((g - mu) / sd) ** 2
    li -= np.logaddexp.reduce(li)
    le = -0.5 * (np.log(2 * np.pi) + g[None, :] + y[:, None] ** 2 * np.exp(-g[None, :]))
    ll = _forward_loglik(li, lt, le)
    return ll if ll is not None else float(forward_backward(li, lt, le[None]).loglik[0])


#: The forward pass in probabilities is taken where the mass kept at every step is at least this
#: (what underflows to zero is then below 1e-100 of it); the log-space pass otherwise.
_MIN_MASS = 1e-200


def _forward_loglik(li, lt, le):
    """The forward algorithm's log-likelihood (log initial probabilities ``li`` (K,), normalised
    log transitions ``lt`` (K, K), emissions ``le`` (T, K)) by the scaled recursion in
    probabilities, one product with the transition matrix per step (the log-likelihood
    :func:`mcem.kernels.ffbs.forward_backward` computes in log space, with no backward pass); None
    where the mass at some step falls below ``_MIN_MASS`` (or is not finite)."""
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        m = le.max(axis=1)
        E = np.exp(le - m[:, None])
        A = np.exp(lt)
        a = np.exp(li) * E[0]
        ll = 0.0
        for t in range(le.shape[0]):
            if t:
                a = (a @ A) * E[t]
            s = a.sum()
            if not (np.isfinite(s) and s >= _MIN_MASS):
                return None
            a /= s
            ll += np.log(s)
    ll += m.sum()
    return float(ll) if np.isfinite(ll) else None


def _theta(v):
    return {"mu": float(v[0]), "phi": float(np.tanh(v[1])), "sigma": float(np.exp(v[2]))}


def grid_mle(y, n_grid=300, width=6.0, start=(None, 0.9, 0.3)):
    """The maximiser of :func:`grid_loglik`: a dict with ``params``, ``se`` (from the observed
    information on (mu, atanh(phi), log sigma), mapped back by the delta method) and ``loglik``."""
    y = _returns(y)

    def nll(v):
        t = _theta(v)
        return -grid_loglik(y, t["mu"], t["phi"], t["sigma"], n_grid, width)

    mu0 = float(np.log(np.var(y))) if start[0] is None else float(start[0])
    v0 = np.array([mu0, np.arctanh(start[1]), np.log(start[2])])
    res = optimize.minimize(nll, v0, method="Nelder-Mead",
                            options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000})
    v = res.x
    H = central_hessian(lambda w: -nll(w), v, 1e-4)
    cov = np.linalg.inv(-H)
    jac = np.array([1.0, 1.0 - np.tanh(v[1]) ** 2, np.exp(v[2])])
    se = np.sqrt(np.diag(cov)) * jac
    return {"params": _theta(v), "se": {"mu": float(se[0]), "phi": float(se[1]), "sigma": float(se[2])},
            "loglik": float(-res.fun)}

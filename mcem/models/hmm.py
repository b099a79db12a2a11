"""The Gaussian hidden Markov model: exact EM (Baum-Welch), the oracle of the chain samplers.

Model (one sequence ``y_0, ..., y_{T-1}``, K hidden states)::

    s_0 ~ Uniform{0, ..., K-1}                   (fixed: one sequence cannot estimate it)
    s_t | s_{t-1} = i ~ Categorical(A[i])        t = 1, ..., T-1
    y_t | s_t = k ~ N(mu_k, sigma_k^2)

    A        simplex(K, batch=(K,)), shape (K, K)   row i: the transition probabilities out of state i
    mu       real, shape (K,)
    sigma    positive, shape (K,)                    standard deviations
    latent s Discrete(K, shape=(T,))                 a chain (``model.chains["s"]``)

The initial distribution is not a parameter: with one sequence its maximum-likelihood estimate is
a point mass on the state of ``s_0`` (a degenerate boundary value), so it is held at 1/K.

The complete-data sufficient statistics are the transition counts
``N[i, j] = sum_t 1[s_{t-1} = i, s_t = j]`` and, per state, ``S0[k] = sum_t 1[s_t = k]``,
``S1[k] = sum_t 1[s_t = k] (y_t - ybar)``, ``S2[k] = sum_t 1[s_t = k] (y_t - ybar)^2`` (the data
centred at their mean ``ybar`` for accuracy). The exact E step takes their posterior
expectations by the forward-backward algorithm (:func:`mcem.kernels.ffbs.forward_backward`), a
Monte Carlo E step averages them over draws of ``s``; the M step is Baum-Welch's closed form::

    A[i, j] = N[i, j] / sum_j N[i, j]
    mu_k = ybar + S1[k] / S0[k],    sigma_k^2 = S2[k] / S0[k] - (S1[k] / S0[k])^2

with ``sigma_k^2`` floored at ``1e-8`` times the sample variance of ``y`` (a state that collapses
on one observation would make the likelihood unbounded). The log-likelihood is the forward
algorithm's, and the posterior sampler draws whole paths by forward filtering, backward sampling.
As for every mixture, relabelling the states gives the same likelihood.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from .. import constraints as C
from .._validation import as_generator, check_mapping, check_positive_int
from ..core import Chain, Discrete, Model
from ..distributions import Normal
from ..distributions.chains import MarkovChain
from ..kernels.ffbs import forward_backward, forward_filter_backward_sample
from ._common import Memo, bind, float_series, ready_model

__all__ = ["gaussian_hmm", "initial_params"]

_EPS = 10 * np.finfo(float).eps
_VAR_FLOOR = 1e-8


def _check_y(y) -> np.ndarray:
    return float_series(y, "y")


def _emission_table(theta, data):
    """log N(y_t | mu_k, sigma_k^2) for every time step and state: shape (T, K)."""
    mu, sigma = np.asarray(theta["mu"], dtype=float), np.asarray(theta["sigma"], dtype=float)
    return np.asarray(Normal(mu, sigma).log_prob(data["y"][:, None]), dtype=float)


def _log_A(theta):
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(theta["A"], dtype=float))


class _Parts(NamedTuple):
    """What the model's functions take first: K, T, the memo of :func:`_emission_table`, 0..T-1."""

    K: int
    T: int
    table: Memo
    rows: np.ndarray


def _log_init(parts):
    return np.full(parts.K, -np.log(parts.K))


def _log_joint(parts, theta, z, data):
    s = np.asarray(z["s"])
    table = parts.table(theta, data)
    trans = _log_A(theta)[s[..., :-1], s[..., 1:]].sum(axis=-1)
    return trans + table[parts.rows, s].sum(axis=-1) - np.log(parts.K)


def _exact_estep(parts, theta, data):
    table = parts.table(theta, data)
    fb = forward_backward(_log_init(parts), _log_A(theta), table[None])
    gamma, yc = fb.gamma[0], data["yc"]
    stats = {"N": fb.xi[0], "S0": gamma.sum(axis=0), "S1": yc @ gamma, "S2": (yc * yc) @ gamma}
    return stats, float(fb.loglik[0])


def _sufficient_stats(parts, z, data):
    K, T = parts.K, parts.T
    s = np.asarray(z["s"], dtype=np.int64).reshape(-1, T)
    n = s.shape[0]
    yc = np.broadcast_to(data["yc"], (n, T)).ravel()
    flat = s.ravel()
    return {
        "N": np.bincount((s[:, :-1] * K + s[:, 1:]).ravel(), minlength=K * K).reshape(K, K) / n,
        "S0": np.bincount(flat, minlength=K) / n,
        "S1": np.bincount(flat, weights=yc, minlength=K) / n,
        "S2": np.bincount(flat, weights=yc * yc, minlength=K) / n,
    }


def _mstep(stats, data):
    N, S0, S1, S2 = (np.asarray(stats[k], dtype=float) for k in ("N", "S0", "S1", "S2"))
    K = S0.shape[0]
    A = (N + _EPS) / (N.sum(axis=1, keepdims=True) + K * _EPS)
    n = S0 + _EPS
    m = S1 / n
    var = np.maximum(S2 / n - m * m, data["var_floor"])
    return {"A": A, "mu": m + data["shift"], "sigma": np.sqrt(var)}


def _loglik(parts, theta, data):
    table = parts.table(theta, data)
    return float(forward_backward(_log_init(parts), _log_A(theta), table[None]).loglik[0])


def _posterior_sampler(parts, theta, data, rng, batch=()):
    rng = as_generator(rng)
    batch = tuple(batch)
    n = int(np.prod(batch, dtype=int))
    table = parts.table(theta, data)
    le = np.broadcast_to(table, (n,) + table.shape)
    s, _ = forward_filter_backward_sample(_log_init(parts), _log_A(theta), le, rng.random((n, parts.T)))
    return {"s": s.reshape(batch + (parts.T,))}


def _chain_prior(parts, theta, data):
    """The prior of the state chain at theta: uniform start, transition matrix A."""
    return MarkovChain(np.full(parts.K, 1.0 / parts.K), np.asarray(theta["A"], dtype=float), length=parts.T)


def _chain_emission(parts, theta, z, data):
    """log N(y_t | mu_{s_t}, sigma_{s_t}^2) per time step: shape batch + (T,)."""
    return parts.table(theta, data)[parts.rows, np.asarray(z["s"])]


def initial_params(y, K) -> dict:
    """The default start: ``mu`` at the quantiles ``(k + 1/2) / K`` of ``y`` (increasing),
    ``sigma = sd(y) / K`` (1 when ``y`` is constant), and ``A`` with 0.9 on the diagonal and the
    rest of each row spread evenly."""
    y = _check_y(y)
    K = check_positive_int(K, "K")
    sd = float(np.std(y))
    A = np.full((K, K), 0.1 / (K - 1)) if K > 1 else np.ones((1, 1))
    np.fill_diagonal(A, 0.9 if K > 1 else 1.0)
    return {
        "A": A,
        "mu": np.quantile(y, (np.arange(K) + 0.5) / K),
        "sigma": np.full(K, sd / K if sd > 0 else 1.0),
    }


def gaussian_hmm(y, K, *, init=None) -> Model:
    """The Gaussian hidden Markov model as an :class:`mcem.Model` with exact EM extras.

    Parameters
    ----------
    y : array (T,)
        One sequence of real observations (T >= 2).
    K : int
        Number of hidden states.
    init : dict, optional
        Initial parameters (``A``, ``mu``, ``sigma``); names left out take the defaults of
        :func:`initial_params`.

    Returns
    -------
    Model
        Named ``"gaussian_hmm"``, with ``exact_estep`` (forward-backward), ``mstep``
        (Baum-Welch), ``sufficient_stats``, ``loglik`` (forward algorithm),
        ``posterior_sampler`` (forward filtering, backward sampling) and
        ``chains={"s": Chain(...)}`` for the chain samplers. ``model.data`` holds ``y``, ``yc``
        (y centred at its mean), ``shift`` (that mean) and ``var_floor``.
    """
    y = _check_y(y)
    K = check_positive_int(K, "K")
    init = {**initial_params(y, K), **check_mapping(init, "init", what="initial parameters")}
    T = y.shape[0]
    shift = float(y.mean())
    var = float(np.var(y))
    data = {"y": y, "yc": y - shift, "shift": shift, "var_floor": _VAR_FLOOR * var if var > 0 else _VAR_FLOOR}
    parts = _Parts(K, T, Memo(_emission_table, ("mu", "sigma")), np.arange(T))
    params = {"A": C.simplex(K, batch=(K,)), "mu": C.real(shape=K), "sigma": C.positive(shape=K)}
    chain = Chain(functools.partial(_chain_prior, parts), functools.partial(_chain_emission, parts), gaussian=False)
    return ready_model(
        *bind(parts, _log_joint, _exact_estep, _sufficient_stats, _loglik, _posterior_sampler), _mstep,
        params=params, latents={"s": Discrete(K, shape=(T,))}, data=data, init=init, n_obs=T,
        chains={"s": chain}, name="gaussian_hmm",
    )

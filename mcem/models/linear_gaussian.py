"""Factor analysis: a linear-Gaussian latent model with exact EM (the continuous-latent oracle).

Model (N observations of dimension d, q < d factors)::

    x_n = mu + Lambda f_n + eps_n,    f_n ~ N(0, I_q),    eps_n ~ N(0, Psi),   independent

    mu       real, shape (d,)
    Lambda   real, shape (d, q)         (loadings="full"), or lower-trapezoidal: Lambda[j, k] = 0
                                        for k > j (loadings="lower")
    psi      positive, shape (d,)       Psi = diag(psi)           (noise="diagonal": factor analysis)
             positive, shape ()         Psi = psi I_d             (noise="isotropic": probabilistic PCA)
    latent f Continuous(real, shape=(N, q), unit=True)

Marginally x_n ~ N(mu, Lambda Lambda^T + Psi), so the log-likelihood is exact, and the posterior of
each f_n is Gaussian::

    f_n | x_n ~ N(G Lambda^T Psi^-1 (x_n - mu), G),    G = (I_q + Lambda^T Psi^-1 Lambda)^-1

The complete-data sufficient statistics are ``Sf = sum_n f_n``, ``Sff = sum_n f_n f_n^T`` and
``Sxf = sum_n (x_n - xbar) f_n^T`` (the data enter through their fixed scatter matrix). The E step
takes their posterior expectations; a Monte Carlo E step averages them over draws of f. The M step
regresses each coordinate of x on (1, f)::

    [mu - xbar, Lambda] = [0, Sxf] A^-1,    A = [[N, Sf^T], [Sf, Sff]]
    psi_j = (Sxx_jj - sum_k B_jk C_jk) / N        (the mean over j for isotropic noise)

with ``B = [mu - xbar, Lambda]`` and ``C = [0, Sxf]``. With ``loadings="lower"`` row j regresses on
its first ``min(j + 1, q)`` factors only, which is still the exact maximiser of Q.

Identifiability. The likelihood depends on Lambda only through Lambda Lambda^T: Lambda R fits as
well as Lambda for every orthogonal R. With ``loadings="full"`` (the textbook parameterisation) the
observed information is therefore singular in q(q - 1)/2 rotation directions and standard errors of
Lambda are undefined; compare fits through ``Lambda Lambda^T``, ``psi`` and ``mu``
(:func:`implied_covariance`). ``loadings="lower"`` removes the rotation (Lambda lower-trapezoidal,
the classical identification of Anderson & Rubin 1956), leaving only the sign of each column; every
Lambda Lambda^T of rank q has such a factor, so the maximum likelihood is the same and standard
errors exist. The fixed zeros get a standard error of 0.

Heywood cases (an MLE with some psi_j = 0) are kept inside the parameter space by flooring psi at
``1e-8`` times the coordinate's sample variance.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import constraints as C
from .._validation import check_choice, check_positive_int
from ..core import Continuous, Model
from ._common import Memo, bind, float_matrix, ready_model

__all__ = ["factor_analysis", "LowerTrapezoidal", "implied_covariance", "initial_params"]

_LOG_2PI = float(np.log(2 * np.pi))
_PSI_FLOOR = 1e-8


class LowerTrapezoidal(C.Constraint):
    """Real d x q matrices with zeros above the diagonal (``x[j, k] = 0`` for ``k > j``).

    Unconstrained coordinates: the free entries in row-major order (``np.tril_indices(d, 0, q)``);
    the bijection is a linear embedding with log-Jacobian 0.
    """

    def __init__(self, d, q):
        self.d = check_positive_int(d, "d")
        self.q = check_positive_int(q, "q")
        self.shape = (self.d, self.q)
        self._rows, self._cols = np.tril_indices(self.d, 0, self.q)
        self._upper = np.triu(np.ones(self.shape, dtype=bool), 1)

    @property
    def unconstrained_shape(self):
        return (self._rows.size,)

    def forward(self, u):
        u = np.asarray(u, dtype=float)
        out = np.zeros(u.shape[:-1] + self.shape)
        out[..., self._rows, self._cols] = u
        return out

    def inverse(self, x):
        return np.asarray(x, dtype=float)[..., self._rows, self._cols]

    def log_abs_det_jacobian(self, u):
        return np.zeros(np.shape(u)[:-1])

    def contains(self, x):
        x = np.asarray(x, dtype=float)
        finite = np.all(np.isfinite(x), axis=(-2, -1))
        return finite & np.all(np.where(self._upper, x == 0, True), axis=(-2, -1))

    def default(self):
        return np.eye(self.d, self.q)

    def _key(self):
        return (self.d, self.q)

    def __repr__(self):
        return f"lower_trapezoidal({self.d}, {self.q})"


def _check_X(X):
    arr = float_matrix(X)
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"X must be finite, got {int(np.isnan(arr).sum())} NaN and {int(np.isinf(arr).sum())} "
            "inf value(s); for missing values see mcem.models.missing_normal"
        )
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"X needs at least 2 samples and 2 features, got shape {arr.shape}")
    return arr


def implied_covariance(theta) -> np.ndarray:
    """``Lambda Lambda^T + diag(psi)``: the marginal covariance of x (rotation invariant)."""
    lam = np.asarray(theta["Lambda"], dtype=float)
    psi = np.asarray(theta["psi"], dtype=float)
    return lam @ lam.T + np.diag(np.broadcast_to(psi, (lam.shape[0],)))


def _lower_form(lam):
    """Rotate Lambda (d, q) to lower-trapezoidal form with a non-negative diagonal: Lambda Q."""
    q = lam.shape[1]
    Q, R = np.linalg.qr(lam[:q].T)  # lam[:q] Q = R^T, lower triangular
    L = lam @ Q
    s = np.sign(np.diagonal(L[:q]))
    s[s == 0] = 1.0
    L = L * s
    L[np.triu_indices(lam.shape[0], 1, q)] = 0.0
    return L


def initial_params(X, n_factors, noise="diagonal", loadings="full"):
    """A principal-components start: the probabilistic-PCA MLE (Tipping & Bishop 1999).

    ``Lambda = U_q (l_q - s2)^(1/2)`` from the top q eigenpairs of the sample covariance,
    ``s2`` the mean of the other eigenvalues; ``psi`` is the diagonal of the residual covariance,
    floored at 10% of each variance (or ``s2`` for isotropic noise).
    """
    X = _check_X(X)
    q = check_positive_int(n_factors, "n_factors")
    N, d = X.shape
    S = np.cov(X, rowvar=False, bias=True)
    evals, evecs = np.linalg.eigh(S)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    s2 = max(float(np.mean(evals[q:])), 1e-6 * float(np.mean(np.diag(S))))
    lam = evecs[:, :q] * np.sqrt(np.maximum(evals[:q] - s2, 1e-6 * s2))
    if loadings == "lower":
        lam = _lower_form(lam)
    if noise == "isotropic":
        psi = np.array(s2)
    else:
        psi = np.maximum(np.diag(S) - np.sum(lam**2, axis=1), 0.1 * np.diag(S))
    return {"mu": X.mean(axis=0), "Lambda": lam, "psi": psi}


def factor_analysis(X, n_factors, *, noise="diagonal", loadings="full", init=None) -> Model:
    """Factor analysis (or probabilistic PCA) as an :class:`mcem.Model` with exact EM extras.

    Parameters
    ----------
    X : array (N, d)
        Complete data (no NaN; for missing values see :func:`mcem.models.missing_normal`).
    n_factors : int
        q, with 1 <= q < d.
    noise : {"diagonal", "isotropic"}
        ``Psi = diag(psi)`` (factor analysis) or ``psi I`` (probabilistic PCA, whose MLE has a
        closed form through the eigendecomposition of the sample covariance).
    loadings : {"full", "lower"}
        Unrestricted loadings (identified only up to rotation) or lower-trapezoidal ones
        (identified up to column signs, so standard errors exist); see the module docstring.
    init : dict, optional
        Initial ``mu``, ``Lambda``, ``psi``; default :func:`initial_params` (principal components).
        Lambda = 0 is a stationary point of EM, so do not start there.

    Returns
    -------
    Model
        Parameters ``mu``, ``Lambda``, ``psi``; latent ``f`` of shape (N, q) with unit axis 0;
        ``exact_estep``, ``mstep``, ``sufficient_stats``, ``loglik``, ``posterior_sampler`` and
        ``grad_params``.
    """
    X = _check_X(X)
    N, d = X.shape
    q = check_positive_int(n_factors, "n_factors")
    if q >= d:
        raise ValueError(f"n_factors must be smaller than the number of features d={d}, got {q}")
    check_choice(noise, "noise", {"diagonal", "isotropic"})
    check_choice(loadings, "loadings", {"full", "lower"})
    if init is None:
        init = initial_params(X, q, noise, loadings)
    xbar = X.mean(axis=0)
    Xc = X - xbar
    Sxx = Xc.T @ Xc
    data = {"Xc": Xc, "xbar": xbar, "Sxx": Sxx, "psi_floor": _PSI_FLOOR * np.diag(Sxx) / N}
    params = {
        "mu": C.real(shape=d),
        "Lambda": LowerTrapezoidal(d, q) if loadings == "lower" else C.real(shape=(d, q)),
        "psi": C.positive if noise == "isotropic" else C.positive(shape=d),
    }
    parts = _Parts(q, noise == "isotropic", loadings == "lower", Memo(_posterior, ("mu", "Lambda", "psi")))
    return ready_model(
        *bind(parts, _log_joint, _exact_estep, _mstep, _sufficient_stats, _posterior_sampler, _grad_params),
        _loglik, params=params, latents={"f": Continuous(C.real, shape=(N, q), unit=True)}, data=data,
        init=init, n_obs=N, name=f"factor_analysis(q={q}, {noise}, {loadings})",
    )


# --------------------------------------------------------------------------- the model's functions
# the observations come from ``data`` (Xc (N, d), xbar, Sxx, psi_floor), the options from ``parts``
class _Parts(NamedTuple):
    n_factors: int
    isotropic: bool
    lower: bool  # lower-trapezoidal loadings
    post: Memo  # of _posterior


def _psi_vec(theta, d):
    return np.broadcast_to(np.asarray(theta["psi"], dtype=float), (d,))


def _posterior(theta, data):
    """(posterior means (N, q), posterior covariance G (q, q)); memoised per model."""
    Xc = data["Xc"]
    lam, psi = np.asarray(theta["Lambda"], dtype=float), _psi_vec(theta, Xc.shape[1])
    m = np.asarray(theta["mu"], dtype=float) - data["xbar"]
    lp = lam / psi[:, None]  # Psi^-1 Lambda
    G = np.linalg.inv(np.eye(lam.shape[1]) + lam.T @ lp)
    G = 0.5 * (G + G.T)
    Ef = (Xc - m) @ lp @ G  # G symmetric
    return Ef, G


def _loglik(theta, data):
    N, d = data["Xc"].shape
    Sigma = implied_covariance(theta)
    m = np.asarray(theta["mu"], dtype=float) - data["xbar"]
    L = np.linalg.cholesky(Sigma)
    logdet = 2.0 * np.sum(np.log(np.diagonal(L)))
    S = data["Sxx"] + N * np.outer(m, m)  # sum_n (x_n - mu)(x_n - mu)^T, since sum_n Xc_n = 0
    Linv = np.linalg.solve(L, np.eye(d))
    trace = float(np.sum((Linv @ S) * Linv))  # tr(Sigma^-1 S)
    return -0.5 * (N * (d * _LOG_2PI + logdet) + trace)


def _exact_estep(parts, theta, data):
    Xc = data["Xc"]
    Ef, G = parts.post(theta, data)
    stats = {"Sf": Ef.sum(axis=0), "Sff": Xc.shape[0] * G + Ef.T @ Ef, "Sxf": Xc.T @ Ef}
    return stats, _loglik(theta, data)


def _sufficient_stats(parts, z, data):
    Xc = data["Xc"]
    f = np.asarray(z["f"], dtype=float).reshape(-1, Xc.shape[0], parts.n_factors)
    B = f.shape[0]
    return {
        "Sf": f.sum(axis=(0, 1)) / B,
        "Sff": np.einsum("bnk,bnl->kl", f, f) / B,
        "Sxf": np.einsum("nd,bnk->dk", Xc, f) / B,
    }


def _mstep(parts, stats, data):
    (N, d), q, Sxx = data["Xc"].shape, parts.n_factors, data["Sxx"]
    Sf, Sff, Sxf = (np.asarray(stats[k], dtype=float) for k in ("Sf", "Sff", "Sxf"))
    A = np.empty((q + 1, q + 1))
    A[0, 0], A[0, 1:], A[1:, 0], A[1:, 1:] = N, Sf, Sf, 0.5 * (Sff + Sff.T)
    Cm = np.concatenate([np.zeros((d, 1)), Sxf], axis=1)  # [sum (x - xbar), Sxf]
    Bm = np.linalg.solve(A, Cm.T).T  # (d, q + 1): rows [mu_j - xbar_j, Lambda_j]
    # rows j < q - 1 of a lower-trapezoidal Lambda use the regressors (1, f_1..f_{j+1})
    for j in range(q - 1) if parts.lower else ():  # a loop over at most q - 1 rows
        k = j + 2
        Bm[j] = 0.0
        Bm[j, :k] = np.linalg.solve(A[:k, :k], Cm[j, :k])
    resid = np.diag(Sxx) - np.sum(Bm * Cm, axis=1)  # N * residual variance per coordinate
    floor = data["psi_floor"]
    psi = max(resid.sum() / (N * d), floor.mean()) if parts.isotropic else np.maximum(resid / N, floor)
    return {"mu": Bm[:, 0] + data["xbar"], "Lambda": Bm[:, 1:], "psi": np.asarray(psi, dtype=float)}


def _resid(theta, f, data):
    lam = np.asarray(theta["Lambda"], dtype=float)
    m = np.asarray(theta["mu"], dtype=float) - data["xbar"]
    return data["Xc"] - m - f @ lam.T  # (..., N, d)


def _log_joint(parts, theta, z, data):
    d = data["Xc"].shape[1]
    f = np.asarray(z["f"], dtype=float)
    psi = _psi_vec(theta, d)
    r = _resid(theta, f, data)
    obs = -0.5 * (np.sum(r * r / psi, axis=-1) + np.sum(np.log(psi)) + d * _LOG_2PI)
    prior = -0.5 * (np.sum(f * f, axis=-1) + parts.n_factors * _LOG_2PI)
    return obs + prior  # (..., N): one term per unit


def _grad_params(parts, theta, z, data):
    f = np.asarray(z["f"], dtype=float)
    psi = _psi_vec(theta, data["Xc"].shape[1])
    r = _resid(theta, f, data)
    w = r / psi
    g_lam = np.einsum("...nd,...nk->...dk", w, f)
    g_psi = 0.5 * np.sum(w * w - 1.0 / psi, axis=-2)  # (..., d)
    return {"mu": w.sum(axis=-2), "Lambda": g_lam, "psi": g_psi.sum(axis=-1) if parts.isotropic else g_psi}


def _posterior_sampler(parts, theta, data, rng, batch=()):
    Ef, G = parts.post(theta, data)
    L = np.linalg.cholesky(G)
    eps = rng.standard_normal(tuple(batch) + Ef.shape)
    return {"f": Ef + eps @ L.T}

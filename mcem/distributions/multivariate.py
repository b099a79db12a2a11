"""Distributions with an event axis: Multinomial, Dirichlet and MultivariateNormal."""

from __future__ import annotations

import numpy as np

from .. import constraints
from .._jax import is_jax, namespace
from ._ops import safe, solve_triangular
from .base import _HALF_LOG_2PI, COUNT, FINITE, POSITIVE, Distribution, _mask_out
from .discrete import (
    LAST_AXIS_LOGITS,
    LAST_AXIS_PROBS,
    _DiscreteMixin,
    _LastAxisProbs,
    _total_count_note,
)

__all__ = ["Multinomial", "Dirichlet", "MultivariateNormal"]


class Multinomial(_LastAxisProbs, _DiscreteMixin, Distribution):
    """Multinomial(total_count n, probs | logits): counts over K categories, event shape (K,)."""

    support = constraints.nonnegative_integer
    param_checks = {"total_count": COUNT, "probs": LAST_AXIS_PROBS, "logits": LAST_AXIS_LOGITS}

    def __init__(self, total_count, probs=None, logits=None, *, validate_args=None):
        super().__init__(validate_args, total_count=total_count, probs=probs, logits=logits)
        self._normalise()
        self.event_shape = (self.K,)
        self._log_norm = self._params_ns().special.gammaln(self.total_count + 1.0)

    def _in_support(self, x, ns=None):
        """Events of non-negative integer counts summing to total_count (one bool per event)."""
        xp = np if ns is None else ns.np
        return xp.all(self._integral(x, ns) & (x >= 0), axis=-1) & (
            x.sum(axis=-1) == self.total_count
        )

    def log_prob(self, value):
        ns = self._ns(value)
        sp = ns.special
        x = self._event_value(value, self.K, "counts", ns)
        ok = self._in_support(x, ns)
        x = safe(ns, ok[..., None], x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.probs is not None:
                terms = sp.xlogy(x, self._probs_n)
            else:
                terms = x * self._log_p
            terms = terms - sp.gammaln(x + 1.0)
            out = terms.sum(axis=-1) + self._log_norm
        return _mask_out(out if ns.is_jax else np.asarray(out, dtype=float), ok)

    def support_mask(self, value):
        x = self._value(value)
        with np.errstate(invalid="ignore"):
            ok = self._in_support(x)
        return np.asarray(ok, dtype=bool)

    @property
    def support_text(self):
        if self.total_count.ndim == 0:
            return f"non-negative integer counts summing to total_count ({int(self.total_count)})"
        return "non-negative integer counts summing to total_count"

    _support_note = _total_count_note

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape)
        n = np.broadcast_to(self.total_count.astype(np.int64), shape)
        pv = np.broadcast_to(self._probs_n, shape + (self.K,))
        return rng.multinomial(n, pv)

    @property
    def mean(self):
        return self._full(self.total_count[..., None] * self._probs_n)

    @property
    def variance(self):
        p = self._probs_n
        return self._full(self.total_count[..., None] * p * (1.0 - p))


class Dirichlet(Distribution):
    """Dirichlet(concentration) on the simplex of the last axis, event shape (K,)."""

    param_checks = {"concentration": POSITIVE}
    param_event_dims = {"concentration": 1}

    def __init__(self, concentration, *, validate_args=None):
        super().__init__(validate_args, concentration=concentration)
        a = self.concentration
        self.event_shape = (self.K,)
        self.support = constraints.simplex(self.K)
        self._am1 = a - 1.0
        self._a0 = a.sum(axis=-1)
        gammaln = self._params_ns().special.gammaln
        self._log_norm = gammaln(self._a0) - gammaln(a).sum(axis=-1)

    def _check_shapes(self):
        a = self.concentration
        if a.ndim < 1 or a.shape[-1] < 1:
            raise ValueError(
                f"Dirichlet: concentration must have K >= 1 entries on its last axis, "
                f"got shape {a.shape}"
            )
        self.K = a.shape[-1]

    def log_prob(self, value):
        ns = self._ns(value)
        xp = ns.np
        x = self._event_value(value, self.K, ns=ns)
        ok = xp.all(x >= 0, axis=-1) & (xp.abs(x.sum(axis=-1) - 1.0) <= 1e-8 * self.K)
        x = safe(ns, ok[..., None], x, 1.0 / self.K)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = ns.special.xlogy(self._am1, x).sum(axis=-1) + self._log_norm
        return _mask_out(out if ns.is_jax else np.asarray(out, dtype=float), ok)

    def sample(self, rng, sample_shape=()):
        shape = self._shape(sample_shape) + (self.K,)
        g = rng.standard_gamma(np.broadcast_to(self.concentration, shape), shape)
        return g / g.sum(axis=-1, keepdims=True)

    @property
    def mean(self):
        return self._full(self.concentration / self._a0[..., None])

    @property
    def variance(self):
        a, a0 = self.concentration, self._a0[..., None]
        return self._full(a * (a0 - a) / (a0 * a0 * (a0 + 1.0)))


_MATRICES = ("covariance_matrix", "scale_tril", "precision_matrix")


class MultivariateNormal(Distribution):
    """Multivariate normal with event shape (d,).

    Give exactly one of ``covariance_matrix``, ``scale_tril`` (lower-triangular Cholesky factor
    of the covariance, positive diagonal) or ``precision_matrix``. ``loc`` has shape
    ``(..., d)``, the matrix ``(..., d, d)``; their batch parts broadcast.
    """

    support = constraints.real
    param_checks = {"loc": FINITE, **dict.fromkeys(_MATRICES, FINITE)}
    one_of = _MATRICES
    param_event_dims = {"loc": 1, **dict.fromkeys(_MATRICES, 2)}
    _repr_params = ("loc",)

    def __init__(
        self, loc, covariance_matrix=None, *, scale_tril=None, precision_matrix=None,
        validate_args=None,
    ):
        super().__init__(
            validate_args, loc=loc, covariance_matrix=covariance_matrix, scale_tril=scale_tril,
            precision_matrix=precision_matrix,
        )
        name = self._mode = self._alternative
        M = getattr(self, "_" + name)
        d = self.d
        self.event_shape = (d,)
        self._mat_batch = M.shape[:-2]
        known = not is_jax(M)  # the values of a JAX matrix are not checked

        if name == "scale_tril":
            if self.validate_args and known:
                self._require(
                    name, M, np.triu(M, 1) == 0, "lower triangular (zeros above the diagonal)"
                )
                diag = np.diagonal(M, axis1=-2, axis2=-1)
                self._require(name, diag, diag > 0, "with a positive diagonal")
            self._L = M
        elif not known:  # no factorisation error while tracing: NaN when not positive definite
            self._L = namespace(M).np.linalg.cholesky(M)
        else:
            if self.validate_args:
                self._require(
                    name, M,
                    np.abs(M - np.swapaxes(M, -1, -2)) <= 1e-10 * (1.0 + np.abs(M)),
                    "symmetric",
                )
            try:
                L = np.linalg.cholesky(M)
            except np.linalg.LinAlgError:
                raise ValueError(
                    f"MultivariateNormal: {name} must be symmetric positive definite, "
                    f"but its Cholesky factorisation failed (shape {M.shape})"
                ) from None
            if not np.all(np.isfinite(L)):
                raise ValueError(
                    f"MultivariateNormal: {name} must be finite and positive definite, "
                    f"its Cholesky factor has non-finite entries (shape {M.shape})"
                )
            self._L = L
        xp = namespace(M).np
        diag = xp.diagonal(self._L, axis1=-2, axis2=-1)
        half_logdet = xp.log(diag).sum(axis=-1)  # of the given matrix's Cholesky factor
        if name == "precision_matrix":
            half_logdet = -half_logdet
        self._log_norm = -half_logdet - d * _HALF_LOG_2PI

    def _store_param(self, name, value):
        # the matrices are stored privately: the public names are properties (matrix views)
        super()._store_param(name if name == "loc" else "_" + name, value)

    def _check_shapes(self):
        name = self._alternative
        M = getattr(self, "_" + name)
        if self.loc.ndim < 1:
            raise ValueError(
                f"MultivariateNormal: loc must have shape (..., d), got shape {self.loc.shape}"
            )
        d = self.loc.shape[-1]
        if M.ndim < 2 or M.shape[-1] != M.shape[-2] or M.shape[-1] != d:
            raise ValueError(
                f"MultivariateNormal: {name} must have shape (..., {d}, {d}) to match loc of "
                f"shape {self.loc.shape}, got shape {M.shape}"
            )
        self.d = d

    # -- matrix views ----------------------------------------------------------------------------

    @property
    def scale_tril(self):
        if self._mode == "precision_matrix":
            if "_scale_tril_cache" not in self.__dict__:
                self._scale_tril_cache = np.linalg.cholesky(self.covariance_matrix)
            return self._scale_tril_cache
        return self._L

    @property
    def covariance_matrix(self):
        if self._mode == "covariance_matrix":
            return self._covariance_matrix
        if self._mode == "scale_tril":
            return self._L @ np.swapaxes(self._L, -1, -2)
        if "_cov_cache" not in self.__dict__:
            eye = np.broadcast_to(np.eye(self.d), self._L.shape)
            Linv = np.linalg.solve(self._L, eye)  # L_p^{-1}; cov = L_p^{-T} L_p^{-1}
            self._cov_cache = np.swapaxes(Linv, -1, -2) @ Linv
        return self._cov_cache

    @property
    def precision_matrix(self):
        if self._mode == "precision_matrix":
            return self._precision_matrix
        return np.linalg.inv(self.covariance_matrix)

    # -- density -------------------------------------------------------------------------------

    def _mahalanobis(self, diff, ns):
        """Squared Mahalanobis norm of ``diff`` (shape full + (d,)), shape ``full``."""
        d, xp = self.d, ns.np
        if self._mode == "precision_matrix":
            if self._mat_batch:
                z = (diff[..., None, :] @ self._L)[..., 0, :]
            else:
                z = diff @ self._L  # one stacked BLAS matmul
            return xp.einsum("...i,...i->...", z, z)
        full = diff.shape[:-1]
        if not self._mat_batch:
            z = solve_triangular(ns, self._L, diff.reshape(-1, d).T)
            return xp.einsum("ij,ij->j", z, z).reshape(full)
        # batched factor: one triangular system per batch element, samples as right-hand sides
        B = self.batch_shape
        nb = len(B)
        lead = full[: len(full) - nb]
        n = int(np.prod(lead, dtype=np.int64))
        rhs = xp.moveaxis(diff.reshape((n,) + B + (d,)), 0, -1)  # B + (d, n)
        L = xp.broadcast_to(self._L, B + (d, d))
        z = solve_triangular(ns, L, rhs) if ns.is_jax else np.linalg.solve(L, rhs)
        m = xp.einsum("...in,...in->...n", z, z)  # B + (n,)
        return xp.moveaxis(m, -1, 0).reshape(full)

    def log_prob(self, value):
        ns = self._ns(value)
        x = self._event_value(value, self.d, ns=ns)
        full = np.broadcast_shapes(x.shape[:-1], self.batch_shape)
        diff = ns.np.broadcast_to(x - self.loc, full + (self.d,))
        return -0.5 * self._mahalanobis(diff, ns) + self._log_norm

    def sample(self, rng, sample_shape=()):
        z = rng.standard_normal(self._shape(sample_shape) + (self.d,))
        return self.loc + (self.scale_tril @ z[..., None])[..., 0]

    @property
    def mean(self):
        return self._full(self.loc)

    @property
    def variance(self):
        return self._full(np.diagonal(self.covariance_matrix, axis1=-2, axis2=-1))

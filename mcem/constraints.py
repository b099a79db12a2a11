"""Constraints on parameters and latent variables, with bijections to unconstrained space.

A constraint describes the set a value lives in and carries a smooth bijection from an
unconstrained Euclidean space onto that set, with the log absolute determinant of its Jacobian.
The optimiser and the continuous samplers work on the unconstrained side; users only ever see
constrained values.

Every bijection is vectorised over leading batch axes: ``forward`` maps an array of shape
``(..., *unconstrained_shape)`` to ``(..., *shape)``, and ``log_abs_det_jacobian`` returns one value
per batch element, shape ``(...)``.

Constraints::

    real                         the real line (elementwise)
    positive                     (0, inf), via exp (elementwise)
    interval(a, b)               (a, b), via a scaled logistic (elementwise)
    unit_interval                interval(0, 1)
    simplex(K, batch=())         probability vectors of length K, via additive log-ratios
    positive_definite(d, batch=())  symmetric positive-definite d x d matrices, via a Cholesky
                                 factor whose diagonal is exp-transformed

The elementwise constraints are also callables that set a shape: ``real(shape=(K, d))``.
Check-only constraints (no bijection) describe the supports of discrete distributions:
``boolean``, ``nonnegative_integer``, ``integer_interval(lo, hi)``.

Edges
    A fitted value can sit at the edge of its set, where the likelihood theory behind standard
    errors fails (a mixture component collapsed onto a point, an empty component). ``c.edge(x)``
    lists the elements (events) of ``x`` at the edge, ``c.at_edge(x)`` is the boolean mask. The
    criteria, chosen so that ordinary fits are never flagged:

    * ``positive``: a value at most ``1e-8`` times the largest value at the same position along
      the first axis (the same feature's variance in the other mixture components, or the other
      elements of a vector), or at most ``1e-12`` (a lone scale that has collapsed). A collapsed
      Gaussian component's variance is about ``1e-14`` times the data's.
    * ``positive_definite``: a condition number above ``1e12`` (smallest eigenvalue at most
      ``1e-12`` times the largest: comparisons across directions may mix units, hence the wide
      margin), or a smallest eigenvalue at most ``1e-8`` times the variance of the other matrices
      of the batch along the same direction (same units), or at most ``1e-12``.
    * ``simplex``: a weight at most ``1e-10``.
    * ``interval(a, b)``: a value within ``1e-10 (b - a)`` of an end.
    * ``real``: no edge. Non-finite values are reported by every constraint.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import expit, log_expit

__all__ = [
    "Constraint",
    "real",
    "positive",
    "interval",
    "unit_interval",
    "simplex",
    "positive_definite",
    "boolean",
    "nonnegative_integer",
    "integer_interval",
    "as_shape",
]


def as_shape(shape, name="shape"):
    """Normalise an int or a sequence of ints to a tuple of non-negative ints."""
    if shape is None:
        return ()
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, str | bytes) or not hasattr(shape, "__iter__"):
        raise TypeError(
            f"{name} must be an int or a tuple of ints, got {type(shape).__name__} {shape!r}"
        )
    shape = tuple(shape)
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {shape!r}")
    out = tuple(int(s) for s in shape)
    if any(s < 0 for s in out):
        raise ValueError(f"{name} must contain non-negative ints, got {shape!r}")
    return out


class Constraint:
    """Base class. Subclasses define the set, its bijection and the log-Jacobian."""

    #: True when the constraint acts independently on every element.
    elementwise = False
    #: True when the set is continuous and has a bijection to R^n.
    has_bijection = True
    #: True for integer-valued supports.
    is_discrete = False

    shape: tuple = ()

    @property
    def unconstrained_shape(self) -> tuple:
        return self.shape

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=int))

    @property
    def unconstrained_size(self) -> int:
        return int(np.prod(self.unconstrained_shape, dtype=int))

    def forward(self, u):  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def log_abs_det_jacobian(self, u):  # pragma: no cover - abstract
        raise NotImplementedError

    def contains(self, x):
        """Elementwise (or per-event) membership; shape follows ``x`` less event axes."""
        raise NotImplementedError  # pragma: no cover - abstract

    def check(self, x) -> bool:
        """True when every element (event) of ``x`` lies in the set."""
        return bool(np.all(self.contains(np.asarray(x, dtype=float))))

    def default(self):
        """A canonical point inside the set, used as the default initial value."""
        raise NotImplementedError  # pragma: no cover - abstract

    #: Number of trailing axes that make one event (0 elementwise, 2 for matrices).
    _event_ndim = 0

    def edge(self, x) -> list:
        """The elements (events) of ``x`` at the edge of the set, as ``(index, reason)`` pairs.

        ``index`` is a tuple into ``x`` (into its batch axes for matrix-valued constraints) and
        ``reason`` a short text with the numbers (e.g. ``"smallest eigenvalue 1.2e-14
        (condition number 3e+13)"``). Non-finite values are reported as ``"not finite (nan)"``.
        An empty list when no element is at the edge. The criteria are in the module docstring.
        """
        x = np.asarray(x, dtype=float)
        return self._nonfinite(x)

    def at_edge(self, x) -> np.ndarray:
        """Boolean mask of :meth:`edge`: shape of ``x`` (less the event axes of a matrix)."""
        x = np.asarray(x, dtype=float)
        mask = np.zeros(x.shape[: x.ndim - self._event_ndim], dtype=bool)
        for idx, _ in self.edge(x):
            mask[idx] = True
        return mask

    def _nonfinite(self, x):
        """``(index, "not finite (nan)")`` for every element (event) holding a NaN or inf."""
        nd = self._event_ndim
        events = x.reshape(x.shape[: x.ndim - nd] + (-1,)) if nd else x[..., None]
        out = []
        for idx in np.argwhere(~np.all(np.isfinite(events), axis=-1)):
            i = tuple(int(k) for k in idx)
            v = events[i]
            out.append((i, f"not finite ({v[~np.isfinite(v)][0]})"))
        return out

    def describe(self) -> str:
        return repr(self)

    def _with_shape(self, shape):  # pragma: no cover - overridden where meaningful
        raise TypeError(f"{self!r} does not take a shape")

    def __call__(self, shape=()):
        return self._with_shape(as_shape(shape))

    def __eq__(self, other):
        return type(self) is type(other) and self._key() == other._key()

    def __hash__(self):
        return hash((type(self).__name__, self._key()))

    def _key(self):
        return (self.shape,)


class _Elementwise(Constraint):
    elementwise = True

    def __init__(self, shape=()):
        self.shape = as_shape(shape)

    def log_abs_det_jacobian(self, u):
        u = np.asarray(u, dtype=float)
        nd = len(self.shape)
        ladj = self.elementwise_log_abs_det_jacobian(u)
        return ladj.sum(axis=tuple(range(ladj.ndim - nd, ladj.ndim))) if nd else ladj

    def elementwise_log_abs_det_jacobian(self, u):  # pragma: no cover - abstract
        raise NotImplementedError

    def _with_shape(self, shape):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.shape = shape
        return new


class Real(_Elementwise):
    """The real line."""

    def forward(self, u):
        return np.asarray(u, dtype=float)

    def inverse(self, x):
        return np.asarray(x, dtype=float)

    def elementwise_log_abs_det_jacobian(self, u):
        return np.zeros_like(np.asarray(u, dtype=float))

    def contains(self, x):
        return np.isfinite(x)

    def default(self):
        return np.zeros(self.shape)

    def __repr__(self):
        return f"real(shape={self.shape})" if self.shape else "real"


class Positive(_Elementwise):
    """Positive reals, x = exp(u)."""

    def forward(self, u):
        return np.exp(np.asarray(u, dtype=float))

    def inverse(self, x):
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(x, dtype=float))

    def elementwise_log_abs_det_jacobian(self, u):
        return np.array(u, dtype=float)

    def contains(self, x):
        return np.isfinite(x) & (x > 0)

    def default(self):
        return np.ones(self.shape)

    #: Relative and absolute edge tolerances (see the module docstring).
    edge_rtol = 1e-8
    edge_atol = 1e-12

    def edge(self, x) -> list:
        """Values at (or below) zero: at most ``edge_rtol`` times the largest value at the same
        position along the first axis, or at most ``edge_atol``."""
        x = np.asarray(x, dtype=float)
        out = self._nonfinite(x)
        finite = np.isfinite(x)
        if x.ndim:
            ref = np.max(np.where(finite, x, -np.inf), axis=0, keepdims=True)
        else:
            ref = x
        ref = np.broadcast_to(ref, x.shape)
        rel = finite & (x <= self.edge_rtol * ref)
        tiny = finite & (x <= self.edge_atol)
        for idx in np.argwhere(rel | tiny):
            i = tuple(int(k) for k in idx)
            v, r = float(x[i]), float(ref[i])
            if v <= 0:
                why = f"{v:.3g} (not positive)"
            elif rel[i]:
                what = ("the largest element" if x.ndim == 1
                        else "the largest value at the same position along the first axis")
                why = f"{v:.3g}, {v / r:.2g} times {what} ({r:.3g})"
            else:
                why = f"{v:.3g}, below the absolute floor {self.edge_atol:g}"
            out.append((i, why))
        return out

    def __repr__(self):
        return f"positive(shape={self.shape})" if self.shape else "positive"


class Interval(_Elementwise):
    """The open interval (low, high), x = low + (high - low) * logistic(u)."""

    def __init__(self, low, high, shape=()):
        low, high = float(low), float(high)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(
                f"interval(low, high) needs finite low < high, got low={low!r}, high={high!r}"
            )
        self.low, self.high = low, high
        super().__init__(shape)

    def forward(self, u):
        return self.low + (self.high - self.low) * expit(np.asarray(u, dtype=float))

    def inverse(self, x):
        p = (np.asarray(x, dtype=float) - self.low) / (self.high - self.low)
        with np.errstate(divide="ignore"):
            return np.log(p) - np.log1p(-p)

    def elementwise_log_abs_det_jacobian(self, u):
        u = np.asarray(u, dtype=float)
        return np.log(self.high - self.low) + log_expit(u) + log_expit(-u)

    def contains(self, x):
        return (x > self.low) & (x < self.high)

    def default(self):
        return np.full(self.shape, 0.5 * (self.low + self.high))

    #: Distance to an end, relative to the width, that counts as the edge.
    edge_rtol = 1e-10

    def edge(self, x) -> list:
        """Values within ``edge_rtol * (high - low)`` of an end (or outside the interval)."""
        x = np.asarray(x, dtype=float)
        out = self._nonfinite(x)
        width = self.high - self.low
        with np.errstate(invalid="ignore"):
            lo, hi = x - self.low, self.high - x
        near = np.isfinite(x) & (np.minimum(lo, hi) <= self.edge_rtol * width)
        for idx in np.argwhere(near):
            i = tuple(int(k) for k in idx)
            end, dist = ("lower", lo[i]) if lo[i] <= hi[i] else ("upper", hi[i])
            at = self.low if end == "lower" else self.high
            out.append((i, f"{float(x[i])!r}, {float(dist):.2g} from the {end} end {at:g} (width {width:g})"))
        return out

    def _key(self):
        return (self.shape, self.low, self.high)

    def __repr__(self):
        s = f", shape={self.shape}" if self.shape else ""
        return f"interval({self.low!r}, {self.high!r}{s})"


class Simplex(Constraint):
    """Probability vectors of length K (last axis), with K - 1 additive log-ratio coordinates.

    x = softmax([u, 0]); the log-Jacobian of u -> x[:-1] is sum_k log x_k over all K entries.
    """

    def __init__(self, K, batch=()):
        if not isinstance(K, numbers.Integral) or K < 1:
            raise ValueError(f"simplex(K) needs an int K >= 1, got {K!r}")
        self.K = int(K)
        self.batch = as_shape(batch, "batch")
        self.shape = self.batch + (self.K,)

    @property
    def unconstrained_shape(self):
        return self.batch + (self.K - 1,)

    def forward(self, u):
        u = np.asarray(u, dtype=float)
        z = np.concatenate([u, np.zeros(u.shape[:-1] + (1,))], axis=-1)
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def inverse(self, x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore"):
            lx = np.log(x)
        return lx[..., :-1] - lx[..., -1:]

    def log_abs_det_jacobian(self, u):
        u = np.asarray(u, dtype=float)
        z = np.concatenate([u, np.zeros(u.shape[:-1] + (1,))], axis=-1)
        m = z.max(axis=-1, keepdims=True)
        lse = m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
        logx = z - lse
        return logx.sum(axis=tuple(range(u.ndim - len(self.shape), u.ndim)))

    def contains(self, x):
        ok = np.all(np.isfinite(x) & (x >= 0), axis=-1) & (
            np.abs(np.sum(x, axis=-1) - 1.0) < 1e-8 * max(self.K, 1)
        )
        return ok

    def default(self):
        return np.full(self.shape, 1.0 / self.K)

    #: A weight at most this is at the edge (an empty component).
    edge_atol = 1e-10

    def edge(self, x) -> list:
        """Weights at most ``edge_atol`` (index: batch index and the weight's position)."""
        x = np.asarray(x, dtype=float)
        out = self._nonfinite(x)
        zero = np.isfinite(x) & (x <= self.edge_atol)
        for idx in np.argwhere(zero):
            i = tuple(int(k) for k in idx)
            out.append((i, f"weight {float(x[i]):.3g} (at 0)"))
        return out

    def _key(self):
        return (self.K, self.batch)

    def __repr__(self):
        b = f", batch={self.batch}" if self.batch else ""
        return f"simplex({self.K}{b})"


class PositiveDefinite(Constraint):
    """Symmetric positive-definite d x d matrices (last two axes).

    Unconstrained coordinates: the d(d+1)/2 entries of a lower-triangular factor L (row-major,
    ``np.tril_indices``) with log-transformed diagonal; the matrix is L L^T.
    """

    def __init__(self, d, batch=()):
        if not isinstance(d, numbers.Integral) or d < 1:
            raise ValueError(f"positive_definite(d) needs an int d >= 1, got {d!r}")
        self.d = int(d)
        self.batch = as_shape(batch, "batch")
        self.shape = self.batch + (self.d, self.d)
        self._rows, self._cols = np.tril_indices(self.d)
        self._diag = self._rows == self._cols

    @property
    def unconstrained_shape(self):
        return self.batch + (self.d * (self.d + 1) // 2,)

    def _cholesky_from(self, u):
        u = np.asarray(u, dtype=float)
        vals = np.where(self._diag, np.exp(u), u)
        L = np.zeros(u.shape[:-1] + (self.d, self.d))
        L[..., self._rows, self._cols] = vals
        return L

    def forward(self, u):
        L = self._cholesky_from(u)
        return L @ np.swapaxes(L, -1, -2)

    def inverse(self, x):
        x = np.asarray(x, dtype=float)
        L = np.linalg.cholesky(x)
        vals = L[..., self._rows, self._cols]
        return np.where(self._diag, np.log(np.where(self._diag, vals, 1.0)), vals)

    def log_abs_det_jacobian(self, u):
        u = np.asarray(u, dtype=float)
        # Sigma = L L^T has Jacobian 2^d prod_i L_ii^(d - i) (i = 0..d-1) over the lower
        # triangle of L; L_ii = exp(u_ii) adds one more log L_ii = u_ii.
        i = self._rows[self._diag]  # 0-based row index of each diagonal entry
        logdiag = u[..., self._diag]
        per = self.d * np.log(2.0) + (logdiag * (self.d - i + 1)).sum(axis=-1)
        nb = len(self.batch)
        return per.sum(axis=tuple(range(per.ndim - nb, per.ndim))) if nb else per

    def contains(self, x):
        x = np.asarray(x, dtype=float)
        finite = np.all(np.isfinite(x), axis=(-1, -2))
        sym = np.all(
            np.abs(x - np.swapaxes(x, -1, -2)) <= 1e-8 * (1.0 + np.abs(x)), axis=(-1, -2)
        )
        safe = np.where((finite & sym)[..., None, None], x, np.eye(self.d))
        eig = np.linalg.eigvalsh(safe)
        return finite & sym & (eig[..., 0] > 0)

    def default(self):
        return np.broadcast_to(np.eye(self.d), self.shape).copy()

    _event_ndim = 2
    #: Largest condition number inside the set; smallest eigenvalue relative to the variance of
    #: the other matrices of the batch along the same direction; absolute floor.
    edge_cond = 1e12
    edge_rtol = 1e-8
    edge_atol = 1e-12

    def edge(self, x) -> list:
        """Matrices (index: batch index) with a condition number above ``edge_cond``, a smallest
        eigenvalue at most ``edge_rtol`` times the variance of the other matrices of the batch
        along its direction, or at most ``edge_atol`` (or not positive definite)."""
        x = np.asarray(x, dtype=float)
        out = self._nonfinite(x)
        bshape = x.shape[:-2]
        d = x.shape[-1]
        flat = x.reshape((-1, d, d))
        finite = np.all(np.isfinite(flat), axis=(-1, -2))
        sym = np.where(finite[:, None, None], 0.5 * (flat + np.swapaxes(flat, -1, -2)), np.eye(d))
        w, V = np.linalg.eigh(sym)
        lmin, lmax, vmin = w[:, 0], w[:, -1], V[:, :, 0]
        # variance of every matrix j along the smallest direction of matrix b: (b, j)
        along = np.einsum("bi,jik,bk->bj", vmin, sym, vmin)
        along = np.where(finite[None, :], along, -np.inf)
        ref = along.max(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cond = np.where(lmin > 0, lmax / lmin, np.inf)
        bad_cond = cond > self.edge_cond
        bad_rel = (flat.shape[0] > 1) & (lmin <= self.edge_rtol * ref)
        bad_abs = lmin <= self.edge_atol
        for b in np.flatnonzero(finite & (bad_cond | bad_rel | bad_abs)):
            i = tuple(int(k) for k in np.unravel_index(b, bshape)) if bshape else ()
            if lmin[b] <= 0:
                why = f"smallest eigenvalue {lmin[b]:.3g} (not positive definite)"
            else:
                why = f"smallest eigenvalue {lmin[b]:.3g} (condition number {cond[b]:.2g})"
            if bad_rel[b] and ref[b] > 0:
                why += f"; the batch has variance up to {ref[b]:.3g} along that direction"
            out.append((i, why))
        return out

    def _key(self):
        return (self.d, self.batch)

    def __repr__(self):
        b = f", batch={self.batch}" if self.batch else ""
        return f"positive_definite({self.d}{b})"


class _CheckOnly(_Elementwise):
    has_bijection = False
    is_discrete = True

    def forward(self, u):
        raise TypeError(f"{self!r} is a discrete support and has no bijection")

    inverse = forward
    elementwise_log_abs_det_jacobian = forward


class Boolean(_CheckOnly):
    num_states = 2

    def contains(self, x):
        return (x == 0) | (x == 1)

    def default(self):
        return np.zeros(self.shape, dtype=int)

    def __repr__(self):
        return "boolean"


class NonnegativeInteger(_CheckOnly):
    num_states = None

    def contains(self, x):
        return np.isfinite(x) & (x >= 0) & (x == np.floor(x))

    def default(self):
        return np.zeros(self.shape, dtype=int)

    def __repr__(self):
        return "nonnegative_integer"


class IntegerInterval(_CheckOnly):
    """Integers lo, lo + 1, ..., hi (inclusive)."""

    def __init__(self, lo, hi, shape=()):
        self.lo, self.hi = int(lo), int(hi)
        if self.hi < self.lo:
            raise ValueError(f"integer_interval needs lo <= hi, got lo={lo!r}, hi={hi!r}")
        super().__init__(shape)

    @property
    def num_states(self):
        return self.hi - self.lo + 1

    def contains(self, x):
        return (x >= self.lo) & (x <= self.hi) & (x == np.floor(x))

    def default(self):
        return np.full(self.shape, self.lo, dtype=int)

    def _key(self):
        return (self.shape, self.lo, self.hi)

    def __repr__(self):
        return f"integer_interval({self.lo}, {self.hi})"


real = Real()
positive = Positive()
unit_interval = Interval(0.0, 1.0)
boolean = Boolean()
nonnegative_integer = NonnegativeInteger()


def interval(low, high, shape=()):
    """The open interval (low, high), elementwise."""
    return Interval(low, high, shape)


def simplex(K, batch=()):
    """Probability vectors of length K; ``batch`` stacks independent simplices in front."""
    return Simplex(K, batch)


def positive_definite(d, batch=()):
    """Symmetric positive-definite d x d matrices; ``batch`` stacks them in front."""
    return PositiveDefinite(d, batch)


def integer_interval(lo, hi, shape=()):
    """The integers lo..hi inclusive (a check-only support for discrete distributions)."""
    return IntegerInterval(lo, hi, shape)

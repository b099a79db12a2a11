"""The model function compiled by JAX: the log joint, its unit terms and exact derivatives.

The model function is evaluated on one batch element at a time (no batch axes) with JAX tracers
for the parameters and latents; ``jax.vmap`` adds the batch, ``jax.jit`` compiles. Every
function here takes and returns numpy arrays (fresh, writable), whatever batch shape the caller
uses: the batch is flattened and cut into chunks of a few fixed sizes (powers of two up to a cap
set by the size of the data), so that the growing draw counts of MCEM compile a handful of
shapes, not one per iteration. The last chunk is padded with copies of a real element and the
padding is dropped (or weighted out of sums).

Every call runs inside :func:`mcem._jax.x64`, so the computation is float64 whatever the user's
JAX configuration.

Per-site terms follow the numpy evaluation of :mod:`mcem.lang.compile`: a latent declared with
``unit=True`` and an observation (or factor) with a ``unit_index`` keep their first axis (one term
per unit or observation row), everything else is summed. Observation rows are summed into units
with ``jax.ops.segment_sum``.
"""

from __future__ import annotations

import math

import numpy as np

from .._jax import jax, jax_namespace, x64
from ..core.declaration import param_offsets
from .trace import Handle

__all__ = ["JaxModel", "CHUNK_BYTES", "MAX_CHUNK"]

#: Rough bound on the intermediates of one compiled call (bytes), which sets the chunk size.
CHUNK_BYTES = 2**28
#: Largest number of batch elements per compiled call.
MAX_CHUNK = 256
_BYTES_PER_ELEMENT = 8 * 12  # float64, about a dozen intermediates per data element


def _pow2_floor(x):
    return 1 << max(int(math.floor(math.log2(max(x, 1)))), 0)


class JaxModel:
    """JAX functions of a model function on its data.

    Parameters
    ----------
    fn : callable
        The model function ``fn(m, **data)``.
    data : dict
        Its data (numpy arrays and Python values; constants of the compiled functions).
    params : dict
        Parameter name -> constraint (with shape).
    shapes : dict
        Latent name -> declared shape.
    discrete : set
        Names of the discrete latents (integer valued; no derivatives).
    unit_latents : list
        Names of the latents declared with ``unit=True``.
    unit_index : dict
        Observe/factor site -> {unit latent: integer index array over its first axis}.
    size : int
        Number of data elements (sets the chunk size).
    """

    def __init__(self, fn, data, params, shapes, discrete, unit_latents, unit_index, size):
        self.fn = fn
        self.data = data
        self.params = dict(params)
        self.param_names = tuple(sorted(params))
        self.shapes = dict(shapes)
        self.discrete = set(discrete)
        self.continuous = tuple(n for n in sorted(shapes) if n not in self.discrete)
        self.unit_latents = list(unit_latents)
        self.unit_index = {
            site: {lat: np.asarray(ix) for lat, ix in idx.items()} for site, idx in unit_index.items()
        }
        self.sorted_index = {
            site: {lat: bool(np.all(ix[1:] >= ix[:-1])) for lat, ix in idx.items()}
            for site, idx in self.unit_index.items()
        }
        latent_size = sum(int(np.prod(s, dtype=int)) for s in shapes.values())
        per_element = _BYTES_PER_ELEMENT * max(int(size) + latent_size, 1)
        self.cap = int(min(MAX_CHUNK, _pow2_floor(CHUNK_BYTES / per_element)))
        self._offsets, self.n_unconstrained = param_offsets(self.params)
        self._jitted = {}
        self.jax = jax()
        self.ns = jax_namespace()

    # ------------------------------------------------------------------ one batch element
    def terms(self, theta, z):
        """{site: (kind, log terms)} for one batch element: a scalar, or a vector over the
        first axis for unit latents and observations/factors with a unit index."""
        jnp = self.ns.np
        h = Handle("eval", theta, z, ns=self.ns)
        self.fn(h, **self.data)
        out = {}
        for s in h.sites.values():
            if s.kind == "param":
                continue
            if s.kind == "factor":
                lp = jnp.asarray(s.value, dtype=float)
                own = lp.shape
            else:
                lp = jnp.asarray(s.dist.log_prob(s.value), dtype=float)
                vshape = self.shapes[s.name] if s.kind == "latent" else np.shape(s.value)
                n_event = len(getattr(s.dist, "event_shape", ()))
                own = tuple(vshape[: len(vshape) - n_event])
                lp = jnp.broadcast_to(lp, own)
            keep = s.unit if s.kind == "latent" else s.name in self.unit_index
            if keep and own:
                lp = lp.reshape(own[:1] + (-1,)).sum(-1) if len(own) > 1 else lp
            else:
                lp = lp.sum()
            out[s.name] = (s.kind, lp)
        return out

    def total1(self, theta, z):
        t = self.terms(theta, z)
        return sum(lp.sum() for _, lp in t.values())

    def _split(self, t, site):
        """(per-unit terms of ``site``'s units, {contributing site: its unit terms}, rest)."""
        seg = self.jax.ops.segment_sum
        n = self.shapes[site][0]
        parts, rest = {}, 0.0
        for name, (kind, lp) in t.items():
            if kind == "latent" and name == site:
                parts[name] = lp
            elif site in self.unit_index.get(name, {}):
                parts[name] = seg(lp, self.unit_index[name][site], num_segments=n,
                                  indices_are_sorted=self.sorted_index[name][site])
            else:
                rest = rest + lp.sum()
        unit = sum(parts.values()) if parts else self.ns.np.zeros(n)
        return unit, parts, rest

    def units1(self, theta, z, site):
        return self._split(self.terms(theta, z), site)[0]

    def per_unit1(self, theta, z, site):
        unit, _, rest = self._split(self.terms(theta, z), site)
        return unit + rest / self.shapes[site][0]

    def pieces1(self, theta, z, site):
        t = self.terms(theta, z)
        _, parts, _ = self._split(t, site)
        return parts, sum(lp.sum() for _, lp in t.values())

    def emission1(self, theta, z, site):
        """Per-time-step terms of the sites filed under chain ``site``'s time steps, shape (T,)."""
        t = self.terms(theta, z)
        return self._filed(t, site)[0]

    def _filed(self, t, site):
        seg = self.jax.ops.segment_sum
        n = self.shapes[site][0]
        parts = {name: seg(lp, self.unit_index[name][site], num_segments=n,
                           indices_are_sorted=self.sorted_index[name][site])
                 for name, (kind, lp) in t.items() if site in self.unit_index.get(name, {})}
        return (sum(parts.values()) if parts else self.ns.np.zeros(n)), parts

    def chain_pieces1(self, theta, z, site):
        """({site: its terms per time step of chain ``site``}, the total without the chain's prior)."""
        t = self.terms(theta, z)
        return self._filed(t, site)[1], sum(lp.sum() for name, (_, lp) in t.items() if name != site)

    def theta_of_u(self, u):
        """The constrained parameters of the flat unconstrained vector ``u`` (traceable)."""
        out = {}
        for n in self.param_names:
            a, b = self._offsets[n]
            c = self.params[n]
            out[n] = c.forward(u[a:b].reshape(c.unconstrained_shape))
        return out

    # ------------------------------------------------------------------ batching
    def _batch(self, z):
        """(common batch shape, z flattened to (n,) + shape and cast, n)."""
        batches = []
        for name, shape in self.shapes.items():
            v = np.asarray(z[name])
            batches.append(v.shape[: v.ndim - len(shape)])
        common = tuple(np.broadcast_shapes(*batches))
        flat = {}
        for name, shape in self.shapes.items():
            v = np.broadcast_to(np.asarray(z[name]), common + tuple(shape))
            dtype = np.int64 if name in self.discrete else np.float64
            flat[name] = np.asarray(v, dtype=dtype).reshape((-1,) + tuple(shape))
        return common, flat, int(np.prod(common, dtype=int))

    def _size(self, n, cap):
        return min(cap, 1 << max(n - 1, 0).bit_length()) if n <= cap else cap

    def _chunks(self, flat, n, cap):
        """Yield (chunk of ``size`` elements, number of real ones) covering the ``n`` elements."""
        size = self._size(n, cap)
        for a in range(0, max(n, 1), size):
            m = min(size, n - a)
            chunk = {}
            for k, v in flat.items():
                c = v[a:a + m]
                if m < size:
                    c = np.concatenate([c, np.repeat(v[a:a + 1], size - m, axis=0)])
                chunk[k] = c
            yield chunk, m

    def _jit(self, key, build):
        f = self._jitted.get(key)
        if f is None:
            f = self._jitted[key] = self.jax.jit(build())
        return f

    @staticmethod
    def _theta(theta, names):
        return {n: np.asarray(theta[n], dtype=float) for n in names}

    def _map(self, key, f1, theta, z, cap=None, extra=None):
        """``f1(theta, z1, *extra)`` over the batch of ``z``: a pytree of numpy arrays with the
        batch shape in front (``extra`` are arguments shared by every element)."""
        tree = self.jax.tree_util
        extra = () if extra is None else tuple(extra)

        def build():
            return self.jax.vmap(f1, in_axes=(None, 0) + (None,) * len(extra))

        with x64():
            f = self._jit(key, build)
            common, flat, n = self._batch(z)
            th = theta if key[0] == "u" else self._theta(theta, self.param_names)
            if n == (cap or self.cap) or (n < (cap or self.cap) and n & (n - 1) == 0 and n):
                out = f(th, flat, *extra)  # one call, no padding (the common case of a sampler)
                return tree.tree_map(lambda o: np.array(o).reshape(common + o.shape[1:]), out)
            outs = []
            for chunk, m in self._chunks(flat, n, cap or self.cap):
                out = f(th, chunk, *extra)
                outs.append(tree.tree_map(lambda o, m=m: np.array(o[:m]) if m < len(o) else np.array(o), out))
        return tree.tree_map(lambda *o: np.concatenate(o).reshape(common + o[0].shape[1:]), *outs)

    # ------------------------------------------------------------------ numpy-facing functions
    def total(self, theta, z, data=None):
        """The log joint summed over units, shape batch."""
        return self._map(("total",), self.total1, theta, z)

    def units(self, site):
        def cond(theta, z, data=None):
            return self._map(("units", site), lambda th, z1: self.units1(th, z1, site), theta, z)

        cond.__name__ = f"unit_terms_{site}"
        return cond

    def per_unit(self, site):
        def per_unit(theta, z, data=None):
            return self._map(("per_unit", site), lambda th, z1: self.per_unit1(th, z1, site), theta, z)

        return per_unit

    def emission(self, site):
        def emission(theta, z, data=None):
            return self._map(("emission", site), lambda th, z1: self.emission1(th, z1, site), theta, z)

        return emission

    def chain_pieces(self, theta, z, site):
        return self._map(("chain_pieces", site), lambda th, z1: self.chain_pieces1(th, z1, site), theta, z)

    def pieces(self, theta, z, site):
        return self._map(("pieces", site), lambda th, z1: self.pieces1(th, z1, site), theta, z)

    def grad_params(self, theta, z, data=None):
        """Gradient of the summed log joint in each constrained parameter, batch + param shape."""
        g1 = self.jax.grad(self.total1, argnums=0)
        return self._map(("grad_params",), g1, theta, z, cap=max(self.cap // 2, 1))

    def value_and_grad(self, theta, z, data=None):
        vg = self.jax.value_and_grad(self.total1, argnums=0)
        return self._map(("value_and_grad",), vg, theta, z, cap=max(self.cap // 2, 1))

    def _weighted_sum(self, key, derivative, u, z, w, cap):
        """``derivative(f)(u)`` summed over chunks of the batch of ``z``, where ``f(v) = sum_j
        w_j log p(x, z_j; theta(v))`` (``derivative``: ``jax.value_and_grad``, ``jax.hessian``;
        padding elements get weight 0). Returns the sum as a pytree of numpy arrays."""
        jax_ = self.jax

        def build():
            def d(uu, zc, wc):
                def f(v):
                    vals = jax_.vmap(self.total1, in_axes=(None, 0))(self.theta_of_u(v), zc)
                    return (wc * vals).sum()

                return derivative(f)(uu)

            return d

        with x64():
            f = self._jit((key, cap), build)
            _, flat, n = self._batch(z)
            wf = np.broadcast_to(np.asarray(w, dtype=float), (n,)) if np.ndim(w) == 0 else np.asarray(w, float).ravel()
            if wf.size != n:
                raise ValueError(f"weights: expected one per batch element ({n}), got {wf.size}")
            size = self._size(n, cap)
            out = None
            for a, (chunk, m) in zip(range(0, max(n, 1), size), self._chunks(flat, n, cap), strict=True):
                wc = np.zeros(size)
                wc[:m] = wf[a:a + m]
                r = jax_.tree_util.tree_map(np.asarray, f(np.asarray(u, dtype=float), chunk, wc))
                out = r if out is None else jax_.tree_util.tree_map(np.add, out, r)
        return out

    def weighted_value_and_grad_u(self, u, z, w):
        """``(sum_j w_j log p(x, z_j; theta(u)), its gradient in u)`` over the batch of ``z``
        (weights ``w`` shaped like the batch): the objective of the numerical M steps, in one
        compiled pass per chunk."""
        v, g = self._weighted_sum("wvg", self.jax.value_and_grad, u, z, w, max(self.cap // 2, 1))
        return float(v), np.array(g, dtype=float)

    def weighted_grad_u(self, u, z, w):
        """The gradient in u alone of ``sum_j w_j log p(x, z_j; theta(u))`` (what the gradient does
        not need of the forward pass, such as the log of a log-sum, is left out by the compiler)."""
        return np.array(self._weighted_sum("wg", self.jax.grad, u, z, w, max(self.cap // 2, 1)), dtype=float)

    def grad_latents(self, theta, z, data=None):
        """Gradient of the summed log joint in each continuous latent, shaped like ``z[name]``
        (with its batch axes); discrete latents are left out."""

        def g1(th, z1):
            fixed = {n: v for n, v in z1.items() if n in self.discrete}

            def f(zc):
                return self.total1(th, {**fixed, **zc})

            return self.jax.grad(f)({n: z1[n] for n in self.continuous})

        return self._map(("grad_latents",), g1, theta, z, cap=max(self.cap // 2, 1))

    def scores(self, theta, z, data=None):
        """Per-element scores of the summed log joint in the unconstrained coordinates: batch + (p,)."""
        u = self._u(theta)

        def s1(uu, z1):
            return self.jax.grad(lambda v: self.total1(self.theta_of_u(v), z1))(uu)

        return self._map(("u", "scores"), s1, u, z, cap=max(self.cap // 2, 1))

    def unit_scores(self, site):
        """Per-element, per-unit scores in the unconstrained coordinates: batch + (n_units, p)."""

        def scores(theta, z, data=None):
            u = self._u(theta)

            def s1(uu, z1):
                return self.jax.jacfwd(lambda v: self.per_unit1(self.theta_of_u(v), z1, site))(uu)

            cap = max(self.cap // max(2, self.n_unconstrained), 1)
            return self._map(("u", "unit_scores", site), s1, u, z, cap=cap)

        return scores

    def hessian(self, theta, z, data=None):
        """The mean over the batch of the Hessian of the log joint in the unconstrained coordinates."""
        cap = max(self.cap // max(4, self.n_unconstrained), 1)
        n = max(int(np.prod(self._batch(z)[0], dtype=int)), 1)
        H = np.array(self._weighted_sum("hessian", self.jax.hessian, self._u(theta), z, 1.0 / n, cap), dtype=float)
        return 0.5 * (H + H.T)

    def _u(self, theta):
        parts = [np.asarray(self.params[n].inverse(np.asarray(theta[n], dtype=float)), dtype=float).ravel()
                 for n in self.param_names]
        return np.concatenate(parts) if parts else np.zeros(0)

    def probe(self, theta, z):
        """Trace the log joint once at (theta, z) without running it (raises what tracing raises)."""
        with x64():
            _, flat, _ = self._batch(z)
            one = {k: v[:1] for k, v in flat.items()}
            self.jax.eval_shape(self.jax.vmap(self.total1, in_axes=(None, 0)),
                                self._theta(theta, self.param_names), one)
            if self.n_unconstrained:
                self.jax.eval_shape(lambda v: self.total1(self.theta_of_u(v), {k: x[0] for k, x in one.items()}),
                                    self._u(theta))

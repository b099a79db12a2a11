"""Closed-form M-step updates found from the site record of a compiled model.

A site whose distribution is an exponential family with free parameters as its arguments has
its maximiser in closed form, from sufficient statistics averaged over the draws:

=========================================  =====================================================
site                                       update
=========================================  =====================================================
``Normal(loc, s)``, ``s`` a parameter      ``s^2 = mean (x - loc)^2`` (loc a constant or free of
                                           the parameters: a function of latents and data)
``Normal(mu, s)``, ``mu`` and ``s``        ``mu = mean x``, ``s^2 = mean (x - mu)^2``
parameters of the same shape
``MultivariateNormal(loc, Sigma)`` /       ``Sigma = mean (x - loc)(x - loc)^T`` (and ``mu =
``(loc, scale_tril=L)``                    mean x`` when ``loc`` is a parameter); ``L`` its
                                           Cholesky factor
``Categorical(probs=w)``, ``Bernoulli``    ``w = mean one_hot(x)`` / ``p = mean x``
(``probs=p``)
=========================================  =====================================================

"mean" runs over the draws and over the axes the parameter is broadcast along. A site is used
when its parameters appear nowhere else in the model and the site depends on no other
parameter: both checked with exact derivatives (gradients that are exactly zero) at random
points. The other parameters are then maximised numerically with these fixed: Q separates, so
the result is the full M step (an ECM-style partial M step that is exact). SAEM runs its
stochastic approximation on these statistics, as saemix and Monolix do.
"""

from __future__ import annotations

import numpy as np

from .. import constraints as C
from .._jax import x64
from .trace import Handle

__all__ = ["ClosedForm", "find_closed_forms"]

#: Floor of a closed-form variance (and of a probability's distance to 0 or 1): an estimate on
#: the edge of its set stays inside it, where the unconstrained coordinates are finite.
_TINY = 1e-24

_KINDS = {"Normal", "MultivariateNormal", "Categorical", "Bernoulli"}


class _Update:
    """One site's closed-form update: what it sets, from which statistics."""

    def __init__(self, site, kind, scale=None, loc=None, probs=None, shape=(), red=(), cholesky=False):
        self.site, self.kind = site, kind
        self.scale, self.loc, self.probs = scale, loc, probs
        self.shape, self.red, self.cholesky = tuple(shape), tuple(red), cholesky

    @property
    def n_stats(self):
        return 2 if self.kind == "mvn" or (self.kind == "normal" and self.loc is not None) else 1

    @property
    def names(self):
        return tuple(n for n in (self.scale, self.loc, self.probs) if n is not None)

    def describe(self):
        if self.kind == "normal":
            what = f"{self.loc}, {self.scale}" if self.loc else self.scale
            return f"{what} from the mean{' and second moment' if self.loc else ' square'} of site {self.site!r}"
        if self.kind == "mvn":
            what = f"{self.loc}, {self.scale}" if self.loc else self.scale
            return f"{what} from the mean and covariance of site {self.site!r}"
        return f"{self.probs} from the state frequencies of site {self.site!r}"


class ClosedForm:
    """The closed-form part of the M step of a compiled model.

    ``names``: the parameters it sets; ``stats(z)``: sufficient statistics averaged over the
    leading batch axis of ``z`` (a dict of latent arrays, draws flattened); ``update(stats)``:
    the maximising parameter values (a dict over ``names``). ``complete`` is True when every
    parameter of the model is set here.
    """

    def __init__(self, jm, updates, theta0):
        self.jm = jm
        self.updates = list(updates)
        self.names = tuple(n for up in self.updates for n in up.names)
        self.complete = set(self.names) == set(jm.param_names)
        self._theta0 = {n: np.asarray(v, dtype=float) for n, v in theta0.items()}

    # statistics, per draw, in JAX
    def _stats1(self, theta, z1):
        jnp = self.jm.ns.np
        h = Handle("eval", theta, z1, ns=self.jm.ns)
        self.jm.fn(h, **self.jm.data)
        out = {}
        for up in self.updates:
            s = h.sites[up.site]
            d = s.dist
            x = jnp.asarray(s.value, dtype=float) if up.kind != "categorical" else s.value
            if up.kind == "normal":
                own = tuple(np.shape(s.value)) if s.kind == "observe" else tuple(self.jm.shapes[s.name])
                x = jnp.broadcast_to(x, own)
                if up.loc is None:
                    r = x - d.loc
                    out[up.site] = (jnp.sum(r * r, axis=up.red).reshape(up.shape),)
                else:
                    out[up.site] = (jnp.sum(x, axis=up.red).reshape(up.shape),
                                    jnp.sum(x * x, axis=up.red).reshape(up.shape))
            elif up.kind == "mvn":
                x2 = x.reshape(-1, x.shape[-1])
                r = x2 if up.loc is not None else x2 - jnp.broadcast_to(d.loc, x.shape).reshape(x2.shape)
                out[up.site] = (r.sum(0), r.T @ r)
            elif up.kind == "bernoulli":
                out[up.site] = (jnp.sum(jnp.broadcast_to(jnp.asarray(x, dtype=float), self.jm.shapes[s.name]),
                                        axis=up.red).reshape(up.shape),)
            else:  # categorical: state counts
                K = up.shape[-1]
                onehot = (jnp.asarray(x)[..., None] == jnp.arange(K)).astype(float)
                out[up.site] = (onehot.reshape(-1, K).sum(0),)
        return out

    def stats(self, z):
        """Statistics averaged over the leading (draw) axis of ``z``: ``{"site:i": array}``."""
        per = self.jm._map(("stats",), self._stats1, self._theta0, z)
        return {f"{k}:{i}": np.mean(a, axis=0) for k, v in per.items() for i, a in enumerate(v)}

    def update(self, stats):
        out = {}
        for up in self.updates:
            S = [np.asarray(stats[f"{up.site}:{i}"], dtype=float) for i in range(up.n_stats)]
            n = up.count
            if up.kind == "normal":
                if up.loc is None:
                    out[up.scale] = np.sqrt(np.maximum(S[0] / n, _TINY))
                else:
                    mu = S[0] / n
                    out[up.loc] = mu
                    out[up.scale] = np.sqrt(np.maximum(S[1] / n - mu * mu, _TINY))
            elif up.kind == "mvn":
                s1, s2 = S
                mu = s1 / n
                cov = s2 / n - (np.outer(mu, mu) if up.loc is not None else np.outer(mu, mu) * 0.0)
                if up.loc is not None:
                    out[up.loc] = mu
                cov = 0.5 * (cov + cov.T)
                out[up.scale] = np.linalg.cholesky(cov) if up.cholesky else cov
            elif up.kind == "bernoulli":
                out[up.probs] = np.clip(S[0] / n, 1e-12, 1 - 1e-12)
            else:
                w = np.maximum(S[0] / max(float(S[0].sum()), 1e-300), 1e-12)
                out[up.probs] = w / w.sum()
        return out

    def describe(self):
        return [up.describe() for up in self.updates]


def _reduced(own, pshape):
    """Axes of ``own`` a parameter of shape ``pshape`` is broadcast along, or None if it does
    not broadcast into ``own`` exactly."""
    if len(pshape) > len(own):
        return None
    padded = (1,) * (len(own) - len(pshape)) + tuple(pshape)
    if any(p not in (1, o) for p, o in zip(padded, own)):
        return None
    return tuple(i for i, p in enumerate(padded) if p == 1)


def _candidates(jm, theta, z):
    """Sites whose distribution takes parameters as they are: (site, kind, names) found by
    identity with the traced parameters."""
    jax = jm.jax
    found = []

    def inspect(th, z1):
        h = Handle("eval", th, z1, ns=jm.ns)
        jm.fn(h, **jm.data)
        which = {id(v): n for n, v in th.items()}
        for s in h.sites.values():
            if s.kind not in ("latent", "observe") or type(s.dist).__name__ not in _KINDS:
                continue
            d = s.dist
            kind = type(d).__name__
            if kind == "Normal":
                sc, lo = which.get(id(d.scale)), which.get(id(d.loc))
                if sc is not None:
                    found.append((s.name, s.kind, "normal", sc, lo, isinstance(d.loc, jax.core.Tracer)))
            elif kind == "MultivariateNormal" and s.kind == "latent":
                mode = getattr(d, "_mode", None)
                tril = d.scale_tril if mode == "scale_tril" else None
                sc = which.get(id(getattr(d, "_" + mode))) if mode in ("scale_tril", "covariance_matrix") else None
                lo = which.get(id(d.loc))
                if sc is not None:
                    found.append((s.name, s.kind, "mvn" + ("_tril" if tril is not None else ""), sc, lo,
                                  isinstance(d.loc, jax.core.Tracer)))
            elif kind in ("Categorical", "Bernoulli") and s.kind == "latent":
                pr = which.get(id(getattr(d, "probs", None)))
                if pr is not None:
                    found.append((s.name, s.kind, kind.lower(), None, None, False, pr))
        return 0.0

    with x64():
        jax.eval_shape(inspect, theta, z)
    return found


def _depends(jm, th, z, sites):
    """{site: (parameters its log terms depend on, parameters the rest of the model depends on)},
    read from the jaxpr of the log terms (structural dependence: no compilation, no evaluation).
    Inside nested calls every output is taken to depend on every input."""
    jax = jm.jax
    names = sorted(th)

    site_names = []

    def terms(thl, zz):
        t = jm.terms(dict(zip(names, thl, strict=True)), zz)
        site_names[:] = sorted(t)
        return [t[n][1] for n in site_names]

    with x64():
        closed = jax.make_jaxpr(terms)([th[n] for n in names], z)
    jaxpr = closed.jaxpr
    dep = {}
    for i, v in enumerate(jaxpr.invars):
        dep[v] = {names[i]} if i < len(names) else set()
    for eqn in jaxpr.eqns:
        d = set()
        for v in eqn.invars:
            if not hasattr(v, "val"):  # a Var, not a Literal
                d |= dep.get(v, set())
        for v in eqn.outvars:
            dep[v] = d
    outs = {n: (dep.get(v, set()) if not hasattr(v, "val") else set())
            for n, v in zip(site_names, jaxpr.outvars, strict=True)}
    return {site: (outs[site], set().union(*[d for n, d in outs.items() if n != site]))
            for site in sites}


def find_closed_forms(jm, theta0, z_points):
    """The :class:`ClosedForm` of a compiled model, or None when no site qualifies.

    ``z_points``: a few random latent points (dicts without batch axes), ``theta0`` the initial
    parameters; the dependence checks run at each of them and at a second parameter point.
    """
    th = {n: np.asarray(v, dtype=float) for n, v in theta0.items()}
    try:
        cands = _candidates(jm, th, z_points[0])
    except Exception:  # the structure is an optimisation, never a reason not to compile
        return None
    if not cands:
        return None
    try:
        deps = _depends(jm, th, z_points[0], [c[0] for c in cands])
    except Exception:
        return None
    ups, used = [], set()
    for c in cands:
        site, skind, kind, sc, lo, _ = c[:6]
        names = [n for n in (sc, lo, c[6] if len(c) > 6 else None) if n is not None]
        if used & set(names) or not _qualifies(jm, deps[site], names, kind, lo):
            continue
        up = _build(jm, site, skind, kind, sc, lo, c[6] if len(c) > 6 else None)
        if up is not None:
            ups.append(up)
            used |= set(names)
    return ClosedForm(jm, ups, theta0) if ups else None


def _qualifies(jm, deps, names, kind, lo):
    cons = {n: jm.params[n] for n in names}
    if kind == "normal" and not isinstance(cons[names[0]], C.Positive):
        return False
    if lo is not None and not isinstance(cons[lo], C.Real):
        return False
    if kind == "mvn" and not isinstance(cons[names[0]], C.PositiveDefinite):
        return False
    if kind == "mvn_tril" and type(cons[names[0]]).__name__ != "LowerCholesky":
        return False
    if kind == "categorical" and not isinstance(cons[names[0]], C.Simplex):
        return False
    if kind == "bernoulli" and not (isinstance(cons[names[0]], C.Interval)
                                    and (cons[names[0]].low, cons[names[0]].high) == (0.0, 1.0)):
        return False
    if lo is not None and kind == "normal" and jm.params[lo].shape != jm.params[names[0]].shape:
        return False
    mine, rest = deps
    # the parameters appear nowhere else, and the site depends on no other parameter (a loc
    # computed from latents and data is free of the parameters)
    return not (rest & set(names)) and mine <= set(names)


def _build(jm, site, skind, kind, sc, lo, pr):
    own = tuple(jm.shapes[site]) if skind == "latent" else None
    if skind == "observe":
        own = jm.observed_shapes.get(site)
        if own is None:
            return None
    if kind == "normal":
        red = _reduced(own, jm.params[sc].shape)
        if red is None:
            return None
        up = _Update(site, "normal", scale=sc, loc=lo, shape=jm.params[sc].shape, red=red)
        up.count = float(np.prod([own[i] for i in red], dtype=float)) if red else 1.0
        return up
    if kind.startswith("mvn"):
        if (skind != "latent" or jm.params[sc].shape != own[-1:] * 2
                or lo is not None and jm.params[lo].shape != own[-1:]):
            return None
        up = _Update(site, "mvn", scale=sc, loc=lo, shape=own[-1:], cholesky=kind == "mvn_tril")
        up.count = float(np.prod(own[:-1], dtype=float)) if len(own) > 1 else 1.0
        return up
    if kind == "bernoulli":
        red = _reduced(own, jm.params[pr].shape)
        if red is None:
            return None
        up = _Update(site, "bernoulli", probs=pr, shape=jm.params[pr].shape, red=red)
        up.count = float(np.prod([own[i] for i in red], dtype=float)) if red else 1.0
        return up
    if jm.params[pr].shape != (jm.params[pr].shape[-1],):
        return None
    up = _Update(site, "categorical", probs=pr, shape=jm.params[pr].shape)
    up.count = float(np.prod(own, dtype=float))
    return up

"""A probabilistic-programming front end that compiles to :class:`mcem.Model`.

A model is a Python function whose first argument is a handle ``m`` and whose other arguments are
data. Inside it, ``m.param`` declares a parameter (with a constraint and an initial value),
``m.latent`` a latent variable (with a distribution, so its support is known) and ``m.observe``
an observed quantity::

    @mcem.model
    def glmm(m, X, y, group, n_groups):
        beta = m.param("beta", shape=X.shape[1], init=0.0)
        sigma = m.param("sigma", constraint=C.positive, init=1.0)
        u = m.latent("u", dist.Normal(0.0, sigma), shape=n_groups, unit=True)
        m.observe("y", dist.Bernoulli(logits=X @ beta + u[..., group]), y, unit_index=group)

    model = glmm(X=X, y=y, group=g, n_groups=G)       # an mcem.Model

Latent values carry leading batch axes (chains, draws), so index them with ``u[..., idx]``.

Unit structure. A latent declared with ``unit=True`` has conditionally independent units along
its first axis. An observation says which unit each of its elements belongs to with
``unit_index`` (an integer array over the observation's first axis), or, when several unit
latents are involved (crossed random effects), a dict ``{latent name: index array}``. The compiled
model then returns per-unit log-density terms (one unit latent) or per-latent conditionals (several),
so samplers can update all units at once. With one unit latent whose length is an argument and
every observation tied to it by one index argument, the model also restricts itself to blocks of
units (:meth:`mcem.Model.subset`), for the sharded E step and unit minibatches.

The unit structure is checked numerically when the model is built, with a few batched
evaluations of the model: the terms filed under a unit must not change when other units change,
and nothing outside the unit terms may depend on the unit latent. An observation filed under one
unit but involving another (``y[g] ~ N(u[g] + u[g + 1], 1)`` with ``unit_index=g``) makes the
model fall back to joint updates of that latent, with a ``UserWarning`` naming the observation
and a pair of dependent units; an observation involving the latent without a ``unit_index``
makes it fall back silently. Either way the latent is then updated jointly, as in a model without
unit structure.

Observed values are checked against the support of their distribution when the model is built
(``Bernoulli`` needs 0/1, ``Poisson`` non-negative integers, ...): the error names the site, the
first bad index and the value.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import warnings
from collections.abc import Mapping

import numpy as np
from scipy import sparse

from . import constraints as C
from ._validation import as_real_array, check_data, with_context
from .model import Continuous, Discrete, Model

__all__ = ["model", "ModelBuilder"]


class _Site:
    __slots__ = ("kind", "name", "value", "dist", "shape", "unit", "unit_index", "constraint", "init")

    def __init__(self, kind, name, **kw):
        self.kind, self.name = kind, name
        for k in self.__slots__[2:]:
            setattr(self, k, kw.get(k))


class _Handle:
    """The ``m`` passed to a model function: records or evaluates the primitives."""

    def __init__(self, mode, theta=None, z=None):
        self._mode = mode  # "trace" or "eval"
        self._theta = theta
        self._z = z
        self.sites: dict[str, _Site] = {}

    def _new(self, name, kind):
        if not isinstance(name, str) or not name:
            raise TypeError(f"{kind}: name must be a non-empty str, got {name!r}")
        if name in self.sites:
            raise ValueError(f"{kind}: the name {name!r} is used twice in the model")

    def param(self, name, *, shape=None, constraint=C.real, init=None):
        """Declare a parameter; returns its current (constrained) value."""
        self._new(name, "param")
        if self._mode == "eval":
            self.sites[name] = _Site("param", name)
            return self._theta[name]
        if not isinstance(constraint, C.Constraint) or not constraint.has_bijection:
            raise TypeError(f"param {name!r}: constraint must be an mcem.constraints object, got {constraint!r}")
        if constraint.elementwise:
            constraint = constraint(() if shape is None else shape)
        elif shape is not None and C.as_shape(shape) != constraint.shape:
            raise ValueError(
                f"param {name!r}: shape {C.as_shape(shape)} does not match the constraint {constraint!r} "
                f"(shape {constraint.shape})"
            )
        if init is None:
            value = constraint.default()
        else:
            value = as_real_array(init, f"param {name!r}: init")
            try:
                value = np.broadcast_to(value, constraint.shape).copy()
            except ValueError:
                raise ValueError(
                    f"param {name!r}: init must broadcast to shape {constraint.shape}, got shape {value.shape}"
                ) from None
            if not constraint.check(value):
                raise ValueError(f"param {name!r}: init must lie in {constraint!r}, got {value!r}")
        self.sites[name] = _Site("param", name, constraint=constraint, init=value)
        return value

    def latent(self, name, dist, *, shape=None, unit=False, init=None):
        """Declare a latent variable with distribution ``dist``; returns its current value."""
        self._new(name, "latent")
        if not hasattr(dist, "log_prob") or not hasattr(dist, "support"):
            raise TypeError(f"latent {name!r}: dist must be an mcem.dist distribution, got {dist!r}")
        if self._mode == "eval":
            value = self._z[name]
            self.sites[name] = _Site("latent", name, dist=dist, value=value, unit=unit)
            return value
        dshape = tuple(dist.batch_shape) + tuple(dist.event_shape)
        shape = dshape if shape is None else C.as_shape(shape, f"latent {name!r}: shape")
        if getattr(dist, "is_discrete", False):
            K = getattr(dist, "num_states", None)
            if not K:
                raise ValueError(
                    f"latent {name!r}: a discrete latent needs finitely many states, got {dist!r} "
                    "(use Bernoulli, Categorical or Binomial with a scalar total_count)"
                )
            spec = Discrete(int(K), shape=shape, unit=unit)
            value = np.zeros(shape, dtype=int)
        else:
            support = dist.support
            if not (isinstance(support, C.Constraint) and support.elementwise and support.has_bijection):
                raise ValueError(
                    f"latent {name!r}: only elementwise continuous supports (real, positive, interval) "
                    f"can be latent, got {support!r} from {dist!r}"
                )
            spec = Continuous(support, shape=shape, unit=unit, init=init)
            value = spec.init
        self.sites[name] = _Site("latent", name, dist=dist, shape=shape, unit=unit, init=spec)
        return value

    def observe(self, name, dist, value, *, unit_index=None):
        """Declare observed data ``value`` with distribution ``dist``.

        ``value`` must lie in the support of ``dist`` (checked when the model is built, by
        ``dist.check_value(value, for_any_params=True)``: supports that move with the
        parameters, such as Uniform(low, high), are only checked for finite values). ``unit_index``: an integer array with one unit per element of
        the first axis of ``value`` (or a dict of them, one per unit latent).
        """
        self._new(name, "observe")
        if not hasattr(dist, "log_prob"):
            raise TypeError(f"observe {name!r}: dist must be an mcem.dist distribution, got {dist!r}")
        if self._mode == "trace" and hasattr(dist, "check_value"):
            # the data lie in the support (for any value of the parameters being estimated)
            dist.check_value(value, f"observe {name!r}", for_any_params=True)
        self.sites[name] = _Site("observe", name, dist=dist, value=value, unit_index=unit_index)
        return value


def _reduce_to(lp, batch_ndim, keep_axis):
    """Sum ``lp`` over everything after the batch axes, keeping one axis (relative) if asked."""
    nd = lp.ndim
    if keep_axis is None:
        return lp.sum(axis=tuple(range(batch_ndim, nd))) if nd > batch_ndim else lp
    trail = tuple(range(batch_ndim + keep_axis + 1, nd))
    return lp.sum(axis=trail) if trail else lp


def _scatter(lp_obs, S):
    """(batch..., n_obs) terms -> (batch..., n_units) sums, with a sparse (n_obs, n_units) map."""
    batch = lp_obs.shape[:-1]
    flat = lp_obs.reshape(-1, lp_obs.shape[-1])
    out = np.asarray((S.T @ flat.T).T)
    return out.reshape(batch + (S.shape[1],))


class ModelBuilder:
    """Compiles a model function with its data into an :class:`mcem.Model`.

    Returned by :func:`model`; call it with the data (positional or keyword) to get the Model.
    """

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"model: expected a function, got {type(fn).__name__}")
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        sig = inspect.signature(self.fn)
        try:
            bound = sig.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.fn.__name__}: {exc}") from None
        bound.apply_defaults()
        data = dict(list(bound.arguments.items())[1:])
        data = check_data(data, "data")
        return _compile(self.fn, data)

    def __repr__(self):
        return f"<mcem model {self.fn.__name__}>"


def model(fn):
    """Decorator: turn a model function ``fn(m, *data)`` into a :class:`ModelBuilder`."""
    return ModelBuilder(fn)


def _compile(fn, data, trusted_units=None):
    """The Model of ``fn`` on ``data``. ``trusted_units``: the unit latents known to factorise
    (a block of a model already checked), to skip the independence check."""
    name = fn.__name__
    trace = _Handle("trace")
    try:
        fn(trace, **data)
    except (TypeError, ValueError) as exc:
        if str(exc).startswith(("param ", "latent ", "observe ")):
            raise  # our own declaration errors already say what is wrong
        raise with_context(exc, f"model {name!r} raised {type(exc).__name__} when run on its data") from exc
    except (IndexError, KeyError, ArithmeticError) as exc:
        raise with_context(exc, f"model {name!r} raised {type(exc).__name__} when run on its data") from exc
    params = {s.name: s.constraint for s in trace.sites.values() if s.kind == "param"}
    init = {s.name: s.init for s in trace.sites.values() if s.kind == "param"}
    lat_sites = {s.name: s for s in trace.sites.values() if s.kind == "latent"}
    latents = {n: s.init for n, s in lat_sites.items()}
    if not params:
        raise ValueError(f"model {name!r} declares no parameter (m.param)")
    if not latents:
        raise ValueError(f"model {name!r} declares no latent variable (m.latent)")
    unit_latents = [n for n, s in lat_sites.items() if s.unit]
    shapes = {n: s.shape for n, s in lat_sites.items()}

    # Sparse maps from observation elements to the units of each unit latent.
    maps: dict[str, dict[str, sparse.csr_matrix]] = {}
    for s in trace.sites.values():
        if s.kind != "observe" or s.unit_index is None:
            continue
        idx = s.unit_index
        if not isinstance(idx, Mapping):
            if len(unit_latents) != 1:
                raise ValueError(
                    f"observe {s.name!r}: unit_index must be a dict {{latent name: index}} when the model "
                    f"has {len(unit_latents)} unit latents ({unit_latents})"
                )
            idx = {unit_latents[0]: idx}
        maps[s.name] = {}
        vshape = np.shape(s.value)
        obs_shape = vshape[: len(vshape) - len(getattr(s.dist, "event_shape", ()))]
        for lat, ix in idx.items():
            if lat not in unit_latents:
                raise ValueError(f"observe {s.name!r}: unit_index names {lat!r}, which is not a unit latent ({unit_latents})")
            where = f"observe {s.name!r}: unit_index[{lat!r}]"
            ix = np.asarray(ix)
            n_units = shapes[lat][0]
            if not np.issubdtype(ix.dtype, np.integer):
                raise TypeError(f"{where} must be a 1-D integer array, got {ix.dtype} of shape {ix.shape}")
            if ix.ndim != 1:
                raise ValueError(f"{where} must be a 1-D integer array, got {ix.dtype} of shape {ix.shape}")
            if not obs_shape or ix.shape[0] != obs_shape[0]:
                raise ValueError(
                    f"{where} must have one entry per element of the first axis of the observation "
                    f"(shape {obs_shape}), got {ix.shape[0]} entries"
                )
            bad = (ix < 0) | (ix >= n_units)
            if bad.any():
                first = int(np.argmax(bad))
                raise ValueError(
                    f"{where} must lie in 0..{n_units - 1}, got values from {ix.min()} to "
                    f"{ix.max()} (first bad: {ix[first]} at index {first})"
                )
            maps[s.name][lat] = sparse.csr_matrix(
                (np.ones(ix.size), (np.arange(ix.size), ix)), shape=(ix.size, n_units)
            )

    first_latent = next(iter(lat_sites))

    def evaluate(theta, z, data):
        """Run the model; return {site: log terms of shape batch + kept axes}, batch shape.

        Latents keep their unit axis when declared with ``unit=True``; observations keep their
        first axis (the one ``unit_index`` refers to) when they have a unit map.
        """
        h = _Handle("eval", theta, z)
        fn(h, **data)
        zf = np.asarray(z[first_latent])
        bnd = zf.ndim - len(shapes[first_latent])
        batch = zf.shape[:bnd]
        terms = {}
        for s in h.sites.values():
            if s.kind == "param":
                continue
            lp = np.asarray(s.dist.log_prob(s.value), dtype=float)
            vshape = np.shape(s.value)
            n_event = len(getattr(s.dist, "event_shape", ()))
            own = vshape[len(vshape) - len(shapes[s.name]) :] if s.kind == "latent" else vshape
            own = own[: len(own) - n_event] if n_event else own
            lp = np.broadcast_to(lp, batch + tuple(own))
            keep = 0 if (s.unit if s.kind == "latent" else s.name in maps) else None
            terms[s.name] = (s, _reduce_to(lp, bnd, keep if own else None))
        return terms, batch

    def total(theta, z, data):
        terms, batch = evaluate(theta, z, data)
        acc = np.zeros(batch)
        for _, lp in terms.values():
            acc = acc + (lp.reshape(batch + (-1,)).sum(-1) if lp.ndim > len(batch) else lp)
        return acc

    def split(terms, batch, site_name):
        """(per-unit terms of ``site_name``, the sum of every other term)."""
        unit = np.zeros(batch + (shapes[site_name][0],))
        rest = np.zeros(batch)
        for s, lp in terms.values():
            if s.kind == "latent" and s.name == site_name:
                unit = unit + lp
            elif s.kind == "observe" and site_name in maps.get(s.name, {}):
                unit = unit + _scatter(lp, maps[s.name][site_name])
            else:
                rest = rest + (lp.reshape(batch + (-1,)).sum(-1) if lp.ndim > len(batch) else lp)
        return unit, rest

    def unit_terms(site_name):
        def cond(theta, z, data):
            return split(*evaluate(theta, z, data), site_name)[0]

        return cond

    def pieces(theta, z, site_name):
        """{site: its per-unit terms of ``site_name``'s units} and the total, shape batch."""
        terms, batch = evaluate(theta, z, data)
        out = {}
        tot = np.zeros(batch)
        for s, lp in terms.values():
            if s.kind == "latent" and s.name == site_name:
                out[s.name] = lp if lp.ndim > len(batch) else np.repeat(lp[..., None], shapes[s.name][0], -1)
            elif s.kind == "observe" and site_name in maps.get(s.name, {}):
                out[s.name] = _scatter(lp, maps[s.name][site_name])
            tot = tot + (lp.reshape(batch + (-1,)).sum(-1) if lp.ndim > len(batch) else lp)
        return out, tot

    # A latent's unit terms are only usable when the units are conditionally independent: nothing
    # left out of them depends on the latent (an observation involving it without a unit_index
    # would break that; then the model silently uses the total), and the terms of one unit do not
    # change with the other units (an observation filed under one unit that involves two would
    # break that; then a warning says which).
    if trusted_units is None:
        conditionals = {}
        for n in unit_latents:
            ok, problem = _check_units(pieces, init, params, lat_sites, n)
            if ok:
                conditionals[n] = unit_terms(n)
            elif problem:
                warnings.warn(problem, UserWarning, stacklevel=3)
    else:
        conditionals = {n: unit_terms(n) for n in unit_latents if n in trusted_units}
    log_joint = total
    if len(unit_latents) == 1:
        site = unit_latents[0]
        n_units = shapes[site][0]

        def per_unit(theta, z, data):
            # The unit terms plus every other term spread evenly over the units: the rest is
            # free of the unit latent (checked below), so it cancels in per-unit acceptance ratios.
            unit, rest = split(*evaluate(theta, z, data), site)
            return unit + rest[..., None] / n_units

        if site in conditionals:
            log_joint = per_unit

    log_joint.__name__ = name
    return Model(
        log_joint,
        params=params,
        latents=latents,
        data=data,
        init=init,
        conditionals=conditionals,
        log_joint_total=total,
        n_obs=_count_observations(trace) or None,
        subset=_row_subset(fn, data, trace, unit_latents, shapes) if unit_latents and
        set(unit_latents) <= set(conditionals) else None,
        name=name,
    )


def _row_subset(fn, data, trace, unit_latents, shapes):
    """A subset function found from the data, or None when the pattern is not recognised.

    Recognised: one unit latent whose length is an int argument (``n_groups``), and every
    observation tied to its units by one and the same index argument (``unit_index=group``).
    A block then keeps the rows of that index's units (every array argument as long as the
    index), the units' entries of unit-level arrays (as long as the latent) and renumbers the
    index; other arguments are kept. The sharded E step and unit minibatches check that the
    blocks add up to the whole model, so a wrong guess is refused, not used.
    """
    try:
        return _find_row_subset(fn, data, trace, unit_latents, shapes)
    except Exception:  # a guess, never a reason for a model not to compile
        return None


def _find_row_subset(fn, data, trace, unit_latents, shapes):
    if len(unit_latents) != 1 or not isinstance(data, Mapping):
        return None
    n_units = shapes[unit_latents[0]][0]
    keys = set()
    for st in trace.sites.values():
        if st.kind != "observe":
            continue
        found = [k for k, v in data.items() if st.unit_index is not None and v is st.unit_index]
        if len(found) != 1:
            return None
        keys.add(found[0])
    counts = [k for k, v in data.items()
              if isinstance(v, numbers.Integral) and not isinstance(v, bool) and v == n_units]
    if len(keys) != 1 or len(counts) != 1:
        return None
    index_key, count_key = keys.pop(), counts[0]
    if not isinstance(data[index_key], np.ndarray) or data[index_key].ndim != 1:
        return None
    n_rows = data[index_key].shape[0]

    def length(v):
        return v.shape[0] if isinstance(v, np.ndarray) and v.ndim >= 1 else None

    rows_keys = [k for k, v in data.items() if k != index_key and length(v) == n_rows]
    unit_keys = [k for k, v in data.items() if length(v) == n_units and k not in rows_keys and k != index_key]
    if n_rows == n_units and not np.array_equal(data[index_key], np.arange(n_units)):
        return None  # rows and units alike in length but not in order: ambiguous

    def subset(units):
        index = data[index_key]
        rows = np.isin(index, units)
        new = dict(data)  # other arguments shared, read-only as they are
        new.update({k: data[k][rows] for k in rows_keys})
        new.update({k: data[k][units] for k in unit_keys})
        new[index_key] = np.searchsorted(units, index[rows])
        new[count_key] = len(units)
        for k in (*rows_keys, *unit_keys, index_key):
            new[k].flags.writeable = False  # already checked: no copy, and empty blocks allowed
        return _compile(fn, new, trusted_units=frozenset(unit_latents))

    return subset


_CHECK_BATCH = 16  # batch elements per evaluation in the unit-independence check


def _random_latent(spec, rng, batch):
    """A random point of a latent, shape ``batch + spec.shape``, near its initial value."""
    if isinstance(spec, Discrete):
        return rng.integers(0, spec.K, size=batch + spec.shape)
    u = spec.support.inverse(spec.init) + 0.5 * rng.standard_normal(batch + spec.shape)
    return spec.support.forward(u)


def _moved(spec, v, rng):
    """Every element of ``v`` moved: to another state (discrete) or by a random step."""
    if isinstance(spec, Discrete):
        return (v + rng.integers(1, spec.K, size=v.shape)) % spec.K if spec.K > 1 else v.copy()
    return spec.support.forward(spec.support.inverse(v) + 0.5 * rng.standard_normal(v.shape))


def _random_theta(params, theta, rng):
    """Parameters moved by a random step on the unconstrained scale."""
    out = {}
    for n, c in params.items():
        u = np.asarray(c.inverse(theta[n]), dtype=float)
        out[n] = c.forward(u + 0.3 * rng.standard_normal(u.shape))
    return out


def _same(a, b):
    """Elementwise: equal up to rounding (and -inf = -inf, NaN = NaN)."""
    with np.errstate(invalid="ignore"):
        return (a == b) | (np.abs(a - b) <= 1e-9 * (1.0 + np.abs(b))) | (np.isnan(a) & np.isnan(b))


def _check_units(pieces, theta0, params, lat_sites, site):
    """Whether the per-unit terms of unit latent ``site`` are conditionally independent.

    Two properties are checked numerically, at the initial parameters and at a random nearby
    point, with the other latents at a random point:

    * the total minus the sum of the unit terms does not change when ``site`` changes (else
      something outside the unit terms depends on it: an observation without a unit_index);
    * changing the units of a set S leaves the terms of every unit outside S unchanged (else a
      term filed under one unit depends on another). The sets are the units whose (shuffled)
      label has bit b set, and their complements, b = 0..ceil(log2 n_units) - 1, so that every
      ordered pair of units is split by one of them. They are evaluated in batches: a few
      log-joint evaluations in all, never a loop over units.

    Returns ``(ok, problem)``: ``problem`` is a message for a warning when units depend on each
    other (naming the site and the first pair of units found), None otherwise.
    """
    rng = np.random.default_rng(12345)
    specs = {n: st.init for n, st in lat_sites.items()}
    spec = specs[site]
    G = spec.shape[0]
    n_bits = int(np.ceil(np.log2(G))) if G > 1 else 0
    code = rng.permutation(G)
    bits = ((code[None, :] >> np.arange(n_bits)[:, None]) & 1).astype(bool)
    sets = np.concatenate([bits, ~bits])  # (2 * n_bits, G)
    thetas = [theta0]
    try:
        thetas.append(_random_theta(params, theta0, rng))
    except Exception:  # a parameter whose transform fails away from init: check at init only
        pass
    for t, theta in enumerate(thetas):
        base = _random_latent(spec, rng, (1,))
        moved = _moved(spec, base, rng)
        mask = sets.reshape(sets.shape + (1,) * (len(spec.shape) - 1))
        z_site = np.concatenate([base, moved, np.where(mask, moved, base)])
        nb = z_site.shape[0]
        z = {n: np.repeat(_random_latent(sp, rng, (1,)), nb, axis=0) for n, sp in specs.items() if n != site}
        z[site] = z_site
        try:
            with np.errstate(all="ignore"):
                parts, total = _evaluate_in_chunks(pieces, theta, z, site, nb)
        except Exception:  # cannot evaluate there: not shown to factorise (t == 0), or no news
            if t == 0:
                return False, None
            continue
        unit_sum = sum(parts.values()) if parts else np.zeros((nb, G))
        with np.errstate(invalid="ignore"):
            rest = total - unit_sum.sum(-1)
        finite = bool(np.all(np.isfinite(rest)))
        if finite:
            tol = 1e-9 * (1.0 + np.max(np.abs(total)))
            if not np.all(np.abs(rest - rest[0]) <= tol):
                return False, None  # a term outside the unit terms depends on the latent
        elif t == 0:
            return False, None
        for name, piece in parts.items():
            changed = ~_same(piece[2:], piece[:1]) & ~sets  # (2 * n_bits, G)
            if changed.any():
                r, j = (int(k[0]) for k in np.nonzero(changed))
                i = _first_cause(pieces, theta, z, site, name, j, np.flatnonzero(sets[r]), z_site)
                where = f"latent {name!r}" if name in lat_sites else f"observe {name!r}"
                cause = f"unit {i}" if i is not None else "other units"
                return False, (
                    f"{where}: the log-density terms filed under unit {j} of the unit latent "
                    f"{site!r} change when {cause} of {site!r} changes, so its units are not "
                    f"conditionally independent as declared (unit=True with unit_index); "
                    f"{site!r} is sampled jointly instead of unit by unit (slower, but correct). "
                    "File each observation under the one unit its distribution depends on, or "
                    "leave out unit_index."
                )
    return True, None


def _evaluate_in_chunks(pieces, theta, z, site, nb):
    """``pieces`` over a batch of ``nb`` latent points, at most _CHECK_BATCH at a time."""
    parts, totals = {}, []
    for a in range(0, nb, _CHECK_BATCH):  # a few chunks, not a loop over units
        p, tot = pieces(theta, {n: v[a:a + _CHECK_BATCH] for n, v in z.items()}, site)
        for k, v in p.items():
            parts.setdefault(k, []).append(np.asarray(v, dtype=float))
        totals.append(np.asarray(tot, dtype=float))
    return {k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(totals)


def _first_cause(pieces, theta, z, site, name, j, cand, z_site):
    """A unit of ``cand`` whose change alone changes the term of unit ``j`` of site ``name``.

    Bisection over ``cand`` (the set that was moved), one batched evaluation per halving; only
    run when the check has already failed. None when no single half explains the change.
    """
    base, moved = z_site[:1], z_site[1:2]
    G = base.shape[1]
    extra = (1,) * (base.ndim - 2)
    while cand.size > 1:
        halves = (cand[: cand.size // 2], cand[cand.size // 2:])
        mask = np.zeros((2, G), dtype=bool)
        mask[0, halves[0]] = True
        mask[1, halves[1]] = True
        zs = dict(z)
        zs[site] = np.concatenate([base, np.where(mask.reshape((2, G) + extra), moved, base)])
        zs = {n: v[:3] for n, v in zs.items()}
        with np.errstate(all="ignore"):
            parts, _ = pieces(theta, zs, site)
        col = np.asarray(parts[name], dtype=float)[:, j]
        hit = [h for h in (0, 1) if not _same(col[1 + h], col[0])]
        if not hit:
            return None
        cand = halves[hit[0]]
    return int(cand[0])


def _count_observations(trace):
    """Number of observed elements (events count once) over all observe sites."""
    n = 0
    for s in trace.sites.values():
        if s.kind == "observe":
            shape = np.shape(s.value)
            n_event = len(getattr(s.dist, "event_shape", ()))
            n += int(np.prod(shape[: len(shape) - n_event], dtype=int))
    return n

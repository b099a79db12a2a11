"""Compiling a model function with its data into an :class:`mcem.Model`: the :func:`model`
decorator, :class:`ModelBuilder` and the log-joint functions built from a trace."""

from __future__ import annotations

import functools
import inspect
import traceback
import warnings

import numpy as np

from .._jax import available as jax_available
from .._validation import check_data, with_context
from ..core import Model
from ..inference.chainlik import ExactChainLoglik, exact_chain_name
from .chains import NumpyChainPieces, NumpyEmission, build_chains, chain_latents
from .jaxcompile import JaxModel
from .structure import find_closed_forms
from .subset import row_subset
from .trace import Handle, count_observations
from .units import _random_latent, check_units, scatter, unit_maps


class _Stats:
    """``sufficient_stats(z, data)`` of a model whose M step is closed-form throughout."""

    def __init__(self, cf):
        self.cf = cf

    def __call__(self, z, data):
        return self.cf.stats(z)


class _MStep:
    """``mstep(stats, data)`` of a model whose M step is closed-form throughout."""

    def __init__(self, cf):
        self.cf = cf

    def __call__(self, stats, data):
        return self.cf.update(stats)

__all__ = ["model", "ModelBuilder", "compile_model"]


class ModelBuilder:
    """Compiles a model function with its data into an :class:`mcem.Model`.

    Returned by :func:`model`; call it with the data (positional or keyword) to get the Model.
    ``jit=False`` evaluates the model with numpy instead of compiling it with JAX (derivatives
    then by finite differences).
    """

    def __init__(self, fn, jit=True):
        if not callable(fn):
            raise TypeError(f"model: expected a function, got {type(fn).__name__}")
        if not isinstance(jit, bool):
            raise TypeError(f"model: jit must be True or False, got {jit!r}")
        self.fn = fn
        self.jit = jit
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
        return compile_model(self.fn, data, jit=self.jit)

    def __repr__(self):
        return f"<mcem model {self.fn.__name__}>"


def model(fn=None, *, jit=True):
    """Decorator: turn a model function ``fn(m, *data)`` into a :class:`ModelBuilder`.

    Use it bare (``@mcem.model``) or with options (``@mcem.model(jit=False)``: evaluate with
    numpy rather than compile with JAX).
    """
    if fn is None:
        return functools.partial(ModelBuilder, jit=jit)
    return ModelBuilder(fn, jit=jit)


def _site_table(trace, maps):
    """(kind, name, what, shape, where) of every site, for Model.describe."""
    rows = []
    for s in trace.sites.values():
        if s.kind == "param":
            rows.append(("param", s.name, repr(s.constraint), tuple(s.constraint.shape), ""))
        elif s.kind == "latent":
            rows.append(("latent", s.name, type(s.dist).__name__, tuple(s.shape), " (unit=True)" if s.unit else ""))
        else:
            what = type(s.dist).__name__ if s.kind == "observe" else "log density"
            units = sorted(maps.get(s.name, {}))
            where = f" (rows filed under the units of {', '.join(units)})" if units else ""
            rows.append((s.kind, s.name, what, tuple(np.shape(s.value)), where))
    return rows


def _user_line(exc, fn):
    """'file:line in function: code' of the innermost frame of the model's own file, or ''."""
    filename = getattr(getattr(fn, "__code__", None), "co_filename", None)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    if not frames:
        return ""
    f = frames[-1]
    code = f" ({f.line.strip()})" if f.line else ""
    return f" at {f.filename}:{f.lineno} in {f.name}{code}"


def _jax_model(fn, data, trace, params, init, shapes, lat_sites, latents, unit_latents, maps):
    """The model compiled by JAX, or None (with a warning saying why and what to change)."""
    if not jax_available():
        return None
    index = {site: {lat: S.indices for lat, S in m.items()} for site, m in maps.items()}
    discrete = {n for n, s in lat_sites.items() if s.init.is_discrete}
    size = count_observations(trace) + sum(int(np.size(s.value)) for s in trace.sites.values() if s.kind == "factor")
    jm = JaxModel(fn, data, params, shapes, discrete, unit_latents, index, size)
    z0 = {n: spec.initial(np.random.default_rng(0), ()) for n, spec in latents.items()}
    try:
        jm.probe(init, z0)
    except Exception as exc:  # anything JAX cannot trace: numpy evaluation instead
        first = (str(exc).strip().splitlines() or [""])[0]
        warnings.warn(
            f"model {fn.__name__!r} cannot be compiled by JAX{_user_line(exc, fn)}: "
            f"{type(exc).__name__}: {first[:200]}. Inside a model, write array functions with the "
            "namespace of the handle (m.np.exp, m.special.expit, ...) or operators, not numpy or "
            "scipy functions: those cannot be traced. The model is evaluated with numpy instead, "
            "with derivatives by finite differences (slower); @mcem.model(jit=False) asks for that "
            "without this warning.",
            UserWarning,
            stacklevel=4,
        )
        return None
    return jm


def _reduce_to(lp, batch_ndim, keep_axis):
    """Sum ``lp`` over everything after the batch axes, keeping one axis (relative) if asked."""
    nd = lp.ndim
    if keep_axis is None:
        return lp.sum(axis=tuple(range(batch_ndim, nd))) if nd > batch_ndim else lp
    trail = tuple(range(batch_ndim + keep_axis + 1, nd))
    return lp.sum(axis=trail) if trail else lp


def _trace(fn, data):
    """Run ``fn`` on its data with a tracing handle; errors of the model function name it."""
    name = fn.__name__
    trace = Handle("trace")
    try:
        fn(trace, **data)
    except (TypeError, ValueError) as exc:
        if str(exc).startswith(("param ", "latent ", "observe ")):
            raise  # our own declaration errors already say what is wrong
        raise with_context(exc, f"model {name!r} raised {type(exc).__name__} when run on its data") from exc
    except (IndexError, KeyError, ArithmeticError) as exc:
        raise with_context(exc, f"model {name!r} raised {type(exc).__name__} when run on its data") from exc
    return trace


def compile_model(fn, data, trusted_units=None, jit=True):
    """The Model of ``fn`` on ``data``. ``trusted_units``: the unit latents known to factorise
    (a block of a model already checked), to skip the independence check. ``jit``: compile with
    JAX (numpy evaluation when False or when the model cannot be traced)."""
    name = fn.__name__
    trace = _trace(fn, data)
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

    # Sparse maps from observation elements to the units of each unit latent (and to the time
    # steps of each chain latent).
    chain_names = chain_latents(lat_sites)
    maps = unit_maps(trace.sites.values(), unit_latents, shapes, chains=chain_names)

    first_latent = next(iter(lat_sites))

    def evaluate(theta, z, data):
        """Run the model; return {site: log terms of shape batch + kept axes}, batch shape.

        Latents keep their unit axis when declared with ``unit=True``; observations keep their
        first axis (the one ``unit_index`` refers to) when they have a unit map.
        """
        h = Handle("eval", theta, z)
        fn(h, **data)
        zf = np.asarray(z[first_latent])
        bnd = zf.ndim - len(shapes[first_latent])
        batch = zf.shape[:bnd]
        terms = {}
        for s in h.sites.values():
            if s.kind == "param":
                continue
            if s.kind == "factor":
                lp = np.asarray(s.value, dtype=float)
                own = np.shape(trace.sites[s.name].value)  # the factor's own shape, as traced
            else:
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
            elif s.kind != "latent" and site_name in maps.get(s.name, {}):
                unit = unit + scatter(lp, maps[s.name][site_name])
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
            elif s.kind != "latent" and site_name in maps.get(s.name, {}):
                out[s.name] = scatter(lp, maps[s.name][site_name])
            tot = tot + (lp.reshape(batch + (-1,)).sum(-1) if lp.ndim > len(batch) else lp)
        return out, tot

    jm = _jax_model(fn, data, trace, params, init, shapes, lat_sites, latents, unit_latents, maps) if jit else None
    if jm is not None:
        pieces, unit_terms = jm.pieces, jm.units

        def total(theta, z, data):
            return jm.total(theta, z)

    # A latent's unit terms are only usable when the units are conditionally independent: nothing
    # left out of them depends on the latent (an observation involving it without a unit_index
    # would break that; then the model silently uses the total), and the terms of one unit do not
    # change with the other units (an observation filed under one unit that involves two would
    # break that; then a warning says which).
    if trusted_units is None:
        conditionals = {}
        for n in unit_latents:
            ok, problem = check_units(pieces, init, params, lat_sites, n)
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

        if jm is not None:
            per_unit = jm.per_unit(site)
        if site in conditionals:
            log_joint = per_unit

    chains, extra = {}, {}
    if chain_names:
        emissions = {n: jm.emission(n) if jm is not None else NumpyEmission(evaluate, maps, n, shapes[n][0])
                     for n in chain_names}
        cpieces = jm.chain_pieces if jm is not None else NumpyChainPieces(evaluate, maps, data)
        chains, problems = build_chains(fn, chain_names, lat_sites, latents, params, init, emissions, cpieces)
        for problem in problems:
            warnings.warn(problem, UserWarning, stacklevel=3)
        exact_name = exact_chain_name(latents, chains)
        if exact_name is not None:
            extra["loglik"] = ExactChainLoglik(exact_name, chains[exact_name], latents[exact_name], total)

    log_joint.__name__ = name
    factorised = bool(unit_latents) and set(unit_latents) <= set(conditionals)
    block = functools.partial(compile_model, trusted_units=frozenset(unit_latents), jit=jit)
    exact, cf = {}, None
    if jm is not None:
        rng = np.random.default_rng(2024)
        jm.observed_shapes = {
            s.name: tuple(np.shape(s.value)[: np.ndim(s.value) - len(getattr(s.dist, "event_shape", ()))])
            for s in trace.sites.values() if s.kind == "observe"}
        cf = find_closed_forms(jm, init, [{n: _random_latent(sp, rng, ()) for n, sp in latents.items()}
                                          for _ in range(2)])
        if cf is not None and cf.complete:
            exact.update(sufficient_stats=_Stats(cf), mstep=_MStep(cf))
        exact.update(grad_params=jm.grad_params, value_and_grad=jm.value_and_grad,
                     grad_latents=jm.grad_latents if jm.continuous else None,
                     scores=jm.scores, hessian=jm.hessian,
                     unit_scores=jm.unit_scores(unit_latents[0]) if log_joint is not total else None)
    out = Model(
        log_joint,
        params=params,
        latents=latents,
        data=data,
        init=init,
        conditionals=conditionals,
        log_joint_total=total,
        n_obs=count_observations(trace) or None,
        subset=row_subset(fn, data, trace, unit_latents, shapes, block) if factorised else None,
        chains=chains,
        name=name,
        **exact,
        **extra,
    )
    out._rebuild = (compile_model, (fn, data, trusted_units, jit))
    out.partial_mstep = cf if cf is not None and not cf.complete else None
    out.compiled_by = ("JAX (jit; exact derivatives)" if jm is not None
                       else "numpy (the model function runs at every evaluation; finite differences)")
    out.sites = _site_table(trace, maps)
    if jm is not None and jm.n_unconstrained:
        out.weighted_value_and_grad_u = jm.weighted_value_and_grad_u
        out.weighted_grad_u = jm.weighted_grad_u
    out.structure = cf
    return out

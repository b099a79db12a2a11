"""``Model.check``: probe every batch layout the package uses on a model's functions.

The package calls ``log_joint`` (and a model's optional functions) with latents of several
batch shapes (the table in :mod:`mcem.model`). A model that works for one of them may fail, or
worse return wrong numbers, for another: a ``log_joint`` that indexes ``z["u"][:, group]``
works for ``(chains,)`` batches and breaks for ``(chains, draws)``. :func:`check_model` calls
every function on latents of every layout and compares:

* shapes, and the unit axis (``n_units`` last, or none) the same in every layout;
* no NaN or +inf anywhere; -inf at the same places in every layout;
* the values of one batch element the same whatever layout it arrives in;
* ``log_joint_total`` and ``value_and_grad`` against the summed per-unit terms;
* the unit structure: a unit's term moves with that unit's latents only;
* ``conditionals``: shapes, and their change against the change of the log joint;
* ``grad_params`` against central differences of the log joint (in the unconstrained
  coordinates, so the constraints are never left);
* ``sufficient_stats`` averaged over the batch; ``posterior_sampler`` shapes and support;
* with a ``subset`` function, that the blocks' log joints add up to the whole model's.

It raises ``ValueError`` (``TypeError`` for a value of the wrong type) whose message starts with
``Model.check: <layout>:``, or returns a :class:`CheckReport`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._validation import as_generator, with_context
from .latents import random_latents
from .subset import check_additive, shard_units

__all__ = ["CheckReport", "check_model"]

CHAINS, DRAWS = 4, 3  # the pool of probe latents: CHAINS * DRAWS batch elements


class CheckReport(dict):
    """What :meth:`mcem.Model.check` probed: layout name -> ``{"batch", "returned", "status"}``.

    ``batch`` is the latents' batch shape, ``returned`` the shape the function returned and
    ``status`` ``"ok"`` or ``"skipped: <why>"``; some rows add a ``note``. Attributes:
    ``model`` (the model's name), ``per_unit`` and ``n_units``.
    """

    def __init__(self, model, per_unit, n_units):
        super().__init__()
        self.model, self.per_unit, self.n_units = model, per_unit, n_units

    def add(self, layout, batch=None, returned=None, status="ok", note=None):
        row = {"batch": batch, "returned": returned, "status": status}
        if note:
            row["note"] = note
        self[layout] = row

    @property
    def passed(self) -> list:
        """The layouts probed (the others were skipped)."""
        return [k for k, v in self.items() if v["status"] == "ok"]

    def __str__(self):
        width = max(len(k) for k in self) + 2
        lines = [f"Model.check of {self.model!r}: per_unit={self.per_unit}, n_units={self.n_units}"]
        for k, v in self.items():
            shapes = "" if v["batch"] is None else f"batch {v['batch']} -> {v['returned']}"
            note = f" ({v['note']})" if "note" in v else ""
            lines.append(f"  {k:<{width}}{v['status']:<8} {shapes}{note}".rstrip())
        return "\n".join(lines)


def _fail(layout, msg, kind=ValueError):
    return kind(f"Model.check: {layout}: {msg}")


def _call(layout, what, fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # the user's error, with the layout it came from
        raise with_context(exc, f"Model.check: {layout}: {what} raised {type(exc).__name__}") from exc


def _take(z, sel):
    """The batch elements ``sel`` of every latent, as copies (a model may write into them)."""
    return {n: np.array(v[sel]) for n, v in z.items()}


def _close(a, b, rtol=1e-8):
    """Equal up to rounding: -inf at the same places, finite values within ``rtol``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or not np.array_equal(np.isfinite(a), np.isfinite(b)):
        return False
    f = np.isfinite(a)
    scale = 1.0 + np.maximum(np.abs(a[f]), np.abs(b[f]))
    return bool(np.all(np.abs(a[f] - b[f]) <= rtol * scale))


class _Probe:
    """The model, theta, a pool of random latents and the reference values on that pool."""

    def __init__(self, model, theta, rng, report):
        self.model, self.theta, self.rng, self.report = model, theta, rng, report
        self.per_unit, self.n_units = report.per_unit, report.n_units
        pool = random_latents(model.latents, rng, (CHAINS * DRAWS,))
        init = model.init_latents(rng, (1,))
        self.pool = {n: np.concatenate([init[n], v[1:]]) for n, v in pool.items()}
        # the reference: the pool evaluated as MCMC chains, CHAINS at a time
        layout = "MCMC chains (chains,)"
        parts = [self.lj(layout, _take(self.pool, slice(i, i + CHAINS)), (CHAINS,))
                 for i in range(0, CHAINS * DRAWS, CHAINS)]
        self.ref = np.concatenate(parts)
        report.add(layout, (CHAINS,), parts[0].shape)

    def want(self, batch):
        return batch + (self.n_units,) if self.per_unit else batch

    def lj(self, layout, z, batch, fn=None, what="log_joint"):
        """``fn(theta, z, data)`` (default log_joint), checked: type, shape, no NaN or +inf."""
        fn = self.model.log_joint_fn if fn is None else fn
        out = _call(layout, what, fn, self.theta, z, self.model.data)
        arr = np.asarray(out)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise _fail(layout, f"{what} must return a float array, got {type(out).__name__} of dtype "
                        f"{arr.dtype}", TypeError)
        arr = arr.astype(float)
        want = self.want(batch) if what == "log_joint" else None
        if want is not None and arr.shape != want:
            how = "per batch element and unit" if self.per_unit else "one value per batch element"
            raise _fail(layout, f"log_joint returned shape {arr.shape} for latents with batch shape "
                        f"{batch}; expected {want} ({how}, as for the batch shape (2,) of "
                        "Model.validate)")
        if np.any(np.isnan(arr)) or np.any(np.isposinf(arr)):
            raise _fail(layout, f"{what} returned NaN or +inf for latents in their supports "
                        f"(batch shape {batch})")
        return arr

    def agree(self, layout, got, ref, batch):
        if not _close(got, ref):
            raise _fail(layout, f"log_joint gives other values for the same latents in this layout "
                        f"(batch shape {batch}) than in batches of shape ({CHAINS},); largest "
                        f"difference {_maxdiff(got, ref):.3g}. Index latents from the end (z[..., i]) "
                        "and reduce over trailing axes only")

    def layout(self, layout, batch, index):
        """Evaluate the pool elements ``index`` (an int array of shape ``batch``) and compare."""
        z = {n: v[index] for n, v in self.pool.items()}
        got = self.lj(layout, z, batch)
        self.agree(layout, got, self.ref[index], batch)
        self.report.add(layout, batch, got.shape)


def _maxdiff(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return float("inf")
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    return float(np.max(np.where(np.isnan(d), np.inf, d), initial=0.0))


def _perturb(spec, v, rng, sel):
    """``v`` with the elements ``sel`` moved within the support (a discrete state to the next)."""
    out = np.array(v, copy=True)
    if spec.is_discrete:
        out[sel] = (out[sel] + 1) % spec.K
    else:
        w = spec.support.inverse(out)
        w[sel] = w[sel] + rng.normal(size=np.shape(w[sel]))
        out = spec.support.forward(w)
    return out


# ---------------------------------------------------------------------------- the layouts
def _batch_layouts(p):
    idx = np.arange(CHAINS * DRAWS)
    p.layout("one chain (1,)", (1,), idx[:1])
    p.layout("Q estimate (chains, draws)", (CHAINS, DRAWS), idx.reshape(CHAINS, DRAWS))
    p.layout("Adam minibatch (1, batch_draws)", (1, 5), idx[:5].reshape(1, 5))
    p.layout("importance sampling, enumeration (R,)", (CHAINS * DRAWS,), idx)


def _gibbs(p, name):
    """A Discrete site at its K states, batch (K, chains), the other latents at (chains,)."""
    m, spec = p.model, p.model.latents[name]
    K = spec.K
    cond = m.conditionals.get(name)
    layout = f"Gibbs enumeration (K, chains) of {name!r}" + (" (conditionals)" if cond else "")
    base = _take(p.pool, slice(0, CHAINS))
    site = np.broadcast_to(base[name], (K,) + base[name].shape).copy()
    slot = (slice(None), slice(None)) + ((slice(None),) if spec.unit else ()) + (0,) * (
        len(spec.shape) - spec.unit)
    site[slot] = np.arange(K).reshape((K,) + (1,) * (site[slot].ndim - 1))
    fn, what = (cond, f"conditionals[{name!r}]") if cond else (None, "log_joint")
    got = p.lj(layout, {**base, name: site}, (K, CHAINS), fn, what)
    ref = np.stack([p.lj(layout, {**base, name: site[k]}, (CHAINS,), fn, what) for k in range(K)])
    want = (K, CHAINS, spec.n_units) if cond else p.want((K, CHAINS))
    if got.shape != want:
        raise _fail(layout, f"{what} returned shape {got.shape} for the {K} states of {name!r} "
                    f"(batch shape ({K}, {CHAINS})) with the other latents at batch shape "
                    f"({CHAINS},); expected {want}. Make it broadcast over leading batch axes, or "
                    "sample with mcem.kernels.Gibbs(batch_states=False)")
    if not _close(got, ref):
        raise _fail(layout, f"{what} on the {K} states at once differs from one state at a time "
                    f"(largest difference {_maxdiff(got, ref):.3g})")
    p.report.add(layout, (K, CHAINS), got.shape)


def _k_states(p):
    """GEM's Q and marginal_loglik: state k in every unit of the one Discrete unit latent."""
    layout = "sum over K states (K,)"
    (name,) = p.model.latent_names
    spec = p.model.latents[name]
    states = {name: np.broadcast_to(np.arange(spec.K)[:, None], (spec.K,) + spec.shape)}
    got = p.lj(layout, states, (spec.K,))
    ref = np.concatenate([p.lj(layout, {name: np.full((1,) + spec.shape, k)}, (1,))
                          for k in range(spec.K)])
    if not _close(got, ref):
        raise _fail(layout, "log_joint on a read-only broadcast batch of the K states differs from "
                    f"one state at a time (largest difference {_maxdiff(got, ref):.3g})")
    p.report.add(layout, (spec.K,), got.shape)


def _total(p):
    layout = "log_joint_total"
    m = p.model
    for batch, index in (((CHAINS,), np.arange(CHAINS)),
                         ((CHAINS, DRAWS), np.arange(CHAINS * DRAWS).reshape(CHAINS, DRAWS))):
        z = {n: v[index] for n, v in p.pool.items()}
        got = p.lj(layout, z, batch, m.log_joint_total_fn, "log_joint_total")
        ref = p.ref[index].sum(axis=-1) if p.per_unit else p.ref[index]
        if got.shape != batch or not _close(got, ref):
            raise _fail(layout, f"log_joint_total returned shape {got.shape} for batch shape {batch}; "
                        f"expected the log joint summed over units, shape {batch}, equal to "
                        f"log_joint summed (largest difference {_maxdiff(got, ref):.3g})")
    p.report.add(layout, batch, got.shape)


def _unit_structure(p):
    """Moving unit 0 of every unit latent changes the term of unit 0 only."""
    layout = "unit structure (per-unit terms)"
    m = p.model
    if p.n_units < 2:
        return p.report.add(layout, status="skipped: one unit")
    base = _take(p.pool, slice(0, CHAINS))
    moved = {n: _perturb(m.latents[n], v, p.rng, (slice(None), 0)) if m.latents[n].unit else v
             for n, v in base.items()}
    a, b = p.ref[:CHAINS], p.lj(layout, moved, (CHAINS,))
    if not _close(a[:, 1:], b[:, 1:]):
        raise _fail(layout, "moving the latents of unit 0 changed the log_joint terms of other units "
                    f"(largest change {_maxdiff(a[:, 1:], b[:, 1:]):.3g}); the term of unit i must "
                    "involve the latents of unit i only, or return one value per batch element")
    p.report.add(layout, (CHAINS,), b.shape)


def _conditional(p, name):
    layout = f"conditionals[{name!r}] (chains,)"
    m, spec = p.model, p.model.latents[name]
    fn, what = m.conditionals[name], f"conditionals[{name!r}]"
    base = _take(p.pool, slice(0, CHAINS))
    c0 = p.lj(layout, base, (CHAINS,), fn, what)
    if c0.shape != (CHAINS, spec.n_units):
        raise _fail(layout, f"{what} returned shape {c0.shape} for latents with batch shape "
                    f"({CHAINS},); expected ({CHAINS}, {spec.n_units}) (per chain and unit of {name!r})")
    t0 = m.log_joint_sum(p.theta, base, 1)
    for sel, which in (((slice(None), 0), "unit 0"), ((slice(None),), "every unit")):
        z = {**base, name: _perturb(spec, base[name], p.rng, sel)}
        c1 = p.lj(layout, z, (CHAINS,), fn, what)
        t1 = m.log_joint_sum(p.theta, z, 1)
        ok = np.isfinite(c0).all(axis=1) & np.isfinite(c1).all(axis=1) & np.isfinite(t0) & np.isfinite(t1)
        dc, dt = (c1 - c0)[ok], (t1 - t0)[ok]
        if which == "unit 0" and spec.n_units > 1 and not _close(dc[:, 1:], 0 * dc[:, 1:]):
            raise _fail(layout, f"moving unit 0 of {name!r} changed {what} of other units")
        if not _close(dc.sum(axis=1), dt, rtol=1e-7):
            raise _fail(layout, f"moving {which} of {name!r} changed the log joint by "
                        f"{np.round(dt, 6).tolist()} but {what} by {np.round(dc.sum(axis=1), 6).tolist()}; "
                        "it must hold every term of the log joint that involves the unit")
    p.report.add(layout, (CHAINS,), c0.shape)


def _grads(p):
    m, th = p.model, p.theta
    batch, index = (CHAINS, DRAWS), np.arange(CHAINS * DRAWS).reshape(CHAINS, DRAWS)
    z = {n: v[index] for n, v in p.pool.items()}
    layout = "grad_params (chains, draws)"
    g = _call(layout, "grad_params", m.grad_params_fn, th, z, m.data)
    if not isinstance(g, Mapping) or sorted(g) != list(m.param_names):
        raise _fail(layout, f"grad_params must return a dict with the parameters {list(m.param_names)}, "
                    f"got {type(g).__name__} {sorted(g) if isinstance(g, Mapping) else ''}", TypeError)
    g = {n: np.asarray(v, dtype=float) for n, v in g.items()}
    for n in m.param_names:
        if g[n].shape != batch + m.params[n].shape:
            raise _fail(layout, f"grad_params[{n!r}] has shape {g[n].shape} for latents with batch "
                        f"shape {batch}; expected {batch + m.params[n].shape} (batch + parameter shape)")
    u = m.to_unconstrained(th)
    f0 = m.log_joint_sum(th, z, 2)
    ok = np.isfinite(f0)
    for _ in range(3):  # random directions in the unconstrained space
        v = p.rng.normal(size=u.shape)
        v /= np.linalg.norm(v) or 1.0
        h = 1e-5 * max(1.0, float(np.abs(u).max(initial=0.0)))
        hi, lo = m.from_unconstrained(u + h * v), m.from_unconstrained(u - h * v)
        with np.errstate(all="ignore"):
            fd = (m.log_joint_sum(hi, z, 2) - m.log_joint_sum(lo, z, 2)) / (2 * h)
        an = sum(np.sum(g[n] * ((hi[n] - lo[n]) / (2 * h)), axis=tuple(range(2, g[n].ndim)))
                 for n in m.param_names)
        err = np.abs(fd - an)[ok]
        tol = 1e-4 * (np.abs(fd) + np.abs(an))[ok] + 1e-6 * (1 + np.abs(f0[ok]))
        if not np.all(err <= tol):
            raise _fail(layout, "grad_params disagrees with central differences of the log joint: "
                        f"directional derivatives {np.round(an[ok], 6).tolist()[:4]} vs "
                        f"{np.round(fd[ok], 6).tolist()[:4]} (largest error {err.max():.3g})")
    p.report.add(layout, batch, {n: g[n].shape for n in m.param_names})
    if m.value_and_grad_fn is None:
        return p.report.add("value_and_grad (chains, draws)", status="skipped: not given")
    layout = "value_and_grad (chains, draws)"
    out = _call(layout, "value_and_grad", m.value_and_grad_fn, th, z, m.data)
    if not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[1], Mapping):
        raise _fail(layout, f"value_and_grad must return (total, grads), got {type(out).__name__}", TypeError)
    total = np.asarray(out[0], dtype=float)
    if total.shape != batch or not _close(total, f0):
        raise _fail(layout, f"value_and_grad's total has shape {total.shape}; expected the log joint "
                    f"summed over units, shape {batch}, equal to it (largest difference "
                    f"{_maxdiff(total, f0):.3g})")
    for n in m.param_names:
        gv = np.asarray(out[1].get(n, np.nan), dtype=float)
        if gv.shape != g[n].shape or not _close(gv, g[n], rtol=1e-6):
            raise _fail(layout, f"value_and_grad's gradient of {n!r} differs from grad_params "
                        f"(largest difference {_maxdiff(gv, g[n]):.3g})")
    p.report.add(layout, batch, total.shape)


def _stats(p):
    layout = "sufficient_stats (chains * draws,)"
    m = p.model

    def stats(z):
        s = _call(layout, "sufficient_stats", m.sufficient_stats_fn, z, m.data)
        if not isinstance(s, Mapping):
            raise _fail(layout, f"sufficient_stats must return a dict, got {type(s).__name__}", TypeError)
        return {k: np.asarray(v, dtype=float) for k, v in s.items()}

    whole = stats(p.pool)
    parts = [stats(_take(p.pool, slice(i, i + CHAINS))) for i in range(0, CHAINS * DRAWS, CHAINS)]
    for k, v in whole.items():
        mean = np.mean([q[k] for q in parts], axis=0)
        if not _close(v, mean):
            raise _fail(layout, f"sufficient_stats[{k!r}] of {CHAINS * DRAWS} draws is not the mean of "
                        f"its values on blocks of {CHAINS} draws; the statistics must be averaged over "
                        "the leading batch axes (not summed)")
    p.report.add(layout, (CHAINS * DRAWS,), {k: v.shape for k, v in whole.items()})


def _sampler(p):
    layout = "posterior_sampler (chains,)"
    m = p.model
    z = _call(layout, "posterior_sampler", m.posterior_sampler_fn, p.theta, m.data, p.rng, (CHAINS,))
    if not isinstance(z, Mapping):
        raise _fail(layout, f"posterior_sampler must return a dict of latents, got {type(z).__name__}",
                    TypeError)
    for n in m.latent_names:
        want = (CHAINS,) + m.latents[n].shape
        v = np.asarray(z.get(n, np.zeros(0)))
        if v.shape != want or not np.all(m.latents[n].contains(v)):
            raise _fail(layout, f"posterior_sampler returned {n!r} of shape {v.shape}; expected {want} "
                        f"(batch + latent shape) inside {m.latents[n].support!r}")
    lp = p.lj(layout, {n: np.asarray(z[n]) for n in m.latent_names}, (CHAINS,))
    if np.any(np.isneginf(lp.reshape(CHAINS, -1).sum(-1))):
        raise _fail(layout, "posterior_sampler returned draws where the log joint is -inf")
    p.report.add(layout, (CHAINS,), lp.shape)


def _blocks(p):
    layout = "sharded blocks (3,)"
    m = p.model
    blocks = shard_units(m.n_units, min(2, m.n_units))
    try:
        subs = [m.subset(b) for b in blocks]
        check_additive(m, subs, blocks, p.theta)
    except (ValueError, TypeError) as exc:
        raise with_context(exc, f"Model.check: {layout}") from exc
    note = None
    try:
        check_additive(m, subs, blocks, p.theta, exact=True)
    except ValueError:
        note = "additive up to a term free of the latents only (mstep batch_units needs exact)"
    p.report.add(layout, (3,), (3,), note=note)


def check_model(model, theta=None, rng=None) -> CheckReport:
    """Probe every batch layout on ``model``; see :meth:`mcem.Model.check`."""
    rng = as_generator(0 if rng is None else rng)
    theta = model.default_theta() if theta is None else theta
    try:
        theta = model.validate(theta, rng=int(rng.integers(2**31)), name="theta")
    except (ValueError, TypeError) as exc:
        raise with_context(exc, "Model.check: validate (2,)") from exc
    per_unit = model.per_unit
    report = CheckReport(model.name, per_unit, model.n_units)
    report.add("validate (2,)", (2,), (2, model.n_units) if per_unit else (2,))
    p = _Probe(model, theta, rng, report)
    _batch_layouts(p)
    for n in model.latent_names:
        if model.latents[n].is_discrete:
            _gibbs(p, n)
    names = model.latent_names
    if len(names) == 1 and model.latents[names[0]].is_discrete and model.latents[names[0]].unit and per_unit:
        _k_states(p)
    else:
        report.add("sum over K states (K,)", status="skipped: not one Discrete unit latent with unit terms")
    optional = [
        ("log_joint_total", model.log_joint_total_fn, _total),
        ("unit structure (per-unit terms)", per_unit or None, _unit_structure),
        ("grad_params (chains, draws)", model.grad_params_fn, _grads),
        ("sufficient_stats (chains * draws,)", model.sufficient_stats_fn, _stats),
        ("posterior_sampler (chains,)", model.posterior_sampler_fn, _sampler),
        ("sharded blocks (3,)", model.subset_fn, _blocks),
    ]
    for layout, given, probe in optional:
        if given is None:
            report.add(layout, status="skipped: not given" if layout != "unit structure (per-unit terms)"
                       else "skipped: no per-unit terms")
        else:
            probe(p)
    for n in sorted(model.conditionals):
        _conditional(p, n)
    return report

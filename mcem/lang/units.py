"""Unit structure: which units of a unit latent each observation belongs to, and the numerical
check that the units are conditionally independent as declared.

A latent declared with ``unit=True`` has units along its first axis; an observation files its
elements under units with ``unit_index``. :func:`unit_maps` turns those indices into sparse
(observation element x unit) maps, :func:`scatter` sums per-element terms into per-unit terms,
and :func:`check_units` checks, with a few batched evaluations, that the terms filed under a
unit do not change when other units change and that nothing outside them depends on the latent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import sparse

from ..core import Discrete

__all__ = ["unit_maps", "scatter", "check_units"]

_CHECK_BATCH = 16  # batch elements per evaluation in the unit-independence check


def _obs_shape(s):
    vshape = np.shape(s.value)
    return vshape[: len(vshape) - len(getattr(s.dist, "event_shape", ()))] if s.kind == "observe" else vshape


def unit_maps(sites, unit_latents, shapes, chains=()):
    """{observe site: {unit latent: sparse (n_obs, n_units) map}} from the ``unit_index`` of
    each observation, checked (integer, 1-D, one entry per observed row, within the units).

    ``chains``: latents that form a chain over their first axis (time). A ``unit_index`` may
    file rows under a chain's time steps too; with one chain, an observation without an index
    for it whose first axis has the chain's length is filed row t under time step t."""
    maps: dict[str, dict[str, sparse.csr_matrix]] = {}
    chains = list(chains)
    targets = list(unit_latents) + chains
    for s in sites:
        if s.kind not in ("observe", "factor"):
            continue
        idx = s.unit_index
        if idx is None:
            idx = {}
        elif not isinstance(idx, Mapping):
            plain = list(unit_latents) if unit_latents else chains
            if len(plain) != 1:
                raise ValueError(
                    f"observe {s.name!r}: unit_index must be a dict {{latent name: index}} when the model "
                    f"has {len(plain)} unit latents ({plain})"
                )
            idx = {plain[0]: idx}
        obs_shape = _obs_shape(s)
        if len(chains) == 1 and chains[0] not in idx and obs_shape and obs_shape[0] == shapes[chains[0]][0]:
            idx = {**idx, chains[0]: np.arange(obs_shape[0])}
        if not idx:
            continue
        maps[s.name] = {}
        for lat, ix in idx.items():
            if lat not in targets:
                raise ValueError(f"observe {s.name!r}: unit_index names {lat!r}, which is not a unit latent ({targets})")
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
    return maps


def scatter(lp_obs, S):
    """(batch..., n_obs) terms -> (batch..., n_units) sums, with a sparse (n_obs, n_units) map."""
    batch = lp_obs.shape[:-1]
    flat = lp_obs.reshape(-1, lp_obs.shape[-1])
    out = np.asarray((S.T @ flat.T).T)
    return out.reshape(batch + (S.shape[1],))


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


def check_units(pieces, theta0, params, lat_sites, site):
    """Whether the per-unit terms of unit latent ``site`` are conditionally independent.

    ``pieces(theta, z, site)`` returns ({site name: its per-unit terms of ``site``'s units},
    the total log density), both over the batch axes of ``z``.

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

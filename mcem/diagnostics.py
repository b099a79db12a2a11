"""Monte Carlo diagnostics as functions on plain arrays.

Draws are laid out ``(chain, draw, *shape)``; every function reduces the first two axes and
returns a float for ``(chain, draw)`` input, an array of shape ``shape`` otherwise. ESS, R-hat and
MCSE are thin wrappers on ``arviz_stats.base.array_stats``.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_positive_int

__all__ = ["ess", "rhat", "mcse_mean", "batch_means_se", "acceptance_summary"]


def _array_stats():
    from arviz_stats.base import array_stats

    return array_stats


def _as_draws(x, name="x"):
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (chain, draw, ...), got shape {x.shape}")
    return x


def _out(v):
    v = np.asarray(v, dtype=float)
    return float(v) if v.ndim == 0 else v


def ess(x, method="bulk"):
    """Effective sample size over (chain, draw) (``arviz_stats`` ``ess``; default bulk ESS).

    A 1-D input is one chain. NaN when there are fewer than 4 draws.
    """
    x = _as_draws(x)
    return _out(_array_stats().ess(x, chain_axis=0, draw_axis=1, method=method))


def rhat(x, method="rank"):
    """Rank-normalised split R-hat over (chain, draw) (``arviz_stats`` ``rhat``).

    NaN with a single chain or fewer than 4 draws.
    """
    x = _as_draws(x)
    if x.shape[0] < 2:
        return _out(np.full(x.shape[2:], np.nan))
    return _out(_array_stats().rhat(x, chain_axis=0, draw_axis=1, method=method))


def mcse_mean(x):
    """Monte Carlo standard error of the mean over (chain, draw) (``arviz_stats`` ``mcse``)."""
    x = _as_draws(x)
    return _out(_array_stats().mcse(x, chain_axis=0, draw_axis=1, method="mean"))


def batch_means_se(x, n_batches=None):
    """Standard error of the mean of (chain, draw, ...) draws by non-overlapping batch means.

    Each chain is cut into ``n_batches`` consecutive batches of ``b = n_draw // n_batches``
    draws (default ``n_batches = floor(sqrt(n_draw))``; leading draws that do not fill a batch
    are dropped). The long-run variance ``b * var(batch means)`` is estimated within each chain
    and pooled over chains; the result is ``sqrt(sigma^2 / (chains * n_batches * b))``.
    """
    x = _as_draws(x)
    n_chain, n_draw = x.shape[:2]
    if n_batches is None:
        n_batches = max(int(np.sqrt(n_draw)), 2)
    n_batches = check_positive_int(n_batches, "n_batches", minimum=2)
    b = n_draw // n_batches
    if b < 1:
        raise ValueError(
            f"batch_means_se: n_batches={n_batches} needs at least that many draws per chain, "
            f"got {n_draw}"
        )
    used = x[:, n_draw - n_batches * b :]
    means = used.reshape((n_chain, n_batches, b) + x.shape[2:]).mean(axis=2)
    var = b * np.var(means, axis=1, ddof=1)  # (chain, ...)
    sigma2 = var.mean(axis=0)
    return _out(np.sqrt(sigma2 / (n_chain * n_batches * b)))


def acceptance_summary(rates):
    """Summarise acceptance rates averaged over steps.

    Parameters
    ----------
    rates : array
        Per chain ``(chains,)`` or per chain and unit ``(chains, n_units)``.

    Returns
    -------
    dict with ``mean`` (over everything) and ``min`` (over units of the chain-averaged rate for
    per-unit rates; over chains otherwise).
    """
    r = np.asarray(rates, dtype=float)
    if r.size == 0:
        return {"mean": float("nan"), "min": float("nan")}
    if r.ndim <= 1:
        return {"mean": float(np.mean(r)), "min": float(np.min(r))}
    per_unit = r.reshape(r.shape[0], -1).mean(axis=0)
    return {"mean": float(np.mean(r)), "min": float(np.min(per_unit))}

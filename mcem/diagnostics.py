"""Monte Carlo diagnostics as functions on plain arrays.

Draws are laid out ``(chain, draw, *shape)``; every function reduces the first two axes and
returns a float for ``(chain, draw)`` input, an array of shape ``shape`` otherwise. ESS, R-hat and
MCSE are thin wrappers on ``arviz_stats.base.array_stats``.

Ensembles
    The walkers of an affine-invariant ensemble (emcee) are not independent chains: every move of
    a walker uses the positions of the others, so the walkers are coupled and the per-chain
    formulas, which assume independent chains, can overstate the effective sample size and
    understate R-hat (coupled walkers agree with each other even while the ensemble as a whole
    still drifts). :func:`ensemble_ess` and :func:`ensemble_rhat` use only what is valid for an
    ensemble: the series of walker means ``f_bar_t = mean_w f(x_{w,t})``, one Markov chain whose
    autocorrelation includes every coupling between walkers.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_positive_int

__all__ = [
    "ess",
    "rhat",
    "mcse_mean",
    "batch_means_se",
    "batch_means_cov",
    "mcse_of_mean",
    "cov_of_mean",
    "acceptance_summary",
    "ensemble_ess",
    "ensemble_rhat",
]


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


def ensemble_ess(x):
    """Effective sample size of the mean over all walkers and draws of an ensemble sampler.

    ``x`` is laid out ``(walker, draw, *shape)``. The estimate of ``E[f]`` is the grand mean,
    whose variance is the long-run variance of the walker-mean series divided by the number of
    draws, whatever the coupling between walkers. The ESS is, by definition,

        ESS = Var(f) / MCSE(grand mean)^2,

    with ``Var(f)`` the variance over all walkers and draws and the MCSE of the walker-mean
    series as one chain (``arviz_stats`` ``mcse``, method ``"mean"``). With independent walkers
    this is ``walkers * draws / tau`` as usual; with coupled walkers it counts the coupling. NaN
    with fewer than 4 draws or a constant series.
    """
    x = _as_draws(x)
    if x.shape[1] < 4:
        return _out(np.full(x.shape[2:], np.nan))
    m = x.mean(axis=0)[None]  # (1, draw, ...)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.asarray(mcse_mean(m), dtype=float)
        var = x.reshape((-1,) + x.shape[2:]).var(axis=0, ddof=1)
        out = np.where(se > 0, var / se**2, np.nan)
    return _out(out)


def ensemble_rhat(x, method="rank"):
    """Split R-hat of an ensemble sampler: the walker-mean series as one chain.

    ``x`` is laid out ``(walker, draw, *shape)``. The series of walker means is cut into its two
    halves, taken as two chains, and passed to :func:`rhat` (which splits them again: four
    quarters are compared). It flags an ensemble whose mean still drifts, which coupled walkers
    hide from the per-walker R-hat. NaN with fewer than 8 draws.
    """
    x = _as_draws(x)
    n = x.shape[1]
    if n < 8:
        return _out(np.full(x.shape[2:], np.nan))
    half = n // 2
    m = x.mean(axis=0)[n - 2 * half :]  # drop the first draw when n is odd
    return rhat(m.reshape((2, half) + x.shape[2:]), method=method)


def _batch_means(x, n_batches, who):
    """Means of consecutive batches within each chain: ``(chain, n_batches, ...)`` and ``b``.

    Each chain is cut into ``n_batches`` batches of ``b = n_draw // n_batches`` draws (default
    ``n_batches = floor(sqrt(n_draw))``, at least 2); leading draws that do not fill a batch are
    dropped.
    """
    n_chain, n_draw = x.shape[:2]
    if n_batches is None:
        n_batches = max(int(np.sqrt(n_draw)), 2)
    n_batches = check_positive_int(n_batches, "n_batches", minimum=2)
    b = n_draw // n_batches
    if b < 1:
        raise ValueError(
            f"{who}: n_batches={n_batches} needs at least that many draws per chain, got {n_draw}"
        )
    used = x[:, n_draw - n_batches * b :]
    return used.reshape((n_chain, n_batches, b) + x.shape[2:]).mean(axis=2), b


def batch_means_se(x, n_batches=None):
    """Standard error of the mean of (chain, draw, ...) draws by non-overlapping batch means.

    Each chain is cut into ``n_batches`` consecutive batches of ``b = n_draw // n_batches``
    draws (default ``n_batches = floor(sqrt(n_draw))``; leading draws that do not fill a batch
    are dropped). The long-run variance ``b * var(batch means)`` is estimated within each chain
    and pooled over chains; the result is ``sqrt(sigma^2 / (chains * n_batches * b))``.
    """
    x = _as_draws(x)
    means, b = _batch_means(x, n_batches, "batch_means_se")
    n_chain, n_batches = means.shape[:2]
    var = b * np.var(means, axis=1, ddof=1)  # (chain, ...)
    sigma2 = var.mean(axis=0)
    return _out(np.sqrt(sigma2 / (n_chain * n_batches * b)))


def batch_means_cov(x, n_batches=None):
    """Covariance matrix of the mean of vector draws ``(chain, draw, p)`` by batch means.

    The batches are those of :func:`batch_means_se`; the long-run covariance
    ``b * cov(batch means)`` is estimated within each chain (centred on the chain's mean) and
    pooled over chains, and divided by ``chains * n_batches * b``. Its diagonal is the square
    of :func:`batch_means_se`. Returns a ``(p, p)`` array.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 3:
        raise ValueError(f"batch_means_cov: x must have shape (chain, draw, p), got shape {x.shape}")
    means, b = _batch_means(x, n_batches, "batch_means_cov")
    n_chain, n_batches = means.shape[:2]
    centred = means - means.mean(axis=1, keepdims=True)
    lr = b * np.einsum("cbi,cbj->ij", centred, centred) / (n_chain * (n_batches - 1))
    return lr / (n_chain * n_batches * b)


#: The shortest batch :func:`mcse_of_mean` and :func:`cov_of_mean` cut from a chain (while a
#: chain is shorter than two such batches, the whole chain is one batch).
_MIN_BATCH = 32


def _batches(s):
    """Batch means of (chain, draw, p) values for the long-run covariance, and the batch length.

    Each chain is cut into ``k = min(n // 32, sqrt(n))`` batches (at least one: a short chain is
    a single batch, and its mean is then exact evidence of the spread between independent chains,
    whatever the autocorrelation within them). With fewer than 4 batches in all, the chains are cut
    into shorter batches so that there are 4. Leading draws that do not fill a batch are dropped.
    """
    n_chain, n_draw, p = s.shape
    k = max(1, min(n_draw // _MIN_BATCH, int(np.sqrt(n_draw))))
    if n_chain * k < 4:
        k = min(n_draw, -(-4 // n_chain))
    b = n_draw // k
    means = s[:, n_draw - k * b :].reshape(n_chain, k, b, p).mean(axis=2).reshape(n_chain * k, p)
    return means, b


def cov_of_mean(s):
    """Covariance of the mean of (chain, draw, p) MCMC values, valid at every chain length.

    The long-run covariance is ``b`` times the covariance of batch means of length ``b`` pooled
    over all chains around the grand mean (the batches of :func:`_batches`: whole chains while
    they are short, so that a few draws per chain are not taken as independent), divided by the
    number of values. Each variance is kept at least as large as that of independent draws (a
    smaller one is the noise of few batches, not evidence of antithetic draws), with the
    correlations of the batch estimate kept.
    """
    s = np.asarray(s, dtype=float)
    if s.ndim != 3:
        raise ValueError(f"cov_of_mean: s must have shape (chain, draw, p), got shape {s.shape}")
    n_chain, n_draw, p = s.shape
    n = n_chain * n_draw
    iid = np.cov(s.reshape(-1, p), rowvar=False).reshape(p, p) if n >= 2 else np.full((p, p), np.inf)
    if n < 2:
        return iid
    means, b = _batches(s)
    lr = b * np.cov(means, rowvar=False).reshape(p, p) if means.shape[0] >= 2 else iid
    d_lr, d_iid = np.diag(lr), np.diag(iid)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(d_lr > 0, np.sqrt(np.maximum(d_iid, d_lr) / d_lr), 0.0)
    out = lr * f[:, None] * f[None, :]
    # a coordinate with no spread between batches: fall back to the independent-draws variance
    flat = d_lr <= 0
    if np.any(flat):
        out[flat, :] = 0.0
        out[:, flat] = 0.0
        out[flat, flat] = d_iid[flat]
    return out / n


def mcse_of_mean(d) -> float:
    """Monte Carlo standard error of the mean of a (chain, draw) array of per-draw values.

    The scalar case of :func:`cov_of_mean`: valid for autocorrelated MCMC draws at every chain
    length (short chains count as one batch each, long ones are cut into batches of at least 32
    draws), never below the independent-draws value ``sd / sqrt(n)``, which it is for other
    shapes. ``inf`` for fewer than 2 values. Unlike :func:`mcse_mean` (from the effective sample
    size), it needs no minimum chain length, which suits the short E steps of the first EM
    iterations.
    """
    d = np.asarray(d, dtype=float)
    if d.size < 2:
        return np.inf
    if d.ndim != 2:
        return float(np.std(d, ddof=1) / np.sqrt(d.size))
    return float(np.sqrt(cov_of_mean(d[..., None])[0, 0]))


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

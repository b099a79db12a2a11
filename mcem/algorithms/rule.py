"""The stopping rule the Monte Carlo methods share, and the draws behind the final standard errors.

``tol`` means one thing for MCEM, SAEM and Monte Carlo GEM: the largest Monte Carlo error of the
estimate that is accepted, as a fraction of the estimate's standard error, on the natural scale
of every parameter (default 0.1). A run stops when further iterations cannot move the estimate
by more than that: the ascent of the last iterations is not significant and the Monte Carlo error
(:func:`mcem.inference.precision`) is below ``tol`` standard errors. The sample size grows to what
that target needs (:func:`target_size`), not to ``m_max``. Exact EM keeps a log-likelihood rule
(:mod:`mcem.algorithms.em`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.stats import norm

from ..exceptions import MonteCarloWarning
from ..inference import standard_errors
from .stream import concat_draws

__all__ = ["DEFAULT_TOL", "SE_TARGET", "Z_BOUND", "target_size", "distance_lower_bound", "final_draws"]

#: The default ``tol`` of the Monte Carlo methods: Monte Carlo error below 0.1 standard errors.
DEFAULT_TOL = 0.1
#: The Monte Carlo error of the final standard errors that :func:`final_draws` aims at (relative).
SE_TARGET = 0.03
#: Margin on the sample size asked for by the precision target (its estimate is noisy).
SAFETY = 1.25
#: The one-sided normal quantile of the distance test's lower confidence bound (75%).
Z_BOUND = float(norm.ppf(0.75))


def distance_lower_bound(prec, z=Z_BOUND):
    """The largest, over parameters, lower confidence bound ``|delta_i| - z sd_i`` of the
    distance to the MLE (in standard errors; ``inf`` when the information was not positive
    definite): the rule asks it to be at most ``tol / 2``."""
    if not prec.positive_definite or prec.delta is None:
        return np.inf
    return float(np.max(np.abs(prec.delta) - z * prec.delta_sd, initial=0.0))


def target_size(n, ratio, tol):
    """Draws (in all) at which a Monte Carlo error of ``ratio`` standard errors at ``n`` draws
    falls to ``tol`` (the error falls as 1/sqrt(draws)), with a margin; ``None`` when unknown."""
    if not np.isfinite(ratio) or tol <= 0:
        return None
    return max(n, math.ceil(n * (ratio / tol) ** 2 * SAFETY))


def _se_ratio(inf):
    se = np.concatenate([np.ravel(v) for v in inf.se.values()]) if inf.se else np.zeros(0)
    mc = np.concatenate([np.ravel(v) for v in inf.se_mcse.values()]) if inf.se_mcse else np.zeros(0)
    ok = np.isfinite(se) & (se > 0) & np.isfinite(mc)
    return float(np.max(mc[ok] / se[ok])) if np.any(ok) else np.nan


def final_draws(es, model, theta, chains, rng, per_chain, max_total, burn=None):
    """Draws at the final estimate for Louis' standard errors, as many as make their own Monte
    Carlo error (jackknife over batches) at most ``SE_TARGET`` of them, within ``max_total``.

    Returns ``(draws, inference, ratio)``; ``inference`` is None where the model has an exact
    log-likelihood (its standard errors need no draws) and ``ratio`` the relative Monte Carlo
    error of the standard errors reached (NaN when unknown).
    """
    res = es.run(theta, chains, per_chain, rng, burn=burn)
    draws = res.draws
    if model.loglik_fn is not None:
        return draws, None, 0.0
    n_chains = es.n_chains
    total = per_chain * n_chains
    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            inf = standard_errors(model, theta, draws)
        ratio = _se_ratio(inf)
        if not (np.isfinite(ratio) and ratio > SE_TARGET) or total >= max_total:
            break
        want = min(max_total, math.ceil(total * (ratio / SE_TARGET) ** 2 * SAFETY))
        extra = max(1, math.ceil((want - total) / n_chains))
        more = es.run(theta, res.state, extra, rng, burn=0)
        res = more
        draws = concat_draws(draws, more.draws)
        total += extra * n_chains
    for w in caught:  # the last computation's warnings (say which parameter and why) reach the user
        warnings.warn(w.message, stacklevel=3)
    if np.isfinite(ratio) and ratio > SE_TARGET:
        warnings.warn(MonteCarloWarning(
            f"the standard errors carry a Monte Carlo error of {ratio:.1%} of their size after {total} final "
            f"draws (the budget); more draws at the estimate would reduce it", key="se_mc_error",
            value=ratio, worse="high"), stacklevel=3)
    return draws, inf, ratio

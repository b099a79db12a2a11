"""The Monte Carlo E step: draw z from p(z | x; theta_t) for any declared model.

:class:`EStep` resolves a kernel for the model once (``sampler="auto"`` or explicit, see
:func:`mcem.kernels.build_kernel`), then each call of :meth:`EStep.run` rebuilds the log
densities for the new theta, re-evaluates every cached log density (never a stale value), burns
in (adapting proposal scales) and keeps draws laid out ``(chain, draw, *latent_shape)``::

    estep = EStep(model, n_chains=4, burn=200, warm_burn=20)
    state = estep.init(theta0, rng)
    res = estep.run(theta0, state, n_draws=100, rng=rng)       # burns `burn` steps first
    res.draws["u"].shape                                        # (4, 100, n_groups)
    res = estep.run(theta1, res.state, n_draws=100, rng=rng)   # warm start: burns `warm_burn`
    more = estep.run(theta1, res.state, n_draws=50, rng=rng, burn=0)   # the same chains, continued

For memory with very many units, ``run(..., keep=False, reducer=fn)`` calls ``fn(z)`` with the
dict of ``(chains, ...)`` arrays at every kept draw and stores nothing.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import diagnostics as D
from ._validation import as_generator, check_bool, check_fraction, check_positive_float, check_positive_int
from .exceptions import MonteCarloWarning
from .kernels.compose import Compose
from .kernels.select import build_kernel, site_mode
from .target import ModelTarget
from .core import Model

__all__ = ["EStep", "EStepState", "EStepResult", "ModelTarget"]

#: ``high_rhat`` needs ``R-hat^2 - 1`` above this many times the ``2 c / ESS`` that agreeing
#: chains give (its sampling spread is about that of a chi-square with 2c - 1 degrees of freedom
#: over its degrees of freedom: 3 times the mean is rare for 8 half-chains, about 0.4%).
RHAT_NOISE = 3.0


class EStepState(NamedTuple):
    """Where the chains are: the model-level kernel's state and how many runs it has seen."""

    kernel_state: Any
    n_runs: int = 0

    @property
    def z(self) -> dict:
        """Current latents, dict name -> array of shape ``(chains, *latent_shape)``."""
        return dict(self.kernel_state.z)


class EStepResult(NamedTuple):
    """One E step: kept draws, the state to continue from, diagnostics, the log-joint trace."""

    draws: dict  # name -> (chain, draw, *latent_shape); empty when keep=False
    state: EStepState
    diagnostics: dict
    loglik_trace: np.ndarray  # (chain, draw): complete-data log joint of each kept draw


def _refuse(unexpected):
    """The TypeError for keywords EStep does not take, pointing to the sharded E step for those."""
    sharded = sorted(set(unexpected) & {"shards", "executor"})
    if sharded:
        raise TypeError(
            f"EStep takes no {' or '.join(sharded)}: build a sharded E step with "
            "mcem.ShardedEStep(model, sampler, shards=k, executor=ex, ...) or "
            "mcem.estep_factory.make_estep(model, sampler, shards=k, executor=ex, ...), which "
            "returns an EStep without shards and a ShardedEStep with them"
        )
    raise TypeError(f"EStep got unexpected keyword argument(s) {sorted(unexpected)}")


class _Acceptance:
    """Running sums of per-step acceptance indicators, per site."""

    def __init__(self):
        self.sums = {}
        self.counts = {}

    def add(self, infos):
        for n, info in infos.items():
            acc = getattr(info, "accepted", None)
            if acc is None:
                continue
            self.add_rate(n, acc, 1)

    def add_rate(self, n, rate, steps):
        r = np.asarray(rate, dtype=float) * steps
        if n in self.sums:
            self.sums[n] = self.sums[n] + r
            self.counts[n] += steps
        else:
            self.sums[n] = r
            self.counts[n] = steps

    def rates(self, n):
        if n not in self.sums or self.counts[n] == 0:
            return None
        return self.sums[n] / self.counts[n]


class EStep:
    """Monte Carlo E step: MCMC draws of the latents at theta_t, warm-started between calls.

    Parameters
    ----------
    model : Model
    sampler : str, kernel, Compose or dict
        ``"auto"`` (default) picks a kernel from each latent's support and unit structure;
        ``"exact"``, ``"gibbs"``, ``"rwm"``, ``"mala"``, ``"emcee"``, a kernel instance, or a
        dict site -> kernel name / instance. See :func:`mcem.kernels.build_kernel`.
    n_chains : int
        Independent chains; with the emcee kernel, the walkers of one ensemble (coupled, not
        independent: see Notes).
    burn : int
        Burn-in steps of the first :meth:`run` (proposal scales adapt during burn-in only).
    warm_burn : int
        Burn-in steps of later runs, warm-started from the last state.
    thin : int
        Keep every ``thin``-th step.
    sampler_options : dict, optional
        Options for kernels built from a name (see :func:`mcem.kernels.build_kernel`).
    warn : bool
        Issue a :class:`~mcem.MonteCarloWarning` when acceptance collapses or R-hat is large.
    min_acceptance, max_rhat : float
        Thresholds of the ``low_acceptance`` (Metropolis sites, mean rate) and ``high_rhat``
        (R-hat of the log-joint trace) flags.
    rhat_min_draws : int
        ``high_rhat`` is only raised with at least this many kept draws per chain (R-hat of a
        handful of draws is mostly noise); ``rhat_loglik`` is reported regardless. Nor is it
        raised, for independent chains, where R-hat is what chains that agree give at the trace's
        effective sample size: converged chains have ``R-hat^2 - 1`` of about ``2 c / ESS``
        for ``c`` chains split in halves (Vats and Knudson 2021), so that 4 chains with a bulk ESS
        of 40 show R-hat near 1.1; the flag needs more than :data:`RHAT_NOISE` times that.

    Notes
    -----
    A sharded E step (blocks of units sampled separately, possibly in parallel) is a
    :class:`mcem.ShardedEStep`; :func:`mcem.estep_factory.make_estep` builds either from the same
    keywords plus ``shards=`` and ``executor=``.

    Each run reports ``ess_loglik`` and ``rhat_loglik``, the effective sample size and R-hat of
    the complete-data log-likelihood trace ``(chains, draws)``. For independent chains they are
    the bulk ESS and the rank-normalised split R-hat over the chains. The walkers of the emcee
    ensemble are not independent (each move of a walker uses the others' positions), so for it
    (``EStep.is_ensemble``) both are computed on the one series that is a valid Markov chain,
    the mean over walkers at each draw: the ESS of the grand mean, ``Var(f) / MCSE^2`` with the
    MCSE from that series, and the split R-hat of that series
    (:func:`mcem.diagnostics.ensemble_ess`, :func:`mcem.diagnostics.ensemble_rhat`).
    ``diagnostics_basis`` says which (``"chains"`` or ``"walker mean"``).
    """

    def __init__(
        self,
        model,
        sampler="auto",
        *,
        n_chains=4,
        burn=200,
        warm_burn=20,
        thin=1,
        sampler_options=None,
        warn=True,
        min_acceptance=0.05,
        max_rhat=1.05,
        rhat_min_draws=20,
        **unexpected,
    ):
        if unexpected:
            _refuse(unexpected)
        if not isinstance(model, Model):
            raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
        self.model = model
        self.n_chains = check_positive_int(n_chains, "n_chains")
        self.burn = check_positive_int(burn, "burn", minimum=0)
        self.warm_burn = check_positive_int(warm_burn, "warm_burn", minimum=0)
        self.thin = check_positive_int(thin, "thin")
        self.warn = check_bool(warn, "warn")
        self.min_acceptance = check_fraction(min_acceptance, "min_acceptance")
        self.max_rhat = check_positive_float(max_rhat, "max_rhat")
        self.rhat_min_draws = check_positive_int(rhat_min_draws, "rhat_min_draws", minimum=4)
        self.settings = dict(n_chains=self.n_chains, burn=self.burn, warm_burn=self.warm_burn,
                             thin=self.thin, sampler=sampler if isinstance(sampler, str) else repr(sampler),
                             max_rhat=self.max_rhat, min_acceptance=self.min_acceptance)
        self.modes = {n: site_mode(model, n) for n in model.latent_names}
        self.kernel = build_kernel(model, sampler, n_chains=self.n_chains, options=sampler_options)
        k = self.kernel
        self._block = (
            isinstance(k, Compose)
            and len(k.order) == 1
            and callable(getattr(k.kernels[k.order[0]], "sample", None))
        )

    def __repr__(self):
        return (
            f"EStep({self.model.name!r}, sampler={self.kernel!r}, n_chains={self.n_chains}, "
            f"burn={self.burn}, warm_burn={self.warm_burn}, thin={self.thin})"
        )

    def target(self, theta) -> ModelTarget:
        """The model's log densities at ``theta`` (checked), as the kernels use them."""
        return ModelTarget(self.model, self.model.check_theta(theta, "theta"), self.modes)

    # ------------------------------------------------------------------ public interface
    def init(self, theta, rng) -> EStepState:
        """Initial chain states: ``model.init_latents`` with batch ``(n_chains,)`` at ``theta``."""
        target = self.target(theta)
        rng = as_generator(rng)
        r_init, r_kernel = rng.spawn(2)
        z0 = self.model.init_latents(r_init, (self.n_chains,))
        return EStepState(self.kernel.init(z0, target, r_kernel), 0)

    def run(
        self,
        theta,
        state: EStepState,
        n_draws: int,
        rng,
        *,
        burn: int | None = None,
        keep: bool = True,
        reducer: Callable | None = None,
    ) -> EStepResult:
        """Advance the chains at ``theta`` and keep ``n_draws`` draws per chain.

        Parameters
        ----------
        theta : dict
            Parameters of this E step; every cached log density is re-evaluated at it.
        state : EStepState
            From :meth:`init` or a previous run (warm start).
        n_draws : int
            Draws kept per chain (after thinning).
        rng : None, int or Generator
        burn : int, optional
            Burn-in steps (adaptation on); default ``self.burn`` on the first run of the chains,
            ``self.warm_burn`` afterwards. ``burn=0`` continues the same chains.
        keep : bool
            Store the draws. With False, ``draws`` is empty (use ``reducer``).
        reducer : callable, optional
            ``reducer(z)`` is called at every kept draw with the dict of ``(chains, ...)``
            latent arrays (read-only use; they are the sampler's state).

        Returns
        -------
        EStepResult
        """
        if not isinstance(state, EStepState):
            raise TypeError(
                f"state must be an EStepState (from EStep.init or run), got {type(state).__name__}"
            )
        n_draws, burn = self._run_args(state, n_draws, burn, reducer)
        target = self.target(theta)
        rng = as_generator(rng)
        (r,) = rng.spawn(1)
        t0 = time.perf_counter()
        kernel = self.kernel
        ks = kernel.refresh(state.kernel_state, target)
        acc_burn, acc_keep = _Acceptance(), _Acceptance()
        thin = self.thin
        if self._block:
            ks, draws, trace = self._run_block(
                ks, target, r, burn, n_draws, keep, reducer, acc_burn, acc_keep
            )
        else:
            for _ in range(burn):
                ks, info = kernel.step(ks, target, r, adapt=True)
                acc_burn.add(info)
            z = ks.z
            chains = self.n_chains
            draws = {}
            if keep:
                for n, v in z.items():
                    v = np.asarray(v)
                    draws[n] = np.empty((chains, n_draws) + v.shape[1:], dtype=v.dtype)
            trace = np.empty((chains, n_draws))
            for i in range(n_draws):
                for _ in range(thin):
                    ks, info = kernel.step(ks, target, r, adapt=False)
                    acc_keep.add(info)
                z = ks.z
                if keep:
                    for n, v in z.items():
                        draws[n][:, i] = v
                if reducer is not None:
                    reducer(z)
                trace[:, i] = kernel.log_joint(ks, target)
        diag = self._diagnostics(trace, acc_burn, acc_keep, burn, n_draws)
        diag["seconds"] = time.perf_counter() - t0
        self._maybe_warn(diag)
        return EStepResult(draws, EStepState(ks, state.n_runs + 1), diag, trace)

    # ------------------------------------------------------------------ internals
    def _run_args(self, state, n_draws, burn, reducer):
        """Checked ``n_draws`` and ``burn`` (default: ``burn`` on the first run, ``warm_burn`` after)."""
        n_draws = check_positive_int(n_draws, "n_draws", minimum=0)
        if burn is None:
            burn = self.burn if state.n_runs == 0 else self.warm_burn
        burn = check_positive_int(burn, "burn", minimum=0)
        if reducer is not None and not callable(reducer):
            raise TypeError(f"reducer must be callable or None, got {type(reducer).__name__}")
        return n_draws, burn

    def _run_block(self, ks, target, r, burn, n_draws, keep, reducer, acc_burn, acc_keep):
        kernel = self.kernel
        site = kernel.order[0]
        if burn > 0:
            ks, _, _, acc = kernel.sample_block(ks, target, r, burn, 1)
            acc_burn.add_rate(site, acc[site], burn)
        ks, draws, trace, acc = kernel.sample_block(ks, target, r, n_draws, self.thin)
        if n_draws > 0:
            acc_keep.add_rate(site, acc[site], n_draws * self.thin)
        if reducer is not None:
            for i in range(n_draws):
                reducer({n: v[:, i] for n, v in draws.items()})
        return ks, (draws if keep else {}), np.asarray(trace, dtype=float)

    @property
    def is_ensemble(self) -> bool:
        """True when the chains are the walkers of one ensemble sampler (emcee), not independent.

        Then ``ess_loglik`` and ``rhat_loglik`` are computed on the series of walker means
        (:func:`mcem.diagnostics.ensemble_ess`, :func:`mcem.diagnostics.ensemble_rhat`).
        """
        k = getattr(self, "kernel", None)
        kernels = getattr(k, "kernels", None) or {}
        return len(kernels) == 1 and bool(getattr(next(iter(kernels.values())), "ensemble", False))

    def _diagnostics(self, trace, acc_burn, acc_keep, burn, n_draws):
        metro = getattr(self.kernel, "metropolis_sites", {})
        acceptance = {}
        low = False
        for n in self.model.latent_names:
            if metro.get(n, False):
                rates = acc_keep.rates(n)
                if rates is None:
                    rates = acc_burn.rates(n)
                s = D.acceptance_summary(rates if rates is not None else [])
                s["metropolis"] = True
                burn_rates = acc_burn.rates(n)
                s["burn_mean"] = float(np.mean(burn_rates)) if burn_rates is not None else float("nan")
                low = low or (np.isfinite(s["mean"]) and s["mean"] < self.min_acceptance)
            else:
                s = {"mean": 1.0, "min": 1.0, "metropolis": False, "burn_mean": 1.0}
            acceptance[n] = s
        metro_sites = [s for s in acceptance.values() if s["metropolis"]]
        acc_mean = float(np.mean([s["mean"] for s in metro_sites])) if metro_sites else 1.0
        acc_min = float(np.min([s["min"] for s in metro_sites])) if metro_sites else 1.0
        ess = rhat = float("nan")
        ensemble = self.is_ensemble
        if n_draws >= 4 and np.all(np.isfinite(trace)):
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                if ensemble:  # coupled walkers: the walker-mean series is the one valid chain
                    ess = D.ensemble_ess(trace)
                    rhat = D.ensemble_rhat(trace)
                else:
                    ess = D.ess(trace, method="bulk")
                    rhat = D.rhat(trace)
        return {
            "acceptance": acceptance,
            "acceptance_mean": acc_mean,
            "acceptance_min": acc_min,
            "ess_loglik": ess,
            "rhat_loglik": rhat,
            "diagnostics_basis": "walker mean" if ensemble else "chains",
            "n_kept": n_draws,
            "n_burned": burn,
            "n_chains": self.n_chains,
            "thin": self.thin,
            "low_acceptance": bool(low),
            "high_rhat": bool(
                np.isfinite(rhat) and rhat > self.max_rhat and n_draws >= self.rhat_min_draws
                and (ensemble or not (ess > 0 and rhat**2 - 1.0 <= RHAT_NOISE * 2 * self.n_chains / ess))
            ),
            "sampler": repr(self.kernel),
        }

    def _maybe_warn(self, diag):
        """Keyed warnings (``low_acceptance``, ``high_rhat``) that a fit can gather over iterations."""
        if not self.warn:
            return
        if diag["low_acceptance"]:
            bad = {
                n: round(s["mean"], 4)
                for n, s in diag["acceptance"].items()
                if s["metropolis"] and s["mean"] < self.min_acceptance
            }
            lowest = float(min(bad.values())) if bad else float(diag["acceptance_mean"])
            warnings.warn(
                MonteCarloWarning(
                    f"E step: the Metropolis acceptance rate collapsed below {self.min_acceptance} "
                    f"(site: mean rate {bad}); the chains barely move. Lengthen burn-in so proposal "
                    "scales can adapt, or set a smaller proposal scale",
                    key="low_acceptance",
                    value=lowest,
                    worse="low",
                ),
                stacklevel=3,
            )
        if diag["high_rhat"]:
            if diag.get("diagnostics_basis") == "walker mean":
                basis = ("R-hat of the walker-mean series of the complete-data log-likelihood "
                         "(split in halves)")
                what = "the ensemble still drifts"
            else:
                basis, what = "R-hat of the complete-data log-likelihood trace", "the chains disagree"
            if diag.get("diagnostics_basis") != "walker mean" and diag["ess_loglik"] > 0:
                agree = np.sqrt(1.0 + 2 * diag["n_chains"] / diag["ess_loglik"])
                what += f" (chains that agree give about {agree:.3f} at its ESS of {diag['ess_loglik']:.0f})"
            warnings.warn(
                MonteCarloWarning(
                    f"E step: {basis} is {diag['rhat_loglik']:.3f} > {self.max_rhat} over "
                    f"{diag['n_kept']} draws of {diag['n_chains']} chains; {what}. Increase burn "
                    "or warm_burn, or the number of draws",
                    key="high_rhat",
                    value=float(diag["rhat_loglik"]),
                    worse="high",
                ),
                stacklevel=3,
            )

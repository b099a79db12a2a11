"""The fitting driver: :func:`fit` dispatches to an algorithm and packages a :class:`FitResult`."""

from __future__ import annotations

import inspect
import sys
import time
import warnings

import numpy as np

from ._validation import as_generator, check_choice, check_positive_float, check_positive_int
from ._warnlog import WarningLog, active_log
from .exceptions import ConvergenceWarning
from .inference import degeneracy
from .model import Model
from .result import FitResult, History

__all__ = ["fit", "METHODS"]


class _Loop:
    """Bookkeeping shared by the algorithms: history, timing, callback, progress bar."""

    def __init__(self, model, method, max_iter, callback, progress, settings):
        self.model = model
        self.method = method
        self.max_iter = max_iter
        self.callback = callback
        self.history = History()
        self.settings = settings
        self.t_start = time.perf_counter()
        self._t_last = self.t_start
        self.bar = None
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=max_iter, desc=f"mcem[{method}]", leave=False)

    def record(self, it, theta, **values) -> bool:
        """Append a history row; return True when the callback asks to stop."""
        now = time.perf_counter()
        row = {"iter": it, "params": {k: np.array(v) for k, v in theta.items()}}
        row.update(values)
        log = active_log()
        if log is not None:
            met = log.set_iteration(it)
            if met:
                row["warnings"] = ", ".join(met)
        row["seconds"] = now - self._t_last
        self._t_last = now
        self.history.append(row)
        if self.bar is not None and it > 0:
            post = {k: values[k] for k in ("loglik", "m", "delta_q") if k in values}
            self.bar.set_postfix({k: f"{v:.6g}" for k, v in post.items()}, refresh=False)
            self.bar.update(1)
        if self.callback is not None and it > 0:
            return bool(self.callback(dict(row)))
        return False

    def finish(self, theta, *, converged, stopped_by, message, loglik=None, **extra):
        if self.bar is not None:
            self.bar.close()
        if stopped_by == "max_iter":
            warnings.warn(
                f"{self.method}: stopped at max_iter={self.max_iter} without converging; "
                "increase max_iter or loosen tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        problems = degeneracy(self.model, theta)
        if problems:  # a boundary estimate: standard errors do not apply there
            note = ("degenerate fit: " + "; ".join(problems[:3])
                    + (f"; and {len(problems) - 3} more" if len(problems) > 3 else ""))
            warnings.warn(ConvergenceWarning(f"{self.method}: {note}", key="degenerate_fit", value=len(problems)),
                          stacklevel=3)
            converged, message = False, f"{message}; not converged to an interior maximum: {note}"
        res = FitResult(
            params={k: np.array(v) for k, v in theta.items()},
            converged=bool(converged),
            n_iter=len(self.history) - 1,
            message=message,
            stopped_by=stopped_by,
            method=self.method,
            loglik=loglik,
            history=self.history,
            seconds=time.perf_counter() - self.t_start,
            settings=dict(self.settings),
            model_name=self.model.name,
        )
        res.update(extra)
        res["degenerate"] = problems
        object.__setattr__(res, "_model", self.model)  # for standard errors; not part of the data
        return res


def _split_estep(out):
    """An exact E step returns ``stats`` or ``(stats, loglik)``."""
    if isinstance(out, tuple) and len(out) == 2:
        return out[0], float(out[1])
    return out, None


def _run_em(model, theta, *, rng, max_iter, tol, callback, progress, checkpoint=None, _resume=None):
    """Exact EM with the model's closed-form E and M steps."""
    if not model.has_exact_em:
        missing = [n for n, f in [("exact_estep", model.exact_estep_fn), ("mstep", model.mstep_fn)] if f is None]
        raise ValueError(
            f"method='em' needs a model with an exact E step and a closed-form M step; "
            f"model {model.name!r} lacks {missing}. Use method='mcem' or 'saem' instead."
        )
    max_iter = 500 if max_iter is None else max_iter
    tol = 1e-8 if tol is None else tol
    loop = _Loop(model, "em", max_iter, callback, progress, {"max_iter": max_iter, "tol": tol})
    data = model.data

    def estep(th):
        stats, ll = _split_estep(model.exact_estep_fn(th, data))
        if ll is None and model.loglik_fn is not None:
            ll = model.exact_loglik(th)
        return stats, ll

    from .algorithms import _checkpointer, _restore

    ckpt = _checkpointer(checkpoint, model, "em", {"max_iter": max_iter, "tol": tol})
    start, decreases = 1, 0
    if _resume is None:
        stats, ll = estep(theta)
        loop.record(0, theta, loglik=np.nan if ll is None else ll)
    else:  # the E step is deterministic: recompute it at the checkpoint's parameters
        st = _restore(loop, _resume)
        theta, start, decreases = st["theta"], st["t"] + 1, st["decreases"]
        stats, ll = estep(theta)
    u_prev = model.to_unconstrained(theta)
    stopped_by, message, converged = "max_iter", f"reached max_iter={max_iter}", False
    for it in range(start, max_iter + 1):
        new = model.mstep_fn(stats, data)
        try:
            new = model.check_theta(new, "M step result")
        except ValueError as exc:
            stopped_by, message = "invalid_update", f"the M step left the parameter space: {exc}"
            warnings.warn(message + "; keeping the last valid parameters", ConvergenceWarning, stacklevel=3)
            break
        new_stats, new_ll = estep(new)
        change = None if (ll is None or new_ll is None) else new_ll - ll
        decreased = change is not None and change < -1e-10 * max(1.0, abs(ll))
        decreases += decreased
        theta, stats = new, new_stats
        stop = loop.record(it, theta, loglik=np.nan if new_ll is None else new_ll, decreased=decreased)
        if change is not None:
            ok = (not decreased) and abs(change) <= tol * max(1.0, abs(new_ll))
        else:
            u = model.to_unconstrained(theta)
            ok = np.max(np.abs(u - u_prev), initial=0.0) <= tol * (1.0 + np.max(np.abs(u), initial=0.0))
            u_prev = u
        ll = new_ll
        if ok:
            stopped_by, converged = "tol", True
            message = (
                f"converged: log-likelihood change {change:.3g} within tol={tol:g} (relative)"
                if change is not None
                else f"converged: parameter change within tol={tol:g}"
            )
            break
        if stop:
            stopped_by, message = "callback", "stopped by the callback"
            break
        if ckpt is not None:
            ckpt.save({"t": it, "theta": theta, "decreases": int(decreases)}, loop.history)
    if decreases:
        note = (
            f"the log-likelihood decreased in {decreases} iteration(s); exact EM never decreases "
            "it, so the model's E or M step is likely wrong"
        )
        warnings.warn("em: " + note, ConvergenceWarning, stacklevel=3)
        converged, message = False, f"{message}; not converged: {note}"
        stopped_by = "likelihood_decrease" if stopped_by == "tol" else stopped_by
    return loop.finish(theta, converged=converged, stopped_by=stopped_by, message=message, loglik=ll)


_COMMON = ("model", "theta", "rng", "max_iter", "tol", "callback", "progress", "_resume")


class _Lazy:
    """An algorithm imported on first use (keeps ``import mcem`` light)."""

    def __init__(self, name):
        self.name = name

    @property
    def target(self):
        from . import algorithms

        return getattr(algorithms, self.name)

    def __call__(self, *args, **kwargs):
        return self.target(*args, **kwargs)


#: Fitting algorithms by name.
METHODS = {"em": _run_em, "mcem": _Lazy("run_mcem"), "saem": _Lazy("run_saem"), "gem": _Lazy("run_gem")}


def fit(
    model,
    theta0=None,
    *,
    method="em",
    max_iter=None,
    tol=None,
    rng=None,
    callback=None,
    progress=None,
    **options,
):
    """Fit a latent-variable model by maximum likelihood.

    Parameters
    ----------
    model : Model
        The model (low-level :class:`mcem.Model` or one compiled by :func:`mcem.model`).
    theta0 : dict, optional
        Starting parameters (constrained scale); default: the model's initial values.
    method : {"em", "mcem", "saem", "gem"}
        ``"em"``: exact EM with the model's closed-form E and M steps.
        ``"mcem"``: Monte Carlo EM; the E step draws the latents by MCMC (``sampler``), the
        sample size follows the ascent-based rule of Caffo, Jank & Jones (2005) by default, and
        the run stops when the upper confidence bound of delta-Q stays below ``tol``
        (options: :func:`mcem.algorithms.run_mcem`).
        ``"saem"``: stochastic approximation EM (:func:`mcem.algorithms.run_saem`).
        ``"gem"``: generalized EM with gradient-ascent M steps (:func:`mcem.algorithms.run_gem`).
    max_iter : int, optional
        Iteration cap (a ``ConvergenceWarning`` is issued when it stops the run).
    tol : float, optional
        Convergence tolerance; for EM the relative change of the log-likelihood.
    rng : None, int or numpy.random.Generator
        The only source of randomness.
    callback : callable, optional
        Called with each iteration's history row (a dict); returning True stops the run.
    progress : bool, optional
        Show a progress bar; default: only when stderr is a terminal.
    checkpoint : str or path, optional
        Write the full state of the run (parameters, history, chain states, adaptation, random
        generators, schedule) to this file after every iteration, atomically and without
        pickle; :func:`mcem.resume` continues from it with the same result as an uninterrupted
        run. Ctrl-C during a fit returns the partial result with ``stopped_by="interrupted"``.
    **options
        Options of the chosen method (for example ``sampler``, ``n_chains``, ``m_max``,
        ``schedule`` for MCEM); an unknown option raises ``TypeError`` listing the known ones.

    Returns
    -------
    FitResult
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
    check_choice(method, "method", set(METHODS))
    if max_iter is not None:
        max_iter = check_positive_int(max_iter, "max_iter")
    if tol is not None:
        tol = check_positive_float(tol, "tol", allow_zero=True)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    runner = METHODS[method]
    target = getattr(runner, "target", runner)
    params = inspect.signature(target).parameters
    known = [n for n, p in params.items() if n not in _COMMON and p.kind != p.VAR_KEYWORD]
    if "estep_options" in params:  # the Monte Carlo methods pass these on to mcem.EStep
        from .estep import EStep

        known += [n for n in inspect.signature(EStep.__init__).parameters if n not in ("self", "model", "sampler")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"fit: method={method!r} got unknown option(s) {unknown}; its options are {known}")
    rng = as_generator(rng)
    theta = model.validate(model.default_theta() if theta0 is None else theta0, rng=rng.spawn(1)[0])
    return run_method(
        runner, model, theta, rng=rng, max_iter=max_iter, tol=tol, callback=callback, progress=progress, **options
    )


def run_method(runner, model, theta, **kwargs):
    """Run an algorithm with its warnings gathered: one warning per problem, the full record in
    the result's ``warnings_record`` (see :mod:`mcem._warnlog`)."""
    with WarningLog() as log:
        res = runner(model, theta, **kwargs)
    res["warnings_record"] = log.records
    return res

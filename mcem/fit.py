"""The fitting driver: :func:`fit` checks its arguments and dispatches to a method of
:mod:`mcem.algorithms`, which returns a :class:`FitResult`."""

from __future__ import annotations

from ._validation import as_generator, check_choice, check_positive_float, check_positive_int
from .algorithms import METHODS
from .core import Model

__all__ = ["fit", "METHODS"]


def fit(
    model,
    theta0=None,
    *,
    method="auto",
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
    method : {"auto", "em", "mcem", "saem", "gem", "vbem"}
        ``"auto"`` (default): exact EM where the model has it (an exact E step and a closed-form
        M step) and no Monte Carlo option is given, otherwise MCEM with the sampler chosen
        automatically.
        ``"em"``: exact EM with the model's closed-form E and M steps.
        ``"mcem"``: Monte Carlo EM; the E step draws the latents by MCMC (``sampler``), the
        sample size grows to what the stopping rule needs (options:
        :mod:`mcem.algorithms.mcem`).
        ``"saem"``: stochastic approximation EM, judged on its Polyak-Ruppert average
        (:mod:`mcem.algorithms.saem`).
        ``"gem"``: generalized EM with gradient-ascent M steps (:mod:`mcem.algorithms.gem`).
        ``"vbem"``: variational-Bayes EM: q restricted to a Gaussian per unit (``family=
        "meanfield"`` or ``"fullrank"``) raised together with theta on the evidence lower bound;
        the result carries ``elbo``, ``kl`` and ``phi`` (:mod:`mcem.algorithms.vbem`). Its
        estimate maximises the bound, not the likelihood.
    max_iter : int, optional
        Iteration cap (a ``ConvergenceWarning`` is issued when it stops the run).
    tol : float, optional
        When the run has converged, a non-negative number (0 runs to ``max_iter``). For the
        Monte Carlo methods (MCEM, SAEM, Monte Carlo GEM, VB-EM) it is a fraction of a standard error,
        default 0.1: the run stops when further iterations would not move any parameter by more
        than about that many of its standard errors and the Monte Carlo error of the estimate
        is below it, on the natural scale of every parameter (:mod:`mcem.algorithms.rule`). For
        exact EM (and GEM with an exact E step) it is the relative change of the log-likelihood,
        default 1e-8. The published rules a method offers through its ``stop`` option keep
        their own scales (documented there).
    rng : None, int or numpy.random.Generator
        The only source of randomness.
    callback : callable, optional
        Called with each iteration's history row (a dict); returning True stops the run.
    progress : bool, optional
        Show a progress line: the iteration, the sample size m and the stopping rule's measure
        against its target (no total, because the rule ends the run); the last line stays.
        Default: only when stderr is a terminal.
    checkpoint : str or path, optional
        Write the full state of the run (parameters, history, chain states, adaptation, random
        generators, schedule) to this file after completed iterations, atomically and without
        pickle; :func:`mcem.resume` continues from it with the same result as an uninterrupted
        run. Ctrl-C during a fit returns the partial result with ``stopped_by="interrupted"``.
    checkpoint_every : float, optional
        Seconds between two checkpoint writes (default 1.0: a write costs an fsync, which would
        dominate cheap iterations; 0 writes after every iteration). The first iteration and the
        last one at ``max_iter`` are always written.
    **options
        Options of the chosen method (for example ``sampler``, ``n_chains``, ``m_max``,
        ``schedule`` for MCEM); an unknown option raises ``TypeError`` listing the known ones.

    Returns
    -------
    FitResult
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an mcem.Model, got {type(model).__name__}")
    check_choice(method, "method", set(METHODS) | {"auto"})
    if max_iter is not None:
        max_iter = check_positive_int(max_iter, "max_iter")
    if tol is not None:
        tol = check_positive_float(tol, "tol", allow_zero=True)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    if method == "auto":  # exact EM where the model has it and nothing asks for Monte Carlo
        anywhere = sorted(set(options) - {n for r in METHODS.values() for n in r.option_names()})
        if anywhere:
            raise TypeError(f"fit: method='auto' got unknown option(s) {anywhere}, which no method takes; "
                            f"the methods are {sorted(METHODS)} (see their options in mcem.algorithms)")
        exact_ok = model.has_exact_em and not (set(options) - set(METHODS["em"].option_names()))
        method = "em" if exact_ok else "mcem"
    runner = METHODS[method]
    known = runner.option_names()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"fit: method={method!r} got unknown option(s) {unknown}; its options are {known}")
    rng = as_generator(rng)
    theta = model.validate(model.default_theta() if theta0 is None else theta0, rng=rng.spawn(1)[0])
    return runner(model, theta, rng=rng, max_iter=max_iter, tol=tol, callback=callback, progress=progress,
                  **options)

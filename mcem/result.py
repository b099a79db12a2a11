"""Fit results: plain data with attribute access and a per-iteration history.

:class:`FitResult` sits above the file formats: it saves itself with
:func:`mcem.serial.resultfile.save_result` and converts itself with
:func:`mcem.serial.datatree.to_datatree`, neither of which knows this class (they take any mapping);
:func:`mcem.load_result` (in :mod:`mcem.io`, above this module) builds a FitResult from a file.
"""

from __future__ import annotations

import textwrap

import numpy as np
from scipy.stats import norm

from .history import History
from .inference import LoglikEstimate, marginal_loglik, standard_errors
from .plots import plot_fit
from .serial.datatree import to_datatree
from .serial.resultfile import save_result

__all__ = ["FitResult", "History"]


class FitResult(dict):
    """The result of :func:`mcem.fit`: a dict with attribute access.

    Keys: ``params`` (dict of constrained arrays), ``converged`` (bool), ``n_iter``, ``message``,
    ``stopped_by`` (the rule that ended the run), ``method``, ``loglik`` (the exact
    log-likelihood at ``params`` where the model has one, else None), ``history``
    (:class:`History`), ``seconds``, ``settings`` (the options used), and for Monte Carlo methods
    ``total_draws`` and ``draws`` (the last E step's draws, ``(chain, draw, ...)``).

    Methods compute what needs the model: :meth:`standard_errors`, :meth:`inference`,
    :meth:`loglik` (estimate and Monte Carlo standard error; ``result["loglik"]`` is the stored
    exact value), :meth:`aic`, :meth:`bic`, :meth:`summary`; computing standard errors stores
    ``se_problems`` (why some are NaN or not to be trusted; empty when all is well). A result
    made by :func:`mcem.fit` remembers its model (outside the dict, so saving stays plain
    data); a loaded one takes ``model=`` where needed.
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __dir__(self):
        return list(self.keys()) + list(super().__dir__())

    # ---------------------------------------------------------------- inference
    def _get_model(self, model):
        model = model if model is not None else getattr(self, "_model", None)
        if model is None:
            raise ValueError(
                "this result does not hold its model (it was loaded or copied); pass model=..."
            )
        return model

    def inference(self, model=None, *, method="auto"):
        """Standard errors, covariances and the observed information (:class:`mcem.inference.Inference`).

        ``method``: ``"auto"`` (exact information where the model has an exact log-likelihood,
        Louis' identity on the final draws otherwise), ``"exact"`` or ``"louis"``. Cached.
        """
        model = self._get_model(model)
        cache = self.__dict__.setdefault("_inference", {})
        if method not in cache:
            cache[method] = standard_errors(model, self["params"], self.get("draws"), method=method)
            self["se_problems"] = list(cache[method].problems)
        return cache[method]

    def standard_errors(self, model=None, *, method="auto") -> dict:
        """Standard errors, a dict shaped like ``params`` (delta method from the unconstrained
        scale).

        NaN where the information is not positive definite or a parameter is at the edge of its
        constraint; then a :class:`~mcem.MonteCarloWarning` says which and why, and the result's
        ``se_problems`` (a list of sentences, empty when all is well; set by the last
        computation) records it for :meth:`summary` and for saving.
        """
        return self.inference(model, method=method).se

    def loglik(self, model=None, *, n_samples=None, target_se=0.05, max_samples=100_000, rng=0):
        """The marginal log-likelihood at ``params``:
        ``LoglikEstimate(value, mcse, method, n_samples, bias_correction)``.

        Exact where the model allows it (``mcse`` 0); importance sampling otherwise, with as
        many samples as it takes to reach a standard error of ``target_se`` within
        ``max_samples`` (a warning says so when the budget falls short), or exactly
        ``n_samples`` when given. See :func:`mcem.inference.marginal_loglik`. Cached per
        arguments.
        """
        m = model if model is not None else getattr(self, "_model", None)
        if m is None:
            if self.get("loglik") is not None:
                return LoglikEstimate(float(self["loglik"]), 0.0, "exact (stored)")
            self._get_model(None)
        cache = self.__dict__.setdefault("_loglik", {})
        key = (n_samples, target_se, max_samples, rng)
        if key not in cache:
            cache[key] = marginal_loglik(m, self["params"], self.get("draws"), n_samples=n_samples,
                                         target_se=target_se, max_samples=max_samples, rng=rng)
        return cache[key]

    def _n_params(self):
        return int(sum(np.size(v) for v in self["params"].values()))

    def _free_params(self, model=None):
        m = model if model is not None else getattr(self, "_model", None)
        return m.n_unconstrained if m is not None else self._n_params()

    def aic(self, model=None) -> float:
        """Akaike information criterion -2 log L + 2 k (k free parameters)."""
        return -2.0 * self.loglik(model).value + 2.0 * self._free_params(model)

    def bic(self, model=None, n_obs=None) -> float:
        """Bayesian information criterion -2 log L + k log n (``n_obs`` from the model by default)."""
        m = model if model is not None else getattr(self, "_model", None)
        n = n_obs if n_obs is not None else getattr(m, "n_obs", None)
        if n is None:
            raise ValueError("bic needs the number of observations: pass n_obs=... (the model does not say)")
        return -2.0 * self.loglik(model).value + self._free_params(model) * np.log(n)

    # ---------------------------------------------------------------- presentation
    def plot(self, reference=None, **kwargs):
        """A composite figure: parameter paths, delta-Q, sample size, diagnostics
        (:func:`mcem.plots.plot_fit`); ``reference`` overlays another fit (e.g. exact EM)."""
        return plot_fit(self, reference=reference, **kwargs)

    def save(self, path) -> None:
        """Write the result to ``path`` without pickle (npz + JSON, atomically); see
        :func:`mcem.load_result`."""
        save_result(self, path)

    def to_datatree(self):
        """The draws and the per-iteration history as an ``xarray.DataTree`` (arviz-base layout)."""
        return to_datatree(self)

    def summary(self, model=None, *, alpha=0.05) -> str:
        """A statsmodels-style table: estimate, SE, z, confidence interval; fit statistics."""
        m = model if model is not None else getattr(self, "_model", None)
        se = ll = None
        flags = {}
        notes = []
        if m is not None:
            try:
                inf = self.inference(m)
                se, flags = inf.se, inf.flags
                notes.extend(f"Standard errors: {p}" for p in inf.problems)
            except Exception as exc:  # the table is still useful without standard errors
                notes.append(f"standard errors unavailable: {exc}")
            try:
                ll = self.loglik(m)
            except Exception as exc:
                notes.append(f"log-likelihood unavailable: {exc}")
        else:
            notes.append("standard errors unavailable: this result does not hold its model; "
                         "pass model=...")
            if self.get("loglik") is not None:
                ll = self.loglik()
        width = 78
        title = f"mcem fit: {self.get('model_name', 'model')}"

        def pair(a, b, c, d):
            return f"{a:<16}{b:<22}{c:<18}{d:>22}"

        lines = [title.center(width), "=" * width]
        if ll is not None:
            ll_txt = f"{ll.value:.3f}" + (f" +- {ll.mcse:.3f}" if ll.mcse else "")
            aic = f"{-2 * ll.value + 2 * self._free_params(m):.2f}"
            n = getattr(m, "n_obs", None)
            bic = f"{-2 * ll.value + self._free_params(m) * np.log(n):.2f}" if n else "n/a"
        else:
            ll_txt, aic, bic, n = "n/a", "n/a", "n/a", None
        lines += [
            pair("Method:", str(self.method), "Log-likelihood:", ll_txt),
            pair("Converged:", f"{self.converged} ({self.stopped_by})", "AIC:", aic),
            pair("Iterations:", str(self.n_iter), "BIC:", bic),
            pair("Total draws:", str(self.get("total_draws", 0)), "Observations:", str(n or "n/a")),
            pair("Time (s):", f"{self.seconds:.3f}", "SE method:", inf.method if se is not None else "n/a"),
            "=" * width,
        ]
        q = norm.ppf(1 - alpha / 2)
        lo, hi = f"[{alpha / 2:.3f}", f"{1 - alpha / 2:.3f}]"
        lines.append(f"{'':<22}{'estimate':>11}{'std err':>11}{'z':>9}{lo:>12}{hi:>12}")
        lines.append("-" * width)
        for name, v in self.params.items():
            v = np.asarray(v)
            s = np.asarray(se[name]) if se is not None else np.full(v.shape, np.nan)
            for idx in np.ndindex(v.shape):
                label = name if v.ndim == 0 else f"{name}[{','.join(map(str, idx))}]"
                est, sd = float(v[idx]), float(s[idx])
                if np.isfinite(sd) and sd > 0:
                    row = f"{est:>11.4g}{sd:>11.4g}{est / sd:>9.3g}{est - q * sd:>12.4g}{est + q * sd:>12.4g}"
                else:
                    why = flags.get(label) or ("fixed" if sd == 0 else "see note" if se is not None
                                               else "no model")
                    row = f"{est:>11.4g}{'n/a':>11}  ({why})"
                lines.append(f"{label:<22}{row}")
        lines.append("=" * width)
        lines.append(str(self.message))
        mc = []
        if self.get("mc_ratio") is not None and np.isfinite(self["mc_ratio"]):
            mc.append(f"Monte Carlo error of the estimate: at most {self['mc_ratio']:.3g} standard errors")
        if self.get("se_mc_ratio") is not None and np.isfinite(self["se_mc_ratio"]) and self["se_mc_ratio"] > 0:
            mc.append(f"of the standard errors: {self['se_mc_ratio']:.1%} of their size")
        if mc:
            lines.append("; ".join(mc) + ".")
        lines.extend(textwrap.fill(n, width=width, subsequent_indent="  ") for n in notes)
        return "\n".join(lines)

    def __repr__(self):
        return (
            f"FitResult(method={self.get('method')!r}, converged={self.get('converged')}, "
            f"n_iter={self.get('n_iter')}, loglik={self.get('loglik')}, "
            f"message={self.get('message')!r})"
        )

"""Fit results: plain data with attribute access, the statsmodels vocabulary, a per-iteration history.

:class:`FitResult` sits above the file formats: it saves itself with
:func:`mcem.serial.resultfile.save_result` and converts itself with
:func:`mcem.serial.datatree.to_datatree`, neither of which knows this class (they take any mapping);
:func:`mcem.load_result` (in :mod:`mcem.io`, above this module) builds a FitResult from a file.
Its table is a :class:`mcem.summary.Summary`; likelihood-ratio tests of nested fits are in
:mod:`mcem.anova`.

Confidence intervals (:meth:`FitResult.conf_int`)
-------------------------------------------------
Each interval is a Wald interval on a scale where the parameter is unbounded, mapped back, so
that it stays inside the parameter's support (never a negative standard deviation, a weight
always in (0, 1)):

* elementwise constraints (``real``, ``positive``, ``interval(a, b)``): the interval of the
  unconstrained coordinate ``u`` (``u +- z * se(u)``, ``se(u)`` from the inverse information in
  those coordinates) mapped through the constraint's transform: symmetric for ``real``,
  ``exp`` of the log-scale interval for ``positive``, the scaled logistic for ``interval``;
* matrix-valued constraints, whose transforms mix elements, use the same rule element by
  element on the natural scale of the element's own range, with the delta-method standard
  error there: logit for the weights of a ``simplex`` and the diagonal of a ``corr_cholesky``
  factor below its first row, log for the variances of a ``positive_definite`` matrix and the
  diagonal of a ``lower_cholesky`` factor, Fisher's z (atanh) for the entries of a
  ``corr_cholesky`` factor below the diagonal, and the symmetric interval for covariances and
  the entries of a ``lower_cholesky`` factor below the diagonal. Structural constants (the zeros
  above a Cholesky factor's diagonal, its fixed first entry, the weight of a one-component
  simplex) have standard error 0 and the interval ``[value, value]``.

For an elementwise constraint the two descriptions agree: the delta-method standard error on
the log (logit) scale is ``se(u)``. A constraint of unknown kind gets the symmetric interval.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.special import expit, logit
from scipy.stats import norm

from ._validation import check_fraction
from .constraints.cholesky import CorrCholesky, LowerCholesky
from .constraints.continuous import Interval, Positive, PositiveDefinite, Simplex
from .core import Model
from .history import History
from .inference import LoglikEstimate, marginal_loglik, standard_errors
from .plots import plot_fit
from .serial.datatree import to_datatree
from .serial.resultfile import save_result
from .summary import Summary, make_summary

__all__ = ["FitResult", "History", "Summary"]

_NO_MODEL = ("this result does not hold its model (it was loaded or copied); pass model=..., or attach it: "
             "fit.attach(model) or mcem.load_result(path, model=model)")


def _element_scales(c) -> np.ndarray:
    """Per element of a matrix-valued constraint: the scale of its interval (module docstring)."""
    out = np.full(c.shape, "identity", dtype=object)
    if isinstance(c, Simplex):
        out[...] = "logit"
    elif isinstance(c, PositiveDefinite | LowerCholesky | CorrCholesky):
        out[..., np.eye(c.d, dtype=bool)] = "logit" if isinstance(c, CorrCholesky) else "log"
        if isinstance(c, CorrCholesky):
            out[..., np.tri(c.d, k=-1, dtype=bool)] = "atanh"
    return out


def interval_scale(c) -> str:
    """A few words naming the scale of a constraint's intervals (for the summary's notes)."""
    if c.elementwise:
        if c.is_identity:
            return "symmetric"
        return {Positive: "log scale", Interval: "logit scale of the interval"}.get(type(c), "unconstrained scale")
    return {Simplex: "logit of each weight", PositiveDefinite: "log of the variances, symmetric for the covariances",
            LowerCholesky: "log of the diagonal, symmetric below it",
            CorrCholesky: "Fisher z below the diagonal, logit on it"}.get(type(c), "symmetric (support unknown)")


def _interval(c, x, s, su, q):
    """(lower, upper) of one parameter: estimate ``x``, standard errors ``s`` (constrained) and
    ``su`` (unconstrained coordinates), normal quantile ``q``."""
    with np.errstate(all="ignore"):
        if c.elementwise:
            u = np.asarray(c.inverse(x), dtype=float)
            a, b = (np.asarray(c.forward(u + k * q * su), dtype=float) for k in (-1, 1))
            lo, hi = np.minimum(a, b), np.maximum(a, b)
        else:
            scale = _element_scales(c)
            d = {"identity": s, "log": s / x, "logit": s / (x * (1 - x)), "atanh": s / (1 - x**2)}
            fwd = {"identity": lambda v: v, "log": np.exp, "logit": expit, "atanh": np.tanh}
            inv = {"identity": lambda v: v, "log": np.log, "logit": logit, "atanh": np.arctanh}
            lo, hi = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
            for k in fwd:
                m = scale == k
                g, h = inv[k](x[m]), q * d[k][m]
                lo[m], hi[m] = fwd[k](g - h), fwd[k](g + h)
        fixed = s == 0
        lo, hi = np.where(fixed, x, lo), np.where(fixed, x, hi)
        bad = ~np.isfinite(s)
        return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


class FitResult(dict):
    """The result of :func:`mcem.fit`: a dict with attribute access and the statsmodels vocabulary.

    Keys: ``params`` (dict of constrained arrays), ``converged`` (bool), ``n_iter``, ``message``,
    ``stopped_by`` (the rule that ended the run), ``method``, ``loglik`` (the log-likelihood at
    ``params``: exact where the model has one, else None until an estimate is computed, see
    below), ``loglik_mcse`` (its Monte Carlo standard error: 0 for an exact value),
    ``history`` (:class:`History`), ``seconds``, ``settings`` (the options used), and for Monte
    Carlo methods ``total_draws`` and ``draws`` (the last E step's draws, ``(chain, draw, ...)``).
    ``fit.loglik`` and ``fit["loglik"]`` are the same value.

    The statsmodels vocabulary: :attr:`param_names`, :attr:`params_flat`, :attr:`bse`,
    :meth:`cov_params`, :meth:`conf_int`, :attr:`zvalues` (= :attr:`tvalues`), :attr:`pvalues`,
    :attr:`llf`, :attr:`llf_mcse`, :attr:`aic`, :attr:`bic`, :attr:`nobs`, :attr:`df_model` and
    :meth:`summary`. :attr:`llf` is ``loglik`` when known; otherwise it runs
    :meth:`marginal_loglik` once (importance sampling), which stores the estimate into ``loglik``
    and ``loglik_mcse``. ``repr(fit)`` never runs an estimate.

    A result made by :func:`mcem.fit` remembers its model (outside the dict, so saving stays
    plain data); a loaded one gets it from ``mcem.load_result(path, model=model)`` or
    :meth:`attach`. Computing standard errors stores ``se_problems`` (why some are NaN or not to
    be trusted; empty when all is well).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.get("loglik") is not None:  # an exact value (files written before loglik_mcse too)
            self.setdefault("loglik_mcse", 0.0)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __dir__(self):
        return list(self.keys()) + list(super().__dir__())

    # ---------------------------------------------------------------- the model
    def _get_model(self, model=None):
        model = model if model is not None else self.__dict__.get("_model")
        if model is None:
            raise ValueError(_NO_MODEL)
        return model

    def attach(self, model) -> FitResult:
        """Attach the fitted ``model`` to a loaded or copied result (in place; returns the result).

        The model's parameters must match ``params`` (names and shapes), else ``ValueError``.
        Cached standard errors and log-likelihood estimates are dropped.
        """
        if not isinstance(model, Model):
            raise TypeError(f"attach: model must be an mcem.Model, got {type(model).__name__}")
        try:
            model.check_theta(self.get("params"), "the result's params")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"attach: the result does not fit model {model.name!r}: {exc}") from exc
        object.__setattr__(self, "_model", model)
        self.__dict__.pop("_inference", None)
        self.__dict__.pop("_loglik", None)
        return self

    # ---------------------------------------------------------------- inference
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

    @property
    def param_names(self) -> list:
        """Flat parameter names in the order of :attr:`params_flat`: the model's ``labels``
        where given (a label shared by two parameters becomes ``name[label]``), else ``name``
        for a scalar and ``name[i,j]`` for an element."""
        model = self.__dict__.get("_model")
        labels = (model.labels if model is not None else None) or {}
        raw = {}
        for n in self._order():
            shape = np.shape(self["params"][n])
            raw[n] = (list(labels[n]) if n in labels else [n] if shape == ()
                      else [f"{n}[{','.join(map(str, i))}]" for i in np.ndindex(shape)])
        seen = Counter(x for v in raw.values() for x in v)
        return [x if seen[x] == 1 or n not in labels else f"{n}[{x}]" for n, v in raw.items() for x in v]

    def _order(self):
        model = self.__dict__.get("_model")
        return list(model.param_names) if model is not None else list(self["params"])

    def _flat(self, by_name, name):
        import pandas as pd

        vals = np.concatenate([np.ravel(np.asarray(by_name[n], dtype=float)) for n in self._order()])
        return pd.Series(vals, index=self.param_names, name=name)

    @property
    def params_flat(self):
        """The estimates as a pandas Series over :attr:`param_names` (``params`` stays the dict)."""
        return self._flat(self["params"], "params")

    @property
    def bse(self):
        """Standard errors (pandas Series over :attr:`param_names`; NaN where not available, see
        :meth:`standard_errors`)."""
        return self._flat(self.inference().se, "bse")

    def cov_params(self):
        """The covariance of the estimates on the constrained scale (delta method from the
        unconstrained coordinates), a pandas DataFrame over :attr:`param_names`."""
        import pandas as pd

        names = self.param_names
        return pd.DataFrame(self.inference().cov, index=names, columns=names)

    def conf_int(self, alpha=0.05):
        """Confidence intervals of level ``1 - alpha``: a DataFrame with columns ``lower`` and
        ``upper`` over :attr:`param_names`.

        Wald intervals on a scale where the parameter is unbounded, mapped back into its support
        (see the module docstring of :mod:`mcem.result`): a positive parameter gets ``exp`` of
        its log-scale interval, a weight the logistic of its logit-scale interval, so no
        interval leaves the parameter space. NaN where the standard error is NaN.
        """
        import pandas as pd

        alpha = check_fraction(alpha, "alpha")
        model, inf = self._get_model(), self.inference()
        q = float(norm.ppf(1 - alpha / 2))
        with np.errstate(invalid="ignore"):
            se_u = np.sqrt(np.diag(inf.cov_unconstrained))
        lo, hi = [], []
        for n in model.param_names:
            c, (a, b) = model.params[n], model._offsets[n]
            x = np.asarray(self["params"][n], dtype=float)
            pair = _interval(c, x, np.asarray(inf.se[n], dtype=float), se_u[a:b].reshape(c.unconstrained_shape), q)
            lo.append(pair[0].ravel())
            hi.append(pair[1].ravel())
        return pd.DataFrame({"lower": np.concatenate(lo), "upper": np.concatenate(hi)}, index=self.param_names)

    def _is_real(self):
        model = self._get_model()
        cs = [model.params[n] for n in model.param_names]
        return np.concatenate([np.full(c.size, bool(c.is_identity and c.elementwise)) for c in cs])

    @property
    def zvalues(self):
        """``estimate / bse`` for parameters on the whole real line (constraint ``real``); NaN for
        constrained ones (a test of 0 means nothing for a variance or a weight) and fixed ones."""
        import pandas as pd

        est, se = self.params_flat.to_numpy(), self.bse.to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(self._is_real() & (se > 0), est / se, np.nan)
        return pd.Series(z, index=self.param_names, name="zvalues")

    tvalues = property(lambda self: self.zvalues, doc="The same as :attr:`zvalues` (statsmodels' name).")

    @property
    def pvalues(self):
        """Two-sided normal p-values ``2 * (1 - Phi(|z|))`` of :attr:`zvalues` (NaN where z is)."""
        z = self.zvalues
        return z.__class__(2 * norm.sf(np.abs(z.to_numpy())), index=z.index, name="pvalues")

    # ---------------------------------------------------------------- the log-likelihood
    loglik = property(lambda self: self.get("loglik"),
                      doc="``self['loglik']``: the log-likelihood at ``params`` (exact, or the estimate once "
                          "computed), or None.")
    loglik_mcse = property(lambda self: self.get("loglik_mcse"),
                           doc="``self['loglik_mcse']``: the Monte Carlo SE of ``loglik`` (0 when exact), or None.")

    def marginal_loglik(self, model=None, *, n_samples=None, target_se=0.05, max_samples=100_000, rng=0):
        """The marginal log-likelihood at ``params``:
        ``LoglikEstimate(value, mcse, method, n_samples, bias_correction)``.

        Exact where the model allows it (``mcse`` 0); importance sampling otherwise, with as
        many samples as it takes to reach a standard error of ``target_se`` within
        ``max_samples`` (a warning says so when the budget falls short), or exactly
        ``n_samples`` when given. See :func:`mcem.inference.marginal_loglik`. Cached per
        arguments. A variational fit without draws gives its own importance estimate
        (``loglik_is``). The value, its standard error and method are stored into ``loglik``,
        ``loglik_mcse`` and ``loglik_method``, except that an exact stored value is never
        replaced by an estimate. Without a model, the stored value is returned.
        """
        m = model if model is not None else self.__dict__.get("_model")
        if m is None:
            if self.get("loglik") is not None:
                return LoglikEstimate(float(self["loglik"]), float(self.get("loglik_mcse") or 0.0),
                                      str(self.get("loglik_method", "stored")))
            self._get_model(None)
        cache = self.__dict__.setdefault("_loglik", {})
        key = (id(m), n_samples, target_se, max_samples, rng)
        if key not in cache:
            draws, vi = self.get("draws"), self.get("loglik_is")
            try:
                cache[key] = marginal_loglik(m, self["params"], draws, n_samples=n_samples, target_se=target_se,
                                             max_samples=max_samples, rng=rng)
            except ValueError:
                if draws is not None or not isinstance(vi, dict) or vi.get("value") is None:
                    raise
                cache[key] = LoglikEstimate(float(vi["value"]), float(vi["mcse"]),
                                            "importance sampling (variational q)", int(vi.get("n_draws", 0)))
        est = cache[key]
        if not (self.get("loglik") is not None and not self.get("loglik_mcse") and est.mcse > 0):
            self["loglik"], self["loglik_mcse"], self["loglik_method"] = est.value, est.mcse, est.method
        return est

    @property
    def llf(self) -> float:
        """The log-likelihood at ``params``: ``loglik`` when known (exact, or an estimate already
        computed), else :meth:`marginal_loglik` with its defaults, computed once."""
        if self.get("loglik") is None:
            self.marginal_loglik()
        return float(self["loglik"])

    @property
    def llf_mcse(self) -> float:
        """The Monte Carlo standard error of :attr:`llf` (0 when exact)."""
        self.llf
        return float(self.get("loglik_mcse") or 0.0)

    @property
    def nobs(self) -> int:
        """The number of observations: ``self["nobs"]`` when set (``fit.nobs = n``), else the
        model's ``n_obs``; ``ValueError`` when neither is known."""
        if self.get("nobs") is not None:
            return int(self["nobs"])
        n = getattr(self.__dict__.get("_model"), "n_obs", None)
        if n is None:
            raise ValueError("nobs is unknown: the model does not declare n_obs (Model(..., n_obs=n)) and the result "
                             "holds none; set it with fit.nobs = n" + ("" if "_model" in self.__dict__ else
                                                                      ", or attach the model: fit.attach(model)"))
        return int(n)

    @property
    def df_model(self) -> int:
        """The number of free parameters (unconstrained coordinates of the model)."""
        if "_model" in self.__dict__:
            return int(self.__dict__["_model"].n_unconstrained)
        if self.get("df_model") is not None:
            return int(self["df_model"])
        raise ValueError("df_model is unknown: " + _NO_MODEL)

    @property
    def aic(self) -> float:
        """Akaike information criterion ``-2 llf + 2 df_model``."""
        return -2.0 * self.llf + 2.0 * self.df_model

    @property
    def bic(self) -> float:
        """Bayesian information criterion ``-2 llf + df_model log(nobs)``."""
        return -2.0 * self.llf + self.df_model * np.log(self.nobs)

    # ---------------------------------------------------------------- mixed models
    def _hook(self, name):
        model = self._get_model()
        fn = getattr(model, name, None)
        if not callable(fn):
            raise AttributeError(f"{name}() needs a mixed model made by mcem.models.glmm; this model "
                                 f"({model.name!r}) has no {name} method")
        return fn

    def ranef(self, **kw):
        """The predicted random effects: ``model.ranef(fit, **kw)`` (mixed models of
        :func:`mcem.models.glmm`); ``AttributeError`` for other models."""
        return self._hook("ranef")(self, **kw)

    def predict(self, newdata=None, **kw):
        """Predictions: ``model.predict(fit, newdata, **kw)`` (mixed models of
        :func:`mcem.models.glmm`); ``AttributeError`` for other models."""
        return self._hook("predict")(self, newdata, **kw)

    # ---------------------------------------------------------------- presentation
    def plot(self, reference=None, **kwargs):
        """A composite figure (:func:`mcem.plots.plot_fit`): parameter paths, the distance from
        the final estimate (or ``reference``, another fit such as exact EM, or parameter values)
        in standard errors with its Monte Carlo band, the log-likelihood gap, delta-Q, the draws
        per iteration, the stopping rule's measures and the E-step diagnostics."""
        return plot_fit(self, reference=reference, **kwargs)

    def save(self, path) -> None:
        """Write the result to ``path`` without pickle (npz + JSON, atomically); see
        :func:`mcem.load_result`."""
        save_result(self, path)

    def to_datatree(self):
        """The draws and the per-iteration history as an ``xarray.DataTree`` (arviz-base layout)."""
        return to_datatree(self)

    def summary(self, alpha=0.05) -> Summary:
        """A statsmodels-style :class:`~mcem.summary.Summary`: estimate, std err, z, P>|z| and
        the ``1 - alpha`` interval of :meth:`conf_int` per parameter (z and P only for
        parameters on the whole real line), with the fit statistics and notes.
        ``print(fit.summary())`` shows the text; in a notebook it shows as an HTML table. The
        log-likelihood is :attr:`llf` (estimated once when not known)."""
        return make_summary(self, alpha, {n: interval_scale(c) for n, c in self._constraints().items()})

    def _constraints(self):
        model = self.__dict__.get("_model")
        return {} if model is None else {n: model.params[n] for n in model.param_names}

    def __repr__(self):
        ll, se = self.get("loglik"), self.get("loglik_mcse")
        txt = "None" if ll is None else f"{ll!r}" if not se else f"{ll:.6g} (estimate, mcse {se:.2g})"
        return (
            f"FitResult(method={self.get('method')!r}, converged={self.get('converged')}, "
            f"n_iter={self.get('n_iter')}, loglik={txt}, "
            f"message={self.get('message')!r})"
        )

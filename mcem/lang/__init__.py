"""The model language: a probabilistic-programming front end that compiles to :class:`mcem.Model`.

A model is a Python function whose first argument is a handle ``m`` and whose other arguments are
data. Inside it, ``m.param`` declares a parameter (with a constraint and an initial value),
``m.latent`` a latent variable (with a distribution, so its support is known) and ``m.observe``
an observed quantity::

    @mcem.model
    def glmm(m, X, y, group, n_groups):
        beta = m.param("beta", shape=X.shape[1], init=0.0)
        sigma = m.param("sigma", constraint=C.positive, init=1.0)
        u = m.latent("u", dist.Normal(0.0, sigma), shape=n_groups, unit=True)
        m.observe("y", dist.Bernoulli(logits=X @ beta + u[..., group]), y, unit_index=group)

    model = glmm(X=X, y=y, group=g, n_groups=G)       # an mcem.Model

Latent values carry leading batch axes (chains, draws), so index them with ``u[..., idx]``.

Unit structure. A latent declared with ``unit=True`` has conditionally independent units along
its first axis. An observation says which unit each of its elements belongs to with
``unit_index`` (an integer array over the observation's first axis), or, when several unit
latents are involved (crossed random effects), a dict ``{latent name: index array}``. The compiled
model then returns per-unit log-density terms (one unit latent) or per-latent conditionals (several),
so samplers can update all units at once. With one unit latent whose length is an argument and
every observation tied to it by one index argument, the model also restricts itself to blocks of
units (:meth:`mcem.Model.subset`), for the sharded E step and unit minibatches.

The unit structure is checked numerically when the model is built, with a few batched
evaluations of the model: the terms filed under a unit must not change when other units change,
and nothing outside the unit terms may depend on the unit latent. An observation filed under one
unit but involving another (``y[g] ~ N(u[g] + u[g + 1], 1)`` with ``unit_index=g``) makes the
model fall back to joint updates of that latent, with a ``UserWarning`` naming the observation
and a pair of dependent units; an observation involving the latent without a ``unit_index``
makes it fall back silently. Either way the latent is then updated jointly, as in a model without
unit structure.

Observed values are checked against the support of their distribution when the model is built
(``Bernoulli`` needs 0/1, ``Poisson`` non-negative integers, ...): the error names the site, the
first bad index and the value.

Modules: :mod:`~mcem.lang.trace` (the handle ``m`` and the record of sites),
:mod:`~mcem.lang.units` (unit structure and the independence check), :mod:`~mcem.lang.subset`
(the row-subset guess) and :mod:`~mcem.lang.compile` (building the Model; the decorator).
"""

from __future__ import annotations

from .compile import ModelBuilder, model

__all__ = ["model", "ModelBuilder"]

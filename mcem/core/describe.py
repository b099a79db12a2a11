"""The text of :meth:`mcem.Model.describe`: what a model declares and what mcem found in it."""

from __future__ import annotations

__all__ = ["describe_model"]


def _yes(flag, what_yes, what_no):
    return what_yes if flag else what_no


def _derivatives(model):
    if model.grad_params_fn is None:
        return ["parameters: central finite differences (no exact gradient)"]
    out = ["parameters: exact gradient" + (", exact Hessian in the unconstrained coordinates"
                                           if model.hessian_fn is not None else "")]
    cont = [n for n in model.latent_names if not model.latents[n].is_discrete]
    if cont:
        out.append(_yes(model.grad_latents_fn is not None,
                        f"latents {cont}: exact gradient (gradient samplers such as MALA need no code)",
                        f"latents {cont}: no gradient (MALA needs grad=...)"))
    return out


def _mstep(model):
    lines = []
    if model.exact_estep_fn is not None and model.mstep_fn is not None:
        lines.append("exact EM: exact E step and closed-form M step")
    elif model.sufficient_stats_fn is not None and model.mstep_fn is not None:
        lines.append("closed form for every parameter from sufficient statistics (SAEM approximates them)")
    if model.structure is not None:
        lines += [f"closed form: {d}" for d in model.structure.describe()]
        if model.partial_mstep is not None:
            rest = [n for n in model.param_names if n not in model.partial_mstep.names]
            lines.append(f"numerical (L-BFGS-B, exact gradient): {rest}")
    if not lines:
        grad = "exact gradient" if model.grad_params_fn is not None else "finite differences"
        lines.append(f"numerical for every parameter (L-BFGS-B, {grad})")
    return lines


def describe_model(model) -> str:
    """Parameters, latents and units, sites (model language), M step and derivatives, as text."""
    out = [f"model {model.name!r}"]
    compiled = getattr(model, "compiled_by", None)
    if compiled:
        out.append(f"  evaluated by: {compiled}")
    out.append("parameters:")
    for n in model.param_names:
        c = model.params[n]
        out.append(f"  {n}: {c!r}, shape {c.shape}, {c.unconstrained_size} unconstrained coordinate(s)")
    out.append("latents:")
    for n in model.latent_names:
        s = model.latents[n]
        kind = f"Discrete({s.K} states)" if s.is_discrete else f"Continuous({s.support!r})"
        unit = f", {s.shape[0]} conditionally independent units" if s.unit else ""
        upd = " (unit terms checked: updated unit by unit)" if (s.unit and (n in model.conditionals or model.per_unit)) else ""
        chain = model.chains.get(n)
        if chain is not None:
            how = ("forward filtering backward sampling" if s.is_discrete else
                   "the simulation smoother (Gaussian emissions)" if chain.gaussian else "conditional SMC")
            upd = f" (a chain over axis 0: the whole path at once by {how})"
        out.append(f"  {n}: {kind}, shape {s.shape}{unit}{upd}")
    sites = getattr(model, "sites", None)
    if sites:
        out.append("sites:")
        for kind, name, what, shape, where in sites:
            out.append(f"  {kind:8s} {name}: {what}, shape {shape}{where}")
    if model.n_obs:
        out.append(f"observations: {model.n_obs}")
    out.append("M step:")
    out += [f"  {line}" for line in _mstep(model)]
    out.append("derivatives:")
    out += [f"  {line}" for line in _derivatives(model)]
    extras = [k for k, f in (("exact log-likelihood", model.loglik_fn), ("exact posterior sampler",
                                                                          model.posterior_sampler_fn),
                             ("unit blocks (subset)", model.subset_fn)) if f is not None]
    if extras:
        out.append("also: " + ", ".join(extras))
    return "\n".join(out)

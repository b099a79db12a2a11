"""Warnings and errors raised by mcem."""

__all__ = ["ConvergenceWarning", "MonteCarloWarning"]


class _KeyedWarning(UserWarning):
    """A warning that may carry a ``key`` naming the problem and the ``value`` that triggered it.

    A fit gathers the warnings raised during its iterations and re-issues one per problem
    (its ``key``, or its text when it has none) with the count, the worst value and the
    iterations affected; the full record goes into the result (``fit.warnings_record``).
    ``worse`` says which values are worse: ``"high"`` (R-hat), ``"low"`` (an acceptance rate)
    or ``None`` (no order).
    """

    def __init__(self, message="", *, key=None, value=None, worse=None):
        super().__init__(message)
        self.key = key
        self.value = value
        self.worse = worse


class ConvergenceWarning(_KeyedWarning):
    """A fit stopped without meeting its convergence rule (for example at ``max_iter``)."""


class MonteCarloWarning(_KeyedWarning):
    """Monte Carlo diagnostics look poor (collapsed acceptance, large R-hat, noisy updates)."""

"""Warnings and errors raised by mcem."""

__all__ = ["ConvergenceWarning", "MonteCarloWarning"]


class ConvergenceWarning(UserWarning):
    """A fit stopped without meeting its convergence rule (for example at ``max_iter``)."""


class MonteCarloWarning(UserWarning):
    """Monte Carlo diagnostics look poor (collapsed acceptance, large R-hat, noisy updates)."""

"""Monte Carlo sample-size schedules for MCEM and gain sequences for SAEM.

A schedule answers one question after every MCEM iteration: how many draws in all (summed over
chains) the next E step keeps. ``"ascent"`` (the default, Caffo, Jank & Jones 2005) is handled inside the MCEM
loop because it also appends draws within an iteration; the others are plain rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import chi2, norm

__all__ = ["Fixed", "Geometric", "UserSchedule", "Ascent", "BoothHobert", "make_schedule", "saem_gain"]


class Fixed:
    """The same number of draws (in all, over the chains) at every iteration."""

    name = "fixed"

    def __init__(self, m):
        self.m = int(m)

    def first(self):
        return self.m

    def next(self, t, m, info):
        return self.m


class Geometric:
    """m_{t+1} = ceil(rate * m_t), capped at ``m_max``."""

    name = "geometric"

    def __init__(self, m0, rate=1.2, m_max=10_000):
        if rate < 1:
            raise ValueError(f"Geometric: rate must be >= 1, got {rate!r}")
        self.m0, self.rate, self.m_max = int(m0), float(rate), int(m_max)

    def first(self):
        return self.m0

    def next(self, t, m, info):
        return min(self.m_max, max(m, math.ceil(self.rate * m)))


class UserSchedule:
    """A user list (indexed by iteration, the last entry repeated) or a function ``t -> m``."""

    name = "user"

    def __init__(self, spec: Sequence | Callable):
        if not callable(spec):
            spec = list(spec)
            if not spec:
                raise ValueError("schedule: a list of sample sizes must have at least one entry (one int >= 1 "
                                 "per iteration, the last repeated), got []")
            bad = [m for m in spec if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1]
            if bad:
                raise ValueError(f"schedule: every sample size in the list must be an int >= 1, got {bad[0]!r}")
        self.spec = spec

    def _at(self, t):
        if callable(self.spec):
            m = self.spec(t)
        else:
            m = self.spec[min(t, len(self.spec) - 1)]
        if not isinstance(m, int | np.integer) or m < 1:
            raise ValueError(f"schedule: the sample size for iteration {t} must be an int >= 1, got {m!r}")
        return int(m)

    def first(self):
        return self._at(0)

    def next(self, t, m, info):
        return self._at(t)


class Ascent:
    """The ascent-based rule of Caffo, Jank & Jones (2005).

    Within an iteration: while the lower confidence bound of delta-Q is below zero, append
    ``m / k`` draws to the same chains and redo the M step. Between iterations: the next size is
    ``max(m, sigma^2 (z_alpha + z_beta)^2 / delta_q^2)``, where sigma^2 is the Monte Carlo
    variance of one draw's contribution; always capped at ``m_max``.
    """

    name = "ascent"

    def __init__(self, m0, m_max=20_000, alpha=0.25, beta=0.25, k=3):
        self.m0, self.m_max, self.k = int(m0), int(m_max), float(k)
        self.z_alpha = float(norm.ppf(1 - alpha))
        self.z_beta = float(norm.ppf(1 - beta))

    def first(self):
        return self.m0

    def append_size(self, m):
        return max(1, math.ceil(m / self.k))

    def next(self, t, m, info):
        dq, se = info["delta_q"], info["mcse"]
        if not (np.isfinite(dq) and np.isfinite(se)) or dq <= 0:
            return m
        var_per_draw = se**2 * m  # se^2 = sigma^2 / m with m the draws kept in all
        want = math.ceil(var_per_draw * (self.z_alpha + self.z_beta) ** 2 / dq**2)
        return int(min(self.m_max, max(m, want)))


class BoothHobert:
    """The rule of Booth & Hobert (1999): grow m when the update is lost in Monte Carlo noise.

    After each M step the Monte Carlo covariance Sigma of the new iterate is estimated
    (:func:`mcem.mstep.update_covariance`); when the previous iterate lies inside the
    ``1 - alpha`` confidence ellipsoid around the new one,
    ``(u_t - u_{t+1})' Sigma^-1 (u_t - u_{t+1}) < chi2_p(1 - alpha)``, the next sample size is
    ``m + m / k``; capped at ``m_max``.
    """

    name = "booth-hobert"
    needs_covariance = True

    def __init__(self, m0, m_max=20_000, alpha=0.25, k=3):
        self.m0, self.m_max, self.alpha, self.k = int(m0), int(m_max), float(alpha), float(k)

    def first(self):
        return self.m0

    def inside(self, u_old, u_new, cov) -> tuple[bool, float]:
        """Whether ``u_old`` lies in the confidence ellipsoid around ``u_new``; and the statistic."""
        d = np.asarray(u_old) - np.asarray(u_new)
        stat = float(d @ np.linalg.pinv(cov) @ d)
        return stat < chi2.ppf(1 - self.alpha, d.size), stat

    def next(self, t, m, info):
        if info.get("inside"):
            return int(min(self.m_max, m + math.ceil(m / self.k)))
        return m


def make_schedule(schedule, m_init, m_max):
    """Normalise the ``schedule`` option of MCEM."""
    if schedule is None or schedule == "ascent":
        return Ascent(m_init, m_max)
    if schedule == "fixed":
        return Fixed(m_init)
    if schedule == "geometric":
        return Geometric(m_init, m_max=m_max)
    if schedule == "booth-hobert":
        return BoothHobert(m_init, m_max=m_max)
    if isinstance(schedule, Fixed | Geometric | UserSchedule | Ascent | BoothHobert):
        return schedule
    if callable(schedule) or (isinstance(schedule, Sequence) and not isinstance(schedule, str)):
        return UserSchedule(schedule)
    raise ValueError(
        "schedule must be 'ascent', 'booth-hobert', 'fixed', 'geometric', a list of sizes, a function of the "
        f"iteration or a schedule object, got {schedule!r}"
    )


def saem_gain(k, burn, a=0.7):
    """SAEM step size at iteration k (1-based): 1 during ``burn`` iterations, then (k - burn)^-a."""
    if not 0.5 < a <= 1:
        raise ValueError(f"the SAEM gain exponent must satisfy 1/2 < a <= 1, got {a!r}")
    return 1.0 if k <= burn else float((k - burn) ** (-a))

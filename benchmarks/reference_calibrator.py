"""Pure-Python reference of the Exchange Calibrator's report-offset estimator
(cpp/heatcore/calibrator.cpp), for one venue, side and price kind.

It is deliberately written the slow, obvious way: tests assert that the C++
estimate agrees with it, benchmarks time the C++ path beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WARM = 9
SHIFT_RUN = 12


def clipped_second_moment(c: float) -> float:
    """E[min(Z^2, c^2)] for a standard normal Z."""
    phi = math.exp(-0.5 * c * c) / math.sqrt(2.0 * math.pi)
    tail = 0.5 * math.erfc(c / math.sqrt(2.0))
    return (1.0 - 2.0 * tail) - 2.0 * c * phi + 2.0 * c * c * tail


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


@dataclass
class RobustLocation:
    """Huber location started from the median/MAD of the first WARM values, then
    updated online with gain 1/n (n capped at ``max_n``); SHIFT_RUN consecutive
    residuals clipped on the same side restart it."""

    c: float = 2.0
    max_n: float = 2000.0
    sigma_floor: float = 2e-5
    warm: list[float] = field(default_factory=list)
    mu: float = 0.0
    s2: float = 0.0
    n: float = 0.0
    run: int = 0
    restarts: int = 0

    def add(self, x: float) -> None:
        beta = clipped_second_moment(self.c)
        if len(self.warm) < WARM:
            self.warm.append(x)
            if len(self.warm) == WARM:
                self.mu = _median(self.warm)
                sd = max(1.4826 * _median([abs(v - self.mu) for v in self.warm]), self.sigma_floor)
                self.s2 = beta * sd * sd
                self.n = WARM
            return
        sd = max(math.sqrt(self.s2 / beta), self.sigma_floor)
        r = x - self.mu
        psi = min(max(r, -self.c * sd), self.c * sd)
        if psi != r:
            sign = 1 if r > 0 else -1
            self.run = self.run + sign if self.run * sign > 0 else sign
            if abs(self.run) >= SHIFT_RUN:  # a level shift: start over from here
                self.restarts += 1
                self.run = 0
                self.warm = []
                self.add(x)
                return
        else:
            self.run = 0
        self.n = min(self.n + 1.0, self.max_n)
        self.mu += psi / self.n
        self.s2 += (psi * psi - self.s2) / self.n

    @property
    def n_eff(self) -> float:
        return float(len(self.warm)) if len(self.warm) < WARM else self.n

    def mean(self) -> float:
        return _median(self.warm) if len(self.warm) < WARM else self.mu

    def sigma(self) -> float:
        if len(self.warm) < WARM:
            m = _median(self.warm)
            mad = 1.4826 * _median([abs(v - m) for v in self.warm]) if len(self.warm) >= 3 else 0.0
            return max(mad, 5.0 * self.sigma_floor)
        return max(math.sqrt(self.s2 / clipped_second_moment(self.c)), self.sigma_floor)

    def posterior(self, prior: float, prior_sd: float, systematic_sd: float = 5e-5) -> tuple[float, float]:
        """Precision-weighted combination with the documented prior: (value, sd)."""
        var_d = self.sigma() ** 2 / self.n_eff + systematic_sd**2
        var_p = prior_sd * prior_sd
        value = (self.mean() / var_d + prior / var_p) / (1.0 / var_d + 1.0 / var_p)
        return value, math.sqrt(1.0 / (1.0 / var_d + 1.0 / var_p))

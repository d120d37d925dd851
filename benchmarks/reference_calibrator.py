"""Pure-Python reference of the Exchange Calibrator's report-offset estimator
(cpp/heatcore/calibrator.cpp), for one venue, side and price kind.

It is deliberately written the slow, obvious way: tests assert that the C++
estimate agrees with it, benchmarks time the C++ path beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WARM = 9
RING = 32
SPREAD_EVERY = 8
SHIFT_RUN = 12


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _spread(xs: list[float], floor: float) -> float:
    m = _median(xs)
    return max(1.4826 * _median([abs(v - m) for v in xs]), floor)


@dataclass
class RobustLocation:
    """Huber location started from the median of the first WARM values, then updated
    online with gain 1/n (n capped at ``max_n``); residuals are clipped at ``c``
    times the MAD spread of the last RING values (recomputed every SPREAD_EVERY
    values once the ring is full); SHIFT_RUN consecutive residuals
    clipped on the same side, against as many marks, restart it from the last WARM values."""

    c: float = 2.0
    max_n: float = 2000.0
    sigma_floor: float = 2e-5
    warm: list[float] = field(default_factory=list)
    ring: list[float] = field(default_factory=list)
    mu: float = 0.0
    n: float = 0.0
    run: int = 0
    run_group: int | None = None
    restarts: int = 0
    count: int = 0
    sd: float = 0.0

    def add(self, x: float, group: int | None = None) -> None:
        """One residual; ``group`` is the mark it was measured against (residuals
        against the mark the run last counted do not lengthen it)."""
        self.count += 1
        if len(self.ring) >= WARM and (len(self.ring) < RING or self.count % SPREAD_EVERY == 0):
            self.sd = _spread(self.ring, self.sigma_floor)
        sd = self.sd if len(self.ring) >= WARM else 0.0
        self.ring = [*self.ring, x][-RING:]
        if len(self.warm) < WARM:
            self.warm.append(x)
            if len(self.warm) == WARM:
                self.mu = _median(self.warm)
                self.n = WARM
            return
        r = x - self.mu
        psi = min(max(r, -self.c * sd), self.c * sd)
        if psi != r:
            sign = 1 if r > 0 else -1
            if self.run * sign > 0:
                if group is None or group != self.run_group:
                    self.run += sign
            else:
                self.run = sign
            self.run_group = group
            if abs(self.run) >= SHIFT_RUN:  # a level shift: start over from the run
                self.restarts += 1
                self.run = 0
                self.warm = self.ring[-WARM:]
                self.mu = _median(self.warm)
                self.n = WARM
                return
        else:
            self.run = 0
        self.n = min(self.n + 1.0, self.max_n)
        self.mu += psi / self.n

    @property
    def n_eff(self) -> float:
        return float(len(self.warm)) if len(self.warm) < WARM else self.n

    def mean(self) -> float:
        return _median(self.warm) if len(self.warm) < WARM else self.mu

    def sigma(self) -> float:
        if len(self.ring) < 3:
            return 5.0 * self.sigma_floor
        floor = 5.0 * self.sigma_floor if len(self.ring) < WARM else 0.0
        return max(_spread(self.ring, self.sigma_floor), floor)

    def posterior(self, prior: float, prior_sd: float, systematic_sd: float = 5e-5) -> tuple[float, float]:
        """Precision-weighted combination with the documented prior: (value, sd)."""
        var_d = self.sigma() ** 2 / self.n_eff + systematic_sd**2
        var_p = prior_sd * prior_sd
        value = (self.mean() / var_d + prior / var_p) / (1.0 / var_d + 1.0 / var_p)
        return value, math.sqrt(1.0 / (1.0 / var_d + 1.0 / var_p))

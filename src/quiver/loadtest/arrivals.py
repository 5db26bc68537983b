"""Open-loop arrival processes: when each request is sent, as offsets in seconds from the run's start.

All are seeded, so a run's schedule is reproducible. The bursty process alternates a high-rate phase and a
low-rate phase (a square-wave-modulated Poisson process) with the same mean rate as the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

PATTERNS = ("constant", "poisson", "bursty")


@dataclass(frozen=True, slots=True)
class Arrivals:
    """An arrival process with mean ``rate`` (requests/s).

    ``bursty``: for ``burst_duty`` of every ``burst_period_s`` the rate is ``burst_factor`` x the mean,
    and lower for the rest so the mean stays ``rate``. ``burst_factor * burst_duty`` must be <= 1.

    >>> list(Arrivals(rate=2.0, pattern="constant").offsets(3))
    [0.0, 0.5, 1.0]
    """

    rate: float
    pattern: str = "poisson"
    seed: int = 0
    burst_factor: float = 4.0
    burst_duty: float = 0.2
    burst_period_s: float = 1.0

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0 requests/s, got {self.rate}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern {self.pattern!r} is not one of {', '.join(PATTERNS)}")
        if self.burst_factor < 1 or not 0 < self.burst_duty < 1 or self.burst_factor * self.burst_duty > 1:
            raise ValueError(
                f"bursty needs burst_factor >= 1, 0 < burst_duty < 1 and factor x duty <= 1, "
                f"got factor {self.burst_factor}, duty {self.burst_duty}"
            )
        if self.burst_period_s <= 0:
            raise ValueError(f"burst_period_s must be > 0, got {self.burst_period_s}")

    def with_rate(self, rate: float) -> Arrivals:
        return Arrivals(rate, self.pattern, self.seed, self.burst_factor, self.burst_duty, self.burst_period_s)

    def offsets(self, limit: int | None = None) -> Iterator[float]:
        """Send times in seconds from the start, increasing; infinite unless ``limit`` is given."""
        gen = {"constant": self._constant, "poisson": self._poisson, "bursty": self._bursty}[self.pattern]()
        for i, t in enumerate(gen):
            if limit is not None and i >= limit:
                return
            yield t

    def _constant(self) -> Iterator[float]:
        i = 0
        while True:
            yield i / self.rate
            i += 1

    def _poisson(self) -> Iterator[float]:
        rng = np.random.default_rng(self.seed)
        t = 0.0
        while True:
            for gap in rng.exponential(1.0 / self.rate, 4096):
                t += float(gap)
                yield t

    def _bursty(self) -> Iterator[float]:
        # Invert the cumulative intensity: draw unit-rate exponential gaps, spend them at the phase's rate.
        rng = np.random.default_rng(self.seed)
        high = self.rate * self.burst_factor
        low = self.rate * (1 - self.burst_factor * self.burst_duty) / (1 - self.burst_duty)
        high_len = self.burst_duty * self.burst_period_s
        period, phase = 0, 0.0  # phase: seconds into period number `period` (exact, no float modulo)
        while True:
            for need in rng.exponential(1.0, 4096):
                remaining = float(need)
                while True:
                    rate, end = (high, high_len) if phase < high_len else (low, self.burst_period_s)
                    if rate > 0 and remaining <= rate * (end - phase):
                        phase += remaining / rate
                        break
                    remaining -= rate * (end - phase)
                    phase = end
                    if phase >= self.burst_period_s:
                        period, phase = period + 1, 0.0
                yield period * self.burst_period_s + phase

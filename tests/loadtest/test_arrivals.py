from __future__ import annotations

import numpy as np
import pytest

from quiver.loadtest.arrivals import Arrivals


@pytest.mark.parametrize("pattern", ["constant", "poisson", "bursty"])
def test_mean_rate_is_the_requested_one(pattern: str) -> None:
    t = np.fromiter(Arrivals(200.0, pattern, seed=1).offsets(40_000), float)
    assert np.all(np.diff(t) >= 0)
    assert len(t) / t[-1] == pytest.approx(200.0, rel=0.03)


def test_bursty_concentrates_arrivals_in_the_peak_phase() -> None:
    a = Arrivals(100.0, "bursty", seed=2, burst_factor=4.0, burst_duty=0.2, burst_period_s=1.0)
    t = np.fromiter(a.offsets(50_000), float)
    in_peak = np.mean((t % 1.0) < 0.2)
    assert in_peak == pytest.approx(0.8, abs=0.02)  # 0.2 of the time at 4x the mean carries 80% of requests


def test_schedules_are_reproducible_and_seeded() -> None:
    first = list(Arrivals(50.0, "poisson", seed=3).offsets(100))
    assert first == list(Arrivals(50.0, "poisson", seed=3).offsets(100))
    assert first != list(Arrivals(50.0, "poisson", seed=4).offsets(100))


def test_invalid_bursts_are_rejected() -> None:
    with pytest.raises(ValueError, match="factor x duty"):
        Arrivals(10.0, "bursty", burst_factor=6.0, burst_duty=0.2)
    with pytest.raises(ValueError, match="rate must be > 0"):
        Arrivals(0.0)

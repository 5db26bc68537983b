from __future__ import annotations

import numpy as np
import pytest

from quiver.loadtest.stats import CONNECT_ERROR, TIMEOUT, Records, Summary, is_stable, summarize


def _records(latencies_ms: list[float], statuses: list[int] | None = None, t0: float = 100.0) -> Records:
    n = len(latencies_ms)
    start = t0 + np.arange(n) * 0.001
    done = start + np.asarray(latencies_ms) / 1000
    status = np.asarray(statuses if statuses is not None else [200] * n, dtype=np.int32)
    return Records.from_columns(start, np.zeros(n), done, status)


def test_percentiles_throughput_and_goodput() -> None:
    latencies = list(np.linspace(1.0, 100.0, 100))
    s = summarize(_records(latencies), duration_s=2.0, slo_ms=50.0)
    assert s.requests == s.ok == 100
    assert s.throughput_rps == pytest.approx(50.0)
    assert s.latency_ms["p50"] == pytest.approx(np.percentile(latencies, 50), rel=1e-6)
    assert s.latency_ms["p99"] == pytest.approx(np.percentile(latencies, 99), rel=1e-6)
    assert s.latency_ms["p99.9"] <= s.latency_ms["max"] == pytest.approx(100.0)
    within = sum(1 for v in latencies if v <= 50.0)
    assert s.goodput_rps == pytest.approx(within / 2.0)


def test_errors_are_counted_by_kind_and_left_out_of_latency() -> None:
    s = summarize(_records([1.0, 2.0, 500.0, 3.0, 1.0], [200, 200, 503, TIMEOUT, CONNECT_ERROR]), 1.0)
    assert s.ok == 2
    assert s.errors == {"http_503": 1, "timeout": 1, "connect_error": 1}
    assert s.latency_ms["max"] == pytest.approx(2.0)
    assert s.error_rate == pytest.approx(0.6)


def test_window_keeps_requests_that_finished_inside_it() -> None:
    rec = _records([5.0] * 10)  # done at 100.005 .. 100.014
    inside = rec.window(100.0, 100.0095)
    assert len(inside) == 5
    assert len(rec.window(0, 1)) == 0


def _summary(rps: float, p50: float) -> Summary:
    return Summary(1.0, int(rps), int(rps), rps, None, {"p50": p50}, {}, {})


def test_stability_needs_the_last_three_windows_within_tolerance() -> None:
    assert not is_stable([_summary(100, 1.0)] * 2)
    assert is_stable([_summary(50, 9.0), _summary(100, 1.0), _summary(104, 1.05), _summary(97, 0.97)])
    assert not is_stable([_summary(100, 1.0), _summary(100, 1.0), _summary(125, 1.0)])
    assert not is_stable([_summary(100, 1.0), _summary(100, 1.0), _summary(100, 1.3)])
    assert not is_stable([_summary(0, float("nan"))] * 3)

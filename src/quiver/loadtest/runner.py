"""One measurement: warm up, then measurement windows until the last few agree, then a summary.

``measure`` is what ``quiver bench`` and ``quiver plan`` both call. It coordinates one or more workers
(``engine``), slices their finished requests into windows by completion time, and brackets the stable
windows with two ``/metrics`` scrapes for the server-side split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from quiver.loadtest import promscrape
from quiver.loadtest.client import Endpoint
from quiver.loadtest.engine import Chunk, LoadSpec, ProcessWorker, ThreadWorker
from quiver.loadtest.payload import Workload
from quiver.loadtest.stats import Records, Summary, is_stable, summarize


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """How long to measure: ``warmup_s``, then windows of ``window_s`` until the last ``stable_count`` agree
    within ``tolerance`` (throughput and p50), at least ``min_windows`` and at most ``max_windows``."""

    warmup_s: float = 2.0
    window_s: float = 5.0
    min_windows: int = 3
    max_windows: int = 10
    stable_count: int = 3
    tolerance: float = 0.10

    def __post_init__(self) -> None:
        if self.warmup_s < 0 or self.window_s <= 0:
            raise ValueError(f"warmup_s must be >= 0 and window_s > 0, got {self.warmup_s}, {self.window_s}")
        if not 1 <= self.min_windows <= self.max_windows or self.stable_count < 1:
            raise ValueError("need 1 <= min_windows <= max_windows and stable_count >= 1")


@dataclass(slots=True)
class Measurement:
    """The result of ``measure``. ``summary`` covers the stable (last ``stable_count``) windows."""

    load: str
    summary: Summary
    windows: list[Summary]
    stable: bool
    unfinished: int  # in flight or waiting in the client at the end of the last window (a server falling behind)
    client: dict[str, float]
    server: dict[str, Any] | None = None
    offered_rps: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "load": self.load,
            "offered_rps": self.offered_rps,
            "stable": self.stable,
            "unfinished": self.unfinished,
            "summary": self.summary.as_dict(),
            "windows": [w.as_dict() for w in self.windows],
            "client": self.client,
            "server": self.server,
            **self.extra,
        }


Progress = Callable[[int, Summary, bool], None]


def measure(
    endpoint: Endpoint,
    workload: Workload,
    load: LoadSpec,
    windows: WindowSpec = WindowSpec(),
    *,
    slo_ms: float | None = None,
    processes: int = 1,
    metrics_model: str | None = None,
    metrics_version: str | None = None,
    progress: Progress | None = None,
) -> Measurement:
    """Run ``load`` against ``endpoint`` and summarize it. ``processes`` > 1 runs the load in child processes.

    ``metrics_model`` set: scrape ``/metrics`` around the stable windows for the server's queue/compute split.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    workers: list[ThreadWorker | ProcessWorker]
    if processes == 1:
        workers = [ThreadWorker(endpoint, workload, load)]
    else:
        workers = [ProcessWorker(endpoint, workload, load.share(i, processes)) for i in range(processes)]
    total = Chunk()
    bounds: list[tuple[float, float]] = []
    summaries: list[Summary] = []
    scrapes: list[str | None] = []
    stable = False
    warm_count = in_flight = 0
    try:
        t0 = perf_counter() + 0.05
        for worker in workers:
            worker.start(t0)
        _sleep_until(perf_counter() + windows.warmup_s)
        _collect(workers, total)
        warm_count = len(total.records)
        total.records = Records()  # the warm-up does not count
        start = perf_counter()
        if metrics_model:
            scrapes.append(promscrape.scrape(endpoint))
        while len(summaries) < windows.max_windows:
            end = start + windows.window_s
            _sleep_until(end)
            in_flight = _collect(workers, total)
            if metrics_model:
                scrapes.append(promscrape.scrape(endpoint))
            bounds.append((start, end))
            summaries.append(summarize(total.records.window(start, end), end - start, slo_ms))
            stable = is_stable(summaries, windows.stable_count, windows.tolerance)
            if progress is not None:
                progress(len(summaries), summaries[-1], stable)
            if stable and len(summaries) >= windows.min_windows:
                break
            start = end
    finally:
        for worker in workers:
            total.merge(worker.stop())
    used = min(windows.stable_count, len(bounds))
    first, last = bounds[-used][0], bounds[-1][1]
    summary = summarize(total.records.window(first, last), last - first, slo_ms)
    server = None
    if metrics_model and scrapes[-used - 1] and scrapes[-1]:
        server = promscrape.server_split(scrapes[-used - 1] or "", scrapes[-1] or "", metrics_model, metrics_version)
    measured = max(len(total.records) + warm_count, 1)
    client = {
        "processes": float(processes),
        "cpu_s": total.cpu_s,
        "cpu_us_per_request": total.cpu_s / measured * 1e6,
        "send_lag_mean_ms": total.lag_sum_s / max(total.sent, 1) * 1000,
        "send_lag_max_ms": total.lag_max_s * 1000,
        "client_backlog_max": float(total.backlog_max),
    }
    offered = load.arrivals.rate if load.arrivals else None
    return Measurement(load.describe(), summary, summaries, stable, in_flight, client, server, offered)


def _collect(workers: list[ThreadWorker | ProcessWorker], total: Chunk) -> int:
    """Merge every worker's finished requests into ``total``; return how many are still in flight."""
    in_flight = 0
    for worker in workers:
        chunk = worker.drain()
        in_flight += chunk.in_flight
        total.merge(chunk)
    return in_flight


def _sleep_until(deadline: float) -> None:
    remaining = deadline - perf_counter()
    if remaining > 0:
        time.sleep(remaining)

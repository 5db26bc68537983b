"""The latency model the planner prunes with.

Compute time per batch is linear in the batch size, ``c(b) = base_ms + per_item_ms * b``, fitted per
(variant, instances, threads) from two probe measurements: one request at a time (``c(1)`` and the fixed
overhead outside the server), and saturation with full batches (``c(B)`` from the throughput, or read from
the server's metrics). A candidate's p99 at a rate is then predicted by simulating the batcher -- FCFS
queue, ``instances`` servers, a batch starts when ``max_batch`` requests wait or the oldest has waited
``delay_ms`` -- under Poisson arrivals with log-normal compute jitter. Simulation, not a closed form,
because M/M/c formulas do not cover batch-dependent service with a timeout.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from quiver.plan.space import Candidate

_Z99 = 2.326  # standard normal quantile at 0.99


@dataclass(frozen=True, slots=True)
class ComputeCurve:
    base_ms: float
    per_item_ms: float
    overhead_ms: float = 0.0  # client, network and HTTP time outside the batcher
    sigma: float = 0.1  # log-normal jitter of the compute time
    scale: float = 1.0  # calibration: measured / predicted p99 seen so far for this hardware

    def compute_ms(self, batch: int | np.ndarray) -> float | np.ndarray:
        return self.base_ms + self.per_item_ms * batch

    def capacity_rps(self, instances: int, max_batch: int) -> float:
        return instances * max_batch / (float(self.compute_ms(max_batch)) / 1000.0)

    def as_dict(self) -> dict[str, float]:
        return {
            "base_ms": self.base_ms,
            "per_item_ms": self.per_item_ms,
            "overhead_ms": self.overhead_ms,
            "sigma": self.sigma,
            "scale": self.scale,
        }


@dataclass(frozen=True, slots=True)
class Prediction:
    p50_ms: float
    p99_ms: float
    utilization: float  # offered rate / capacity at full batches

    def as_dict(self) -> dict[str, float]:
        return {"p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "utilization": self.utilization}


def fit_curve(
    single_ms: float,
    single_p99_ms: float,
    batch: int,
    batch_compute_ms: float,
    single_compute_ms: float | None = None,
) -> ComputeCurve:
    """Fit ``c(b)`` through (1, c(1)) and (batch, c(batch)).

    ``single_ms``: client p50 latency one request at a time; ``single_compute_ms``: the server's compute
    time for it when its metrics say (the rest is overhead), else all of it counts as compute.
    """
    c1 = single_compute_ms if single_compute_ms is not None else single_ms
    c1 = max(c1, 1e-3)
    overhead = max(single_ms - c1, 0.0)
    if batch > 1:
        per_item = max((batch_compute_ms - c1) / (batch - 1), 0.0)
    else:
        per_item = c1 * 0.5
    base = max(c1 - per_item, 0.0)
    sigma = math.log(max(single_p99_ms, single_ms) / max(single_ms, 1e-6)) / _Z99
    return ComputeCurve(base, per_item, overhead, min(max(sigma, 0.02), 1.0))


def simulate(
    curve: ComputeCurve,
    instances: int,
    max_batch: int,
    delay_ms: float,
    arrivals_s: np.ndarray,
    seed: int = 0,
) -> np.ndarray:
    """Latency (ms) of every request through the simulated batcher, in arrival order."""
    rng = np.random.default_rng(seed)
    a = arrivals_s * 1000.0  # ms
    n = len(a)
    latency = np.empty(n)
    free = [0.0] * instances  # when each instance is next idle
    heapq.heapify(free)
    jitter = rng.lognormal(0.0, curve.sigma, n)
    i = 0
    while i < n:
        idle_at = heapq.heappop(free)
        oldest = a[i]
        full_at = a[i + max_batch - 1] if i + max_batch - 1 < n else math.inf
        start = max(idle_at, oldest, min(oldest + delay_ms, full_at))
        j = int(np.searchsorted(a, start, side="right"))
        j = min(max(j, i + 1), i + max_batch)
        done = start + float(curve.compute_ms(j - i)) * jitter[i]
        latency[i:j] = done - a[i:j]
        heapq.heappush(free, done)
        i = j
    return latency + curve.overhead_ms


def predict(curve: ComputeCurve, candidate: Candidate, rate: float, requests: int = 4000, seed: int = 0) -> Prediction:
    """Predicted p50/p99 of ``candidate`` under Poisson arrivals at ``rate`` requests/s."""
    capacity = curve.capacity_rps(candidate.instances, candidate.max_batch)
    utilization = rate / capacity if capacity > 0 else math.inf
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, requests))
    lat = simulate(curve, candidate.instances, candidate.max_batch, candidate.delay_ms, arrivals, seed)
    lat = lat[requests // 10 :]  # drop the start-up transient
    p50, p99 = np.percentile(lat, [50, 99])
    return Prediction(float(p50) * curve.scale, float(p99) * curve.scale, utilization)


def curve_points(
    curve: ComputeCurve, candidate: Candidate, rates: list[float], requests: int = 2000
) -> list[tuple[float, float]]:
    """Predicted (rate, p99 ms) points: the model's latency-vs-throughput curve for the report."""
    return [(r, predict(curve, candidate, r, requests).p99_ms) for r in rates]

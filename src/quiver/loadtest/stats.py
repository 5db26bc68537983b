"""Latency statistics over raw request records: percentiles, throughput, goodput, errors, stability.

Records are four parallel arrays, one entry per finished request (see ``Records``); every function here is
pure so it is tested without a server.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)

# Negative status codes are client-side failures; positive ones are HTTP statuses.
CONNECT_ERROR = -1
CONNECTION_LOST = -2
TIMEOUT = -3
PROTOCOL_ERROR = -4
_CLIENT_ERRORS = {
    CONNECT_ERROR: "connect_error",
    CONNECTION_LOST: "connection_lost",
    TIMEOUT: "timeout",
    PROTOCOL_ERROR: "protocol_error",
}


def error_kind(status: int) -> str:
    return _CLIENT_ERRORS.get(status, f"http_{status}")


@dataclass(slots=True)
class Records:
    """Finished requests: ``start`` (scheduled or sent, perf_counter seconds), ``first`` (first content byte,
    0 when none), ``done`` (completion), ``status`` (HTTP status or a negative client error)."""

    start: array[float] = field(default_factory=lambda: array("d"))
    first: array[float] = field(default_factory=lambda: array("d"))
    done: array[float] = field(default_factory=lambda: array("d"))
    status: array[int] = field(default_factory=lambda: array("i"))

    def __len__(self) -> int:
        return len(self.done)

    def extend(self, other: Records) -> None:
        self.start.extend(other.start)
        self.first.extend(other.first)
        self.done.extend(other.done)
        self.status.extend(other.status)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(start, first, done, status) as numpy views (no copy)."""
        if not len(self):
            empty = np.empty(0)
            return empty, empty, empty, np.empty(0, np.int32)
        return (
            np.frombuffer(self.start, dtype=np.float64),
            np.frombuffer(self.first, dtype=np.float64),
            np.frombuffer(self.done, dtype=np.float64),
            np.frombuffer(self.status, dtype=np.int32),
        )

    @classmethod
    def from_columns(cls, start: np.ndarray, first: np.ndarray, done: np.ndarray, status: np.ndarray) -> Records:
        out = cls()
        out.start.frombytes(np.ascontiguousarray(start, np.float64).tobytes())
        out.first.frombytes(np.ascontiguousarray(first, np.float64).tobytes())
        out.done.frombytes(np.ascontiguousarray(done, np.float64).tobytes())
        out.status.frombytes(np.ascontiguousarray(status, np.int32).tobytes())
        return out

    def window(self, t0: float, t1: float) -> Records:
        """The requests that finished in ``[t0, t1)``."""
        start, first, done, status = self.columns()
        mask = (done >= t0) & (done < t1)
        return Records.from_columns(start[mask], first[mask], done[mask], status[mask])


@dataclass(frozen=True, slots=True)
class Summary:
    """What one measurement (a window, or several merged) shows. Latencies in milliseconds."""

    duration_s: float
    requests: int  # finished, successful or not
    ok: int
    throughput_rps: float  # successful requests per second
    goodput_rps: float | None  # successful requests within the SLO per second (None without an SLO)
    latency_ms: dict[str, float]  # "p50", "p90", ..., "mean", "max" over successful requests
    ttft_ms: dict[str, float]  # the same for time to first token (streaming), else empty
    errors: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "requests": self.requests,
            "ok": self.ok,
            "throughput_rps": self.throughput_rps,
            "goodput_rps": self.goodput_rps,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "errors": self.errors,
        }

    @property
    def error_rate(self) -> float:
        return (self.requests - self.ok) / self.requests if self.requests else 0.0


def percentile_key(p: float) -> str:
    return f"p{p:g}"


def distribution(values_ms: np.ndarray) -> dict[str, float]:
    if values_ms.size == 0:
        return {}
    pct = np.percentile(values_ms, PERCENTILES)
    out = {percentile_key(p): float(v) for p, v in zip(PERCENTILES, pct, strict=True)}
    out["mean"] = float(values_ms.mean())
    out["max"] = float(values_ms.max())
    return out


def summarize(records: Records, duration_s: float, slo_ms: float | None = None) -> Summary:
    start, first, done, status = records.columns()
    ok_mask = status == 200
    latency = (done[ok_mask] - start[ok_mask]) * 1000.0
    with_first = ok_mask & (first > 0)
    ttft = (first[with_first] - start[with_first]) * 1000.0
    kinds, counts = np.unique(status[~ok_mask], return_counts=True)
    errors = {error_kind(int(k)): int(c) for k, c in zip(kinds, counts, strict=True)}
    ok = int(ok_mask.sum())
    goodput = None
    if slo_ms is not None:
        goodput = float((latency <= slo_ms).sum()) / duration_s if duration_s > 0 else 0.0
    return Summary(
        duration_s=duration_s,
        requests=int(status.size),
        ok=ok,
        throughput_rps=ok / duration_s if duration_s > 0 else 0.0,
        goodput_rps=goodput,
        latency_ms=distribution(latency),
        ttft_ms=distribution(ttft),
        errors=errors,
    )


def is_stable(windows: list[Summary], count: int = 3, tolerance: float = 0.10) -> bool:
    """Whether the last ``count`` windows agree: throughput and p50 latency each within ``tolerance`` of
    their mean (perf_analyzer's rule). A window with no successful request is never stable."""
    if len(windows) < count:
        return False
    last = windows[-count:]
    for values in (
        [w.throughput_rps for w in last],
        [w.latency_ms.get("p50", float("nan")) for w in last],
    ):
        arr = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(arr)) or arr.mean() <= 0:
            return False
        if np.max(np.abs(arr - arr.mean())) > tolerance * arr.mean():
            return False
    return True

"""Server-side time split from a Prometheus ``/metrics`` endpoint (Quiver's histograms).

Two scrapes bracket a measurement; the difference of each histogram's buckets, sum and count over that
interval gives the server's own view: mean and p50/p99 queue wait, compute time per batch, request time
inside the server, and mean batch size.
"""

from __future__ import annotations

import math
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from quiver.loadtest.client import Endpoint

# Quiver's families (see quiver.server.metrics); seconds except the batch size.
SPLIT_FAMILIES = {
    "queue": "quiver_queue_duration_seconds",
    "compute": "quiver_compute_duration_seconds",
    "server": "quiver_request_duration_seconds",
    "batch_size": "quiver_batch_size",
}

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def parse(text: str) -> list[Sample]:
    """Prometheus text exposition -> ``(name, sorted labels, value)`` samples; comments skipped."""
    out: list[Sample] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _LINE.match(line)
        if not found:
            continue
        name, labels, value = found.groups()
        pairs = tuple(sorted(_LABEL.findall(labels or "")))
        try:
            out.append((name, pairs, float(value)))
        except ValueError:
            continue
    return out


@dataclass(slots=True)
class Histogram:
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative count
    sum: float = 0.0
    count: float = 0.0

    def minus(self, other: Histogram) -> Histogram:
        return Histogram(
            {le: c - other.buckets.get(le, 0.0) for le, c in self.buckets.items()},
            self.sum - other.sum,
            self.count - other.count,
        )

    def quantile(self, q: float) -> float:
        """Linear interpolation inside the bucket, as Prometheus' ``histogram_quantile`` does."""
        if self.count <= 0:
            return math.nan
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for le in sorted(self.buckets):
            count = self.buckets[le]
            if count >= rank:
                if math.isinf(le):
                    return lower_bound
                span = count - lower_count
                return lower_bound + (le - lower_bound) * ((rank - lower_count) / span if span > 0 else 1.0)
            lower_bound, lower_count = le, count
        return lower_bound


def histograms(samples: list[Sample], family: str, match: dict[str, str]) -> Histogram:
    """The histogram ``family`` summed over series whose labels include ``match``."""
    out = Histogram()
    for name, labels, value in samples:
        if not name.startswith(family):
            continue
        label_map = dict(labels)
        if any(label_map.get(k) != v for k, v in match.items()):
            continue
        suffix = name[len(family) :]
        if suffix == "_bucket":
            le = float(label_map.get("le", "inf").replace("+Inf", "inf"))
            out.buckets[le] = out.buckets.get(le, 0.0) + value
        elif suffix == "_sum":
            out.sum += value
        elif suffix == "_count":
            out.count += value
    return out


def scrape(endpoint: Endpoint, path: str = "/metrics", timeout_s: float = 5.0) -> str | None:
    """The metrics text, or None when the server has none (not Quiver, or metrics off)."""
    try:
        url = f"http://{endpoint.authority}{endpoint.prefix}{path}"
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return str(response.read().decode())
    except (OSError, ValueError):
        return None


def server_split(before: str, after: str, model: str, version: str | None = None) -> dict[str, Any] | None:
    """Queue / compute / in-server time between two scrapes for ``model`` (ms), or None without data."""
    match = {"model": model} | ({"version": version} if version else {})
    old, new = parse(before), parse(after)
    out: dict[str, Any] = {}
    for key, family in SPLIT_FAMILIES.items():
        delta = histograms(new, family, match).minus(histograms(old, family, match))
        if delta.count <= 0:
            continue
        scale = 1.0 if key == "batch_size" else 1000.0
        out[key] = {
            "count": delta.count,
            "mean": delta.sum / delta.count * scale,
            "p50": delta.quantile(0.5) * scale,
            "p99": delta.quantile(0.99) * scale,
        }
    return out or None

"""Prometheus metrics: a process-wide registry rendered at ``GET /metrics``."""

from __future__ import annotations

from quiver.metrics.registry import DEFAULT_BUCKETS, REGISTRY, Counter, Gauge, Histogram, Registry

__all__ = ["DEFAULT_BUCKETS", "REGISTRY", "Counter", "Gauge", "Histogram", "Registry"]

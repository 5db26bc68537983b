"""The server's Prometheus metrics, per model and version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from quiver.batching.slo import SloPolicy
from quiver.metrics import REGISTRY

_LABELS = ("model", "version")
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = REGISTRY.counter("quiver_requests_total", "Inference requests by outcome.", (*_LABELS, "outcome"))
REQUEST_DURATION = REGISTRY.histogram(
    "quiver_request_duration_seconds", "Request time inside the server, validation to response.", _LABELS
)
QUEUE_DURATION = REGISTRY.histogram(
    "quiver_queue_duration_seconds", "Time a request waited in the batcher's queue.", _LABELS
)
COMPUTE_DURATION = REGISTRY.histogram(
    "quiver_compute_duration_seconds", "Time one batch took to merge, run and split.", _LABELS
)
BATCH_SIZE = REGISTRY.histogram("quiver_batch_size", "Rows per executed batch.", _LABELS, _BATCH_BUCKETS)
QUEUE_DEPTH = REGISTRY.gauge("quiver_queue_depth", "Requests waiting in the batcher's queue.", _LABELS)
SLO_COMPUTE = REGISTRY.gauge(
    "quiver_slo_compute_model_seconds",
    "SLO-aware batching's learned batch cost: seconds = intercept + per_row * rows.",
    (*_LABELS, "term"),
)
SLO_ARRIVAL_RATE = REGISTRY.gauge(
    "quiver_slo_arrival_rate", "SLO-aware batching's estimate of arriving requests per second.", _LABELS
)
SLO_DECISIONS = REGISTRY.gauge(
    "quiver_slo_decisions", "SLO-aware batching's decisions since load, by kind.", (*_LABELS, "decision")
)


class ModelMetrics:
    """The children of every family for one model version, resolved once at load time.

    Series outlive a reload of the same version (counters stay monotonic, as Prometheus expects)."""

    def __init__(self, model: str, version: str) -> None:
        self.labels = (model, version)
        self.success = REQUESTS.labels(model, version, "success")
        self.failure = REQUESTS.labels(model, version, "failure")
        self.request_duration = REQUEST_DURATION.labels(model, version)
        self.queue_duration = QUEUE_DURATION.labels(model, version)
        self.compute_duration = COMPUTE_DURATION.labels(model, version)
        self.batch_size = BATCH_SIZE.labels(model, version)
        self.queue_depth = QUEUE_DEPTH.labels(model, version)

    def watch_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def watch_slo(self, policy: SloPolicy) -> None:
        model, version = self.labels
        SLO_COMPUTE.labels(model, version, "intercept").set_function(lambda: policy.model.coefficients[0])
        SLO_COMPUTE.labels(model, version, "per_row").set_function(lambda: policy.model.coefficients[1])
        SLO_COMPUTE.labels(model, version, "spread").set_function(lambda: policy.model.spread_s)
        SLO_ARRIVAL_RATE.labels(model, version).set_function(lambda: policy.arrivals.per_s)
        for f in fields(policy.decisions):
            SLO_DECISIONS.labels(model, version, f.name).set_function(_reader(policy, f.name))


def _reader(policy: SloPolicy, name: str) -> Callable[[], float]:
    return lambda: float(getattr(policy.decisions, name))

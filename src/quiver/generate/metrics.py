"""The engine's Prometheus metrics (on the server's ``/metrics``), per model. Updated on the event loop."""

from __future__ import annotations

from collections.abc import Callable

from quiver.metrics import REGISTRY

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_ITL = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)

TTFT = REGISTRY.histogram(
    "quiver_llm_time_to_first_token_seconds", "Arrival to first output token.", ("model",), _LATENCY
)
ITL = REGISTRY.histogram("quiver_llm_inter_token_latency_seconds", "Time between output tokens.", ("model",), _ITL)
E2E = REGISTRY.histogram("quiver_llm_e2e_request_latency_seconds", "Arrival to last token.", ("model",), _LATENCY)
QUEUE = REGISTRY.histogram(
    "quiver_llm_queue_time_seconds", "Arrival to first scheduled (waiting queue).", ("model",), _LATENCY
)
PROMPT_TOKENS = REGISTRY.counter("quiver_llm_prompt_tokens_total", "Prompt tokens of finished sequences.", ("model",))
GENERATION_TOKENS = REGISTRY.counter("quiver_llm_generation_tokens_total", "Generated tokens.", ("model",))
REQUESTS = REGISTRY.counter(
    "quiver_llm_sequences_finished_total", "Finished sequences by reason.", ("model", "finish_reason")
)
PREEMPTIONS = REGISTRY.counter("quiver_llm_preemptions_total", "Sequences preempted (recomputed).", ("model",))
RUNNING = REGISTRY.gauge("quiver_llm_num_requests_running", "Sequences in the running batch.", ("model",))
WAITING = REGISTRY.gauge("quiver_llm_num_requests_waiting", "Sequences in the waiting queue.", ("model",))
KV_USAGE = REGISTRY.gauge("quiver_llm_kv_cache_usage_ratio", "Fraction of KV blocks held by sequences.", ("model",))
PREFIX_HIT = REGISTRY.gauge(
    "quiver_llm_prefix_cache_hit_rate", "Prompt tokens served by the prefix cache / prompt tokens.", ("model",)
)


def bind_gauges(
    model: str,
    running: Callable[[], float],
    waiting: Callable[[], float],
    kv_usage: Callable[[], float],
    prefix_hit_rate: Callable[[], float],
) -> None:
    RUNNING.labels(model).set_function(running)
    WAITING.labels(model).set_function(waiting)
    KV_USAGE.labels(model).set_function(kv_usage)
    PREFIX_HIT.labels(model).set_function(prefix_hit_rate)


def unbind(model: str) -> None:
    for family in (RUNNING, WAITING, KV_USAGE, PREFIX_HIT):
        family.remove(model)

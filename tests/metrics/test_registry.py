"""The Prometheus registry: text exposition checked line by line and by prometheus_client's own parser."""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from quiver.metrics import DEFAULT_BUCKETS, Counter, Gauge, Histogram, Registry


def parse(registry: Registry) -> dict[str, Any]:
    text = registry.render().decode()
    assert text.endswith("\n")
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for s in family.samples]


def test_counter_exposition() -> None:
    registry = Registry()
    requests = registry.counter("quiver_requests_total", "Inference requests by outcome.", ("model", "outcome"))
    requests.labels("mlp", "success").inc()
    requests.labels("mlp", "success").inc(2)
    requests.labels("mlp", "failure").inc(0.5)
    lines = registry.render().decode().splitlines()
    assert lines == [
        "# HELP quiver_requests_total Inference requests by outcome.",
        "# TYPE quiver_requests_total counter",
        'quiver_requests_total{model="mlp",outcome="failure"} 0.5',
        'quiver_requests_total{model="mlp",outcome="success"} 3',
    ]
    family = parse(registry)["quiver_requests"]
    assert family.type == "counter" and family.documentation == "Inference requests by outcome."
    assert samples(family) == [
        ("quiver_requests_total", {"model": "mlp", "outcome": "failure"}, 0.5),
        ("quiver_requests_total", {"model": "mlp", "outcome": "success"}, 3),
    ]


def test_unlabelled_metric_has_no_braces() -> None:
    registry = Registry()
    registry.counter("up_total", "Up.").labels().inc()
    assert "up_total 1\n" in registry.render().decode()
    assert samples(parse(registry)["up"]) == [("up_total", {}, 1)]


def test_family_without_children_renders_only_help_and_type() -> None:
    registry = Registry()
    registry.gauge("idle", "Nothing yet.", ("model",))
    assert registry.render() == b"# HELP idle Nothing yet.\n# TYPE idle gauge\n"
    assert samples(parse(registry)["idle"]) == []


def test_gauge_set_inc_dec() -> None:
    registry = Registry()
    gauge = registry.gauge("quiver_in_flight", "Requests in flight.", ("model",))
    child = gauge.labels("a")
    child.set(5)
    child.inc()
    child.dec(2.5)
    gauge.labels("b").set(-1)
    family = parse(registry)["quiver_in_flight"]
    assert family.type == "gauge"
    assert samples(family) == [
        ("quiver_in_flight", {"model": "a"}, 3.5),
        ("quiver_in_flight", {"model": "b"}, -1),
    ]


def test_gauge_set_function_is_read_at_scrape_time() -> None:
    registry = Registry()
    depth = [0]
    registry.gauge("quiver_queue_depth", "Queued.", ("model",)).labels("m").set_function(lambda: depth[0])
    assert samples(parse(registry)["quiver_queue_depth"]) == [("quiver_queue_depth", {"model": "m"}, 0)]
    depth[0] = 7
    assert samples(parse(registry)["quiver_queue_depth"]) == [("quiver_queue_depth", {"model": "m"}, 7)]


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count() -> None:
    registry = Registry()
    histogram = registry.histogram("latency_seconds", "Latency.", ("model",), buckets=(0.5, 0.1, 1.0))
    child = histogram.labels("m")
    for value in (0.05, 0.1, 0.3, 0.5, 0.7, 2.0, 3.0):  # 0.1 and 0.5 sit exactly on a bound: le is inclusive
        child.observe(value)
    lines = registry.render().decode().splitlines()
    assert lines == [
        "# HELP latency_seconds Latency.",
        "# TYPE latency_seconds histogram",
        'latency_seconds_bucket{model="m",le="0.1"} 2',
        'latency_seconds_bucket{model="m",le="0.5"} 4',
        'latency_seconds_bucket{model="m",le="1"} 5',
        'latency_seconds_bucket{model="m",le="+Inf"} 7',
        'latency_seconds_sum{model="m"} 6.65',
        'latency_seconds_count{model="m"} 7',
    ]
    family = parse(registry)["latency_seconds"]
    assert family.type == "histogram"
    buckets = [(s.labels["le"], s.value) for s in family.samples if s.name.endswith("_bucket")]
    assert buckets == [("0.1", 2), ("0.5", 4), ("1", 5), ("+Inf", 7)]
    values = {s.name: s.value for s in family.samples if not s.name.endswith("_bucket")}
    assert values["latency_seconds_count"] == 7
    assert values["latency_seconds_sum"] == pytest.approx(6.65)


def test_histogram_default_buckets_and_empty_child() -> None:
    registry = Registry()
    histogram = registry.histogram("h", "H.")
    assert histogram.buckets == DEFAULT_BUCKETS
    child = histogram.labels()
    family = parse(registry)["h"]
    bucket_samples = [s for s in family.samples if s.name == "h_bucket"]
    assert len(bucket_samples) == len(DEFAULT_BUCKETS) + 1
    assert all(s.value == 0 for s in bucket_samples)
    child.observe(0.0001)  # the smallest bound, inclusive
    child.observe(100)
    family = parse(registry)["h"]
    counts = {s.labels["le"]: s.value for s in family.samples if s.name == "h_bucket"}
    assert counts["0.0001"] == 1 and counts["10"] == 1 and counts["+Inf"] == 2


def test_label_values_are_escaped() -> None:
    registry = Registry()
    tricky = 'back\\slash "quoted"\nnew line'
    registry.counter("c_total", "C.", ("model",)).labels(tricky).inc()
    registry.histogram("h", "H.", ("model",), buckets=(1.0,)).labels(tricky).observe(0.5)
    text = registry.render().decode()
    assert 'c_total{model="back\\\\slash \\"quoted\\"\\nnew line"} 1' in text
    families = parse(registry)
    assert samples(families["c"]) == [("c_total", {"model": tricky}, 1)]
    assert all(s.labels["model"] == tricky for s in families["h"].samples)


def test_help_text_is_escaped() -> None:
    registry = Registry()
    registry.gauge("g", "Line one\nline two with a back\\slash.").labels().set(1)
    text = registry.render().decode()
    assert "# HELP g Line one\\nline two with a back\\\\slash.\n" in text
    assert parse(registry)["g"].documentation == "Line one\nline two with a back\\slash."


@pytest.mark.parametrize(
    ("value", "text"),
    [(3.0, "3"), (0.25, "0.25"), (1e-7, "1e-07"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN")],
)
def test_values_use_prometheus_number_syntax(value: float, text: str) -> None:
    registry = Registry()
    registry.gauge("g", "G.").labels().set(value)
    assert registry.render().decode().splitlines()[-1] == f"g {text}"
    (sample,) = parse(registry)["g"].samples
    assert sample.value == value or (math.isnan(value) and math.isnan(sample.value))


def test_same_name_returns_the_same_family_and_kind_conflicts_are_refused() -> None:
    registry = Registry()
    counter = registry.counter("x_total", "X.", ("a",))
    assert registry.counter("x_total", "X.", ("a",)) is counter
    assert isinstance(counter, Counter)
    assert isinstance(registry.gauge("g", "G."), Gauge) and isinstance(registry.histogram("h", "H."), Histogram)
    with pytest.raises(ValueError, match="already registered as a counter"):
        registry.gauge("x_total", "X.")


def test_wrong_label_count_is_refused() -> None:
    counter = Registry().counter("x_total", "X.", ("model", "version"))
    with pytest.raises(ValueError, match="expected labels"):
        counter.labels("only-model")


def test_children_are_reused_and_removable() -> None:
    registry = Registry()
    counter = registry.counter("x_total", "X.", ("model",))
    assert counter.labels("a") is counter.labels("a")
    counter.labels("a").inc()
    counter.labels("b").inc()
    counter.remove("a")
    counter.remove("never-there")
    assert samples(parse(registry)["x"]) == [("x_total", {"model": "b"}, 1)]


def test_families_render_in_registration_order_and_all_parse() -> None:
    registry = Registry()
    registry.gauge("b_gauge", "B.", ("m",)).labels("z").set(1)
    registry.counter("a_total", "A.", ("m",)).labels("y").inc()
    registry.histogram("c_seconds", "C.", ("m", "v"), buckets=(0.1,)).labels("x", "1").observe(0.2)
    text = registry.render().decode()
    assert text.index("b_gauge") < text.index("a_total") < text.index("c_seconds")
    assert [f.name for f in text_string_to_metric_families(text)] == ["b_gauge", "a", "c_seconds"]

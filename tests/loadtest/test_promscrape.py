from __future__ import annotations

import math

import pytest

from quiver.loadtest.promscrape import Histogram, histograms, parse, server_split
from quiver.metrics import Registry


def _registry() -> tuple[Registry, object, object]:
    reg = Registry()
    queue = reg.histogram("quiver_queue_duration_seconds", "q", ("model", "version"))
    compute = reg.histogram("quiver_compute_duration_seconds", "c", ("model", "version"))
    return reg, queue, compute


def test_split_is_the_difference_between_two_scrapes() -> None:
    reg, queue, compute = _registry()
    queue.labels("m", "1").observe(5.0)  # before the measurement: must not count
    before = reg.render().decode()
    for _ in range(100):
        queue.labels("m", "1").observe(0.002)
        compute.labels("m", "1").observe(0.004)
    queue.labels("other", "1").observe(1.0)
    split = server_split(before, reg.render().decode(), "m")
    assert split is not None
    assert split["queue"]["count"] == 100
    assert split["queue"]["mean"] == pytest.approx(2.0)
    assert split["compute"]["mean"] == pytest.approx(4.0)
    assert 1.0 <= split["queue"]["p50"] <= 2.5  # inside the (1 ms, 2.5 ms] bucket
    assert server_split(before, reg.render().decode(), "absent") is None


def test_parse_reads_labels_and_special_values() -> None:
    samples = parse('# HELP x y\nx_bucket{le="+Inf",model="a \\"b\\""} 3\nup 1\nbad line\n')
    assert samples[0][0] == "x_bucket"
    assert dict(samples[0][1])["le"] == "+Inf"
    h = histograms(samples, "x", {})
    assert h.buckets == {math.inf: 3.0}


def test_quantile_interpolates_within_a_bucket() -> None:
    h = Histogram({0.1: 50.0, 0.2: 100.0, math.inf: 100.0}, sum=12.0, count=100.0)
    assert h.quantile(0.5) == pytest.approx(0.1)
    assert h.quantile(0.75) == pytest.approx(0.15)
    assert math.isnan(Histogram().quantile(0.5))

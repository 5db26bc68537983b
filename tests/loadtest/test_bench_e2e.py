"""The load generator end to end: real sockets against the local responder and the real Quiver server."""

from __future__ import annotations

import csv
import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from quiver.cli import main
from quiver.loadtest import Arrivals, Endpoint, LoadSpec, WindowSpec, measure, openai_workload, v2_workload
from quiver.loadtest.responder import ResponderConfig, SimConfig

QUICK = WindowSpec(warmup_s=0.2, window_s=0.4, min_windows=2, max_windows=3, stable_count=2, tolerance=0.5)


def test_closed_loop_against_a_trivial_responder(responder: Callable[..., Endpoint]) -> None:
    endpoint = responder()
    m = measure(endpoint, v2_workload(endpoint, "model"), LoadSpec(concurrency=4), QUICK)
    assert m.summary.errors == {}
    assert m.summary.ok > 100
    assert 0 < m.summary.latency_ms["p50"] <= m.summary.latency_ms["p99"] <= m.summary.latency_ms["max"]
    assert m.client["cpu_us_per_request"] > 0
    assert 2 <= len(m.windows) <= 3


def test_open_loop_sends_the_offered_rate_and_measures_queueing(responder: Callable[..., Endpoint]) -> None:
    sim = SimConfig(base_ms=4.0, per_item_ms=0.0, instances=1, max_batch=1, jitter_sigma=0.0)
    endpoint = responder(ResponderConfig(sim=sim))
    workload = v2_workload(endpoint, "model")
    light = measure(endpoint, workload, LoadSpec(arrivals=Arrivals(50.0, "constant")), QUICK, slo_ms=20.0)
    assert light.summary.throughput_rps == pytest.approx(50.0, rel=0.15)
    assert light.summary.latency_ms["p50"] == pytest.approx(4.5, abs=2.0)
    assert light.summary.goodput_rps == pytest.approx(light.summary.throughput_rps)
    # Offered 400/s to a server that does 250/s: latency from the *scheduled* time grows without bound.
    heavy = measure(endpoint, workload, LoadSpec(arrivals=Arrivals(400.0, "constant")), QUICK, slo_ms=20.0)
    assert heavy.summary.throughput_rps < 300
    assert heavy.summary.latency_ms["p99"] > 100
    assert heavy.summary.goodput_rps is not None and heavy.summary.goodput_rps < heavy.summary.throughput_rps
    assert heavy.unfinished > 0


def test_server_split_from_quiver_style_metrics(responder: Callable[..., Endpoint]) -> None:
    sim = SimConfig(base_ms=2.0, per_item_ms=0.5, max_batch=8, max_queue_delay_ms=2.0, jitter_sigma=0.0)
    endpoint = responder(ResponderConfig(sim=sim))
    m = measure(endpoint, v2_workload(endpoint, "model"), LoadSpec(concurrency=8), QUICK, metrics_model="model")
    assert m.server is not None
    assert m.server["batch_size"]["mean"] > 2
    assert m.server["compute"]["mean"] == pytest.approx(2.0 + 0.5 * m.server["batch_size"]["mean"], rel=0.35)
    assert m.server["server"]["mean"] <= m.summary.latency_ms["mean"] * 1.1


def test_errors_by_kind(responder: Callable[..., Endpoint]) -> None:
    endpoint = responder()
    wrong = Endpoint(endpoint.host, endpoint.port, "/nowhere")
    meta = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]}
    m = measure(wrong, v2_workload(wrong, "model", metadata=meta), LoadSpec(concurrency=2), QUICK)
    assert set(m.summary.errors) == {"http_404"} and m.summary.ok == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = Endpoint("127.0.0.1", sock.getsockname()[1])  # bound, not listening: refused
        m = measure(closed, v2_workload(closed, "model", metadata=meta), LoadSpec(concurrency=1), QUICK)
    assert "connect_error" in m.summary.errors
    slow = responder(ResponderConfig(sim=SimConfig(base_ms=300.0, jitter_sigma=0.0)))
    m = measure(slow, v2_workload(slow, "model"), LoadSpec(concurrency=2, timeout_s=0.05), QUICK)
    assert m.summary.errors.get("timeout", 0) > 0


def test_streaming_reports_time_to_first_token(responder: Callable[..., Endpoint]) -> None:
    endpoint = responder(ResponderConfig(tokens=5, inter_token_ms=10.0))
    stream = measure(endpoint, openai_workload(endpoint, "m", chat=True, stream=True), LoadSpec(concurrency=2), QUICK)
    assert stream.summary.errors == {}
    ttft, total = stream.summary.ttft_ms["p50"], stream.summary.latency_ms["p50"]
    assert ttft >= 9.0  # the first content token comes one inter-token delay after the role chunk
    assert total >= 45.0 and ttft < total
    plain = measure(endpoint, openai_workload(endpoint, "m", chat=False, stream=False), LoadSpec(concurrency=2), QUICK)
    assert plain.summary.ok > 0 and plain.summary.ttft_ms == {}


def test_two_client_processes_share_the_load(responder: Callable[..., Endpoint]) -> None:
    endpoint = responder()
    load = LoadSpec(arrivals=Arrivals(300.0, "poisson", seed=5))
    m = measure(endpoint, v2_workload(endpoint, "model"), load, QUICK, processes=2)
    assert m.summary.throughput_rps == pytest.approx(300.0, rel=0.25)
    assert m.summary.errors == {}


def test_cli_writes_json_csv_and_html(responder: Callable[..., Endpoint], tmp_path: Path) -> None:
    endpoint = responder()
    out = tmp_path / "r"
    code = main(
        [
            "bench",
            f"http://{endpoint.authority}",
            "--model",
            "model",
            "--concurrency",
            "1,2",
            "--warmup-s",
            "0.1",
            "--window-s",
            "0.3",
            "--min-windows",
            "1",
            "--max-windows",
            "2",
            "--slo-ms",
            "50",
            "--quiet",
            "--json",
            f"{out}.json",
            "--csv",
            f"{out}.csv",
            "--html",
            f"{out}.html",
        ]
    )
    assert code == 0
    data = json.loads(Path(f"{out}.json").read_text())
    assert [r["load"] for r in data["results"]] == ["closed loop, concurrency 1", "closed loop, concurrency 2"]
    rows = list(csv.DictReader(Path(f"{out}.csv").read_text().splitlines()))
    assert len(rows) == 2 and float(rows[1]["throughput_rps"]) > 0 and float(rows[0]["goodput_rps"]) > 0
    assert "<svg" in Path(f"{out}.html").read_text()


def test_cli_explains_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "http://127.0.0.1:1", "--model", "m"]) == 2
    assert "exactly one of --concurrency" in capsys.readouterr().err


def test_against_the_real_quiver_server(mlp_repo: Path, server_factory: Callable[..., object]) -> None:
    server = server_factory(mlp_repo)
    endpoint = Endpoint.parse(server.url)  # type: ignore[attr-defined]
    workload = v2_workload(endpoint, "mlp")  # random FP32 [1, 30] from the model's metadata
    m = measure(endpoint, workload, LoadSpec(concurrency=4), QUICK, metrics_model="mlp")
    assert m.summary.errors == {} and m.summary.ok > 50
    assert m.server is not None and {"queue", "compute", "server"} <= set(m.server)
    assert m.server["server"]["mean"] <= m.summary.latency_ms["mean"]

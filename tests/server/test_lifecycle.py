"""Loading, reloading and unloading while traffic flows; failures stay contained."""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from quiver.zoo.tabular import random_mlp_onnx
from support import ServerProcess, ServerThread, write_model

SLOW_MODEL = """
import time
import numpy as np

class Model:
    def load(self, version_dir):
        self.version = float(version_dir.name)

    def predict(self, inputs):
        time.sleep({delay})
        x = inputs["x"]
        return {{"y": np.full(x.shape, self.version, dtype=np.float32)}}
"""

SLOW_CONFIG = """
runtime = "python"
max_batch_size = 4
version_policy = {{ latest = 1 }}
[[inputs]]
name = "x"
datatype = "FP32"
shape = [-1, 1]
[[outputs]]
name = "y"
datatype = "FP32"
shape = [-1, 1]
"""


def write_slow_model(repo: Path, version: int, delay: float = 0.05, name: str = "slow") -> None:
    folder = repo / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(SLOW_MODEL.format(delay=delay))
    (repo / name / "config.toml").write_text(SLOW_CONFIG.format())


def _post(url: str, doc: Any, timeout: float = 30) -> tuple[int, Any]:
    req = urllib.request.Request(url, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _x(value: float = 0.0) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [value]}]}


def test_reload_new_version_under_traffic_fails_nothing(tmp_path: Path, server_factory: Any) -> None:
    write_slow_model(tmp_path, 1)
    server: ServerThread = server_factory(tmp_path)
    url = server.url + "/v2/models/slow/infer"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_post, url, _x()) for _ in range(40)]
        time.sleep(0.1)
        write_slow_model(tmp_path, 2)
        assert _post(server.url + "/v2/repository/models/slow/load", {})[0] == 200
        futures += [pool.submit(_post, url, _x()) for _ in range(20)]
        results = [f.result() for f in futures]
    assert all(status == 200 for status, _ in results), [r for r in results if r[0] != 200]
    versions = {doc["model_version"] for _, doc in results}
    assert versions == {"1", "2"}
    # after the reload only version 2 is served (latest = 1), and the index says so
    _status, doc = _post(url, _x())
    assert doc["outputs"][0]["data"] == [2.0]
    _, index = _get(server.url + "/v2/repository/index")
    assert [(r["name"], r["version"], r["state"]) for r in index] == [("slow", "2", "READY")]


def test_unload_drains_in_flight_requests(tmp_path: Path, server_factory: Any) -> None:
    write_slow_model(tmp_path, 1, delay=0.2)
    server: ServerThread = server_factory(tmp_path)
    url = server.url + "/v2/models/slow/infer"
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(_post, url, _x()) for _ in range(6)]
        time.sleep(0.1)
        assert _post(server.url + "/v2/repository/models/slow/unload", {})[0] == 200
        results = [f.result() for f in futures]
    assert [status for status, _ in results] == [200] * 6
    status, doc = _post(url, _x())
    assert status == 404 and "unknown model 'slow'" in doc["error"]
    # and it can come back
    assert _post(server.url + "/v2/repository/models/slow/load", {})[0] == 200
    assert _post(url, _x())[0] == 200


def test_a_broken_model_does_not_take_others_down(tmp_path: Path, server_factory: Any) -> None:
    write_model(tmp_path, "good", random_mlp_onnx((30, 8, 2)))
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    (tmp_path / "badconfig" / "1").mkdir(parents=True)
    (tmp_path / "badconfig" / "config.toml").write_text("max_batch_size = 'lots'\n")
    server: ServerThread = server_factory(tmp_path)
    status, body = _get(server.url + "/v2/health/ready")
    assert status == 200
    reasons = {r["name"]: r["reason"] for r in body["unavailable_models"]}
    assert "ONNX Runtime cannot load it" in reasons["broken"]
    assert "field 'max_batch_size' must be int" in reasons["badconfig"]
    assert str(tmp_path / "badconfig" / "config.toml") in reasons["badconfig"]
    status, doc = _get(server.url + "/v2/models/broken/ready")
    assert status == 503 and "ONNX Runtime cannot load it" in doc["error"]
    status, _ = _get(server.url + "/v2/models/good/ready")
    assert status == 200
    status, doc = _post(server.url + "/v2/repository/models/badconfig/load", {})
    assert status == 400 and "max_batch_size" in doc["error"]


def test_strict_readiness(tmp_path: Path, server_factory: Any) -> None:
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"junk")
    server: ServerThread = server_factory(tmp_path, strict_readiness=True)
    assert _get(server.url + "/v2/health/ready")[0] == 503


def test_failed_reload_keeps_serving_the_old_version(tmp_path: Path, server_factory: Any) -> None:
    write_model(tmp_path, "m", random_mlp_onnx((30, 8, 2)))
    server: ServerThread = server_factory(tmp_path)
    (tmp_path / "m" / "1" / "model.onnx").write_bytes(b"corrupt")
    status, doc = _post(server.url + "/v2/repository/models/m/load", {})
    assert status == 400 and "failed to load" in doc["error"]
    body = {"inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]}
    assert _post(server.url + "/v2/models/m/infer", body)[0] == 200


def test_metrics_and_stats(tmp_path: Path, server_factory: Any) -> None:
    # metrics are process-wide: a model name no other test uses keeps the counts exact
    write_slow_model(tmp_path, 1, delay=0.0, name="counted")
    server: ServerThread = server_factory(tmp_path)
    for _ in range(3):
        _post(server.url + "/v2/models/counted/infer", _x())
    with urllib.request.urlopen(server.url + "/metrics") as resp:
        text = resp.read().decode()
    assert 'quiver_requests_total{model="counted",version="1",outcome="success"} 3' in text
    for family in (
        "quiver_request_duration_seconds",
        "quiver_queue_duration_seconds",
        "quiver_compute_duration_seconds",
        "quiver_batch_size",
    ):
        assert f'{family}_count{{model="counted",version="1"}} ' in text
    assert 'quiver_queue_depth{model="counted",version="1"} 0' in text
    status, stats = _get(server.url + "/v2/models/counted/stats")
    assert status == 200 and stats["model_stats"][0]["success_count"] == 3


def test_sigterm_finishes_in_flight_requests_then_exits_zero(tmp_path: Path) -> None:
    write_slow_model(tmp_path, 1, delay=0.5)
    with ServerProcess(tmp_path) as server, concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(_post, server.url + "/v2/models/slow/infer", _x()) for _ in range(4)]
        time.sleep(0.2)
        assert server.stop() == 0
        assert [f.result()[0] for f in futures] == [200] * 4


@pytest.mark.parametrize(
    "policy,expected", [("{ all = true }", ["1", "2", "3"]), ("{ specific = [1, 3] }", ["1", "3"])]
)
def test_version_policies(tmp_path: Path, server_factory: Any, policy: str, expected: list[str]) -> None:
    for version in (1, 2, 3):
        write_model(tmp_path, "m", random_mlp_onnx((30, 8, 2), seed=version), version=version)
    (tmp_path / "m" / "config.toml").write_text(f"version_policy = {policy}\n")
    server: ServerThread = server_factory(tmp_path)
    _, meta = _get(server.url + "/v2/models/m")
    assert meta["versions"] == expected
    body = {"inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]}
    status, doc = _post(server.url + f"/v2/models/m/versions/{expected[0]}/infer", body)
    assert status == 200 and doc["model_version"] == expected[0]


def test_poll_reloads_changed_models(tmp_path: Path) -> None:
    write_slow_model(tmp_path, 1, delay=0.0)
    with ServerProcess(tmp_path, "--poll-interval-s", "0.2") as server:
        assert _post(server.url + "/v2/models/slow/infer", _x())[1]["model_version"] == "1"
        write_slow_model(tmp_path, 2, delay=0.0)
        deadline = time.monotonic() + 15
        version = "1"
        while version != "2" and time.monotonic() < deadline:
            time.sleep(0.2)
            version = _post(server.url + "/v2/models/slow/infer", _x())[1]["model_version"]
        assert version == "2"
        assert server.stop() == 0

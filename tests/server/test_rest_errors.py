"""Every kind of bad input gets a 4xx naming the problem, and the server keeps serving."""

from __future__ import annotations

import gzip
import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from support import ServerThread


def _request(
    server: ServerThread, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=10)
    conn.request(method, path, body, headers or {})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    doc = json.loads(raw) if raw and resp.getheader("content-type", "").startswith("application/json") else raw
    return resp.status, doc, dict(resp.getheaders())


def _tensor(shape: list[int], data: Any, name: str = "features", datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


BAD = [
    ("malformed JSON", b'{"inputs": [', 400, "malformed JSON"),
    ("no inputs", b"{}", 400, "non-empty 'inputs'"),
    (
        "misnamed input",
        json.dumps({"inputs": [_tensor([1, 30], [0.0] * 30, name="x")]}).encode(),
        400,
        "has no input 'x'; its inputs are: features",
    ),
    (
        "extra input",
        json.dumps({"inputs": [_tensor([1, 30], [0.0] * 30), _tensor([1], [1.0], name="y")]}).encode(),
        400,
        "has no input 'y'",
    ),
    (
        "wrong datatype",
        json.dumps({"inputs": [_tensor([1, 30], [0] * 30, datatype="INT64")]}).encode(),
        400,
        "expected datatype FP32, got INT64",
    ),
    (
        "shape vs data",
        json.dumps({"inputs": [_tensor([1, 30], [0.0] * 29)]}).encode(),
        400,
        "shape holds 30 elements but data has 29",
    ),
    (
        "shape vs model",
        json.dumps({"inputs": [_tensor([1, 29], [0.0] * 29)]}).encode(),
        400,
        r"expected shape [-1, 30], got [1, 29]",
    ),
    ("ragged", json.dumps({"inputs": [_tensor([2, 30], [[0.0] * 30, [0.0] * 29])]}).encode(), 400, "ragged"),
    (
        "strings as FP32",
        json.dumps({"inputs": [_tensor([1, 2], ["a", "b"])]}).encode(),
        400,
        "FP32 data must be numbers",
    ),
    (
        "unknown output",
        json.dumps({"inputs": [_tensor([1, 30], [0.0] * 30)], "outputs": [{"name": "nope"}]}).encode(),
        400,
        "has no output 'nope'",
    ),
    (
        "too many rows",
        json.dumps({"inputs": [_tensor([9, 30], [0.0] * 270)]}).encode(),
        400,
        "carries 9 rows but max_batch_size is 8",
    ),
    (
        "unknown datatype",
        json.dumps({"inputs": [_tensor([1, 30], [0.0] * 30, datatype="FP8")]}).encode(),
        400,
        "unknown datatype 'FP8'",
    ),
]


@pytest.mark.parametrize(("label", "body", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input(server_factory: Any, mlp_repo: Path, label: str, body: bytes, status: int, message: str) -> None:
    server = server_factory(mlp_repo)
    code, doc, _ = _request(server, "POST", "/v2/models/mlp/infer", body)
    assert code == status, doc
    assert message in doc["error"]
    # the server keeps serving
    ok, _, _ = _request(
        server,
        "POST",
        "/v2/models/mlp/infer",
        json.dumps({"inputs": [_tensor([1, 30], [0.0] * 30)]}).encode(),
    )
    assert ok == 200


def test_binary_sizes_that_do_not_add_up(server_factory: Any, mlp_repo: Path) -> None:
    server = server_factory(mlp_repo)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, 30],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 120},
                }
            ]
        }
    ).encode()
    body = header + b"\0" * 100
    code, doc, _ = _request(
        server, "POST", "/v2/models/mlp/infer", body, {"Inference-Header-Content-Length": str(len(header))}
    )
    assert code == 400
    assert "runs past the 100 bytes" in doc["error"]
    code, doc, _ = _request(
        server,
        "POST",
        "/v2/models/mlp/infer",
        header + b"\0" * 124,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert code == 400
    assert "add up to 120 bytes, but 124 bytes follow" in doc["error"]


def test_unknown_model_and_version(server_factory: Any, mlp_repo: Path) -> None:
    server = server_factory(mlp_repo)
    code, doc, _ = _request(server, "GET", "/v2/models/ghost")
    assert code == 404
    assert "unknown model 'ghost'" in doc["error"]
    code, doc, _ = _request(server, "GET", "/v2/models/mlp/versions/7")
    assert code == 404
    assert "no ready version '7'" in doc["error"]
    code, _, _ = _request(server, "GET", "/v2/models/mlp/versions/7/ready")
    assert code == 404


def test_body_over_limit_is_413(server_factory: Any, mlp_repo: Path) -> None:
    server = server_factory(mlp_repo, max_body_mb=0.001)
    code, doc, _ = _request(server, "POST", "/v2/models/mlp/infer", b"x" * 2000)
    assert code == 413
    assert "exceeds the limit of 1048 bytes" in doc["error"]


def test_gzip_request_body(server_factory: Any, mlp_repo: Path) -> None:
    server = server_factory(mlp_repo)
    body = gzip.compress(json.dumps({"inputs": [_tensor([1, 30], [0.0] * 30)]}).encode())
    code, doc, _ = _request(server, "POST", "/v2/models/mlp/infer", body, {"Content-Encoding": "gzip"})
    assert code == 200, doc


def test_timeout_header_and_priority(server_factory: Any, mlp_repo: Path) -> None:
    server = server_factory(mlp_repo)
    body = json.dumps({"inputs": [_tensor([1, 30], [0.0] * 30)], "parameters": {"priority": 1}}).encode()
    code, _, _ = _request(server, "POST", "/v2/models/mlp/infer", body, {"Quiver-Timeout-Ms": "1000"})
    assert code == 200
    code, doc, _ = _request(server, "POST", "/v2/models/mlp/infer", body, {"Quiver-Timeout-Ms": "soon"})
    assert code == 400 and "Quiver-Timeout-Ms" in doc["error"]
    bad = json.dumps({"inputs": [_tensor([1, 30], [0.0] * 30)], "parameters": {"priority": 5}}).encode()
    code, doc, _ = _request(server, "POST", "/v2/models/mlp/infer", bad)
    assert code == 400 and "priority 5 is out of range" in doc["error"]

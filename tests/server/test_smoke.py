from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any


def _post(url: str, doc: Any) -> Any:
    req = urllib.request.Request(url, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def test_infer_roundtrip(server_factory: Any, mlp_repo: Path) -> None:
    server = server_factory(mlp_repo)
    out = _post(
        server.url + "/v2/models/mlp/infer",
        {"inputs": [{"name": "features", "shape": [2, 30], "datatype": "FP32", "data": [0.5] * 60}]},
    )
    assert out["model_name"] == "mlp"
    assert [o["name"] for o in out["outputs"]] == ["probabilities", "label"]
    assert out["outputs"][0]["shape"] == [2, 2]

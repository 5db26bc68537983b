"""A variant written by ``quiver optimize`` is served by ``quiver serve`` (a real process) and, queried over
HTTP with the V2 protocol, gives the accuracy recorded in its variant.json."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from quiver.optimize import Settings, optimize_artifact
from quiver.optimize.data import Dataset
from quiver.optimize.metrics import score
from quiver.optimize.sources import from_torch
from support import ServerProcess

pytestmark = pytest.mark.e2e


def _infer(url: str, model: str, version: int, x: np.ndarray) -> np.ndarray:
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}],
        "outputs": [{"name": "probabilities"}],
    }
    req = urllib.request.Request(
        f"{url}/v2/models/{model}/versions/{version}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        out = json.loads(resp.read())["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def test_served_variant_gives_recorded_accuracy(
    mlp: object, tabular: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = tabular
    src = from_torch(mlp, {"input": x[:2]}, tmp_path / "work", "classification", ("probabilities",))
    data = Dataset({"input": x[300:]}, y[300:])
    settings = Settings(
        budget_s=0.05,
        batch_sizes=(1, 16),
        progress=False,
        isolate=False,
        min_speedup=1.0,
        max_drop=5.0,
        allow_size_only=True,
    )  # sparsify is always kept (as size-only): a non-baseline version exists
    optimize_artifact(
        src,
        data,
        tmp_path / "repo",
        name="fraud",
        recipes=["prune:sparsity=0.5,steps=30", "sparsify:sparsity=0.8"],
        train_data=Dataset({"input": x[:300]}),
        settings=settings,
        workdir=tmp_path / "work",
    )
    index = json.loads((tmp_path / "repo" / "fraud" / "variants.json").read_text())
    assert len(index["versions"]) >= 2, index["rejected"]
    record = index["versions"][-1]
    with ServerProcess(tmp_path / "repo") as server:
        server.wait_ready()
        probs = np.concatenate(
            [_infer(server.url, "fraud", record["version"], x[i : i + 16]) for i in range(300, len(x), 16)]
        )
        base = np.concatenate([_infer(server.url, "fraud", 1, x[i : i + 16]) for i in range(300, len(x), 16)])
    served = score("classification", probs, base, y[300:])
    assert served.primary == record["metrics"]["primary"] == "roc_auc"
    assert served.value == pytest.approx(record["metrics"]["roc_auc"], abs=1e-3)
    assert served.values["accuracy"] == pytest.approx(record["metrics"]["accuracy"], abs=1e-3)

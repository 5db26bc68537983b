"""The benchmark's two models, their Quiver repository, and the V2 JSON payload every server receives.

- ``mlp``: tabular MLP 30 -> 256 -> 256 -> 2 (ReLU), FP32, seeded random weights, dynamic batch dim.
  Input ``features`` [batch, 30] FP32, output ``logits`` [batch, 2] FP32.
- ``minilm``: all-MiniLM-L6-v2 sentence embeddings at sequence length 128 (``quiver.zoo.minilm``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from quiver.zoo.layout import write_model_entry
from quiver.zoo.minilm import MINILM_SEQ_LEN, example_inputs, export_minilm_onnx

MLP_SEED = 20240611
MLP_SIZES = (30, 256, 256, 2)


@dataclass(frozen=True)
class BenchModel:
    """One model as the benchmark uses it: its ONNX file, the payload and the numpy feeds it encodes."""

    name: str
    onnx_path: Path
    payload: bytes  # the V2 JSON body every server receives
    feeds: dict[str, np.ndarray]  # the same tensors, batch 1, for checks and the in-process baseline
    output: str


def build_mlp() -> onnx.ModelProto:
    """Gemm -> Relu -> Gemm -> Relu -> Gemm, He-initialized from a fixed seed."""
    rng = np.random.default_rng(MLP_SEED)
    initializers, nodes = [], []
    current = "features"
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(MLP_SIZES)):
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        initializers += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(MLP_SIZES) - 2
        gemm_out = "logits" if last else f"h{i}_pre"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [gemm_out]))  # [batch, fan_out]
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"h{i}"]))
            current = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", MLP_SIZES[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", MLP_SIZES[-1]])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="quiver-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def v2_payload(feeds: dict[str, np.ndarray]) -> bytes:
    inputs = [
        {"name": name, "shape": list(a.shape), "datatype": _V2_TYPES[a.dtype.name], "data": a.ravel().tolist()}
        for name, a in feeds.items()
    ]
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


_V2_TYPES = {"float32": "FP32", "float64": "FP32", "int64": "INT64"}  # float64 rows are sent as FP32


def prepare_models(out: Path, names: tuple[str, ...] = ("mlp", "minilm")) -> dict[str, BenchModel]:
    """Build each model's ONNX file under ``out`` (deterministic, a few seconds) and its payload."""
    models: dict[str, BenchModel] = {}
    if "mlp" in names:
        path = out / "mlp" / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(build_mlp(), str(path))
        # Four decimals, like a real feature row; float32(round(x)) is exactly what every server parses.
        row = np.round(np.random.default_rng(7).standard_normal((1, MLP_SIZES[0])), 4)  # [1, 30]
        payload = v2_payload({"features": row})
        x = row.astype(np.float32)
        models["mlp"] = BenchModel("mlp", path, payload, {"features": x}, "logits")
    if "minilm" in names:
        path = out / "minilm" / "model.onnx"
        export_minilm_onnx(path.parent, seq_len=MINILM_SEQ_LEN)
        ids, mask = example_inputs(batch=1, seq_len=MINILM_SEQ_LEN, seed=11)
        feeds = {"input_ids": ids, "attention_mask": mask}
        models["minilm"] = BenchModel("minilm", path, v2_payload(feeds), feeds, "embedding")
    return models


def write_quiver_repo(repo: Path, models: dict[str, BenchModel], configs: dict[str, dict[str, Any]]) -> Path:
    """A Quiver model repository holding each model with its config (``None`` -> no config.toml)."""
    for name, model in models.items():
        write_model_entry(repo, name, model.onnx_path, config=configs.get(name))
    return repo

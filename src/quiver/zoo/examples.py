"""The built-in example repository, generated offline and deterministically.

- ``fraud``: a fraud-detection MLP trained here on synthetic card transactions (ONNX Runtime).
- ``recommender``: a heavier two-tower style model: 50k-item embedding table, history pooling, an MLP
  and a normalised 64-d user embedding (ONNX Runtime, integer inputs).
- ``risk_rules``: hand-written rules over the same transaction features (the plain Python runtime).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from quiver.zoo.tabular import make_fraud_data, mlp_to_onnx, train_mlp

EXAMPLES_VERSION = "1"  # bump when the examples change, so cached copies are rebuilt

_FRAUD_CONFIG = """\
# A fraud-detection classifier: 30 transaction features in, class probabilities and a label out.
max_batch_size = 64
max_queue_delay_ms = 0.0
queue_capacity = 1024
priority_levels = 2
instances = 1
threads_per_instance = 1
"""

_RECOMMENDER_CONFIG = """\
# A user tower: user id and the last 20 items viewed in, a normalised 64-d embedding out.
max_batch_size = 32
max_queue_delay_ms = 1.0
threads_per_instance = 1
"""

_RULES_CONFIG = """\
runtime = "python"
max_batch_size = 64

[[inputs]]
name = "features"
datatype = "FP32"
shape = [-1, 30]

[[outputs]]
name = "risk"
datatype = "FP32"
shape = [-1]
"""

_RULES_MODEL = '''\
"""Rules a fraud team might run beside the model: large amounts and unusual components add risk."""

import numpy as np


class Model:
    def load(self, version_dir):
        self.amount_threshold = 2.5

    def predict(self, inputs):
        x = inputs["features"]  # [batch, 30]
        risk = (x[:, 29] > self.amount_threshold) * 0.5 + (np.abs(x[:, 1:29]).max(axis=1) > 3.5) * 0.5
        return {"risk": risk.astype(np.float32)}
'''


def default_location() -> Path:
    base = os.environ.get("QUIVER_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "quiver")
    return Path(base) / f"example-repository-v{EXAMPLES_VERSION}"


def ensure_example_repository(path: Path | None = None) -> Path:
    """Build the example repository at ``path`` (default: a per-user cache) unless it is already there."""
    path = path or default_location()
    stamp = path / ".complete"
    if stamp.exists():
        return path
    staging = path.with_name(path.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    build_example_repository(staging)
    (staging / ".complete").write_text(EXAMPLES_VERSION)
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)
    return path


def build_example_repository(path: Path) -> None:
    _write(path / "fraud", _FRAUD_CONFIG, fraud_model())
    _write(path / "recommender", _RECOMMENDER_CONFIG, recommender_model())
    rules = path / "risk_rules"
    (rules / "1").mkdir(parents=True, exist_ok=True)
    (rules / "config.toml").write_text(_RULES_CONFIG)
    (rules / "1" / "model.py").write_text(_RULES_MODEL)


def _write(folder: Path, config: str, model: onnx.ModelProto) -> None:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(config)
    onnx.save(model, str(folder / "1" / "model.onnx"))


def fraud_model() -> onnx.ModelProto:
    return mlp_to_onnx(train_mlp(make_fraud_data(20000, seed=0)), name="fraud")


def recommender_model(items: int = 50_000, dim: int = 64, history: int = 20, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((items, dim)) * 0.1).astype(np.float32), "item_table"),
        numpy_helper.from_array((rng.standard_normal((10_000, dim)) * 0.1).astype(np.float32), "user_table"),
        numpy_helper.from_array((rng.standard_normal((2 * dim, 256)) / np.sqrt(2 * dim)).astype(np.float32), "w0"),
        numpy_helper.from_array(np.zeros(256, np.float32), "b0"),
        numpy_helper.from_array((rng.standard_normal((256, dim)) / 16).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(dim, np.float32), "b1"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Gather", ["item_table", "history"], ["items"]),  # [B, H, D]
        helper.make_node("ReduceMean", ["items"], ["pooled"], axes=[1], keepdims=0),  # [B, D]
        helper.make_node("Gather", ["user_table", "user_id"], ["user3"]),  # [B, 1, D]
        helper.make_node("Squeeze", ["user3", "axis1"], ["user"]),  # [B, D]
        helper.make_node("Concat", ["user", "pooled"], ["joint"], axis=1),  # [B, 2D]
        helper.make_node("Gemm", ["joint", "w0", "b0"], ["h0"]),
        helper.make_node("Relu", ["h0"], ["a0"]),
        helper.make_node("Gemm", ["a0", "w1", "b1"], ["h1"]),  # [B, D]
        helper.make_node("LpNormalization", ["h1"], ["embedding"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "recommender",
        [
            helper.make_tensor_value_info("user_id", TensorProto.INT64, ["batch", 1]),
            helper.make_tensor_value_info("history", TensorProto.INT64, ["batch", history]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="quiver")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model

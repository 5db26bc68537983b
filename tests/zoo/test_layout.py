from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from quiver.zoo.layout import to_toml, write_model_entry


def _identity_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_writes_layout_and_config(tmp_path: Path) -> None:
    config = {"max_batch_size": 64, "max_queue_delay_ms": 0.5, "instances": 2, "threads_per_instance": 1}
    model_dir = write_model_entry(tmp_path, "ident", _identity_model(), version=3, config=config)
    assert tomllib.loads((model_dir / "config.toml").read_text()) == config
    session = ort.InferenceSession(str(model_dir / "3" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x)


def test_no_config_means_no_file(tmp_path: Path) -> None:
    src = tmp_path / "src.onnx"
    onnx.save_model(_identity_model(), str(src))
    model_dir = write_model_entry(tmp_path / "repo", "ident", src)
    assert not (model_dir / "config.toml").exists()
    assert (model_dir / "1" / "model.onnx").read_bytes() == src.read_bytes()


def test_toml_values_round_trip() -> None:
    config = {"a": True, "b": 1, "c": 0.25, "d": 'say "hi" \\ there'}
    assert tomllib.loads(to_toml(config)) == config


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("../x", None, "model name"),
        ("ok", {"bad key": 1}, "config key 'bad key'"),
        ("ok", {"x": float("nan")}, "finite"),
        ("ok", {"x": [1, 2]}, "expected bool, int, float or str"),
    ],
)
def test_rejects_bad_arguments(tmp_path: Path, name: str, config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_model_entry(tmp_path, name, _identity_model(), config=config)

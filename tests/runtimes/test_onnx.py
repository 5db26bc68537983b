"""The ONNX Runtime runtime: session settings that decide speed on the CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from quiver.errors import ModelLoadError
from quiver.repository.config import ModelConfig
from quiver.runtimes.onnx import CPU_DISABLED_OPTIMIZERS, OnnxRuntime, disabled_optimizers

CPU = ["CPUExecutionProvider"]


def residual_layer_norm(version_dir: Path) -> Path:
    """y = LayerNorm(x + skip): the pattern ORT's SkipLayerNormFusion rewrites."""
    c = 8
    gamma = helper.make_tensor("gamma", TensorProto.FLOAT, [c], np.linspace(0.5, 1.5, c, dtype=np.float32))
    beta = helper.make_tensor("beta", TensorProto.FLOAT, [c], np.linspace(-0.1, 0.1, c, dtype=np.float32))
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "skip"], ["sum"]),
            helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-5),
        ],
        "residual",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, c]),
            helper.make_tensor_value_info("skip", TensorProto.FLOAT, ["batch", 4, c]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, c])],
        [gamma, beta],
    )
    version_dir.mkdir(parents=True)
    path = version_dir / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_cpu_sessions_leave_out_the_slow_fusions_by_default() -> None:
    assert disabled_optimizers(ModelConfig(name="m"), CPU) == list(CPU_DISABLED_OPTIMIZERS)
    assert "SkipLayerNormFusion" in CPU_DISABLED_OPTIMIZERS
    assert disabled_optimizers(ModelConfig(name="m"), ["CUDAExecutionProvider", *CPU]) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", []),
        ("SkipLayerNormFusion, GeluFusion", ["SkipLayerNormFusion", "GeluFusion"]),
        (["GeluFusion"], ["GeluFusion"]),
    ],
)
def test_disabled_optimizers_parameter(value: object, expected: list[str]) -> None:
    assert disabled_optimizers(ModelConfig(name="m", parameters={"disabled_optimizers": value}), CPU) == expected


@pytest.mark.parametrize("parameter", ["", "SkipLayerNormFusion"])
def test_results_do_not_depend_on_the_fusion(tmp_path: Path, parameter: str) -> None:
    residual_layer_norm(tmp_path / "1")
    runtime = OnnxRuntime.load(tmp_path / "1", ModelConfig(name="m", parameters={"disabled_optimizers": parameter}))
    rng = np.random.default_rng(0)
    x, skip = rng.standard_normal((2, 2, 4, 8), dtype=np.float32)
    y = runtime.infer({"x": x, "skip": skip}, ["y"])["y"]
    s = x + skip
    want = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, want * np.linspace(0.5, 1.5, 8) + np.linspace(-0.1, 0.1, 8), atol=1e-5)


def test_a_bad_disabled_optimizers_value_fails_the_load_with_the_parameter_named(tmp_path: Path) -> None:
    residual_layer_norm(tmp_path / "1")
    with pytest.raises(ModelLoadError, match="parameter disabled_optimizers: expected a list"):
        OnnxRuntime.load(tmp_path / "1", ModelConfig(name="m", parameters={"disabled_optimizers": 3}))

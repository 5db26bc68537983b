"""ONNX Runtime: CPU by default, the CUDA execution provider when the installed build has it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from quiver.errors import ModelLoadError
from quiver.protocol.datatypes import from_onnx_type
from quiver.repository.config import ModelConfig, TensorSpec
from quiver.runtimes.base import Runtime, declared_or, register_runtime

MODEL_FILE = "model.onnx"

# ONNX Runtime graph fusions left out on the CPU execution provider by default. ORT 1.32's CPU
# SkipLayerNormalization kernel takes 199 us on a [128, 384] tensor where the Add + LayerNormalization it
# replaces take ~30 us; on int8 MiniLM the fusion costs 15% of the run (bench/optimize/RESULTS.md).
CPU_DISABLED_OPTIMIZERS: tuple[str, ...] = ("SkipLayerNormFusion",)


def _specs(args: Sequence[ort.NodeArg]) -> tuple[TensorSpec, ...]:
    specs = []
    for arg in args:
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
        specs.append(TensorSpec(arg.name, from_onnx_type(arg.type), shape))
    return tuple(specs)


def session_options(config: ModelConfig) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if config.threads_per_instance:
        options.intra_op_num_threads = config.threads_per_instance
    # Each instance owns its threads; spinning would steal cores from the event loop and other instances.
    options.add_session_config_entry("session.intra_op.allow_spinning", str(config.parameters.get("spin", "0")))
    return options


def disabled_optimizers(config: ModelConfig, providers: Sequence[str]) -> list[str]:
    """The ``disabled_optimizers`` parameter (a list, or names separated by commas; "" for none);
    by default ``CPU_DISABLED_OPTIMIZERS`` when the model runs on the CPU execution provider."""
    value = config.parameters.get("disabled_optimizers")
    if value is None:
        return list(CPU_DISABLED_OPTIMIZERS) if providers[0] == "CPUExecutionProvider" else []
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelLoadError(
            f"parameter disabled_optimizers: expected a list of optimizer names or a comma-separated string, "
            f"got {value!r}"
        )
    return [n.strip() for n in names if n.strip()]


@register_runtime("onnxruntime")
class OnnxRuntime(Runtime):
    platform = "onnxruntime_onnx"

    def __init__(self, session: ort.InferenceSession, config: ModelConfig) -> None:
        self.session = session
        self.inputs = declared_or(config.inputs, _specs(session.get_inputs()), "input")
        self.outputs = declared_or(config.outputs, _specs(session.get_outputs()), "output")

    @classmethod
    def load(cls, version_dir: Path, config: ModelConfig) -> OnnxRuntime:
        path = version_dir / str(config.parameters.get("model_file", MODEL_FILE))
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such file")
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        disabled = disabled_optimizers(config, providers)
        try:
            session = ort.InferenceSession(
                str(path), session_options(config), providers=providers, disabled_optimizers=disabled
            )
        except Exception as exc:  # ORT raises its own exception types for every kind of bad model
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load it: {exc}") from None
        return cls(session, config)

    def infer(self, inputs: dict[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        results = self.session.run(list(output_names), inputs)
        return dict(zip(output_names, results, strict=True))

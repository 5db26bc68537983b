"""Small ONNX / ONNX Runtime helpers shared by passes, gates and the repository writer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from quiver.errors import InvalidInput, ModelLoadError
from quiver.optimize.types import Feeds
from quiver.runtimes.onnx import CPU_DISABLED_OPTIMIZERS

# ONNX element type -> (V2 datatype, numpy dtype)
_TYPES: dict[int, tuple[str, type]] = {
    onnx.TensorProto.FLOAT: ("FP32", np.float32),
    onnx.TensorProto.DOUBLE: ("FP64", np.float64),
    onnx.TensorProto.FLOAT16: ("FP16", np.float16),
    onnx.TensorProto.INT64: ("INT64", np.int64),
    onnx.TensorProto.INT32: ("INT32", np.int32),
    onnx.TensorProto.INT8: ("INT8", np.int8),
    onnx.TensorProto.UINT8: ("UINT8", np.uint8),
    onnx.TensorProto.BOOL: ("BOOL", np.bool_),
    onnx.TensorProto.STRING: ("BYTES", np.object_),
}


@dataclass(frozen=True)
class IOSpec:
    name: str
    datatype: str  # V2 name: FP32, INT64, ...
    shape: tuple[int, ...]  # -1 for dynamic dimensions

    @property
    def dtype(self) -> type:
        for v2, np_type in _TYPES.values():
            if v2 == self.datatype:
                return np_type
        raise InvalidInput(f"tensor {self.name!r}: unsupported datatype {self.datatype}")


def load(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except FileNotFoundError:
        raise ModelLoadError(f"model file {path} does not exist") from None
    except Exception as exc:  # onnx raises DecodeError and others for garbage files
        raise ModelLoadError(f"{path} is not a readable ONNX model: {exc}") from None


def io_specs(model: onnx.ModelProto) -> tuple[list[IOSpec], list[IOSpec]]:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [_spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [_spec(v) for v in model.graph.output]


def _spec(value: onnx.ValueInfoProto) -> IOSpec:
    tt = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise InvalidInput(f"tensor {value.name!r}: only tensor inputs/outputs are supported (no maps/sequences)")
    if tt.elem_type not in _TYPES:
        raise InvalidInput(f"tensor {value.name!r}: unsupported element type {tt.elem_type}")
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
    return IOSpec(value.name, _TYPES[tt.elem_type][0], dims)


def session(path: Path, threads: int = 2) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS)
        )
    except Exception as exc:
        text = str(exc)
        if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
            raise InvalidInput(f"{path.name}: unsupported operator for ONNX Runtime CPU: {text}") from None
        raise ModelLoadError(f"{path.name}: ONNX Runtime cannot load it: {text}") from None


def run_batches(sess: ort.InferenceSession, batches: list[Feeds], output: str | None = None) -> np.ndarray:
    """Run every batch and concatenate one output (the first by default) along axis 0."""
    name = output or sess.get_outputs()[0].name
    wanted = {i.name for i in sess.get_inputs()}
    outs = [sess.run([name], {k: v for k, v in b.items() if k in wanted})[0] for b in batches]
    return np.concatenate(outs, axis=0)


def file_size(path: Path) -> int:
    """Bytes on disk, counting external-data files written beside the model."""
    total = path.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    seen: set[str] = set()
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location" and entry.value not in seen:
                seen.add(entry.value)
                total += (path.parent / entry.value).stat().st_size
    return total


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path

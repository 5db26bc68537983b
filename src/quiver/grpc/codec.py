"""Open Inference Protocol v2 gRPC codec: ``ModelInferRequest`` <-> ``InferRequest``, ``InferResponse`` -> proto.

Tensors arrive either as ``raw_input_contents`` (one little-endian byte string per input; the fast path,
what tritonclient sends) or as typed ``contents``. Validation and messages mirror the REST codec
(``quiver.protocol.codec``). The answer uses raw contents unless the request sent typed contents.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from quiver.errors import InvalidInput
from quiver.grpc import grpc_predict_v2_pb2 as pb
from quiver.protocol.codec import _priority, _timeout, tensor_from_bytes, tensor_to_bytes
from quiver.protocol.datatypes import INTEGER_DATATYPES, NUMPY_DTYPES, check_datatype
from quiver.protocol.types import InferInput, InferRequest, InferResponse, RequestedOutput

# V2 datatype -> the InferTensorContents field that carries it (FP16 has none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# Little-endian dtypes for raw contents, whatever the host's byte order.
_OutputTensor = pb.ModelInferResponse.InferOutputTensor


# ----------------------------------------------------------------------------------------- decoding


def decode_request(msg: pb.ModelInferRequest, deadline_s: float | None = None) -> InferRequest:
    """Decode and validate. ``deadline_s``: seconds left on the call's gRPC deadline, if it has one."""
    if not msg.inputs:
        raise InvalidInput("request must have a non-empty 'inputs' list")
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries but the request has {len(msg.inputs)} inputs; "
            "give one entry per input, in order"
        )
    inputs = [_decode_input(tensor, index, raw[index] if raw else None) for index, tensor in enumerate(msg.inputs)]
    parameters = params_to_dict(msg.parameters)
    timeout_s = _timeout(parameters)
    if deadline_s is not None:
        timeout_s = deadline_s if timeout_s is None else min(timeout_s, deadline_s)
    outputs = [RequestedOutput(out.name, True) for out in msg.outputs] if msg.outputs else None
    return InferRequest(
        inputs=inputs,
        id=msg.id or None,
        outputs=outputs,
        binary_outputs=bool(raw),  # raw in, raw out: the servicer answers in kind
        parameters=parameters,
        timeout_s=timeout_s,
        priority=_priority(parameters),
    )


def _decode_input(tensor: Any, index: int, raw: bytes | None) -> InferInput:
    name = tensor.name
    if not name:
        raise InvalidInput(f"inputs[{index}] needs a 'name'")
    datatype = tensor.datatype
    if not datatype:
        raise InvalidInput(f"input '{name}': needs a 'datatype' such as FP32")
    check_datatype(datatype, f"input '{name}'")
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input '{name}': shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    if raw is not None:
        array = tensor_from_bytes(raw, datatype, count, name, f"raw_input_contents[{index}]", ("raw contents", "end"))
    else:
        array = _from_contents(tensor.contents, datatype, count, name)
    return InferInput(name, datatype, shape, array.reshape(shape))


def _from_contents(contents: Any, datatype: str, count: int, name: str) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"input '{name}': {datatype} has no typed contents field; send it in raw_input_contents")
    values = getattr(contents, field)
    if len(values) != count:
        others = [f for f in set(CONTENTS_FIELD.values()) - {field} if len(getattr(contents, f))]
        hint = f" (it sets {', '.join(sorted(others))} instead)" if others else ""
        raise InvalidInput(f"input '{name}': shape holds {count} elements but contents.{field} has {len(values)}{hint}")
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out
    target = NUMPY_DTYPES[datatype]
    if datatype in INTEGER_DATATYPES and target.itemsize < 4 and count:
        # INT8/16 and UINT8/16 travel widened in int_contents / uint_contents: refuse values that do not fit.
        wide = np.asarray(values, dtype=np.int64)
        info = np.iinfo(target)
        low, high = int(wide.min()), int(wide.max())
        if low < info.min or high > info.max:
            raise InvalidInput(
                f"input '{name}': value out of range for {datatype} [{info.min}, {info.max}]: "
                f"{low if low < info.min else high}"
            )
        return wide.astype(target)
    return np.asarray(values, dtype=target)


def params_to_dict(params: Mapping[str, Any]) -> dict[str, Any]:
    """An ``InferParameter`` map as plain Python values (what the REST codec sees in JSON)."""
    if not params:
        return {}
    out: dict[str, Any] = {}
    for key, param in params.items():
        choice = param.WhichOneof("parameter_choice")
        out[key] = getattr(param, choice) if choice else None
    return out


def _set_param(param: Any, value: Any) -> None:
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        if value >= 2**63:
            param.uint64_param = value
        else:
            param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    else:
        param.string_param = str(value)


# ----------------------------------------------------------------------------------------- encoding


def encode_response(response: InferResponse, raw: bool) -> pb.ModelInferResponse:
    """``raw``: answer in ``raw_output_contents`` (forced when an output has no typed field, e.g. FP16)."""
    raw = raw or any(out.datatype not in CONTENTS_FIELD for out in response.outputs)
    msg = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
    )
    if raw:
        msg.outputs.extend(_OutputTensor(name=o.name, datatype=o.datatype, shape=o.shape) for o in response.outputs)
        msg.raw_output_contents.extend(to_raw(o.data, o.datatype) for o in response.outputs)
    else:
        for out in response.outputs:
            tensor = msg.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
            _fill_contents(tensor.contents, out.data, out.datatype)
    if response.parameters:
        for key, value in response.parameters.items():
            _set_param(msg.parameters[key], value)
    return msg


to_raw = tensor_to_bytes  # gRPC's raw_output_contents use the binary extension's layout


def _fill_contents(contents: Any, array: np.ndarray, datatype: str) -> None:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        contents.bytes_contents.extend(x if isinstance(x, bytes) else str(x).encode() for x in flat)
    else:
        getattr(contents, CONTENTS_FIELD[datatype]).extend(flat.tolist())

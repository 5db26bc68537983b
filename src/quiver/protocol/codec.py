"""Open Inference Protocol v2 REST codec: JSON tensors and the binary tensor extension.

A request body is JSON, optionally followed by raw tensor bytes when the header
``Inference-Header-Content-Length`` gives the JSON part's length (Triton's binary tensor extension).
Decoding validates everything a client can get wrong and says what was expected.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson

from quiver.errors import InvalidInput
from quiver.protocol.datatypes import FLOAT_DATATYPES, INTEGER_DATATYPES, NUMPY_DTYPES, check_datatype
from quiver.protocol.types import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput

HEADER_LENGTH = "inference-header-content-length"
_NUMPY_OPTION = orjson.OPT_SERIALIZE_NUMPY


def parse_json(body: bytes | memoryview, what: str = "request body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON in {what}: {exc}") from None


# ----------------------------------------------------------------------------------------- decoding


def decode_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """Decode a V2 ``/infer`` body. ``header_length`` is Inference-Header-Content-Length, if sent."""
    binary: memoryview | None = None
    json_part: bytes | memoryview = body
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length is {header_length}, but the body has {len(body)} bytes"
            )
        view = memoryview(body)
        json_part, binary = view[:header_length], view[header_length:]
    doc = parse_json(json_part)
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object with an 'inputs' list")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("request must have a non-empty 'inputs' list")

    offset = 0
    inputs: list[InferInput] = []
    for index, raw in enumerate(raw_inputs):
        decoded, offset = _decode_input(raw, index, binary, offset)
        inputs.append(decoded)
    if binary is not None and offset != len(binary):
        raise InvalidInput(
            f"binary data sizes add up to {offset} bytes, but {len(binary)} bytes follow the JSON header"
        )

    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be a JSON object")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    binary_default = _flag(parameters.get("binary_data_output", False), "parameters.binary_data_output")
    return InferRequest(
        inputs=inputs,
        id=request_id,
        outputs=_decode_outputs(doc.get("outputs"), binary_default),
        binary_outputs=binary_default,
        parameters=parameters,
        timeout_s=_timeout(parameters),
        priority=_priority(parameters),
    )


def _decode_input(raw: Any, index: int, binary: memoryview | None, offset: int) -> tuple[InferInput, int]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"inputs[{index}] must be a JSON object with name, shape, datatype and data")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{index}] needs a 'name' string")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f"input '{name}': needs a 'datatype' string such as FP32")
    check_datatype(datatype, f"input '{name}'")
    shape = _shape(raw.get("shape"), name)
    count = math.prod(shape)
    params = raw.get("parameters")
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if binary is None:
            raise InvalidInput(
                f"input '{name}': has binary_data_size but the request has no Inference-Header-Content-Length"
            )
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"input '{name}': binary_data_size must be a non-negative integer")
        if offset + size > len(binary):
            raise InvalidInput(
                f"input '{name}': binary_data_size {size} at offset {offset} runs past the "
                f"{len(binary)} bytes of binary data"
            )
        array = tensor_from_bytes(binary[offset : offset + size], datatype, count, name)
        offset += size
    else:
        if "data" not in raw:
            raise InvalidInput(f"input '{name}': needs 'data' (or parameters.binary_data_size)")
        array = _from_json(raw["data"], datatype, count, name)
    return InferInput(name, datatype, shape, array.reshape(shape)), offset


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in raw):
        raise InvalidInput(f"input '{name}': 'shape' must be a list of integers, got {raw!r}")
    if any(d < 0 for d in raw):
        raise InvalidInput(f"input '{name}': shape {raw} has a negative dimension")
    return tuple(raw)


def _from_json(data: Any, datatype: str, count: int, name: str) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    try:
        if datatype == "BYTES":
            array = _bytes_array(data, name)
        elif datatype in FLOAT_DATATYPES:
            array = _float_array(data, datatype, name)
        else:
            array = _exact_array(data, datatype, name)
    except ValueError as exc:
        text = str(exc)
        if "inhomogeneous" in text or "sequence" in text:
            raise InvalidInput(f"input '{name}': nested data is ragged (rows of different lengths)") from None
        raise InvalidInput(f"input '{name}': data does not match datatype {datatype}: {text}") from None
    except TypeError as exc:
        raise InvalidInput(f"input '{name}': data does not match datatype {datatype}: {exc}") from None
    if array.size != count:
        raise InvalidInput(f"input '{name}': shape holds {count} elements but data has {array.size}")
    return array


_KINDS = {"b": "booleans", "U": "strings", "S": "strings", "O": "nulls or mixed values"}


def _float_array(data: list[Any], datatype: str, name: str) -> np.ndarray:
    """Floats: refuse strings, booleans and nulls (numpy would turn "1.5" into 1.5 and null into NaN)."""
    array = np.array(data)
    if array.dtype.kind not in "iuf" and array.size:
        got = _KINDS.get(array.dtype.kind, str(array.dtype))
        raise InvalidInput(f"input '{name}': {datatype} data must be numbers, got {got}")
    return array.astype(NUMPY_DTYPES[datatype], copy=False)


def _exact_array(data: list[Any], datatype: str, name: str) -> np.ndarray:
    """Integers and booleans: refuse floats and out-of-range values instead of silently casting."""
    array = np.array(data)
    target = NUMPY_DTYPES[datatype]
    if datatype == "BOOL":
        if array.size == 0:
            return array.astype(target)
        if array.dtype.kind != "b":
            raise InvalidInput(f"input '{name}': BOOL data must be true/false, got {array.dtype.kind!r} values")
        return array
    if array.dtype.kind == "f" and datatype in ("INT64", "UINT64"):
        return _wide_int_array(data, datatype, name)
    if array.dtype.kind not in "iu":
        if array.size == 0:
            return array.astype(target)
        raise InvalidInput(f"input '{name}': {datatype} data must be integers")
    if datatype in INTEGER_DATATYPES and array.dtype != target and array.size:
        info = np.iinfo(target)
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            raise InvalidInput(
                f"input '{name}': value out of range for {datatype} [{info.min}, {info.max}]: "
                f"{low if low < info.min else high}"
            )
    return array.astype(target, copy=False)


def _wide_int_array(data: list[Any], datatype: str, name: str) -> np.ndarray:
    """numpy infers float64 when an integer beyond int64 (valid UINT64) mixes with others: convert exactly."""
    if not all(type(v) is int for v in np.array(data, dtype=object).flat):
        raise InvalidInput(f"input '{name}': {datatype} data must be integers")
    try:
        return np.array(data, dtype=NUMPY_DTYPES[datatype])
    except OverflowError:
        info = np.iinfo(NUMPY_DTYPES[datatype])
        raise InvalidInput(f"input '{name}': value out of range for {datatype} [{info.min}, {info.max}]") from None


def _bytes_array(data: list[Any], name: str) -> np.ndarray:
    flat = np.array(data, dtype=object).reshape(-1)
    out = np.empty(flat.size, dtype=object)
    for i, item in enumerate(flat):
        if isinstance(item, str):
            out[i] = item.encode()
        elif isinstance(item, bytes):
            out[i] = item
        elif isinstance(item, list):  # numpy keeps ragged rows as lists in an object array
            raise InvalidInput(f"input '{name}': nested data is ragged (rows of different lengths)")
        else:
            raise InvalidInput(f"input '{name}': BYTES data must be strings, got {type(item).__name__}")
    return out


def tensor_from_bytes(
    chunk: bytes | memoryview,
    datatype: str,
    count: int,
    name: str,
    size_label: str = "binary_data_size",
    source: tuple[str, str] = ("binary data", "ends"),
) -> np.ndarray:
    """Decode ``count`` elements of raw little-endian tensor bytes (the binary extension's and gRPC's layout).

    ``size_label`` names where the size came from and ``source`` what the bytes are (noun, and its verb
    "ends"/"end"), for messages: REST's defaults, or ``("raw_input_contents[0]", ("raw contents", "end"))``.
    """
    if datatype == "BYTES":
        return _bytes_from_buffer(chunk, count, name, source)
    dtype = NUMPY_DTYPES[datatype]
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidInput(
            f"input '{name}': {size_label} is {len(chunk)} bytes, but shape and {datatype} need {expected}"
        )
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<"), count=count)


def _bytes_from_buffer(chunk: bytes | memoryview, count: int, name: str, source: tuple[str, str]) -> np.ndarray:
    """BYTES elements, each behind a 4-byte little-endian length."""
    noun, ends = source
    out = np.empty(count, dtype=object)
    pos, size = 0, len(chunk)
    for i in range(count):
        if pos + 4 > size:
            raise InvalidInput(f"input '{name}': BYTES {noun} {ends} before element {i} of {count}")
        (length,) = struct.unpack_from("<I", chunk, pos)
        pos += 4
        if pos + length > size:
            raise InvalidInput(f"input '{name}': BYTES element {i} runs past the {noun}")
        out[i] = bytes(chunk[pos : pos + length])
        pos += length
    if pos != size:
        raise InvalidInput(f"input '{name}': {size - pos} bytes left over after {count} BYTES elements")
    return out


def _decode_outputs(raw: Any, binary_default: bool) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects")
    outputs = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f"outputs[{index}] must be an object with a 'name' string")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"outputs[{index}].parameters must be a JSON object, got {params!r}")
        binary = _flag(params.get("binary_data", binary_default), f"outputs[{index}].parameters.binary_data")
        outputs.append(RequestedOutput(item["name"], binary))
    return outputs


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{where} must be true or false, got {value!r}")
    return value


def _timeout(parameters: dict[str, Any]) -> float | None:
    """Triton's ``timeout`` request parameter, in microseconds."""
    value = parameters.get("timeout")
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"parameters.timeout must be a non-negative number of microseconds, got {value!r}")
    return value / 1e6 if value else None


def _priority(parameters: dict[str, Any]) -> int:
    value = parameters.get("priority", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"parameters.priority must be a non-negative integer, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------- encoding


def encode_response(response: InferResponse) -> tuple[bytes, int | None]:
    """Encode to (body, header_length). header_length is set when any output travels as binary."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for out in response.outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": out.shape}
        if out.binary:
            raw = tensor_to_bytes(out.data, out.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _to_json_data(out.data, out.datatype)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=_NUMPY_OPTION)
    if not chunks:
        return header, None
    return b"".join((header, *chunks)), len(header)


def _to_json_data(array: np.ndarray, datatype: str) -> Any:
    if datatype == "BYTES":
        return [x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in array.reshape(-1)]
    if not array.dtype.isnative:  # orjson serializes only native-endian arrays
        array = array.astype(array.dtype.newbyteorder("="))
    flat = np.ascontiguousarray(array).reshape(-1)
    return flat


def tensor_to_bytes(array: np.ndarray, datatype: str) -> bytes:
    """Raw little-endian tensor bytes; BYTES elements each get a 4-byte little-endian length prefix."""
    if datatype == "BYTES":
        parts = []
        for x in array.reshape(-1):
            raw = x if isinstance(x, bytes) else str(x).encode()
            parts.append(struct.pack("<I", len(raw)))
            parts.append(raw)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def encode_output(name: str, array: np.ndarray, datatype: str, binary: bool) -> InferOutput:
    return InferOutput(name, datatype, tuple(array.shape), array, binary)

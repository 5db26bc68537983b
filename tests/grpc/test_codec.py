"""The gRPC codec without sockets: wire compatibility with Triton's .proto, raw and typed tensors, validation."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from tritonclient.grpc import model_config_pb2, service_pb2

from quiver.errors import InvalidInput
from quiver.grpc import grpc_predict_v2_pb2 as pb
from quiver.grpc.codec import CONTENTS_FIELD, decode_request, encode_response, to_raw
from quiver.protocol.datatypes import NUMPY_DTYPES
from quiver.protocol.types import InferOutput, InferResponse


def _triton_message(name: str) -> Descriptor:
    for module in (service_pb2, model_config_pb2):
        if name in module.DESCRIPTOR.message_types_by_name:
            return module.DESCRIPTOR.message_types_by_name[name]
    raise KeyError(name)


def _check_same_fields(ours: Descriptor, theirs: Descriptor) -> None:
    for field in ours.fields:
        other = theirs.fields_by_number.get(field.number)
        assert other is not None, f"{ours.full_name}.{field.name}: number {field.number} unknown to Triton"
        assert (field.name, field.type, field.is_repeated) == (other.name, other.type, other.is_repeated), (
            f"{ours.full_name}.{field.name} differs from Triton's"
        )
        if field.type == FieldDescriptor.TYPE_ENUM:
            theirs_values = {v.name: v.number for v in other.enum_type.values}
            assert {v.name: v.number for v in field.enum_type.values}.items() <= theirs_values.items()
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            assert field.message_type.name == other.message_type.name
            _check_same_fields(field.message_type, other.message_type)


def test_every_message_is_wire_compatible_with_triton() -> None:
    for name, ours in pb.DESCRIPTOR.message_types_by_name.items():
        _check_same_fields(ours, _triton_message(name))
    theirs = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
        other = theirs.methods_by_name[method.name]
        assert (method.input_type.name, method.output_type.name) == (other.input_type.name, other.output_type.name)


def _request(*tensors: tuple[str, str, list[int]], raw: list[bytes] | None = None) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m", raw_input_contents=raw or [])
    for name, datatype, shape in tensors:
        msg.inputs.add(name=name, datatype=datatype, shape=shape)
    return msg


@pytest.mark.parametrize("datatype", sorted(set(NUMPY_DTYPES) - {"BYTES"}))
def test_raw_round_trip_every_numeric_datatype(datatype: str) -> None:
    array = (np.arange(6) % 2 == 1) if datatype == "BOOL" else np.arange(6).astype(NUMPY_DTYPES[datatype])
    array = array.reshape(2, 3)
    decoded = decode_request(_request(("x", datatype, [2, 3]), raw=[array.tobytes()]))
    assert decoded.inputs[0].shape == (2, 3) and decoded.binary_outputs
    np.testing.assert_array_equal(decoded.inputs[0].data, array)

    response = InferResponse("m", "1", [InferOutput("y", datatype, (2, 3), array)], id="r")
    msg = pb.ModelInferResponse.FromString(encode_response(response, raw=True).SerializeToString())
    assert (msg.id, list(msg.outputs[0].shape)) == ("r", [2, 3])
    np.testing.assert_array_equal(np.frombuffer(msg.raw_output_contents[0], array.dtype).reshape(2, 3), array)


def test_raw_bytes_are_length_prefixed() -> None:
    items = [b"a", b"", "é".encode()]
    raw = to_raw(np.array(items, dtype=object), "BYTES")
    assert raw == b"".join(struct.pack("<I", len(x)) + x for x in items)
    decoded = decode_request(_request(("s", "BYTES", [3]), raw=[raw]))
    assert decoded.inputs[0].data.tolist() == items
    with pytest.raises(InvalidInput, match=r"input 's': BYTES element 2 runs past the raw contents"):
        decode_request(_request(("s", "BYTES", [3]), raw=[raw[:-1]]))
    with pytest.raises(InvalidInput, match=r"input 's': BYTES raw contents end before element 3 of 4"):
        decode_request(_request(("s", "BYTES", [4]), raw=[raw]))
    with pytest.raises(InvalidInput, match=r"input 's': 2 bytes left over after 3 BYTES elements"):
        decode_request(_request(("s", "BYTES", [3]), raw=[raw + b"xx"]))


def test_raw_validation_messages() -> None:
    with pytest.raises(InvalidInput, match=r"raw_input_contents\[0\] is 8 bytes, but shape and FP32 need 12"):
        decode_request(_request(("x", "FP32", [3]), raw=[b"\0" * 8]))
    with pytest.raises(InvalidInput, match="raw_input_contents has 1 entries but the request has 2 inputs"):
        decode_request(_request(("x", "FP32", [1]), ("y", "FP32", [1]), raw=[b"\0" * 4]))
    with pytest.raises(InvalidInput, match="unknown datatype 'FP8'"):
        decode_request(_request(("x", "FP8", [1]), raw=[b"\0"]))
    with pytest.raises(InvalidInput, match="needs a 'datatype'"):
        decode_request(_request(("x", "", [1]), raw=[b"\0"]))
    with pytest.raises(InvalidInput, match="non-empty 'inputs'"):
        decode_request(pb.ModelInferRequest(model_name="m"))


@pytest.mark.parametrize("datatype", sorted(CONTENTS_FIELD))
def test_typed_round_trip(datatype: str) -> None:
    values = [b"x", b"yz"] if datatype == "BYTES" else ([True, False] if datatype == "BOOL" else [1, 2])
    msg = _request(("x", datatype, [1, 2]))
    getattr(msg.inputs[0].contents, CONTENTS_FIELD[datatype]).extend(values)
    decoded = decode_request(msg)
    assert decoded.inputs[0].data.tolist() == [values] and not decoded.binary_outputs
    if datatype != "BYTES":
        assert decoded.inputs[0].data.dtype == NUMPY_DTYPES[datatype]
    out = encode_response(InferResponse("m", "1", [InferOutput("y", datatype, (1, 2), decoded.inputs[0].data)]), False)
    assert list(getattr(out.outputs[0].contents, CONTENTS_FIELD[datatype])) == values
    assert not out.raw_output_contents


def test_typed_validation_messages() -> None:
    msg = _request(("x", "FP32", [2]))
    msg.inputs[0].contents.int_contents.extend([1, 2])
    with pytest.raises(InvalidInput, match=r"shape holds 2 elements but contents.fp32_contents has 0 \(it sets int_"):
        decode_request(msg)
    with pytest.raises(InvalidInput, match="FP16 has no typed contents field; send it in raw_input_contents"):
        decode_request(_request(("x", "FP16", [1])))
    msg = _request(("x", "UINT8", [2]))
    msg.inputs[0].contents.uint_contents.extend([1, 256])
    with pytest.raises(InvalidInput, match=r"value out of range for UINT8 \[0, 255\]: 256"):
        decode_request(msg)


def test_fp16_output_forces_raw() -> None:
    half = np.ones(2, np.float16)
    out = encode_response(InferResponse("m", "1", [InferOutput("y", "FP16", (2,), half)]), raw=False)
    assert out.raw_output_contents == [half.tobytes()]


def test_deadline_timeout_priority_and_outputs() -> None:
    msg = _request(("x", "FP32", [1]), raw=[b"\0" * 4])
    assert decode_request(msg).timeout_s is None
    assert decode_request(msg, deadline_s=0.25).timeout_s == 0.25
    msg.parameters["timeout"].int64_param = 100_000  # Triton's timeout parameter, in microseconds
    msg.parameters["priority"].uint64_param = 1
    msg.parameters["tag"].string_param = "t"
    msg.outputs.add(name="y")
    decoded = decode_request(msg, deadline_s=0.25)
    assert decoded.timeout_s == pytest.approx(0.1)
    assert decode_request(msg, deadline_s=0.05).timeout_s == 0.05
    assert decoded.priority == 1 and decoded.parameters["tag"] == "t"
    assert [o.name for o in decoded.outputs or []] == ["y"]
    msg.parameters["priority"].string_param = "high"
    with pytest.raises(InvalidInput, match=r"parameters\.priority must be a non-negative integer"):
        decode_request(msg)

"""The V2 REST codec: JSON tensors, the binary tensor extension, outputs, parameters and response encoding."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest

from quiver.errors import InvalidInput
from quiver.protocol import InferOutput, InferResponse, decode_request, encode_response
from quiver.protocol.datatypes import NUMPY_DTYPES


def tensor(data: Any, shape: list[int], datatype: str = "FP32", name: str = "x", **extra: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data, **extra}


def decode(*inputs: dict[str, Any], **doc: Any) -> Any:
    return decode_request(orjson.dumps({"inputs": list(inputs), **doc}))


def decode_binary(inputs: list[dict[str, Any]], chunks: list[bytes], **doc: Any) -> Any:
    header = orjson.dumps({"inputs": inputs, **doc})
    return decode_request(header + b"".join(chunks), len(header))


def binary_input(name: str, datatype: str, shape: list[int], raw: bytes) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": len(raw)}}


def bytes_section(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def rejects(match: str, *inputs: dict[str, Any], **doc: Any) -> InvalidInput:
    with pytest.raises(InvalidInput, match=match) as info:
        decode(*inputs, **doc)
    assert info.value.status == 400
    return info.value


# ----------------------------------------------------------------------------------------- JSON tensors


def test_flat_json_data_is_shaped() -> None:
    request = decode(tensor([1, 2, 3, 4, 5, 6.5], [2, 3]))
    (x,) = request.inputs
    assert (x.name, x.datatype, x.shape) == ("x", "FP32", (2, 3))
    assert x.data.dtype == np.float32 and x.data.shape == (2, 3)
    np.testing.assert_array_equal(x.data, [[1, 2, 3], [4, 5, 6.5]])


def test_nested_json_data_is_shaped() -> None:
    (x,) = decode(tensor([[1, 2], [3, 4], [5, 6]], [3, 2], "INT64")).inputs
    assert x.data.dtype == np.int64
    np.testing.assert_array_equal(x.data, [[1, 2], [3, 4], [5, 6]])


def test_several_inputs_keep_their_order_and_types() -> None:
    request = decode(
        tensor([1.5, 2.5], [1, 2]), tensor([True, False], [2], "BOOL", name="mask"), tensor(["hi"], [1], "BYTES", "s")
    )
    assert [i.name for i in request.inputs] == ["x", "mask", "s"]
    assert request.inputs[1].data.dtype == np.bool_
    assert request.inputs[2].data.tolist() == [b"hi"]


def test_scalar_shape() -> None:
    (x,) = decode(tensor(3.0, [], "FP64")).inputs
    assert x.data.shape == () and float(x.data) == 3.0


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("FP32", [[1, 2], [3]]),
        ("INT32", [[1, 2], [3]]),
        ("BOOL", [[True], [False, True]]),
        ("BYTES", [["a", "b"], ["c"]]),
    ],
)
def test_ragged_nested_data_names_the_input(datatype: str, data: Any) -> None:
    rejects("input 'ragged': nested data is ragged", tensor(data, [2, 2], datatype, name="ragged"))


@pytest.mark.parametrize(
    ("data", "shape", "count", "got"),
    [([1, 2, 3, 4, 5], [2, 3], 6, 5), ([[1, 2], [3, 4]], [1, 3], 3, 4), ([], [1], 1, 0)],
)
def test_data_length_must_match_shape(data: Any, shape: list[int], count: int, got: int) -> None:
    rejects(f"input 'x': shape holds {count} elements but data has {got}", tensor(data, shape))


@pytest.mark.parametrize(
    ("datatype", "data", "match"),
    [
        ("FP32", ["a", "b"], "FP32 data must be numbers, got strings"),
        ("FP32", ["1.5", "2"], "FP32 data must be numbers, got strings"),
        ("FP64", [True, False], "FP64 data must be numbers, got booleans"),
        ("FP32", [None, 1.0], "FP32 data must be numbers"),
        ("FP16", [1.0, "x"], "FP16 data must be numbers"),
        ("INT32", [1.5, 2.0], "INT32 data must be integers"),
        ("INT64", [1.0, 2.0], "INT64 data must be integers"),
        ("INT16", ["1", "2"], "INT16 data must be integers"),
        ("INT8", [127, 128], r"value out of range for INT8 \[-128, 127\]: 128"),
        ("INT8", [-129, 0], r"value out of range for INT8 \[-128, 127\]: -129"),
        ("UINT8", [-1, 0], r"value out of range for UINT8 \[0, 255\]: -1"),
        ("UINT16", [65536, 0], "value out of range for UINT16"),
        ("INT64", [2**63, 0], r"value out of range for INT64 \["),
        ("UINT64", [-1, 2**64 - 1], "value out of range for UINT64"),
        ("UINT64", [1.5, 2**64 - 1], "UINT64 data must be integers"),
        ("BOOL", [1, 0], "BOOL data must be true/false"),
        ("BOOL", ["true", "false"], "BOOL data must be true/false"),
        ("BYTES", [1, 2], "BYTES data must be strings, got int"),
    ],
)
def test_wrong_value_types_are_refused(datatype: str, data: Any, match: str) -> None:
    rejects(f"input 'v': {match}", tensor(data, [2], datatype, name="v"))


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("INT8", [-128, 127]),
        ("UINT8", [0, 255]),
        ("INT16", [-32768, 32767]),
        ("UINT16", [0, 65535]),
        ("INT32", [-(2**31), 2**31 - 1]),
        ("UINT32", [0, 2**32 - 1]),
        ("INT64", [-(2**63), 2**63 - 1]),
        ("UINT64", [0, 2**64 - 1]),
        ("FP16", [0.5, -2]),
        ("FP32", [1, 2.25]),
        ("FP64", [1e300, -1]),
        ("BOOL", [True, False]),
    ],
)
def test_every_datatype_accepts_its_full_json_range(datatype: str, data: list[Any]) -> None:
    (x,) = decode(tensor(data, [2], datatype)).inputs
    assert x.data.dtype == NUMPY_DTYPES[datatype]
    assert x.data.tolist() == data


def test_empty_tensors() -> None:
    for datatype in ("FP32", "INT32", "BOOL", "BYTES"):
        (x,) = decode(tensor([], [0, 3], datatype)).inputs
        assert x.data.shape == (0, 3) and x.data.dtype == NUMPY_DTYPES[datatype]


def test_bytes_json_strings_become_bytes() -> None:
    (x,) = decode(tensor([["héllo", ""], ["a", "b"]], [2, 2], "BYTES")).inputs
    assert x.data.dtype == object and x.data.shape == (2, 2)
    assert x.data.tolist() == [["héllo".encode(), b""], [b"a", b"b"]]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"{}", "non-empty 'inputs' list"),
        (b'{"inputs": []}', "non-empty 'inputs' list"),
        (b'{"inputs": [5]}', r"inputs\[0\] must be a JSON object"),
        (b'{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}', r"inputs\[0\] needs a 'name'"),
        (b'{"inputs": [{"name": "x", "shape": [1], "data": [1]}]}', "input 'x': needs a 'datatype'"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP8", "data": [1]}]}', "unknown datatype 'FP8'"),
        (b'{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}', "negative dimension"),
        (b'{"inputs": [{"name": "x", "shape": [1.0], "datatype": "FP32", "data": [1]}]}', "list of integers"),
        (b'{"inputs": [{"name": "x", "shape": [true], "datatype": "FP32", "data": [1]}]}', "list of integers"),
        (b'{"inputs": [{"name": "x", "shape": "1", "datatype": "FP32", "data": [1]}]}', "list of integers"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}', "input 'x': needs 'data'"),
    ],
)
def test_malformed_requests_say_what_is_wrong(raw: bytes, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        decode_request(raw)


# ----------------------------------------------------------------------------------------- binary extension


@pytest.mark.parametrize("datatype", sorted(set(NUMPY_DTYPES) - {"BYTES"}))
def test_binary_decode_for_each_datatype(datatype: str) -> None:
    dtype = NUMPY_DTYPES[datatype]
    rng = np.random.default_rng(0)
    if dtype.kind == "b":
        expected = rng.integers(0, 2, (2, 3)).astype(bool)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        expected = rng.integers(info.min, info.max, (2, 3), dtype=dtype, endpoint=True)
    else:
        expected = rng.standard_normal((2, 3)).astype(dtype)
    raw = expected.astype(dtype.newbyteorder("<")).tobytes()
    (x,) = decode_binary([binary_input("x", datatype, [2, 3], raw)], [raw]).inputs
    assert x.data.dtype == dtype and x.data.shape == (2, 3)
    np.testing.assert_array_equal(x.data, expected)


def test_binary_fp16_is_little_endian() -> None:
    raw = b"\x00\x3c" + b"\x00\xc0" + b"\x00\x38"  # 1.0, -2.0, 0.5 as little-endian IEEE half
    (x,) = decode_binary([binary_input("h", "FP16", [3], raw)], [raw]).inputs
    assert x.data.dtype == np.float16
    assert x.data.tolist() == [1.0, -2.0, 0.5]


def test_binary_bytes_elements_are_length_prefixed() -> None:
    items = [b"", b"abc", "é".encode(), b"\x00\xff"]
    raw = bytes_section(items)
    (x,) = decode_binary([binary_input("s", "BYTES", [2, 2], raw)], [raw]).inputs
    assert x.data.tolist() == [[b"", b"abc"], ["é".encode(), b"\x00\xff"]]


def test_binary_and_json_inputs_mix_and_offsets_follow_the_binary_inputs() -> None:
    a = np.arange(4, dtype=np.float32)
    b = np.array([7, -8], dtype=np.int64)
    inputs = [
        binary_input("a", "FP32", [4], a.tobytes()),
        tensor([1, 2], [2], "INT32", name="j"),
        binary_input("b", "INT64", [2], b.tobytes()),
    ]
    request = decode_binary(inputs, [a.tobytes(), b.tobytes()])
    np.testing.assert_array_equal(request.inputs[0].data, a)
    np.testing.assert_array_equal(request.inputs[1].data, [1, 2])
    np.testing.assert_array_equal(request.inputs[2].data, b)


def test_binary_data_sizes_not_adding_up_to_the_binary_section() -> None:
    raw = np.zeros(2, np.float32).tobytes()
    with pytest.raises(InvalidInput, match="add up to 8 bytes, but 12 bytes follow the JSON header"):
        decode_binary([binary_input("x", "FP32", [2], raw)], [raw, b"\0\0\0\0"])
    short = binary_input("x", "FP32", [2], raw)
    short["parameters"]["binary_data_size"] = 12
    with pytest.raises(InvalidInput, match="binary_data_size 12 at offset 0 runs past the 8 bytes"):
        decode_binary([short], [raw])


def test_binary_size_must_match_shape_and_datatype() -> None:
    raw = np.zeros(3, np.float32).tobytes()
    with pytest.raises(InvalidInput, match="input 'x': binary_data_size is 12 bytes, but shape and FP32 need 8"):
        decode_binary([binary_input("x", "FP32", [2], raw)], [raw])


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (bytes_section([b"ab"]), "ends before element 1 of 2"),
        (struct.pack("<I", 10) + b"abc", "element 0 runs past"),
        (bytes_section([b"a", b"b"]) + b"x", "1 bytes left over after 2 BYTES elements"),
    ],
)
def test_binary_bytes_errors(raw: bytes, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        decode_binary([binary_input("s", "BYTES", [2], raw)], [raw])


@pytest.mark.parametrize("size", [-1, 1.5, True, "8"])
def test_binary_data_size_must_be_a_non_negative_integer(size: Any) -> None:
    spec = {"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": size}}
    with pytest.raises(InvalidInput, match="binary_data_size must be a non-negative integer"):
        decode_binary([spec], [b"\0" * 8])


def test_binary_data_size_without_header_length() -> None:
    spec = {"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
    with pytest.raises(InvalidInput, match="no Inference-Header-Content-Length"):
        decode_request(orjson.dumps({"inputs": [spec]}))


@pytest.mark.parametrize("extra", [1, 1000])
def test_header_length_larger_than_the_body(extra: int) -> None:
    body = orjson.dumps({"inputs": [tensor([1], [1])]})
    with pytest.raises(InvalidInput, match=f"Inference-Header-Content-Length is {len(body) + extra}, but the body"):
        decode_request(body, len(body) + extra)
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length is -1"):
        decode_request(body, -1)


def test_header_length_equal_to_body_is_plain_json() -> None:
    body = orjson.dumps({"inputs": [tensor([1, 2], [2])]})
    (x,) = decode_request(body, len(body)).inputs
    assert x.data.tolist() == [1, 2]


def test_header_length_shorter_than_the_json_is_malformed_json() -> None:
    body = orjson.dumps({"inputs": [tensor([1, 2], [2])]})
    with pytest.raises(InvalidInput, match="malformed JSON"):
        decode_request(body, len(body) - 3)


# ----------------------------------------------------------------------------------------- outputs and parameters


def test_no_outputs_means_all_outputs_json_by_default() -> None:
    request = decode(tensor([1], [1]))
    assert request.outputs is None and request.binary_outputs is False
    assert request.timeout_s is None and request.priority == 0 and request.id is None


def test_outputs_subset_and_binary_flags() -> None:
    request = decode(
        tensor([1], [1]),
        outputs=[{"name": "a"}, {"name": "b", "parameters": {"binary_data": True}}],
    )
    assert [(o.name, o.binary) for o in request.outputs] == [("a", False), ("b", True)]


def test_binary_data_output_is_the_default_and_per_output_flag_overrides_it() -> None:
    request = decode(
        tensor([1], [1]),
        outputs=[{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
        parameters={"binary_data_output": True},
    )
    assert request.binary_outputs is True
    assert [(o.name, o.binary) for o in request.outputs] == [("a", True), ("b", False)]


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"outputs": {"name": "a"}}, "'outputs' must be a list"),
        ({"outputs": [{"nom": "a"}]}, r"outputs\[0\] must be an object with a 'name'"),
        ({"outputs": ["a"]}, r"outputs\[0\] must be an object"),
        ({"outputs": [{"name": "a", "parameters": {"binary_data": 1}}]}, r"outputs\[0\].parameters.binary_data"),
        ({"outputs": [{"name": "a", "parameters": [1]}]}, r"outputs\[0\].parameters must be a JSON object"),
        ({"parameters": {"binary_data_output": "yes"}}, "parameters.binary_data_output must be true or false"),
        ({"parameters": [1]}, "'parameters' must be a JSON object"),
        ({"id": 7}, "'id' must be a string"),
    ],
)
def test_bad_outputs_and_parameters(doc: dict[str, Any], match: str) -> None:
    rejects(match, tensor([1], [1]), **doc)


def test_request_id_and_parameters_are_kept() -> None:
    request = decode(tensor([1], [1]), id="req-9", parameters={"custom": [1, 2]})
    assert request.id == "req-9"
    assert request.parameters == {"custom": [1, 2]}


@pytest.mark.parametrize(("micros", "seconds"), [(250_000, 0.25), (1, 1e-6), (1.5e6, 1.5), (0, None)])
def test_timeout_parameter_is_in_microseconds(micros: float, seconds: float | None) -> None:
    assert decode(tensor([1], [1]), parameters={"timeout": micros}).timeout_s == seconds


@pytest.mark.parametrize("bad", [-1, "100", True, [1]])
def test_bad_timeout_parameter(bad: Any) -> None:
    rejects(
        "parameters.timeout must be a non-negative number of microseconds",
        tensor([1], [1]),
        parameters={"timeout": bad},
    )


def test_priority_parameter() -> None:
    assert decode(tensor([1], [1]), parameters={"priority": 1}).priority == 1
    assert decode(tensor([1], [1]), parameters={"priority": 0}).priority == 0
    for bad in (-1, 1.0, True, "1"):
        rejects("parameters.priority must be a non-negative integer", tensor([1], [1]), parameters={"priority": bad})


# ----------------------------------------------------------------------------------------- encoding


def response(*outputs: InferOutput, **kw: Any) -> InferResponse:
    return InferResponse("mlp", "3", list(outputs), **kw)


def out(name: str, array: np.ndarray, datatype: str, binary: bool = False) -> InferOutput:
    return InferOutput(name, datatype, tuple(array.shape), array, binary)


def test_encode_json_response() -> None:
    body, header_length = encode_response(
        response(
            out("p", np.array([[0.25, 0.75]], np.float32), "FP32"),
            out("label", np.array([1], np.int64), "INT64"),
            out("ok", np.array([True, False]), "BOOL"),
            out("s", np.array([b"a", "é".encode()], object), "BYTES"),
            id="r1",
            parameters={"note": "x"},
        )
    )
    assert header_length is None
    doc = orjson.loads(body)
    assert doc == {
        "model_name": "mlp",
        "model_version": "3",
        "id": "r1",
        "parameters": {"note": "x"},
        "outputs": [
            {"name": "p", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]},
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]},
            {"name": "ok", "datatype": "BOOL", "shape": [2], "data": [True, False]},
            {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["a", "é"]},
        ],
    }


def test_encode_json_flattens_non_contiguous_and_big_endian_arrays_in_row_major_order() -> None:
    transposed = np.arange(6, dtype=np.float32).reshape(2, 3).T  # [3, 2], not C-contiguous
    big_endian = np.array([1.5, -2.0], dtype=">f8")
    body, _ = encode_response(response(out("t", transposed, "FP32"), out("b", big_endian, "FP64")))
    outputs = orjson.loads(body)["outputs"]
    assert outputs[0]["data"] == transposed.reshape(-1).tolist() == [0, 3, 1, 4, 2, 5]
    assert outputs[1]["data"] == [1.5, -2.0]


def split_binary(body: bytes, header_length: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    doc = orjson.loads(body[:header_length])
    chunks: dict[str, bytes] = {}
    offset = header_length
    for output in doc["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            chunks[output["name"]] = body[offset : offset + size]
            offset += size
    assert offset == len(body)
    return doc, chunks


def test_encode_binary_response_header_length_and_bytes_round_trip() -> None:
    probabilities = np.array([[0.1, 0.9], [0.7, 0.3]], np.float32)
    half = np.array([1.0, -2.0, 0.5], np.float16)
    label = np.array([1, 0], np.int64)
    body, header_length = encode_response(
        response(
            out("p", probabilities, "FP32", binary=True),
            out("label", label, "INT64"),
            out("h", half, "FP16", binary=True),
            out("s", np.array([b"xy", b""], object), "BYTES", binary=True),
        )
    )
    assert header_length is not None
    doc, chunks = split_binary(body, header_length)
    sizes = {o["name"]: o.get("parameters", {}).get("binary_data_size") for o in doc["outputs"]}
    assert sizes == {"p": 16, "label": None, "h": 6, "s": 4 + 2 + 4}
    assert "data" not in doc["outputs"][0] and doc["outputs"][1]["data"] == [1, 0]
    np.testing.assert_array_equal(np.frombuffer(chunks["p"], "<f4").reshape(2, 2), probabilities)
    assert chunks["h"] == b"\x00\x3c\x00\xc0\x00\x38"
    assert chunks["s"] == bytes_section([b"xy", b""])


def test_encode_binary_big_endian_and_transposed_arrays_as_little_endian_row_major() -> None:
    array = np.arange(6, dtype=">i4").reshape(2, 3).T
    body, header_length = encode_response(response(out("y", array, "INT32", binary=True)))
    assert header_length is not None
    _, chunks = split_binary(body, header_length)
    assert chunks["y"] == np.array([0, 3, 1, 4, 2, 5], "<i4").tobytes()


def test_binary_response_decodes_as_a_binary_request() -> None:
    """What the server writes in the binary extension is what a client sends: the two sides agree."""
    arrays = {
        "f": (np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2), "FP32"),
        "u": (np.array([0, 255, 7], np.uint8), "UINT8"),
        "b": (np.array([True, False]), "BOOL"),
        "s": (np.array([b"one", b"two"], object), "BYTES"),
    }
    body, header_length = encode_response(response(*(out(n, a, d, True) for n, (a, d) in arrays.items())))
    assert header_length is not None
    doc = orjson.loads(body[:header_length])
    request_header = orjson.dumps({"inputs": doc["outputs"]})
    request = decode_request(request_header + body[header_length:], len(request_header))
    for given in request.inputs:
        expected, datatype = arrays[given.name]
        assert given.datatype == datatype
        np.testing.assert_array_equal(given.data, expected)

"""Open Inference Protocol datatypes and their numpy / ONNX counterparts."""

from __future__ import annotations

import numpy as np

from quiver.errors import InvalidInput

# V2 datatype -> numpy dtype. BYTES travels as an object array of ``bytes``.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

DATATYPES = frozenset(NUMPY_DTYPES)
INTEGER_DATATYPES = frozenset(k for k, v in NUMPY_DTYPES.items() if v.kind in "iu")
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})

_FROM_NUMPY: dict[np.dtype, str] = {v: k for k, v in NUMPY_DTYPES.items()}

# ONNX type strings as ONNX Runtime reports them ("tensor(float)").
_ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype of a numpy array (``str``/``bytes`` object arrays are BYTES)."""
    found = _FROM_NUMPY.get(array.dtype)
    if found is not None:
        return found
    if array.dtype.kind in "SUO":
        return "BYTES"
    raise InvalidInput(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")


def from_onnx_type(onnx_type: str) -> str:
    try:
        return _ONNX_TYPES[onnx_type]
    except KeyError:
        raise InvalidInput(f"ONNX type {onnx_type} is not supported; supported: {sorted(_ONNX_TYPES)}") from None


def check_datatype(datatype: str, where: str) -> str:
    if datatype not in DATATYPES:
        raise InvalidInput(f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(sorted(DATATYPES))}")
    return datatype

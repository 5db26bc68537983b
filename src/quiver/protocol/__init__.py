"""Wire formats: the Open Inference Protocol v2 types, datatypes and REST codec."""

from __future__ import annotations

from quiver.protocol.codec import decode_request, encode_response
from quiver.protocol.types import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput

__all__ = [
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "RequestedOutput",
    "decode_request",
    "encode_response",
]

"""Open Inference Protocol (KServe V2) gRPC transport, with Triton's extensions; tritonclient.grpc works as is."""

from __future__ import annotations

from quiver.grpc.server import GrpcServer, start_grpc_server
from quiver.grpc.servicer import InferenceServicer

__all__ = ["GrpcServer", "InferenceServicer", "start_grpc_server"]

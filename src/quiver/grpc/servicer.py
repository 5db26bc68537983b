"""The Open Inference Protocol v2 gRPC adapter: proto messages in, data plane calls, proto messages out.

Like the REST adapter (``quiver.server.rest``) it holds no business logic. Errors are translated in one
place, ``error_status``: each ``QuiverError``'s HTTP status becomes a gRPC status code, its message the status
details (``_edge`` aborts unary calls with them).

``ModelStreamInfer`` (Triton's bidirectional streaming inference, what tritonclient's ``start_stream`` /
``async_stream_infer`` use) runs every request of a stream through the same data plane as ``ModelInfer``, as
soon as it arrives: requests of one stream are in flight together, so dynamic batching applies to them. Each
gets one ``ModelStreamInferResponse`` as it completes (so possibly out of order; ``id`` is echoed). A failed
request answers with ``error_message`` (the unary call's status details) and the stream goes on. When the
client closes its side, in-flight requests finish and the stream ends OK; a cancelled stream cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import json_format

from quiver.errors import NotFound, QuiverError
from quiver.grpc import grpc_predict_v2_pb2 as pb
from quiver.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from quiver.grpc.codec import decode_request, encode_response

if TYPE_CHECKING:  # quiver.server imports this package: a runtime import would be circular
    from quiver.server.dataplane import DataPlane

log = logging.getLogger("quiver.grpc")

# HTTP status (carried by every QuiverError) -> gRPC status code. 413 and 429 are both "too much":
# gRPC itself answers an over-size message with RESOURCE_EXHAUSTED.
STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
    500: grpc.StatusCode.INTERNAL,
}


def error_status(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and details for a failed call; logs what is not a ``QuiverError`` (a bug)."""
    if isinstance(exc, QuiverError):
        return STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message
    log.exception("gRPC %s failed", method)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


_Msg = TypeVar("_Msg")
_Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[_Msg]]


def _edge(method: _Handler[_Msg]) -> _Handler[_Msg]:
    """The one place errors become gRPC statuses (headers such as Retry-After become trailing metadata)."""

    @functools.wraps(method)
    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> _Msg:
        try:
            return await method(self, request, context)
        except Exception as exc:
            if isinstance(exc, QuiverError) and exc.headers:
                context.set_trailing_metadata(tuple((key.lower(), value) for key, value in exc.headers))
            await context.abort(*error_status(exc, method.__name__))
        raise AssertionError("unreachable: context.abort raises")

    return handler


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` on one ``DataPlane``. Register with ``add_to(server)``."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def add_to(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self, server)

    # ---- health and metadata

    @_edge
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.dataplane.live())

    @_edge
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dataplane.ready()[0])

    @_edge
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        # Unknown and not-ready models alike answer ready=false, as Triton does over gRPC.
        return pb.ModelReadyResponse(ready=self.dataplane.model_ready(request.name, request.version or None))

    @_edge
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        meta = self.dataplane.server_metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    @_edge
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        meta = self.dataplane.model_metadata(request.name, request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta.get("name", request.name),
            versions=[str(v) for v in meta.get("versions", [])],
            platform=meta.get("platform", ""),
            inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in meta.get("inputs", [])],
            outputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in meta.get("outputs", [])],
        )

    @_edge
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        config = self.dataplane.model_config(request.name, request.version or None)
        return pb.ModelConfigResponse(config=model_config_message(config))

    @_edge
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> pb.ModelStatisticsResponse:
        stats = self.dataplane.statistics(request.name or None, request.version or None)
        return pb.ModelStatisticsResponse(model_stats=[statistics_message(s) for s in stats["model_stats"]])

    # ---- inference

    @_edge
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        return await self._infer(request, context.time_remaining())

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Answer each request of the stream as it completes; see the module docstring."""
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()

        async def answer(request: pb.ModelInferRequest, deadline_s: float | None) -> None:
            answers.put_nowait(await self._stream_answer(request, deadline_s))

        async def read() -> None:
            try:
                async with asyncio.TaskGroup() as in_flight:  # exits once every request is answered
                    async for request in requests:
                        in_flight.create_task(answer(request, context.time_remaining()))
            finally:
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await answers.get()) is not None:
                yield response
            await reader  # re-raises a failure to read the stream
        finally:  # the client cancelled (or the server is stopping): cancel what is still in flight
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _stream_answer(
        self, request: pb.ModelInferRequest, deadline_s: float | None
    ) -> pb.ModelStreamInferResponse:
        try:
            return pb.ModelStreamInferResponse(infer_response=await self._infer(request, deadline_s))
        except Exception as exc:
            _, message = error_status(exc, "ModelStreamInfer")
            echo = pb.ModelInferResponse(
                model_name=request.model_name, model_version=request.model_version, id=request.id
            )
            return pb.ModelStreamInferResponse(error_message=message, infer_response=echo)

    async def _infer(self, request: pb.ModelInferRequest, deadline_s: float | None) -> pb.ModelInferResponse:
        infer_request = decode_request(request, deadline_s)
        response = await self.dataplane.infer(request.model_name, request.model_version or None, infer_request)
        return encode_response(response, raw=infer_request.binary_outputs)

    # ---- repository

    @_edge
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> pb.RepositoryIndexResponse:
        index = pb.RepositoryIndexResponse.ModelIndex
        rows = self.dataplane.repository_index(request.ready)
        return pb.RepositoryIndexResponse(
            models=[
                index(name=r["name"], version=r.get("version", ""), state=r["state"], reason=r["reason"]) for r in rows
            ]
        )

    @_edge
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        await self.dataplane.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @_edge
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        if request.model_name not in self.dataplane.manager.names():
            raise NotFound(f"unknown model '{request.model_name}'")
        await self.dataplane.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def model_config_message(config: dict[str, Any]) -> pb.ModelConfig:
    """The data plane's Triton-shaped config dict as the ``ModelConfig`` message (unknown keys dropped)."""
    doc = {k: v for k, v in config.items() if v is not None}
    for key in ("input", "output"):
        doc[key] = [{**t, "data_type": _triton_type(t["data_type"])} for t in doc.get(key, [])]
    return json_format.ParseDict(doc, pb.ModelConfig(), ignore_unknown_fields=True)


def _triton_type(data_type: str) -> str:
    return "TYPE_STRING" if data_type == "TYPE_BYTES" else data_type  # Triton's name for BYTES


def statistics_message(stats: dict[str, Any]) -> pb.ModelStatistics:
    """Quiver's per-model counters and mean durations as Triton's cumulative (count, ns) pairs."""
    duration = pb.StatisticDuration
    successes, executions = int(stats["success_count"]), int(stats["execution_count"])

    def total_ns(mean_ms: float, count: int) -> int:
        return int(mean_ms * 1e6 * count)

    return pb.ModelStatistics(
        name=stats["name"],
        version=stats["version"],
        inference_count=int(stats["inference_count"]),
        execution_count=executions,
        inference_stats=pb.InferStatistics(
            success=duration(count=successes, ns=total_ns(stats["mean_request_ms"], successes)),
            fail=duration(count=int(stats["failure_count"])),
            queue=duration(count=successes, ns=total_ns(stats["mean_queue_ms"], successes)),
            compute_infer=duration(count=executions, ns=total_ns(stats["mean_compute_ms"], executions)),
        ),
    )

"""The gRPC server: ``grpc.aio`` on the running asyncio event loop (uvloop included), serving one DataPlane.

It shares the loop with the HTTP server, so both transports call the same data plane, batchers and models.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc

from quiver.grpc.servicer import InferenceServicer

if TYPE_CHECKING:  # quiver.server imports this package: a runtime import would be circular
    from quiver.server.dataplane import DataPlane
    from quiver.settings import Settings

log = logging.getLogger("quiver.grpc")
_HINT = "choose a free port with --grpc-port (0: any), or -1 to turn gRPC off"


class GrpcServer:
    """Lifecycle: ``await GrpcServer.start(dataplane, host, port)`` -> ``.port`` -> ``await stop(grace_s)``.

    >>> server = await GrpcServer.start(dataplane, "127.0.0.1", 0)   # doctest: +SKIP
    >>> server.port                                                   # doctest: +SKIP
    43021
    """

    def __init__(self, server: grpc.aio.Server, port: int) -> None:
        self._server = server
        self.port = port

    @classmethod
    async def start(cls, dataplane: DataPlane, host: str, port: int, max_message_bytes: int = 64 << 20) -> GrpcServer:
        """Bind and start. ``port`` 0 picks a free port. Raises OSError when the address cannot be bound."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                # gRPC sets SO_REUSEPORT by default: a second server on a busy port would bind silently.
                ("grpc.so_reuseport", 0),
            ]
        )
        InferenceServicer(dataplane).add_to(server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio reports a failed bind as RuntimeError
            raise OSError(f"cannot listen for gRPC on {address} ({exc}); {_HINT}") from None
        if not bound:
            raise OSError(f"cannot listen for gRPC on {address}; {_HINT}")
        await server.start()
        return cls(server, bound)

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls; let in-flight calls finish for up to ``grace_s`` seconds; then cancel the rest."""
        await self._server.stop(grace_s)


async def start_grpc_server(dataplane: DataPlane, settings: Settings) -> GrpcServer | None:
    """Start gRPC as ``settings`` say: on ``grpc_port`` (0: any free port; negative: gRPC off)."""
    if settings.grpc_port < 0:
        return None
    server = await GrpcServer.start(dataplane, settings.host, settings.grpc_port, settings.max_body_bytes)
    log.info("listening on grpc://%s:%s", settings.host, server.port)
    return server

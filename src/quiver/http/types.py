"""The whole contract between the HTTP server and its handlers.

A handler is ``async def handler(request: Request) -> Response | StreamingResponse``. It raises
``quiver.errors.QuiverError`` subclasses for failures; the server turns them into a response once, using the
route's ``error_body`` (default ``{"error": "..."}``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from quiver.errors import QuiverError


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str  # raw query string, without "?"
    headers: dict[str, str]  # names lower-cased
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)
    # Set by the server when the client's connection closes; handlers of long requests may check it.
    disconnected: Callable[[], bool] = lambda: False


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class StreamingResponse:
    """A chunked response. If the client disconnects, the server stops iterating and calls ``aclose()``
    on ``chunks`` (so an async generator's ``finally`` runs and can free resources)."""

    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "text/event-stream"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Response | StreamingResponse]]
ErrorBody = Callable[[QuiverError], bytes]

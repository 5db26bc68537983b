"""The HTTP transport: a fast asyncio/httptools server, a router and the handler contract."""

from __future__ import annotations

from quiver.http.router import Router, default_error_body
from quiver.http.server import HttpServer, json_response
from quiver.http.types import Handler, Request, Response, StreamingResponse

__all__ = [
    "Handler",
    "HttpServer",
    "Request",
    "Response",
    "Router",
    "StreamingResponse",
    "default_error_body",
    "json_response",
]

"""The load generator's HTTP/1.1 client: one ``asyncio.Protocol`` per keep-alive connection.

Cheapness is the point (the client must not measure itself): request bytes are encoded once before the
run, a response is parsed by httptools (C), and completion is a plain callback -- no task, future or
stream object per request. Each connection has at most one request in flight (HTTP/1.1 without
pipelining, like wrk).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import cast
from urllib.parse import urlsplit

import httptools

from quiver.loadtest.stats import CONNECTION_LOST, PROTOCOL_ERROR

# on_done(connection, status, t_first, t_done)
DoneCallback = Callable[["Connection", int, float, float], None]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where requests go: ``http://host:port`` plus a path prefix (for servers mounted under one)."""

    host: str
    port: int
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise ValueError(f"url {url!r}: only http:// is supported (expected http://host:port)")
        if not parts.hostname:
            raise ValueError(f"url {url!r}: expected http://host:port")
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


def encode_request(endpoint: Endpoint, method: str, path: str, body: bytes = b"", content_type: str = "") -> bytes:
    """The full bytes of one keep-alive HTTP/1.1 request, built once before the run."""
    head = [f"{method} {endpoint.prefix}{path} HTTP/1.1", f"Host: {endpoint.authority}"]
    if body or method in ("POST", "PUT"):
        head.append(f"Content-Length: {len(body)}")
    if content_type:
        head.append(f"Content-Type: {content_type}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class Connection(asyncio.Protocol):
    """A keep-alive connection.

    Lifecycle: ``open_connection`` -> ``send`` (then ``on_done`` is called) ... -> ``close``."""

    def __init__(self, on_done: DoneCallback) -> None:
        self.on_done = on_done
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.t_start = 0.0  # the start time of the request in flight (scheduled or sent)
        self.t_first = 0.0
        self.busy = False
        self.alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.alive = True

    def send(self, data: bytes, t_start: float) -> None:
        self.t_start = t_start
        self.t_first = 0.0
        self.busy = True
        self.transport.write(data)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.abort(PROTOCOL_ERROR)

    def on_message_complete(self) -> None:
        t_done = perf_counter()
        self.busy = False
        if not self.parser.should_keep_alive():
            self.alive = False
        self.on_done(self, self.parser.get_status_code(), self.t_first, t_done)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(CONNECTION_LOST)

    def _fail(self, status: int) -> None:
        self.alive = False  # a failed request always ends its connection
        if self.busy:
            self.busy = False
            self.on_done(self, status, 0.0, perf_counter())

    def abort(self, status: int) -> None:
        """Give up on the request in flight (a timeout): report it and drop the connection."""
        self._fail(status)
        self.close()

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.abort()


# A streamed chunk carries a token when its text/content delta is non-empty.
_TOKEN = re.compile(rb'"(?:text|content)"\s*:\s*"[^"]')


class StreamingConnection(Connection):
    """For server-sent events (OpenAI ``stream: true``): ``t_first`` is the first chunk with a token."""

    def on_body(self, body: bytes) -> None:
        if not self.t_first and _TOKEN.search(body):
            self.t_first = perf_counter()


async def open_connection(endpoint: Endpoint, on_done: DoneCallback, streaming: bool = False) -> Connection:
    loop = asyncio.get_running_loop()
    cls = StreamingConnection if streaming else Connection
    _, protocol = await loop.create_connection(lambda: cls(on_done), endpoint.host, endpoint.port)
    return protocol


def install_fast_loop() -> None:
    """Use uvloop when it is installed (it is a core dependency on Linux and macOS)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

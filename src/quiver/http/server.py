"""A small, fast HTTP/1.1 server on asyncio and httptools.

Why not an ASGI stack: on the hot path (a 30-float JSON tensor in, 2 floats out) ASGI's per-request dict
plumbing costs more CPU than the model. Here a request is parsed by httptools' C parser into a ``Request``,
handed to the routed handler, and the response goes out in one ``write``. Keep-alive, pipelining (answered in
order), ``Expect: 100-continue``, gzip/deflate request bodies, a body size limit (413) and chunked streaming
responses are supported. ``shutdown()`` stops accepting, lets in-flight requests finish, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import zlib
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import httptools
import orjson

from quiver.errors import InternalError, InvalidInput, PayloadTooLarge, QuiverError
from quiver.http.router import Route, Router, default_error_body
from quiver.http.types import Request, Response, StreamingResponse

log = logging.getLogger("quiver.http")

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in _REASONS.items()}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Date:
    """The Date header, formatted once a second rather than per response."""

    def __init__(self) -> None:
        self._second = 0
        self.header = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self.header = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.header


_DATE = _Date()


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, run them in order, write responses."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self._pending: deque[tuple[Request, bool]] = deque()  # (request, keep-alive)
        self._busy = False  # a request of this connection is being handled
        self._writable = asyncio.Event()
        self._writable.set()
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_large = False
        self._refused = False  # the 413 already went out

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._writable.set()
        self.server.connections.discard(self)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._send_error(InvalidInput("protocol upgrades are not supported"), close=True)
        except httptools.HttpParserError as exc:
            self._send_error(InvalidInput(f"malformed HTTP request: {exc}"), close=True)

    # ---- httptools callbacks

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.server.max_body_bytes:
            self._too_large = True
            if self._headers.get("expect", "").lower() == "100-continue" and not (self._busy or self._pending):
                # the client waits for our answer before it sends the body: refuse now (RFC 9110 10.1.1)
                self._refuse_too_large()
        elif self._headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._body_size += len(body)
        if self._body_size > self.server.max_body_bytes:
            self._too_large = True
            self._body.clear()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._too_large:
            if not self._refused:
                self._refuse_too_large()
            return
        url = httptools.parse_url(self._url)
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(
            method=self.parser.get_method().decode(),
            path=url.path.decode("latin-1"),
            query=url.query.decode("latin-1") if url.query else "",
            headers=self._headers,
            body=body,
            disconnected=self._is_closed,
        )
        keep_alive = self.parser.should_keep_alive() and self._headers.get("connection", "").lower() != "close"
        self._pending.append((request, keep_alive))
        if not self._busy:
            self._busy = True
            self.server.spawn(self._serve_pending())

    def _refuse_too_large(self) -> None:
        self._refused = True
        limit = self.server.max_body_bytes
        self._send_error(PayloadTooLarge(f"request body exceeds the limit of {limit} bytes"), close=True)

    def _is_closed(self) -> bool:
        return self.closed

    # ---- request handling

    async def _serve_pending(self) -> None:
        try:
            while self._pending and not self.closed:
                request, keep_alive = self._pending.popleft()
                await self._serve(request, keep_alive and not self.server.stopping)
        finally:
            self._busy = False

    async def _serve(self, request: Request, keep_alive: bool) -> None:
        server = self.server
        started = time.perf_counter() if server.access_log else 0.0
        route: Route | None = None
        try:
            route, request.path_params = server.router.match(request.method, request.path)
            _decompress(request, server.max_body_bytes)
            response = await route.handler(request)
        except QuiverError as exc:
            response = _error_response(exc, route)
        except Exception as exc:
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = _error_response(InternalError(f"internal error: {type(exc).__name__}: {exc}"), route)
        if isinstance(response, StreamingResponse):
            await self._stream(response, keep_alive)
            status = response.status
        else:
            self._write(response, keep_alive)
            status = response.status
        if server.access_log:
            server.log_access(request, status, time.perf_counter() - started)

    def _write(self, response: Response, keep_alive: bool) -> None:
        if self.transport is None or self.closed:
            return
        head = [
            _status_line(response.status),
            b"content-type: ",
            response.content_type.encode(),
            b"\r\n",
            b"content-length: ",
            str(len(response.body)).encode(),
            b"\r\n",
            _DATE.get(),
        ]
        for name, value in response.headers:
            head += (name.encode(), b": ", value.encode(), b"\r\n")
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", response.body)
        self.transport.write(b"".join(head))
        if not keep_alive:
            self.transport.close()

    async def _stream(self, response: StreamingResponse, keep_alive: bool) -> None:
        transport = self.transport
        chunks = response.chunks
        try:
            if transport is None or self.closed:
                return
            head = [
                _status_line(response.status),
                b"content-type: ",
                response.content_type.encode(),
                b"\r\n",
                b"transfer-encoding: chunked\r\n",
                b"cache-control: no-cache\r\n",
                _DATE.get(),
            ]
            for name, value in response.headers:
                head += (name.encode(), b": ", value.encode(), b"\r\n")
            if not keep_alive:
                head.append(b"connection: close\r\n")
            transport.write(b"".join(head) + b"\r\n")
            async for chunk in chunks:
                if self.closed:
                    return
                if chunk:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                if not self._writable.is_set():
                    await self._writable.wait()
            if not self.closed:
                transport.write(b"0\r\n\r\n")
                if not keep_alive:
                    transport.close()
        except QuiverError as exc:  # an error after the head went out: end the stream with it
            if not self.closed and transport is not None:
                body = default_error_body(exc)
                transport.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))
        except Exception:
            # the head went out, so no 500 can follow: close, or the client would wait for the end forever
            log.exception("streaming response failed mid-stream")
            if not self.closed and transport is not None:
                transport.close()
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _send_error(self, error: QuiverError, close: bool) -> None:
        self._write(_error_response(error, None), keep_alive=not close)


def _status_line(status: int) -> bytes:
    return _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()


def _error_response(error: QuiverError, route: Route | None) -> Response:
    body = (route.error_body if route is not None else default_error_body)(error)
    return Response(error.status, body, "application/json", error.headers)


def _decompress(request: Request, limit: int) -> None:
    encoding = request.headers.get("content-encoding")
    if not encoding or encoding == "identity" or not request.body:
        return
    if encoding not in ("gzip", "deflate"):
        raise InvalidInput(f"unsupported Content-Encoding {encoding!r}; expected gzip, deflate or identity")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        body = inflater.decompress(request.body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"request body is not valid {encoding}: {exc}") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed request body exceeds the limit of {limit} bytes")
    if not inflater.eof:
        raise InvalidInput(f"request body is not valid {encoding}: the compressed stream is truncated")
    request.body = body
    # the binary-extension header length refers to the decompressed body
    request.headers.pop("content-encoding")


class HttpServer:
    """Serve a ``Router`` over HTTP/1.1.

    >>> server = HttpServer(router)                          # doctest: +SKIP
    >>> await server.start("127.0.0.1", 8000)                # doctest: +SKIP
    >>> await server.shutdown()  # stop accepting, finish in-flight requests, close
    """

    def __init__(self, router: Router, max_body_bytes: int = 64 * 1024 * 1024, access_log: bool = False) -> None:
        self.router = router
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.connections: set[_Connection] = set()
        self.stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._servers: list[asyncio.AbstractServer] = []

    @property
    def ports(self) -> list[int]:
        return [sock.getsockname()[1] for server in self._servers for sock in getattr(server, "sockets", ())]

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(self), host, port, backlog=2048, reuse_port=reuse_port or None
        )
        self._servers.append(server)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop accepting; wait (up to ``timeout_s``) for in-flight requests; close every connection."""
        self.stopping = True
        for server in self._servers:
            server.close()
        deadline = time.monotonic() + timeout_s
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def log_access(self, request: Request, status: int, seconds: float) -> None:
        record = {
            "ts": time.time(),
            "method": request.method,
            "path": request.path,
            "status": status,
            "ms": round(seconds * 1e3, 3),
            "bytes_in": len(request.body),
        }
        sys.stderr.write(orjson.dumps(record).decode() + "\n")


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))

"""The HTTP/1.1 server over real sockets: keep-alive, pipelining, 100-continue, limits, errors, encodings and
streaming. Each test starts an ``HttpServer`` on 127.0.0.1 port 0 inside ``asyncio.run`` and speaks raw HTTP."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from quiver.errors import Overloaded, Unavailable
from quiver.http import HttpServer, Request, Response, Router, StreamingResponse, json_response

TIMEOUT = 3.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    chunks: list[bytes] = field(default_factory=list)

    def json(self) -> Any:
        return orjson.loads(self.body)


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = status_line.split(" ")
    assert version == "HTTP/1.1"
    headers = {}
    for line in lines:
        if line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return int(status), headers


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), TIMEOUT)
    size = int(size_line.strip(), 16)
    data = await asyncio.wait_for(reader.readexactly(size + 2), TIMEOUT)
    assert data.endswith(b"\r\n")
    return data[:-2]


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    status, headers = await read_head(reader)
    if headers.get("transfer-encoding") == "chunked":
        chunks = []
        while chunk := await read_chunk(reader):
            chunks.append(chunk)
        return Reply(status, headers, b"".join(chunks), chunks)
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), TIMEOUT)
    return Reply(status, headers, body)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), TIMEOUT) == b""
    except ConnectionResetError:
        return True


def http(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    if body and "Transfer-Encoding" not in {k.replace("_", "-") for k in headers}:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ----------------------------------------------------------------------------------------- the app under test


class App:
    """A small router whose handlers exercise every part of the handler contract."""

    def __init__(self) -> None:
        self.stream_closed = asyncio.Event()
        self.stream_sent = 0
        self.router = Router()
        add = self.router.add
        add("GET", "/fast", self.fast)
        add("POST", "/echo", self.echo)
        add("GET", "/slow", self.slow)
        add("GET", "/models/{model}/versions/{version}", self.params)
        add("POST", "/models/{model}/versions/{version}", self.params)
        add("GET", "/overloaded", self.overloaded)
        add("GET", "/crash", self.crash)
        add("GET", "/stream", self.stream)
        add("GET", "/endless", self.endless)
        add("GET", "/stream-crash", self.stream_crash)
        add("GET", "/stream-error", self.stream_error)
        add("GET", "/custom-error", self.overloaded, error_body=lambda e: b"custom:" + e.message.encode())

    async def fast(self, request: Request) -> Response:
        return Response(200, b"fast", "text/plain")

    async def echo(self, request: Request) -> Response:
        return json_response({"body": request.body.decode(), "query": request.query, "headers": request.headers})

    async def slow(self, request: Request) -> Response:
        await asyncio.sleep(0.05)
        return Response(200, b"slow", "text/plain")

    async def params(self, request: Request) -> Response:
        return json_response({"method": request.method, "params": request.path_params})

    async def overloaded(self, request: Request) -> Response:
        raise Overloaded("queue is full", retry_after_s=3)

    async def crash(self, request: Request) -> Response:
        raise RuntimeError("handler bug")

    async def stream(self, request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                await asyncio.sleep(0.002)
                yield f"data: {i}\n\n".encode()

        return StreamingResponse(chunks(), headers=(("x-stream", "yes"),))

    async def endless(self, request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    self.stream_sent += 1
                    yield b"tick\n"
                    await asyncio.sleep(0.01)
            finally:
                self.stream_closed.set()

        return StreamingResponse(chunks())

    async def stream_crash(self, request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            raise RuntimeError("generator bug")

        return StreamingResponse(chunks())

    async def stream_error(self, request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            raise Unavailable("model unloaded mid-stream")

        return StreamingResponse(chunks())


Client = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def run(test: Callable[[App, Callable[[], Awaitable[Client]]], Awaitable[None]], **server_kw: Any) -> None:
    async def main() -> None:
        app = App()
        server = HttpServer(app.router, **server_kw)
        await server.start("127.0.0.1", 0)
        port = server.ports[0]
        writers: list[asyncio.StreamWriter] = []

        async def connect() -> Client:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
            return reader, writer

        try:
            await test(app, connect)
        finally:
            for writer in writers:
                writer.close()
            await server.shutdown(1.0)

    asyncio.run(main())


# ----------------------------------------------------------------------------------------- connections


def test_keep_alive_serves_two_requests_on_one_connection() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        for _ in range(2):
            writer.write(http("GET", "/fast"))
            reply = await read_reply(reader)
            assert (reply.status, reply.body) == (200, b"fast")
            assert reply.headers["content-type"] == "text/plain"
            assert "date" in reply.headers and "connection" not in reply.headers
        writer.write(http("POST", "/echo", b"third"))
        assert (await read_reply(reader)).json()["body"] == "third"

    run(test)


def test_pipelined_requests_are_answered_in_order() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("GET", "/slow") + http("GET", "/fast") + http("POST", "/echo", b"3rd"))
        bodies = [(await read_reply(reader)).body for _ in range(3)]
        assert bodies[:2] == [b"slow", b"fast"]
        assert orjson.loads(bodies[2])["body"] == "3rd"

    run(test)


def test_connection_close_header_closes_after_the_response() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("GET", "/fast", Connection="close"))
        reply = await read_reply(reader)
        assert reply.body == b"fast" and reply.headers["connection"] == "close"
        assert await closed_by_server(reader)

    run(test)


def test_http_1_0_without_keep_alive_is_closed() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(b"GET /fast HTTP/1.0\r\n\r\n")
        reply = await read_reply(reader)
        assert reply.body == b"fast"
        assert await closed_by_server(reader)

    run(test)


def test_expect_100_continue() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("POST", "/echo", Content_Length="5", Expect="100-continue"))
        status, headers = await read_head(reader)
        assert status == 100 and headers == {}
        writer.write(b"hello")
        assert (await read_reply(reader)).json()["body"] == "hello"

    run(test)


def test_expect_100_continue_with_a_body_over_the_limit_is_refused_at_once() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("POST", "/echo", Content_Length="5000", Expect="100-continue"))
        reply = await read_reply(reader)  # without sending the body
        assert reply.status == 413
        assert await closed_by_server(reader)

    run(test, max_body_bytes=1024)


# ----------------------------------------------------------------------------------------- limits and bad requests


def test_body_over_the_limit_is_413_and_the_connection_is_closed() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("POST", "/echo", b"x" * 1024))  # exactly the limit is fine
        assert len((await read_reply(reader)).json()["body"]) == 1024
        writer.write(http("POST", "/echo", b"x" * 3000))
        reply = await read_reply(reader)
        assert reply.status == 413
        assert "exceeds the limit of 1024 bytes" in reply.json()["error"]
        assert reply.headers["connection"] == "close"
        assert await closed_by_server(reader)

    run(test, max_body_bytes=1024)


def test_chunked_body_over_the_limit_is_413() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        chunk = b"y" * 600
        body = b"".join(b"%x\r\n%b\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
        writer.write(http("POST", "/echo", body, Transfer_Encoding="chunked"))
        assert (await read_reply(reader)).status == 413
        assert await closed_by_server(reader)

    run(test, max_body_bytes=1024)


@pytest.mark.parametrize(
    "raw",
    [b"NOT HTTP AT ALL\r\n\r\n", b"GET /fast HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"GET / HTTP/9.x\r\n\r\n"],
)
def test_malformed_http_is_400_and_closed(raw: bytes) -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(raw)
        reply = await read_reply(reader)
        assert reply.status == 400
        assert "malformed HTTP request" in reply.json()["error"]
        assert await closed_by_server(reader)
        # the server still serves other connections
        reader2, writer2 = await connect()
        writer2.write(http("GET", "/fast"))
        assert (await read_reply(reader2)).body == b"fast"

    run(test)


def test_unknown_route_is_404_and_wrong_method_is_405() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("GET", "/nowhere"))
        reply = await read_reply(reader)
        assert reply.status == 404 and reply.json() == {"error": "no route for GET /nowhere"}
        assert reply.headers["content-type"] == "application/json"
        writer.write(http("DELETE", "/fast"))
        reply = await read_reply(reader)
        assert reply.status == 405 and "allowed: GET" in reply.json()["error"]
        writer.write(http("GET", "/fast"))  # the connection stays usable
        assert (await read_reply(reader)).body == b"fast"

    run(test)


# ----------------------------------------------------------------------------------------- handler errors


def test_quiver_error_becomes_its_status_headers_and_error_body() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("GET", "/overloaded"))
        reply = await read_reply(reader)
        assert reply.status == 429
        assert reply.headers["retry-after"] == "3"
        assert reply.json() == {"error": "queue is full"}
        writer.write(http("GET", "/custom-error"))
        reply = await read_reply(reader)
        assert (reply.status, reply.body) == (429, b"custom:queue is full")

    run(test)


def test_plain_exception_is_500_and_the_server_keeps_serving(caplog: pytest.LogCaptureFixture) -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("GET", "/crash"))
        reply = await read_reply(reader)
        assert reply.status == 500
        assert reply.json() == {"error": "internal error: RuntimeError: handler bug"}
        writer.write(http("GET", "/fast"))
        assert (await read_reply(reader)).body == b"fast"
        reader2, writer2 = await connect()
        writer2.write(http("GET", "/fast"))
        assert (await read_reply(reader2)).body == b"fast"

    run(test)
    assert "unhandled error in GET /crash" in caplog.text


# ----------------------------------------------------------------------------------------- request bodies


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_compressed_request_body(encoding: str, compress: Callable[[bytes], bytes]) -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        payload = b'{"inputs": []}' * 50
        writer.write(http("POST", "/echo", compress(payload), Content_Encoding=encoding))
        reply = await read_reply(reader)
        assert reply.status == 200
        doc = reply.json()
        assert doc["body"] == payload.decode()
        assert "content-encoding" not in doc["headers"]  # the handler sees a plain body

    run(test)


def test_bad_or_unsupported_or_oversized_compressed_bodies() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("POST", "/echo", b"not gzip at all", Content_Encoding="gzip"))
        reply = await read_reply(reader)
        assert reply.status == 400 and "not valid gzip" in reply.json()["error"]
        writer.write(http("POST", "/echo", b"data", Content_Encoding="br"))
        reply = await read_reply(reader)
        assert reply.status == 400 and "unsupported Content-Encoding 'br'" in reply.json()["error"]
        bomb = gzip.compress(b"\0" * 100_000)  # small on the wire, over the limit once inflated
        assert len(bomb) < 4096
        writer.write(http("POST", "/echo", bomb, Content_Encoding="gzip"))
        reply = await read_reply(reader)
        assert reply.status == 413 and "decompressed request body exceeds" in reply.json()["error"]
        truncated = gzip.compress(b"abcdefgh" * 100)[:-12]
        writer.write(http("POST", "/echo", truncated, Content_Encoding="gzip"))
        reply = await read_reply(reader)
        assert reply.status == 400 and "gzip" in reply.json()["error"]

    run(test, max_body_bytes=4096)


def test_chunked_request_body() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("POST", "/echo", Transfer_Encoding="chunked"))
        for part in (b"hello ", b"chunked ", b"world"):
            writer.write(b"%x\r\n%b\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.write(b"0\r\n\r\n")
        assert (await read_reply(reader)).json()["body"] == "hello chunked world"

    run(test)


def test_request_split_across_many_writes() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        raw = http("POST", "/echo?x=1&y=two", b"split body", X_Custom="Value")
        for i in range(len(raw)):
            writer.write(raw[i : i + 1])
            await writer.drain()
        doc = (await read_reply(reader)).json()
        assert doc["body"] == "split body" and doc["query"] == "x=1&y=two"
        assert doc["headers"]["x-custom"] == "Value"

    run(test)


def test_path_parameters_reach_the_handler() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("POST", "/models/fraud/versions/3", b"{}"))
        assert (await read_reply(reader)).json() == {"method": "POST", "params": {"model": "fraud", "version": "3"}}

    run(test)


# ----------------------------------------------------------------------------------------- streaming


def test_streaming_response_chunks_arrive_in_order() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("GET", "/stream"))
        reply = await read_reply(reader)
        assert reply.status == 200
        assert reply.headers["content-type"] == "text/event-stream"
        assert reply.headers["x-stream"] == "yes"
        assert reply.chunks == [f"data: {i}\n\n".encode() for i in range(5)]
        writer.write(http("GET", "/fast"))  # keep-alive after a complete stream
        assert (await read_reply(reader)).body == b"fast"

    run(test)


def test_client_disconnect_mid_stream_closes_the_generator() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("GET", "/endless"))
        status, _ = await read_head(reader)
        assert status == 200
        assert await read_chunk(reader) == b"tick\n"
        writer.close()
        await asyncio.wait_for(app.stream_closed.wait(), TIMEOUT)  # the generator's finally ran
        sent = app.stream_sent
        await asyncio.sleep(0.05)
        assert app.stream_sent == sent  # and it is not iterated any more

    run(test)


def test_quiver_error_mid_stream_ends_the_stream_with_the_error() -> None:
    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("GET", "/stream-error"))
        reply = await read_reply(reader)
        assert reply.status == 200
        assert reply.chunks == [b"first", b'{"error":"model unloaded mid-stream"}']

    run(test)


def test_plain_exception_mid_stream_closes_the_connection() -> None:
    """The head went out already, so no 500 can follow: the client must not wait forever for the end."""

    async def test(app: App, connect: Callable[[], Awaitable[Client]]) -> None:
        reader, writer = await connect()
        writer.write(http("GET", "/stream-crash"))
        status, _ = await read_head(reader)
        assert status == 200
        assert await read_chunk(reader) == b"first"
        assert await closed_by_server(reader)
        reader2, writer2 = await connect()
        writer2.write(http("GET", "/fast"))
        assert (await read_reply(reader2)).body == b"fast"

    run(test)


# ----------------------------------------------------------------------------------------- shutdown


def test_shutdown_finishes_in_flight_requests_then_closes() -> None:
    async def main() -> None:
        app = App()
        server = HttpServer(app.router)
        await server.start("127.0.0.1", 0)
        port = server.ports[0]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(http("GET", "/slow"))
        await asyncio.sleep(0.01)  # the request is in flight
        await server.shutdown(2.0)
        reply = await read_reply(reader)
        assert reply.body == b"slow"
        assert await closed_by_server(reader)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    asyncio.run(main())

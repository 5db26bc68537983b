"""A small local HTTP responder speaking the V2 and OpenAI routes a load generator needs.

Two uses: (1) a *trivial* responder (fixed answer, no work) to measure how many requests per second one
client core can drive; (2) a *simulated batching server* (``SimService``: a queue, ``instances`` workers,
dynamic batches of up to ``max_batch`` waiting at most ``max_queue_delay_ms``, compute time
``base_ms + per_item_ms * batch`` with log-normal jitter, Quiver's metric names at ``/metrics``) so the
load generator and the planner are tested end to end without a model. It is not a model server.

    python -m quiver.loadtest.responder --port 8123             # trivial
    python -m quiver.loadtest.responder --port 8123 --sim '{"base_ms": 2, "per_item_ms": 0.5}'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

import httptools
import numpy as np
import orjson

from quiver.loadtest.client import install_fast_loop
from quiver.metrics import Registry

_OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
_JSON = b"Content-Type: application/json\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\n" + _JSON + b'Content-Length: 21\r\n\r\n{"error":"not found"}'
_BUSY = b"HTTP/1.1 429 Too Many Requests\r\n" + _JSON + b'Content-Length: 16\r\n\r\n{"error":"full"}'


def _ok(body: bytes, content_type: bytes = b"application/json") -> bytes:
    head = _OK_HEAD if content_type == b"application/json" else _OK_HEAD.replace(b"application/json", content_type)
    return head + str(len(body)).encode() + b"\r\n\r\n" + body


@dataclass(frozen=True, slots=True)
class SimConfig:
    """A simulated batching model: compute(batch) = (base_ms + per_item_ms * batch) * jitter."""

    base_ms: float = 2.0
    per_item_ms: float = 0.5
    instances: int = 1
    max_batch: int = 1
    max_queue_delay_ms: float = 0.0
    jitter_sigma: float = 0.1  # log-normal sigma of the compute time
    queue_capacity: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        if self.base_ms < 0 or self.per_item_ms < 0 or self.max_queue_delay_ms < 0 or self.jitter_sigma < 0:
            raise ValueError("base_ms, per_item_ms, max_queue_delay_ms and jitter_sigma must be >= 0")
        if self.instances < 1 or self.max_batch < 1 or self.queue_capacity < 1:
            raise ValueError("instances, max_batch and queue_capacity must be >= 1")


@dataclass(frozen=True, slots=True)
class ResponderConfig:
    model: str = "model"
    inputs: tuple[tuple[str, str, tuple[int, ...]], ...] = (("x", "FP32", (-1, 4)),)
    tokens: int = 8  # OpenAI responses: tokens per completion
    inter_token_ms: float = 0.0
    sim: SimConfig | None = None


class SimService:
    """The simulated batching server behind ``/infer``. Lifecycle: ``start()`` on the loop, ``submit``..."""

    def __init__(self, cfg: SimConfig, model: str) -> None:
        self.cfg = cfg
        self.queue: deque[tuple[float, Callable[[], None]]] = deque()
        self.arrived = asyncio.Event()
        self.rng = np.random.default_rng(cfg.seed)
        self.registry = Registry()
        labels = ("model", "version")
        self.queue_h = self.registry.histogram("quiver_queue_duration_seconds", "Queue wait.", labels).labels(
            model, "1"
        )
        self.compute_h = self.registry.histogram("quiver_compute_duration_seconds", "Batch compute.", labels).labels(
            model, "1"
        )
        self.request_h = self.registry.histogram("quiver_request_duration_seconds", "In server.", labels).labels(
            model, "1"
        )
        batch = self.registry.histogram(
            "quiver_batch_size", "Rows per batch.", labels, (1, 2, 4, 8, 16, 32, 64, 128, 256)
        )
        self.batch_h = batch.labels(model, "1")
        self.workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.workers = [asyncio.create_task(self._instance()) for _ in range(self.cfg.instances)]

    def submit(self, reply: Callable[[], None]) -> bool:
        if len(self.queue) >= self.cfg.queue_capacity:
            return False
        self.queue.append((asyncio.get_running_loop().time(), reply))
        self.arrived.set()
        return True

    async def _instance(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        while True:
            while not self.queue:
                self.arrived.clear()
                await self.arrived.wait()
            deadline = self.queue[0][0] + cfg.max_queue_delay_ms / 1000
            while len(self.queue) < cfg.max_batch and (left := deadline - loop.time()) > 0:
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), left)
                except TimeoutError:
                    break
            if not self.queue:
                continue  # another instance took them
            batch = [self.queue.popleft() for _ in range(min(cfg.max_batch, len(self.queue)))]
            started = loop.time()
            compute = (cfg.base_ms + cfg.per_item_ms * len(batch)) / 1000
            compute *= float(self.rng.lognormal(0.0, cfg.jitter_sigma)) if cfg.jitter_sigma else 1.0
            await asyncio.sleep(compute)
            done = loop.time()
            self.compute_h.observe(done - started)
            self.batch_h.observe(len(batch))
            for arrival, reply in batch:
                self.queue_h.observe(started - arrival)
                self.request_h.observe(done - arrival)
                reply()


class _HttpProtocol(asyncio.Protocol):
    def __init__(self, app: Responder) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url, body, self.url, self.body = self.url, b"".join(self.body), b"", []
        self.app.handle(self, self.parser.get_method(), url, body)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class Responder:
    """Answers V2 health/metadata/infer, OpenAI completions, and ``/metrics``. Use ``serve`` or ``run``."""

    def __init__(self, cfg: ResponderConfig) -> None:
        self.cfg = cfg
        inputs = [{"name": n, "datatype": d, "shape": list(s)} for n, d, s in cfg.inputs]
        outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]
        meta = {"name": cfg.model, "versions": ["1"], "platform": "sim", "inputs": inputs, "outputs": outputs}
        self.meta = _ok(orjson.dumps(meta))
        self.empty = _ok(b"{}")
        infer = {
            "model_name": cfg.model,
            "model_version": "1",
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 1], "data": [0.5]}],
        }
        self.infer = _ok(orjson.dumps(infer))
        self.sim: SimService | None = None
        words = " ".join(["tok"] * cfg.tokens)
        self.completion = _ok(orjson.dumps({"object": "text_completion", "choices": [{"text": words, "index": 0}]}))
        self.chat = _ok(
            orjson.dumps(
                {
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": words}}],
                }
            )
        )
        self.model_prefix = f"/v2/models/{cfg.model}".encode()

    def handle(self, conn: _HttpProtocol, method: bytes, url: bytes, body: bytes) -> None:
        path = url.split(b"?", 1)[0]
        if path.startswith(self.model_prefix) and path.endswith(b"/infer") and method == b"POST":
            if self.sim is None:
                conn.write(self.infer)
            elif not self.sim.submit(lambda: conn.write(self.infer)):
                conn.write(_BUSY)
        elif path in (self.model_prefix, self.model_prefix + b"/versions/1"):
            conn.write(self.meta)
        elif path.startswith(b"/v2/health/") or (path.startswith(self.model_prefix) and path.endswith(b"/ready")):
            conn.write(self.empty)
        elif path in (b"/v1/completions", b"/v1/chat/completions") and method == b"POST":
            chat = path.endswith(b"chat/completions")
            if b'"stream":true' in body.replace(b" ", b""):
                asyncio.get_running_loop().create_task(self._stream(conn, chat))
            else:
                conn.write(self.chat if chat else self.completion)
        elif path == b"/metrics":
            conn.write(_ok(self.sim.registry.render() if self.sim else b"", b"text/plain; version=0.0.4"))
        else:
            conn.write(_NOT_FOUND)

    async def _stream(self, conn: _HttpProtocol, chat: bool) -> None:
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(self.cfg.tokens + 1):
            if i and self.cfg.inter_token_ms:
                await asyncio.sleep(self.cfg.inter_token_ms / 1000)
            if chat:
                delta = {"role": "assistant"} if i == 0 else {"content": "tok "}
                event = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
            elif i == 0:
                continue
            else:
                event = {"object": "text_completion", "choices": [{"index": 0, "text": "tok "}]}
            _chunk(conn, b"data: " + orjson.dumps(event) + b"\n\n")
        _chunk(conn, b"data: [DONE]\n\n")
        conn.write(b"0\r\n\r\n")

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
        """Start listening on the running loop; ``server.sockets[0].getsockname()[1]`` is the port."""
        if self.cfg.sim is not None:
            self.sim = SimService(self.cfg.sim, self.cfg.model)
            self.sim.start()
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _HttpProtocol(self), host, port, backlog=4096)


def _chunk(conn: _HttpProtocol, data: bytes) -> None:
    conn.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _main() -> None:
    parser = argparse.ArgumentParser(description="A local V2/OpenAI responder for load-generator checks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default="model")
    parser.add_argument("--sim", default=None, help="JSON of SimConfig fields: a simulated batching server")
    parser.add_argument("--inter-token-ms", type=float, default=0.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    sim = SimConfig(**json.loads(args.sim)) if args.sim else None
    cfg = ResponderConfig(model=args.model, sim=sim, inter_token_ms=args.inter_token_ms)
    install_fast_loop()

    async def run() -> None:
        server = await Responder(cfg).serve(args.host, args.port)
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port, "sim": asdict(sim) if sim else None}), flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()

    asyncio.run(run())


def config_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)


if __name__ == "__main__":
    _main()

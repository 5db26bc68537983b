"""The per-process load engine: closed loop (N connections, each sends again as soon as it is answered)
or open loop (requests sent at scheduled times whatever the server does), on one event loop.

It runs in a thread of its own (``ThreadWorker``) or in a child process (``ProcessWorker``); the coordinator
in ``runner`` only calls ``start``, ``drain`` and ``stop``. Latency counts from the *scheduled* send time in
open loop, so a client that falls behind cannot hide server queueing (no coordinated omission); how far
behind it fell is reported as send lag.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from time import perf_counter
from typing import Any

from quiver.loadtest.arrivals import Arrivals
from quiver.loadtest.client import Connection, Endpoint, install_fast_loop, open_connection
from quiver.loadtest.payload import Workload
from quiver.loadtest.stats import CONNECT_ERROR, TIMEOUT, Records


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Closed loop (``concurrency``) or open loop (``arrivals``); exactly one of them."""

    concurrency: int | None = None
    arrivals: Arrivals | None = None
    max_connections: int = 1024  # open loop: more in-flight requests than this wait in the client
    initial_connections: int = 32  # open loop: opened before the first request
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.arrivals is None):
            raise ValueError("give exactly one of concurrency (closed loop) or arrivals (open loop)")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_connections < 1 or self.initial_connections < 0 or self.timeout_s <= 0:
            raise ValueError("max_connections >= 1, initial_connections >= 0 and timeout_s > 0 are required")

    def share(self, index: int, count: int) -> LoadSpec:
        """This spec's part for worker ``index`` of ``count`` (concurrency or rate split evenly)."""
        if count == 1:
            return self
        if self.concurrency is not None:
            part = self.concurrency // count + (1 if index < self.concurrency % count else 0)
            return LoadSpec(max(part, 1), None, self.max_connections, self.initial_connections, self.timeout_s)
        a = self.arrivals
        if a is None:
            raise ValueError("unreachable: a spec has concurrency or arrivals")
        arrivals = Arrivals(
            a.rate / count, a.pattern, a.seed * 1000 + index, a.burst_factor, a.burst_duty, a.burst_period_s
        )
        return LoadSpec(
            None,
            arrivals,
            max(self.max_connections // count, 1),
            max(self.initial_connections // count, 1),
            self.timeout_s,
        )

    def describe(self) -> str:
        if self.concurrency is not None:
            return f"closed loop, concurrency {self.concurrency}"
        rate = self.arrivals.rate if self.arrivals else 0.0
        pattern = self.arrivals.pattern if self.arrivals else "?"
        return f"open loop, {pattern} {rate:g} req/s"


@dataclass(slots=True)
class Chunk:
    """What a worker hands back on ``drain``: the finished requests since the last drain, and its counters."""

    records: Records = field(default_factory=Records)
    sent: int = 0
    lag_sum_s: float = 0.0
    lag_max_s: float = 0.0
    backlog_max: int = 0
    in_flight: int = 0
    cpu_s: float = 0.0

    def merge(self, other: Chunk) -> None:
        self.records.extend(other.records)
        self.sent += other.sent
        self.lag_sum_s += other.lag_sum_s
        self.lag_max_s = max(self.lag_max_s, other.lag_max_s)
        self.backlog_max = max(self.backlog_max, other.backlog_max)
        self.in_flight = other.in_flight  # the latest count per worker; summed by the caller
        self.cpu_s += other.cpu_s


class Engine:
    """Sends the workload on one event loop.

    Lifecycle: ``await start(t0)`` -> ``drain()`` ... -> ``await stop()``."""

    def __init__(self, endpoint: Endpoint, workload: Workload, spec: LoadSpec) -> None:
        self.endpoint = endpoint
        self.requests = workload.requests
        self.streaming = workload.streaming
        self.spec = spec
        self.conns: list[Connection] = []
        self.idle: list[Connection] = []
        self.backlog: deque[float] = deque()
        self.opening = 0
        self.running = False
        self.next_index = 0
        self.chunk = Chunk()
        self.tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self, t0: float) -> None:
        self.running = True
        if self.spec.concurrency is not None:
            for _ in range(self.spec.concurrency):
                conn = await self._connect()
                if conn is not None:
                    self._send(conn, perf_counter())
                else:  # keep trying (and counting connect errors) every 50 ms
                    self.tasks.append(asyncio.create_task(self._reconnect()))
        else:
            for _ in range(min(self.spec.initial_connections, self.spec.max_connections)):
                conn = await self._connect()
                if conn is not None:
                    self.idle.append(conn)
            self.tasks.append(asyncio.create_task(self._dispatch(t0)))
        self.tasks.append(asyncio.create_task(self._watchdog()))

    def drain(self) -> Chunk:
        out, self.chunk = self.chunk, Chunk()
        out.in_flight = sum(1 for c in self.conns if c.busy) + len(self.backlog)
        return out

    async def stop(self, grace_s: float = 2.0) -> Chunk:
        """Stop sending; wait up to ``grace_s`` for requests in flight, then close every connection."""
        self.running = False
        self.backlog.clear()
        for task in self.tasks:
            task.cancel()
        deadline = perf_counter() + grace_s
        while any(c.busy for c in self.conns) and perf_counter() < deadline:
            await asyncio.sleep(0.01)
        chunk = self.drain()
        for conn in self.conns:
            conn.busy = False  # unfinished requests stay counted in chunk.in_flight
            conn.close()
        return chunk

    # -- sending ---------------------------------------------------------------------------------------
    def _send(self, conn: Connection, t_start: float) -> None:
        self.chunk.sent += 1
        self.next_index += 1
        conn.send(self.requests[self.next_index % len(self.requests)], t_start)

    def _on_done(self, conn: Connection, status: int, t_first: float, t_done: float) -> None:
        rec = self.chunk.records
        rec.start.append(conn.t_start)
        rec.first.append(t_first)
        rec.done.append(t_done)
        rec.status.append(status)
        if not self.running:
            return
        if not conn.alive:
            self._replace(conn)
        elif self.spec.concurrency is not None:
            self._send(conn, perf_counter())
        elif self.backlog:
            self._send(conn, self.backlog.popleft())
        else:
            self.idle.append(conn)

    def _replace(self, conn: Connection) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        self.tasks.append(asyncio.get_running_loop().create_task(self._reconnect()))

    async def _reconnect(self) -> None:
        new = await self._connect()
        if new is None:
            await asyncio.sleep(0.05)  # the server refuses: do not spin
            if self.running:
                self.tasks.append(asyncio.create_task(self._reconnect()))
            return
        if not self.running:
            return
        if self.spec.concurrency is not None:
            self._send(new, perf_counter())
        elif self.backlog:
            self._send(new, self.backlog.popleft())
        else:
            self.idle.append(new)

    async def _connect(self) -> Connection | None:
        self.opening += 1
        try:
            conn = await open_connection(self.endpoint, self._on_done, self.streaming)
        except OSError:
            now = perf_counter()
            rec = self.chunk.records
            rec.start.append(now)
            rec.first.append(0.0)
            rec.done.append(now)
            rec.status.append(CONNECT_ERROR)
            return None
        finally:
            self.opening -= 1
        self.conns.append(conn)
        return conn

    async def _dispatch(self, t0: float) -> None:
        if self.spec.arrivals is None:
            return
        offsets = self.spec.arrivals.offsets()
        due = t0 + next(offsets)
        while self.running:
            now = perf_counter()
            while due <= now:
                self._submit(due, now)
                due = t0 + next(offsets)
            self.chunk.backlog_max = max(self.chunk.backlog_max, len(self.backlog))
            await asyncio.sleep(max(due - perf_counter(), 0.0))

    def _submit(self, t_sched: float, now: float) -> None:
        lag = now - t_sched
        self.chunk.lag_sum_s += lag
        if lag > self.chunk.lag_max_s:
            self.chunk.lag_max_s = lag
        if self.idle:
            self._send(self.idle.pop(), t_sched)
            return
        self.backlog.append(t_sched)
        if len(self.conns) + self.opening < self.spec.max_connections:
            self.tasks.append(asyncio.get_running_loop().create_task(self._reconnect()))

    async def _watchdog(self) -> None:
        period = min(0.1, self.spec.timeout_s / 4)
        while self.running:
            await asyncio.sleep(period)
            limit = perf_counter() - self.spec.timeout_s
            for conn in [c for c in self.conns if c.busy and c.t_start < limit]:
                conn.abort(TIMEOUT)
            self.tasks = [t for t in self.tasks if not t.done()]


class ThreadWorker:
    """An ``Engine`` on its own event loop in a background thread of this process."""

    def __init__(self, endpoint: Endpoint, workload: Workload, spec: LoadSpec) -> None:
        install_fast_loop()
        self.loop = asyncio.new_event_loop()
        self.engine = Engine(endpoint, workload, spec)
        self.thread = threading.Thread(target=self.loop.run_forever, name="quiver-bench-engine", daemon=True)
        self.thread.start()
        self._cpu0 = _thread_cpu()

    def start(self, t0: float) -> None:
        asyncio.run_coroutine_threadsafe(self.engine.start(t0), self.loop).result()

    def drain(self) -> Chunk:
        chunk = asyncio.run_coroutine_threadsafe(_call(self.engine.drain), self.loop).result()
        chunk.cpu_s = self._cpu_delta()
        return chunk

    def stop(self) -> Chunk:
        chunk = asyncio.run_coroutine_threadsafe(self.engine.stop(), self.loop).result()
        chunk.cpu_s = self._cpu_delta()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
        return chunk

    def _cpu_delta(self) -> float:
        now = _thread_cpu()
        delta, self._cpu0 = now - self._cpu0, now
        return delta


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def _thread_cpu() -> float:
    # Process CPU time: the engine thread dominates it (the coordinator sleeps).
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child_main(pipe: Pipe, endpoint: Endpoint, workload: Workload, spec: LoadSpec) -> None:
    worker = ThreadWorker(endpoint, workload, spec)
    while True:
        command, arg = pipe.recv()
        if command == "start":
            worker.start(arg)
            pipe.send("started")
        elif command == "drain":
            pipe.send(worker.drain())
        else:
            pipe.send(worker.stop())
            return


class ProcessWorker:
    """An ``Engine`` in a child process (for more load than one core can drive); same interface."""

    def __init__(self, endpoint: Endpoint, workload: Workload, spec: LoadSpec) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.process = ctx.Process(target=_child_main, args=(child, endpoint, workload, spec), daemon=True)
        self.process.start()

    def start(self, t0: float) -> None:
        self.pipe.send(("start", t0))
        self.pipe.recv()

    def drain(self) -> Chunk:
        self.pipe.send(("drain", None))
        chunk: Chunk = self.pipe.recv()
        return chunk

    def stop(self) -> Chunk:
        self.pipe.send(("stop", None))
        chunk: Chunk = self.pipe.recv()
        self.process.join(timeout=10)
        return chunk

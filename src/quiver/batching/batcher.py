"""The dynamic batcher: queue requests, merge compatible ones up to a size or a delay, run once, split back.

Each instance runs a loop that reads like the whole idea::

    batch = await self._collect()                  # wait for work, then fill up to size or delay
    results = await self._run(instance, batch)     # one call on the instance's own thread
    self._deliver(batch, results)                  # one result (or the batch's error) per caller

Per-request deadlines are enforced while queued (the request is answered with ``DeadlineExceeded`` at its
deadline and never runs); a full queue answers ``Overloaded`` at once; priority 1 is served first.

>>> batcher = DynamicBatcher(run_batch, BatcherConfig(max_batch_size=64))  # doctest: +SKIP
>>> await batcher.start()                                                  # doctest: +SKIP
>>> result = await batcher.submit(payload, rows=1, key=(30,))              # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from quiver.batching.queue import Pending, RequestQueue
from quiver.errors import DeadlineExceeded, InternalError, InvalidInput, Overloaded, QuiverError, Unavailable

# (instance index, payloads) -> one result per payload. Runs on the instance's own thread.
BatchFn = Callable[[int, list[Any]], Sequence[Any]]
# (batch, seconds the run took) -> None. Runs on the event loop after each batch.
BatchObserver = Callable[[list[Pending], float], None]


@dataclass(frozen=True, slots=True)
class BatcherConfig:
    max_batch_size: int = 0  # rows per batch; 0: no batching, one request per run
    max_queue_delay_s: float = 0.0
    queue_capacity: int = 1024
    priority_levels: int = 2
    default_priority: int = 2
    default_timeout_s: float | None = None
    instances: int = 1

    def __post_init__(self) -> None:
        if self.max_batch_size < 0:
            raise ValueError(f"max_batch_size must be >= 0, got {self.max_batch_size}")
        if self.max_queue_delay_s < 0:
            raise ValueError(f"max_queue_delay_s must be >= 0, got {self.max_queue_delay_s}")
        if self.queue_capacity < 1:
            raise ValueError(f"queue_capacity must be >= 1, got {self.queue_capacity}")
        if not 1 <= self.default_priority <= self.priority_levels:
            raise ValueError(f"default_priority must be in 1..{self.priority_levels}, got {self.default_priority}")
        if self.instances < 1:
            raise ValueError(f"instances must be >= 1, got {self.instances}")


class DynamicBatcher:
    """Lifecycle: ``await start()`` -> ``await submit(...)`` many times -> ``await close(drain=True)``."""

    def __init__(
        self,
        run_batch: BatchFn,
        config: BatcherConfig,
        name: str = "model",
        observer: BatchObserver | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self._run_batch = run_batch
        self._observer = observer
        self._queue = RequestQueue(config.priority_levels)
        self._batching = config.max_batch_size > 0
        self._max_rows = config.max_batch_size if self._batching else math.inf
        self._max_items = config.max_batch_size if self._batching else 1
        self._collect_lock = asyncio.Lock()
        self._waiter: asyncio.Future[None] | None = None
        self._executors = [
            ThreadPoolExecutor(1, thread_name_prefix=f"quiver-{name}-{i}") for i in range(config.instances)
        ]
        self._workers: list[asyncio.Task[None]] = []
        self._running = 0  # batches in flight
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.batches_run = 0

    # ------------------------------------------------------------------------------- public API

    @property
    def queue_depth(self) -> int:
        return self._queue.size

    @property
    def in_flight(self) -> int:
        return self._queue.size + self._running

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._worker(i)) for i in range(self.config.instances)]

    async def submit(
        self,
        payload: Any,
        rows: int = 1,
        key: Hashable = None,
        priority: int = 0,
        timeout_s: float | None = None,
    ) -> Any:
        """Queue one request and wait for its result. Raises the batch's error if its batch fails."""
        if self._closing:
            raise Unavailable(f"model {self.name} is unloading and accepts no new requests")
        config = self.config
        if self._batching and rows > config.max_batch_size:
            raise InvalidInput(
                f"model {self.name}: a request carries {rows} rows but max_batch_size is {config.max_batch_size}"
            )
        if self._queue.size >= config.queue_capacity:
            raise Overloaded(
                f"model {self.name}: queue is full ({config.queue_capacity} requests waiting); retry later",
                retry_after_s=1.0,
            )
        if priority == 0:
            priority = config.default_priority
        elif priority > config.priority_levels:
            raise InvalidInput(
                f"priority {priority} is out of range; model {self.name} has levels 1..{config.priority_levels}"
            )
        loop = asyncio.get_running_loop()
        now = loop.time()
        timeout = timeout_s if timeout_s is not None else config.default_timeout_s
        item = Pending(payload, rows, key, priority, now, now + timeout if timeout else None, loop.create_future())
        if item.deadline is not None:
            item.timer = loop.call_at(item.deadline, self._expire, item)
        self._queue.push(item)
        self._idle.clear()
        self._wake()
        try:
            return await item.future
        except asyncio.CancelledError:
            if not item.left:
                item.left = True
                self._queue.discard(item)
                self._maybe_idle()
            raise

    async def close(self, drain: bool = True) -> None:
        """Stop accepting; with ``drain`` finish everything queued and running first, else fail the queue."""
        self._closing = True
        if not drain:
            for item in self._queue.drain_all():
                item.future.set_exception(Unavailable(f"model {self.name} was unloaded"))
        while self._queue.size or self._running:
            self._idle.clear()
            await self._idle.wait()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for executor in self._executors:
            executor.shutdown(wait=False)

    # ------------------------------------------------------------------------------- the loop

    async def _worker(self, instance: int) -> None:
        while True:
            async with self._collect_lock:
                batch = await self._collect()
            self._running += 1
            try:
                started = asyncio.get_running_loop().time()
                results = await self._run(instance, batch)
                self._deliver(batch, results)
                if self._observer is not None:
                    self._observer(batch, asyncio.get_running_loop().time() - started)
            finally:
                self._running -= 1
                self.batches_run += 1
                self._maybe_idle()

    async def _collect(self) -> list[Pending]:
        loop = asyncio.get_running_loop()
        while True:
            head = self._queue.head()
            if head is None:
                self._maybe_idle()
                await self._wait(None)
                continue
            if self._batching and self.config.max_queue_delay_s > 0:
                remaining = head.enqueued + self.config.max_queue_delay_s - loop.time()
                if remaining > 0 and self._queue.compatible_rows(head.key, self.config.max_batch_size) < (
                    self.config.max_batch_size
                ):
                    await self._wait(remaining)
                    continue
            batch = self._queue.take(head.key, self._max_rows, self._max_items)  # type: ignore[arg-type]
            for item in batch:
                if item.timer is not None:
                    item.timer.cancel()
            return batch

    async def _run(self, instance: int, batch: list[Pending]) -> Sequence[Any] | BaseException:
        loop = asyncio.get_running_loop()
        payloads = [item.payload for item in batch]
        try:
            results = await loop.run_in_executor(self._executors[instance], self._run_batch, instance, payloads)
        except QuiverError as exc:
            return exc
        except Exception as exc:
            return InternalError(f"model {self.name}: batch of {len(batch)} failed: {type(exc).__name__}: {exc}")
        if len(results) != len(batch):
            return InternalError(
                f"model {self.name}: batch function returned {len(results)} results for {len(batch)} requests"
            )
        return results

    def _deliver(self, batch: list[Pending], results: Sequence[Any] | BaseException) -> None:
        if isinstance(results, BaseException):
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(results)
            return
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    # ------------------------------------------------------------------------------- helpers

    def _expire(self, item: Pending) -> None:
        if item.left:
            return
        item.left = True
        waited_ms = (asyncio.get_running_loop().time() - item.enqueued) * 1e3
        item.future.set_exception(
            DeadlineExceeded(f"model {self.name}: request deadline passed after {waited_ms:.1f} ms in the queue")
        )
        self._queue.discard(item)
        self._maybe_idle()

    async def _wait(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        handle = loop.call_later(timeout, self._wake) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _maybe_idle(self) -> None:
        if not self._queue.size and not self._running:
            self._idle.set()

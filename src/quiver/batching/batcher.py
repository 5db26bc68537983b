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
import logging
import math
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from quiver.batching.queue import Pending, RequestQueue
from quiver.batching.slo import SloPolicy
from quiver.batching.threads import compute_executors
from quiver.errors import DeadlineExceeded, InternalError, InvalidInput, Overloaded, QuiverError, Unavailable

log = logging.getLogger("quiver.batching")

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
    slo_s: float | None = None  # set: SLO-aware batching (see quiver.batching.slo) replaces the fixed delay

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
        if self.slo_s is not None and self.slo_s <= 0:
            raise ValueError(f"slo_s must be > 0, got {self.slo_s}")


class DynamicBatcher:
    """Lifecycle: ``await start()`` -> ``await submit(...)`` many times -> ``await close(drain=True)``."""

    def __init__(
        self,
        run_batch: BatchFn,
        config: BatcherConfig,
        name: str = "model",
        observer: BatchObserver | None = None,
        executors: list[ThreadPoolExecutor] | None = None,
    ) -> None:
        """``executors``: one single-thread executor per instance (default: plain threads)."""
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
        if executors is not None and len(executors) != config.instances:
            raise ValueError(f"{len(executors)} executors given for {config.instances} instances")
        self._executors = executors or compute_executors(name, config.instances, niceness=0)
        self._workers: list[asyncio.Task[None]] = []
        self._running = 0  # batches in flight
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.batches_run = 0
        self.slo = SloPolicy(config.slo_s, config.max_batch_size, config.instances) if config.slo_s else None

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
        elif not 1 <= priority <= config.priority_levels:
            raise InvalidInput(
                f"priority {priority} is out of range; model {self.name} has levels 1..{config.priority_levels}"
            )
        loop = asyncio.get_running_loop()
        now = loop.time()
        timeout = timeout_s if timeout_s is not None else config.default_timeout_s
        if timeout is not None and not timeout >= 0:  # also NaN, which would corrupt the loop's timer heap
            raise InvalidInput(f"model {self.name}: timeout must be a non-negative number of seconds, got {timeout}")
        deadline = now + timeout if timeout else None
        if self.slo is not None:
            deadline = self._admit(now, deadline, rows)
        item = Pending(payload, rows, key, priority, now, deadline, loop.create_future())
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

    def _admit(self, now: float, deadline: float | None, rows: int) -> float:
        """SLO mode: every request has a deadline; refuse at once one that cannot meet it."""
        assert self.slo is not None
        self.slo.on_arrival(now)
        slo_deadline = now + self.slo.slo_s
        deadline = slo_deadline if deadline is None else min(deadline, slo_deadline)
        ok, finish = self.slo.admit(now, deadline, self._queue.rows, rows)
        if not ok:
            raise Overloaded(
                f"model {self.name}: cannot meet the request's deadline ({(deadline - now) * 1e3:.1f} ms): "
                f"the queued work would finish it in {(finish - now) * 1e3:.1f} ms; retry later",
                retry_after_s=max(1.0, finish - now),
            )
        return deadline

    async def close(self, drain: bool = True) -> None:
        """Stop accepting; with ``drain`` finish everything queued and running first, else fail the queue."""
        self._closing = True
        if not drain:
            for item in self._queue.drain_all():
                if item.timer is not None:
                    item.timer.cancel()
                if not item.future.done():
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
                loop = asyncio.get_running_loop()
                started = loop.time()
                rows = sum(item.rows for item in batch)
                predicted_end = self.slo.on_start(started, rows) if self.slo is not None else 0.0
                results = await self._run(instance, batch)
                elapsed = loop.time() - started
                if self.slo is not None:
                    self.slo.on_finish(predicted_end, rows, elapsed)
                self._deliver(batch, results)
                if self._observer is not None:
                    try:
                        self._observer(batch, elapsed)
                    except Exception:  # metrics must never stop the batcher
                        log.exception("batch observer of model %s failed", self.name)
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
            max_rows = self._max_rows
            if self._batching:
                wait = self._wait_for_more(head, loop.time())
                if wait > 0:
                    await self._wait(wait)
                    continue
                if self.slo is not None and head.deadline is not None:
                    max_rows = self.slo.max_rows(loop.time(), head.deadline)
            batch = self._queue.take(head.key, max_rows, self._max_items)  # type: ignore[arg-type]
            for item in batch:
                if item.timer is not None:
                    item.timer.cancel()
            if self.slo is not None:
                batch = self._drop_late(batch, loop.time())
            if batch:
                return batch

    def _wait_for_more(self, head: Pending, now: float) -> float:
        """How long the head may wait for its batch to fill: the SLO policy's choice, or the fixed delay."""
        size = self.config.max_batch_size
        if self.slo is not None and head.deadline is not None:
            return self.slo.wait_s(now, head.deadline, self._queue.compatible_rows(head.key, size))
        delay = self.config.max_queue_delay_s
        if delay <= 0:
            return 0.0
        remaining = head.enqueued + delay - now
        if remaining > 0 and self._queue.compatible_rows(head.key, size) < size:
            return remaining
        return 0.0

    def _drop_late(self, batch: list[Pending], now: float) -> list[Pending]:
        """SLO mode: answer 504 now, rather than compute late, for requests that cannot finish in time."""
        assert self.slo is not None
        rows = sum(item.rows for item in batch)
        kept = []
        for item in batch:
            if item.future.done():
                continue
            if item.deadline is not None and self.slo.too_late(now, item.deadline, rows):
                item.future.set_exception(
                    DeadlineExceeded(
                        f"model {self.name}: dropped before running: the request would miss its deadline by "
                        f"{(now + self.slo.model.predict_mean(rows) - item.deadline) * 1e3:.1f} ms"
                    )
                )
            else:
                kept.append(item)
        return kept

    async def _run(self, instance: int, batch: list[Pending]) -> Sequence[Any] | BaseException:
        loop = asyncio.get_running_loop()
        payloads = [item.payload for item in batch]
        try:
            results = await loop.run_in_executor(self._executors[instance], self._run_batch, instance, payloads)
        except QuiverError as exc:
            return exc
        except Exception as exc:
            return InternalError(f"model {self.name}: batch of {len(batch)} failed: {type(exc).__name__}: {exc}")
        try:
            count: int | None = len(results)
        except TypeError:  # None, a scalar, a generator: not one result per request
            count = None
        if count != len(batch):
            got = f"{count} results" if count is not None else f"a {type(results).__name__}, not a sequence,"
            return InternalError(f"model {self.name}: batch function returned {got} for {len(batch)} requests")
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
        if not item.future.done():  # the caller may have been cancelled in this same loop iteration
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

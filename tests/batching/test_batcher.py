"""DynamicBatcher with plain Python batch functions: merging, delays, keys, deadlines, priorities, failures,
instances, close and cancellation. Every test drives a real event loop with ``asyncio.run``."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from quiver.batching import BatcherConfig, DynamicBatcher
from quiver.errors import DeadlineExceeded, InternalError, InvalidInput, Overloaded, Unavailable


class Recorder:
    """A batch function that records every batch it sees and can be held at a gate.

    Payloads are ``(tag, rows)`` tuples; the result for each is ``("done", tag)``."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, instance: int, payloads: list[Any]) -> Sequence[Any]:
        with self.lock:
            self.batches.append(list(payloads))
        self.entered.set()
        if not self.gate.wait(5):
            raise RuntimeError("gate was never opened")
        return [("done", p[0]) for p in payloads]

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()

    def tags(self) -> list[list[Any]]:
        return [[p[0] for p in batch] for batch in self.batches]

    def seen(self) -> set[Any]:
        return {p[0] for batch in self.batches for p in batch}


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


async def within(awaitable: Awaitable[Any], seconds: float = 5.0) -> Any:
    """Await with a limit; a hang fails the test with a short message instead of a long traceback."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise AssertionError(f"the batcher did not answer within {seconds} s (hung)") from None


async def started(batcher: DynamicBatcher) -> DynamicBatcher:
    await batcher.start()
    return batcher


def submit(batcher: DynamicBatcher, tag: Any, rows: int = 1, **kw: Any) -> asyncio.Task[Any]:
    return asyncio.ensure_future(batcher.submit((tag, rows), rows=rows, **kw))


async def block_first_batch(batcher: DynamicBatcher, fn: Recorder) -> asyncio.Task[Any]:
    """Occupy the (single) instance with a batch holding ``"first"`` until ``fn.gate`` is set."""
    fn.hold()
    first = submit(batcher, "first")
    await until(fn.entered.is_set)
    return first


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())


# ----------------------------------------------------------------------------------------- merging


def test_merges_queued_requests_up_to_max_batch_size() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=4)))
        first = await block_first_batch(batcher, fn)
        tasks = [submit(batcher, i) for i in range(7)]
        await until(lambda: batcher.queue_depth == 7)
        fn.gate.set()
        results = await asyncio.gather(first, *tasks)
        assert results == [("done", "first")] + [("done", i) for i in range(7)]
        assert fn.tags() == [["first"], [0, 1, 2, 3], [4, 5, 6]]
        await batcher.close()

    run(main)


def test_merges_by_rows_not_requests() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=8)))
        first = await block_first_batch(batcher, fn)
        tasks = [submit(batcher, "a", rows=5), submit(batcher, "b", rows=3), submit(batcher, "c", rows=2)]
        await until(lambda: batcher.queue_depth == 3)
        fn.gate.set()
        await asyncio.gather(first, *tasks)
        assert fn.tags()[1:] == [["a", "b"], ["c"]]
        for batch in fn.batches:
            assert sum(rows for _, rows in batch) <= 8
        await batcher.close()

    run(main)


def test_no_batching_runs_one_request_per_call() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=0)))
        first = await block_first_batch(batcher, fn)
        tasks = [submit(batcher, i, rows=100) for i in range(3)]  # rows are not limited without batching
        await until(lambda: batcher.queue_depth == 3)
        fn.gate.set()
        await asyncio.gather(first, *tasks)
        assert fn.tags() == [["first"], [0], [1], [2]]
        await batcher.close()

    run(main)


def test_max_queue_delay_waits_to_fill_then_runs_at_the_delay() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=8, max_queue_delay_s=0.15)))
        t0 = time.monotonic()
        tasks = [submit(batcher, "a")]
        await asyncio.sleep(0.03)
        tasks.append(submit(batcher, "b"))
        await asyncio.sleep(0.03)
        tasks.append(submit(batcher, "c"))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - t0
        assert fn.tags() == [["a", "b", "c"]]  # one batch: the later ones joined while it waited
        assert 0.13 <= elapsed < 0.6, elapsed  # ran at about the first request's delay, not later
        await batcher.close()

    run(main)


def test_full_batch_does_not_wait_for_the_delay() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=4, max_queue_delay_s=10.0)))
        t0 = time.monotonic()
        results = await asyncio.gather(*(submit(batcher, i) for i in range(4)))
        assert time.monotonic() - t0 < 2.0
        assert results == [("done", i) for i in range(4)]
        assert fn.tags() == [[0, 1, 2, 3]]
        await batcher.close()

    run(main)


def test_different_keys_never_share_a_batch() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=16)))
        first = await block_first_batch(batcher, fn)
        keys = [(3,), (4,), (3,), (4, 2), (3,), (4,)]
        tasks = [submit(batcher, (i, key), key=key) for i, key in enumerate(keys)]
        await until(lambda: batcher.queue_depth == len(keys))
        fn.gate.set()
        results = await asyncio.gather(*tasks)
        await first
        assert results == [("done", (i, key)) for i, key in enumerate(keys)]
        batches = fn.tags()[1:]
        for batch in batches:
            assert len({key for _, key in batch}) == 1, batches
        # the oldest key goes first and takes every compatible request; FIFO within each batch
        assert batches == [[(0, (3,)), (2, (3,)), (4, (3,))], [(1, (4,)), (5, (4,))], [(3, (4, 2))]]
        await batcher.close()

    run(main)


def test_request_with_more_rows_than_max_batch_size_is_rejected() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=4), name="mlp"))
        with pytest.raises(InvalidInput, match="5 rows but max_batch_size is 4") as info:
            await batcher.submit(("big", 5), rows=5)
        assert info.value.status == 400
        assert await batcher.submit(("ok", 4), rows=4) == ("done", "ok")
        assert fn.seen() == {"ok"}
        await batcher.close()

    run(main)


# ----------------------------------------------------------------------------------------- load shedding


def test_full_queue_is_overloaded_at_once_with_retry_after() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=1, queue_capacity=2)))
        first = await block_first_batch(batcher, fn)
        queued = [submit(batcher, "q1"), submit(batcher, "q2")]
        await until(lambda: batcher.queue_depth == 2)
        t0 = time.monotonic()
        with pytest.raises(Overloaded, match="queue is full") as info:
            await batcher.submit(("shed", 1))
        assert time.monotonic() - t0 < 0.5
        assert info.value.status == 429
        assert info.value.headers == (("Retry-After", "1"),)
        fn.gate.set()
        await asyncio.gather(first, *queued)
        assert "shed" not in fn.seen()
        # capacity frees up once the queue drains
        assert await batcher.submit(("later", 1)) == ("done", "later")
        await batcher.close()

    run(main)


# ----------------------------------------------------------------------------------------- deadlines


def test_deadline_passing_in_queue_answers_at_the_deadline_and_never_runs() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=4)))
        first = await block_first_batch(batcher, fn)
        keep = submit(batcher, "keep")
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="deadline passed") as info:
            await batcher.submit(("late", 1), timeout_s=0.1)
        elapsed = time.monotonic() - t0
        assert 0.09 <= elapsed < 0.5, elapsed
        assert info.value.status == 504
        assert batcher.queue_depth == 1  # only "keep" is left
        fn.gate.set()
        assert await keep == ("done", "keep")
        await first
        assert "late" not in fn.seen()
        assert batcher.queue_depth == 0 and batcher.in_flight == 0
        await batcher.close()

    run(main)


def test_default_timeout_applies_and_request_timeout_overrides_it() -> None:
    fn = Recorder()

    async def main() -> None:
        config = BatcherConfig(max_batch_size=4, default_timeout_s=0.05)
        batcher = await started(DynamicBatcher(fn, config))
        first = await block_first_batch(batcher, fn)
        patient = submit(batcher, "patient", timeout_s=5.0)
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(("default", 1))
        fn.gate.set()
        assert await patient == ("done", "patient")
        await first
        assert fn.seen() == {"first", "patient"}
        await batcher.close()

    run(main)


def test_negative_or_nan_timeout_is_invalid_input() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=4)))
        for bad in (-0.5, math.nan):
            with pytest.raises(InvalidInput, match="timeout must be a non-negative number"):
                await batcher.submit(("bad", 1), timeout_s=bad)
        assert await batcher.submit(("no-deadline", 1), timeout_s=0) == ("done", "no-deadline")
        assert fn.seen() == {"no-deadline"} and batcher.queue_depth == 0
        await batcher.close()

    run(main)


def test_deadline_shorter_than_queue_delay_is_never_run() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=8, max_queue_delay_s=0.3)))
        other = submit(batcher, "other")
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(("short", 1), timeout_s=0.05)
        assert time.monotonic() - t0 < 0.25
        assert await other == ("done", "other")
        assert fn.tags() == [["other"]]
        await batcher.close()

    run(main)


# ----------------------------------------------------------------------------------------- priority


def test_priority_1_is_served_before_priority_2() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=1)))
        first = await block_first_batch(batcher, fn)
        tasks = [
            submit(batcher, "low-1", priority=2),
            submit(batcher, "default"),  # default_priority is 2
            submit(batcher, "high-1", priority=1),
            submit(batcher, "high-2", priority=1),
        ]
        await until(lambda: batcher.queue_depth == 4)
        fn.gate.set()
        await asyncio.gather(first, *tasks)
        assert fn.tags() == [["first"], ["high-1"], ["high-2"], ["low-1"], ["default"]]
        await batcher.close()

    run(main)


def test_priority_out_of_range_is_invalid_input() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=1, priority_levels=2)))
        for bad in (3, -1):
            with pytest.raises(InvalidInput, match="priority"):
                await batcher.submit(("bad", 1), priority=bad)
        assert fn.seen() == set()
        assert batcher.queue_depth == 0
        await batcher.close()

    run(main)


# ----------------------------------------------------------------------------------------- failures


def test_batch_function_error_reaches_every_caller_and_later_batches_work() -> None:
    calls: list[list[Any]] = []

    def fn(instance: int, payloads: list[Any]) -> list[Any]:
        calls.append(payloads)
        if "boom" in payloads:
            raise ValueError("kaput")
        return [p.upper() for p in payloads]

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=8), name="m"))
        results = await asyncio.gather(*(batcher.submit(p) for p in ("a", "boom", "c")), return_exceptions=True)
        assert len(calls) == 1  # all three shared one batch
        assert all(isinstance(r, InternalError) for r in results), results
        assert all("ValueError: kaput" in str(r) and r.status == 500 for r in results)
        assert await asyncio.gather(batcher.submit("x"), batcher.submit("y")) == ["X", "Y"]
        await batcher.close()

    run(main)


def test_quiver_error_from_batch_function_is_delivered_unchanged() -> None:
    def fn(instance: int, payloads: list[Any]) -> list[Any]:
        raise Unavailable("runtime went away")

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=8)))
        with pytest.raises(Unavailable, match="runtime went away"):
            await batcher.submit("a")
        await batcher.close()

    run(main)


@pytest.mark.parametrize("returned", [["only-one"], None, 42])
def test_wrong_result_count_is_a_clear_internal_error_for_every_caller(returned: Any) -> None:
    calls = 0

    def fn(instance: int, payloads: list[Any]) -> Any:
        nonlocal calls
        calls += 1
        return returned if calls == 1 else list(payloads)

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=8), name="m"))
        results = await within(asyncio.gather(*(batcher.submit(p) for p in "abc"), return_exceptions=True), 5)
        assert all(isinstance(r, InternalError) for r in results), results
        assert all("3 requests" in str(r) for r in results), results
        # the batcher keeps working afterwards
        assert await within(batcher.submit("d"), 5) == "d"
        await batcher.close()

    run(main)


def test_observer_error_does_not_stop_the_batcher() -> None:
    observed: list[int] = []

    def observer(batch: list[Any], seconds: float) -> None:
        observed.append(len(batch))
        raise RuntimeError("metrics broke")

    async def main() -> None:
        batcher = await started(
            DynamicBatcher(lambda i, p: list(p), BatcherConfig(max_batch_size=4), observer=observer)
        )
        assert await within(batcher.submit("a"), 5) == "a"
        assert await within(batcher.submit("b"), 5) == "b"
        assert observed == [1, 1]
        await within(batcher.close(), 5)

    run(main)


# ----------------------------------------------------------------------------------------- instances


def test_two_instances_run_two_batches_concurrently() -> None:
    barrier = threading.Barrier(2, timeout=5)
    instances_seen: set[int] = set()

    def fn(instance: int, payloads: list[Any]) -> list[Any]:
        instances_seen.add(instance)
        barrier.wait()  # returns only when the other instance is inside a batch at the same time
        return list(payloads)

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=1, instances=2)))
        assert await asyncio.gather(batcher.submit("a"), batcher.submit("b")) == ["a", "b"]
        assert instances_seen == {0, 1}
        await batcher.close()

    run(main)


def test_one_instance_never_overlaps() -> None:
    active = 0
    most = 0
    lock = threading.Lock()

    def fn(instance: int, payloads: list[Any]) -> list[Any]:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.005)
        with lock:
            active -= 1
        return list(payloads)

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=1, instances=1)))
        assert await asyncio.gather(*(batcher.submit(i) for i in range(6))) == list(range(6))
        assert most == 1
        await batcher.close()

    run(main)


# ----------------------------------------------------------------------------------------- close


def test_close_drain_finishes_queued_and_running_then_refuses() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=2), name="m"))
        first = await block_first_batch(batcher, fn)
        queued = [submit(batcher, i) for i in range(3)]
        await until(lambda: batcher.queue_depth == 3)
        closing = asyncio.ensure_future(batcher.close(drain=True))
        await asyncio.sleep(0.02)
        assert not closing.done()  # waits for the work
        with pytest.raises(Unavailable) as info:  # no new work while draining
            await batcher.submit(("during", 1))
        assert info.value.status == 503
        fn.gate.set()
        await within(closing, 5)
        assert first.result() == ("done", "first")
        assert [t.result() for t in queued] == [("done", i) for i in range(3)]
        with pytest.raises(Unavailable, match="accepts no new requests"):
            await batcher.submit(("after", 1))
        assert fn.seen() == {"first", 0, 1, 2}

    run(main)


def test_close_without_drain_fails_the_queue_but_finishes_the_running_batch() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=2), name="m"))
        first = await block_first_batch(batcher, fn)
        queued = [submit(batcher, i, timeout_s=10) for i in range(3)]
        await until(lambda: batcher.queue_depth == 3)
        closing = asyncio.ensure_future(batcher.close(drain=False))
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert all(isinstance(r, Unavailable) and "unloaded" in str(r) for r in results), results
        assert batcher.queue_depth == 0
        fn.gate.set()
        await within(closing, 5)
        assert await first == ("done", "first")
        assert fn.seen() == {"first"}

    run(main)


def test_close_with_an_empty_queue_returns_promptly() -> None:
    async def main() -> None:
        batcher = await started(DynamicBatcher(lambda i, p: list(p), BatcherConfig(max_batch_size=4)))
        assert await batcher.submit("a") == "a"
        await within(batcher.close(), 2)

    run(main)


# ----------------------------------------------------------------------------------------- cancellation


def test_cancelled_caller_leaves_queue_count_right_and_is_not_run() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=8, queue_capacity=3)))
        first = await block_first_batch(batcher, fn)
        tasks = [submit(batcher, i, timeout_s=10) for i in range(3)]
        await until(lambda: batcher.queue_depth == 3)
        tasks[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
        assert batcher.queue_depth == 2
        assert batcher.in_flight == 3  # two queued + the running batch
        # the freed slot counts: capacity is 3, two are queued
        extra = submit(batcher, "extra")
        await until(lambda: batcher.queue_depth == 3)
        fn.gate.set()
        assert await tasks[0] == ("done", 0)
        assert await tasks[2] == ("done", 2)
        assert await extra == ("done", "extra")
        await first
        assert 1 not in fn.seen()
        assert batcher.queue_depth == 0 and batcher.in_flight == 0
        await within(batcher.close(), 2)

    run(main)


def test_cancel_via_wait_for_timeout_keeps_count_right() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=8)))
        first = await block_first_batch(batcher, fn)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit(("gave-up", 1)), 0.05)
        assert batcher.queue_depth == 0
        fn.gate.set()
        await first
        assert fn.seen() == {"first"}
        await within(batcher.close(), 2)

    run(main)


def test_cancel_and_deadline_in_the_same_loop_iteration_keep_count_right() -> None:
    """The caller is cancelled and its deadline fires before the cancelled task runs again."""
    fn = Recorder()

    async def main() -> None:
        batcher = await started(DynamicBatcher(fn, BatcherConfig(max_batch_size=8)))
        first = await block_first_batch(batcher, fn)
        task = submit(batcher, "doomed", timeout_s=0.05)
        await until(lambda: batcher.queue_depth == 1)
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, task.cancel)  # due before the deadline ...
        time.sleep(0.1)  # ... and both become due in the same iteration
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        with pytest.raises((asyncio.CancelledError, DeadlineExceeded)):
            await task
        await asyncio.sleep(0.01)
        assert errors == []
        assert batcher.queue_depth == 0
        fn.gate.set()
        await first
        assert "doomed" not in fn.seen()
        await within(batcher.close(), 2)

    run(main)


# ----------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_batch_size": -1}, "max_batch_size"),
        ({"max_queue_delay_s": -0.1}, "max_queue_delay_s"),
        ({"queue_capacity": 0}, "queue_capacity"),
        ({"default_priority": 3}, "default_priority"),
        ({"default_priority": 0}, "default_priority"),
        ({"instances": 0}, "instances"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BatcherConfig(**kwargs)

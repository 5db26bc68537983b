"""The one thread that runs torch in a serving process.

Why one: libgomp, the OpenMP runtime inside torch's CPU wheels, gives every thread that starts a parallel
region its own pool of worker threads and keeps that pool until the thread exits. Once a process holds more
OpenMP threads than it has CPUs, libgomp stops spinning between parallel regions: its workers sleep on a
futex, and every small kernel pays a wake-up. An engine stepping on a second thread is then about twice as
slow. Measured on 2 cores, 2 torch threads, GPT-2 bfloat16, the same 254 steps: 8.4 s when the stepping
thread is the only one that ever ran torch, 17.1 s once the main thread had run a single parallel matmul
(attention ``bmm`` 64 against 24 µs a call, ``softmax`` 47 against 4 µs).

So every engine of a process is built and stepped here, on one long-lived thread, and nothing else in the
server runs torch: the event loop, the loader's executor threads and the HTTP layer never start a parallel
region. Engines of several models take turns, one step each, in the order their steps were posted; on a CPU
whose cores each step already fills, that is also the fastest way to share them. Loading a model is one job
too, so the engines already serving pause while another model loads.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class TorchThread:
    """A daemon thread running posted jobs one at a time, first in first out; started on first use."""

    def __init__(self, name: str = "quiver-torch") -> None:
        self.name = name
        self._jobs: deque[Callable[[], None]] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> bool:
        """True when called from this thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def post(self, job: Callable[[], None]) -> None:
        """Run ``job()`` on the thread later; it must not block for long (other engines wait for it)."""
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()
            self._jobs.append(job)
            self._cv.notify()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` on the thread; its result or exception comes back through the future."""
        future: Future[T] = Future()

        def job() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the caller, who re-raises it
                    future.set_exception(exc)

        self.post(job)
        return future

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread and wait for it (inline when already there)."""
        if self.current:
            return fn(*args)
        return self.submit(fn, *args).result()

    def _serve(self) -> None:
        while True:
            with self._cv:
                while not self._jobs:
                    self._cv.wait()
                job = self._jobs.popleft()
            try:
                job()
            except Exception:  # a job's own bug must not stop every engine of the process
                log.exception("a job on the torch thread failed")


TORCH_THREAD = TorchThread()

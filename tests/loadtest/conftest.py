"""A local responder (trivial or simulated batching) on an ephemeral port, in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from quiver.loadtest.client import Endpoint
from quiver.loadtest.responder import Responder, ResponderConfig


class ResponderThread:
    def __init__(self, cfg: ResponderConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        server = asyncio.run_coroutine_threadsafe(Responder(cfg).serve(), self.loop).result(10)
        self.server = server
        self.endpoint = Endpoint("127.0.0.1", server.sockets[0].getsockname()[1])

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def responder() -> Iterator[Callable[..., Endpoint]]:
    started: list[ResponderThread] = []

    def start(cfg: ResponderConfig | None = None) -> Endpoint:
        thread = ResponderThread(cfg or ResponderConfig())
        started.append(thread)
        return thread.endpoint

    yield start
    for thread in started:
        thread.close()

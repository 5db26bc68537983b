"""The request queue behind a batcher: priority levels, deadlines, capacity, compatible-shape batches.

Plain Python, no asyncio: the batcher drives it from the event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, eq=False)
class Pending:
    """One queued request: its payload, how many batch rows it carries, and who waits for it."""

    payload: Any
    rows: int
    key: Hashable  # requests share a batch only when their keys are equal (same trailing shapes)
    priority: int  # 1 is the highest
    enqueued: float  # loop time
    deadline: float | None  # loop time
    future: asyncio.Future[Any] = field(repr=False)
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    left: bool = False  # left the queue: taken into a batch, expired or cancelled


class RequestQueue:
    """Queued requests, one FIFO per priority level. Entries that left early (expired, cancelled) are
    skipped lazily; ``discard`` keeps the count right when they leave."""

    def __init__(self, priority_levels: int) -> None:
        self._levels: list[deque[Pending]] = [deque() for _ in range(priority_levels)]
        self.size = 0  # live entries
        self.rows = 0  # their batch rows

    def push(self, item: Pending) -> None:
        self._levels[item.priority - 1].append(item)
        self.size += 1
        self.rows += item.rows

    def discard(self, item: Pending) -> None:
        """Account for an entry that became done while queued (expired or cancelled)."""
        self.size -= 1
        self.rows -= item.rows

    def head(self) -> Pending | None:
        """The oldest live request of the highest non-empty priority."""
        for level in self._levels:
            while level and level[0].left:
                level.popleft()
            if level:
                return level[0]
        return None

    def compatible_rows(self, key: Hashable, limit: int) -> int:
        """Rows queued that could join a batch with ``key``, counted up to ``limit``."""
        rows = 0
        for level in self._levels:
            for item in level:
                if not item.left and item.key == key:
                    rows += item.rows
                    if rows >= limit:
                        return rows
        return rows

    def take(self, key: Hashable, max_rows: int, max_items: int) -> list[Pending]:
        """Remove and return requests with ``key``, highest priority first, up to ``max_rows`` rows."""
        batch: list[Pending] = []
        rows = 0
        for index, level in enumerate(self._levels):
            if not level:
                continue
            kept: deque[Pending] = deque()
            while level:
                item = level.popleft()
                if item.left:
                    continue
                if item.key == key and len(batch) < max_items and (rows + item.rows <= max_rows or not batch):
                    item.left = True
                    batch.append(item)
                    rows += item.rows
                else:
                    kept.append(item)
                    if rows >= max_rows or len(batch) >= max_items:
                        kept.extend(level)
                        level.clear()
            self._levels[index] = kept
        self.size -= len(batch)
        self.rows -= rows
        return batch

    def drain_all(self) -> list[Pending]:
        items = [item for level in self._levels for item in level if not item.left]
        for item in items:
            item.left = True
        for level in self._levels:
            level.clear()
        self.size = 0
        self.rows = 0
        return items

"""Dynamic batching: a standalone component with its own tests, used by the server's model layer."""

from __future__ import annotations

from quiver.batching.batcher import BatcherConfig, BatchFn, DynamicBatcher
from quiver.batching.queue import Pending, RequestQueue

__all__ = ["BatchFn", "BatcherConfig", "DynamicBatcher", "Pending", "RequestQueue"]

"""Each instance's compute thread, optionally at a lower scheduling priority than the event loop.

On a small machine the runtime's threads and the event loop share few cores: when compute holds every core,
the loop waits for the scheduler before it can parse the next request or hand a batch to an idle instance.
``compute_niceness`` (a model config parameter) runs the instance's thread that many nice levels below the
loop. ONNX Runtime's intra-op threads inherit the value, since each session is created on its instance's
thread. The default is 0: on MiniLM at concurrency 8 on 2 cores, nice 5 and 10 measured within the
run-to-run noise (+-2%) of nice 0, and a lower priority also yields to every other process on the machine.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

DEFAULT_NICENESS = 0


def compute_executors(name: str, count: int, niceness: int = DEFAULT_NICENESS) -> list[ThreadPoolExecutor]:
    """One single-thread executor per instance; its thread runs ``niceness`` levels below the caller."""
    return [
        ThreadPoolExecutor(
            1, thread_name_prefix=f"quiver-{name}-{i}", initializer=_lower_priority, initargs=(niceness,)
        )
        for i in range(count)
    ]


def _lower_priority(niceness: int) -> None:
    # On Linux, PRIO_PROCESS with 0 applies to the calling thread only.
    if niceness > 0 and hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness))

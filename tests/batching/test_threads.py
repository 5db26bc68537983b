from __future__ import annotations

import os

import pytest

from quiver.batching.threads import compute_executors


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no setpriority on this platform")
def test_compute_threads_run_below_the_caller() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    lowered, plain = compute_executors("m", 1, niceness=3)[0], compute_executors("m", 1, niceness=0)[0]
    try:
        assert lowered.submit(os.getpriority, os.PRIO_PROCESS, 0).result() == min(19, base + 3)
        assert plain.submit(os.getpriority, os.PRIO_PROCESS, 0).result() == base
        assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the caller is untouched
    finally:
        lowered.shutdown()
        plain.shutdown()

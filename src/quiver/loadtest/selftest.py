"""How many requests per second one client core can drive: the client against a trivial local responder.

The responder runs in its own process pinned to another core; the client is pinned to one core. Two
numbers come back: the rate reached, and the client's CPU time per request -- ``1e6 / cpu_us_per_request``
is the rate one fully busy core would drive (the better number when the responder is the bottleneck).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from quiver.loadtest.client import Endpoint
from quiver.loadtest.engine import LoadSpec
from quiver.loadtest.payload import v2_workload
from quiver.loadtest.runner import WindowSpec, measure


@contextmanager
def local_responder(sim: dict[str, Any] | None = None, cpu: int | None = None, model: str = "model") -> Iterator[int]:
    """Start ``python -m quiver.loadtest.responder`` in a child process; yields its port."""
    cmd = [sys.executable, "-m", "quiver.loadtest.responder", "--port", "0", "--model", model]
    if sim is not None:
        cmd += ["--sim", json.dumps(sim)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError(f"the local responder did not start: {' '.join(cmd)}")
        yield int(json.loads(line)["port"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def client_capacity(concurrency: int = 64, window_s: float = 2.0, windows: int = 3) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    client_cpu, server_cpu = cpus[0], (cpus[1] if len(cpus) > 1 else None)
    before = os.sched_getaffinity(0)
    with local_responder(cpu=server_cpu) as port:
        endpoint = Endpoint("127.0.0.1", port)
        workload = v2_workload(endpoint, "model", shapes={"x": [1, 4]})
        os.sched_setaffinity(0, {client_cpu})
        try:
            spec = WindowSpec(warmup_s=1.0, window_s=window_s, min_windows=windows, max_windows=windows)
            m = measure(endpoint, workload, LoadSpec(concurrency=concurrency), spec)
        finally:
            os.sched_setaffinity(0, before)
    cpu_us = m.client["cpu_us_per_request"]
    return {
        "concurrency": concurrency,
        "achieved_rps": m.summary.throughput_rps,
        "client_cpu_us_per_request": cpu_us,
        "one_core_max_rps": 1e6 / cpu_us if cpu_us > 0 else float("nan"),
        "p50_ms": m.summary.latency_ms.get("p50"),
        "client_cpu": client_cpu,
        "responder_cpu": server_cpu,
        "errors": m.summary.errors,
    }

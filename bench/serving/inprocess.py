"""The in-process ONNX Runtime baseline: the best throughput any server could reach on this machine.

Sweeps batch size x (sessions, intra-op threads per session, spin-waiting on or off). ``sessions`` > 1
runs that many sessions concurrently from as many Python threads (ONNX Runtime releases the GIL), as a
server with several model instances would. Each point: a short warm-up, then as many batches as fit in ``seconds``.
"""

from __future__ import annotations

import resource
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from bench.serving.load import machine_busy_seconds, wait_for_quiet


@dataclass(frozen=True)
class BaselinePoint:
    batch: int
    sessions: int
    threads: int
    spin: bool  # intra-op threads spin-wait between ops (ONNX Runtime's default)
    items_per_s: float
    other_cpu_pct: float = 0.0  # CPU other processes used meanwhile, % of one core
    kind: str = "sweep"  # "sweep" | "before" | "after" (the best point around Quiver's runs) | "reference"

    def again(self, path: Path, feeds: dict[str, np.ndarray], seconds: float, kind: str) -> BaselinePoint:
        """This point measured once more (for ``seconds``), labelled ``kind``."""
        point = measure_point(path, feeds, self.batch, self.sessions, self.threads, self.spin, seconds)
        return replace(point, kind=kind)


def _session(path: Path, threads: int, spin: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure_point(
    path: Path, feeds: dict[str, np.ndarray], batch: int, sessions: int, threads: int, spin: bool, seconds: float
) -> BaselinePoint:
    batched = {name: np.repeat(a, batch, axis=0) for name, a in feeds.items()}  # [batch, ...]
    pool = [_session(path, threads, spin) for _ in range(sessions)]
    for s in pool:
        s.run(None, batched)
    counts = [0] * sessions
    start_line = threading.Barrier(sessions + 1)
    deadline = 0.0

    def loop(i: int) -> None:
        start_line.wait()
        while time.perf_counter() < deadline:
            pool[i].run(None, batched)
            counts[i] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(sessions)]
    for w in workers:
        w.start()
    deadline = time.perf_counter() + seconds
    start, busy, own = time.perf_counter(), machine_busy_seconds(), _own_cpu_seconds()
    start_line.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    other = max(0.0, machine_busy_seconds() - busy - (_own_cpu_seconds() - own)) / elapsed * 100
    return BaselinePoint(batch, sessions, threads, spin, sum(counts) * batch / elapsed, other)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sweep(
    path: Path,
    feeds: dict[str, np.ndarray],
    batches: tuple[int, ...] = (1, 2, 4, 8, 16),
    layouts: tuple[tuple[int, int, bool], ...] = ((1, 1, False), (1, 2, True), (1, 2, False), (2, 1, False)),
    seconds: float = 2.0,
    busy_pct: float = 25.0,
    retries: int = 2,
) -> list[BaselinePoint]:
    """Every (batch, (sessions, threads, spin)) point; the caller takes the best.

    A point measured while other processes used more than ``busy_pct`` of a core is measured again after
    the machine goes quiet (up to ``retries`` times); the quietest measurement is kept.
    """
    points = []
    for sessions, threads, spin in layouts:
        for batch in batches:
            point = measure_point(path, feeds, batch, sessions, threads, spin, seconds)
            for _ in range(retries):
                if point.other_cpu_pct <= busy_pct:
                    break
                wait_for_quiet(30.0)
                again = measure_point(path, feeds, batch, sessions, threads, spin, seconds)
                point = min(point, again, key=lambda p: p.other_cpu_pct)
            points.append(point)
    return points

"""Speed gate: latency (p50/p99) at batch 1 and at the best batch size, throughput, size and peak memory,
each variant measured in its own fresh process so peak memory is its own; CPU features that decide int8
and half-precision speed."""

from __future__ import annotations

import gzip
import multiprocessing
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quiver.optimize.types import Feeds

FEATURES = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


def cpu_features() -> dict[str, Any]:
    flags: set[str] = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import os

    found = {f: f in flags for f in FEATURES}
    return {"cpu": model, "cores": os.cpu_count(), "features": found, "notes": _feature_notes(found)}


def _feature_notes(f: dict[str, bool]) -> list[str]:
    notes = []
    if f["amx_int8"]:
        notes.append("AMX: int8 and bf16 matrix tiles; int8 should be several times faster than fp32")
    elif f["avx512_vnni"] or f["avx_vnni"]:
        notes.append("VNNI: int8 dot products in one instruction; int8 ~2-4x faster than fp32 on matmuls")
    else:
        notes.append("no VNNI/AMX: int8 gains are small here (may be slower than fp32)")
    if not (f["avx512_fp16"] or f["amx_tile"]):
        notes.append("no AVX512-FP16/AMX: fp16 runs emulated on this CPU, expect it slower than fp32")
    return notes


@dataclass(frozen=True)
class Timing:
    p50_b1_ms: float
    p99_b1_ms: float
    best_batch: int
    p50_best_ms: float
    p99_best_ms: float
    throughput: float  # rows per second at the best batch
    size_bytes: int
    compressed_bytes: int  # gzip of the file: what unstructured sparsity shrinks
    peak_mem_mb: float  # resident-set growth of a fresh process that loads the model and runs it
    # Paired against the baseline (rounds alternate baseline / variant, median of per-round ratios), so a
    # neighbour's load on a shared machine slows both sides alike; None for the baseline itself.
    speedup_b1: float | None = None
    speedup_throughput: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    path: Path,
    rows: Feeds,
    threads: int,
    batch_sizes: tuple[int, ...] = (1, 8, 32),
    budget_s: float = 1.5,
    isolate: bool = True,
    reference: Path | None = None,
) -> Timing:
    """Time ``path`` on rows taken from ``rows`` (cycled to fill a batch), ``budget_s`` per batch size.
    With ``reference`` (the baseline), both are timed in alternating rounds and the speedups are paired."""
    args = (str(path), rows, threads, batch_sizes, budget_s, str(reference) if reference else None)
    if not isolate:
        return Timing(**_measure(*args))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return Timing(**pool.submit(_measure, *args).result())


_ROUNDS = 5


def _measure(
    path: str, rows: Feeds, threads: int, batch_sizes: tuple[int, ...], budget_s: float, reference: str | None
) -> dict[str, Any]:
    from quiver.optimize import _onnx

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sess = _onnx.session(Path(path), threads)
    feeds = {bs: _feeds(sess, rows, bs) for bs in batch_sizes}
    for bs in batch_sizes:
        for _ in range(5):  # warm-up: allocations, thread pool spin-up
            sess.run(None, feeds[bs])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the reference loads
    ref = _onnx.session(Path(reference), threads) if reference else None
    ref_feeds = {bs: _feeds(ref, rows, bs) for bs in batch_sizes} if ref else {}
    results: dict[int, list[float]] = {bs: [] for bs in batch_sizes}
    ratios: dict[int, list[float]] = {bs: [] for bs in batch_sizes}
    for bs in batch_sizes:
        if ref:
            for _ in range(3):
                ref.run(None, ref_feeds[bs])
        for _ in range(_ROUNDS):
            mine = _time(sess, feeds[bs], budget_s / _ROUNDS)
            results[bs] += mine
            if ref:
                theirs = _time(ref, ref_feeds[bs], budget_s / _ROUNDS)
                ratios[bs].append(float(np.median(theirs) / np.median(mine)))
    ms = {bs: np.array(t) * 1000.0 for bs, t in results.items()}
    best = max(ms, key=lambda bs: bs / float(np.median(ms[bs])))
    b1 = ms[min(ms)]
    raw = Path(path).read_bytes()
    return {
        "p50_b1_ms": float(np.median(b1)),
        "p99_b1_ms": float(np.percentile(b1, 99)),
        "best_batch": int(best),
        "p50_best_ms": float(np.median(ms[best])),
        "p99_best_ms": float(np.percentile(ms[best], 99)),
        "throughput": float(best / np.median(ms[best]) * 1000.0),
        "size_bytes": _onnx.file_size(Path(path)),
        "compressed_bytes": len(gzip.compress(raw, 1)),
        "peak_mem_mb": max(0.0, (peak - before) / 1024.0),
        "speedup_b1": float(np.median(ratios[min(ms)])) if ref else None,
        "speedup_throughput": float(np.median(ratios[best])) if ref else None,
    }


def _feeds(sess: Any, rows: Feeds, bs: int) -> Feeds:
    wanted = {i.name for i in sess.get_inputs()}
    idx = np.arange(bs) % len(next(iter(rows.values())))
    return {k: v[idx] for k, v in rows.items() if k in wanted}


def _time(sess: Any, feeds: Feeds, budget_s: float) -> list[float]:
    times: list[float] = []
    t_end = time.perf_counter() + budget_s
    while (time.perf_counter() < t_end or len(times) < 4) and len(times) < 1000:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return times

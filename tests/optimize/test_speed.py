from __future__ import annotations

from pathlib import Path

import numpy as np

from quiver.optimize.sources import from_torch
from quiver.optimize.speed import cpu_features, measure


def test_cpu_features_reports_int8_relevant_flags() -> None:
    info = cpu_features()
    assert {"avx512_vnni", "avx_vnni", "amx_int8", "avx512f"} <= set(info["features"])
    assert info["cores"] >= 1 and info["notes"]


def test_measure_pairs_with_the_baseline(tmp_path: Path) -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)
    big = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 4)).eval()
    small = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    a = from_torch(big, {"input": x[:2]}, tmp_path / "big", "regression")
    b = from_torch(small, {"input": x[:2]}, tmp_path / "small", "regression")
    t = measure(b.onnx, {"input": x}, 1, (1, 16), 0.1, isolate=True, reference=a.onnx)
    assert t.speedup_b1 is not None and t.speedup_b1 > 1.0  # far less work than the reference
    assert t.best_batch in (1, 16) and t.throughput > 0 and t.p99_b1_ms >= t.p50_b1_ms
    assert t.size_bytes < a.onnx.stat().st_size and t.peak_mem_mb >= 0
    assert measure(a.onnx, {"input": x}, 1, (1,), 0.05, isolate=False).speedup_b1 is None

"""Each pass on a tiny model: the output runs in ONNX Runtime, has the ops the pass promises, and stays
close to the float model."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from quiver.optimize import make_pass
from quiver.optimize._onnx import run_batches, session
from quiver.optimize.sources import from_torch
from quiver.optimize.types import Artifact, PassContext


@pytest.fixture
def source(mlp: object, tabular: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> Artifact:
    x, _ = tabular
    return from_torch(mlp, {"input": x[:2]}, tmp_path, "classification", ("probabilities",))


@pytest.fixture
def ctx(tabular: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> PassContext:
    x, _ = tabular
    batches = [{"input": x[i : i + 32]} for i in range(0, 256, 32)]
    return PassContext(workdir=tmp_path, calibration=batches, train_inputs=batches, progress=False)


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return run_batches(session(path), [{"input": x}])


@pytest.mark.parametrize(
    ("spec", "expect_op"),
    [
        ("int8-dynamic", "DynamicQuantizeLinear"),
        ("int8-dynamic:per_channel=0,weights=u8", "DynamicQuantizeLinear"),
        ("int8-static:method=minmax", "QuantizeLinear"),
        ("int8-static:method=entropy,samples=32", "QuantizeLinear"),
        ("int8-static:method=percentile,samples=32", "QuantizeLinear"),
        ("int8-static:format=qoperator", "QGemm"),
        ("fp16", "Cast"),
        ("bf16", "Cast"),
        ("graph", None),
    ],
)
def test_onnx_pass_runs_and_stays_close(
    spec: str, expect_op: str | None, source: Artifact, ctx: PassContext, tabular: tuple[np.ndarray, np.ndarray]
) -> None:
    x = tabular[0][400:]
    out = make_pass(spec).apply(source, ctx)
    assert out.onnx != source.onnx and out.onnx.exists()
    ops = _ops(out.onnx)
    if expect_op:
        assert any(expect_op in op for op in ops), ops
    ref, got = _run(source.onnx, x), _run(out.onnx, x)
    assert got.shape == ref.shape
    assert np.mean(got.argmax(1) == ref.argmax(1)) > 0.9


def test_int8_exclude_keeps_nodes_in_float(source: Artifact, ctx: PassContext) -> None:
    nodes = [n.name for n in onnx.load(str(source.onnx)).graph.node if n.op_type in ("Gemm", "MatMul")]
    q_all = make_pass("int8-dynamic").apply(source, ctx)
    p = make_pass("int8-dynamic")
    p.options["exclude"] = (nodes[0],)
    q_some = p.apply(source, ctx)
    float_ops = lambda path: sum(v for k, v in _ops(path).items() if k in ("Gemm", "MatMul"))  # noqa: E731
    assert float_ops(q_some.onnx) == float_ops(q_all.onnx) + 1


def test_bf16_halves_weight_bytes(source: Artifact, ctx: PassContext) -> None:
    out = make_pass("bf16:min_elements=16").apply(source, ctx)
    types = Counter(i.data_type for i in onnx.load(str(out.onnx)).graph.initializer)
    assert types[onnx.TensorProto.BFLOAT16] >= 2
    assert out.onnx.stat().st_size < 0.75 * source.onnx.stat().st_size


def test_sparsify_zeroes_weights_and_says_size_only(source: Artifact, ctx: PassContext) -> None:
    out = make_pass("sparsify:sparsity=0.7").apply(source, ctx)
    big = [
        numpy_helper.to_array(i) for i in onnx.load(str(out.onnx)).graph.initializer if i.dims and np.prod(i.dims) > 100
    ]
    assert big and all(np.mean(w == 0) >= 0.69 for w in big)
    assert any("not faster" in n for n in out.notes)


def test_int4_uses_matmulnbits(tmp_path: Path) -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128, bias=False), nn.ReLU(), nn.Linear(128, 64, bias=False)).eval()
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    src = from_torch(model, {"input": x[:2]}, tmp_path, "regression")
    ctx = PassContext(workdir=tmp_path, calibration=[], train_inputs=[], progress=False)
    out = make_pass("int4:block_size=32").apply(src, ctx)
    assert _ops(out.onnx)["MatMulNBits"] == 2
    ref, got = _run(src.onnx, x), _run(out.onnx, x)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.2


def test_structured_prune_shrinks_matrices_and_recovers(
    source: Artifact, ctx: PassContext, tabular: tuple[np.ndarray, np.ndarray]
) -> None:
    from quiver.optimize.pipeline import build
    from quiver.optimize.registry import Recipe

    chain = build(Recipe.parse("prune:sparsity=0.5,steps=60"), source, ctx)
    pruned = chain[-1]
    shapes = sorted(tuple(i.dims) for i in onnx.load(str(pruned.onnx)).graph.initializer if len(i.dims) == 2)
    assert sorted(shapes) == sorted([(32, 30), (16, 32), (2, 16)]) or sorted(shapes) == sorted(
        [(30, 32), (32, 16), (16, 2)]
    )
    x = tabular[0][400:]
    assert np.mean(_run(pruned.onnx, x).argmax(1) == _run(source.onnx, x).argmax(1)) > 0.9
    assert source.torch[0].out_features == 64  # the original module is untouched

"""Hugging Face folder source, head/FFN pruning, distillation with resumable checkpoints, fusions, int8."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from quiver.optimize import Recipe, make_pass
from quiver.optimize._onnx import io_specs, load, run_batches, session
from quiver.optimize.data import load as load_data
from quiver.optimize.metrics import score
from quiver.optimize.pipeline import build
from quiver.optimize.sources import from_hf
from quiver.optimize.types import Artifact, PassContext


@pytest.fixture(scope="module")
def bert(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return from_hf(bert_dir, tmp_path_factory.mktemp("work"), seq_len=16)


@pytest.fixture(scope="module")
def feeds(
    bert: Artifact, text_files: tuple[Path, Path]
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    specs = io_specs(load(bert.onnx))[0]
    ev = load_data(text_files[0], specs, bert.meta["tokenizer_dir"], 16)
    tr = load_data(text_files[1], specs, bert.meta["tokenizer_dir"], 16)
    return ev.batches(20), tr.batches(16)


def _ctx(tmp: Path, feeds: tuple[list, list]) -> PassContext:  # type: ignore[type-arg]
    return PassContext(workdir=tmp, calibration=feeds[1][:2], train_inputs=feeds[1], progress=False)


def _emb(path: Path, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    return run_batches(session(path), batches)


def test_hf_export_matches_torch_and_keeps_tokenizer(bert: Artifact, feeds: tuple[list, list]) -> None:  # type: ignore[type-arg]
    import torch

    assert bert.family == "transformer" and bert.task == "embedding"
    assert (Path(bert.meta["tokenizer_dir"]) / "tokenizer.json").exists()
    batch = feeds[0][0]
    with torch.no_grad():
        ref = bert.torch(*(torch.from_numpy(batch[n]) for n in bert.meta["input_names"])).numpy()
    got = _emb(bert.onnx, [batch])
    assert got.shape == (20, 32)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # mean pooled, L2-normalized


def test_graph_pass_fuses_attention(bert: Artifact, feeds: tuple[list, list], tmp_path: Path) -> None:  # type: ignore[type-arg]
    out = make_pass("graph").apply(bert, _ctx(tmp_path, feeds))
    ops = Counter(n.op_type for n in onnx.load(str(out.onnx)).graph.node)
    assert ops["Attention"] >= 2
    assert ops["SkipLayerNormalization"] == 0  # slower than Add + LayerNormalization on ORT's CPU provider
    cos = score("embedding", _emb(out.onnx, feeds[0]), _emb(bert.onnx, feeds[0])).value
    assert cos > 99.9


def test_int8_dynamic_close_to_float(bert: Artifact, feeds: tuple[list, list], tmp_path: Path) -> None:  # type: ignore[type-arg]
    out = make_pass("int8-dynamic").apply(bert, _ctx(tmp_path, feeds))
    assert out.onnx.stat().st_size < bert.onnx.stat().st_size
    assert score("embedding", _emb(out.onnx, feeds[0]), _emb(bert.onnx, feeds[0])).value > 97


def test_prune_heads_and_ffn_shrinks_layers(bert: Artifact, feeds: tuple[list, list], tmp_path: Path) -> None:  # type: ignore[type-arg]
    art = make_pass("prune:heads=2,sparsity=0.5,steps=20").apply(bert, _ctx(tmp_path, feeds))
    layer = art.torch.encoder.encoder.layer[0]
    assert layer.attention.self.query.out_features == 16  # 2 of 4 heads x 8
    assert layer.attention.output.dense.in_features == 16
    assert layer.intermediate.dense.out_features == 32  # half of 64 FFN neurons
    assert art.meta["num_heads"] == 2
    assert bert.torch.encoder.encoder.layer[0].attention.self.query.out_features == 32  # original untouched
    chain = build(Recipe.parse("prune:heads=2,sparsity=0.5,steps=20+graph"), bert, _ctx(tmp_path, feeds))
    assert _emb(chain[-1].onnx, feeds[0]).shape == (40, 32)  # exported, then fused with 2 heads


def test_distill_resumes_from_checkpoint(
    bert: Artifact, feeds: tuple[list, list], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[type-arg]
    ctx = PassContext(workdir=tmp_path, calibration=[], train_inputs=feeds[1], progress=True)
    first = make_pass("distill:layers=1,steps=20,checkpoint_every=10,lr=0.001").apply(bert, ctx)
    assert len(first.torch.encoder.encoder.layer) == 1
    ckpts = list((tmp_path / "checkpoints").glob("distill-*.pt"))
    assert len(ckpts) == 1
    assert "distill 1 layers" in capsys.readouterr().err  # the progress bar
    # Same command again: resumes at step 20 of 20, so no training happens and the weights are identical.
    second = make_pass("distill:layers=1,steps=20,checkpoint_every=10,lr=0.001").apply(bert, ctx)
    for a, b in zip(first.torch.state_dict().values(), second.torch.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy())
    # A fresh run with the same seed reproduces the same student (fixed seed).
    fresh = make_pass("distill:layers=1,steps=20,checkpoint_every=10,lr=0.001").apply(
        bert, PassContext(workdir=tmp_path / "fresh", calibration=[], train_inputs=feeds[1], progress=False)
    )
    w1 = first.torch.encoder.encoder.layer[0].output.dense.weight.detach().numpy()
    w2 = fresh.torch.encoder.encoder.layer[0].output.dense.weight.detach().numpy()
    np.testing.assert_allclose(w1, w2, atol=1e-6)


def test_distill_can_match_hidden_states(bert: Artifact, feeds: tuple[list, list], tmp_path: Path) -> None:  # type: ignore[type-arg]
    ctx = PassContext(workdir=tmp_path, calibration=[], train_inputs=feeds[1], progress=False)
    plain = make_pass("distill:layers=1,steps=10,lr=0.001").apply(bert, ctx)
    hidden = make_pass("distill:layers=1,steps=10,lr=0.001,hidden_weight=1.0").apply(bert, ctx)
    w1 = plain.torch.encoder.encoder.layer[0].output.dense.weight.detach().numpy()
    w2 = hidden.torch.encoder.encoder.layer[0].output.dense.weight.detach().numpy()
    assert not np.allclose(w1, w2)  # the token-level loss changes the training signal
    assert score("embedding", _emb(bert.onnx, feeds[0]), _emb(bert.onnx, feeds[0])).value == pytest.approx(100.0)


def test_distill_keeps_the_layers_that_best_reproduce_the_teacher(bert: Artifact, feeds: tuple[list, list]) -> None:  # type: ignore[type-arg]
    import copy

    import torch
    from torch import nn

    from quiver.optimize.passes.distill import _shrink

    teacher = copy.deepcopy(bert.torch).eval()
    layers = teacher.encoder.encoder.layer
    noop = copy.deepcopy(layers[1])  # residual branches zeroed: the layer only re-normalizes its input
    for dense in (noop.attention.output.dense, noop.output.dense):
        nn.init.zeros_(dense.weight)
        nn.init.zeros_(dense.bias)
    teacher.encoder.encoder.layer = nn.ModuleList([layers[0], layers[1], noop, copy.deepcopy(layers[0])])
    teacher.encoder.config.num_hidden_layers = 4
    student = copy.deepcopy(teacher)
    names = list(bert.meta["input_names"])
    kept = _shrink(student, teacher, 3, feeds[1], names)
    assert kept == [0, 1, 3]  # evenly spaced would keep the no-op layer 2 and drop layer 1
    assert len(student.encoder.encoder.layer) == 3 and student.encoder.config.num_hidden_layers == 3
    batch = tuple(torch.from_numpy(feeds[0][0][n]) for n in names)
    with torch.no_grad():
        cos = nn.functional.cosine_similarity(student(*batch), teacher(*batch)).min()
    assert float(cos) > 0.999
    assert _shrink(copy.deepcopy(teacher), teacher, 3, [], names) == [0, 2, 3]  # no data: evenly spaced

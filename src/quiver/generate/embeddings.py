"""``/v1/embeddings`` over an embedding model that the server's data plane serves (e.g. all-MiniLM-L6-v2 on
ONNX Runtime, with its dynamic batching). No torch here.

The repository entry needs a ``config.toml`` and a ``tokenizer.json`` beside it or in the version folder.
Inputs named ``input_ids``, ``attention_mask`` and ``token_type_ids`` (INT64, ``[batch, seq]``) are filled
by name; a fixed sequence length in the model's input shape pads and truncates to it. The first output is
used: ``[batch, dim]`` as is (already pooled), ``[batch, seq, dim]`` mean-pooled over the mask and
L2-normalized (what sentence-transformers does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer

from quiver.errors import InvalidInput
from quiver.protocol.types import InferInput, InferRequest, InferResponse

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class _Served(Protocol):
    name: str
    version_text: str
    config: Any
    inputs: Any

    async def infer(self, request: InferRequest) -> InferResponse: ...


def find_tokenizer(model: _Served) -> Path:
    source = Path(str(model.config.source))
    if not source.is_file():
        raise InvalidInput(
            f"model '{model.name}' cannot serve /v1/embeddings: it needs a config.toml and a tokenizer.json in "
            "its folder"
        )
    for candidate in (source.parent / model.version_text / "tokenizer.json", source.parent / "tokenizer.json"):
        if candidate.is_file():
            return candidate
    raise InvalidInput(f"model '{model.name}': no tokenizer.json in {source.parent} or its version folder")


class ServedEmbedder:
    """Adapts a served model to the routes' ``Embedder``: ``await embed(texts) -> (vectors, tokens)``."""

    def __init__(self, model: _Served) -> None:
        self.model = model
        self.tokenizer = Tokenizer.from_file(str(find_tokenizer(model)))
        names = [spec.name for spec in model.inputs]
        unknown = [n for n in names if n not in _INPUTS]
        if unknown or "input_ids" not in names:
            raise InvalidInput(
                f"model '{model.name}' is not an embedding model: inputs {names}, expected input_ids "
                "(+ attention_mask, token_type_ids)"
            )
        self._names = names
        seq = next(spec.shape for spec in model.inputs if spec.name == "input_ids")
        self._seq_len = seq[1] if len(seq) == 2 and seq[1] > 0 else None

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        encodings = self.tokenizer.encode_batch(texts)
        limit = self._seq_len or 512
        ids = [e.ids[:limit] for e in encodings]
        width = self._seq_len or max(len(i) for i in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)  # [batch, seq]
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        arrays = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        request = InferRequest(inputs=[InferInput(n, "INT64", arrays[n].shape, arrays[n]) for n in self._names])
        response = await self.model.infer(request)
        out = np.asarray(response.outputs[0].data, dtype=np.float32)
        if out.ndim == 3:  # token states [batch, seq, dim]: mean over the mask, then unit length
            weights = mask[:, :, None].astype(np.float32)
            out = (out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        if out.ndim != 2 or out.shape[0] != len(texts):
            raise InvalidInput(f"model '{self.model.name}': output shape {list(out.shape)} is not [batch, dim]")
        return out.tolist(), int(mask.sum())

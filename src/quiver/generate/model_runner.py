"""Turns a scheduled batch into tensors, runs the model once, returns the logits rows to sample.

All tokens of a step (one per decoding sequence, a chunk per prefilling one) are flattened into one
``[T]`` batch: the linear layers see a single matrix, attention is per sequence over views of the cache.
"""

from __future__ import annotations

import torch

from quiver.generate.models import AttnMeta, CausalLM, SeqAttn
from quiver.generate.scheduler import ScheduledBatch
from quiver.generate.sequence import Sequence

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelRunner:
    """Owns the model and its KV cache: per layer, K and V of ``[Hkv, num_blocks * block_size, D]``."""

    def __init__(
        self, model: CausalLM, num_blocks: int, block_size: int, device: str = "cpu", kv_dtype: str = "auto"
    ) -> None:
        self.model = model
        self.block_size = block_size
        self.device = torch.device(device)
        self.kv_dtype = kv_cache_dtype(kv_dtype, model.dtype, self.device)
        shape = (model.num_kv_heads, num_blocks * block_size, model.head_dim)
        self.kv_caches = [
            (
                torch.zeros(shape, dtype=self.kv_dtype, device=self.device),
                torch.zeros(shape, dtype=self.kv_dtype, device=self.device),
            )
            for _ in range(model.num_layers)
        ]

    @property
    def kv_cache_bytes(self) -> int:
        k, _ = self.kv_caches[0]
        return 2 * len(self.kv_caches) * k.numel() * k.element_size()

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> tuple[torch.Tensor, list[Sequence]]:
        """Returns float32 logits ``[S, V]`` and the S sequences that reached their last token (to sample)."""
        input_ids, positions, slots, seq_meta, rows, sampled = self._prepare(batch)
        dev = self.device
        meta = AttnMeta(slots=torch.tensor(slots, dtype=torch.long, device=dev), seqs=seq_meta)
        logits = self.model.forward(
            torch.tensor(input_ids, dtype=torch.long, device=dev),
            torch.tensor(positions, dtype=torch.long, device=dev),
            meta,
            self.kv_caches,
            torch.tensor(rows, dtype=torch.long, device=dev),
        )
        return logits.cpu(), sampled  # sampling (per-request CPU generators) runs on the host

    def _prepare(
        self, batch: ScheduledBatch
    ) -> tuple[list[int], list[int], list[int], list[SeqAttn], list[int], list[Sequence]]:
        bs = self.block_size
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        seq_meta: list[SeqAttn] = []
        rows: list[int] = []
        sampled: list[Sequence] = []
        for seq, n in zip(batch.seqs, batch.num_new, strict=True):
            start = seq.num_computed_tokens
            end = start + n  # context length after this step
            row = len(input_ids)
            table = seq.block_table
            input_ids.extend(seq.token_ids[start:end])
            positions.extend(range(start, end))
            slots.extend(table[p // bs] * bs + p % bs for p in range(start, end))
            mask = None
            if n > 1 and start > 0:  # a chunk after cached context: causal with an offset
                mask = torch.ones(n, end, dtype=torch.bool, device=self.device).tril(start)
            seq_meta.append(SeqAttn(slice(row, row + n), _runs(table, end, bs), mask, n > 1 and start == 0))
            if end == seq.num_tokens:
                rows.append(row + n - 1)
                sampled.append(seq)
        return input_ids, positions, slots, seq_meta, rows, sampled


def kv_cache_dtype(name: str, model_dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """``auto``: float32 on CPU under a 16-bit model, else the model's dtype. On this CPU torch's attention
    kernels run bfloat16 5-7x slower than float32 (measured: 496 vs 72 us for one decode token against 400
    keys), while bfloat16 matmuls run 3-4x faster: so weights in bfloat16, cache and attention in float32."""
    if name != "auto":
        return DTYPES[name]
    return torch.float32 if device.type == "cpu" else model_dtype


def _runs(table: list[int], length: int, block_size: int) -> list[tuple[int, int]]:
    """(first slot, length) of each run of consecutive blocks covering the first ``length`` slots."""
    runs: list[tuple[int, int]] = []
    num_blocks = -(-length // block_size)
    first = table[0]
    count = 1
    for i in range(1, num_blocks):
        if table[i] == table[i - 1] + 1:
            count += 1
        else:
            runs.append((first * block_size, count * block_size))
            first, count = table[i], 1
    runs.append((first * block_size, count * block_size))
    start, last = runs[-1]
    runs[-1] = (start, last - (num_blocks * block_size - length))
    return runs

"""What both architectures share: paged attention over the KV cache, and loading HF safetensors.

The KV cache of one layer is two preallocated tensors ``[kv_heads, num_blocks * block_size, head_dim]``
(a block is ``block_size`` consecutive slots). Head-major, so one head's keys over a run of slots are one
contiguous matrix: decode attention reads the cache 1.6x faster than from a slot-major layout. Each step,
new K/V are written to their slots, then each sequence attends to its context through *views* of the
cache: its block table is cut into runs of consecutive blocks, and attention reads each run in place.
(Gathering a sequence's blocks into a fresh tensor per layer per step costs several times the attention
itself on a CPU; the block manager hands out consecutive blocks where it can, so a sequence is usually
one run.)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open


@dataclass(slots=True)
class SeqAttn:
    """One sequence's share of a step: its ``rows`` in the flattened batch and the cache ranges it reads."""

    rows: slice
    runs: list[tuple[int, int]]  # (first slot, length) per run of consecutive slots; lengths sum to context
    mask: torch.Tensor | None  # [n, context] bool, True = attend; for a chunk after earlier context
    causal: bool  # a chunk from position 0 (n > 1): plain causal attention


@dataclass(slots=True)
class AttnMeta:
    slots: torch.Tensor  # [T] cache slot of each new token
    seqs: list[SeqAttn]


def paged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttnMeta,
    scale: float,
) -> torch.Tensor:
    """q: [T, H, D]; k, v: [T, Hkv, D] (this step's); caches: [Hkv, slots, D]. Returns [T, H, D] in q's dtype.

    Attention runs in the cache's dtype: a float32 cache under a bfloat16 model (the CPU default, see
    ``ModelRunner``) takes torch's float32 CPU kernels, several times faster than its bfloat16 ones.
    """
    dtype = q.dtype
    if k_cache.dtype != dtype:
        q, k, v = q.to(k_cache.dtype), k.to(k_cache.dtype), v.to(k_cache.dtype)
    k_cache.index_copy_(1, meta.slots, k.transpose(0, 1))
    v_cache.index_copy_(1, meta.slots, v.transpose(0, 1))
    qg = None  # decode queries, scaled, as [T, Hkv, D, g]: K @ q per KV head
    outs = []
    for s in meta.seqs:
        if s.rows.stop - s.rows.start == 1:  # a decode token (or a one-token chunk): all its context
            if qg is None:
                t, h, d = q.shape
                hkv = k_cache.shape[0]
                qg = (q * scale).reshape(t, hkv, h // hkv, d).transpose(2, 3)  # heads of a group adjacent
            outs.append(_attend_decode(qg[s.rows.start], k_cache, v_cache, s.runs))
        else:
            outs.append(_attend_one(q[s.rows], k_cache, v_cache, s, scale))
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out.to(dtype)


def _attend_decode(
    qg: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, runs: list[tuple[int, int]]
) -> torch.Tensor:
    """One new token against its context; ``qg``: [Hkv, D, g], scaled. Per run of the cache, scores as
    ``K @ q`` (a matrix-vector product reading K row by row), then ``probs @ V``; returns [1, H, D].

    Both products read the cache near the machine's bandwidth (2 cores, 400 keys, cold cache: 75 us against
    99 us for torch's flash-attention kernel), and the few ops keep the per-sequence Python cost small, which
    matters with dozens of sequences times every layer in each step."""
    a, n = runs[0]
    if len(runs) == 1:
        probs = torch.softmax(torch.bmm(k_cache.narrow(1, a, n), qg).transpose(1, 2), dim=-1)  # [Hkv, g, L]
        return torch.bmm(probs, v_cache.narrow(1, a, n)).view(1, -1, qg.shape[1])
    scores = torch.cat([torch.bmm(k_cache.narrow(1, a, n), qg) for a, n in runs], dim=1)  # [Hkv, L, g]
    probs = torch.softmax(scores.transpose(1, 2), dim=-1)
    out = torch.bmm(probs.narrow(2, 0, n), v_cache.narrow(1, a, n))  # [Hkv, g, D]
    offset = n
    for a, n in runs[1:]:
        out += torch.bmm(probs.narrow(2, offset, n), v_cache.narrow(1, a, n))
        offset += n
    return out.view(1, -1, qg.shape[1])


def _attend_one(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, s: SeqAttn, scale: float
) -> torch.Tensor:
    # q: [n, H, D] -> qh: [1, H, n, D]. Contiguous: torch's CPU flash-attention kernel is ~100x slower on a
    # strided query (measured: 6 ms vs 56 us for one decode token against 140 keys).
    qh = q.transpose(0, 1).unsqueeze(0).contiguous()
    gqa = q.shape[1] != k_cache.shape[0]
    if len(s.runs) == 1:
        start, length = s.runs[0]
        kh = k_cache[:, start : start + length].unsqueeze(0)  # [1, Hkv, L, D], a view
        vh = v_cache[:, start : start + length].unsqueeze(0)
        o = F.scaled_dot_product_attention(
            qh, kh, vh, attn_mask=s.mask, is_causal=s.causal, scale=scale, enable_gqa=gqa
        )
        return o[0].transpose(0, 1)  # [n, H, D]
    return _attend_runs(q, k_cache, v_cache, s, scale)


def _attend_runs(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, s: SeqAttn, scale: float
) -> torch.Tensor:
    """Attention over several runs without copying the cache: scores per run, one softmax, sum of parts."""
    n, h, d = q.shape
    hkv = k_cache.shape[0]
    qg = q.transpose(0, 1).reshape(hkv, (h // hkv) * n, d)  # [Hkv, g*n, D]; heads of a group are adjacent
    # [Hkv, g*n, L]
    scores = torch.cat([qg @ k_cache[:, a : a + length].transpose(1, 2) for a, length in s.runs], dim=-1)
    scores = scores.view(h, n, -1).float() * scale
    if s.mask is not None:
        scores = scores.masked_fill(~s.mask, -math.inf)
    elif s.causal:
        length = scores.shape[-1]
        causal = torch.ones(n, length, dtype=torch.bool).tril(length - n)
        scores = scores.masked_fill(~causal, -math.inf)
    probs = torch.softmax(scores, dim=-1).to(q.dtype).view(hkv, -1, scores.shape[-1])  # [Hkv, g*n, L]
    out = None
    offset = 0
    for a, length in s.runs:
        part = probs[..., offset : offset + length] @ v_cache[:, a : a + length]  # [Hkv, g*n, D]
        out = part if out is None else out + part
        offset += length
    assert out is not None
    return out.view(h, n, d).transpose(0, 1)


# -- weights ----------------------------------------------------------------------------------------------
def read_config(model_dir: Path) -> dict[str, Any]:
    return dict(json.loads((model_dir / "config.json").read_text()))


def load_safetensors(model_dir: Path, dtype: torch.dtype, device: str = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of ``model.safetensors`` or of a sharded checkpoint on ``device``, floats cast to ``dtype``."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors file")
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                t = f.get_tensor(name)
                tensors[name] = t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
    return tensors


def strip_prefix(tensors: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        for p in prefixes:
            if name.startswith(p):
                name = name[len(p) :]
                break
        out[name] = t
    return out

"""Llama (and the many models shaped like it) on a paged KV cache: RMSNorm, rotary positions, grouped-query
attention, SwiGLU. Q/K/V and gate/up projections are fused at load (one matmul each instead of three/two)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from quiver.generate.models.common import AttnMeta, paged_attention


@dataclass(slots=True)
class _Layer:
    ln1: torch.Tensor
    qkv_w: torch.Tensor  # [(H + 2 Hkv) D, C]
    qkv_b: torch.Tensor | None
    o_w: torch.Tensor  # [C, H D]
    o_b: torch.Tensor | None
    ln2: torch.Tensor
    gate_up_w: torch.Tensor  # [2 I, C]
    down_w: torch.Tensor  # [C, I]


def _rope_theta(cfg: dict[str, Any]) -> float:
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if not isinstance(params, dict):
        params = {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", None):
        raise ValueError(f"Llama rope type {kind!r} is not supported (only the default rotary embedding)")
    return float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))


class Llama:
    def __init__(self, cfg: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        w = weights
        self.hidden = int(cfg["hidden_size"])
        self.num_layers = int(cfg["num_hidden_layers"])
        self.num_heads = int(cfg["num_attention_heads"])
        self.num_kv_heads = int(cfg.get("num_key_value_heads") or self.num_heads)
        self.head_dim = int(cfg.get("head_dim") or self.hidden // self.num_heads)
        self.max_len = int(cfg.get("max_position_embeddings", 2048))
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError(f"Llama hidden_act: expected 'silu', got {cfg.get('hidden_act')!r}")
        self.embed = w["model.embed_tokens.weight"]  # [V, C]
        self.vocab_size = self.embed.shape[0]
        self.dtype = self.embed.dtype
        self.lm_head = w.get("lm_head.weight", self.embed)
        self.layers = [self._layer(w, f"model.layers.{i}.") for i in range(self.num_layers)]
        self.norm = w["model.norm.weight"]
        # Rotary tables, computed in float32 as HF does, then cast: cos, sin: [max_len, D]
        theta = _rope_theta(cfg)
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim))
        freqs = torch.outer(torch.arange(self.max_len, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos = emb.cos().to(device=self.embed.device, dtype=self.dtype)
        self.sin = emb.sin().to(device=self.embed.device, dtype=self.dtype)
        self.scale = self.head_dim**-0.5

    @staticmethod
    def _layer(w: dict[str, torch.Tensor], p: str) -> _Layer:
        a = p + "self_attn."
        qkv_b = None
        if a + "q_proj.bias" in w:
            qkv_b = torch.cat([w[a + "q_proj.bias"], w[a + "k_proj.bias"], w[a + "v_proj.bias"]])
        if p + "mlp.gate_proj.bias" in w:
            raise ValueError("Llama mlp_bias=true is not supported")
        return _Layer(
            ln1=w[p + "input_layernorm.weight"],
            qkv_w=torch.cat([w[a + "q_proj.weight"], w[a + "k_proj.weight"], w[a + "v_proj.weight"]]),
            qkv_b=qkv_b,
            o_w=w[a + "o_proj.weight"],
            o_b=w.get(a + "o_proj.bias"),
            ln2=w[p + "post_attention_layernorm.weight"],
            gate_up_w=torch.cat([w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]]),
            down_w=w[p + "mlp.down_proj.weight"],
        )

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), weight, self.eps)
        xf = x.float()  # HF normalizes in float32, then scales in the model's dtype
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * xf.to(x.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttnMeta,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
        logits_rows: torch.Tensor,
    ) -> torch.Tensor:
        """input_ids, positions: [T]; returns float32 logits [len(logits_rows), V]."""
        t, h, hkv, d = input_ids.shape[0], self.num_heads, self.num_kv_heads, self.head_dim
        cos = self.cos[positions].unsqueeze(1)  # [T, 1, D]
        sin = self.sin[positions].unsqueeze(1)
        x = F.embedding(input_ids, self.embed)  # [T, C]
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches, strict=True):
            a = self._rms(x, layer.ln1)
            qkv = F.linear(a, layer.qkv_w, layer.qkv_b)  # [T, (H + 2 Hkv) D]
            q, k, v = qkv.split((h * d, hkv * d, hkv * d), dim=-1)
            q = _rotate(q.view(t, h, d), cos, sin)  # [T, H, D]
            k = _rotate(k.view(t, hkv, d), cos, sin)  # [T, Hkv, D]
            a = paged_attention(q, k, v.view(t, hkv, d), k_cache, v_cache, meta, self.scale)
            x = x + F.linear(a.reshape(t, h * d), layer.o_w, layer.o_b)
            gate, up = F.linear(self._rms(x, layer.ln2), layer.gate_up_w).chunk(2, dim=-1)  # [T, I] each
            x = x + F.linear(F.silu(gate) * up, layer.down_w)
        x = self._rms(x[logits_rows], self.norm)  # [S, C]
        return F.linear(x, self.lm_head).float()  # [S, V]


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """HF's rotary embedding (halves, not interleaved). x: [T, heads, D]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin

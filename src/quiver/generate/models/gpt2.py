"""GPT-2 on a paged KV cache. HF stores ``Conv1D`` weights as ``[in, out]``; they are transposed once at load
to ``[out, in]`` for ``F.linear`` (as fast in float32, and the fast oneDNN path for bfloat16)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from quiver.generate.models.common import AttnMeta, paged_attention, strip_prefix

_ACTIVATIONS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
}


@dataclass(slots=True)
class _Layer:
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    attn_w: torch.Tensor  # [3C, C]
    attn_b: torch.Tensor
    proj_w: torch.Tensor  # [C, C]
    proj_b: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor
    fc_w: torch.Tensor  # [4C, C]
    fc_b: torch.Tensor
    fc2_w: torch.Tensor  # [C, 4C]
    fc2_b: torch.Tensor
    scale: float


class GPT2:
    def __init__(self, cfg: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        w = strip_prefix(weights, ("transformer.",))
        self.hidden = int(cfg["n_embd"])
        self.num_layers = int(cfg["n_layer"])
        self.num_heads = int(cfg["n_head"])
        self.num_kv_heads = self.num_heads
        self.head_dim = self.hidden // self.num_heads
        self.max_len = int(cfg.get("n_positions", 1024))
        self.eps = float(cfg.get("layer_norm_epsilon", 1e-5))
        act = str(cfg.get("activation_function", "gelu_new"))
        if act not in _ACTIVATIONS:
            raise ValueError(f"GPT-2 activation_function: expected one of {sorted(_ACTIVATIONS)}, got {act!r}")
        self.act = _ACTIVATIONS[act]
        if cfg.get("reorder_and_upcast_attn"):
            raise ValueError("GPT-2 reorder_and_upcast_attn=true is not supported")
        self.wte = w["wte.weight"]  # [V, C]
        self.wpe = w["wpe.weight"]  # [P, C]
        self.vocab_size = self.wte.shape[0]
        self.dtype = self.wte.dtype
        self.lm_head = w.get("lm_head.weight", self.wte)  # tied by default
        base = 1.0 / math.sqrt(self.head_dim) if cfg.get("scale_attn_weights", True) else 1.0
        by_layer = bool(cfg.get("scale_attn_by_inverse_layer_idx", False))
        self.layers = [
            _Layer(
                **{f: _load(w[f"h.{i}.{key}"], f) for f, key in _LAYER_KEYS.items()},
                scale=base / (i + 1) if by_layer else base,
            )
            for i in range(self.num_layers)
        ]
        self.ln_f = (w["ln_f.weight"], w["ln_f.bias"])

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttnMeta,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
        logits_rows: torch.Tensor,
    ) -> torch.Tensor:
        """input_ids, positions: [T]; returns float32 logits [len(logits_rows), V]."""
        t, c, h, d = input_ids.shape[0], self.hidden, self.num_heads, self.head_dim
        x = F.embedding(input_ids, self.wte) + F.embedding(positions, self.wpe)  # [T, C]
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches, strict=True):
            a = F.layer_norm(x, (c,), layer.ln1_w, layer.ln1_b, self.eps)
            q, k, v = F.linear(a, layer.attn_w, layer.attn_b).view(t, 3, h, d).unbind(1)  # [T, H, D] each
            a = paged_attention(q, k, v, k_cache, v_cache, meta, layer.scale)  # [T, H, D]
            x = x + F.linear(a.reshape(t, c), layer.proj_w, layer.proj_b)
            a = F.layer_norm(x, (c,), layer.ln2_w, layer.ln2_b, self.eps)
            a = self.act(F.linear(a, layer.fc_w, layer.fc_b))  # [T, 4C]
            x = x + F.linear(a, layer.fc2_w, layer.fc2_b)
        x = F.layer_norm(x[logits_rows], (c,), self.ln_f[0], self.ln_f[1], self.eps)  # [S, C]
        return F.linear(x, self.lm_head).float()  # [S, V]


def _load(t: torch.Tensor, field: str) -> torch.Tensor:
    return t.t().contiguous() if field.endswith("_w") and t.dim() == 2 else t


_LAYER_KEYS = {  # _Layer field -> HF name under h.{i}.
    "ln1_w": "ln_1.weight",
    "ln1_b": "ln_1.bias",
    "attn_w": "attn.c_attn.weight",
    "attn_b": "attn.c_attn.bias",
    "proj_w": "attn.c_proj.weight",
    "proj_b": "attn.c_proj.bias",
    "ln2_w": "ln_2.weight",
    "ln2_b": "ln_2.bias",
    "fc_w": "mlp.c_fc.weight",
    "fc_b": "mlp.c_fc.bias",
    "fc2_w": "mlp.c_proj.weight",
    "fc2_b": "mlp.c_proj.bias",
}

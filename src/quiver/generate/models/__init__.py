"""Quiver's model code: each architecture reads and writes the paged KV cache (see ``common``)."""

from __future__ import annotations

from pathlib import Path

import torch

from quiver.generate.models.common import AttnMeta, SeqAttn, load_safetensors, read_config
from quiver.generate.models.gpt2 import GPT2
from quiver.generate.models.llama import Llama

CausalLM = GPT2 | Llama

_ARCHITECTURES: dict[str, type[GPT2] | type[Llama]] = {
    "GPT2LMHeadModel": GPT2,
    "LlamaForCausalLM": Llama,
}


def load_model(model_dir: Path, dtype: torch.dtype, device: str = "cpu") -> CausalLM:
    """Build the model named by ``config.json``'s ``architectures`` from the folder's safetensors."""
    cfg = read_config(model_dir)
    archs = cfg.get("architectures") or [
        {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}.get(
            str(cfg.get("model_type")), str(cfg.get("model_type"))
        )
    ]
    arch = str(archs[0])
    cls = _ARCHITECTURES.get(arch)
    if cls is None:
        raise ValueError(
            f"{model_dir}: architecture {arch!r} is not supported; expected one of {sorted(_ARCHITECTURES)}"
        )
    return cls(cfg, load_safetensors(model_dir, dtype, device))


__all__ = ["GPT2", "AttnMeta", "CausalLM", "Llama", "SeqAttn", "load_model"]

"""Generative serving: an engine with continuous batching, a paged KV cache and prefix caching, on PyTorch.

Layout (nano-vllm's): ``scheduler`` and ``block_manager`` are plain Python; ``models`` hold Quiver's own
GPT-2 and Llama code over the paged cache; ``engine.LLMEngine.step()`` is schedule -> run -> postprocess;
``service.LLMService`` steps it on the process's torch thread (``torch_thread``) for asyncio callers;
``routes`` expose the OpenAI and V2-generate HTTP APIs. Importing this package (or ``routes``) does not import torch.

    >>> from quiver.generate import LLMEngine, EngineConfig, SamplingParams  # doctest: +SKIP
    >>> engine = LLMEngine(Path("repo/gpt2/1"), EngineConfig(num_kv_blocks=512))  # doctest: +SKIP
    >>> [seqs] = engine.generate([engine.tokenizer.encode("Hello")], SamplingParams(max_tokens=8))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from quiver.generate.params import EngineConfig, SamplingParams

_LAZY = {
    "LLMEngine": "quiver.generate.engine",
    "SeqOutput": "quiver.generate.engine",
    "LLMService": "quiver.generate.service",
    "load_llm": "quiver.generate.service",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'quiver.generate' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["EngineConfig", "LLMEngine", "LLMService", "SamplingParams", "SeqOutput", "load_llm"]

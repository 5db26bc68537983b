"""Tiny random-weight GPT-2 and Llama folders in HF format, built offline (no download), shared per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Quiver serves language models with continuous batching and a paged KV cache.",
    "Hello world! How are you today? I am fine, thank you.",
    "Prefix caching reuses the blocks of a shared system prompt.",
    "0123456789 + - * / = ( ) [ ] { } < > | ! ? , . ; :",
]


def build_tokenizer(out: Path, vocab_size: int = 320) -> int:
    """A byte-level BPE trained on a few sentences; returns its vocab size. eos = <|endoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES * 5, trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "chat_template": CHAT_TEMPLATE})
    )
    return int(tok.get_vocab_size())


def build_gpt2(out: Path, **overrides: object) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(out)
    torch.manual_seed(0)
    cfg = dict(
        vocab_size=vocab,
        n_positions=256,
        n_embd=64,
        n_layer=2,
        n_head=4,
        eos_token_id=0,
        bos_token_id=0,
        initializer_range=0.2,  # larger than the default so greedy outputs vary (a sharper test)
    )
    cfg.update(overrides)
    GPT2LMHeadModel(GPT2Config(**cfg)).eval().save_pretrained(out)
    return out


def build_llama(out: Path, **overrides: object) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(out)
    torch.manual_seed(0)
    cfg = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=0,
        bos_token_id=0,
        tie_word_embeddings=False,
    )
    cfg.update(overrides)
    LlamaForCausalLM(LlamaConfig(**cfg)).eval().save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_gpt2(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llama(tmp_path_factory.mktemp("llama"))


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    import torch

    torch.set_num_threads(2)

"""Tokenizer, chat template and incremental detokenization, from a HF folder (no transformers needed).

Reads ``tokenizer.json`` (the ``tokenizers`` library), ``tokenizer_config.json`` (special tokens and the
chat template, or ``chat_template.jinja`` beside it) and the end-of-sequence ids of
``generation_config.json`` / ``config.json``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as _HFTokenizer


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):
        return str(value.get("content"))
    return None if value is None else str(value)


def _raise(message: str) -> None:
    raise TemplateError(message)


class Tokenizer:
    def __init__(self, model_dir: Path) -> None:
        self._tok = _HFTokenizer.from_file(str(model_dir / "tokenizer.json"))
        cfg: dict[str, Any] = {}
        if (model_dir / "tokenizer_config.json").exists():
            cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
        self.bos_token = _token_text(cfg.get("bos_token"))
        self.eos_token = _token_text(cfg.get("eos_token"))
        template = cfg.get("chat_template")
        if (model_dir / "chat_template.jinja").exists():
            template = (model_dir / "chat_template.jinja").read_text()
        if isinstance(template, list):  # named templates: take "default"
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        self.chat_template: str | None = template
        self.eos_token_ids = self._eos_ids(model_dir)
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    def _eos_ids(self, model_dir: Path) -> frozenset[int]:
        ids: set[int] = set()
        for name in ("generation_config.json", "config.json"):
            path = model_dir / name
            if path.exists():
                value = json.loads(path.read_text()).get("eos_token_id")
                if isinstance(value, int):
                    ids.add(value)
                elif isinstance(value, list):
                    ids.update(int(v) for v in value)
                if ids:
                    break
        if self.eos_token is not None:
            token_id = self._tok.token_to_id(self.eos_token)
            if token_id is not None:
                ids.add(token_id)
        return frozenset(ids)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=skip_special_tokens))

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """Render the model's chat template; raises ValueError for a missing template or a template error."""
        if self.chat_template is None:
            raise ValueError("this model has no chat template; use /v1/completions")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            return env.from_string(self.chat_template).render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
            )
        except TemplateError as exc:
            raise ValueError(f"chat template: {exc}") from exc


class IncrementalDetokenizer:
    """Text of a growing token list, emitted piece by piece. Decodes a small window (the last few tokens)
    each step so multi-byte characters and tokenizers that merge spaces come out right; a piece ending in an
    incomplete character (U+FFFD) waits for the next token."""

    def __init__(self, tokenizer: Tokenizer, prompt_ids: list[int], skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._prefix = max(0, len(prompt_ids) - 5)
        self._read = len(prompt_ids)

    def step(self, token_ids: list[int]) -> str:
        """``token_ids``: the whole sequence so far (prompt + output). Returns the new text."""
        decode = self._tokenizer.decode
        prefix_text = decode(token_ids[self._prefix : self._read], self._skip)
        full = decode(token_ids[self._prefix :], self._skip)
        if len(full) > len(prefix_text) and not full.endswith("\ufffd"):
            self._prefix = self._read
            self._read = len(token_ids)
            return full[len(prefix_text) :]
        return ""

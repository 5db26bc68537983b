"""The engine: ``step()`` = schedule -> run -> postprocess.

Thread-safety: ``add_request`` and ``abort`` may be called from another thread while ``step`` runs; the
scheduler's state is only touched under ``_lock``, and the model runs outside it (a sequence aborted while
the model runs is skipped in postprocess; its freed blocks are handed out only by the next schedule).

>>> engine = LLMEngine(Path("models/gpt2/1"), EngineConfig(num_kv_blocks=512))  # doctest: +SKIP
>>> seqs = engine.add_request("r1", engine.tokenizer.encode("Hello"), SamplingParams(max_tokens=8))  # doctest: +SKIP
>>> while engine.has_work:  # doctest: +SKIP
...     for out in engine.step(): print(out.text, end="")
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from quiver.errors import InvalidInput
from quiver.generate.block_manager import BlockManager
from quiver.generate.model_runner import DTYPES, ModelRunner
from quiver.generate.models import load_model
from quiver.generate.params import EngineConfig, SamplingParams
from quiver.generate.sampler import Sample, Sampler
from quiver.generate.scheduler import ScheduledBatch, Scheduler
from quiver.generate.sequence import Sequence
from quiver.generate.tokenizer import IncrementalDetokenizer, Tokenizer

Logprob = tuple[int, float, list[tuple[int, float]]]  # token, its logprob, best alternatives


@dataclass(slots=True)
class SeqOutput:
    """What one step produced for one sequence (``index`` among the request's ``n``)."""

    request_id: str
    index: int
    token_ids: list[int]  # new tokens of this step
    text: str  # new text of this step (held back while it could still become a stop string)
    logprobs: list[Logprob]
    finished: bool
    finish_reason: str | None
    num_prompt_tokens: int
    num_output_tokens: int
    num_cached_tokens: int
    arrival_time: float
    first_scheduled_time: float | None
    first_token_time: float | None
    time: float


@dataclass(slots=True)
class EngineStats:
    """Totals since start (read by benchmarks; the service exports its own metrics)."""

    steps: int = 0
    tokens: int = 0  # tokens computed (prefill chunks + decodes)
    decode_tokens: int = 0  # of which single-token decode rows
    context_tokens: int = 0  # sum over steps and sequences of the context attended to (KV read)


class _Text:
    """A sequence's output text, its stop strings, and how much of it was handed out."""

    def __init__(self, detok: IncrementalDetokenizer, stop: tuple[str, ...]) -> None:
        self.detok = detok
        self.stop = stop
        self.holdback = max((len(s) for s in stop), default=1) - 1
        self.text = ""
        self.emitted = 0

    def add(self, token_ids: list[int]) -> bool:
        """Decode the newest token; True if a stop string appeared (the text is cut before it)."""
        delta = self.detok.step(token_ids)
        if not delta:
            return False
        search_from = max(0, len(self.text) - self.holdback)
        self.text += delta
        hits = [p for p in (self.text.find(s, search_from) for s in self.stop) if p != -1]
        if hits:
            self.text = self.text[: min(hits)]
            return True
        return False

    def take(self, finished: bool) -> str:
        end = len(self.text) if finished else max(self.emitted, len(self.text) - self.holdback)
        piece = self.text[self.emitted : end]
        self.emitted = end
        return piece


class LLMEngine:
    def __init__(self, model_dir: Path, config: EngineConfig) -> None:
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.config = config
        self.model = load_model(model_dir, DTYPES[config.dtype], config.device)
        self.tokenizer = Tokenizer(model_dir)
        self.max_model_len = min(config.max_model_len or self.model.max_len, self.model.max_len)
        self.block_manager = BlockManager(config.num_kv_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(config, self.block_manager)
        self.runner = ModelRunner(
            self.model, config.num_kv_blocks, config.block_size, config.device, config.kv_cache_dtype
        )
        self.sampler = Sampler(config.seed)
        self._text: dict[int, _Text] = {}
        self._lock = threading.Lock()
        self.stats = EngineStats()

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    def validate(self, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """Raise InvalidInput if the request can never run (empty, too long, unknown token ids)."""
        if not prompt_token_ids:
            raise InvalidInput("the prompt is empty")
        total = len(prompt_token_ids) + params.max_tokens
        if total > self.max_model_len:
            raise InvalidInput(
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{total} tokens ({len(prompt_token_ids)} in the prompt, {params.max_tokens} for the "
                "completion). Please reduce the length of the prompt or max_tokens."
            )
        capacity = self.config.num_kv_blocks * self.config.block_size
        if total > capacity:
            raise InvalidInput(f"the request needs {total} tokens of KV cache; the cache holds {capacity}")
        vocab = self.model.vocab_size
        if min(prompt_token_ids) < 0 or max(prompt_token_ids) >= vocab:
            raise InvalidInput(f"prompt token ids must be in [0, {vocab})")

    def add_request(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams) -> list[Sequence]:
        """Queue ``params.n`` sequences; raises InvalidInput, or Overloaded when the waiting queue is full."""
        self.validate(prompt_token_ids, params)
        seqs = [Sequence(request_id, list(prompt_token_ids), params, index=i) for i in range(params.n)]
        with self._lock:
            self.scheduler.add(seqs)
            for seq in seqs:
                detok = IncrementalDetokenizer(self.tokenizer, seq.prompt_token_ids, params.skip_special_tokens)
                self._text[seq.seq_id] = _Text(detok, params.stop)
        return seqs

    def abort(self, request_id: str) -> None:
        with self._lock:
            for seq in self.scheduler.abort(request_id):
                self._forget(seq)

    def step(self) -> list[SeqOutput]:
        with self._lock:
            batch = self.scheduler.schedule()
        if batch.empty:
            return []
        logits, sampled = self.runner.run(batch)
        samples = self.sampler.sample(logits, sampled)
        with self._lock:
            return self._postprocess(batch, sampled, samples)

    def _postprocess(self, batch: ScheduledBatch, sampled: list[Sequence], samples: list[Sample]) -> list[SeqOutput]:
        stats = self.stats
        stats.steps += 1
        for seq, n in zip(batch.seqs, batch.num_new, strict=True):
            stats.tokens += n
            stats.decode_tokens += n == 1
            stats.context_tokens += seq.num_computed_tokens + n
            if not seq.is_finished:  # else: aborted while the model ran
                seq.num_computed_tokens += n
                self.block_manager.cache_blocks(seq)
        now = time.monotonic()
        outputs = []
        for seq, sample in zip(sampled, samples, strict=True):
            if seq.is_finished:
                continue
            seq.token_ids.append(sample.token)
            if sample.logprob is not None:
                seq.logprobs.append((sample.token, sample.logprob, sample.top))
            if seq.first_token_time is None:
                seq.first_token_time = now
            seq.last_token_time = now
            reason = self._finish_reason(seq, sample.token)
            if reason is not None:
                self.scheduler.finish(seq, reason)
            outputs.append(self._output(seq, now))
            if seq.is_finished:
                self._forget(seq)
        return outputs

    def _finish_reason(self, seq: Sequence, token: int) -> str | None:
        p = seq.params
        if (not p.ignore_eos and token in self.tokenizer.eos_token_ids) or token in p.stop_token_ids:
            return "stop"
        if self._text[seq.seq_id].add(seq.token_ids):
            return "stop"
        if seq.num_output_tokens >= p.max_tokens or seq.num_tokens >= self.max_model_len:
            return "length"
        return None

    def _output(self, seq: Sequence, now: float) -> SeqOutput:
        text = self._text[seq.seq_id]
        return SeqOutput(
            request_id=seq.request_id,
            index=seq.index,
            token_ids=[seq.token_ids[-1]],
            text=text.take(seq.is_finished),
            logprobs=seq.logprobs[-1:] if seq.params.logprobs is not None else [],
            finished=seq.is_finished,
            finish_reason=seq.finish_reason,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_output_tokens=seq.num_output_tokens,
            num_cached_tokens=seq.num_cached_prompt_tokens,
            arrival_time=seq.arrival_time,
            first_scheduled_time=seq.first_scheduled_time,
            first_token_time=seq.first_token_time,
            time=now,
        )

    def _forget(self, seq: Sequence) -> None:
        self._text.pop(seq.seq_id, None)
        self.sampler.forget(seq)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Sequence]]:
        """Run prompts to completion (offline use, tests, benchmarks). Returns each prompt's sequences."""
        requests = [self.add_request(f"offline-{i}", p, params) for i, p in enumerate(prompts)]
        while self.has_work:
            self.step()
        return requests

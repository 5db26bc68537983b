"""``LLMService``: the engine stepping on the process's torch thread, an asyncio API streaming each request.

The server loads a repository entry with ``runtime = "llm"`` through ``load_llm(model_dir, config)``;
``config`` is the entry's parsed ``config.toml``. Keys of its ``[parameters]`` table (all optional):

=========================  ======================================================================  =======
key                        meaning                                                                 default
=========================  ======================================================================  =======
kv_cache_blocks            KV cache size in blocks, preallocated at load                           2048
block_size                 tokens per KV block (a power of two)                                    16
max_num_seqs               most sequences in the running batch                                     64
max_num_batched_tokens     token budget of one step (decodes + prefill chunks)                     512
max_waiting                waiting sequences before new requests get 429                           256
max_model_len              context length limit (prompt + max_tokens); default: the model's        model
dtype                      float32 | bfloat16 | float16                                            float32
kv_cache_dtype             auto | float32 | bfloat16 | float16 (auto: float32 on CPU, else dtype)   auto
num_threads                torch intra-op threads                                                  torch's
enable_prefix_caching      reuse KV blocks of identical prompt prefixes                            true
enable_chunked_prefill     split long prompts across steps so decodes keep going                   true
seed                       seed for requests that do not give one                                  0
device                     torch device ("cpu", "cuda", "cuda:1"); the GPU path is untested here     cpu
=========================  ======================================================================  =======

Lifecycle: ``load_llm`` -> ``await start()`` -> ``submit``/``generate`` ... -> ``await stop(drain)``.

>>> service = load_llm(Path("repo/tiny-gpt2/1"), {"runtime": "llm"})  # doctest: +SKIP
>>> await service.start()  # doctest: +SKIP
>>> async for out in service.generate(service.tokenizer.encode("Hi"), SamplingParams(max_tokens=8)):
...     print(out.text, end="")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from quiver.errors import ConfigError, InternalError, QuiverError, Unavailable
from quiver.generate import metrics
from quiver.generate.engine import LLMEngine, SeqOutput
from quiver.generate.params import EngineConfig, SamplingParams
from quiver.generate.tokenizer import Tokenizer
from quiver.generate.torch_thread import TORCH_THREAD

_PARAMETER_KEYS = {"kv_cache_blocks": "num_kv_blocks"} | {
    f.name: f.name for f in fields(EngineConfig) if f.name != "num_kv_blocks"
}


def engine_config(parameters: dict[str, Any], source: str = "config.toml") -> EngineConfig:
    """Map a ``[parameters]`` table to an EngineConfig; unknown keys and bad values raise ConfigError."""
    kwargs: dict[str, Any] = {}
    for key, value in parameters.items():
        if key not in _PARAMETER_KEYS:
            raise ConfigError(
                f"{source}: [parameters] {key!r} is not an llm parameter; expected one of {sorted(_PARAMETER_KEYS)}"
            )
        kwargs[_PARAMETER_KEYS[key]] = value
    try:
        return EngineConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: [parameters] {exc}") from exc


def load_llm(model_dir: Path, config: dict[str, Any]) -> LLMService:
    """Load a HF-format folder (config.json, *.safetensors, tokenizer.json, tokenizer_config.json)."""
    source = str(model_dir.parent / "config.toml")
    cfg = engine_config(dict(config.get("parameters") or {}), source)
    name = str(config.get("name") or model_dir.parent.name)
    try:  # built on the torch thread, like every later step (see quiver.generate.torch_thread)
        engine = TORCH_THREAD.call(LLMEngine, model_dir, cfg)
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{model_dir}: cannot load the language model: {exc}") from exc
    return LLMService(name, engine)


class RequestStream:
    """The outputs of one request, in order. Iterate it; ``abort()`` (or leaving early via ``aclose``) stops
    the generation and frees its KV blocks."""

    def __init__(self, service: LLMService, request_id: str, num_seqs: int, num_prompt_tokens: int) -> None:
        self.request_id = request_id
        self.num_prompt_tokens = num_prompt_tokens
        self._service = service
        self._queue: asyncio.Queue[SeqOutput | QuiverError] = asyncio.Queue()
        self._unfinished = num_seqs
        self._last_token_time: dict[int, float] = {}

    @property
    def finished(self) -> bool:
        return self._unfinished == 0

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> SeqOutput:
        if self._unfinished == 0:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, QuiverError):
            self._unfinished = 0
            self._service._streams.pop(self.request_id, None)
            raise item
        if item.finished:
            self._unfinished -= 1
            if self._unfinished == 0:
                self._service._streams.pop(self.request_id, None)
        return item

    def abort(self) -> None:
        if self._unfinished:
            self._unfinished = 0
            self._service._abort(self.request_id)


class LLMService:
    def __init__(self, name: str, engine: LLMEngine) -> None:
        self.name = name
        self.engine = engine
        self.tokenizer: Tokenizer = engine.tokenizer
        self.max_model_len = engine.max_model_len
        self._streams: dict[str, RequestStream] = {}
        self._lock = threading.Lock()  # guards _step_posted
        self._step_posted = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._preemptions_seen = 0
        self.created = int(time.time())

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._post_step()
        sched, bm = self.engine.scheduler, self.engine.block_manager
        metrics.bind_gauges(
            self.name,
            running=lambda: len(sched.running),
            waiting=lambda: len(sched.waiting),
            kv_usage=lambda: bm.usage,
            prefix_hit_rate=lambda: sched.prefix_hit_rate,
        )

    async def stop(self, drain: bool = True) -> None:
        """Stop stepping. ``drain``: let requests in flight finish first; else abort them."""
        if drain:  # until every sequence finished and its last outputs reached their streams
            while self.engine.has_work:
                await asyncio.sleep(0.01)
            await self._after_current_step()
        for stream in list(self._streams.values()):
            stream._queue.put_nowait(Unavailable(f"model {self.name!r} is shutting down"))
            self._abort(stream.request_id)
        self._stopping = True
        await self._after_current_step()
        metrics.unbind(self.name)

    async def _after_current_step(self) -> None:
        """Return once no step of this engine is running and the outputs of the last one were delivered: a
        job posted now runs after it, and its completion reaches the loop after that step's outputs."""
        await asyncio.wrap_future(TORCH_THREAD.submit(lambda: None))

    @property
    def ready(self) -> bool:
        return self._loop is not None and not self._stopping  # started, and not stopped since

    def metadata(self) -> dict[str, Any]:
        cfg = self.engine.config
        return {
            "name": self.name,
            "platform": "quiver_llm",
            "architecture": type(self.engine.model).__name__,
            "max_model_len": self.max_model_len,
            "dtype": cfg.dtype,
            "kv_cache_blocks": cfg.num_kv_blocks,
            "block_size": cfg.block_size,
            "max_num_seqs": cfg.max_num_seqs,
            "max_num_batched_tokens": cfg.max_num_batched_tokens,
            "enable_prefix_caching": cfg.enable_prefix_caching,
        }

    # -- requests -----------------------------------------------------------------------------------------
    def submit(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str | None = None
    ) -> RequestStream:
        """Queue a request; raises InvalidInput (400), Overloaded (429) or Unavailable (503) right away."""
        if not self.ready:
            raise Unavailable(f"model {self.name!r} is not running")
        request_id = request_id or uuid.uuid4().hex
        stream = RequestStream(self, request_id, params.n, len(prompt_token_ids))
        self._streams[request_id] = stream
        try:
            self.engine.add_request(request_id, prompt_token_ids, params)
        except BaseException:
            self._streams.pop(request_id, None)
            raise
        self._post_step()
        return stream

    async def generate(self, prompt_token_ids: list[int], params: SamplingParams) -> AsyncIterator[SeqOutput]:
        stream = self.submit(prompt_token_ids, params)
        try:
            async for out in stream:
                yield out
        finally:
            stream.abort()

    def _abort(self, request_id: str) -> None:
        self._streams.pop(request_id, None)
        self.engine.abort(request_id)  # frees the KV blocks now (the engine's lock, not its step)

    # -- on the torch thread -----------------------------------------------------------------------------
    def _post_step(self) -> None:
        """Post one step job unless one is already waiting (a step job re-posts itself while there is work)."""
        with self._lock:
            if self._step_posted or self._stopping:
                return
            self._step_posted = True
        TORCH_THREAD.post(self._step)

    def _step(self) -> None:
        with self._lock:
            self._step_posted = False  # before looking for work: a request added from now on posts again
        if self._stopping or not self.engine.has_work:
            return
        try:
            outputs = self.engine.step()
        except Exception as exc:  # a bug: fail the requests in flight, keep serving
            self._call_soon(self._fail_all, InternalError(f"engine step failed: {exc!r}"))
            outputs = []
        if outputs:
            self._call_soon(self._deliver, outputs)
        if self.engine.has_work:
            self._post_step()

    def _call_soon(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            self._loop.call_soon_threadsafe(fn, *args)

    def _fail_all(self, error: QuiverError) -> None:
        for stream in list(self._streams.values()):
            stream._queue.put_nowait(error)
            self._abort(stream.request_id)

    def _deliver(self, outputs: list[SeqOutput]) -> None:
        """On the event loop: hand each output to its stream and record latencies (the torch thread has gone
        on to the next step meanwhile; making it wait for this handoff measured no faster)."""
        name = self.name
        for out in outputs:
            stream = self._streams.get(out.request_id)
            if stream is not None:
                stream._queue.put_nowait(out)
                previous = stream._last_token_time.get(out.index)
                stream._last_token_time[out.index] = out.time
                if previous is not None:
                    metrics.ITL.labels(name).observe(out.time - previous)
            if out.num_output_tokens == 1:
                metrics.TTFT.labels(name).observe(out.time - out.arrival_time)
                if out.first_scheduled_time is not None:
                    metrics.QUEUE.labels(name).observe(out.first_scheduled_time - out.arrival_time)
            metrics.GENERATION_TOKENS.labels(name).inc(len(out.token_ids))
            if out.finished:
                metrics.E2E.labels(name).observe(out.time - out.arrival_time)
                metrics.PROMPT_TOKENS.labels(name).inc(out.num_prompt_tokens)
                metrics.REQUESTS.labels(name, out.finish_reason or "unknown").inc()
        preemptions = self.engine.scheduler.num_preemptions
        if preemptions > self._preemptions_seen:
            metrics.PREEMPTIONS.labels(name).inc(preemptions - self._preemptions_seen)
            self._preemptions_seen = preemptions

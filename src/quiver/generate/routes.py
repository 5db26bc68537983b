"""HTTP routes: OpenAI ``/v1/completions``, ``/v1/chat/completions``, ``/v1/models``, ``/v1/embeddings``, and
the V2 (Triton) ``generate`` / ``generate_stream`` extension. Adapters only: parse, submit, format.

Errors on the OpenAI routes use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``; an
unknown model is a 400 with code ``model_not_found`` there (a 404 on the V2 routes, as in Triton).
Streams are server-sent events; a client that disconnects mid-stream closes the generator, whose
``finally`` aborts the request and frees its KV blocks.

>>> register(router, lookup_llm=repo.llm, lookup_embedder=repo.embedder, list_models=repo.llm_names)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from quiver.errors import NotFound, QuiverError
from quiver.generate.protocol import (
    OpenAIError,
    Options,
    _get,
    chat_logprobs,
    chat_messages,
    completion_logprobs,
    completion_prompt,
    error_object,
    model_name,
    openai_error_body,
    parse_json,
    sampling_params,
    usage,
)
from quiver.http.router import Router
from quiver.http.types import Request, Response, StreamingResponse

if TYPE_CHECKING:
    from quiver.generate.engine import SeqOutput
    from quiver.generate.service import LLMService, RequestStream

_DONE = b"data: [DONE]\n\n"


class Embedder(Protocol):
    """An embedding model as the server's data plane exposes it to these routes."""

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Vectors for ``texts`` and the number of input tokens used."""
        ...


def register(
    router: Router,
    lookup_llm: Callable[[str], Any],  # -> LLMService (the manager types it by its own protocol)
    lookup_embedder: Callable[..., Any],  # -> a served model that _embedder adapts, or an Embedder
    list_models: Callable[[], list[str]] | None = None,
) -> None:
    """Add the generative routes. ``lookup_*`` raise ``NotFound`` for unknown names; ``list_models`` names
    the language models for ``GET /v1/models``."""
    api = _Routes(lookup_llm, lookup_embedder, list_models or (lambda: []))
    router.add("POST", "/v1/completions", api.completions, error_body=openai_error_body)
    router.add("POST", "/v1/chat/completions", api.chat_completions, error_body=openai_error_body)
    router.add("GET", "/v1/models", api.models, error_body=openai_error_body)
    router.add("POST", "/v1/embeddings", api.embeddings, error_body=openai_error_body)
    router.add("POST", "/v2/models/{model}/generate", api.v2_generate)
    router.add("POST", "/v2/models/{model}/generate_stream", api.v2_generate_stream)


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _json(obj: dict[str, Any], status: int = 200) -> Response:
    return Response(status=status, body=orjson.dumps(obj))


@dataclass(slots=True)
class _Choice:
    text: list[str] = field(default_factory=list)
    logprobs: list[tuple[int, float, list[tuple[int, float]]]] = field(default_factory=list)
    finish_reason: str | None = None
    num_tokens: int = 0


class _Routes:
    def __init__(
        self,
        lookup_llm: Callable[[str], LLMService],
        lookup_embedder: Callable[[str], Embedder],
        list_models: Callable[[], list[str]],
    ) -> None:
        self._lookup_llm = lookup_llm
        self._lookup_embedder = lookup_embedder
        self._list_models = list_models
        self._adapters: dict[int, Embedder] = {}

    def _llm(self, name: str) -> LLMService:
        try:
            return self._lookup_llm(name)
        except NotFound as exc:
            raise OpenAIError(f"The model '{name}' does not exist", param="model", code="model_not_found") from exc

    # -- /v1/completions ----------------------------------------------------------------------------------
    async def completions(self, request: Request) -> Response | StreamingResponse:
        body = parse_json(request.body)
        llm = self._llm(model_name(body))
        prompt = completion_prompt(body)
        ids = llm.tokenizer.encode(prompt) if isinstance(prompt, str) else prompt
        if body.get("echo"):
            raise OpenAIError("'echo' is not supported by this server", param="echo")
        logprobs = _get(body, "logprobs", (int,), None)
        params = sampling_params(body, _get(body, "max_tokens", (int,), 16), logprobs)
        opts = _options(body, logprobs is not None)
        stream = llm.submit(ids, params)
        rid = "cmpl-" + stream.request_id
        if opts.stream:
            return StreamingResponse(self._completion_events(llm, stream, rid, opts))
        choices, cached = await _collect(stream, params.n, request)
        return _json(
            {
                "id": rid,
                "object": "text_completion",
                "created": opts.created,
                "model": llm.name,
                "choices": [
                    {
                        "index": i,
                        "text": "".join(c.text),
                        "logprobs": _completion_lp(llm, c.logprobs, 0) if opts.logprobs else None,
                        "finish_reason": c.finish_reason,
                    }
                    for i, c in enumerate(choices)
                ],
                "usage": usage(len(ids), sum(c.num_tokens for c in choices), cached),
            }
        )

    def _completion_events(
        self, llm: LLMService, stream: RequestStream, rid: str, opts: Options
    ) -> AsyncIterator[bytes]:
        base = {"id": rid, "object": "text_completion", "created": opts.created, "model": llm.name}
        offsets: dict[int, int] = {}  # choice index -> characters of text sent so far

        def chunk(out: SeqOutput) -> dict[str, Any] | None:
            lp = _completion_lp(llm, out.logprobs, offsets.get(out.index, 0)) if opts.logprobs else None
            offsets[out.index] = offsets.get(out.index, 0) + len(out.text)
            if not (out.text or out.finished or lp is not None):
                return None
            return {"index": out.index, "text": out.text, "logprobs": lp, "finish_reason": out.finish_reason}

        return _events(stream, base, opts, chunk)

    # -- /v1/chat/completions -----------------------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response | StreamingResponse:
        body = parse_json(request.body)
        llm = self._llm(model_name(body))
        messages = chat_messages(body)
        try:
            text = llm.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        except ValueError as exc:
            raise OpenAIError(str(exc), param="messages") from exc
        ids = llm.tokenizer.encode(text, add_special_tokens=False)
        max_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        max_tokens = _get(body, max_key, (int,), None)
        if max_tokens is None:
            max_tokens = max(1, llm.max_model_len - len(ids))
        want_lp = _get(body, "logprobs", (bool,), False)
        top = _get(body, "top_logprobs", (int,), 0)
        if top and not want_lp:
            raise OpenAIError("'top_logprobs' requires 'logprobs': true", param="top_logprobs")
        params = sampling_params(body, max_tokens, top if want_lp else None, max_key)
        opts = _options(body, want_lp)
        stream = llm.submit(ids, params)
        rid = "chatcmpl-" + stream.request_id
        if opts.stream:
            return StreamingResponse(self._chat_events(llm, stream, rid, opts, params.n))
        choices, cached = await _collect(stream, params.n, request)
        return _json(
            {
                "id": rid,
                "object": "chat.completion",
                "created": opts.created,
                "model": llm.name,
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": "".join(c.text)},
                        "logprobs": _chat_lp(llm, c.logprobs) if opts.logprobs else None,
                        "finish_reason": c.finish_reason,
                    }
                    for i, c in enumerate(choices)
                ],
                "usage": usage(len(ids), sum(c.num_tokens for c in choices), cached),
            }
        )

    def _chat_events(
        self, llm: LLMService, stream: RequestStream, rid: str, opts: Options, n: int
    ) -> AsyncIterator[bytes]:
        base = {"id": rid, "object": "chat.completion.chunk", "created": opts.created, "model": llm.name}
        first = [
            {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
            for i in range(n)
        ]

        def chunk(out: SeqOutput) -> dict[str, Any] | None:
            lp = _chat_lp(llm, out.logprobs) if opts.logprobs else None
            if not (out.text or out.finished or lp is not None):
                return None
            delta = {"content": out.text} if out.text else {}
            return {"index": out.index, "delta": delta, "logprobs": lp, "finish_reason": out.finish_reason}

        return _events(stream, base, opts, chunk, first)

    # -- /v1/models, /v1/embeddings -----------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        data = []
        for name in self._list_models():
            try:
                created = self._lookup_llm(name).created
            except NotFound:
                continue
            data.append({"id": name, "object": "model", "created": created, "owned_by": "quiver"})
        return _json({"object": "list", "data": data})

    async def embeddings(self, request: Request) -> Response:
        body = parse_json(request.body)
        name = model_name(body)
        try:
            embedder = self._embedder(self._lookup_embedder(name))
        except NotFound as exc:
            raise OpenAIError(f"The model '{name}' does not exist", param="model", code="model_not_found") from exc
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise OpenAIError("'input': expected a string or a non-empty list of strings", param="input")
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise OpenAIError("'encoding_format': expected 'float' or 'base64'", param="encoding_format")
        vectors, tokens = await embedder.embed(texts)
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(v, fmt)} for i, v in enumerate(vectors)]
        return _json(
            {"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        )

    def _embedder(self, found: Any) -> Embedder:
        """The data plane hands out served models; wrap one (once per loaded version) for embeddings."""
        if hasattr(found, "embed"):
            return found
        adapter = self._adapters.get(id(found))
        if adapter is None or getattr(adapter, "model", None) is not found:
            from quiver.generate.embeddings import ServedEmbedder

            adapter = self._adapters[id(found)] = ServedEmbedder(found)
        return adapter

    # -- V2 generate extension ----------------------------------------------------------------------------
    def _v2_submit(self, request: Request) -> tuple[LLMService, RequestStream]:
        llm = self._lookup_llm(request.path_params["model"])  # NotFound: 404
        body = parse_json(request.body)
        text = body.get("text_input")
        if not isinstance(text, str):
            raise OpenAIError("'text_input': expected a string", param="text_input")
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise OpenAIError("'parameters': expected an object", param="parameters")
        params = sampling_params(parameters, _get(parameters, "max_tokens", (int,), 16), None)
        if params.n != 1:
            raise OpenAIError("'n' must be 1 on the generate extension", param="n")
        return llm, llm.submit(llm.tokenizer.encode(text), params)

    async def v2_generate(self, request: Request) -> Response:
        llm, stream = self._v2_submit(request)
        choices, _ = await _collect(stream, 1, request)
        c = choices[0]
        return _json(
            {
                "model_name": llm.name,
                "model_version": "1",
                "text_output": "".join(c.text),
                "finish_reason": c.finish_reason,
                "prompt_tokens": stream.num_prompt_tokens,
                "completion_tokens": c.num_tokens,
            }
        )

    async def v2_generate_stream(self, request: Request) -> StreamingResponse:
        llm, stream = self._v2_submit(request)

        async def events() -> AsyncIterator[bytes]:
            try:
                async for out in stream:
                    if out.text or out.finished:
                        yield _sse(
                            {
                                "model_name": llm.name,
                                "model_version": "1",
                                "text_output": out.text,
                                "finish_reason": out.finish_reason,
                            }
                        )
            except QuiverError as exc:
                yield _sse({"error": exc.message})
            finally:
                stream.abort()

        return StreamingResponse(events())


def _options(body: dict[str, Any], logprobs: bool) -> Options:
    stream = _get(body, "stream", (bool,), False)
    stream_options = _get(body, "stream_options", (dict,), {})
    return Options(
        stream=stream,
        include_usage=bool(stream and stream_options.get("include_usage")),
        logprobs=logprobs,
        created=int(time.time()),
    )


async def _collect(stream: RequestStream, n: int, request: Request) -> tuple[list[_Choice], int]:
    """Gather a whole (non-streamed) answer; stop early if the client went away."""
    choices = [_Choice() for _ in range(n)]
    cached = 0
    try:
        async for out in stream:
            _add(choices[out.index], out)
            cached = out.num_cached_tokens
            if request.disconnected():
                break
    finally:
        stream.abort()
    return choices, cached


def _add(choice: _Choice, out: SeqOutput) -> None:
    choice.text.append(out.text)
    choice.logprobs.extend(out.logprobs)
    choice.num_tokens = out.num_output_tokens
    if out.finished:
        choice.finish_reason = out.finish_reason


def _token_strings(
    llm: LLMService, entries: list[tuple[int, float, list[tuple[int, float]]]]
) -> tuple[list[str], list[list[tuple[str, float]]]]:
    decode = llm.tokenizer.decode
    tokens = [decode([e[0]], False) for e in entries]
    top = [[(decode([t], False), lp) for t, lp in e[2]] for e in entries]
    return tokens, top


def _completion_lp(
    llm: LLMService, entries: list[tuple[int, float, list[tuple[int, float]]]], offset: int
) -> dict[str, Any]:
    tokens, top = _token_strings(llm, entries)
    return completion_logprobs(tokens, entries, top, offset)


def _chat_lp(llm: LLMService, entries: list[tuple[int, float, list[tuple[int, float]]]]) -> dict[str, Any]:
    tokens, top = _token_strings(llm, entries)
    return chat_logprobs(tokens, entries, top)


def _encode_vector(vector: list[float], fmt: str) -> list[float] | str:
    if fmt == "float":
        return [float(x) for x in vector]
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


async def _events(
    stream: RequestStream,
    base: dict[str, Any],
    opts: Options,
    chunk: Callable[[SeqOutput], dict[str, Any] | None],
    first: list[dict[str, Any]] | None = None,
) -> AsyncIterator[bytes]:
    """The SSE body shared by completions and chat: ``first`` choices, one event per ``chunk``, usage,
    ``[DONE]``; an error mid-stream becomes an error event. Aborting frees the KV blocks when the client
    went away (a no-op when the request finished)."""
    completion_tokens = cached = 0
    try:
        for choice in first or ():
            yield _sse({**base, "choices": [choice]})
        async for out in stream:
            if out.finished:
                completion_tokens += out.num_output_tokens
                cached = out.num_cached_tokens
            event = chunk(out)
            if event is not None:
                yield _sse({**base, "choices": [event]})
        if opts.include_usage:
            yield _sse({**base, "choices": [], "usage": usage(stream.num_prompt_tokens, completion_tokens, cached)})
        yield _DONE
    except QuiverError as exc:
        yield _sse({"error": error_object(exc)})
        yield _DONE
    finally:
        stream.abort()

"""The service and the HTTP routes in process (router + handlers, no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from quiver.errors import NotFound, QuiverError
from quiver.generate.routes import register
from quiver.generate.service import LLMService, load_llm
from quiver.http.router import Router
from quiver.http.types import Request, Response, StreamingResponse
from quiver.metrics import REGISTRY

NAME = "tiny"


class Client:
    """Calls routes the way the server does: match, run the handler, turn a QuiverError into its body."""

    def __init__(self, service: LLMService) -> None:
        self.service = service
        self.router = Router()

        def lookup(name: str) -> LLMService:
            if name != NAME:
                raise NotFound(f"no model {name!r}")
            return service

        def no_embedder(name: str) -> Any:
            raise NotFound(f"no model {name!r}")

        register(self.router, lookup, no_embedder, list_models=lambda: [NAME])

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        route, params = self.router.match(method, path)
        raw = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else b""
        request = Request(method, path, "", {}, raw, params)
        try:
            response = await route.handler(request)
        except QuiverError as exc:
            return exc.status, orjson.loads(route.error_body(exc))
        if isinstance(response, Response):
            return response.status, orjson.loads(response.body)
        return response.status, response

    async def events(self, path: str, body: Any) -> list[Any]:
        status, response = await self.call("POST", path, body)
        assert status == 200 and isinstance(response, StreamingResponse), response
        return parse_sse(b"".join([c async for c in response.chunks]))


def parse_sse(data: bytes) -> list[Any]:
    events = []
    for block in data.decode().split("\n\n"):
        if block:
            assert block.startswith("data: ")
            payload = block[len("data: ") :]
            events.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return events


def serve(model_dir: Path, parameters: dict[str, Any], test: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        service = load_llm(model_dir, {"name": NAME, "parameters": {"num_threads": 2, **parameters}})
        await service.start()
        try:
            await test(Client(service))
        finally:
            await service.stop(drain=False)

    asyncio.run(main())


def test_completion_stream_and_non_stream_agree_with_usage(gpt2_dir: Path) -> None:
    async def test(c: Client) -> None:
        req = {"model": NAME, "prompt": "Hello world", "max_tokens": 12, "temperature": 0, "ignore_eos": True}
        status, doc = await c.call("POST", "/v1/completions", req)
        assert status == 200 and doc["object"] == "text_completion"
        choice = doc["choices"][0]
        assert choice["finish_reason"] == "length" and choice["text"]
        n_prompt = len(c.service.tokenizer.encode("Hello world"))
        assert doc["usage"]["prompt_tokens"] == n_prompt and doc["usage"]["completion_tokens"] == 12
        assert doc["usage"]["total_tokens"] == n_prompt + 12
        events = await c.events("/v1/completions", {**req, "stream": True, "stream_options": {"include_usage": True}})
        assert events[-1] == "[DONE]"
        assert "".join(e["choices"][0]["text"] for e in events[:-2]) == choice["text"]
        assert events[-3]["choices"][0]["finish_reason"] == "length"
        assert events[-2]["usage"]["completion_tokens"] == 12 and events[-2]["choices"] == []

    serve(gpt2_dir, {}, test)


def test_chat_completion_n_seed_logprobs_and_stream(llama_dir: Path) -> None:
    async def test(c: Client) -> None:
        req = {
            "model": NAME,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}],
            "max_tokens": 8,
            "n": 2,
            "seed": 3,
            "temperature": 1.0,
            "logprobs": True,
            "top_logprobs": 2,
            "ignore_eos": True,
        }
        status, doc = await c.call("POST", "/v1/chat/completions", req)
        assert status == 200 and doc["object"] == "chat.completion" and len(doc["choices"]) == 2
        prompt = c.service.tokenizer.apply_chat_template(req["messages"])
        assert prompt == "<|system|>Be brief.<|end|><|user|>Hello!<|end|><|assistant|>"
        assert doc["usage"]["completion_tokens"] == 16
        content = doc["choices"][0]["logprobs"]["content"]
        assert len(content) == 8 and len(content[0]["top_logprobs"]) == 2
        assert all(item["logprob"] <= 0 for item in content)
        again = await c.call("POST", "/v1/chat/completions", req)
        assert [ch["message"] for ch in again[1]["choices"]] == [ch["message"] for ch in doc["choices"]]
        events = await c.events("/v1/chat/completions", {**req, "stream": True, "logprobs": False, "top_logprobs": 0})
        assert events[-1] == "[DONE]" and events[0]["choices"][0]["delta"]["role"] == "assistant"
        for i in range(2):
            text = "".join(
                e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"][0]["index"] == i
            )
            assert text == doc["choices"][i]["message"]["content"]  # same seed, same text

    serve(llama_dir, {}, test)


@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [
        ("/v1/completions", {"model": NAME, "prompt": "hi", "max_tokens": 1000}, None, None),
        ("/v1/completions", {"model": "nope", "prompt": "hi"}, "model", "model_not_found"),
        ("/v1/completions", {"model": NAME, "prompt": "hi", "temperature": 5}, "temperature", None),
        ("/v1/completions", {"model": NAME, "prompt": "hi", "top_p": 0}, "top_p", None),
        ("/v1/completions", {"model": NAME, "prompt": "hi", "n": "two"}, "n", None),
        ("/v1/completions", {"model": NAME, "prompt": 5}, "prompt", None),
        ("/v1/chat/completions", {"model": NAME, "messages": []}, "messages", None),
        (
            "/v1/chat/completions",
            {"model": NAME, "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            None,
        ),
        ("/v1/chat/completions", {"model": NAME, "messages": [{"role": "user"}]}, "messages[0].content", None),
        ("/v1/chat/completions", b"{not json", None, None),
    ],
)
def test_bad_requests_get_400_in_openai_shape(
    gpt2_dir: Path, path: str, body: Any, param: str | None, code: str | None
) -> None:
    async def test(c: Client) -> None:
        status, doc = await c.call("POST", path, body)
        assert status == 400, doc
        err = doc["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
        assert err["param"] == param and err["code"] == code and err["message"]

    serve(gpt2_dir, {"max_model_len": 128}, test)


def test_full_waiting_queue_answers_429(gpt2_dir: Path) -> None:
    async def test(c: Client) -> None:
        req = {"model": NAME, "prompt": "Hello", "max_tokens": 200, "ignore_eos": True, "stream": True}
        statuses = []
        for _ in range(5):
            status, response = await c.call("POST", "/v1/completions", req)
            statuses.append(status)
            if status == 429:
                assert response["error"]["code"] == "rate_limit_exceeded"
        assert statuses[:2] == [200, 200] and 429 in statuses

    serve(gpt2_dir, {"max_num_seqs": 1, "max_waiting": 2, "max_num_batched_tokens": 16}, test)


def test_client_disconnect_mid_stream_aborts_and_frees_blocks(gpt2_dir: Path) -> None:
    async def test(c: Client) -> None:
        engine = c.service.engine
        req = {"model": NAME, "prompt": "Hello world", "max_tokens": 200, "ignore_eos": True, "stream": True}
        status, response = await c.call("POST", "/v1/completions", req)
        assert status == 200
        chunks = response.chunks
        got = [await chunks.__anext__() for _ in range(3)]  # the stream is flowing
        assert all(g.startswith(b"data: ") for g in got)
        assert engine.block_manager.num_free < engine.config.num_kv_blocks
        await chunks.aclose()  # what the server does when the client goes away
        assert engine.block_manager.num_free == engine.config.num_kv_blocks
        assert not engine.has_work and not c.service._streams

    serve(gpt2_dir, {"kv_cache_blocks": 64}, test)


def test_v2_generate_models_and_metrics(gpt2_dir: Path) -> None:
    async def test(c: Client) -> None:
        body = {"text_input": "Hello world", "parameters": {"max_tokens": 6, "temperature": 0, "ignore_eos": True}}
        status, doc = await c.call("POST", f"/v2/models/{NAME}/generate", body)
        assert status == 200 and doc["model_name"] == NAME and doc["text_output"]
        assert doc["completion_tokens"] == 6
        events = await c.events(f"/v2/models/{NAME}/generate_stream", body)
        assert "".join(e["text_output"] for e in events) == doc["text_output"]
        status, doc = await c.call("POST", "/v2/models/nope/generate", body)
        assert status == 404
        status, doc = await c.call("GET", "/v1/models")
        assert [m["id"] for m in doc["data"]] == [NAME]
        text = REGISTRY.render().decode()
        for name in (
            "time_to_first_token_seconds",
            "inter_token_latency_seconds",
            "e2e_request_latency_seconds",
            "queue_time_seconds",
        ):
            assert f'quiver_llm_{name}_count{{model="{NAME}"}}' in text
        for name in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_ratio", "prefix_cache_hit_rate"):
            assert f'quiver_llm_{name}{{model="{NAME}"}}' in text

    serve(gpt2_dir, {}, test)

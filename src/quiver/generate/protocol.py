"""OpenAI and V2-generate wire formats: request bodies -> (prompt, SamplingParams), outputs -> JSON.

No torch here and no I/O: the routes call these, the engine never sees JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from quiver.errors import InvalidInput, QuiverError
from quiver.generate.params import SamplingParams

_ROLES = ("system", "developer", "user", "assistant", "tool")
_ERROR_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


class OpenAIError(InvalidInput):
    """A 400 naming the offending field (``param``) and a machine-readable ``code``."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def error_object(error: QuiverError) -> dict[str, Any]:
    code = getattr(error, "code", None)
    if code is None and error.status == 429:
        code = "rate_limit_exceeded"
    return {
        "message": error.message,
        "type": _ERROR_TYPES.get(error.status, "server_error"),
        "param": getattr(error, "param", None),
        "code": code,
    }


def openai_error_body(error: QuiverError) -> bytes:
    return orjson.dumps({"error": error_object(error)})


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OpenAIError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise OpenAIError("the request body must be a JSON object")
    return data


def model_name(body: dict[str, Any]) -> str:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise OpenAIError("'model' is required and must be a string", param="model")
    return name


@dataclass(slots=True)
class Options:
    """What shapes the response rather than the sampling."""

    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    created: int = field(default_factory=lambda: int(time.time()))


def _get(body: dict[str, Any], key: str, kinds: tuple[type, ...], default: Any) -> Any:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in kinds:
        raise OpenAIError(f"'{key}': expected {' or '.join(k.__name__ for k in kinds)}, got a boolean", key)
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise OpenAIError(f"'{key}': expected {names}, got {type(value).__name__}", param=key)
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return tuple(stop)
    raise OpenAIError("'stop': expected a string or a list of strings", param="stop")


def _unsupported(body: dict[str, Any], keys: dict[str, Any]) -> None:
    for key, neutral in keys.items():
        value = body.get(key)
        if value is not None and value != neutral:
            raise OpenAIError(f"'{key}' is not supported by this server (got {value!r})", param=key)


def sampling_params(
    body: dict[str, Any], max_tokens: int | None, logprobs: int | None, max_tokens_key: str = "max_tokens"
) -> SamplingParams:
    """Shared fields of both OpenAI endpoints (plus vLLM's extensions top_k, ignore_eos, stop_token_ids)."""
    _unsupported(body, {"presence_penalty": 0, "frequency_penalty": 0, "logit_bias": {}, "suffix": ""})
    n = _get(body, "n", (int,), 1)
    if _get(body, "best_of", (int,), n) != n:
        raise OpenAIError("'best_of' other than n is not supported", param="best_of")
    stop_ids = _get(body, "stop_token_ids", (list,), [])
    if not all(isinstance(t, int) for t in stop_ids):
        raise OpenAIError("'stop_token_ids': expected a list of integers", param="stop_token_ids")
    try:
        return SamplingParams(
            n=n,
            max_tokens=max_tokens if max_tokens is not None else 16,
            temperature=float(_get(body, "temperature", (int, float), 1.0)),
            top_p=float(_get(body, "top_p", (int, float), 1.0)),
            top_k=_get(body, "top_k", (int,), 0),
            seed=_get(body, "seed", (int,), None),
            stop=_stop(body),
            stop_token_ids=tuple(stop_ids),
            ignore_eos=_get(body, "ignore_eos", (bool,), False),
            logprobs=logprobs,
            skip_special_tokens=_get(body, "skip_special_tokens", (bool,), True),
        )
    except ValueError as exc:
        key = str(exc).split(":", 1)[0]
        raise OpenAIError(str(exc), param=max_tokens_key if key == "max_tokens" else key) from exc


def completion_prompt(body: dict[str, Any]) -> str | list[int]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return list(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(p, str | list) for p in prompt):
        raise OpenAIError("a batch of several prompts is not supported; send one prompt per request", "prompt")
    raise OpenAIError("'prompt': expected a string or a list of token ids", param="prompt")


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate ``messages``; content parts of type "text" are joined into one string."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OpenAIError("'messages': expected a non-empty list of messages", param="messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise OpenAIError(f"'{where}': expected an object with 'role' and 'content'", param=where)
        role = m.get("role")
        if role not in _ROLES:
            raise OpenAIError(f"'{where}.role': expected one of {list(_ROLES)}, got {role!r}", param=f"{where}.role")
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise OpenAIError(f"'{where}.content': only text parts are supported", param=f"{where}.content")
                parts.append(part["text"])
            content = "".join(parts)
        if content is None and role == "assistant":
            content = ""
        if not isinstance(content, str):
            raise OpenAIError(f"'{where}.content': expected a string or a list of text parts", f"{where}.content")
        out.append({**m, "role": role, "content": content})
    return out


def completion_logprobs(
    tokens: list[str],
    entries: list[tuple[int, float, list[tuple[int, float]]]],
    top: list[list[tuple[str, float]]],
    offset: int,
) -> dict[str, Any]:
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t)
    return {
        "tokens": tokens,
        "token_logprobs": [e[1] for e in entries],
        "top_logprobs": [dict(alts) for alts in top],
        "text_offset": offsets,
    }


def chat_logprobs(
    tokens: list[str], entries: list[tuple[int, float, list[tuple[int, float]]]], top: list[list[tuple[str, float]]]
) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": tok,
                "logprob": entry[1],
                "bytes": list(tok.encode()),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alts],
            }
            for tok, entry, alts in zip(tokens, entries, top, strict=True)
        ]
    }


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }

"""Request bodies, encoded once before a run: V2 inference (random data within the model's declared shapes,
or a file of bodies) and OpenAI-compatible completions / chat completions."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from quiver.errors import InvalidInput, NotFound
from quiver.loadtest.client import Endpoint, encode_request

_WORDS = [
    "the",
    "a",
    "model",
    "serves",
    "requests",
    "quickly",
    "under",
    "load",
    "with",
    "small",
    "batches",
    "and",
    "low",
    "latency",
]


@dataclass(frozen=True, slots=True)
class Workload:
    """What to send: the pre-encoded requests (cycled through) and whether responses stream."""

    requests: tuple[bytes, ...]
    streaming: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not self.requests:
            raise ValueError("a workload needs at least one request")


def fetch_json(endpoint: Endpoint, path: str, timeout_s: float = 10.0) -> Any:
    url = f"http://{endpoint.authority}{endpoint.prefix}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise NotFound(f"GET {url}: HTTP {exc.code}: {exc.read()[:200]!r}") from None


def model_path(model: str, version: str | None = None) -> str:
    return f"/v2/models/{model}" + (f"/versions/{version}" if version else "")


def parse_shape_overrides(items: list[str]) -> dict[str, list[int]]:
    """``["input_ids:1,128", "x:4,30"]`` -> ``{"input_ids": [1, 128], "x": [4, 30]}``."""
    out: dict[str, list[int]] = {}
    for item in items:
        name, sep, dims = item.partition(":")
        try:
            shape = [int(d) for d in dims.split(",")] if sep else []
        except ValueError:
            shape = []
        if not name or not shape or any(d < 0 for d in shape):
            raise InvalidInput(f"--shape {item!r}: expected NAME:D1,D2,... with sizes >= 0")
        out[name] = shape
    return out


def random_tensor(spec: dict[str, Any], shape: list[int], rng: np.random.Generator, int_high: int) -> dict[str, Any]:
    """One V2 input tensor with random data of the declared datatype."""
    datatype = spec["datatype"]
    size = int(np.prod(shape)) if shape else 1
    data: list[Any]
    if datatype in ("FP32", "FP64", "FP16", "BF16"):
        data = np.round(rng.standard_normal(size), 4).tolist()
    elif datatype == "BOOL":
        data = rng.integers(0, 2, size).astype(bool).tolist()
    elif datatype == "BYTES":
        data = [" ".join(rng.choice(_WORDS, 8)) for _ in range(size)]
    elif datatype.startswith(("INT", "UINT")):
        data = rng.integers(0, int_high, size).tolist()
    else:
        raise InvalidInput(f"input '{spec['name']}': cannot generate random data of datatype {datatype}")
    return {"name": spec["name"], "datatype": datatype, "shape": shape, "data": data}


def concrete_shape(spec: dict[str, Any], overrides: dict[str, list[int]], batch: int) -> list[int]:
    """The declared shape with -1 replaced: the first dimension by ``batch``, others by the override."""
    name = spec["name"]
    if name in overrides:
        return overrides[name]
    declared = [int(d) for d in spec["shape"]]
    shape = [batch if (i == 0 and d == -1) else d for i, d in enumerate(declared)]
    if any(d < 0 for d in shape):
        raise InvalidInput(
            f"input '{name}' has dynamic shape {declared}: give a concrete one with --shape {name}:D1,D2,..."
        )
    return shape


def v2_workload(
    endpoint: Endpoint,
    model: str,
    version: str | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    shapes: dict[str, list[int]] | None = None,
    batch: int = 1,
    distinct: int = 16,
    int_high: int = 100,
    seed: int = 0,
) -> Workload:
    """``distinct`` random V2 inference requests built from the model's metadata (fetched when not given)."""
    meta = metadata if metadata is not None else fetch_json(endpoint, model_path(model, version))
    inputs = meta.get("inputs") or []
    if not inputs:
        raise InvalidInput(f"model {model!r}: its metadata declares no inputs; give request bodies with --input-file")
    rng = np.random.default_rng(seed)
    path = model_path(model, version) + "/infer"
    bodies = []
    for _ in range(distinct):
        tensors = [random_tensor(s, concrete_shape(s, shapes or {}, batch), rng, int_high) for s in inputs]
        bodies.append(encode_request(endpoint, "POST", path, orjson.dumps({"inputs": tensors}), "application/json"))
    return Workload(tuple(bodies), description=f"V2 {model} random inputs, {distinct} distinct bodies")


def file_workload(endpoint: Endpoint, path: str, file: str | Path) -> Workload:
    """Request bodies from a file: one JSON body, a JSON list of bodies, or JSON lines."""
    text = Path(file).read_text()
    try:
        loaded = json.loads(text)
        bodies = loaded if isinstance(loaded, list) else [loaded]
    except json.JSONDecodeError:
        bodies = [json.loads(line) for line in text.splitlines() if line.strip()]
    encoded = tuple(encode_request(endpoint, "POST", path, orjson.dumps(b), "application/json") for b in bodies)
    return Workload(encoded, description=f"{len(encoded)} bodies from {file}")


def openai_workload(
    endpoint: Endpoint,
    model: str,
    *,
    chat: bool,
    stream: bool,
    prompt: str | None = None,
    prompt_words: int = 32,
    max_tokens: int = 32,
    distinct: int = 16,
    seed: int = 0,
) -> Workload:
    """Completions (``/v1/completions``) or chat completions (``/v1/chat/completions``) requests."""
    rng = np.random.default_rng(seed)
    path = "/v1/chat/completions" if chat else "/v1/completions"
    bodies = []
    for _ in range(distinct):
        text = prompt if prompt is not None else " ".join(rng.choice(_WORDS, prompt_words))
        body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "stream": stream, "temperature": 0}
        if chat:
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        bodies.append(encode_request(endpoint, "POST", path, orjson.dumps(body), "application/json"))
    kind = "chat completions" if chat else "completions"
    return Workload(tuple(bodies), streaming=stream, description=f"OpenAI {kind} for {model}, stream={stream}")

"""End to end: the real ``quiver serve`` process with an ``llm`` repository entry, the official ``openai``
client, unchanged, streaming and not."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from .conftest import build_gpt2

pytestmark = pytest.mark.e2e
MODEL = "tiny-gpt2"
EMBEDDER = "tiny-embedder"


def build_embedder(folder: Path, tokenizer_json: Path) -> np.ndarray:
    """A real ONNX embedding model: token table lookup, mean over the attention mask. Returns the table."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    vocab = len(json.loads(tokenizer_json.read_text())["model"]["vocab"])
    table = np.random.default_rng(0).standard_normal((vocab, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["emb"]),  # [B, S, 8]
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),  # [B, S]
        helper.make_node("Unsqueeze", ["m", "two"], ["m3"]),  # [B, S, 1]
        helper.make_node("Mul", ["emb", "m3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "one"], ["total"], keepdims=0),  # [B, 8]
        helper.make_node("ReduceSum", ["m3", "one"], ["count"], keepdims=0),  # [B, 1]
        helper.make_node("Div", ["total", "count"], ["embedding"]),
    ]
    ints = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "attention_mask")
    ]
    graph = helper.make_graph(
        nodes,
        "embedder",
        ints,
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 8])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "two"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (folder / "1").mkdir(parents=True)
    onnx.save_model(model, str(folder / "1" / "model.onnx"))
    (folder / "config.toml").write_text("max_batch_size = 8\n")
    (folder / "tokenizer.json").write_text(tokenizer_json.read_text())
    return table


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    build_gpt2(repo / MODEL / "1")
    build_embedder(repo / EMBEDDER, repo / MODEL / "1" / "tokenizer.json")
    return repo


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[str]:
    (repo / MODEL / "config.toml").write_text(
        'runtime = "llm"\n\n[parameters]\nkv_cache_blocks = 256\nblock_size = 16\nnum_threads = 2\nmax_waiting = 64\n'
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "quiver.cli", "serve", str(repo), "--port", "0", "--grpc-port", "-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = None
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        found = re.search(r"quiver: serving .* on (http://[\d.]+:\d+)", line)  # after the models loaded
        if found:
            url = found.group(1)
            break
        if proc.poll() is not None:
            break
    if url is None:
        proc.kill()
        pytest.fail("the server did not start:\n" + "".join(lines))
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def client(url: str):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_openai_client_completions_and_chat_stream_and_not(server: str) -> None:
    import openai

    c = client(server)
    assert [m.id for m in c.models.list().data] == [MODEL]
    done = c.completions.create(
        model=MODEL, prompt="Hello world", max_tokens=10, temperature=0, extra_body={"ignore_eos": True}
    )
    assert done.choices[0].finish_reason == "length" and done.usage is not None
    assert done.usage.completion_tokens == 10
    pieces = [
        chunk.choices[0].text
        for chunk in c.completions.create(
            model=MODEL,
            prompt="Hello world",
            max_tokens=10,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        if chunk.choices
    ]
    assert "".join(pieces) == done.choices[0].text

    messages = [{"role": "user", "content": "Hi there"}]
    chat = c.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=8, temperature=0, seed=1, extra_body={"ignore_eos": True}
    )
    assert chat.choices[0].message.role == "assistant" and chat.usage is not None
    stream = c.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == chat.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8

    with pytest.raises(openai.BadRequestError) as exc:
        c.completions.create(model=MODEL, prompt="Hello", max_tokens=100000)
    assert "maximum context length" in str(exc.value)
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="no-such-model", messages=messages)

    metrics = urllib.request.urlopen(server + "/metrics", timeout=10).read().decode()
    assert f'quiver_llm_time_to_first_token_seconds_count{{model="{MODEL}"}}' in metrics


def test_disconnect_mid_stream_frees_the_kv_blocks(server: str) -> None:
    c = client(server)
    stream = c.completions.create(
        model=MODEL, prompt="Hello", max_tokens=200, stream=True, extra_body={"ignore_eos": True}
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()  # drop the connection mid-stream
    deadline = time.monotonic() + 10
    usage = None
    while time.monotonic() < deadline:
        metrics = urllib.request.urlopen(server + "/metrics", timeout=10).read().decode()
        usage = float(re.search(rf'quiver_llm_kv_cache_usage_ratio{{model="{MODEL}"}} (\S+)', metrics).group(1))  # type: ignore[union-attr]
        running = float(re.search(rf'quiver_llm_num_requests_running{{model="{MODEL}"}} (\S+)', metrics).group(1))  # type: ignore[union-attr]
        if usage == 0 and running == 0:
            break
        time.sleep(0.1)
    assert usage == 0


def test_embeddings_through_the_data_plane(server: str, repo: Path) -> None:
    from tokenizers import Tokenizer

    c = client(server)
    texts = ["Hello world", "The quick brown fox"]
    table = build_embedder_table(repo)
    tok = Tokenizer.from_file(str(repo / EMBEDDER / "tokenizer.json"))
    expected = [table[tok.encode(t).ids].mean(axis=0) for t in texts]
    for fmt in ("float", "base64"):
        got = c.embeddings.create(model=EMBEDDER, input=texts, encoding_format=fmt)  # type: ignore[arg-type]
        assert [d.index for d in got.data] == [0, 1]
        for item, want in zip(got.data, expected, strict=True):
            vector = item.embedding
            if fmt == "base64":  # asked for explicitly, the client hands back the string
                vector = np.frombuffer(base64.b64decode(vector), dtype="<f4")  # type: ignore[arg-type]
            assert np.allclose(vector, want, atol=1e-5)
        assert got.usage.prompt_tokens == sum(len(tok.encode(t).ids) for t in texts)
    default = c.embeddings.create(  # the client asks for base64 by default and decodes it
        model=EMBEDDER, input="Hello world"
    )
    assert np.allclose(default.data[0].embedding, expected[0], atol=1e-5)


def build_embedder_table(repo: Path) -> np.ndarray:
    from onnx import load, numpy_helper

    model = load(str(repo / EMBEDDER / "1" / "model.onnx"))
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "table")

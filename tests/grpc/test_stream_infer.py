"""Triton's bidirectional ModelStreamInfer against `quiver serve`, with the public tritonclient.grpc client."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from quiver.zoo.tabular import random_mlp_onnx
from support import ServerProcess, write_model

pytestmark = pytest.mark.e2e

SLEEPY_MODEL = """
import time

class Model:
    def load(self, version_dir):
        pass

    def predict(self, inputs):
        time.sleep(0.3)
        return {"y": inputs["x"]}
"""

SLEEPY_CONFIG = """
runtime = "python"
max_batch_size = 1
[[inputs]]
name = "x"
datatype = "INT32"
shape = [-1, 1]
[[outputs]]
name = "y"
datatype = "INT32"
shape = [-1, 1]
"""

# Dynamic batching: a batch runs once 4 rows wait, or after 5 s. Requests that really are in flight
# together run as full batches; requests sent one after another would each wait the full 5 s.
BATCHED_CONFIG = "max_batch_size = 4\nmax_queue_delay_ms = 5000\n"
Result = tuple[Any, InferenceServerException | None]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    onnx_model = random_mlp_onnx((30, 32, 2), seed=5)
    write_model(root, "mlp", onnx_model, "max_batch_size = 16\n")
    write_model(root, "batched", onnx_model, BATCHED_CONFIG)
    (root / "sleepy" / "1").mkdir(parents=True)
    (root / "sleepy" / "1" / "model.py").write_text(SLEEPY_MODEL)
    (root / "sleepy" / "config.toml").write_text(SLEEPY_CONFIG)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo) as process:
        yield process
        assert process.stop() == 0
        output = process.output()
        # Bad requests, half-closed and cancelled streams are all ordinary: nothing is logged as a failure.
        assert "Traceback" not in output and "ERROR" not in output, output


@pytest.fixture
def client(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _features(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 30)).astype(np.float32)


def _mlp_input(x: np.ndarray) -> grpcclient.InferInput:
    return grpcclient.InferInput("features", list(x.shape), "FP32").set_data_from_numpy(x)


def _expected(repo: Path, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(str(repo / "mlp" / "1" / "model.onnx")).run(None, {"features": x})


def _stream(client: grpcclient.InferenceServerClient) -> queue.Queue[Result]:
    results: queue.Queue[Result] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    return results


def _collect(results: queue.Queue[Result], count: int, timeout: float = 20.0) -> list[Result]:
    """``count`` callback results, all within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    return [results.get(timeout=max(0.0, deadline - time.monotonic())) for _ in range(count)]


def test_stream_answers_every_request(client: grpcclient.InferenceServerClient, repo: Path) -> None:
    results = _stream(client)
    sent = {f"req-{n}": _features(n + 1, seed=n) for n in range(5)}
    for request_id, x in sent.items():
        client.async_stream_infer("mlp", [_mlp_input(x)], request_id=request_id, model_version="1")
    answers = _collect(results, len(sent))
    client.stop_stream()

    assert [error for _, error in answers] == [None] * len(sent)
    by_id = {result.get_response().id: result for result, _ in answers}
    assert by_id.keys() == sent.keys()
    for request_id, x in sent.items():
        probs, label = _expected(repo, x)
        np.testing.assert_allclose(by_id[request_id].as_numpy("probabilities"), probs, rtol=1e-5)
        np.testing.assert_array_equal(by_id[request_id].as_numpy("label"), label)
        assert by_id[request_id].get_response().model_name == "mlp"
    assert results.empty()


def test_bad_request_does_not_end_the_stream(client: grpcclient.InferenceServerClient) -> None:
    x = _features(1, seed=7)
    bad: dict[str, dict[str, Any]] = {
        "unknown": {"model_name": "ghost", "inputs": [_mlp_input(x)]},
        "short": {"model_name": "mlp", "inputs": [_mlp_input(np.ones((1, 29), np.float32))]},
        "no-output": {
            "model_name": "mlp",
            "inputs": [_mlp_input(x)],
            "outputs": [grpcclient.InferRequestedOutput("nope")],
        },
    }
    unary = {}
    for request_id, kwargs in bad.items():
        with pytest.raises(InferenceServerException) as err:
            client.infer(**kwargs)
        unary[request_id] = err.value.message()
    assert "unknown model 'ghost'" in unary["unknown"]
    assert "input 'features': expected shape [-1, 30], got [1, 29]" in unary["short"]

    results = _stream(client)
    client.async_stream_infer("mlp", [_mlp_input(x)], request_id="first")
    for request_id, kwargs in bad.items():
        client.async_stream_infer(**kwargs, request_id=request_id)
    answers = _collect(results, 4)
    client.async_stream_infer("mlp", [_mlp_input(x)], request_id="after")  # the stream still works
    answers += _collect(results, 1)
    client.stop_stream()

    ok = sorted(result.get_response().id for result, error in answers if error is None)
    assert ok == ["after", "first"]
    errors = sorted(error.message() for _, error in answers if error is not None)
    assert errors == sorted(unary.values())  # the unary ModelInfer's status details, word for word


def test_one_stream_is_batched(client: grpcclient.InferenceServerClient, repo: Path) -> None:
    def counts() -> tuple[int, int]:
        stats = client.get_inference_statistics("batched").model_stats[0]
        return stats.inference_count, stats.execution_count

    inferences, executions = counts()
    results = _stream(client)
    sent = {f"row-{n}": _features(1, seed=100 + n) for n in range(8)}
    for request_id, x in sent.items():
        client.async_stream_infer("batched", [_mlp_input(x)], request_id=request_id)
    answers = _collect(results, len(sent), timeout=15.0)  # one request at a time would take 8 x 5 s
    client.stop_stream()

    assert all(error is None for _, error in answers)
    for result, _ in answers:
        probs, _label = _expected(repo, sent[result.get_response().id])
        np.testing.assert_allclose(result.as_numpy("probabilities"), probs, rtol=1e-5)
    assert counts() == (inferences + 8, executions + 2)  # two full batches of four


def _sleepy(request_id: str, value: int = 1) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="sleepy", id=request_id)
    request.inputs.add(name="x", datatype="INT32", shape=[1, 1]).contents.int_contents.append(value)
    return request


def test_half_close_finishes_in_flight_requests(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    """The client sends everything and closes its side at once; every answer still comes, then status OK."""
    bad = service_pb2.ModelInferRequest(model_name="sleepy", id="bad")  # no inputs
    requests = [_sleepy("a", 1), bad, _sleepy("b", 2), _sleepy("c", 3)]
    call = stub.ModelStreamInfer(iter(requests), timeout=20)
    answers = list(call)
    assert call.code() == grpc.StatusCode.OK
    assert len(answers) == 4
    failed = [a for a in answers if a.error_message]
    assert [(a.error_message, a.infer_response.id) for a in failed] == [
        ("request must have a non-empty 'inputs' list", "bad")
    ]
    assert not failed[0].infer_response.outputs and failed[0].infer_response.model_name == "sleepy"
    values = {
        a.infer_response.id: list(a.infer_response.outputs[0].contents.int_contents) for a in answers if a not in failed
    }
    assert values == {"a": [1], "b": [2], "c": [3]}


def test_cancelled_stream(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, client: grpcclient.InferenceServerClient
) -> None:
    """The client cancels with a request in flight: the call ends CANCELLED and the server serves on."""
    release = threading.Event()

    def requests() -> Iterator[service_pb2.ModelInferRequest]:
        yield _sleepy("cancelled")
        release.wait(10)  # keep the request side open

    call = stub.ModelStreamInfer(requests(), timeout=20)
    try:
        time.sleep(0.1)  # the request is running (0.3 s)
        call.cancel()
        with pytest.raises(grpc.RpcError) as err:
            list(call)
        assert err.value.code() == grpc.StatusCode.CANCELLED
    finally:
        release.set()

    results = _stream(client)
    client.async_stream_infer("sleepy", [_int32(5)], request_id="later")
    [(result, error)] = _collect(results, 1)
    client.stop_stream()
    assert error is None and result.as_numpy("y").tolist() == [[5]]


def _int32(value: int) -> grpcclient.InferInput:
    return grpcclient.InferInput("x", [1, 1], "INT32").set_data_from_numpy(np.array([[value]], np.int32))

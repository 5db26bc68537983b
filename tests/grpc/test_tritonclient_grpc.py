"""The public Triton gRPC client works unchanged against `quiver serve`: raw and typed tensors, extensions, errors."""

from __future__ import annotations

import concurrent.futures
import socket
import subprocess
import sys
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

ECHO_MODEL = """
import time
import numpy as np

class Model:
    def load(self, version_dir):
        pass

    def predict(self, inputs):
        time.sleep({delay})
        return {{"s_out": inputs["s"], "i_out": inputs["i"]}}
"""

ECHO_CONFIG = """
runtime = "python"
max_batch_size = 1
queue_capacity = {capacity}
[[inputs]]
name = "s"
datatype = "BYTES"
shape = [-1, 2]
[[inputs]]
name = "i"
datatype = "INT16"
shape = [-1, 2]
[[outputs]]
name = "s_out"
datatype = "BYTES"
shape = [-1, 2]
[[outputs]]
name = "i_out"
datatype = "INT16"
shape = [-1, 2]
"""


def _write_echo(repo: Path, name: str, delay: float = 0.0, capacity: int = 64) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.py").write_text(ECHO_MODEL.format(delay=delay))
    (repo / name / "config.toml").write_text(ECHO_CONFIG.format(capacity=capacity))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    write_model(root, "mlp", random_mlp_onnx((30, 32, 2), seed=3), "max_batch_size = 16\n")
    _write_echo(root, "echo")
    _write_echo(root, "slow", delay=0.4, capacity=1)  # one instance, one queue slot
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo) as process:
        yield process
        assert process.stop() == 0, process.output()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    """tritonclient's own generated stub, for what InferenceServerClient cannot send (typed contents)."""
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _features(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 30)).astype(np.float32)


def _expected(repo: Path, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(str(repo / "mlp" / "1" / "model.onnx")).run(None, {"features": x})


def _mlp_input(x: np.ndarray) -> grpcclient.InferInput:
    return grpcclient.InferInput("features", list(x.shape), "FP32").set_data_from_numpy(x)


def test_health_and_metadata(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mlp")
    assert client.is_model_ready("mlp", "1")
    assert not client.is_model_ready("nope")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "quiver" and "model_repository" in server["extensions"]
    meta = client.get_model_metadata("mlp", as_json=True)
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": ["-1", "30"]}]
    assert {o["name"] for o in meta["outputs"]} == {"probabilities", "label"}
    assert meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"


def test_model_config(client: grpcclient.InferenceServerClient) -> None:
    config = client.get_model_config("mlp").config  # parsed by tritonclient's own model_config.proto
    assert config.max_batch_size == 16
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("features", 11, [30])]  # TYPE_FP32
    assert config.instance_group[0].count == 1
    echo = client.get_model_config("echo").config
    assert echo.input[0].data_type == 13  # BYTES is Triton's TYPE_STRING


def test_infer_raw_matches_onnxruntime(client: grpcclient.InferenceServerClient, repo: Path) -> None:
    x = _features(3)
    result = client.infer("mlp", [_mlp_input(x)], request_id="abc", model_version="1")
    probs, label = _expected(repo, x)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probs, rtol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("abc", "mlp", "1")
    assert len(response.raw_output_contents) == 2


def test_infer_output_subset(client: grpcclient.InferenceServerClient) -> None:
    outputs = [grpcclient.InferRequestedOutput("label")]
    result = client.infer("mlp", [_mlp_input(_features(2))], outputs=outputs)
    assert result.as_numpy("probabilities") is None
    assert result.as_numpy("label").shape == (2,)


def test_infer_typed_contents(stub: service_pb2_grpc.GRPCInferenceServiceStub, repo: Path) -> None:
    x = _features(2, seed=1)
    request = service_pb2.ModelInferRequest(model_name="mlp", id="typed")
    tensor = request.inputs.add(name="features", datatype="FP32", shape=[2, 30])
    tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
    response = stub.ModelInfer(request, timeout=10)
    assert not response.raw_output_contents  # answered in kind
    outputs = {o.name: o for o in response.outputs}
    probs, label = _expected(repo, x)
    np.testing.assert_allclose(
        np.array(outputs["probabilities"].contents.fp32_contents).reshape(2, 2), probs, rtol=1e-5
    )
    assert list(outputs["label"].contents.int64_contents) == label.tolist()
    assert response.id == "typed"


def test_bytes_and_int16(client: grpcclient.InferenceServerClient, stub: Any) -> None:
    s = np.array([[b"\x00\xff", "ünï".encode()]], dtype=object)
    i = np.array([[-32768, 32767]], dtype=np.int16)
    inputs = [
        grpcclient.InferInput("s", [1, 2], "BYTES").set_data_from_numpy(s),
        grpcclient.InferInput("i", [1, 2], "INT16").set_data_from_numpy(i),
    ]
    result = client.infer("echo", inputs)
    assert result.as_numpy("s_out").tolist() == s.tolist()
    np.testing.assert_array_equal(result.as_numpy("i_out"), i)

    request = service_pb2.ModelInferRequest(model_name="echo")
    request.inputs.add(name="s", datatype="BYTES", shape=[1, 2]).contents.bytes_contents.extend([b"a", b"b"])
    request.inputs.add(name="i", datatype="INT16", shape=[1, 2]).contents.int_contents.extend([7, -7])
    outputs = {o.name: o for o in stub.ModelInfer(request, timeout=10).outputs}
    assert list(outputs["s_out"].contents.bytes_contents) == [b"a", b"b"]
    assert list(outputs["i_out"].contents.int_contents) == [7, -7]

    request.inputs[1].contents.int_contents[0] = 40000
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "value out of range for INT16 [-32768, 32767]: 40000" in err.value.details()


def _error(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as err:
        call()
    return err.value


def test_bad_input_gets_status_and_message(client: grpcclient.InferenceServerClient, stub: Any) -> None:
    x = _features(1)
    unknown = _error(lambda: client.infer("ghost", [_mlp_input(x)]))
    assert unknown.status() == "StatusCode.NOT_FOUND" and "unknown model 'ghost'" in unknown.message()

    short = _mlp_input(np.ones((1, 29), np.float32)).set_shape([1, 29])
    shape = _error(lambda: client.infer("mlp", [short]))
    assert shape.status() == "StatusCode.INVALID_ARGUMENT"
    assert "input 'features': expected shape [-1, 30], got [1, 29]" in shape.message()

    mismatch = _mlp_input(x).set_shape([1, 31])  # 120 bytes of data, a shape that needs 124
    size = _error(lambda: client.infer("mlp", [mismatch]))
    assert size.status() == "StatusCode.INVALID_ARGUMENT"
    assert "raw_input_contents[0] is 120 bytes, but shape and FP32 need 124" in size.message()

    output = _error(lambda: client.infer("mlp", [_mlp_input(x)], outputs=[grpcclient.InferRequestedOutput("nope")]))
    assert output.status() == "StatusCode.INVALID_ARGUMENT" and "has no output 'nope'" in output.message()

    version = _error(lambda: client.infer("mlp", [_mlp_input(x)], model_version="9"))
    assert version.status() == "StatusCode.NOT_FOUND"

    request = service_pb2.ModelInferRequest(model_name="mlp", raw_input_contents=[b"", b""])
    request.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents has 2 entries but the request has 1 inputs" in err.value.details()

    assert client.is_server_ready()  # and the server serves on


def test_statistics(client: grpcclient.InferenceServerClient) -> None:
    client.infer("mlp", [_mlp_input(_features(1))])
    stats = client.get_inference_statistics("mlp").model_stats
    assert [(s.name, s.version) for s in stats] == [("mlp", "1")]
    assert stats[0].inference_stats.success.count >= 1 and stats[0].inference_stats.success.ns > 0
    assert stats[0].execution_count >= 1


def _slow(stub: Any, timeout: float) -> grpc.StatusCode:
    request = service_pb2.ModelInferRequest(model_name="slow", raw_input_contents=[b"\x01\x00\x00\x00a" * 2, b"\0" * 4])
    request.inputs.add(name="s", datatype="BYTES", shape=[1, 2])
    request.inputs.add(name="i", datatype="INT16", shape=[1, 2])
    try:
        stub.ModelInfer(request, timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_deadline_and_load_shedding(client: grpcclient.InferenceServerClient, stub: Any) -> None:
    """slow: one instance busy for 0.4 s per request, one queue slot."""
    before = client.get_inference_statistics("slow").model_stats[0].execution_count
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        running = pool.submit(_slow, stub, 10.0)
        time.sleep(0.1)
        expiring = pool.submit(_slow, stub, 0.1)  # its gRPC deadline passes while it waits in the queue
        time.sleep(0.02)
        shed = pool.submit(_slow, stub, 10.0)  # the queue is full: answered at once
        assert shed.result() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert expiring.result() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert running.result() == grpc.StatusCode.OK
    time.sleep(0.5)  # the expired request would have run by now
    assert client.get_inference_statistics("slow").model_stats[0].execution_count == before + 1


def test_repository_index_unload_load(client: grpcclient.InferenceServerClient) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {(m["name"], m["state"]) for m in index} >= {("mlp", "READY"), ("echo", "READY")}
    client.unload_model("echo")
    assert not client.is_model_ready("echo")
    client.load_model("echo")
    assert client.is_model_ready("echo")
    missing = _error(lambda: client.unload_model("ghost"))
    assert missing.status() == "StatusCode.NOT_FOUND"


def test_grpc_port_busy_or_off(repo: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command = [sys.executable, "-m", "quiver.cli", "serve", str(repo), "--port", "0", "--grpc-port", str(port)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"quiver serve: cannot listen for gRPC on 127.0.0.1:{port}" in done.stderr
    assert "-1 to turn gRPC off" in done.stderr

    with ServerProcess(repo, "--grpc-port", "-1") as process:  # the last --grpc-port wins
        with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
            grpcclient.InferenceServerClient(f"127.0.0.1:{process.grpc_port}").is_server_live(client_timeout=2)
        assert process.stop() == 0

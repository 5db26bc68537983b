"""The public Triton client works unchanged against `quiver serve`: JSON and binary tensors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from quiver.zoo.tabular import random_mlp_onnx
from support import ServerProcess, write_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    write_model(root, "mlp", random_mlp_onnx((30, 32, 2), seed=3), "max_batch_size = 16\n")
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo) as process:
        yield process
        assert process.stop() == 0


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")


def _expected(repo: Path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(repo / "mlp" / "1" / "model.onnx"))
    return session.run(None, {"features": x})


def test_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mlp")
    assert not client.is_model_ready("nope")
    meta = client.get_model_metadata("mlp")
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 30]}]
    assert {o["name"] for o in meta["outputs"]} == {"probabilities", "label"}
    assert client.get_server_metadata()["name"] == "quiver"
    assert client.get_model_config("mlp")["max_batch_size"] == 16


@pytest.mark.parametrize("binary", [False, True])
def test_infer_matches_onnxruntime(client: httpclient.InferenceServerClient, repo: Path, binary: bool) -> None:
    x = np.random.default_rng(0).standard_normal((3, 30)).astype(np.float32)
    inp = httpclient.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        httpclient.InferRequestedOutput("label", binary_data=binary),
    ]
    result = client.infer("mlp", [inp], outputs=outputs, request_id="abc")
    probs, label = _expected(repo, x)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probs, rtol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    assert result.get_response()["id"] == "abc"


def test_output_subset_and_version(client: httpclient.InferenceServerClient) -> None:
    x = np.ones((1, 30), np.float32)
    inp = httpclient.InferInput("features", [1, 30], "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    result = client.infer("mlp", [inp], model_version="1", outputs=[httpclient.InferRequestedOutput("label")])
    assert result.as_numpy("probabilities") is None
    assert result.as_numpy("label").shape == (1,)


def test_errors_reach_the_client(client: httpclient.InferenceServerClient) -> None:
    inp = httpclient.InferInput("features", [1, 29], "FP32")
    inp.set_data_from_numpy(np.ones((1, 29), np.float32))
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 30\], got \[1, 29\]"):
        client.infer("mlp", [inp])
    with pytest.raises(InferenceServerException, match="unknown model 'ghost'"):
        client.infer("ghost", [inp])

"""The README's examples run against the built-in example repository, so they never rot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import ServerProcess

README = (Path(__file__).parent.parent / "README.md").read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    home = tmp_path_factory.mktemp("quiver-home")
    with ServerProcess(None, env={"QUIVER_HOME": str(home)}) as process:
        yield process


def test_python_example(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        block = block.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        block = block.replace("127.0.0.1:8001", f"127.0.0.1:{server.grpc_port}")
        exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "[" in printed  # it printed the probabilities and labels


def test_curl_examples(server: ServerProcess) -> None:
    block = re.search(r"```sh\ncurl(.*?)```", README, re.S)
    assert block is not None
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = "curl" + block.group(1).replace("localhost:8000", f"localhost:{server.port}")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    meta, result = (json.loads(part) for part in out.replace("}{", "}\n{").splitlines())
    assert meta["name"] == "fraud"
    assert result["outputs"][0]["shape"] == [1, 2]

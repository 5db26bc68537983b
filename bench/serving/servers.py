"""How each server of the benchmark is configured, started, checked and stopped.

A ``ServerSpec`` is one configuration of one server for one model. ``running(spec, ...)`` lays out what
that server needs (a Quiver repository, an MLServer folder, LitServe arguments), starts it bound to
127.0.0.1 in its own process group, waits until the model answers the benchmark payload correctly, yields
the live process, and stops the whole group afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bench.serving.models import BenchModel, write_quiver_repo

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).with_name("peers")


@dataclass(frozen=True)
class ServerSpec:
    server: str  # "quiver" | "mlserver" | "litserve"
    config: str  # short label shown in the table
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    concurrency: tuple[int, ...] = (1, 8, 64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def infer_url(port: int, model: str) -> str:
    return f"http://127.0.0.1:{port}/v2/models/{model}/infer"


@contextmanager
def running(spec: ServerSpec, model: BenchModel, work: Path, log: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start ``spec``'s server, wait until it answers ``model``'s payload correctly; yield (process, url)."""
    port = free_port()
    folder = work / f"{spec.server}-{spec.config}-{spec.model}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    cmd, env = _LAUNCHERS[spec.server](spec, model, folder, port)
    url = infer_url(port, spec.model)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd, cwd=folder, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_until_correct(proc, url, model, timeout_s=180.0)
        yield proc, url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group (it and the workers it spawned), then SIGKILL what is left."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived their parent
    proc.wait()


def check_response(body: bytes, model: BenchModel, expected: np.ndarray) -> None:
    """The V2 response carries ``model.output`` with the in-process result (raises ValueError if not)."""
    response = json.loads(body)
    outputs = {o["name"]: o for o in response.get("outputs", [])}
    if model.output not in outputs:
        raise ValueError(f"response has no output {model.output!r}: {body[:200]!r}")
    out = outputs[model.output]
    got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        raise ValueError(f"output {model.output!r} differs from in-process ONNX Runtime: {got} vs {expected}")


def _wait_until_correct(proc: subprocess.Popen, url: str, model: BenchModel, timeout_s: float) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
    (expected,) = session.run([model.output], model.feeds)
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        request = urllib.request.Request(
            url, data=model.payload, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                check_response(response.read(), model, expected)
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last_error = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout_s:.0f}s: {last_error}")


# --- launchers: spec -> (command, extra environment) -------------------------------------------------


def _quiver(spec: ServerSpec, model: BenchModel, folder: Path, port: int) -> tuple[list[str], dict[str, str]]:
    repo = write_quiver_repo(folder / "repository", {model.name: model}, {model.name: spec.options})
    cli = ROOT / ".venv" / "bin" / "quiver"
    head = [str(cli)] if cli.exists() else [str(ROOT / ".venv" / "bin" / "python"), "-m", "quiver.cli"]
    env = {"PYTHONPATH": str(ROOT / "src")} if not cli.exists() else {}
    return [*head, "serve", str(repo), "--host", "127.0.0.1", "--port", str(port)], env


def _mlserver(spec: ServerSpec, model: BenchModel, folder: Path, port: int) -> tuple[list[str], dict[str, str]]:
    o = spec.options
    settings = {
        "debug": False,  # no access log, INFO logging
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "metrics_endpoint": None,  # no Prometheus middleware or metrics server
        "gzip_enabled": False,
        "parallel_workers": o.get("workers", 0),
    }
    model_settings: dict[str, Any] = {
        "name": model.name,
        "implementation": "mlserver_onnx.OnnxRuntime",
        "parameters": {"uri": str(model.onnx_path), "extra": {"threads": o.get("threads", 1)}},
    }
    if o.get("max_batch_size"):
        model_settings["max_batch_size"] = o["max_batch_size"]
        model_settings["max_batch_time"] = o["max_batch_time"]
    (folder / "settings.json").write_text(json.dumps(settings, indent=1))
    (folder / model.name).mkdir()
    (folder / model.name / "model-settings.json").write_text(json.dumps(model_settings, indent=1))
    cmd = [str(ROOT / ".venv-mlserver" / "bin" / "mlserver"), "start", str(folder)]
    return cmd, {"PYTHONPATH": str(PEERS), "MLSERVER_METRICS_DIR": str(folder / ".metrics")}


def _litserve(spec: ServerSpec, model: BenchModel, folder: Path, port: int) -> tuple[list[str], dict[str, str]]:
    o = spec.options
    cmd = [
        str(ROOT / ".venv-litserve" / "bin" / "python"),
        str(PEERS / "litserve_v2.py"),
        "--model", model.name,
        "--onnx", str(model.onnx_path),
        "--port", str(port),
        "--threads", str(o.get("threads", 1)),
        "--workers", str(o.get("workers", 1)),
        "--max-batch-size", str(o.get("max_batch_size", 1)),
        "--batch-timeout", str(o.get("batch_timeout", 0.0)),
    ]  # fmt: skip
    return cmd, {}


_LAUNCHERS = {"quiver": _quiver, "mlserver": _mlserver, "litserve": _litserve}

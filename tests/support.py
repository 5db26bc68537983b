"""Test helpers shared across the tree: a real server in a thread, and model repository writers."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import onnx

from quiver.server.app import App, build_app
from quiver.settings import Settings


class ServerThread:
    """The real HTTP server and model manager on an event loop in a background thread.

    >>> with ServerThread(repo) as server:          # doctest: +SKIP
    ...     urllib.request.urlopen(server.url + "/v2/health/ready")
    """

    def __init__(self, repository: Path, **settings: Any) -> None:
        self.settings = Settings.load(env={}, host="127.0.0.1", port=0, **settings)
        self.repository = repository
        self.loop = asyncio.new_event_loop()
        self.app: App | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        self.app = build_app(self.settings, self.repository)
        await self.app.http.start(self.settings.host, 0)
        await self.app.manager.load_all()

    async def _stop(self) -> None:
        assert self.app is not None
        await self.app.http.shutdown(5)
        await self.app.manager.close()

    @property
    def url(self) -> str:
        assert self.app is not None
        return f"http://127.0.0.1:{self.app.http.ports[0]}"

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


def write_model(repo: Path, name: str, model: onnx.ModelProto, config: str = "", version: int = 1) -> Path:
    """Lay out ``<repo>/<name>/<version>/model.onnx`` (+ config.toml when given)."""
    folder = repo / name
    (folder / str(version)).mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / str(version) / "model.onnx"))
    if config:
        (folder / "config.toml").write_text(config)
    return folder


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``quiver serve`` as a real child process, as users run it. Waits until it reports ready."""

    def __init__(self, repository: Path | None, *args: str, env: dict[str, str] | None = None) -> None:
        import os
        import subprocess
        import sys

        self.port = free_port()
        self.grpc_port = free_port()  # never the default 8001: servers in parallel tests must not collide
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "quiver.cli", "serve"]
        if repository is not None:
            command.append(str(repository))
        command += ["--port", str(self.port), "--grpc-port", str(self.grpc_port), *args]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            text=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> ServerProcess:
        import time
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout}s")

    def output(self) -> str:
        assert self.process.stdout is not None
        if self.process.poll() is None:
            return ""
        return self.process.stdout.read()

    def stop(self, timeout: float = 30.0) -> int:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def __enter__(self) -> ServerProcess:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

"""Assemble and run the server: repository -> manager -> data plane -> REST routes -> HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from quiver.grpc import start_grpc_server
from quiver.http.router import Router
from quiver.http.server import HttpServer
from quiver.server.dataplane import DataPlane
from quiver.server.manager import ModelManager
from quiver.server.rest import RestApi
from quiver.settings import Settings

log = logging.getLogger("quiver.server")


@dataclass
class App:
    settings: Settings
    manager: ModelManager
    dataplane: DataPlane
    router: Router
    http: HttpServer


def build_app(settings: Settings, repository: Path) -> App:
    manager = ModelManager(repository)
    dataplane = DataPlane(manager, settings.strict_readiness)
    router = Router()
    RestApi(dataplane).register(router)
    _register_generative_routes(router, manager)
    http = HttpServer(router, settings.max_body_bytes, settings.access_log)
    return App(settings, manager, dataplane, router, http)


def _register_generative_routes(router: Router, manager: ModelManager) -> None:
    """The OpenAI-compatible routes come with the ``llm`` extra; without torch the core serves on."""
    if importlib.util.find_spec("torch") is None:
        return
    try:
        from quiver.generate import routes
    except ImportError:
        return
    routes.register(router, manager.get_generative, manager.get, manager.generative_names)


async def serve(settings: Settings, repository: Path, ready: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT; then stop accepting, finish in-flight requests, and return 0."""
    app = build_app(settings, repository)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await app.http.start(settings.host, settings.port)
    log.info("listening on http://%s:%s", settings.host, app.http.ports[0] if app.http.ports else settings.port)
    grpc_server = await start_grpc_server(app.dataplane, settings)  # None when grpc_port < 0
    await app.manager.load_all()
    for row in app.manager.index():
        log.info("model %s version %s: %s %s", row["name"], row.get("version", "-"), row["state"], row["reason"])
    poller = loop.create_task(_poll(app, settings.poll_interval_s)) if settings.poll_interval_s else None
    print(f"quiver: serving {repository} on http://{settings.host}:{app.http.ports[0]}", flush=True)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down: finishing in-flight requests")
    app.dataplane.stopping = True
    if poller is not None:
        poller.cancel()
    await asyncio.gather(
        app.http.shutdown(settings.shutdown_timeout_s),
        *([grpc_server.stop(settings.shutdown_timeout_s)] if grpc_server else []),
    )
    await app.manager.close()
    return 0


async def _poll(app: App, interval: float) -> None:
    """Hot reload: reload a model when any file under its folder changes (mtime or size)."""
    seen: dict[str, tuple[tuple[str, float, int], ...]] = {}
    while True:
        for name in app.manager.discover():
            stamp = _stamp(app.manager.repository / name)
            if name in seen and seen[name] != stamp:
                log.info("model %s changed on disk: reloading", name)
                try:
                    await app.manager.load(name)
                except Exception as exc:
                    log.error("reload of %s failed: %s", name, exc)
            seen[name] = stamp
        await asyncio.sleep(interval)


def _stamp(folder: Path) -> tuple[tuple[str, float, int], ...]:
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            st = path.stat()
            entries.append((str(path.relative_to(folder)), st.st_mtime, st.st_size))
    return tuple(entries)

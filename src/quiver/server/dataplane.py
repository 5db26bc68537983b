"""The data plane: every operation the transports expose, in protocol-neutral terms.

REST (and any future transport) only converts wire formats and calls these methods; no business logic
lives in a transport.
"""

from __future__ import annotations

from typing import Any

from quiver import __version__
from quiver.protocol.types import InferRequest, InferResponse
from quiver.server.manager import ModelManager

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "schedule_policy", "generate"]


class DataPlane:
    def __init__(self, manager: ModelManager, strict_readiness: bool = False) -> None:
        self.manager = manager
        self.strict_readiness = strict_readiness
        self.stopping = False

    # ---- health

    def live(self) -> bool:
        return True

    def ready(self) -> tuple[bool, dict[str, Any]]:
        failed = [r for r in self.manager.index() if r["state"] == "UNAVAILABLE"]
        ready = self.manager.loaded_once and not self.stopping and not (self.strict_readiness and failed)
        body: dict[str, Any] = {"ready": ready}
        if failed:
            body["unavailable_models"] = failed
        return ready, body

    # ---- metadata

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "quiver", "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        if not version and name in self.manager.generative_names():
            return self.manager.get_generative(name).metadata()
        model = self.manager.get(name, version)
        meta = model.metadata()
        if not version:
            meta["versions"] = [str(v) for v in self.manager.versions(name)]
        return meta

    def model_ready(self, name: str, version: str | None) -> bool:
        return self.manager.is_ready(name, version)

    def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        return self.manager.get(name, version).triton_config()

    def statistics(self, name: str | None, version: str | None) -> dict[str, Any]:
        if name:
            models = [self.manager.get(name, version)] if version else self.manager.served_versions(name)
        else:
            models = self.manager.ready_models()
        return {"model_stats": [m.statistics() for m in models]}

    # ---- inference

    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        return await self.manager.get(name, version).infer(request)

    # ---- repository

    def repository_index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        return self.manager.index(ready_only)

    async def load(self, name: str) -> None:
        await self.manager.load(name)

    async def unload(self, name: str) -> None:
        await self.manager.unload(name)

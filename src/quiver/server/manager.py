"""The model manager: loads versions from the repository, routes to them, reloads and unloads safely.

Reloading builds the new versions first, then switches routing in one step on the event loop, then drains
the old versions (their queued and running requests finish) before closing them, so no in-flight request
fails. A model that fails to load is recorded with its reason and never takes the others down; a failed
reload keeps the previously loaded versions serving.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from quiver.errors import ModelLoadError, NotFound, QuiverError, Unavailable
from quiver.repository.config import find_config_file, list_versions, load_config
from quiver.server.model import ServedModel

log = logging.getLogger("quiver.server")

READY, LOADING, UNAVAILABLE, UNLOADING = "READY", "LOADING", "UNAVAILABLE", "UNLOADING"


class GenerativeService(Protocol):
    """What an ``llm`` runtime model provides (see ``quiver.generate.service``)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self, drain: bool) -> None: ...

    def metadata(self) -> dict[str, Any]: ...


@dataclass(slots=True)
class VersionStatus:
    state: str
    reason: str = ""


class ModelManager:
    """Lifecycle: ``await load_all()`` -> ``get()`` per request, ``load()``/``unload()`` -> ``await close()``."""

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        self._models: dict[str, dict[int, ServedModel]] = {}
        self._generative: dict[str, GenerativeService] = {}
        self._status: dict[str, dict[int, VersionStatus]] = {}
        self._errors: dict[str, str] = {}  # model-level failures (bad config, no versions)
        self._locks: dict[str, asyncio.Lock] = {}
        self.loaded_once = False

    # ------------------------------------------------------------------------------- lookups

    def get(self, name: str, version: str | None = None) -> ServedModel:
        versions = self._models.get(name)
        if not versions:
            raise self._missing(name)
        if version is None or version == "":
            return versions[max(versions)]
        if not version.isdigit() or int(version) not in versions:
            available = ", ".join(str(v) for v in sorted(versions))
            raise NotFound(f"model '{name}' has no ready version '{version}'; ready versions: {available}")
        return versions[int(version)]

    def get_generative(self, name: str) -> GenerativeService:
        service = self._generative.get(name)
        if service is None:
            raise self._missing(name)
        return service

    def generative_names(self) -> list[str]:
        return sorted(self._generative)

    def _missing(self, name: str) -> QuiverError:
        if name in self._errors:
            return Unavailable(f"model '{name}' is not ready: {self._errors[name]}")
        states = self._status.get(name)
        if states:
            reasons = "; ".join(f"version {v}: {s.state} {s.reason}".strip() for v, s in sorted(states.items()))
            return Unavailable(f"model '{name}' is not ready: {reasons}")
        return NotFound(f"unknown model '{name}'; known models: {', '.join(self.names()) or '(none)'}")

    def names(self) -> list[str]:
        return sorted({*self._models, *self._generative, *self._status, *self._errors})

    def versions(self, name: str) -> list[int]:
        return sorted(self._models.get(name, {}))

    def served_versions(self, name: str) -> list[ServedModel]:
        versions = self._models.get(name)
        if not versions:
            raise self._missing(name)
        return [versions[v] for v in sorted(versions)]

    def ready_models(self) -> list[ServedModel]:
        return [model for versions in self._models.values() for model in versions.values()]

    def is_ready(self, name: str, version: str | None = None) -> bool:
        if name in self._generative and not version:
            return True
        try:
            self.get(name, version)
        except QuiverError:
            return False
        return True

    def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for name in self.names():
            if name in self._errors:
                rows.append({"name": name, "state": UNAVAILABLE, "reason": self._errors[name]})
            for version, status in sorted(self._status.get(name, {}).items()):
                rows.append({"name": name, "version": str(version), "state": status.state, "reason": status.reason})
        return [r for r in rows if r["state"] == READY] if ready_only else rows

    # ------------------------------------------------------------------------------- load / unload

    def discover(self) -> list[str]:
        if not self.repository.is_dir():
            raise ModelLoadError(f"model repository {self.repository} is not a folder")
        return sorted(p.name for p in self.repository.iterdir() if p.is_dir() and not p.name.startswith("."))

    async def load_all(self) -> None:
        names = self.discover()
        results = await asyncio.gather(*(self.load(name) for name in names), return_exceptions=True)
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                log.error("model %s failed to load: %s", name, result)
        self.loaded_once = True

    async def load(self, name: str) -> None:
        """(Re)load ``name`` from disk. Raises ModelLoadError if nothing of it could be loaded."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            await self._load_locked(name)

    async def _load_locked(self, name: str) -> None:
        model_dir = self.repository / name
        if not model_dir.is_dir():
            raise NotFound(f"no model folder '{name}' in repository {self.repository}")
        try:
            config = load_config(model_dir)
            available = list_versions(model_dir)
            if not available:
                raise ModelLoadError(f"{model_dir}: no version folders (expected {model_dir}/1/...)")
            selected = config.version_policy.select(available)
            if not selected:
                raise ModelLoadError(
                    f"{model_dir}: version policy {config.version_policy} selects none of versions {available}"
                )
        except QuiverError as exc:
            self._errors[name] = exc.message
            raise
        if config.runtime == "llm":
            await self._load_generative(name, model_dir, selected[-1])
            return
        status = self._status.setdefault(name, {})
        for version in selected:
            status[version] = VersionStatus(LOADING)
        outcomes = await asyncio.gather(
            *(ServedModel.load(name, v, model_dir / str(v), config) for v in selected), return_exceptions=True
        )
        fresh: dict[int, ServedModel] = {}
        failures: list[str] = []
        for version, outcome in zip(selected, outcomes, strict=True):
            if isinstance(outcome, ServedModel):
                fresh[version] = outcome
                status[version] = VersionStatus(READY)
            else:
                reason = outcome.message if isinstance(outcome, QuiverError) else f"{type(outcome).__name__}: {outcome}"
                status[version] = VersionStatus(UNAVAILABLE, reason)
                failures.append(f"version {version}: {reason}")
        if not fresh:
            old = self._models.get(name)
            for version in old or {}:
                status[version] = VersionStatus(READY, "still serving: the reload failed")
            raise ModelLoadError(f"model '{name}' failed to load: {'; '.join(failures)}")
        self._errors.pop(name, None)
        old = self._models.get(name, {})
        self._models[name] = fresh  # the switch: new requests route to the fresh versions from here on
        for version in set(old) - set(fresh):
            status[version] = VersionStatus(UNLOADING)
        await self._retire(name, list(old.items()), keep=set(fresh))
        log.info("model %s ready: versions %s", name, sorted(fresh))

    async def _retire(self, name: str, old: list[tuple[int, ServedModel]], keep: set[int]) -> None:
        """Drain and close replaced versions; versions not kept leave the status table."""
        await asyncio.gather(*(model.close(drain=True) for _, model in old))
        status = self._status.get(name, {})
        for version, _ in old:
            if version not in keep:
                status.pop(version, None)

    async def _load_generative(self, name: str, model_dir: Path, version: int) -> None:
        from quiver.generate.service import load_llm  # torch lives behind the llm extra

        path = find_config_file(model_dir)
        raw: dict[str, Any] = tomllib.loads(path.read_text()) if path and path.suffix == ".toml" else {}
        raw["name"] = name
        status = self._status.setdefault(name, {})
        status[version] = VersionStatus(LOADING)
        try:
            service = await asyncio.get_running_loop().run_in_executor(None, load_llm, model_dir / str(version), raw)
            await service.start()
        except Exception as exc:
            reason = exc.message if isinstance(exc, QuiverError) else f"{type(exc).__name__}: {exc}"
            status[version] = VersionStatus(UNAVAILABLE, reason)
            raise ModelLoadError(f"model '{name}' failed to load: {reason}") from None
        old = self._generative.get(name)
        self._generative[name] = service
        self._status[name] = {version: VersionStatus(READY)}
        if old is not None:
            await old.stop(drain=True)

    async def unload(self, name: str) -> None:
        """Stop routing to ``name``, drain its in-flight requests, then release it."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self._models and name not in self._generative:
                raise NotFound(f"model '{name}' is not loaded")
            old = self._models.pop(name, {})
            service = self._generative.pop(name, None)
            for status in self._status.get(name, {}).values():
                status.state = UNLOADING
            await self._retire(name, list(old.items()), keep=set())
            if service is not None:
                await service.stop(drain=True)
            self._status.pop(name, None)
            self._errors.pop(name, None)

    async def close(self) -> None:
        for name in list({*self._models, *self._generative}):
            await self.unload(name)

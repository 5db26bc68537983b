"""The inference server: model manager, data plane, REST adapter, and the ``quiver serve`` command."""

from __future__ import annotations

from quiver.server.app import App, build_app, serve
from quiver.server.dataplane import DataPlane
from quiver.server.manager import ModelManager
from quiver.server.model import ServedModel

__all__ = ["App", "DataPlane", "ModelManager", "ServedModel", "build_app", "serve"]

"""Runtimes: ONNX Runtime and plain Python, behind one small interface, registered by name."""

from __future__ import annotations

from quiver.runtimes.base import Runtime, get_runtime, register_runtime

__all__ = ["Runtime", "get_runtime", "register_runtime"]

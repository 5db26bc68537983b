"""Quiver: fast, measured inference serving, optimization and planning."""

from __future__ import annotations

from quiver.errors import (
    ConfigError,
    DeadlineExceeded,
    InternalError,
    InvalidInput,
    ModelLoadError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    QuiverError,
    Unavailable,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DeadlineExceeded",
    "InternalError",
    "InvalidInput",
    "ModelLoadError",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "QuiverError",
    "Unavailable",
    "__version__",
]

"""Operator settings: one object, filled from defaults < a TOML file < ``QUIVER_*`` environment < CLI flags.

Every field carries a one-line doc, which is also its ``--help`` text.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from quiver.errors import ConfigError


def _setting(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    repository: str = _setting("", "Model repository folder; empty: the built-in example repository.")
    host: str = _setting("127.0.0.1", "Address to listen on.")
    port: int = _setting(8000, "HTTP port.")
    grpc_port: int = _setting(8001, "gRPC port (Open Inference Protocol); 0: any free port; -1: gRPC off.")
    max_body_mb: float = _setting(64.0, "Largest accepted request body, in MiB (413 above).")
    access_log: bool = _setting(False, "Write one JSON line per request to stderr.")
    log_level: str = _setting("info", "Logging level: debug, info, warning, error.")
    strict_readiness: bool = _setting(False, "Report not ready while any model failed to load.")
    shutdown_timeout_s: float = _setting(30.0, "On SIGTERM, how long in-flight requests may take to finish.")
    poll_interval_s: float = _setting(0.0, "Reload models whose files changed every N seconds; 0: off.")

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.grpc_port > 65535:
            raise ValueError(f"grpc_port must be in 0..65535 (or negative: off), got {self.grpc_port}")
        if self.max_body_mb <= 0:
            raise ValueError(f"max_body_mb must be > 0, got {self.max_body_mb}")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError(f"log_level must be debug, info, warning or error, got {self.log_level!r}")
        if self.shutdown_timeout_s < 0:
            raise ValueError(f"shutdown_timeout_s must be >= 0, got {self.shutdown_timeout_s}")
        if self.poll_interval_s < 0:
            raise ValueError(f"poll_interval_s must be >= 0, got {self.poll_interval_s}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @staticmethod
    def docs() -> dict[str, str]:
        return {f.name: f.metadata["doc"] for f in fields(Settings)}

    @classmethod
    def load(cls, file: str | None = None, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Merge the layers; ``overrides`` (CLI flags) that are None are ignored."""
        values: dict[str, Any] = {}
        if file:
            path = Path(file)
            try:
                from_file = tomllib.loads(path.read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"{path}: cannot read settings: {exc}") from None
            values.update(_checked(cls, from_file, f"{path}: "))
        environ: Mapping[str, str] = os.environ if env is None else env
        for f in fields(cls):
            key = f"QUIVER_{f.name.upper()}"
            if key in environ:
                values[f.name] = _parse(environ[key], f.type, key)
        values.update(_checked(cls, {k: v for k, v in overrides.items() if v is not None}, ""))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting '{unknown[0]}'; known settings: {', '.join(sorted(known))}")
        try:
            return replace(cls(), **values)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid setting: {exc}") from None


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _checked(cls: type[Settings], values: dict[str, Any], where: str) -> dict[str, Any]:
    """Refuse values of the wrong type (a file's ``port = "80"``, ``access_log = "no"``) instead of using them."""
    types = {f.name: str(f.type) for f in fields(cls)}
    for name, value in values.items():
        expected = _TYPES.get(types.get(name, ""))
        wrong_bool = isinstance(value, bool) and bool not in (expected or ())
        if expected is not None and (not isinstance(value, expected) or wrong_bool):
            raise ConfigError(f"{where}setting '{name}' must be {types[name]}, got {value!r}")
    return values


def _parse(text: str, type_name: Any, key: str) -> Any:
    kind = str(type_name)
    try:
        if kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ConfigError(f"environment variable {key}={text!r} is not a valid {kind}") from None
    return text

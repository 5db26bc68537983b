"""Model configuration: ``<repo>/<model>/config.toml`` (or ``config.yaml``), every field optional.

Invalid files fail with a ``ConfigError`` naming the file and the field.

Example ``config.toml``::

    runtime = "onnxruntime"
    max_batch_size = 64          # rows per batch; 0 turns dynamic batching off
    max_queue_delay_ms = 0.5     # how long a batch may wait to fill up
    queue_capacity = 1024        # queued requests before 429
    default_timeout_ms = 0       # 0: no deadline unless the request sets one
    priority_levels = 2          # 1 is the highest
    instances = 1                # batches run concurrently on this many runtime instances
    threads_per_instance = 0     # 0: the runtime's default
    version_policy = { latest = 1 }   # or { all = true } or { specific = [1, 3] }

    [[inputs]]
    name = "features"
    datatype = "FP32"
    shape = [-1, 30]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from quiver.errors import ConfigError
from quiver.protocol.datatypes import DATATYPES

CONFIG_NAMES = ("config.toml", "config.yaml", "config.yml")


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 marks a dynamic dimension

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise ValueError(f"datatype {self.datatype!r} is not one of {', '.join(sorted(DATATYPES))}")
        if any(d < -1 for d in self.shape):
            raise ValueError(f"shape {list(self.shape)} may hold only sizes and -1")

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    kind: str = "latest"  # "latest" | "all" | "specific"
    latest: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("latest", "all", "specific"):
            raise ValueError("must be {latest = N}, {all = true} or {specific = [versions]}")
        if self.kind == "latest" and self.latest < 1:
            raise ValueError("latest must be at least 1")
        if self.kind == "specific" and not self.versions:
            raise ValueError("specific needs at least one version")

    def select(self, available: list[int]) -> list[int]:
        ordered = sorted(available)
        if self.kind == "all":
            return ordered
        if self.kind == "latest":
            return ordered[-self.latest :]
        return [v for v in ordered if v in self.versions]


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Per-model settings. ``None`` fields are filled from the model (inputs, outputs, batching)."""

    name: str
    runtime: str = "onnxruntime"
    max_batch_size: int | None = None
    max_queue_delay_ms: float = 0.0
    queue_capacity: int = 1024
    default_timeout_ms: float = 0.0
    priority_levels: int = 2
    default_priority: int | None = None
    instances: int = 1
    threads_per_instance: int = 0
    slo_p99_ms: float | None = None
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"  # the file this came from, for messages

    def __post_init__(self) -> None:
        checks = (
            ("max_batch_size", self.max_batch_size is None or self.max_batch_size >= 0, "must be >= 0"),
            ("max_queue_delay_ms", self.max_queue_delay_ms >= 0, "must be >= 0"),
            ("queue_capacity", self.queue_capacity >= 1, "must be >= 1"),
            ("default_timeout_ms", self.default_timeout_ms >= 0, "must be >= 0"),
            ("priority_levels", self.priority_levels >= 1, "must be >= 1"),
            (
                "default_priority",
                self.default_priority is None or 1 <= self.default_priority <= self.priority_levels,
                f"must be between 1 and priority_levels ({self.priority_levels})",
            ),
            ("instances", self.instances >= 1, "must be >= 1"),
            ("threads_per_instance", self.threads_per_instance >= 0, "must be >= 0"),
            ("slo_p99_ms", self.slo_p99_ms is None or self.slo_p99_ms > 0, "must be > 0"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"field '{name}' {expected}, got {getattr(self, name)!r}")

    @property
    def effective_default_priority(self) -> int:
        return self.default_priority if self.default_priority is not None else self.priority_levels


_SCALARS: dict[str, tuple[type, ...]] = {
    "runtime": (str,),
    "max_batch_size": (int,),
    "max_queue_delay_ms": (int, float),
    "queue_capacity": (int,),
    "default_timeout_ms": (int, float),
    "priority_levels": (int,),
    "default_priority": (int,),
    "instances": (int,),
    "threads_per_instance": (int,),
    "slo_p99_ms": (int, float),
}
_KNOWN = frozenset(f.name for f in fields(ModelConfig)) - {"name", "source"}


def find_config_file(model_dir: Path) -> Path | None:
    for name in CONFIG_NAMES:
        candidate = model_dir / name
        if candidate.is_file():
            return candidate
    return None


def load_config(model_dir: Path) -> ModelConfig:
    """Read ``model_dir``'s config file, or return defaults when there is none."""
    path = find_config_file(model_dir)
    if path is None:
        return ModelConfig(name=model_dir.name)
    return parse_config(model_dir.name, path)


def parse_config(name: str, path: Path) -> ModelConfig:
    raw = _read(path)
    unknown = sorted(set(raw) - _KNOWN - {"name"})
    if unknown:
        raise ConfigError(f"{path}: unknown field '{unknown[0]}'; known fields: {', '.join(sorted(_KNOWN))}")
    if "name" in raw and raw["name"] != name:
        raise ConfigError(f"{path}: field 'name' is {raw['name']!r} but the model folder is {name!r}")
    values: dict[str, Any] = {}
    for key, types in _SCALARS.items():
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, types):
                expected = " or ".join(t.__name__ for t in types)
                raise ConfigError(f"{path}: field '{key}' must be {expected}, got {value!r}")
            values[key] = value
    if "version_policy" in raw:
        values["version_policy"] = _version_policy(raw["version_policy"], path)
    for key in ("inputs", "outputs"):
        if key in raw:
            values[key] = _tensors(raw[key], key, path)
    if "parameters" in raw:
        if not isinstance(raw["parameters"], dict):
            raise ConfigError(f"{path}: field 'parameters' must be a table")
        values["parameters"] = dict(raw["parameters"])
    try:
        return ModelConfig(name=name, source=str(path), **values)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table of fields at the top level")
    return raw


def _version_policy(raw: Any, path: Path) -> VersionPolicy:
    where = f"{path}: field 'version_policy'"
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(f"{where} must be {{latest = N}}, {{all = true}} or {{specific = [1, 2]}}, got {raw!r}")
    ((kind, value),) = raw.items()
    try:
        if kind == "latest" and isinstance(value, int) and not isinstance(value, bool):
            return VersionPolicy("latest", latest=value)
        if kind == "all" and value is True:
            return VersionPolicy("all")
        if kind == "specific" and isinstance(value, list) and all(_is_int(v) for v in value):
            return VersionPolicy("specific", versions=tuple(value))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    raise ConfigError(f"{where} must be {{latest = N}}, {{all = true}} or {{specific = [1, 2]}}, got {raw!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensors(raw: Any, key: str, path: Path) -> tuple[TensorSpec, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: field '{key}' must be a list of tables with name, datatype, shape")
    specs = []
    for index, item in enumerate(raw):
        where = f"{path}: field '{key}[{index}]'"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table with name, datatype, shape")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name must be a non-empty string")
        if not isinstance(datatype, str):
            raise ConfigError(f"{where}.datatype must be a string such as FP32")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise ConfigError(f"{where}.shape must be a list of integers (-1 for dynamic)")
        try:
            specs.append(TensorSpec(name, datatype, tuple(shape)))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(specs)


def list_versions(model_dir: Path) -> list[int]:
    """Version folders are positive integers; anything else in the model folder is ignored."""
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)

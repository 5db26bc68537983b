"""Lay out a model as a Quiver model repository entry: ``<repo>/<name>/config.toml`` + ``<repo>/<name>/<v>/model.onnx``.

Only scalar config keys are written (``max_batch_size``, ``max_queue_delay_ms``, ``instances``,
``threads_per_instance``, ...); inputs and outputs are left out so the server infers them from the graph.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path

import onnx

ConfigValue = bool | int | float | str


def write_model_entry(
    repo: str | Path,
    name: str,
    model: onnx.ModelProto | str | Path,
    *,
    version: int = 1,
    config: Mapping[str, ConfigValue] | None = None,
) -> Path:
    """Write ``model`` (a ModelProto or the path of an .onnx file) under ``repo/name/version/model.onnx``.

    ``config`` becomes ``repo/name/config.toml``; with ``None`` no config is written (everything is then
    inferred from the graph). Returns the model folder ``repo/name``.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"model name {name!r}: expected a plain folder name")
    if version < 1:
        raise ValueError(f"version {version}: expected an integer >= 1")
    model_dir = Path(repo) / name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    target = version_dir / "model.onnx"
    if isinstance(model, onnx.ModelProto):
        onnx.save_model(model, str(target))
    else:
        shutil.copyfile(model, target)
    if config is not None:
        (model_dir / "config.toml").write_text(to_toml(config))
    return model_dir


def to_toml(config: Mapping[str, ConfigValue]) -> str:
    """Render a flat mapping of scalars as TOML (no tables: that is all a model config needs here)."""
    lines = []
    for key, value in config.items():
        if not key.replace("_", "").isalnum():
            raise ValueError(f"config key {key!r}: expected letters, digits and underscores")
        lines.append(f"{key} = {_toml_value(key, value)}")
    return "\n".join(lines) + "\n"


def _toml_value(key: str, value: ConfigValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"config key {key!r}: expected a finite number, got {value}")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise ValueError(f"config key {key!r}: expected bool, int, float or str, got {type(value).__name__}")

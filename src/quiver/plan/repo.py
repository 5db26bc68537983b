"""The model repository side of planning: read a model's variants, write the chosen config back.

Variants are the numbered version folders; ``<version>/variant.json`` (written by ``quiver optimize``)
carries ``metrics: {"primary": NAME, NAME: value, ...}``, whose primary value is the variant's accuracy.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

from quiver.errors import ConfigError, NotFound
from quiver.plan.space import Candidate, Variant

PLANNED_KEYS = ("max_batch_size", "max_queue_delay_ms", "instances", "threads_per_instance", "version_policy")


def read_variants(repo: Path, model: str, accuracy_metric: str | None = None) -> list[Variant]:
    model_dir = repo / model
    if not model_dir.is_dir():
        raise NotFound(f"model {model!r}: no folder {model_dir} in the repository")
    out = []
    for vdir in sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        record_path = vdir / "variant.json"
        accuracy, recipe = None, "baseline"
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            metrics = record.get("metrics") or {}
            key = accuracy_metric or metrics.get("primary")
            value = metrics.get(key) if key else None
            accuracy = float(value) if isinstance(value, int | float) else None
            recipe = str(record.get("recipe") or record.get("name") or "baseline")
        out.append(Variant(int(vdir.name), accuracy, recipe))
    if not out:
        raise NotFound(f"model {model!r}: no numbered version folders in {model_dir}")
    return out


def read_config(repo: Path, model: str) -> dict[str, Any]:
    path = repo / model / "config.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None


def planned_config(base: dict[str, Any], candidate: Candidate) -> dict[str, Any]:
    """``base`` with the candidate's settings, serving only the candidate's version."""
    config = dict(base)
    config.update(
        max_batch_size=candidate.max_batch,
        max_queue_delay_ms=candidate.delay_ms,
        instances=candidate.instances,
        threads_per_instance=candidate.threads,
        version_policy={"specific": [candidate.version]},
    )
    return config


def write_config(repo: Path, model: str, candidate: Candidate, note: str = "") -> Path:
    """Write the chosen configuration into ``<repo>/<model>/config.toml`` (the old one kept as
    ``config.toml.before-plan``)."""
    path = repo / model / "config.toml"
    base = read_config(repo, model)
    if path.is_file():
        shutil.copyfile(path, path.with_name("config.toml.before-plan"))
    header = "# " + (note or "Written by `quiver plan`.") + "\n"
    path.write_text(header + to_toml(planned_config(base, candidate)))
    return path


def to_toml(config: dict[str, Any]) -> str:
    """TOML for a model config: scalars and inline tables first, then ``[table]`` and ``[[array]]`` parts."""
    lines, tables = [], []
    for key, value in config.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                tables.append(f"\n[[{key}]]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in item.items()))
        elif isinstance(value, dict) and key == "parameters":
            tables.append(f"\n[{key}]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in value.items()))
        else:
            lines.append(f"{key} = {_value(value)}")
    return "\n".join(lines) + "\n" + "".join(tables)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} into config.toml")

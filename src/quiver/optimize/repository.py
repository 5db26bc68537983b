"""Write the baseline and the kept variants into a Quiver model repository:

<repo>/<model>/config.toml          version_policy = { all = true }: every variant is served
<repo>/<model>/variants.json        index: every version's record, and the rejected variants with reasons
<repo>/<model>/1/model.onnx         the fp32 baseline
<repo>/<model>/1/variant.json       its recipe, metrics, timings and the machine they were measured on
<repo>/<model>/2/...                kept variants, best primary metric first (tokenizer files beside text models)
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quiver.errors import InvalidInput
from quiver.optimize import _onnx
from quiver.optimize.pipeline import Result, Variant
from quiver.optimize.sources import TOKENIZER_FILES


def write(result: Result, repo: Path, overwrite: bool = False, max_batch_size: int = 32) -> dict[int, Variant]:
    model_dir = repo / result.model
    if model_dir.exists() and any(p.name.isdigit() for p in model_dir.iterdir()):
        if not overwrite:
            raise InvalidInput(f"{model_dir} already holds versions; pass --overwrite to replace them")
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    kept = sorted(result.kept, key=lambda v: (v.drop, v.timing.p50_b1_ms if v.timing else 0.0))
    versions = {1: result.baseline} | {i + 2: v for i, v in enumerate(kept)}
    base = result.baseline.artifact
    assert base is not None  # the pipeline always sets the baseline artifact
    tokenizer = base.meta.get("tokenizer_dir")
    for version, v in versions.items():
        vdir = model_dir / str(version)
        vdir.mkdir()
        assert v.path is not None
        shutil.copyfile(v.path, vdir / "model.onnx")
        if tokenizer:
            for name in TOKENIZER_FILES:
                if (Path(tokenizer) / name).exists():
                    shutil.copyfile(Path(tokenizer) / name, vdir / name)
        (vdir / "variant.json").write_text(json.dumps(_record(result, version, v), indent=2) + "\n")
    index = {
        "model": result.model,
        "task": result.task,
        "baseline_version": 1,
        "versions": [_record(result, ver, v, machine=False) for ver, v in versions.items()],
        "rejected": [v.record() for v in result.variants if not v.kept],
        "machine": result.machine,
        "created": _now(),
    }
    (model_dir / "variants.json").write_text(json.dumps(index, indent=2) + "\n")
    (model_dir / "config.toml").write_text(config_toml(result, base.onnx, max_batch_size))
    return versions


def config_toml(result: Result, onnx_path: Path, max_batch_size: int) -> str:
    inputs, outputs = _onnx.io_specs(_onnx.load(onnx_path))
    batchable = all(s.shape and s.shape[0] == -1 for s in inputs)
    lines = [
        "# Written by `quiver optimize`: version 1 is the fp32 baseline, the others are variants that passed",
        "# the accuracy and speed gates on this machine (see variants.json). All versions are served.",
        'runtime = "onnxruntime"',
        f"max_batch_size = {max_batch_size if batchable else 0}",
        f"threads_per_instance = {result.settings.threads}",
        "version_policy = { all = true }",
        "",
    ]
    for key, specs in (("inputs", inputs), ("outputs", outputs)):
        for s in specs:
            shape = ", ".join(str(d) for d in s.shape)
            lines += [f"[[{key}]]", f'name = "{s.name}"', f'datatype = "{s.datatype}"', f"shape = [{shape}]", ""]
    primary = result.baseline.scores.primary if result.baseline.scores else ""
    lines += ["[parameters]", f'task = "{result.task}"', f'primary_metric = "{primary}"']
    if result.baseline.artifact and result.baseline.artifact.meta.get("tokenizer_dir"):
        lines.append('tokenizer = "tokenizer.json"')
    return "\n".join(lines) + "\n"


def _record(result: Result, version: int, v: Variant, machine: bool = True) -> dict[str, Any]:
    rec: dict[str, Any] = {"version": version, **v.record(), "task": result.task}
    if v is result.baseline:
        rec["recipe"] = "baseline"
    if result.baseline.artifact is not None:
        rec["source"] = result.baseline.artifact.meta.get("source")
    if machine:
        rec["machine"] = result.machine
        rec["threads"] = result.settings.threads
        rec["created"] = _now()
    return rec


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quiver.errors import NotFound
from quiver.plan.repo import read_variants, write_config
from quiver.plan.space import Candidate
from quiver.repository.config import parse_config

CONFIG = """runtime = "onnxruntime"
max_batch_size = 32
threads_per_instance = 2
version_policy = { all = true }

[[inputs]]
name = "input_ids"
datatype = "INT64"
shape = [-1, 128]

[parameters]
task = "embedding"
primary_metric = "cosine"
"""


def _repo(tmp_path: Path) -> Path:
    model = tmp_path / "minilm"
    for version, metrics in ((1, {"primary": "cosine", "cosine": 1.0}), (2, {"primary": "cosine", "cosine": 0.993})):
        (model / str(version)).mkdir(parents=True)
        (model / str(version) / "model.onnx").write_bytes(b"")
        record = {"version": version, "recipe": "baseline" if version == 1 else "int8-dynamic", "metrics": metrics}
        (model / str(version) / "variant.json").write_text(json.dumps(record))
    (model / "3").mkdir()  # no record: accuracy unknown
    (model / "config.toml").write_text(CONFIG)
    return tmp_path


def test_variants_come_from_optimize_records(tmp_path: Path) -> None:
    variants = read_variants(_repo(tmp_path), "minilm")
    assert [(v.version, v.accuracy, v.recipe) for v in variants] == [
        (1, 1.0, "baseline"),
        (2, 0.993, "int8-dynamic"),
        (3, None, "baseline"),
    ]
    with pytest.raises(NotFound, match="no folder"):
        read_variants(tmp_path, "absent")


def test_written_config_is_valid_for_the_server_and_keeps_the_rest(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    path = write_config(repo, "minilm", Candidate(2, 8, 2.0, 1, 2), "chosen for a test")
    config = parse_config("minilm", path)  # the server's own parser
    assert (config.max_batch_size, config.max_queue_delay_ms, config.instances, config.threads_per_instance) == (
        8,
        2.0,
        1,
        2,
    )
    assert config.version_policy.select([1, 2, 3]) == [2]
    assert config.inputs is not None and config.inputs[0].shape == (-1, 128)
    assert config.parameters == {"task": "embedding", "primary_metric": "cosine"}
    assert path.read_text().startswith("# chosen for a test")
    assert (path.parent / "config.toml.before-plan").read_text() == CONFIG

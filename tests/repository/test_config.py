"""Model configs in TOML and YAML: every field, type errors naming file and field, version policies, defaults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from quiver.errors import ConfigError
from quiver.repository import ModelConfig, TensorSpec, VersionPolicy, list_versions, load_config

FULL_TOML = """
runtime = "python"
max_batch_size = 32
max_queue_delay_ms = 0.5
queue_capacity = 100
default_timeout_ms = 250
priority_levels = 3
default_priority = 2
instances = 2
threads_per_instance = 4
slo_p99_ms = 20
version_policy = { specific = [1, 3] }
parameters = { module = "model.py", scale = 2 }

[[inputs]]
name = "features"
datatype = "FP32"
shape = [-1, 30]

[[outputs]]
name = "label"
datatype = "INT64"
shape = [-1]
"""

FULL_YAML = """
runtime: python
max_batch_size: 32
max_queue_delay_ms: 0.5
queue_capacity: 100
default_timeout_ms: 250
priority_levels: 3
default_priority: 2
instances: 2
threads_per_instance: 4
slo_p99_ms: 20
version_policy: {specific: [1, 3]}
parameters: {module: model.py, scale: 2}
inputs:
  - {name: features, datatype: FP32, shape: [-1, 30]}
outputs:
  - {name: label, datatype: INT64, shape: [-1]}
"""


def model_dir(tmp_path: Path, text: str | None, filename: str = "config.toml", name: str = "fraud") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    if text is not None:
        (folder / filename).write_text(text)
    return folder


def config_error(folder: Path, filename: str = "config.toml") -> str:
    with pytest.raises(ConfigError) as info:
        load_config(folder)
    message = info.value.message
    assert str(folder / filename) in message, message  # every message names the file
    assert info.value.status == 400
    return message


@pytest.mark.parametrize(
    ("filename", "text"), [("config.toml", FULL_TOML), ("config.yaml", FULL_YAML), ("config.yml", FULL_YAML)]
)
def test_every_field_is_read_from_toml_and_yaml(tmp_path: Path, filename: str, text: str) -> None:
    folder = model_dir(tmp_path, text, filename)
    config = load_config(folder)
    assert config == ModelConfig(
        name="fraud",
        runtime="python",
        max_batch_size=32,
        max_queue_delay_ms=0.5,
        queue_capacity=100,
        default_timeout_ms=250,
        priority_levels=3,
        default_priority=2,
        instances=2,
        threads_per_instance=4,
        slo_p99_ms=20,
        version_policy=VersionPolicy("specific", versions=(1, 3)),
        inputs=(TensorSpec("features", "FP32", (-1, 30)),),
        outputs=(TensorSpec("label", "INT64", (-1,)),),
        parameters={"module": "model.py", "scale": 2},
        source=str(folder / filename),
    )
    assert config.effective_default_priority == 2
    assert config.inputs is not None and config.inputs[0].as_dict() == {
        "name": "features",
        "datatype": "FP32",
        "shape": [-1, 30],
    }


def test_missing_config_gives_defaults(tmp_path: Path) -> None:
    folder = model_dir(tmp_path, None)
    config = load_config(folder)
    assert config == ModelConfig(name="fraud")
    assert config.source == "<defaults>"
    assert config.runtime == "onnxruntime" and config.max_batch_size is None
    assert config.inputs is None and config.outputs is None
    assert config.version_policy == VersionPolicy("latest", latest=1)
    assert config.effective_default_priority == config.priority_levels == 2


@pytest.mark.parametrize(("filename", "text"), [("config.toml", ""), ("config.yaml", ""), ("config.yaml", "# x\n")])
def test_empty_config_gives_defaults(tmp_path: Path, filename: str, text: str) -> None:
    config = load_config(model_dir(tmp_path, text, filename))
    assert config == ModelConfig(name="fraud", source=str(tmp_path / "fraud" / filename))


def test_toml_wins_over_yaml(tmp_path: Path) -> None:
    folder = model_dir(tmp_path, "max_batch_size = 4\n")
    (folder / "config.yaml").write_text("max_batch_size: 9\n")
    assert load_config(folder).max_batch_size == 4


@pytest.mark.parametrize(
    ("field", "toml_value", "expected"),
    [
        ("runtime", "3", "str"),
        ("max_batch_size", '"64"', "int"),
        ("max_batch_size", "1.5", "int"),
        ("max_batch_size", "true", "int"),
        ("max_queue_delay_ms", '"1ms"', "int or float"),
        ("max_queue_delay_ms", "false", "int or float"),
        ("queue_capacity", "10.0", "int"),
        ("default_timeout_ms", "[1]", "int or float"),
        ("priority_levels", '"2"', "int"),
        ("default_priority", "1.0", "int"),
        ("instances", "true", "int"),
        ("threads_per_instance", '"4"', "int"),
        ("slo_p99_ms", '"fast"', "int or float"),
    ],
)
def test_scalar_type_errors_name_file_and_field(tmp_path: Path, field: str, toml_value: str, expected: str) -> None:
    message = config_error(model_dir(tmp_path, f"{field} = {toml_value}\n"))
    assert f"field '{field}' must be {expected}" in message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("max_batch_size = -1", "max_batch_size"),
        ("max_queue_delay_ms = -0.5", "max_queue_delay_ms"),
        ("queue_capacity = 0", "queue_capacity"),
        ("default_timeout_ms = -1", "default_timeout_ms"),
        ("priority_levels = 0", "priority_levels"),
        ("default_priority = 3", "default_priority"),
        ("priority_levels = 3\ndefault_priority = 0", "default_priority"),
        ("instances = 0", "instances"),
        ("threads_per_instance = -2", "threads_per_instance"),
        ("slo_p99_ms = 0", "slo_p99_ms"),
    ],
)
def test_value_errors_name_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    message = config_error(model_dir(tmp_path, text + "\n"))
    assert f"field '{field}'" in message


def test_yaml_type_error_names_file_and_field(tmp_path: Path) -> None:
    folder = model_dir(tmp_path, "instances: two\n", "config.yaml")
    assert "field 'instances' must be int, got 'two'" in config_error(folder, "config.yaml")


def test_unknown_field_is_named(tmp_path: Path) -> None:
    message = config_error(model_dir(tmp_path, "max_batch = 8\n"))
    assert "unknown field 'max_batch'" in message
    assert "max_batch_size" in message  # lists what is known


def test_name_must_match_the_folder(tmp_path: Path) -> None:
    assert "field 'name' is 'other'" in config_error(model_dir(tmp_path, 'name = "other"\n'))
    assert load_config(model_dir(tmp_path, 'name = "fraud2"\n', name="fraud2")).name == "fraud2"


@pytest.mark.parametrize(
    ("filename", "text"),
    [("config.toml", "max_batch_size = = 3\n"), ("config.yaml", "a: [1, 2\n"), ("config.yaml", "- 1\n- 2\n")],
)
def test_unparsable_file_names_the_file(tmp_path: Path, filename: str, text: str) -> None:
    config_error(model_dir(tmp_path, text, filename), filename)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('inputs = "x"', "field 'inputs' must be a list"),
        ("inputs = [1]", r"field 'inputs\[0\]' must be a table"),
        ('[[inputs]]\ndatatype = "FP32"\nshape = [1]', r"field 'inputs\[0\]'.name must be a non-empty string"),
        ('[[inputs]]\nname = "x"\nshape = [1]', r"field 'inputs\[0\]'.datatype must be a string"),
        ('[[inputs]]\nname = "x"\ndatatype = "FP8"\nshape = [1]', r"field 'inputs\[0\]'.*datatype 'FP8'"),
        ('[[outputs]]\nname = "y"\ndatatype = "FP32"\nshape = "1"', r"field 'outputs\[0\]'.shape must be a list"),
        ('[[outputs]]\nname = "y"\ndatatype = "FP32"\nshape = [true]', r"field 'outputs\[0\]'.shape must be a list"),
        ('[[outputs]]\nname = "y"\ndatatype = "FP32"\nshape = [-2]', r"field 'outputs\[0\]'.*-1"),
        ("parameters = 3", "field 'parameters' must be a table"),
    ],
)
def test_tensor_and_parameter_errors_name_the_field(tmp_path: Path, text: str, match: str) -> None:
    message = config_error(model_dir(tmp_path, text + "\n"))
    assert re.search(match, message), message


# ----------------------------------------------------------------------------------------- version policy


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("version_policy = { latest = 2 }", VersionPolicy("latest", latest=2)),
        ("version_policy = { all = true }", VersionPolicy("all")),
        ("version_policy = { specific = [3, 1] }", VersionPolicy("specific", versions=(3, 1))),
    ],
)
def test_version_policy_is_parsed(tmp_path: Path, text: str, policy: VersionPolicy) -> None:
    assert load_config(model_dir(tmp_path, text + "\n")).version_policy == policy


@pytest.mark.parametrize(
    "value",
    [
        "{ latest = 0 }",
        "{ latest = true }",
        '{ latest = "2" }',
        "{ all = false }",
        "{ specific = [] }",
        '{ specific = ["1"] }',
        "{ specific = [true] }",
        "{ newest = 1 }",
        "{ latest = 1, all = true }",
        '"latest"',
    ],
)
def test_bad_version_policy_names_file_and_field(tmp_path: Path, value: str) -> None:
    message = config_error(model_dir(tmp_path, f"version_policy = {value}\n"))
    assert "field 'version_policy'" in message


@pytest.mark.parametrize(
    ("policy", "available", "selected"),
    [
        (VersionPolicy(), [3, 1, 2], [3]),
        (VersionPolicy("latest", latest=2), [3, 1, 10, 2], [3, 10]),
        (VersionPolicy("latest", latest=5), [2, 1], [1, 2]),
        (VersionPolicy("all"), [3, 1, 2], [1, 2, 3]),
        (VersionPolicy("specific", versions=(3, 1, 7)), [1, 2, 3], [1, 3]),
        (VersionPolicy("specific", versions=(7,)), [1, 2], []),
        (VersionPolicy(), [], []),
    ],
)
def test_version_policy_selects(policy: VersionPolicy, available: list[int], selected: list[int]) -> None:
    assert policy.select(available) == selected


def test_list_versions_reads_positive_integer_folders(tmp_path: Path) -> None:
    folder = model_dir(tmp_path, None)
    for name in ("1", "10", "2", "0", "v3", "-1", "1.5"):
        (folder / name).mkdir()
    (folder / "7").write_text("a file, not a version")
    assert list_versions(folder) == [1, 2, 10]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "newest"}, "latest = N"),
        ({"kind": "latest", "latest": 0}, "at least 1"),
        ({"kind": "specific"}, "at least one version"),
    ],
)
def test_version_policy_validates(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VersionPolicy(**kwargs)

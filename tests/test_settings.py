"""Operator settings: defaults < TOML file < QUIVER_* environment < overrides (CLI flags); bad values fail."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from quiver.errors import ConfigError
from quiver.settings import Settings


def settings_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "quiver.toml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    settings = Settings.load(env={})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.max_body_mb) == ("127.0.0.1", 8000, 64.0)
    assert settings.max_body_bytes == 64 * 1024 * 1024
    assert settings.access_log is False and settings.log_level == "info"


def test_every_field_is_documented() -> None:
    docs = Settings.docs()
    assert set(docs) == {f.name for f in fields(Settings)}
    assert all(doc.strip() for doc in docs.values())


def test_layers_defaults_file_env_overrides(tmp_path: Path) -> None:
    file = settings_file(tmp_path, 'host = "0.0.0.0"\nport = 9000\nmax_body_mb = 8\nlog_level = "debug"\n')
    env = {"QUIVER_PORT": "9100", "QUIVER_MAX_BODY_MB": "16.5", "UNRELATED": "x"}
    settings = Settings.load(file, env=env, max_body_mb=32.0, access_log=None)
    assert settings.host == "0.0.0.0"  # file over default
    assert settings.log_level == "debug"  # file over default
    assert settings.port == 9100  # env over file
    assert settings.max_body_mb == 32.0  # override over env
    assert settings.access_log is False  # a None override is ignored
    assert settings.shutdown_timeout_s == 30.0  # default


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUIVER_PORT", "8123")
    assert Settings.load().port == 8123
    assert Settings.load(env={}).port == 8000


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("Off", False),
        ("", False),
    ],
)
def test_env_booleans(text: str, value: bool) -> None:
    assert Settings.load(env={"QUIVER_ACCESS_LOG": text}).access_log is value


def test_env_types() -> None:
    settings = Settings.load(
        env={"QUIVER_REPOSITORY": "/models", "QUIVER_SHUTDOWN_TIMEOUT_S": "2.5", "QUIVER_STRICT_READINESS": "yes"}
    )
    assert settings.repository == "/models"
    assert settings.shutdown_timeout_s == 2.5
    assert settings.strict_readiness is True


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("QUIVER_PORT", "eighty"),
        ("QUIVER_PORT", "80.5"),
        ("QUIVER_MAX_BODY_MB", "lots"),
        ("QUIVER_ACCESS_LOG", "maybe"),
    ],
)
def test_bad_env_values_name_the_variable(key: str, text: str) -> None:
    with pytest.raises(ConfigError, match=f"environment variable {key}="):
        Settings.load(env={key: text})


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"port": 70000}, "port must be in 0..65535"),
        ({"port": -1}, "port must be in"),
        ({"max_body_mb": 0}, "max_body_mb must be > 0"),
        ({"log_level": "loud"}, "log_level must be"),
        ({"poll_interval_s": -1}, "poll_interval_s must be >= 0"),
        ({"shutdown_timeout_s": -1.0}, "shutdown_timeout_s must be >= 0"),
    ],
)
def test_bad_values_are_config_errors(values: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Settings.load(env={}, **values)


def test_bad_env_value_is_a_config_error_too() -> None:
    with pytest.raises(ConfigError, match=r"port must be in 0\.\.65535"):
        Settings.load(env={"QUIVER_PORT": "99999"})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('port = "8000"', "setting 'port' must be int, got '8000'"),
        ("port = 8000.5", "setting 'port' must be int"),
        ("port = true", "setting 'port' must be int"),
        ("host = 5", "setting 'host' must be str"),
        ("log_level = 3", "setting 'log_level' must be str"),
        ('access_log = "no"', "setting 'access_log' must be bool"),
        ('max_body_mb = "big"', "setting 'max_body_mb' must be float"),
        ("max_body_mb = false", "setting 'max_body_mb' must be float"),
    ],
)
def test_wrong_types_in_the_file_name_file_and_setting(tmp_path: Path, text: str, match: str) -> None:
    file = settings_file(tmp_path, text + "\n")
    with pytest.raises(ConfigError, match=match) as info:
        Settings.load(file, env={})
    assert file in info.value.message


def test_wrong_type_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="setting 'port' must be int"):
        Settings.load(env={}, port="80")


def test_int_is_accepted_for_a_float_setting(tmp_path: Path) -> None:
    settings = Settings.load(settings_file(tmp_path, "max_body_mb = 2\n"), env={})
    assert settings.max_body_mb == 2 and settings.max_body_bytes == 2 * 1024 * 1024


def test_unknown_setting_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        Settings.load(settings_file(tmp_path, "prot = 1\n"), env={})
    with pytest.raises(ConfigError, match="unknown setting 'workers'"):
        Settings.load(env={}, workers=4)


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read settings"):
        Settings.load(missing, env={})
    with pytest.raises(ConfigError, match=r"quiver\.toml: cannot read settings"):
        Settings.load(settings_file(tmp_path, "port = = 1\n"), env={})


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]

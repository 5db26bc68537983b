"""The model repository on disk: ``<repo>/<model>/config.toml`` and ``<repo>/<model>/<version>/``."""

from __future__ import annotations

from quiver.repository.config import ModelConfig, TensorSpec, VersionPolicy, list_versions, load_config

__all__ = ["ModelConfig", "TensorSpec", "VersionPolicy", "list_versions", "load_config"]

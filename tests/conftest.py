"""Shared fixtures: real servers on ephemeral ports, and small model repositories built per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from quiver.zoo.tabular import random_mlp_onnx
from support import ServerThread, write_model


@pytest.fixture
def mlp_repo(tmp_path: Path) -> Path:
    """A repository with one small MLP ``mlp`` (features FP32 [-1, 30] -> probabilities, label)."""
    write_model(tmp_path, "mlp", random_mlp_onnx((30, 16, 2)), "max_batch_size = 8\n")
    return tmp_path


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(repository: Path, **settings: Any) -> ServerThread:
        server = ServerThread(repository, **settings).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)

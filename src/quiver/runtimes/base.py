"""The runtime interface: load a model version, describe its tensors, run a batch.

A runtime is registered by name (the ``runtime`` field of a model's config)::

    @register_runtime("onnxruntime")
    class OnnxRuntime(Runtime): ...

``load`` runs once per instance in a worker thread; ``infer`` runs on that instance's own thread, one batch
at a time, with inputs already validated and merged along the batch dimension.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from quiver.errors import ModelLoadError
from quiver.repository.config import ModelConfig, TensorSpec


class Runtime(ABC):
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform: str = "python"

    @classmethod
    @abstractmethod
    def load(cls, version_dir: Path, config: ModelConfig) -> Runtime:
        """Load one instance from ``version_dir``; raise ``ModelLoadError`` saying why it cannot."""

    @abstractmethod
    def infer(self, inputs: dict[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        """Run one batch. Every declared input is present; return the named outputs."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (sessions, files)."""


RuntimeFactory = Callable[[Path, ModelConfig], Runtime]
_RUNTIMES: dict[str, type[Runtime]] = {}


def register_runtime(name: str) -> Callable[[type[Runtime]], type[Runtime]]:
    def decorate(cls: type[Runtime]) -> type[Runtime]:
        _RUNTIMES[name] = cls
        return cls

    return decorate


def get_runtime(name: str) -> type[Runtime]:
    # Importing the built-in runtimes registers them.
    from quiver.runtimes import onnx, python  # noqa: F401

    try:
        return _RUNTIMES[name]
    except KeyError:
        known = ", ".join(sorted(_RUNTIMES))
        raise ModelLoadError(f"unknown runtime {name!r}; available runtimes: {known}") from None


def declared_or(
    declared: tuple[TensorSpec, ...] | None, found: tuple[TensorSpec, ...], what: str
) -> tuple[TensorSpec, ...]:
    """Config declarations win, but they must name tensors the model really has."""
    if declared is None:
        return found
    known = {t.name for t in found}
    for spec in declared:
        if spec.name not in known:
            raise ModelLoadError(
                f"config declares {what} '{spec.name}' but the model's {what}s are: {', '.join(sorted(known))}"
            )
    return declared

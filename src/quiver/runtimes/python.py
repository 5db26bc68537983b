"""The plain Python runtime: a user class with ``load`` and ``predict``.

``<version>/model.py`` defines a class (``Model`` unless ``parameters.class`` says otherwise)::

    class Model:
        def load(self, version_dir: Path) -> None: ...
        def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

Inputs and outputs must be declared in the model's config, since there is no graph to read them from.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quiver.errors import InternalError, ModelLoadError
from quiver.repository.config import ModelConfig
from quiver.runtimes.base import Runtime, register_runtime


@register_runtime("python")
class PythonRuntime(Runtime):
    platform = "python"

    def __init__(self, model: Any, config: ModelConfig) -> None:
        assert config.inputs is not None and config.outputs is not None
        self.model = model
        self.inputs = config.inputs
        self.outputs = config.outputs

    @classmethod
    def load(cls, version_dir: Path, config: ModelConfig) -> PythonRuntime:
        if config.inputs is None or config.outputs is None:
            raise ModelLoadError(f"{config.source}: the python runtime needs 'inputs' and 'outputs' declared")
        path = version_dir / str(config.parameters.get("module", "model.py"))
        class_name = str(config.parameters.get("class", "Model"))
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such file")
        module_name = f"quiver_user_model_{config.name}_{version_dir.name}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"{path}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        try:
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            model = getattr(module, class_name)()
            model.load(version_dir)
        except AttributeError:
            raise ModelLoadError(f"{path}: defines no class {class_name!r}") from None
        except Exception as exc:
            raise ModelLoadError(f"{path}: loading failed: {type(exc).__name__}: {exc}") from None
        return cls(model, config)

    def infer(self, inputs: dict[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        results = self.model.predict(inputs)
        if not isinstance(results, dict):
            raise InternalError(
                f"model {type(self.model).__name__}.predict returned {type(results).__name__}, "
                "expected a dict of output name -> array"
            )
        missing = [n for n in output_names if n not in results]
        if missing:
            raise InternalError(f"model {type(self.model).__name__}.predict did not return outputs {missing}")
        return {n: np.asarray(results[n]) for n in output_names}

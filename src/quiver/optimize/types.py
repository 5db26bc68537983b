"""The whole contract of ``quiver.optimize``: a model artifact, a pass, and the context a pass runs in.

A pass turns one ``Artifact`` into another. ONNX passes (``stage = "onnx"``) read ``artifact.onnx`` and write
a new file; torch passes (``stage = "torch"``) change ``artifact.torch`` (pruning, distillation) and the
pipeline re-exports it to ONNX after the last torch pass. Recipes list torch passes before ONNX passes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

Feeds = dict[str, np.ndarray]
Stage = Literal["torch", "onnx"]
Task = Literal["classification", "regression", "embedding"]
# Model families decide which passes apply: "transformer" (HF encoder), "mlp" (torch Linear stack),
# "tree" (ONNX-ML tree ensemble), "generic" (any other ONNX graph).
Family = Literal["transformer", "mlp", "tree", "generic"]


@dataclass(frozen=True)
class Artifact:
    """One model on its way through a recipe. Immutable: a pass returns a new one with ``replace``."""

    onnx: Path
    family: Family
    task: Task
    torch: Any = None  # an nn.Module for torch passes (pruning, distillation), else None
    export: Callable[[Any, Path], None] | None = None  # (module, path) -> writes ONNX with the same I/O
    notes: tuple[str, ...] = ()  # things the report must say (e.g. "size only: no dense speedup")
    meta: Mapping[str, Any] = field(default_factory=dict)  # num_heads, hidden_size, tokenizer dir, ...

    def replace(self, **changes: Any) -> Artifact:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class PassContext:
    """What a pass may use: a scratch folder, calibration/training inputs, and run settings."""

    workdir: Path
    calibration: list[Feeds]  # model inputs, batches of a few rows; static int8 and recovery fine-tune
    train_inputs: list[Feeds]  # unlabeled inputs for fine-tune / distillation (may equal calibration)
    seed: int = 0
    threads: int = 2
    progress: bool = True
    log: Callable[[str], None] = print
    cache_dir: Path | None = None  # shared by all variants of a run (checkpoints); default: workdir

    @property
    def checkpoints(self) -> Path:
        return (self.cache_dir or self.workdir) / "checkpoints"


class Pass:
    """A named, registered model transformation with options. Subclasses set ``name``, ``stage`` and
    ``families`` and implement ``apply``; options come from the recipe (``int8-dynamic:per_channel=1``).

    Example::

        @register
        class Int8Dynamic(Pass):
            name = "int8-dynamic"
            def apply(self, model: Artifact, ctx: PassContext) -> Artifact: ...
    """

    name: ClassVar[str] = ""
    stage: ClassVar[Stage] = "onnx"
    families: ClassVar[tuple[Family, ...]] = ("transformer", "mlp", "tree", "generic")
    # Option names and their defaults; the recipe parser checks names and converts values to these types.
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"pass {self.name!r}: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.defaults)) or 'none'}"
            )
        self.options: dict[str, Any] = {**self.defaults, **options}

    def skip_reason(self, model: Artifact) -> str | None:
        """Why this pass cannot apply to ``model`` (None when it can)."""
        if model.family not in self.families:
            return f"{self.name} applies to {'/'.join(self.families)} models, not {model.family}"
        if self.stage == "torch" and model.torch is None:
            return f"{self.name} needs the PyTorch model (give a torch module or a Hugging Face folder)"
        return None

    def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
        raise NotImplementedError

    def spec(self) -> str:
        """The recipe text that rebuilds this pass with its non-default options."""
        changed = {k: v for k, v in self.options.items() if self.defaults.get(k) != v}
        if not changed:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in sorted(changed.items()))

    def label(self) -> str:
        """Like ``spec`` but short: long lists (excluded nodes) show as a count."""
        changed = {k: v for k, v in self.options.items() if self.defaults.get(k) != v}
        parts = [f"{k}={len(v)}" if k == "exclude" else f"{k}={_fmt(v)}" for k, v in sorted(changed.items())]
        return self.name + (":" + ",".join(parts) if parts else "")

    def out_path(self, model: Artifact, ctx: PassContext) -> Path:
        # distinct options -> distinct files: two variants of one pass never overwrite each other
        digest = hashlib.sha1(self.spec().encode()).hexdigest()[:6]
        return ctx.workdir / f"{model.onnx.stem.split('.')[0]}.{self.name}-{digest}.onnx"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return "|".join(str(v) for v in value)
    return str(value)

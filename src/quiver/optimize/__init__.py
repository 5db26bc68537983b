"""``quiver.optimize``: faster model variants by quantization, pruning and distillation, kept only when they
pass an accuracy gate on the user's data and a speed gate on this machine.

    from quiver.optimize import Recipe, optimize_path
    result, report = optimize_path(Path("model.onnx"), Path("eval.npz"), Path("repo"))

Passes are small registered classes (``quiver.optimize.types.Pass``); recipes compose them by name.
"""

from __future__ import annotations

from quiver.optimize.api import optimize_artifact, optimize_path
from quiver.optimize.pipeline import Result, Settings, Variant, optimize
from quiver.optimize.registry import PASSES, Recipe, get_pass, make_pass, register
from quiver.optimize.types import Artifact, Pass, PassContext

__all__ = [
    "PASSES",
    "Artifact",
    "Pass",
    "PassContext",
    "Recipe",
    "Result",
    "Settings",
    "Variant",
    "get_pass",
    "make_pass",
    "optimize",
    "optimize_artifact",
    "optimize_path",
    "register",
]

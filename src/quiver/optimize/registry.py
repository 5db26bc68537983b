"""Passes by name, and recipes: ``+``-joined pass specs such as ``graph+int8-dynamic:per_channel=1``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quiver.errors import InvalidInput
from quiver.optimize.types import Artifact, Pass

PASSES: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available to recipes under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in PASSES and PASSES[cls.name] is not cls:
        raise ValueError(f"pass name {cls.name!r} is already registered by {PASSES[cls.name].__qualname__}")
    PASSES[cls.name] = cls
    return cls


def get_pass(name: str) -> type[Pass]:
    _load_builtin()
    try:
        return PASSES[name]
    except KeyError:
        raise InvalidInput(f"unknown pass {name!r}; known passes: {', '.join(sorted(PASSES))}") from None


def make_pass(spec: str) -> Pass:
    """``"int8-static:method=entropy,per_channel=1"`` -> a configured pass."""
    name, _, opts = spec.strip().partition(":")
    cls = get_pass(name.strip())
    options: dict[str, Any] = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise InvalidInput(f"pass {name!r}: option {item!r} must look like key=value")
        if key not in cls.defaults:
            known = ", ".join(sorted(cls.defaults)) or "none"
            raise InvalidInput(f"pass {name!r}: unknown option {key!r}; known: {known}")
        options[key] = _convert(name, key, raw, cls.defaults[key])
    try:
        return cls(**options)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


@dataclass(frozen=True)
class Recipe:
    """An ordered list of passes: torch passes first, then ONNX passes. ``name`` labels the variant."""

    passes: tuple[Pass, ...]

    @classmethod
    def parse(cls, text: str) -> Recipe:
        specs = [s for s in text.split("+") if s.strip()]
        if not specs:
            raise InvalidInput("empty recipe; expected passes joined by '+', e.g. 'graph+int8-dynamic'")
        recipe = cls(tuple(make_pass(s) for s in specs))
        stages = [p.stage for p in recipe.passes]
        if "onnx" in stages and "torch" in stages[stages.index("onnx") :]:
            raise InvalidInput(f"recipe {text!r}: torch passes (pruning, distillation) must come first")
        return recipe

    @property
    def name(self) -> str:
        return "+".join(p.spec() for p in self.passes)

    def skip_reason(self, model: Artifact) -> str | None:
        for p in self.passes:
            reason = p.skip_reason(model)
            if reason:
                return reason
            if p.stage == "onnx":
                model = model.replace(torch=None)  # later torch passes cannot see an exported model
        return None


def _convert(pass_name: str, key: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, (list, tuple)):
            return tuple(v for v in raw.split("|") if v)
        return raw
    except ValueError:
        expected = type(default).__name__
        raise InvalidInput(f"pass {pass_name!r}: option {key}={raw!r} is not a valid {expected}") from None


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators.
    from quiver.optimize.passes import distill, graph, precision, prune, quantize  # noqa: F401

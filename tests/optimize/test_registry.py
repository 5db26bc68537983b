from __future__ import annotations

import pytest

from quiver.errors import InvalidInput
from quiver.optimize import PASSES, Pass, Recipe, make_pass, register
from quiver.optimize.types import Artifact, PassContext


def test_builtin_passes_registered() -> None:
    make_pass("graph")  # loads the built-ins
    assert {"graph", "int8-dynamic", "int8-static", "int4", "fp16", "bf16", "prune", "sparsify", "distill"} <= set(
        PASSES
    )


def test_options_are_typed_and_round_trip() -> None:
    p = make_pass("int8-static:method=entropy,per_channel=0,samples=16,op_types=MatMul|Gemm")
    assert p.options["method"] == "entropy"
    assert p.options["per_channel"] is False
    assert p.options["samples"] == 16
    assert p.options["op_types"] == ("MatMul", "Gemm")
    assert make_pass(p.spec()).options == p.options


def test_recipe_joins_passes() -> None:
    r = Recipe.parse("prune:sparsity=0.25+graph+int8-dynamic")
    assert [p.name for p in r.passes] == ["prune", "graph", "int8-dynamic"]
    assert r.name == "prune:sparsity=0.25+graph+int8-dynamic"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "unknown pass 'nope'"),
        ("int8-dynamic:colour=red", "unknown option 'colour'"),
        ("int8-static:samples=many", "not a valid int"),
        ("int8-static:method=median", "method must be one of"),
        ("graph+prune", "torch passes (pruning, distillation) must come first"),
        ("", "empty recipe"),
        ("int8-dynamic:per_channel", "must look like key=value"),
    ],
)
def test_bad_recipes_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        Recipe.parse(text)


def test_skip_reason_names_the_family(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tree = Artifact(onnx=tmp_path / "m.onnx", family="tree", task="classification")
    assert "applies to transformer" in (Recipe.parse("distill").skip_reason(tree) or "")
    assert "needs the PyTorch model" in (Recipe.parse("prune").skip_reason(tree.replace(family="mlp")) or "")
    assert Recipe.parse("graph").skip_reason(tree) is None


def test_custom_pass_registers_and_composes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    @register
    class Tag(Pass):
        name = "test-tag"
        defaults = {"text": "x"}

        def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
            return model.replace(notes=(*model.notes, self.options["text"]))

    r = Recipe.parse("test-tag:text=hello")
    art = Artifact(onnx=tmp_path / "m.onnx", family="generic", task="regression")
    ctx = PassContext(workdir=tmp_path, calibration=[], train_inputs=[])
    assert r.passes[0].apply(art, ctx).notes == ("hello",)
    with pytest.raises(ValueError, match="already registered"):
        register(type("Other", (Pass,), {"name": "test-tag"}))

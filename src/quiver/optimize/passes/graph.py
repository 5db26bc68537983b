"""Graph optimization: ONNX Runtime's offline optimizer, with transformer fusions for BERT-like encoders."""

from __future__ import annotations

import onnxruntime as ort

from quiver.optimize import _onnx
from quiver.optimize.registry import register
from quiver.optimize.types import Artifact, Pass, PassContext
from quiver.runtimes.onnx import CPU_DISABLED_OPTIMIZERS

_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
}


@register
class GraphOptimize(Pass):
    """Constant folding and operator fusion, saved to disk so the server loads the fused graph.

    Transformers go through ``onnxruntime.transformers.optimizer`` (Attention, BiasGelu, EmbedLayerNorm
    fusions); other graphs through the session optimizer at ``level`` (``extended`` keeps
    the file portable; ``all`` would bake in this CPU's memory layouts).
    """

    name = "graph"
    defaults = {"level": "extended", "attention": True}

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        if self.options["level"] not in _LEVELS:
            raise ValueError(f"pass 'graph': level must be one of {', '.join(_LEVELS)}")

    def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
        out = self.out_path(model, ctx)
        if model.family == "transformer" and "num_heads" in model.meta:
            from onnxruntime.transformers import optimizer
            from onnxruntime.transformers.fusion_options import FusionOptions

            fusion = FusionOptions("bert")
            fusion.enable_attention = bool(self.options["attention"])
            # Add + LayerNormalization stay unfused: ORT's CPU SkipLayerNormalization kernel is slower than
            # the two ops it replaces (see quiver.runtimes.onnx.CPU_DISABLED_OPTIMIZERS).
            fusion.enable_skip_layer_norm = False
            opt = optimizer.optimize_model(
                str(model.onnx),
                model_type="bert",
                num_heads=int(model.meta["num_heads"]),
                hidden_size=int(model.meta["hidden_size"]),
                optimization_options=fusion,
            )
            opt.save_model_to_file(str(out))
        else:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = _LEVELS[self.options["level"]]
            opts.optimized_model_filepath = str(out)
            opts.intra_op_num_threads = ctx.threads
            ort.InferenceSession(
                str(model.onnx),
                opts,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS),
            )
        _onnx.load(out)  # fail here, with the file named, if the optimizer wrote something unreadable
        return model.replace(onnx=out)

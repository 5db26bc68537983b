"""Half precision: fp16 compute, bf16 weight storage. The speed gate keeps them only where faster."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quiver.optimize import _onnx
from quiver.optimize.registry import register
from quiver.optimize.types import Artifact, Pass, PassContext


@register
class Fp16(Pass):
    """Float tensors to fp16, inputs/outputs kept fp32 (so every version has the same signature).
    Fast only where the CPU has native fp16 arithmetic (AVX512-FP16, AMX-FP16); the speed gate decides."""

    name = "fp16"
    families = ("transformer", "mlp", "generic")
    defaults = {"keep_io": True}

    def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        out = self.out_path(model, ctx)
        converted = convert_float_to_float16(
            onnx.load(str(model.onnx)), keep_io_types=bool(self.options["keep_io"]), disable_shape_infer=True
        )
        _onnx.save(converted, out)
        return model.replace(onnx=out)


@register
class Bf16Weights(Pass):
    """MatMul/Gemm weights stored as bfloat16 with a Cast to fp32 in front: half the file size.

    ONNX Runtime's CPU provider has no bf16 matrix kernels on x86, so compute stays fp32; the variant is
    smaller but not faster, and the speed gate says so unless ``--allow-size-only`` is given.
    """

    name = "bf16"
    families = ("transformer", "mlp", "generic")
    defaults = {"min_elements": 1024}

    def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
        proto = onnx.load(str(model.onnx))
        graph = proto.graph
        weights = {n.input[1] for n in graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1}
        casts = []
        for init in graph.initializer:
            if init.name not in weights or init.data_type != onnx.TensorProto.FLOAT:
                continue
            array = numpy_helper.to_array(init)
            if array.size < int(self.options["min_elements"]):
                continue
            bf16_name = init.name + "_bf16"
            # bfloat16 = the high 16 bits of fp32 (round to nearest even)
            bits = array.astype(np.float32).view(np.uint32)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
            tensor = helper.make_tensor(bf16_name, onnx.TensorProto.BFLOAT16, array.shape, rounded.tobytes(), raw=True)
            init.CopyFrom(tensor)
            casts.append(helper.make_node("Cast", [bf16_name], [bf16_name[:-5]], to=onnx.TensorProto.FLOAT))
        for i, cast in enumerate(casts):
            graph.node.insert(i, cast)
        out = self.out_path(model, ctx)
        _onnx.save(proto, out)
        return model.replace(onnx=out, notes=(*model.notes, "bf16: weights stored bf16, computed in fp32"))

"""Integer quantization: int8 dynamic, int8 static (calibrated), int4 weight-only MatMul.

Each pass takes ``exclude`` (node names kept in float); the pipeline fills it in when the accuracy gate
fails, from the nodes whose quantized activations drift most from the float ones (``quiver.optimize.debug``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnx

from quiver.optimize import _onnx
from quiver.optimize.registry import register
from quiver.optimize.types import Artifact, Feeds, Pass, PassContext

_EXTRA = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # fused contrib ops defeat shape inference


def _quant_type(code: str) -> Any:
    from onnxruntime.quantization import QuantType

    types = {"s8": QuantType.QInt8, "u8": QuantType.QUInt8}
    if code not in types:
        raise ValueError(f"expected s8 or u8, got {code!r}")
    return types[code]


class _Quantizer(Pass):
    # Node names the pipeline keeps in float after a failed accuracy gate.
    excludable = True

    def _common(self) -> dict[str, Any]:
        ops = list(self.options["op_types"]) or None
        return {
            "per_channel": bool(self.options["per_channel"]),
            "op_types_to_quantize": ops,
            # ORT's quantizer first rewrites Gemm as MatMul + Add, renaming the node "<name>_MatMul"
            "nodes_to_exclude": [m for n in self.options["exclude"] for m in (n, f"{n}_MatMul")],
            "weight_type": _quant_type(str(self.options["weights"])),
        }


@register
class Int8Dynamic(_Quantizer):
    """Weights int8 offline; activations quantized per batch at run time. No calibration data needed.

    ``per_channel=1`` keeps one scale per output channel: on MiniLM it lifts mean cosine from ~0.96 to
    ~0.99 at almost no cost in speed.
    """

    name = "int8-dynamic"
    defaults = {"per_channel": True, "weights": "s8", "op_types": (), "exclude": (), "reduce_range": False}

    def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
        from onnxruntime.quantization import quantize_dynamic

        out = self.out_path(model, ctx)
        logging.getLogger("root").setLevel(logging.ERROR)  # the quantizer's "run pre-processing" advice
        quantize_dynamic(
            str(model.onnx),
            str(out),
            reduce_range=bool(self.options["reduce_range"]),
            extra_options={**_EXTRA, "MatMulConstBOnly": True},
            **self._common(),
        )
        return model.replace(onnx=out)


@register
class Int8Static(_Quantizer):
    """Weights and activations int8 with scales calibrated on sample inputs (``method``: minmax, entropy,
    percentile). ``format=qdq`` writes QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses.
    ``float_outputs=1`` keeps the nodes that write the model's outputs in float: a uint8 softmax has only
    256 levels, which ties scores and costs ROC-AUC for nothing."""

    name = "int8-static"
    defaults = {
        "method": "minmax",
        "per_channel": True,
        "format": "qdq",
        "activations": "u8",
        "weights": "s8",
        "op_types": (),
        "exclude": (),
        "samples": 64,
        "float_outputs": True,
    }
    _METHODS = ("minmax", "entropy", "percentile")

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        if self.options["method"] not in self._METHODS:
            raise ValueError(f"pass 'int8-static': method must be one of {', '.join(self._METHODS)}")
        if self.options["format"] not in ("qdq", "qoperator"):
            raise ValueError("pass 'int8-static': format must be qdq or qoperator")

    def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

        if not ctx.calibration:
            raise ValueError("int8-static needs calibration inputs (give --data or --calibration)")
        out = self.out_path(model, ctx)
        source = _preprocess(model.onnx, ctx.workdir / f"{model.onnx.stem}.pre.onnx")
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[str(self.options["method"])]
        common = self._common()
        if self.options["float_outputs"]:
            proto = onnx.load(str(source))
            outputs = {o.name for o in proto.graph.output}
            tail = [n.name for n in proto.graph.node if n.name and set(n.output) & outputs]
            common["nodes_to_exclude"] = [*common["nodes_to_exclude"], *tail]
        logging.getLogger("root").setLevel(logging.ERROR)
        quantize_static(
            str(source),
            str(out),
            _Reader(ctx.calibration, int(self.options["samples"]), model.onnx),
            quant_format=QuantFormat.QDQ if self.options["format"] == "qdq" else QuantFormat.QOperator,
            activation_type=_quant_type(str(self.options["activations"])),
            calibrate_method=method,
            extra_options={**_EXTRA, "CalibMovingAverage": True},
            **common,
        )
        return model.replace(onnx=out)


@register
class Int4Weights(Pass):
    """Weight-only int4 for MatMul weights (``MatMulNBits``, blocks of ``block_size``): 1/8 of the fp32
    size. ``accuracy_level=4`` lets ONNX Runtime multiply in int8 (fast with VNNI); 0 dequantizes to fp32."""

    name = "int4"
    families = ("transformer", "mlp", "generic")
    defaults = {"block_size": 32, "symmetric": True, "accuracy_level": 4}

    def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        out = self.out_path(model, ctx)
        quant = MatMulNBitsQuantizer(
            onnx.load(str(model.onnx)),
            block_size=int(self.options["block_size"]),
            is_symmetric=bool(self.options["symmetric"]),
            accuracy_level=int(self.options["accuracy_level"]),
        )
        quant.process()
        _onnx.save(quant.model.model, out)
        return model.replace(onnx=out)


class _Reader:
    """ONNX Runtime's CalibrationDataReader over our calibration batches, one row at a time."""

    def __init__(self, batches: list[Feeds], limit: int, model_path: Path) -> None:
        names = {i.name for i in _onnx.io_specs(_onnx.load(model_path))[0]}
        rows: list[Feeds] = []
        for b in batches:
            n = len(next(iter(b.values())))
            rows.extend({k: v[i : i + 1] for k, v in b.items() if k in names} for i in range(n))
        self._rows = iter(rows[:limit])

    def get_next(self) -> Feeds | None:
        return next(self._rows, None)


def _preprocess(src: Path, dst: Path) -> Path:
    """ORT's recommended pre-processing (shape inference + folding); the original when it cannot run."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return dst
    except Exception:  # best effort: quantization works without it, only sometimes less well
        return src

"""Which quantized nodes hurt most: run the float and the quantized model on the same inputs with every
candidate node's input and output exposed, and score each node by the error it *adds*:
``rel_err(output) - max(rel_err(inputs))``, where ``rel_err = ||q - f|| / ||f||`` over the batch.

Quantizers keep a float node's tensor names (dynamic: the fused node writes the same output; QDQ: the
float tensor feeds its QuantizeLinear), so names match across the two graphs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from quiver.optimize import _onnx
from quiver.optimize.types import Feeds

QUANTIZABLE = ("MatMul", "Gemm", "Conv", "Attention", "EmbedLayerNormalization", "Gather", "FusedMatMul")


def rank_nodes(
    float_path: Path, quant_path: Path, feeds: Feeds, workdir: Path, threads: int = 2
) -> list[tuple[str, float]]:
    """Quantizable float nodes, worst first, with the relative error each adds."""
    fmodel = onnx.load(str(float_path))
    qmodel = onnx.load(str(quant_path))
    qnodes = {n.name: n for n in qmodel.graph.node if n.name}
    qnames = {o for n in qmodel.graph.node for o in n.output} | {i.name for i in qmodel.graph.input}
    fnames = {o for n in fmodel.graph.node for o in n.output} | {i.name for i in fmodel.graph.input}
    finit = {i.name for i in fmodel.graph.initializer}
    # float node -> the tensor to compare: the same-named quantized node's output (pre-processing may have
    # fused an activation into it, renaming its output), else the float node's own output name.
    outputs: dict[str, str] = {}
    for n in fmodel.graph.node:
        if n.op_type not in QUANTIZABLE or not n.name:
            continue
        q = qnodes.get(n.name)
        if q is not None and q.output and q.output[0] in fnames:
            outputs[n.name] = q.output[0]
        elif n.output[0] in qnames:
            outputs[n.name] = n.output[0]
    inputs = {
        n.name: [i for i in n.input if i in qnames and i not in finit] for n in fmodel.graph.node if n.name in outputs
    }
    tensors = sorted(set(outputs.values()) | {i for ins in inputs.values() for i in ins})
    fvals = _run_exposed(fmodel, tensors, feeds, workdir / "debug.float.onnx", threads)
    qvals = _run_exposed(qmodel, tensors, feeds, workdir / "debug.quant.onnx", threads)
    err = {}
    for t in tensors:
        f, q = fvals.get(t), qvals.get(t)
        if f is None or q is None or f.shape != q.shape or not np.issubdtype(f.dtype, np.floating):
            continue
        err[t] = float(np.linalg.norm(q - f) / max(float(np.linalg.norm(f)), 1e-12))
    scored = []
    for name, out in outputs.items():
        if out in err:
            upstream = max((err.get(i, 0.0) for i in inputs[name]), default=0.0)
            scored.append((name, err[out] - upstream))
    return sorted(scored, key=lambda x: -x[1])


def _run_exposed(
    model: onnx.ModelProto, names: list[str], feeds: Feeds, path: Path, threads: int
) -> dict[str, np.ndarray]:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    existing = {o.name for o in model.graph.output}
    produced = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    for name in names:
        if name in produced and name not in existing:
            model.graph.output.append(helper.make_empty_tensor_value_info(name))
    _onnx.save(model, path)
    sess = _onnx.session(path, threads)
    wanted = {i.name for i in sess.get_inputs()}
    out_names = [o.name for o in sess.get_outputs()]
    values = sess.run(out_names, {k: v for k, v in feeds.items() if k in wanted})
    return {n: v for n, v in zip(out_names, values, strict=True) if n in names}

"""Pruning. ``prune`` removes whole rows/columns so dense matrices get smaller (and faster), then fine-tunes
briefly to recover; ``sparsify`` zeroes single weights, which only makes the file compress better."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from quiver.optimize import _onnx
from quiver.optimize.registry import register
from quiver.optimize.types import Artifact, Pass, PassContext

SIZE_ONLY_NOTE = (
    "unstructured sparsity: zeros compress well but dense runtimes (ONNX Runtime CPU) do the same work, "
    "so it is not faster"
)


@register
class StructuredPrune(Pass):
    """Drop the least important hidden units (MLP), FFN neurons and attention heads (transformers).

    Importance of a unit = norm of its incoming row x norm of its outgoing column. ``sparsity`` is the
    fraction of hidden units / FFN neurons removed; ``heads`` the attention heads removed per layer.
    Then ``steps`` of fine-tuning to the original model's outputs on the training inputs.
    """

    name = "prune"
    stage = "torch"
    families = ("mlp", "transformer")
    defaults = {"sparsity": 0.5, "heads": 0, "steps": 200, "lr": 1e-3}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not 0.0 <= float(self.options["sparsity"]) < 1.0:
            raise ValueError("pass 'prune': sparsity must be in [0, 1)")

    def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
        from quiver.optimize import _torch

        teacher = _torch.clone(model.torch)
        student = _torch.clone(model.torch)
        meta = dict(model.meta)
        if model.family == "mlp":
            _prune_mlp(student, float(self.options["sparsity"]))
        else:
            heads = _prune_transformer(student, float(self.options["sparsity"]), int(self.options["heads"]))
            meta["num_heads"] = heads
        _torch.match_outputs(
            student,
            teacher,
            ctx.train_inputs,
            list(meta["input_names"]),
            int(self.options["steps"]),
            float(self.options["lr"]),
            ctx.seed,
            f"{self.name} recovery",
            progress=ctx.progress,
            cosine=model.task == "embedding",
        )
        return model.replace(torch=student, meta=meta)


def _prune_mlp(module: Any, sparsity: float) -> None:
    import torch
    from torch import nn

    if not isinstance(module, nn.Sequential):
        raise ValueError("prune: MLPs must be an nn.Sequential of Linear layers and activations")
    linear = [i for i, m in enumerate(module) if isinstance(m, nn.Linear)]
    for i, j in itertools.pairwise(linear):
        if any(sum(p.numel() for p in module[k].parameters()) for k in range(i + 1, j)):
            raise ValueError(f"prune: layer {i + 1} of the MLP has weights between two Linear layers")
        layer: Any = module[i]
        nxt: Any = module[j]  # layer.weight: [hidden, in]; nxt.weight: [out, hidden]
        score = layer.weight.norm(dim=1) * nxt.weight.norm(dim=0)
        keep = max(1, round(layer.out_features * (1 - sparsity)))
        idx = torch.argsort(score, descending=True)[:keep].sort().values
        module[i] = _slice(layer, idx, dim=0)
        module[j] = _slice(nxt, idx, dim=1)


def _prune_transformer(module: Any, sparsity: float, heads: int) -> int:
    import torch

    enc = module.encoder
    base = getattr(enc, enc.base_model_prefix, enc)
    layers = base.encoder.layer
    n_heads = base.config.num_attention_heads
    if not 0 <= heads < n_heads:
        raise ValueError(f"prune: heads must be in [0, {n_heads - 1}] for this model")
    for layer in layers:
        att, out = layer.attention.self, layer.attention.output
        if heads:
            d = att.attention_head_size
            # per head: norm of its q/k/v rows x norm of its output-projection columns
            qkv = torch.stack([att.query.weight, att.key.weight, att.value.weight]).view(3, n_heads, d, -1)
            o = out.dense.weight.view(-1, n_heads, d)
            score = qkv.pow(2).sum(dim=(0, 2, 3)).sqrt() * o.pow(2).sum(dim=(0, 2)).sqrt()
            kept = torch.argsort(score, descending=True)[: n_heads - heads].sort().values
            idx = (kept[:, None] * d + torch.arange(d)).flatten()
            att.query, att.key, att.value = (_slice(m, idx, 0) for m in (att.query, att.key, att.value))
            out.dense = _slice(out.dense, idx, 1)
            att.num_attention_heads = n_heads - heads
            att.all_head_size = len(idx)
        if sparsity > 0:
            up, down = layer.intermediate.dense, layer.output.dense
            score = up.weight.norm(dim=1) * down.weight.norm(dim=0)
            keep = max(1, round(up.out_features * (1 - sparsity)))
            idx = torch.argsort(score, descending=True)[:keep].sort().values
            layer.intermediate.dense = _slice(up, idx, 0)
            layer.output.dense = _slice(down, idx, 1)
    return n_heads - heads


def _slice(layer: Any, idx: Any, dim: int) -> Any:
    """A new Linear keeping output rows (dim 0) or input columns (dim 1) ``idx``."""
    from torch import nn

    w = layer.weight.detach().index_select(dim, idx).clone()
    new = nn.Linear(w.shape[1], w.shape[0], bias=layer.bias is not None)
    new.weight.data.copy_(w)
    if layer.bias is not None:
        b = layer.bias.detach()
        new.bias.data.copy_(b.index_select(0, idx) if dim == 0 else b)
    return new


@register
class MagnitudePrune(Pass):
    """Zero the ``sparsity`` fraction of smallest-magnitude weights in each MatMul/Gemm weight.
    Size only: see ``SIZE_ONLY_NOTE``; the report shows the compressed size that it does shrink."""

    name = "sparsify"
    families = ("transformer", "mlp", "generic")
    defaults = {"sparsity": 0.5}

    def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
        proto = onnx.load(str(model.onnx))
        weights = {n.input[1] for n in proto.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1}
        for init in proto.graph.initializer:
            if init.name in weights and init.data_type == onnx.TensorProto.FLOAT:
                w = numpy_helper.to_array(init).copy()
                cut = np.quantile(np.abs(w), float(self.options["sparsity"]))
                w[np.abs(w) < cut] = 0.0
                init.CopyFrom(numpy_helper.from_array(w, init.name))
        out = self.out_path(model, ctx)
        _onnx.save(proto, out)
        return model.replace(onnx=out, notes=(*model.notes, SIZE_ONLY_NOTE))

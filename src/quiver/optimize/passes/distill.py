"""Knowledge distillation: a shallower student initialized from the teacher's own layers, trained to
reproduce the teacher's outputs on the user's unlabeled inputs."""

from __future__ import annotations

from typing import Any

from quiver.optimize.registry import register
from quiver.optimize.types import Artifact, Pass, PassContext


@register
class Distill(Pass):
    """Keep ``layers`` evenly spaced encoder layers (always the first and last), then train ``steps``
    batches against the teacher's outputs (``hidden_weight`` > 0: also its last hidden state at every
    token). Fixed seed, progress bar, and a checkpoint every ``checkpoint_every`` steps in the run's
    cache folder: rerunning the same command resumes, and recipes sharing the student train it once."""

    name = "distill"
    stage = "torch"
    families = ("transformer",)
    defaults = {"layers": 3, "steps": 1500, "lr": 5e-4, "checkpoint_every": 100, "hidden_weight": 0.0}

    def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
        from quiver.optimize import _torch

        teacher = _torch.clone(model.torch)
        student = _torch.clone(model.torch)
        kept = _shrink(student, int(self.options["layers"]))
        tag = _torch.fingerprint(student, seed=ctx.seed, **self.options, batches=len(ctx.train_inputs))
        _torch.match_outputs(
            student,
            teacher,
            ctx.train_inputs,
            list(model.meta["input_names"]),
            int(self.options["steps"]),
            float(self.options["lr"]),
            ctx.seed,
            f"distill {len(kept)} layers",
            checkpoint=ctx.checkpoints / f"distill-{tag}.pt",
            checkpoint_every=int(self.options["checkpoint_every"]),
            progress=ctx.progress,
            cosine=model.task == "embedding",
            hidden_weight=float(self.options["hidden_weight"]),
        )
        meta = {**model.meta, "student_layers": kept}
        return model.replace(torch=student, meta=meta)


def _shrink(module: Any, n: int) -> list[int]:
    from torch import nn

    enc = module.encoder
    base = getattr(enc, enc.base_model_prefix, enc)
    layers = base.encoder.layer
    total = len(layers)
    if not 1 <= n < total:
        raise ValueError(f"distill: layers must be in [1, {total - 1}] for this {total}-layer model")
    keep = sorted({round(i * (total - 1) / max(1, n - 1)) for i in range(n)}) if n > 1 else [total - 1]
    base.encoder.layer = nn.ModuleList([layers[i] for i in keep])
    base.config.num_hidden_layers = n
    return keep

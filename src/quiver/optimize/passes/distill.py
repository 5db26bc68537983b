"""Knowledge distillation: a shallower student initialized from the teacher's own layers, trained to
reproduce the teacher's outputs on the user's unlabeled inputs."""

from __future__ import annotations

from typing import Any

from quiver.optimize.registry import register
from quiver.optimize.types import Artifact, Feeds, Pass, PassContext


@register
class Distill(Pass):
    """Keep ``layers`` encoder layers of the teacher, then train ``steps`` batches against its outputs
    (``hidden_weight`` > 0: also its last hidden state at every token). The kept layers are chosen greedily:
    the first and the last, then one at a time the layer whose student reproduces the teacher best on a few
    training batches (for all-MiniLM-L6-v2 and 3 layers: 0, 4, 5, which starts at cosine 0.68 where evenly
    spaced 0, 2, 5 starts at 0.55 and stays behind after training). Fixed seed, progress bar, and a
    checkpoint every ``checkpoint_every`` steps in the run's cache folder: rerunning the same command
    resumes, and recipes sharing the student train it once."""

    name = "distill"
    stage = "torch"
    families = ("transformer",)
    defaults = {"layers": 3, "steps": 1500, "lr": 5e-4, "checkpoint_every": 100, "hidden_weight": 0.0}

    def apply(self, model: Artifact, ctx: PassContext) -> Artifact:
        from quiver.optimize import _torch

        names = list(model.meta["input_names"])
        teacher = _torch.clone(model.torch)
        student = _torch.clone(model.torch)
        kept = _shrink(student, teacher, int(self.options["layers"]), ctx.train_inputs, names)
        tag = _torch.fingerprint(student, seed=ctx.seed, **self.options, batches=len(ctx.train_inputs), kept=kept)
        _torch.match_outputs(
            student,
            teacher,
            ctx.train_inputs,
            names,
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


def _shrink(module: Any, teacher: Any, n: int, batches: list[Feeds], names: list[str], probe: int = 4) -> list[int]:
    """Keep ``n`` of the encoder layers of ``module``, chosen greedily by how well the shrunk model
    reproduces ``teacher`` (mean cosine of the outputs) on ``probe`` batches spread over ``batches``."""
    import torch
    from torch import nn

    from quiver.optimize._torch import to_tensors, trim_padding

    enc = module.encoder
    base = getattr(enc, enc.base_model_prefix, enc)
    layers = base.encoder.layer
    total = len(layers)
    if not 1 <= n < total:
        raise ValueError(f"distill: layers must be in [1, {total - 1}] for this {total}-layer model")
    sample = [to_tensors(trim_padding(b), names) for b in batches[:: max(1, len(batches) // probe)][:probe]]
    if n == 1:
        keep = [total - 1]
    elif not sample:  # no data to choose by: evenly spaced
        keep = sorted({round(i * (total - 1) / (n - 1)) for i in range(n)})
    else:
        keep = [0, total - 1]
        with torch.no_grad():
            wanted = [teacher(*args).flatten(1) for args in sample]

            def fit(kept: list[int]) -> float:
                base.encoder.layer = nn.ModuleList([layers[i] for i in kept])
                pairs = zip((module(*args).flatten(1) for args in sample), wanted, strict=True)
                return float(torch.cat([nn.functional.cosine_similarity(g, w) for g, w in pairs]).mean())

            while len(keep) < n:
                keep = max((sorted([*keep, i]) for i in range(total) if i not in keep), key=fit)
    base.encoder.layer = nn.ModuleList([layers[i] for i in keep])
    base.config.num_hidden_layers = n
    return keep

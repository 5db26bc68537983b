"""PyTorch helpers (imported only by torch passes and sources): export, the sentence-embedding wrapper,
and the short output-matching training loop that pruning recovery and distillation share."""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quiver.optimize.types import Feeds


class SentenceEncoder(nn.Module):
    """A Hugging Face encoder plus mean pooling over the attention mask and L2 normalization,
    i.e. what sentence-transformers computes for all-MiniLM-L6-v2. ``pooling="cls"`` takes token 0;
    ``pooling="none"`` returns the classifier logits of a ``*ForSequenceClassification`` model."""

    def __init__(self, encoder: nn.Module, input_names: list[str], pooling: str = "mean") -> None:
        super().__init__()
        self.encoder = encoder
        self.input_names = input_names
        self.pooling = pooling

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.forward_with_hidden(*inputs)[0]

    def forward_with_hidden(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, last hidden states): distillation matches every token, not just the pooled vector."""
        kwargs = dict(zip(self.input_names, inputs, strict=True))
        out = self.encoder(**kwargs, output_hidden_states=self.pooling == "none")
        if self.pooling == "none":
            return out.logits, out.hidden_states[-1]  # [batch, classes], [batch, seq, hidden]
        hidden = out.last_hidden_state  # [batch, seq, hidden]
        if self.pooling == "cls":
            emb = hidden[:, 0]
        else:
            mask = kwargs["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [batch, seq, 1]
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [batch, hidden]
        return nn.functional.normalize(emb, dim=-1), hidden


def export(module: nn.Module, path: Path, example: Feeds, input_names: list[str], output_names: list[str]) -> None:
    """Export with every input's first dim (and the sequence dim of 2-D int inputs) dynamic."""
    module.eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in input_names)
    axes: dict[str, dict[int, str]] = {}
    for n in input_names:
        axes[n] = {0: "batch", 1: "sequence"} if example[n].ndim == 2 and example[n].dtype == np.int64 else {0: "batch"}
    for n in output_names:
        axes[n] = {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def to_tensors(feeds: Feeds, names: list[str]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names)


def trim_padding(feeds: Feeds) -> Feeds:
    """Cut right padding shared by the whole batch: training on 20 real tokens, not 128."""
    mask = feeds.get("attention_mask")
    if mask is None or mask.ndim != 2:
        return feeds
    keep = max(1, int(mask.sum(axis=1).max()))
    return {k: (v[:, :keep] if v.ndim == 2 and v.shape[1] == mask.shape[1] else v) for k, v in feeds.items()}


class Progress:
    """A one-line progress bar on stderr: ``distill  412/1500 [####......] loss 0.0123 3.1 it/s``."""

    def __init__(self, label: str, total: int, start: int = 0, enabled: bool = True) -> None:
        self.label, self.total, self.n, self.enabled = label, total, start, enabled
        self.t0, self.n0 = time.perf_counter(), start
        self.tty = sys.stderr.isatty()
        self.every = 10 if self.tty else max(10, total // 10)  # logs get ~10 lines, terminals a live bar

    def update(self, n: int, **info: float) -> None:
        self.n = n
        if not self.enabled or (n % self.every and n != self.total):
            return
        frac = n / max(1, self.total)
        rate = (n - self.n0) / max(1e-9, time.perf_counter() - self.t0)
        extra = " ".join(f"{k} {v:.4g}" for k, v in info.items())
        bar = "#" * int(frac * 20) + "." * (20 - int(frac * 20))
        end = "\n" if (n >= self.total or not self.tty) else ""
        sys.stderr.write(f"\r{self.label} {n:>5}/{self.total} [{bar}] {extra} {rate:.1f} it/s{end}")
        sys.stderr.flush()


def match_outputs(
    student: nn.Module,
    teacher: nn.Module | Callable[..., torch.Tensor],
    batches: list[Feeds],
    names: list[str],
    steps: int,
    lr: float,
    seed: int,
    label: str,
    checkpoint: Path | None = None,
    checkpoint_every: int = 100,
    progress: bool = True,
    cosine: bool = False,
    hidden_weight: float = 0.0,
) -> nn.Module:
    """Train ``student`` to reproduce ``teacher``'s outputs on unlabeled batches (MSE; plus 1-cosine for
    embeddings). Fixed seed; when ``checkpoint`` is given, saves every ``checkpoint_every`` steps and
    resumes from it. Teacher outputs are computed once per batch and cached. ``hidden_weight`` > 0 also
    matches the last hidden state of every real token (both modules need ``forward_with_hidden``)."""
    if steps <= 0 or not batches:
        return student
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    batches = [trim_padding(b) for b in batches]
    hidden = hidden_weight > 0 and hasattr(student, "forward_with_hidden") and hasattr(teacher, "forward_with_hidden")
    targets: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad():  # not inference_mode: targets take part in autograd-tracked losses
        for b in batches:
            args = to_tensors(b, names)
            if hidden:  # only the real tokens' hidden states are kept: [tokens, hidden]
                out, states = _with_hidden(teacher, args)
                targets.append((out.clone(), states[_real_tokens(b)].clone()))
            else:
                targets.append((teacher(*args).detach().clone(),))
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.05, 1 - s / steps))
    order = rng.permutation(steps) % len(batches)
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        student.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
    bar = Progress(label, steps, start, progress)
    student.train()
    for step in range(start, steps):
        i = int(order[step])
        inputs = to_tensors(batches[i], names)
        outs: tuple[torch.Tensor, ...] = _with_hidden(student, inputs) if hidden else (student(*inputs),)
        want = targets[i]
        loss = nn.functional.mse_loss(outs[0], want[0]) * (100.0 if cosine else 1.0)
        if cosine:
            loss = loss + (1 - nn.functional.cosine_similarity(outs[0], want[0], dim=-1)).mean()
        if hidden:
            loss = loss + hidden_weight * nn.functional.mse_loss(outs[1][_real_tokens(batches[i])], want[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(step + 1, loss=loss.item())
        if checkpoint is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
            _save(checkpoint, student, opt, sched, step + 1)
    student.eval()
    return student


def _real_tokens(feeds: Feeds) -> torch.Tensor:
    return torch.from_numpy(feeds["attention_mask"]).bool()  # [batch, seq]


def _with_hidden(module: Any, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(module.forward_with_hidden(*inputs))


def _save(path: Path, model: nn.Module, opt: Any, sched: Any, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {
        "model": model.state_dict(),
        "optim": opt.state_dict(),
        "sched": sched.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "step": step,
    }
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a kill mid-save leaves the previous checkpoint intact


def fingerprint(module: nn.Module, **settings: Any) -> str:
    """A short hash of the starting weights' shapes and the settings: a checkpoint resumes only its own run."""
    shapes = [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
    blob = json.dumps([shapes, settings], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def clone(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).eval()

"""Recipes -> variants -> gates. ``optimize`` builds every recipe, scores it against the fp32 baseline on
held-out data (accuracy gate, with automatic float fallback for the worst int8 nodes), times it in a fresh
process (speed gate), and returns every variant with the reason it was kept or rejected."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quiver.optimize import _onnx, speed
from quiver.optimize.data import Dataset
from quiver.optimize.debug import rank_nodes
from quiver.optimize.metrics import Scores, score
from quiver.optimize.passes.prune import SIZE_ONLY_NOTE
from quiver.optimize.passes.quantize import _Quantizer
from quiver.optimize.registry import Recipe
from quiver.optimize.types import Artifact, Pass, PassContext


@dataclass(frozen=True)
class Settings:
    """Gate and measurement settings (``quiver optimize`` flags of the same names)."""

    max_drop: float = 1.0  # allowed loss of the primary metric, in points (0-100 scale)
    min_speedup: float = 1.05  # p50 at batch 1 or throughput must beat the baseline by this factor
    threads: int = 2
    seed: int = 0
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    budget_s: float = 1.0  # timing seconds per batch size
    allow_size_only: bool = False  # keep smaller-but-not-faster variants (sparsify, bf16)
    exclude_rounds: int = 4  # int8 retries keeping 1, 2, 4, 8 ... worst nodes in float
    eval_batch: int = 32
    progress: bool = True
    isolate: bool = True  # time each variant in a fresh process (honest peak memory)

    def __post_init__(self) -> None:
        if self.max_drop < 0:
            raise ValueError("max_drop must be >= 0")
        if self.min_speedup < 1.0:
            raise ValueError("min_speedup must be >= 1.0")
        if self.threads < 1:
            raise ValueError("threads must be >= 1")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError("batch_sizes must be positive")


@dataclass
class Variant:
    name: str  # short label for tables
    recipe: str  # full recipe text, rebuilds this variant
    path: Path | None = None
    artifact: Artifact | None = None
    scores: Scores | None = None
    drop: float = 0.0
    timing: speed.Timing | None = None
    kept: bool = False
    reason: str = ""
    notes: tuple[str, ...] = ()
    build_s: float = 0.0

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recipe": self.recipe,
            "kept": self.kept,
            "reason": self.reason,
            "metrics": None if self.scores is None else {"primary": self.scores.primary, **self.scores.values},
            "drop": round(self.drop, 4),
            "timing": None if self.timing is None else self.timing.as_dict(),
            "notes": list(self.notes),
            "build_s": round(self.build_s, 2),
        }


@dataclass
class Result:
    model: str
    task: str
    baseline: Variant
    variants: list[Variant]
    machine: dict[str, Any]
    settings: Settings
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> list[Variant]:
        return [v for v in self.variants if v.kept]


def optimize(
    source: Artifact,
    data: Dataset,
    recipes: list[Recipe],
    workdir: Path,
    settings: Settings,
    train: Dataset | None = None,
    model_name: str = "model",
    log: Callable[[str], None] = print,
) -> Result:
    """Build, score and time every recipe against ``source`` (the fp32 baseline) on ``data``."""
    train = train or data
    ctx = PassContext(
        workdir=workdir,
        calibration=train.batches(8)[:16],
        train_inputs=train.batches(32, by_length=True),
        seed=settings.seed,
        threads=settings.threads,
        progress=settings.progress,
        log=log,
        cache_dir=workdir,  # a distilled student is trained once and reused by every recipe that starts with it
    )
    out_name = str(source.meta.get("output") or "")
    reference = _outputs(source.onnx, data, settings, out_name)
    rows = {k: v[: max(settings.batch_sizes)] for k, v in data.inputs.items()}
    base = Variant("baseline (fp32)", "", source.onnx, source, kept=True, reason="original model")
    base.scores = score(source.task, reference, reference, data.labels)
    base.timing = speed.measure(
        source.onnx, rows, settings.threads, settings.batch_sizes, settings.budget_s, settings.isolate
    )
    log(f"baseline: {base.scores.primary} {base.scores.value:.2f}, p50 {base.timing.p50_b1_ms:.3f} ms")
    variants = []
    for i, recipe in enumerate(recipes):
        v = Variant(_label(recipe), recipe.name)
        variants.append(v)
        reason = recipe.skip_reason(source)
        if reason:
            v.reason = f"skipped: {reason}"
            log(f"{v.name}: {v.reason}")
            continue
        t0 = time.perf_counter()
        try:
            chain = build(recipe, source, dataclasses.replace(ctx, workdir=workdir / f"v{i + 1:02d}"))
        except (ValueError, RuntimeError) as exc:
            v.reason = f"failed: {exc}"
            log(f"{v.name}: {v.reason}")
            continue
        model = chain[-1]
        v.scores = score(source.task, _outputs(model.onnx, data, settings, out_name), reference, data.labels)
        v.drop = base.scores.value - v.scores.value
        if v.drop > settings.max_drop:
            model, v = _exclude_worst(recipe, chain, v, base, data, reference, settings, out_name, ctx, i, workdir, log)
            variants[-1] = v
        v.build_s = time.perf_counter() - t0
        v.path, v.artifact, v.notes = model.onnx, model, model.notes
        v.timing = speed.measure(
            model.onnx, rows, settings.threads, settings.batch_sizes, settings.budget_s, settings.isolate, source.onnx
        )
        v.kept, v.reason = _gate(v, base, settings)
        log(f"{v.name}: {'KEPT' if v.kept else 'rejected'} ({v.reason})")
    return Result(model_name, source.task, base, variants, speed.cpu_features(), settings)


def build(recipe: Recipe, source: Artifact, ctx: PassContext) -> list[Artifact]:
    """Apply the passes in order; returns the artifact before each pass and the final one."""
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    chain = [source]
    model = source
    dirty = False  # a torch pass changed the module since the last export
    for p in recipe.passes:
        if p.stage == "onnx" and dirty:
            chain[-1] = model = _export(model, ctx)
            dirty = False
        model = p.apply(model, ctx)
        dirty = dirty or p.stage == "torch"
        chain.append(model)
    if dirty:
        chain[-1] = model = _export(model, ctx)
    return chain


def _export(model: Artifact, ctx: PassContext) -> Artifact:
    if model.export is None:
        raise ValueError("this model cannot be re-exported after a torch pass")
    path = ctx.workdir / "exported.onnx"
    model.export(model.torch, path)
    return model.replace(onnx=path, torch=None)


def _exclude_worst(
    recipe: Recipe,
    chain: list[Artifact],
    v: Variant,
    base: Variant,
    data: Dataset,
    reference: np.ndarray,
    settings: Settings,
    out_name: str,
    ctx: PassContext,
    i: int,
    workdir: Path,
    log: Callable[[str], None],
) -> tuple[Artifact, Variant]:
    """Keep the nodes that add the most quantization error in float: 1, 2, 4, ... until the gate passes."""
    qi = max((k for k, p in enumerate(recipe.passes) if isinstance(p, _Quantizer)), default=None)
    if qi is None or settings.exclude_rounds == 0:
        return chain[-1], v
    before = chain[qi]
    if qi > 0:  # earlier passes (pruning, distillation) may be what loses accuracy: float cannot fix that
        fscores = score(before.task, _outputs(before.onnx, data, settings, out_name), reference, data.labels)
        fdrop = base.scores.value - fscores.value if base.scores else 0.0
        if fdrop > settings.max_drop:
            log(f"{v.name}: the float model before quantization already drops {fdrop:.2f}; not retrying")
            return chain[-1], v
    rdir = workdir / f"v{i + 1:02d}" / "exclude"
    rdir.mkdir(parents=True, exist_ok=True)
    probe = {k: val[:16] for k, val in data.inputs.items()}
    ranked = [n for n, _ in rank_nodes(before.onnx, chain[qi + 1].onnx, probe, rdir, settings.threads)]
    model = chain[-1]
    k = 1
    for _ in range(settings.exclude_rounds):
        if not ranked or k >= len(ranked):  # at least one node stays quantized
            break
        excluded = tuple(ranked[:k])
        p = recipe.passes[qi]
        redo: list[Pass] = [type(p)(**{**p.options, "exclude": excluded}), *recipe.passes[qi + 1 :]]
        rctx = dataclasses.replace(ctx, workdir=rdir / f"k{k}")
        rctx.workdir.mkdir(parents=True, exist_ok=True)
        model = before
        for q in redo:
            model = q.apply(model, rctx)
        scores = score(
            base.artifact.task if base.artifact else "classification",
            _outputs(model.onnx, data, settings, out_name),
            reference,
            data.labels,
        )
        drop = base.scores.value - scores.value if base.scores else 0.0
        log(f"{v.name}: {k} node(s) kept in float -> drop {drop:.3f}")
        full = Recipe((*recipe.passes[:qi], *redo))
        v = Variant(_label(full), full.name, scores=scores, drop=drop)
        if drop <= settings.max_drop:
            break
        k *= 2
    return model, v


def _gate(v: Variant, base: Variant, s: Settings) -> tuple[bool, str]:
    assert v.timing is not None and base.timing is not None and v.scores is not None  # set by the caller
    if v.drop > s.max_drop:
        return False, f"accuracy: {v.scores.primary} drops {v.drop:.2f} points > max {s.max_drop}"
    lat = v.timing.speedup_b1 or base.timing.p50_b1_ms / v.timing.p50_b1_ms
    thr = v.timing.speedup_throughput or v.timing.throughput / base.timing.throughput
    size_only = any(SIZE_ONLY_NOTE in n for n in v.notes)  # same dense work: any "speedup" is timing noise
    if (lat >= s.min_speedup or thr >= s.min_speedup) and not size_only:
        return True, f"{lat:.2f}x batch-1 latency, {thr:.2f}x throughput, drop {v.drop:.2f}"
    smaller = v.timing.compressed_bytes < 0.9 * base.timing.compressed_bytes
    if smaller and s.allow_size_only:
        return (
            True,
            f"size only: {v.timing.compressed_bytes / base.timing.compressed_bytes:.2f}x compressed size, not faster",
        )
    why = f"not faster: {lat:.2f}x latency, {thr:.2f}x throughput (needs {s.min_speedup}x)"
    if size_only:
        why = f"not faster by construction ({lat:.2f}x latency measured); size only"
    if v.notes:
        why += "; " + "; ".join(v.notes)
    return False, why


def _outputs(path: Path, data: Dataset, s: Settings, name: str) -> np.ndarray:
    sess = _onnx.session(path, s.threads)
    return _onnx.run_batches(sess, data.batches(s.eval_batch), name or None)


def _label(recipe: Recipe) -> str:
    return re.sub(r"\s+", "", "+".join(p.label() for p in recipe.passes))

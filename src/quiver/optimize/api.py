"""One call from files to a written repository: what ``quiver optimize`` and the benchmark run."""

from __future__ import annotations

from pathlib import Path

from quiver.errors import InvalidInput
from quiver.optimize import _onnx, data, repository
from quiver.optimize import report as _report
from quiver.optimize.cli import DEFAULT_RECIPES
from quiver.optimize.pipeline import Result, Settings, optimize
from quiver.optimize.registry import Recipe
from quiver.optimize.sources import load_path
from quiver.optimize.types import Artifact, Task


def optimize_path(
    model: Path,
    data_path: Path,
    repo: Path,
    *,
    name: str | None = None,
    recipes: list[str] | None = None,
    task: Task | None = None,
    label_column: str | None = None,
    train_data: Path | None = None,
    max_drop: float = 1.0,
    min_speedup: float = 1.05,
    allow_size_only: bool = False,
    threads: int = 2,
    seq_len: int = 128,
    n_features: int | None = None,
    seed: int = 0,
    budget_s: float = 1.0,
    workdir: Path = Path(".quiver-optimize"),
    report: Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Result, Path]:
    name = name or model.stem
    work = workdir / name
    source = load_path(model, work, task, seq_len, n_features)
    if task:
        source = source.replace(task=task)
    return optimize_artifact(
        source,
        data_path,
        repo,
        name=name,
        recipes=recipes,
        label_column=label_column,
        train_data=train_data,
        settings=_settings(max_drop, min_speedup, allow_size_only, threads, seed, budget_s, progress),
        workdir=work,
        report=report,
        overwrite=overwrite,
    )


def optimize_artifact(
    source: Artifact,
    data_path: Path | data.Dataset,
    repo: Path,
    *,
    name: str,
    recipes: list[str] | None = None,
    label_column: str | None = None,
    train_data: Path | data.Dataset | None = None,
    settings: Settings | None = None,
    workdir: Path | None = None,
    report: Path | None = None,
    overwrite: bool = False,
) -> tuple[Result, Path]:
    """Gate ``recipes`` (default: the family's set) on the data, write the repository and the HTML report."""
    settings = settings or Settings()
    work = workdir or Path(".quiver-optimize") / name
    specs = _onnx.io_specs(_onnx.load(source.onnx))[0]
    tok, seq = source.meta.get("tokenizer_dir"), int(source.meta.get("seq_len", 128))
    evaluation = (
        data_path if isinstance(data_path, data.Dataset) else data.load(data_path, specs, tok, seq, label_column)
    )
    if train_data is None:
        if len(evaluation) < 4:
            raise InvalidInput(f"need at least 4 evaluation rows to hold half out; got {len(evaluation)}")
        train, evaluation = evaluation.split(0.5, settings.seed)
    else:
        train = (
            train_data if isinstance(train_data, data.Dataset) else data.load(train_data, specs, tok, seq, label_column)
        )
    parsed = [Recipe.parse(r) for r in (recipes or DEFAULT_RECIPES[source.family])]
    result = optimize(source, evaluation, parsed, work, settings, train=train, model_name=name)
    repository.write(result, repo, overwrite=overwrite)
    return result, _report.write_html(result, report or repo / name / "report.html")


def _settings(
    max_drop: float, min_speedup: float, allow_size_only: bool, threads: int, seed: int, budget_s: float, progress: bool
) -> Settings:
    try:
        return Settings(
            max_drop=max_drop,
            min_speedup=min_speedup,
            allow_size_only=allow_size_only,
            threads=threads,
            seed=seed,
            budget_s=budget_s,
            progress=progress,
        )
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None

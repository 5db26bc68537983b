"""From a model to a repository the server reads: gates, records, config, report, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from quiver.optimize import Settings, optimize_artifact
from quiver.optimize.cli import EPILOG
from quiver.optimize.data import Dataset
from quiver.optimize.sources import from_estimator, from_torch
from quiver.repository.config import parse_config

FAST = Settings(budget_s=0.05, batch_sizes=(1, 16), progress=False, isolate=False)


@pytest.fixture(scope="module")
def mlp_result(mlp: object, tabular: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp_path = tmp_path_factory.mktemp("pipeline")
    x, y = tabular
    src = from_torch(mlp, {"input": x[:2]}, tmp_path / "work", "classification", ("probabilities",))
    data = Dataset({"input": x[300:]}, y[300:])
    train = Dataset({"input": x[:300]})
    recipes = ["int8-dynamic", "prune:sparsity=0.5,steps=50", "sparsify:sparsity=0.9", "fp16"]
    result, html = optimize_artifact(
        src,
        data,
        tmp_path / "repo",
        name="fraud",
        recipes=recipes,
        train_data=train,
        settings=FAST,
        workdir=tmp_path / "work",
    )
    return result, html, tmp_path / "repo" / "fraud"


def test_repository_layout_and_records(mlp_result) -> None:  # type: ignore[no-untyped-def]
    result, _, folder = mlp_result
    index = json.loads((folder / "variants.json").read_text())
    versions = {r["version"]: r for r in index["versions"]}
    assert versions[1]["recipe"] == "baseline"
    assert len(versions) == 1 + len(result.kept)
    assert len(index["rejected"]) == len(result.variants) - len(result.kept)
    for version, rec in versions.items():
        own = json.loads((folder / str(version) / "variant.json").read_text())
        assert (folder / str(version) / "model.onnx").exists()
        assert own["timing"]["p50_b1_ms"] > 0 and own["metrics"]["primary"] == "roc_auc"
        assert own["machine"]["features"] and own["recipe"] == rec["recipe"]
    config = parse_config("fraud", folder / "config.toml")  # the server's own parser accepts it
    assert config.version_policy.kind == "all"
    raw = tomllib.loads((folder / "config.toml").read_text())
    assert raw["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]


def test_gates_give_reasons(mlp_result) -> None:  # type: ignore[no-untyped-def]
    result, _, _ = mlp_result
    by_name = {v.name.split(":")[0]: v for v in result.variants}
    sparse = by_name["sparsify"]
    assert not sparse.kept
    assert ("not faster" in sparse.reason and "dense runtimes" in sparse.reason) or "accuracy" in sparse.reason
    for v in result.variants:
        assert v.reason
        if v.kept:
            assert v.drop <= FAST.max_drop
            assert v.timing is not None and result.baseline.timing is not None
            assert v.timing.speedup_b1 and v.timing.speedup_throughput  # paired with the baseline
            assert max(v.timing.speedup_b1, v.timing.speedup_throughput) >= FAST.min_speedup


def test_report_has_pareto_svg_and_table(mlp_result) -> None:  # type: ignore[no-untyped-def]
    result, html, _ = mlp_result
    page = html.read_text()
    assert page.count("<svg") == 2 and "<polyline" in page and "<script" not in page
    for v in result.variants:
        assert v.name.split(":")[0] in page
    from quiver.optimize.report import table

    text = table(result)
    assert "baseline (fp32)" in text and "avx" in text


def test_failed_int8_gate_keeps_worst_nodes_in_float(tabular: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    """With no allowed drop, int8 fails; the retry keeps the worst node(s) in float and records them."""
    from sklearn.neural_network import MLPClassifier

    x, y = tabular
    model = MLPClassifier((48, 24), max_iter=200, random_state=0).fit(x[:300], y[:300])
    src = from_estimator(model, 30, tmp_path / "work")
    settings = Settings(budget_s=0.05, batch_sizes=(1,), progress=False, isolate=False, max_drop=0.0, min_speedup=1.0)
    data = Dataset({"input": x[300:]}, y[300:])
    logs: list[str] = []
    from quiver.optimize.pipeline import optimize
    from quiver.optimize.registry import Recipe

    result = optimize(
        src, data, [Recipe.parse("int8-static:per_channel=0,method=minmax")], tmp_path / "w", settings, log=logs.append
    )
    v = result.variants[0]
    assert any("kept in float" in line for line in logs), logs
    assert "exclude=" in v.recipe
    assert v.drop <= 0.0 or "accuracy" in v.reason


def test_tree_models_convert_and_match(tabular: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    import lightgbm
    import xgboost

    from quiver.optimize._onnx import run_batches, session

    x, y = tabular
    for i, model in enumerate(
        [
            lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(x[:300], y[:300]),
            xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(x[:300], y[:300]),
        ]
    ):
        art = from_estimator(model, 30, tmp_path / f"t{i}")
        assert art.family == "tree" and art.task == "classification"
        probs = run_batches(session(art.onnx), [{"input": x[300:]}], art.meta["output"])
        np.testing.assert_allclose(probs, model.predict_proba(x[300:]), atol=1e-4)


def test_sklearn_mlp_becomes_prunable_torch(tabular: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    from sklearn.neural_network import MLPClassifier

    from quiver.optimize._onnx import run_batches, session

    x, y = tabular
    model = MLPClassifier((16,), max_iter=100, random_state=0).fit(x[:300], y[:300])
    art = from_estimator(model, 30, tmp_path)
    assert art.family == "mlp" and art.torch is not None
    probs = run_batches(session(art.onnx), [{"input": x[300:]}])
    np.testing.assert_allclose(probs, model.predict_proba(x[300:]), atol=1e-5)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quiver.cli", "optimize", *args], capture_output=True, text=True)


def test_cli_help_documents_every_flag() -> None:
    out = _cli("--help")
    assert out.returncode == 0
    for flag in (
        "--data",
        "--train-data",
        "--repo",
        "--recipe",
        "--max-drop",
        "--min-speedup",
        "--allow-size-only",
        "--threads",
        "--seq-len",
        "--workdir",
        "--report",
        "--overwrite",
        "--list-passes",
        "--task",
    ):
        assert flag in out.stdout
    assert "int8-static" in out.stdout and "sparsify" in out.stdout and EPILOG.splitlines()[0] in out.stdout


def test_cli_bad_inputs_get_clear_errors(tmp_path: Path, tabular: tuple[np.ndarray, np.ndarray]) -> None:
    out = _cli(str(tmp_path / "missing.onnx"), "--data", "x.npz", "--repo", str(tmp_path))
    assert out.returncode == 1 and "does not exist" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    out = _cli(str(tmp_path / "junk.onnx"), "--data", "x.npz", "--repo", str(tmp_path))
    assert out.returncode == 1 and "not a readable ONNX model" in out.stderr
    out = _cli("--repo", str(tmp_path))
    assert out.returncode == 2 and "missing" in out.stderr
    out = _cli("--list-passes")
    assert out.returncode == 0 and "int8-dynamic" in out.stdout


def test_cli_end_to_end_with_joblib_and_csv(tabular: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    x, y = tabular
    joblib.dump(LogisticRegression(max_iter=200).fit(x[:300], y[:300]), tmp_path / "lr.joblib")
    rows = [",".join([*(f"f{i}" for i in range(30)), "label"])]
    rows += [",".join([*(f"{v:.5f}" for v in r), str(int(t))]) for r, t in zip(x[300:], y[300:], strict=True)]
    (tmp_path / "eval.csv").write_text("\n".join(rows) + "\n")
    out = _cli(
        str(tmp_path / "lr.joblib"),
        "--data",
        str(tmp_path / "eval.csv"),
        "--repo",
        str(tmp_path / "repo"),
        "--recipe",
        "graph",
        "--budget",
        "0.05",
        "--workdir",
        str(tmp_path / "w"),
        "--no-progress",
    )
    assert out.returncode == 0, out.stderr
    assert "baseline (fp32)" in out.stdout and (tmp_path / "repo" / "lr" / "report.html").exists()
    out = _cli(
        str(tmp_path / "lr.joblib"),
        "--data",
        str(tmp_path / "eval.csv"),
        "--repo",
        str(tmp_path / "repo"),
        "--recipe",
        "graph",
        "--workdir",
        str(tmp_path / "w"),
    )
    assert out.returncode == 1 and "--overwrite" in out.stderr

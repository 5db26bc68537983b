from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quiver.errors import InvalidInput
from quiver.optimize._onnx import IOSpec
from quiver.optimize.data import load
from quiver.optimize.metrics import retrieval_agreement, score
from quiver.optimize.report import pareto

SPEC = [IOSpec("input", "FP32", (-1, 3))]


def test_npz_csv_and_labels(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.savez(tmp_path / "d.npz", x=x, label=np.array([0, 1, 0, 1]))
    d = load(tmp_path / "d.npz", SPEC)
    assert d.inputs["input"].dtype == np.float32 and len(d) == 4 and list(d.labels) == [0, 1, 0, 1]
    (tmp_path / "d.csv").write_text("a,b,c,label\n1,2,3,0\n4,5,6,1\n")
    d = load(tmp_path / "d.csv", SPEC)
    assert d.inputs["input"].shape == (2, 3) and list(d.labels) == [0, 1]
    train, held = load(tmp_path / "d.npz", SPEC).split(0.5, seed=0)
    assert len(train) == 2 and len(held) == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.csv", "a,b,label\n1,2,0\n", r"input 'input': expected shape \[-1, 3\], got \[1, 2\]"),
        ("bad2.csv", "a,b,c\n1,x,3\n", "every cell must be a number"),
        ("bad.json", "{}", "unsupported data file"),
        ("bad.txt", "hello\n", "text data needs a text model"),
    ],
)
def test_bad_data_says_what_is_wrong(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(InvalidInput, match=message):
        load(tmp_path / name, SPEC)


def test_npz_missing_input_and_label_count(tmp_path: Path) -> None:
    specs = [IOSpec("a", "FP32", (-1, 2)), IOSpec("b", "INT64", (-1, 2))]
    np.savez(tmp_path / "d.npz", a=np.zeros((2, 2)))
    with pytest.raises(InvalidInput, match="no data for model input"):
        load(tmp_path / "d.npz", specs)
    np.savez(tmp_path / "e.npz", x=np.zeros((3, 3)), label=np.zeros(2))
    with pytest.raises(InvalidInput, match="2 labels for 3 rows"):
        load(tmp_path / "e.npz", SPEC)


def test_classification_metrics() -> None:
    y = np.array([0, 0, 1, 1])
    ref = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    s = score("classification", ref, ref, y)
    assert s.primary == "roc_auc" and s.value == 100.0 and s.values["agreement"] == 100.0
    worse = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    w = score("classification", worse, ref, y)
    assert w.values["roc_auc"] < 100 and w.values["agreement"] == 50.0
    assert score("classification", worse, ref).primary == "agreement"  # no labels


def test_embedding_and_regression_metrics() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 8))
    noisy = ref + 0.01 * rng.standard_normal((50, 8))
    s = score("embedding", noisy, ref)
    assert s.primary == "cosine" and 99.9 < s.value <= 100.0
    assert s.values["retrieval@10"] > 90
    assert retrieval_agreement(ref, rng.standard_normal((50, 8)), 10) < 0.5
    r = score("regression", ref[:, :1] + 0.1, ref[:, :1])
    assert r.primary == "fit" and r.values["rmse"] == pytest.approx(0.1)


def test_pareto_front() -> None:
    pts = [(1.0, 90.0), (2.0, 95.0), (3.0, 94.0), (0.5, 80.0), (2.5, 99.0)]
    assert pareto(pts) == [3, 0, 1, 4]

"""`quiver plan` end to end: real `quiver serve` processes per candidate, the real load generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quiver.cli import main
from quiver.repository.config import parse_config
from quiver.zoo.tabular import random_mlp_onnx
from support import write_model


@pytest.mark.slow
@pytest.mark.e2e
def test_plan_writes_the_chosen_config_a_record_and_a_report(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "mlp", random_mlp_onnx((30, 16, 2)), "max_batch_size = 8\n")
    out = tmp_path / "out"
    code = main(
        [
            "plan",
            "mlp",
            "--repository",
            str(repo),
            "--slo-p99-ms",
            "200",
            "--rate",
            "50",
            "--batch-sizes",
            "1,4",
            "--delays-ms",
            "0,1",
            "--instances",
            "1",
            "--threads",
            "1",
            "--max-fraction",
            "1",
            "--warmup-s",
            "0.3",
            "--window-s",
            "0.5",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    record = json.loads((out / "plan.json").read_text())
    assert record["space_size"] == 3 and record["chosen"]["meets_goal"] is True
    kinds = [m["kind"] for m in record["measurements"]]
    assert kinds[0] == "probe" and "load" in kinds
    config = parse_config("mlp", repo / "mlp" / "config.toml")
    chosen = record["chosen"]["config"]
    assert config.max_batch_size == chosen["max_batch_size"] and config.version_policy.select([1]) == [1]
    assert "<svg" in (out / "plan.html").read_text()


def test_plan_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "nope", "--repository", str(tmp_path), "--slo-p99-ms", "5", "--rate", "1"]) == 2
    assert "no folder" in capsys.readouterr().err

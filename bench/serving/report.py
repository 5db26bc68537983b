"""The results table, the issue's acceptance ratios, and ``RESULTS.md``."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.serving.inprocess import BaselinePoint

HEADER = ("server", "config", "model", "conc", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "errors", "other CPU%")


@dataclass(frozen=True)
class Row:
    server: str
    config: str
    model: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float | None
    errors: int
    other_cpu_pct: float = 0.0  # CPU neither the server nor wrk used in the window (others' work), % of a core
    failure: str = ""  # why the configuration could not be measured
    threads: dict[str, float] = field(default_factory=dict)  # server CPU µs/req: main thread vs the rest
    mean_batch: float | None = None  # Quiver: requests per model execution over warm-up + window

    def cells(self) -> tuple[str, ...]:
        if self.failure:
            head = (self.server, self.config, self.model, str(self.concurrency), "FAILED", self.failure[:60])
            return head + ("",) * (len(HEADER) - len(head))
        cpu = f"{self.cpu_us_per_req:.0f}" if self.cpu_us_per_req is not None else "-"
        return (
            self.server, self.config, self.model, str(self.concurrency), f"{self.rps:.0f}",
            f"{self.p50_ms:.2f}", f"{self.p99_ms:.2f}", cpu, str(self.errors), f"{self.other_cpu_pct:.0f}",
        )  # fmt: skip


def table(rows: list[Row], markdown: bool) -> str:
    cells = [HEADER, *(r.cells() for r in rows)]
    if markdown:
        lines = ["| " + " | ".join(c) + " |" for c in cells]
        lines.insert(1, "|" + "|".join("---" for _ in HEADER) + "|")
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(v.rjust(w) if i > 2 else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths, strict=True)))
        for c in cells
    )


def _best(rows: list[Row], server: str | None, model: str, conc: int, peers: bool = False) -> Row | None:
    ok = [
        r for r in rows
        if not r.failure and r.errors == 0 and r.model == model and r.concurrency == conc
        and ((r.server != "quiver") if peers else (r.server == server))
    ]  # fmt: skip
    return max(ok, key=lambda r: r.rps, default=None)


def acceptance(rows: list[Row], baseline: list[BaselinePoint]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, detail, passed) for each performance line of issue 2."""
    out: list[tuple[str, str, str, bool | None]] = []
    q64, p64 = _best(rows, "quiver", "mlp", 64), _best(rows, None, "mlp", 64, peers=True)
    if q64 and p64:
        ratio = q64.rps / p64.rps
        peer = f"{p64.server} {p64.config}"
        out.append(
            (
                "MLP c=64: Quiver req/s >= 3x best peer",
                f"{ratio:.2f}x",
                f"Quiver {q64.rps:.0f} vs {peer} {p64.rps:.0f} req/s",
                ratio >= 3.0,
            )
        )
        out.append(
            (
                "MLP c=64: Quiver p99 <= that peer's p99",
                f"{q64.p99_ms:.2f} ms vs {p64.p99_ms:.2f} ms",
                peer,
                q64.p99_ms <= p64.p99_ms,
            )
        )
    else:
        out.append(("MLP c=64: Quiver vs best peer", "n/a", "a side was not measured", None))
    if q64 and q64.cpu_us_per_req is not None:
        out.append(
            (
                "MLP c=64: server CPU <= 100 µs/req",
                f"{q64.cpu_us_per_req:.0f} µs/req",
                "utime+stime of the server process tree / requests",
                q64.cpu_us_per_req <= 100,
            )
        )
    q1 = _best(rows, "quiver", "mlp", 1)
    if q1:
        out.append(("MLP c=1: p50 <= 0.5 ms", f"{q1.p50_ms:.3f} ms", f"config {q1.config}", q1.p50_ms <= 0.5))
    q8 = _best(rows, "quiver", "minilm", 8)
    reference = next((p for p in baseline if p.kind == "reference"), None)
    sweep_max = max((p.items_per_s for p in baseline if p.kind == "sweep"), default=0.0)
    if q8 and reference:
        ratio = q8.rps / reference.items_per_s
        where = (
            f"Quiver {q8.config} {q8.rps:.1f} vs in-process {reference.items_per_s:.1f} seq/s (batch "
            f"{reference.batch}, {reference.sessions} session(s) x {reference.threads} thread(s); "
            f"vs the sweep's max {sweep_max:.1f}: {q8.rps / sweep_max:.1%})"
        )
        out.append(("MiniLM c=8: Quiver >= 97% of in-process ORT", f"{ratio:.1%}", where, ratio >= 0.97))
    return out


def _thread_lines(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        if r.server == "quiver" and r.threads and not r.failure:
            split = ", ".join(f"{name} {us:.0f}" for name, us in sorted(r.threads.items(), key=lambda kv: -kv[1]))
            batch = f"; mean batch {r.mean_batch:.2f}" if r.mean_batch is not None else ""
            lines.append(f"- {r.config} {r.model} c={r.concurrency}: {split}{batch}")
    return lines


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("quiver", "onnxruntime", "numpy", "onnx", "torch", "transformers"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed (run from src)" if dist == "quiver" else "not installed"
    root = Path(__file__).resolve().parents[2]
    for venv, dists in (
        (".venv-mlserver", ("mlserver", "uvicorn", "fastapi")),
        (".venv-litserve", ("litserve", "uvicorn", "fastapi")),
    ):
        for dist in dists:
            found[f"{dist} ({venv})"] = _venv_version(root / venv, dist)
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    found["wrk"] = (wrk.stdout or wrk.stderr).split(" [")[0].strip()
    return found


def _venv_version(venv: Path, dist: str) -> str:
    code = f"from importlib.metadata import version; print(version({dist!r}))"
    result = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    return result.stdout.strip() or "?"


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import os

    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB RAM, {platform.system()} {platform.release()}"


def results_md(
    rows: list[Row],
    baseline: list[BaselinePoint],
    meta: dict[str, Any],
) -> str:
    checks = acceptance(rows, baseline)
    mark = {True: "PASS", False: "FAIL", None: "n/a"}
    parts = [
        "# Serving benchmark (issue 2, Performance)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']} · wall time {meta['wall_s'] / 60:.1f} min · windows: {meta['warmup_s']:g} s warm-up + "
        f"{meta['duration_s']:g} s measured per concurrency  ",
        f"Machine: {machine()}  ",
        f"Load average before the run: {meta['loadavg']} (the machine is shared; see Notes)",
        "",
        "## Acceptance",
        "",
        "| target | measured | detail | result |",
        "|---|---|---|---|",
        *(f"| {t} | {m} | {d} | {mark[p]} |" for t, m, d, p in checks),
        "",
        "## All configurations",
        "",
        table(rows, markdown=True),
        "",
        "Load: `wrk -t1 -cC -d<duration> --latency -s bench/serving/post.lua` (closed loop, one wrk thread), "
        "every server on 127.0.0.1 with the same V2 JSON body. CPU µs/req: utime+stime of the server process "
        "and all its descendants (/proc/<pid>/stat) over the measured window, divided by requests completed. "
        "`errors` counts socket errors, timeouts and non-2xx answers; rows with errors do not count for the "
        "acceptance lines. `other CPU%`: CPU time used during the window by neither the server nor wrk "
        "(other people's work on this shared machine), in % of one core (200% = both cores): a row with a "
        "high value was measured on a busy machine.",
        "",
        "## Where Quiver's CPU goes (µs per request)",
        "",
        "The server's main thread runs the event loop (HTTP parsing, JSON decode/encode, batching); the other "
        "threads are the model instances' executor threads and ONNX Runtime's intra-op pools.",
        "",
        *_thread_lines(rows),
        "",
        "## In-process ONNX Runtime baseline (MiniLM, sequences/s)",
        "",
        "| batch | sessions x threads | spin | seq/s | measured | other CPU% |",
        "|---|---|---|---|---|---|",
        *(
            f"| {p.batch} | {p.sessions} x {p.threads} | {p.spin} | {p.items_per_s:.1f} | {p.kind} "
            f"| {p.other_cpu_pct:.0f} |"
            for p in baseline
        ),
        "",
        "`sweep`: 2 s per point. `before`/`after`: the sweep's best point for a full window right before and "
        "after Quiver's MiniLM runs; `reference` (their mean) is what the acceptance line uses.",
        "",
        "## Configurations",
        "",
        *meta["config_notes"],
        "",
        "## Versions",
        "",
        *(f"- {k}: {v}" for k, v in versions().items()),
        "",
        "## Notes",
        "",
        *meta["notes"],
        "",
    ]
    return "\n".join(parts)

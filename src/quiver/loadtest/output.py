"""What ``quiver bench`` writes: a table on stdout, JSON (everything), CSV (one row per load level), and an
optional HTML report (latency percentiles vs throughput across the levels)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quiver.loadtest.runner import Measurement
from quiver.report import Axes, Page, Series, chart

CSV_FIELDS = (
    "load",
    "offered_rps",
    "throughput_rps",
    "goodput_rps",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p99.9_ms",
    "mean_ms",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "requests",
    "errors",
    "error_kinds",
    "unfinished",
    "stable",
    "windows",
    "server_queue_mean_ms",
    "server_compute_mean_ms",
    "server_batch_mean",
    "client_cpu_us_per_request",
)


def csv_row(m: Measurement) -> dict[str, Any]:
    s = m.summary
    server = m.server or {}
    return {
        "load": m.load,
        "offered_rps": m.offered_rps if m.offered_rps is not None else "",
        "throughput_rps": round(s.throughput_rps, 3),
        "goodput_rps": round(s.goodput_rps, 3) if s.goodput_rps is not None else "",
        **{f"{k}_ms": round(s.latency_ms.get(k, float("nan")), 4) for k in ("p50", "p90", "p95", "p99", "p99.9")},
        "mean_ms": round(s.latency_ms.get("mean", float("nan")), 4),
        "ttft_p50_ms": round(s.ttft_ms["p50"], 4) if s.ttft_ms else "",
        "ttft_p99_ms": round(s.ttft_ms["p99"], 4) if s.ttft_ms else "",
        "requests": s.requests,
        "errors": s.requests - s.ok,
        "error_kinds": json.dumps(s.errors, sort_keys=True) if s.errors else "",
        "unfinished": m.unfinished,
        "stable": m.stable,
        "windows": len(m.windows),
        "server_queue_mean_ms": round(server["queue"]["mean"], 4) if "queue" in server else "",
        "server_compute_mean_ms": round(server["compute"]["mean"], 4) if "compute" in server else "",
        "server_batch_mean": round(server["batch_size"]["mean"], 3) if "batch_size" in server else "",
        "client_cpu_us_per_request": round(m.client.get("cpu_us_per_request", 0.0), 2),
    }


def write_csv(path: str | Path, results: Sequence[Measurement]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for m in results:
            writer.writerow(csv_row(m))


def write_json(path: str | Path, header: dict[str, Any], results: Sequence[Measurement]) -> None:
    Path(path).write_text(json.dumps({**header, "results": [m.as_dict() for m in results]}, indent=2) + "\n")


def table(results: Sequence[Measurement]) -> str:
    """A fixed-width table of the levels for the terminal."""
    head = f"{'load':<36} {'req/s':>9} {'good/s':>9} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8} {'err':>6}"
    lines = [head + "   (latency in ms)"]
    for m in results:
        s = m.summary
        lat = s.latency_ms
        good = f"{s.goodput_rps:9.1f}" if s.goodput_rps is not None else f"{'-':>9}"
        lines.append(
            f"{m.load:<36} {s.throughput_rps:9.1f} {good} {lat.get('p50', float('nan')):8.3f} "
            f"{lat.get('p90', float('nan')):8.3f} {lat.get('p99', float('nan')):8.3f} "
            f"{lat.get('p99.9', float('nan')):8.3f} {s.requests - s.ok:6d}"
        )
        if m.server:
            parts = [f"{k} {v['mean']:.3f}" for k, v in m.server.items() if k != "batch_size"]
            if "batch_size" in m.server:
                parts.append(f"batch {m.server['batch_size']['mean']:.2f}")
            lines.append(f"{'':<4}server mean ms: " + ", ".join(parts))
        if s.errors:
            lines.append(f"{'':<4}errors: " + ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())))
        if s.ttft_ms:
            lines.append(f"{'':<4}time to first token p50 {s.ttft_ms['p50']:.3f} ms, p99 {s.ttft_ms['p99']:.3f} ms")
        if not m.stable:
            lines.append(f"{'':<4}note: windows did not stabilize within {len(m.windows)} windows")
    return "\n".join(lines)


def html_report(title: str, header: dict[str, Any], results: Sequence[Measurement], slo_ms: float | None) -> str:
    page = Page(title)
    page.preformatted(json.dumps(header, indent=2))
    pts = {
        k: [(m.summary.throughput_rps, m.summary.latency_ms.get(k, float("nan"))) for m in results]
        for k in ("p50", "p90", "p99", "p99.9")
    }
    series = [Series(k, sorted(v)) for k, v in pts.items()]
    hlines = [(slo_ms, f"SLO {slo_ms:g} ms")] if slo_ms else []
    axes = Axes("throughput (req/s)", "latency (ms)", "Latency vs throughput", log_y=True, hlines=hlines)
    page.figure(chart(series, axes), "One point per load level; percentiles over the stable windows.")
    page.heading("Levels")
    rows = [[r[f] for f in CSV_FIELDS[:12]] for r in map(csv_row, results)]
    page.table(list(CSV_FIELDS[:12]), rows)
    for m in results:
        page.heading(f"Windows: {m.load}")
        win = [
            (i + 1, w.throughput_rps, w.latency_ms.get("p50", 0.0), w.latency_ms.get("p99", 0.0))
            for i, w in enumerate(m.windows)
        ]
        page.table(["window", "req/s", "p50 ms", "p99 ms"], win)
    return page.render()

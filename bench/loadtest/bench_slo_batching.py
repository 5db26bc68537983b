"""Acceptance harness for SLO-aware batching (the batcher is the server's; this only measures it):
under a bursty open-loop load at ~80% of capacity on MiniLM, SLO-aware batching (``slo_p99_ms`` in the
model's config.toml) must reach higher goodput than the best fixed ``max_queue_delay_ms`` in {0, 1, 5, 20}
and keep the p99 of *accepted* requests within the SLO. Same arrival schedule (seeded) for every config.

    flock /tmp/quiver-bench.lock .venv/bin/python bench/loadtest/bench_slo_batching.py --slo-p99-ms 100

Capacity is measured first (closed loop at saturation with the largest batch and delay 0); the load is
``--load-fraction`` of it. Needs the server to accept ``slo_p99_ms`` (it refuses unknown keys otherwise).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from quiver import __version__
from quiver.loadtest import Arrivals, Endpoint, LoadSpec, WindowSpec, measure, v2_workload
from quiver.plan.repo import read_config, to_toml

HERE = Path(__file__).resolve().parent
PORT = 8941


def serve(repo: Path, model: str, settings: dict[str, Any]) -> subprocess.Popen[bytes]:
    base = read_config(repo, model)
    (repo / model / "config.toml").write_text(to_toml({**base, **settings}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quiver.cli",
            "serve",
            str(repo),
            "--port",
            str(PORT),
            "--grpc-port",
            "-1",
            "--log-level",
            "warning",
        ]
    )
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"quiver serve exited ({proc.returncode}) with {settings}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/v2/models/{model}/ready", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("quiver serve did not get ready in 60 s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slo-p99-ms", type=float, default=100.0)
    ap.add_argument("--load-fraction", type=float, default=0.8)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--window-s", type=float, default=5.0)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--repo", help="an existing repository holding MiniLM (default: build one)")
    ap.add_argument("--model", default="minilm")
    args = ap.parse_args()
    repo = Path(args.repo) if args.repo else Path(tempfile.mkdtemp(prefix="quiver-slo-"))
    if not args.repo:
        from quiver.zoo.minilm import write_minilm_entry

        write_minilm_entry(repo, args.model, seq_len=args.seq_len)
    common = {"max_batch_size": args.max_batch, "queue_capacity": 4096}
    endpoint = Endpoint("127.0.0.1", PORT)

    proc = serve(repo, args.model, {**common, "max_queue_delay_ms": 0.0})
    try:
        workload = v2_workload(endpoint, args.model, shapes={})
        sat = measure(endpoint, workload, LoadSpec(concurrency=4 * args.max_batch), WindowSpec(2.0, 3.0, 2, 4, 2))
    finally:
        proc.terminate()
        proc.wait(10)
    capacity = sat.summary.throughput_rps
    rate = args.load_fraction * capacity
    print(f"capacity {capacity:.1f} req/s -> bursty load at {rate:.1f} req/s", flush=True)
    configs: list[tuple[str, dict[str, Any]]] = [
        (f"fixed {d:g} ms", {**common, "max_queue_delay_ms": float(d)}) for d in (0, 1, 5, 20)
    ] + [(f"SLO-aware ({args.slo_p99_ms:g} ms)", {**common, "slo_p99_ms": args.slo_p99_ms})]
    rows: list[dict[str, Any]] = []
    slo_metrics: list[str] = []
    for name, settings in configs:
        proc = serve(repo, args.model, settings)
        try:
            wl = v2_workload(endpoint, args.model)
            load = LoadSpec(arrivals=Arrivals(rate, "bursty", seed=11), timeout_s=30.0)
            spec = WindowSpec(3.0, args.window_s, args.windows, args.windows, args.windows)
            m = measure(endpoint, wl, load, spec, slo_ms=args.slo_p99_ms, metrics_model=args.model)
            if "slo_p99_ms" in settings:  # what the policy learned and decided, for the record
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as response:
                    text = response.read().decode()
                slo_metrics = [line for line in text.splitlines() if line.startswith("quiver_slo_")]
                print("\n".join(slo_metrics), flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
        s = m.summary
        rows.append(
            {
                "config": name,
                "goodput_rps": s.goodput_rps,
                "throughput_rps": s.throughput_rps,
                "p99_accepted_ms": s.latency_ms.get("p99"),
                "errors": s.errors,
                "server": m.server,
            }
        )
        print(
            f"{name}: goodput {s.goodput_rps:.1f}/s, p99 (accepted) {s.latency_ms.get('p99', 0):.1f} ms, "
            f"errors {s.errors}",
            flush=True,
        )
    fixed = [r for r in rows if r["config"].startswith("fixed")]
    best = max(fixed, key=lambda r: r["goodput_rps"] or 0.0)
    slo = rows[-1]
    ok = (slo["goodput_rps"] or 0) > (best["goodput_rps"] or 0) and (slo["p99_accepted_ms"] or 1e9) <= args.slo_p99_ms
    table = "\n".join(
        ["| config | goodput req/s | throughput req/s | p99 accepted ms | errors |", "|---|---|---|---|---|"]
        + [
            f"| {r['config']} | {r['goodput_rps']:.1f} | {r['throughput_rps']:.1f} | {r['p99_accepted_ms'] or 0:.1f} "
            f"| {json.dumps(r['errors'])} |"
            for r in rows
        ]
    )
    verdict = (
        f"SLO-aware goodput {slo['goodput_rps']:.1f} vs best fixed ({best['config']}) "
        f"{best['goodput_rps']:.1f}; p99 of accepted {slo['p99_accepted_ms'] or 0:.1f} ms vs SLO "
        f"{args.slo_p99_ms:g}: {'PASS' if ok else 'FAIL'}"
    )
    print(table, verdict, sep="\n")
    cmd = "flock /tmp/quiver-bench.lock .venv/bin/python bench/loadtest/bench_slo_batching.py " + " ".join(sys.argv[1:])
    (HERE / "RESULTS-slo-batching.md").write_text(
        f"# SLO-aware batching vs fixed queue delays\n\nCommand: `{cmd.strip()}`\n\nquiver {__version__}, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}. MiniLM seq {args.seq_len}, max batch "
        f"{args.max_batch}, bursty open loop (4x peaks 20% of each second) at {args.load_fraction:.0%} of the "
        f"measured capacity ({capacity:.1f} req/s).\n\n{table}\n\n{verdict}\n\n"
        "The SLO-aware server's `quiver_slo_*` metrics at the end of its run:\n\n```\n"
        + "\n".join(slo_metrics)
        + "\n```\n"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

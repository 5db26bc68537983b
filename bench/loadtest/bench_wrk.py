"""Acceptance benchmark for `quiver bench`: agreement with wrk (req/s and p50 within 10%) against the same
Quiver endpoint, and the request rate one client core can drive (against a trivial local responder).

    flock /tmp/quiver-bench.lock .venv/bin/python bench/loadtest/bench_wrk.py

Both tools run closed loop with the same connections and the same request body, alternately (wrk, bench,
wrk, bench) so drift on the shared machine hits both.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from quiver import __version__
from quiver.loadtest import Endpoint, LoadSpec, WindowSpec, measure, v2_workload
from quiver.loadtest.payload import Workload
from quiver.loadtest.selftest import client_capacity
from quiver.zoo.layout import write_model_entry
from quiver.zoo.tabular import random_mlp_onnx

HERE = Path(__file__).resolve().parent
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, body: bytes, connections: int, seconds: int) -> tuple[float, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return rps, float(value) * _UNITS[unit]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk")
        return 2
    repo = Path(tempfile.mkdtemp(prefix="quiver-wrk-"))
    write_model_entry(repo, "mlp", random_mlp_onnx((30, 16, 2)), config={"max_batch_size": 8})
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quiver.cli",
            "serve",
            str(repo),
            "--port",
            "8937",
            "--grpc-port",
            "-1",
            "--log-level",
            "warning",
        ]
    )
    rows = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen("http://127.0.0.1:8937/v2/models/mlp/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        endpoint = Endpoint("127.0.0.1", 8937)
        request = v2_workload(endpoint, "mlp", distinct=1).requests[0]
        body = request.split(b"\r\n\r\n", 1)[1]
        workload = Workload((request,))
        windows = WindowSpec(1.0, args.seconds / 3, 3, 3, 3)
        for r in range(args.rounds):
            w_rps, w_p50 = wrk("http://127.0.0.1:8937/v2/models/mlp/infer", body, args.connections, args.seconds)
            m = measure(endpoint, workload, LoadSpec(concurrency=args.connections), windows)
            rows.append((r + 1, w_rps, w_p50, m.summary.throughput_rps, m.summary.latency_ms["p50"]))
            print(
                f"round {r + 1}: wrk {w_rps:.0f} req/s p50 {w_p50:.3f} ms | quiver bench "
                f"{m.summary.throughput_rps:.0f} req/s p50 {m.summary.latency_ms['p50']:.3f} ms",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(repo, ignore_errors=True)
    w_rps = sum(r[1] for r in rows) / len(rows)
    w_p50 = sum(r[2] for r in rows) / len(rows)
    q_rps = sum(r[3] for r in rows) / len(rows)
    q_p50 = sum(r[4] for r in rows) / len(rows)
    rps_diff, p50_diff = q_rps / w_rps - 1, q_p50 / w_p50 - 1
    ok = abs(rps_diff) <= 0.10 and abs(p50_diff) <= 0.10
    cap = client_capacity()
    table = "\n".join(
        ["| round | wrk req/s | wrk p50 ms | quiver bench req/s | quiver bench p50 ms |", "|---|---|---|---|---|"]
        + [f"| {r} | {a:.0f} | {b:.3f} | {c:.0f} | {d:.3f} |" for r, a, b, c, d in rows]
        + [f"| mean | {w_rps:.0f} | {w_p50:.3f} | {q_rps:.0f} ({rps_diff:+.1%}) | {q_p50:.3f} ({p50_diff:+.1%}) |"]
    )
    capacity = (
        f"One client core (pinned to CPU {cap['client_cpu']}, trivial responder on CPU {cap['responder_cpu']}): "
        f"{cap['achieved_rps']:.0f} req/s reached at concurrency {cap['concurrency']}; client CPU "
        f"{cap['client_cpu_us_per_request']:.1f} us/request, so one fully busy core drives about "
        f"{cap['one_core_max_rps']:.0f} req/s."
    )
    verdict = f"agreement within 10% on req/s and p50: {'PASS' if ok else 'FAIL'}"
    print(table, capacity, verdict, sep="\n")
    cmd = "flock /tmp/quiver-bench.lock .venv/bin/python bench/loadtest/bench_wrk.py " + " ".join(sys.argv[1:])
    (HERE / "RESULTS.md").write_text(
        f"# quiver bench vs wrk\n\nCommand: `{cmd.strip()}`\n\nquiver {__version__}, "
        f"{subprocess.run(['wrk', '--version'], capture_output=True, text=True).stdout.split(' Copyright')[0]}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, 2-core machine shared by server and "
        f"client. Target: `quiver serve` with a 30-16-2 MLP (max_batch_size 8), closed loop, "
        f"{args.connections} connections, {args.seconds} s per tool per round, one identical request body.\n\n"
        f"{table}\n\n{verdict}\n\n{capacity}\n"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""``quiver bench URL``: load-test a V2 (Quiver, Triton, MLServer, KServe) or OpenAI-compatible endpoint.

quiver bench http://127.0.0.1:8000 --model fraud --concurrency 1,4,16 --json out.json --csv out.csv
quiver bench http://127.0.0.1:8000 --model fraud --rate 200 --arrival poisson --slo-ms 20
quiver bench http://127.0.0.1:8000 --openai chat --model llama --stream --concurrency 8
quiver bench --self-test            # how many req/s one client core drives
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from quiver.errors import QuiverError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="load-test a V2 or OpenAI-compatible endpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", nargs="?", help="server base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", "-m", help="model name (V2 path, or the OpenAI 'model' field)")
    p.add_argument("--model-version", help="V2 model version (default: the server's choice)")
    p.add_argument("--openai", choices=("completions", "chat"), help="OpenAI-compatible endpoint instead of V2")
    p.add_argument("--stream", action="store_true", help="OpenAI: stream tokens; reports time to first token")
    p.add_argument("--max-tokens", type=int, default=32, help="OpenAI: max_tokens per request")
    p.add_argument("--prompt", help="OpenAI: fixed prompt (default: random words)")
    load = p.add_argument_group("load")
    load.add_argument("--concurrency", "-c", help="closed loop: in-flight requests, or a sweep '1,4,16'")
    load.add_argument("--rate", "-r", help="open loop: requests/s, or a sweep '100,200'")
    load.add_argument("--arrival", choices=("constant", "poisson", "bursty"), default="poisson")
    load.add_argument("--burst-factor", type=float, default=4.0, help="bursty: peak rate / mean rate")
    load.add_argument("--burst-duty", type=float, default=0.2, help="bursty: fraction of each period at the peak")
    load.add_argument("--burst-period-s", type=float, default=1.0, help="bursty: seconds per burst cycle")
    load.add_argument("--processes", type=int, default=1, help="client processes (past one core's rate)")
    load.add_argument("--max-connections", type=int, default=1024, help="open loop: connection cap")
    load.add_argument("--timeout-s", type=float, default=30.0, help="a request slower than this is an error")
    load.add_argument("--seed", type=int, default=0)
    win = p.add_argument_group("measurement")
    win.add_argument("--warmup-s", type=float, default=2.0)
    win.add_argument("--window-s", type=float, default=5.0)
    win.add_argument("--min-windows", type=int, default=3)
    win.add_argument("--max-windows", type=int, default=10)
    win.add_argument("--stability", type=float, default=0.10, help="last 3 windows within this fraction")
    win.add_argument("--slo-ms", type=float, help="latency SLO for goodput (requests finished within it)")
    data = p.add_argument_group("input data")
    data.add_argument("--shape", action="append", default=[], help="NAME:D1,D2 for inputs with dynamic dims")
    data.add_argument("--batch", type=int, default=1, help="rows per request when the first dim is dynamic")
    data.add_argument("--input-file", help="JSON body, JSON list of bodies, or JSON lines (sent as-is)")
    data.add_argument("--int-high", type=int, default=100, help="random integer inputs are in [0, this)")
    out = p.add_argument_group("output")
    out.add_argument("--json", help="write every measurement as JSON here")
    out.add_argument("--csv", help="write one row per load level here")
    out.add_argument("--html", help="write an HTML report here")
    out.add_argument("--quiet", "-q", action="store_true", help="no per-window progress on stderr")
    out.add_argument("--no-server-metrics", action="store_true", help="do not scrape /metrics")
    p.add_argument("--self-test", action="store_true", help="measure one client core's max request rate")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (QuiverError, ValueError, OSError) as exc:
        print(f"quiver bench: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from quiver.loadtest.arrivals import Arrivals
    from quiver.loadtest.client import Endpoint
    from quiver.loadtest.engine import LoadSpec
    from quiver.loadtest.output import html_report, table, write_csv, write_json
    from quiver.loadtest.runner import Measurement, WindowSpec, measure

    if args.self_test:
        from quiver.loadtest.selftest import client_capacity

        result = client_capacity()
        print(json.dumps(result, indent=2))
        return 0
    if not args.url:
        raise ValueError("give the server URL (or --self-test)")
    if (args.concurrency is None) == (args.rate is None):
        raise ValueError("give exactly one of --concurrency (closed loop) or --rate (open loop)")
    endpoint = Endpoint.parse(args.url)
    workload = _workload(args, endpoint)
    windows = WindowSpec(args.warmup_s, args.window_s, args.min_windows, args.max_windows, 3, args.stability)
    loads: list[LoadSpec] = []
    if args.concurrency is not None:
        loads = [LoadSpec(concurrency=c, timeout_s=args.timeout_s) for c in _numbers(args.concurrency, int)]
    else:
        for rate in _numbers(args.rate, float):
            arrivals = Arrivals(rate, args.arrival, args.seed, args.burst_factor, args.burst_duty, args.burst_period_s)
            loads.append(LoadSpec(arrivals=arrivals, max_connections=args.max_connections, timeout_s=args.timeout_s))
    scrape_model = None if (args.no_server_metrics or args.openai) else args.model
    results: list[Measurement] = []
    for load in loads:
        if not args.quiet:
            print(f"-- {load.describe()}: {workload.description}", file=sys.stderr)
        results.append(
            measure(
                endpoint,
                workload,
                load,
                windows,
                slo_ms=args.slo_ms,
                processes=args.processes,
                metrics_model=scrape_model,
                metrics_version=args.model_version,
                progress=None if args.quiet else _progress,
            )
        )
    print(table(results))
    header = {
        "target": args.url,
        "model": args.model,
        "workload": workload.description,
        "slo_ms": args.slo_ms,
        "windows": _fields(windows),
    }
    if args.json:
        write_json(args.json, header, results)
    if args.csv:
        write_csv(args.csv, results)
    if args.html:
        from pathlib import Path

        Path(args.html).write_text(html_report(f"quiver bench {args.url}", header, results, args.slo_ms))
    return 0


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


def _workload(args: argparse.Namespace, endpoint: Any) -> Any:
    from quiver.loadtest.payload import (
        file_workload,
        model_path,
        openai_workload,
        parse_shape_overrides,
        v2_workload,
    )

    if args.openai:
        if not args.model:
            raise ValueError("--openai needs --model (the 'model' field of each request)")
        return openai_workload(
            endpoint,
            args.model,
            chat=args.openai == "chat",
            stream=args.stream,
            prompt=args.prompt,
            max_tokens=args.max_tokens,
            seed=args.seed,
        )
    if not args.model:
        raise ValueError("V2 endpoints need --model")
    if args.input_file:
        return file_workload(endpoint, model_path(args.model, args.model_version) + "/infer", args.input_file)
    return v2_workload(
        endpoint,
        args.model,
        args.model_version,
        shapes=parse_shape_overrides(args.shape),
        batch=args.batch,
        int_high=args.int_high,
        seed=args.seed,
    )


def _numbers(text: str, kind: type) -> list[Any]:
    try:
        values = [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected a number or a comma-separated list, got {text!r}") from None
    if not values:
        raise ValueError(f"expected a number or a comma-separated list, got {text!r}")
    return values


def _progress(index: int, summary: Any, stable: bool) -> None:
    lat = summary.latency_ms
    print(
        f"   window {index}: {summary.throughput_rps:9.1f} req/s  p50 {lat.get('p50', float('nan')):.3f} ms  "
        f"p99 {lat.get('p99', float('nan')):.3f} ms  errors {summary.requests - summary.ok}"
        + ("  (stable)" if stable else ""),
        file=sys.stderr,
        flush=True,
    )

"""Issue 2's serving benchmark: Quiver vs MLServer vs LitServe, and MiniLM vs in-process ONNX Runtime.

    bench/serving/run.sh                  # setup + full run (~15 min on 2 cores), writes RESULTS.md
    bench/serving/run.sh --quick          # 3 s windows, no RESULTS.md: a smoke run of every configuration

Order: build models -> MLP on every configuration -> MiniLM in-process sweep -> its best point for a full
window -> Quiver on MiniLM -> the best point again (A/B/A: the mean of the two is the reference) -> peers
on MiniLM.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import urllib.request
from dataclasses import asdict, replace
from pathlib import Path

from bench.serving import matrix
from bench.serving.inprocess import BaselinePoint, sweep
from bench.serving.load import LoadResult, measure, wait_for_quiet
from bench.serving.models import BenchModel, prepare_models
from bench.serving.report import Row, acceptance, results_md, table
from bench.serving.servers import ServerSpec, running

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.baseline_s, args.quiet_wait_s, args.retries = 3.0, 1.0, 0.5, 10.0, 0
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    started, loadavg = time.time(), " ".join(Path("/proc/loadavg").read_text().split()[:3])
    servers, model_names = set(args.servers.split(",")), tuple(args.models.split(","))

    print(f"building models {model_names} ...", flush=True)
    models = prepare_models(out / "models", model_names)
    rows: list[Row] = []
    baseline: list[BaselinePoint] = []
    reference: BaselinePoint | None = None

    def run_specs(specs: list[ServerSpec]) -> None:
        for spec in specs:
            if spec.server in servers and spec.model in models:
                rows.extend(run_spec(spec, models[spec.model], out, args))

    run_specs(matrix.MLP)
    if "minilm" in models:
        minilm = models["minilm"]
        print("in-process ONNX Runtime sweep (MiniLM) ...", flush=True)
        wait_for_quiet(args.quiet_wait_s)
        baseline = sweep(
            minilm.onnx_path, minilm.feeds, seconds=args.baseline_s, busy_pct=args.busy_pct, retries=args.retries
        )
        best = max(baseline, key=lambda p: p.items_per_s)
        # The sweep's maximum is biased up (the luckiest of 20 short windows), so the reference is the best
        # point measured for a full window right before and right after Quiver's runs: A/B/A, same conditions.
        before = _quiet_again(best, minilm, "before", args)
        run_specs([s for s in matrix.MINILM if s.server == "quiver"])
        after = _quiet_again(best, minilm, "after", args)
        reference = replace(best, items_per_s=(before.items_per_s + after.items_per_s) / 2, kind="reference")
        baseline += [before, after, reference]
        run_specs([s for s in matrix.MINILM if s.server != "quiver"])

    print("\n" + table(rows, markdown=False) + "\n")
    for target, measured, detail, passed in acceptance(rows, baseline):
        print(f"{'PASS' if passed else 'FAIL' if passed is False else 'n/a '}  {target}: {measured}  ({detail})")
    (out / "results.json").write_text(json.dumps(
        {"rows": [asdict(r) for r in rows], "baseline": [asdict(p) for p in baseline]}, indent=1))  # fmt: skip
    if not args.quick and not args.no_write:
        meta = {
            "command": "bench/serving/run.sh " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "wall_s": time.time() - started,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "loadavg": loadavg,
            "config_notes": _config_notes(),
            "notes": _NOTES,
        }
        (HERE / "RESULTS.md").write_text(results_md(rows, baseline, meta))
        print(f"\nwrote {HERE / 'RESULTS.md'}")
    return 0


def run_spec(spec: ServerSpec, model: BenchModel, out: Path, args: argparse.Namespace) -> list[Row]:
    label = f"{spec.server} {spec.config} {spec.model}"
    log = out / "logs" / f"{spec.server}-{spec.config.replace('/', '_')}-{spec.model}.log"
    log.unlink(missing_ok=True)
    concurrencies = spec.concurrency
    body = out / "models" / f"{model.name}.json"
    body.write_bytes(model.payload)
    rows = []
    waited = wait_for_quiet(args.quiet_wait_s)
    print(f"{label}: starting" + (f" (waited {waited:.0f}s for a quiet machine)" if waited > 2 else ""), flush=True)
    try:
        with running(spec, model, out / "servers", log) as (proc, url):
            for conc in concurrencies:
                counts = _quiver_counts(url) if spec.server == "quiver" else None
                r = measure(url, body, conc, args.duration, args.warmup, proc.pid, log)
                for _ in range(args.retries):  # others' work on the shared machine spoils a window: redo it
                    if r.other_cpu_pct <= args.busy_pct:
                        break
                    print(f"  c={conc}: other processes used {r.other_cpu_pct:.0f}% CPU; measuring again", flush=True)
                    wait_for_quiet(args.quiet_wait_s)
                    again = measure(url, body, conc, args.duration, args.warmup, proc.pid, log)
                    r = min(r, again, key=lambda x: x.other_cpu_pct)
                rows.append(_row(spec, r, _mean_batch(counts, _quiver_counts(url) if counts else None)))
                print("  " + "  ".join(rows[-1].cells()[3:]), flush=True)
    except Exception as exc:  # one broken configuration must not lose the others' numbers
        message = f"{type(exc).__name__}: {exc}"
        print(f"  FAILED: {message} (log: {log})", flush=True)
        done = {r.concurrency for r in rows}
        rows += [Row(spec.server, spec.config, spec.model, c, 0, 0, 0, None, 0, failure=message)
                 for c in concurrencies if c not in done]  # fmt: skip
    return rows


def _quiet_again(point: BaselinePoint, model: BenchModel, kind: str, args: argparse.Namespace) -> BaselinePoint:
    """``point`` measured again for a full window, redone (as server windows are) if others were busy."""
    result = point.again(model.onnx_path, model.feeds, args.duration, kind)
    for _ in range(args.retries):
        if result.other_cpu_pct <= args.busy_pct:
            break
        wait_for_quiet(args.quiet_wait_s)
        again = point.again(model.onnx_path, model.feeds, args.duration, kind)
        result = min(result, again, key=lambda p: p.other_cpu_pct)
    return result


def _row(spec: ServerSpec, r: LoadResult, mean_batch: float | None) -> Row:
    return Row(
        spec.server, spec.config, spec.model, r.concurrency, r.rps, r.p50_ms, r.p99_ms, r.cpu_us_per_req,
        r.errors, r.other_cpu_pct, threads=r.thread_cpu_us_per_req, mean_batch=mean_batch,
    )  # fmt: skip


def _quiver_counts(infer_url: str) -> tuple[int, int] | None:
    """(inference_count, execution_count) from Quiver's statistics extension, or None if unavailable."""
    try:
        with urllib.request.urlopen(infer_url.rsplit("/infer", 1)[0] + "/stats", timeout=5) as response:
            stats = json.load(response)["model_stats"][0]
        return int(stats["inference_count"]), int(stats["execution_count"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _mean_batch(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _config_notes() -> list[str]:
    notes = [f"- {s.server} `{s.config}` ({s.model}): `{json.dumps(s.options)}`" for s in matrix.MLP + matrix.MINILM]
    return [
        "Quiver options are its model `config.toml`; MLServer `workers` is `parallel_workers` (0: inference in "
        "the server process), `ab` is adaptive batching (`max_batch_size`/`max_batch_time`), and every MLServer "
        "runs with `debug=false` (no access log), metrics off and gzip off; LitServe `workers` is "
        "`workers_per_device` (inference processes), `b` is `max_batch_size`/`batch_timeout`. `threads`: ONNX "
        "Runtime intra-op threads per model instance (default 1).",
        "",
        *notes,
    ]


_NOTES = [
    "- The machine has 2 cores shared by the server, wrk (one thread) and, for peers with workers, their "
    "worker processes; other people's processes may run too (the load average above). Benchmark runs are "
    "serialized with `flock /tmp/quiver-bench.lock`, but not everyone's work takes that lock: before each "
    "server the run waits (up to `--quiet-wait-s`) for the machine to go quiet, and a window in which other "
    "processes used more than `--busy-pct` of a core is measured again (up to `--retries` times; the quietest "
    "window is kept). `other CPU%` shows what was left.",
    "- MiniLM reference: the in-process sweep picks the best (batch, sessions, threads, spin) point; that point "
    "is then measured for a full window right before and right after Quiver's MiniLM runs, and their mean is "
    "what Quiver is compared with (the sweep's own maximum is the luckiest of many short windows, so it is "
    "shown too but not used).",
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/serving/run.sh", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per concurrency")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each window")
    p.add_argument("--baseline-s", type=float, default=2.0, help="seconds per in-process baseline point")
    p.add_argument("--servers", default="quiver,mlserver,litserve")
    p.add_argument("--models", default="mlp,minilm")
    p.add_argument(
        "--quiet-wait-s",
        type=float,
        default=120.0,
        help="before each server, wait up to this long for other people's CPU use to stop",
    )
    p.add_argument(
        "--busy-pct",
        type=float,
        default=25.0,
        help="a window in which other processes used more CPU than this (%% of a core) is redone",
    )
    p.add_argument("--retries", type=int, default=2, help="how often a busy window is redone (the quietest counts)")
    p.add_argument("--quick", action="store_true", help="3 s windows; does not write RESULTS.md")
    p.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    p.add_argument("--out", default=str(HERE.parent / "out" / "serving"))
    return p


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())

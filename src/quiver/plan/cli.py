"""``quiver plan MODEL``: the cheapest configuration that meets a p99 SLO at a request rate.

    quiver plan minilm --repository models --slo-p99-ms 50 --rate 40 --min-accuracy 99 --core-hour-cost 0.05

Writes the chosen configuration into ``<repository>/<model>/config.toml`` (so ``quiver serve`` uses it),
``plan.json`` (every measurement and prediction) and ``plan.html`` (curves, Pareto front) into ``--out``.
Accuracy is each variant's primary metric in ``variant.json`` (from ``quiver optimize``), in its units.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from quiver.errors import QuiverError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan",
        help="find the cheapest config meeting a latency SLO at a rate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model")
    p.add_argument(
        "--repository",
        "-r",
        default=os.environ.get("QUIVER_REPOSITORY"),
        help="model repository folder (default: $QUIVER_REPOSITORY)",
    )
    p.add_argument("--slo-p99-ms", type=float, required=True, help="p99 latency target (ms)")
    p.add_argument("--rate", type=float, required=True, help="request rate to serve (req/s)")
    p.add_argument("--min-accuracy", type=float, help="accuracy floor, in the variant's primary metric units")
    p.add_argument("--accuracy-metric", help="metric name in variant.json (default: its primary metric)")
    p.add_argument("--core-hour-cost", type=float, default=1.0, help="price of one core for one hour")
    p.add_argument("--budget-s", type=float, default=600.0, help="time budget for measurements")
    p.add_argument("--max-fraction", type=float, default=0.25, help="at most this share of configs is measured")
    p.add_argument("--batch-sizes", default="1,2,4,8,16")
    p.add_argument("--delays-ms", default="0,1,2,5,10")
    p.add_argument("--instances", default="1,2")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--max-cores", type=int, default=len(os.sched_getaffinity(0)), help="cores on this machine")
    p.add_argument("--shape", action="append", default=[], help="NAME:D1,D2 for inputs with dynamic dims")
    p.add_argument("--arrival", choices=("poisson", "constant", "bursty"), default="poisson")
    p.add_argument("--warmup-s", type=float, default=1.0, help="warm-up before each load measurement")
    p.add_argument("--window-s", type=float, default=2.0, help="measurement window length")
    p.add_argument("--out", default="plan-out", help="folder for plan.json and plan.html")
    p.add_argument("--dry-run", action="store_true", help="do not write config.toml")
    p.set_defaults(func=run)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def run(args: argparse.Namespace) -> int:
    from quiver.loadtest import WindowSpec
    from quiver.loadtest.payload import parse_shape_overrides
    from quiver.plan.deploy import BenchMeasurer, QuiverDeployer, Windows
    from quiver.plan.repo import read_variants, write_config
    from quiver.plan.report import render
    from quiver.plan.search import Budget, Goal, Planner
    from quiver.plan.space import SearchSpace

    try:
        if not args.repository:
            raise ValueError("give --repository (or set QUIVER_REPOSITORY)")
        repo = Path(args.repository)
        space = SearchSpace(
            tuple(read_variants(repo, args.model, args.accuracy_metric)),
            _ints(args.batch_sizes),
            tuple(float(v) for v in args.delays_ms.split(",")),
            _ints(args.instances),
            _ints(args.threads),
            args.max_cores,
        )
        goal = Goal(args.slo_p99_ms, args.rate, args.min_accuracy, args.core_hour_cost)
        deployer = QuiverDeployer(repo, args.model, parse_shape_overrides(args.shape))
    except (QuiverError, ValueError) as exc:
        print(f"quiver plan: {exc}", file=sys.stderr)
        return 2
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    windows = Windows(
        probe=WindowSpec(args.warmup_s / 2, args.window_s / 2, 2, 3, 2),
        load=WindowSpec(args.warmup_s, args.window_s, 2, 4, 2),
        confirm=WindowSpec(args.warmup_s, args.window_s, 6, 6, 6),
    )
    measurer = BenchMeasurer(deployer, windows, slo_ms=args.slo_p99_ms, pattern=args.arrival, log=log)
    log(f"quiver plan {args.model}: {len(space.candidates())} configurations, {len(space.variants)} variant(s)")
    try:
        decision = Planner(space, goal, measurer, Budget(args.budget_s, args.max_fraction), log).plan()
    finally:
        measurer.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = decision.as_dict() | {"model": args.model, "repository": str(repo)}
    (out / "plan.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "plan.html").write_text(render(decision, space, args.model))
    if decision.chosen is None:
        print("no configuration meets the goal:")
        for line in decision.binding:
            print(f"  - {line}")
        print(f"decision record: {out / 'plan.json'}, report: {out / 'plan.html'}")
        return 1
    c = decision.chosen
    print(
        f"chosen: {c.candidate.key()} ({c.candidate.cores} core(s)), p99 {c.point.p99_ms:.2f} ms at "
        f"{args.rate:g} req/s, cost {c.cost_per_million:.4g} per million requests"
        if c.point
        else ""
    )
    if not args.dry_run:
        note = f"Written by `quiver plan` for p99 <= {args.slo_p99_ms:g} ms at {args.rate:g} req/s; see plan.json."
        print(f"wrote {write_config(repo, args.model, c.candidate, note)}")
    print(f"decision record: {out / 'plan.json'}, report: {out / 'plan.html'}")
    return 0

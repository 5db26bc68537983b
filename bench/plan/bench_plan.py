"""Acceptance benchmark for `quiver plan`: on >= 60 configurations, the planner's choice must cost within
10% of the exhaustive search's best while measuring at most 25% of the configurations. The exhaustive
search runs once, in the same run, with the same measurement procedure (``quiver.plan.search.evaluate``:
a short window at the goal rate, re-measured with longer windows when its p99 lands within 20% of the SLO).

Backend: the simulated batching responder (quiver.loadtest.responder) with two variants (fp32-like and
int8-like compute profiles). Why not a real ``quiver serve`` + ONNX MLP: this machine has 2 cores shared by
several engineers, and the load generator needs a core of its own; a 2-core configuration would leave none,
so half the space could not be measured honestly. The responder uses almost no CPU. The planner does not see
the profiles: it probes and measures over HTTP like against any server.

    flock /tmp/quiver-bench.lock .venv/bin/python bench/plan/bench_plan.py
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

from quiver import __version__
from quiver.loadtest import WindowSpec
from quiver.plan.deploy import BenchMeasurer, SimDeployer, SimProfile, Windows
from quiver.plan.report import render
from quiver.plan.search import Budget, Goal, Planner, evaluate
from quiver.plan.space import SearchSpace, Variant, cost_per_million

HERE = Path(__file__).resolve().parent
PROFILES = {1: SimProfile(base_ms=3.0, per_item_ms=1.0), 2: SimProfile(base_ms=1.5, per_item_ms=0.45)}
VARIANTS = (Variant(1, 99.5, "baseline fp32"), Variant(2, 98.8, "int8 dynamic"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=600.0)
    ap.add_argument("--slo-p99-ms", type=float, default=30.0)
    ap.add_argument("--min-accuracy", type=float, default=99.0)
    ap.add_argument("--core-hour-cost", type=float, default=0.05)
    ap.add_argument("--warmup-s", type=float, default=0.5)
    ap.add_argument("--window-s", type=float, default=1.0)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    space = SearchSpace(VARIANTS)
    goal = Goal(args.slo_p99_ms, args.rate, args.min_accuracy, args.core_hour_cost)
    load = WindowSpec(args.warmup_s, args.window_s, args.windows, args.windows, args.windows)
    confirm = WindowSpec(args.warmup_s, args.window_s, 3 * args.windows, 3 * args.windows, 3 * args.windows)
    windows = Windows(probe=WindowSpec(0.3, 0.7, 2, 2, 2), load=load, confirm=confirm)
    everything = space.candidates()
    eligible = [c for c in everything if (space.variant(c.version).accuracy or 0.0) >= args.min_accuracy]

    # -- the planner ---------------------------------------------------------------------------------
    measurer = BenchMeasurer(SimDeployer(PROFILES), windows, slo_ms=args.slo_p99_ms)
    t = time.monotonic()
    try:
        decision = Planner(space, goal, measurer, Budget(seconds=300), log=print).plan()
    finally:
        measurer.close()
    plan_s = time.monotonic() - t
    (out / "plan.json").write_text(json.dumps(decision.as_dict(), indent=2) + "\n")
    (out / "plan.html").write_text(render(decision, space, "sim"))

    # -- exhaustive: every eligible configuration at the target rate ----------------------------------
    measurer = BenchMeasurer(SimDeployer(PROFILES), windows, slo_ms=args.slo_p99_ms)
    rows = []
    t = time.monotonic()
    try:
        for i, c in enumerate(eligible):
            point = evaluate(measurer, goal, c)  # the planner's own verdict procedure
            meets = goal.meets(point)
            cost = cost_per_million(c.cores, args.core_hour_cost, point.goodput_rps)
            rows.append(
                {"config": c.key(), "cores": c.cores, "meets": meets, "cost_per_million": cost, **point.as_dict()}
            )
            print(
                f"  exhaustive {i + 1}/{len(eligible)} {c.key()}: p99 {point.p99_ms:.2f} ms "
                f"{'meets' if meets else 'misses'}",
                flush=True,
            )
    finally:
        measurer.close()
    exhaustive_s = time.monotonic() - t
    (out / "exhaustive.json").write_text(json.dumps(rows, indent=2) + "\n")

    passing = [r for r in rows if r["meets"]]
    best = min(passing, key=lambda r: r["cost_per_million"]) if passing else None
    chosen = decision.chosen
    chosen_cost = chosen.cost_per_million if chosen else math.inf
    # the exhaustive run's own measurement of the plan's choice, too (same windows, another sample)
    again = next((r for r in rows if chosen and r["config"] == chosen.candidate.key()), None)
    measured = len(decision.measured_configs)
    ratio = chosen_cost / best["cost_per_million"] if best and chosen_cost else math.inf
    ok = ratio <= 1.10 and measured <= 0.25 * len(eligible)
    lines = [
        "| | configurations measured | best config | cost / 1M req | wall time |",
        "|---|---|---|---|---|",
        f"| exhaustive | {len(eligible)} of {len(eligible)} eligible ({len(everything)} in the space) | "
        f"{best['config'] if best else 'none'} | {best['cost_per_million'] if best else math.inf:.4g} | "
        f"{exhaustive_s:.0f} s |",
        f"| quiver plan | {measured} ({measured / len(eligible):.0%} of eligible, {measured / len(everything):.0%} "
        f"of the space) | {chosen.candidate.key() if chosen else 'none'} | {chosen_cost:.4g} | {plan_s:.0f} s |",
    ]
    table = "\n".join(lines)
    print(table)
    verdict = (
        f"plan/exhaustive cost ratio {ratio:.3f} (<= 1.10 required), measured {measured}/{len(eligible)} "
        f"(<= 25% required): {'PASS' if ok else 'FAIL'}"
    )
    print(verdict)
    if again:
        print(f"exhaustive run's own sample of the chosen config: p99 {again['p99_ms']:.2f} ms, meets={again['meets']}")
    cmd = "flock /tmp/quiver-bench.lock .venv/bin/python bench/plan/bench_plan.py " + " ".join(sys.argv[1:])
    (HERE / "RESULTS.md").write_text(
        "# quiver plan vs exhaustive search\n\n"
        f"Command: `{cmd.strip()}`\n\n"
        f"quiver {__version__}, Python {platform.python_version()}, {platform.machine()}, "
        f"{time.strftime('%Y-%m-%d')}. Backend: simulated batching responder (two variants, compute "
        f"(base + per_item x batch) x thread factor, log-normal jitter), over real HTTP with the bench engine. "
        f"Not a real `quiver serve` + ONNX model: on this 2-core machine shared by several engineers the load "
        f"generator needs a core of its own, so the 2-core half of the space could not be measured honestly.\n\n"
        f"Goal: p99 <= {args.slo_p99_ms:g} ms at {args.rate:g} req/s (Poisson), accuracy >= {args.min_accuracy:g}, "
        f"{args.core_hour_cost:g} per core-hour. Load windows: warm-up {args.warmup_s:g} s + {args.windows} x "
        f"{args.window_s:g} s; a p99 within 20% of the SLO is re-measured over "
        f"{3 * args.windows} x {args.window_s:g} s "
        f"before the verdict, by both arms (`quiver.plan.search.evaluate`).\n\n{table}\n\n{verdict}\n"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The plan's HTML report: latency-vs-throughput per measured candidate (model prediction dashed,
measurements as points), the Pareto front of accuracy / p99 / cost, and every measurement."""

from __future__ import annotations

import math

from quiver.plan.model import curve_points
from quiver.plan.search import Decision, Entry
from quiver.plan.space import Candidate, SearchSpace
from quiver.report import Axes, Page, Series, chart


def pareto_front(points: list[tuple[float, float, float]]) -> list[int]:
    """Indices of the points not dominated on (cost lower, p99 lower, accuracy higher)."""
    front = []
    for i, (c, p, a) in enumerate(points):
        dominated = any(
            (c2 <= c and p2 <= p and a2 >= a) and (c2 < c or p2 < p or a2 > a)
            for j, (c2, p2, a2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def render(d: Decision, space: SearchSpace, model: str) -> str:
    goal = d.goal
    page = Page(f"quiver plan {model}: p99 <= {goal.slo_p99_ms:g} ms at {goal.rate:g} req/s")
    measured = len(d.measured_configs)
    page.paragraph(
        f"Searched {d.space_size} configurations ({len(d.eligible)} meet the accuracy floor); measured "
        f"{measured} ({measured / max(d.space_size, 1):.0%}) in {d.elapsed_s:.0f} s. Stopped: {d.stopped_by}."
    )
    if d.chosen is not None and d.chosen.point is not None:
        c, pt = d.chosen.candidate, d.chosen.point
        page.heading("Chosen configuration")
        page.table(
            ["config", "cores", "p99 ms", "p50 ms", "req/s", "cost / 1M req"],
            [[c.key(), c.cores, pt.p99_ms, pt.p50_ms, pt.throughput_rps, d.chosen.cost_per_million or math.inf]],
        )
    else:
        page.heading("No configuration meets the goal")
        for line in d.binding:
            page.paragraph(line, note=True)
    page.heading("Latency vs throughput")
    page.figure(_latency_chart(d), "Dashed: the latency model's p99 prediction; dots: measured p99.")
    page.heading("Pareto front: accuracy / p99 / cost")
    page.figure(*_pareto_charts(d, space))
    page.heading("Every measurement")
    rows = [_row(e) for e in d.entries]
    chosen = d.entries.index(d.chosen) if d.chosen in d.entries else None
    page.table(
        ["kind", "config", "cores", "rate", "req/s", "p50 ms", "p99 ms", "pred p99", "meets", "cost/1M"],
        rows,
        highlight=chosen,
    )
    return page.render()


def _row(e: Entry) -> list[object]:
    if e.probe is not None:
        p = e.probe
        return [
            "probe",
            e.candidate.key(),
            e.candidate.cores,
            "closed",
            p.saturated_rps,
            p.single_p50_ms,
            p.single_p99_ms,
            "",
            "",
            "",
        ]
    pt = e.point
    assert pt is not None
    pred = f"{e.predicted.p99_ms:.2f}" if e.predicted else ""
    cost = f"{e.cost_per_million:.4g}" if e.cost_per_million is not None else ""
    return [
        e.kind,
        e.candidate.key(),
        e.candidate.cores,
        pt.rate,
        pt.throughput_rps,
        pt.p50_ms,
        pt.p99_ms,
        pred,
        "" if e.meets is None else ("yes" if e.meets else "no"),
        cost,
    ]


def _latency_chart(d: Decision) -> str:
    goal = d.goal
    by_candidate: dict[Candidate, list[tuple[float, float]]] = {}
    for e in d.entries:
        if e.point is not None:
            by_candidate.setdefault(e.candidate, []).append((e.point.throughput_rps, e.point.p99_ms))
    series = []
    rates = [goal.rate * f for f in (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25)]
    for i, (c, pts) in enumerate(sorted(by_candidate.items())[:8]):
        color = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")[i]
        series.append(Series(c.key(), sorted(pts), line=False, color=color))
        curve = d.curves.get(c.hardware)
        if curve is not None:
            predicted = [(r, p) for r, p in curve_points(curve, c, rates, 1500) if p < 20 * goal.slo_p99_ms]
            series.append(Series(f"{c.key()} model", predicted, dashed=True, markers=False, color=color))
    axes = Axes(
        "throughput (req/s)",
        "p99 latency (ms)",
        log_y=True,
        hlines=[(goal.slo_p99_ms, "SLO")],
        vlines=[(goal.rate, "target rate")],
    )
    return chart(series, axes)


def _pareto_charts(d: Decision, space: SearchSpace) -> tuple[str, str]:
    loads = [e for e in d.entries if e.kind == "load" and e.point is not None and e.cost_per_million is not None]
    points = []
    for e in loads:
        acc = space.variant(e.candidate.version).accuracy
        points.append(
            (e.cost_per_million or math.inf, e.point.p99_ms if e.point else math.inf, acc if acc is not None else 0.0)
        )
    front = set(pareto_front(points))
    labels = [f"{e.candidate.key()} acc {p[2]:g}" for e, p in zip(loads, points, strict=True)]
    rest = [(p[0], p[1]) for i, p in enumerate(points) if i not in front]
    on_front = sorted((p[0], p[1]) for i, p in enumerate(points) if i in front)
    series = [
        Series("measured", rest, line=False, color="#999999"),
        Series(
            "Pareto front",
            on_front,
            line=True,
            labels=[labels[i] for i in sorted(front, key=lambda i: points[i])],
            color="#d62728",
        ),
    ]
    axes = Axes("cost per million requests", "p99 latency (ms)", log_y=True, hlines=[(d.goal.slo_p99_ms, "SLO")])
    caption = (
        "Measured configurations at the target rate; red: not dominated on (cost, p99, accuracy), labelled "
        "with accuracy."
    )
    return chart(series, axes), caption

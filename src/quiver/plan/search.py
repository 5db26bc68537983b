"""The planner's search: probe each hardware shape, predict every candidate, measure the promising ones.

Cost per good request only depends on the cores a configuration uses (and how much of the offered rate it
serves well), so the search goes tier by tier, fewest cores first. In a tier it probes each
(variant, instances, threads) shape once to fit the latency model, predicts every candidate's p99 at the
target rate, and measures candidates in order of predicted p99 until one meets the SLO (after a miss the
shape's prediction is recalibrated by the measured/predicted ratio). The first tier with a passing
candidate wins: a tier with more cores cannot serve a good request more cheaply, because the offered rate
bounds the goodput. Everything stops at the time budget or the measurement cap.

A p99 from a short window is noisy (at 600 req/s, 2 s holds ~12 requests above the p99), so a verdict
close to the SLO is not trusted: ``evaluate`` re-measures any result within ``confirm_band`` of the SLO,
on either side, with longer windows and decides on that. The benchmark's exhaustive arm calls the same
``evaluate``, so both arms judge a configuration by the same procedure. A tier is not given up after one
miss: up to ``per_tier`` of its candidates are measured while their recalibrated prediction is still
within the model's uncertainty of the SLO.

``Measurer`` is the only contact with the outside world, so the search is tested without a server.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from quiver.plan.model import ComputeCurve, Prediction, fit_curve, predict
from quiver.plan.space import Candidate, SearchSpace, Variant, cost_per_million


@dataclass(frozen=True, slots=True)
class LoadPoint:
    """One open-loop measurement of a candidate at a rate."""

    rate: float
    throughput_rps: float
    goodput_rps: float
    p50_ms: float
    p99_ms: float
    error_rate: float
    server: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "throughput_rps": self.throughput_rps,
            "goodput_rps": self.goodput_rps,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "error_rate": self.error_rate,
            "server": self.server,
        }


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Closed-loop probes of one shape at (max batch = largest, delay 0): one request at a time, and
    saturation. ``*_compute_ms`` come from the server's metrics when it has them."""

    single_p50_ms: float
    single_p99_ms: float
    single_rps: float
    saturated_rps: float
    saturated_p99_ms: float
    batch: int
    single_compute_ms: float | None = None
    batch_compute_ms: float | None = None
    batch_mean: float | None = None

    def curve(self, instances: int) -> ComputeCurve:
        if self.batch_compute_ms is not None and self.batch_mean is not None:
            batch, batch_ms = max(round(self.batch_mean), 1), self.batch_compute_ms
        else:  # from throughput: instances * B requests every c(B)
            batch = self.batch
            batch_ms = instances * batch / max(self.saturated_rps, 1e-9) * 1000.0
        return fit_curve(self.single_p50_ms, self.single_p99_ms, batch, batch_ms, self.single_compute_ms)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class Measurer(Protocol):
    def probe(self, candidate: Candidate) -> ProbeResult: ...

    def load(self, candidate: Candidate, rate: float, confirm: bool = False) -> LoadPoint:
        """Open loop at ``rate``; ``confirm``: the longer windows used to settle a verdict near the SLO."""
        ...


@dataclass(frozen=True, slots=True)
class Goal:
    slo_p99_ms: float
    rate: float
    min_accuracy: float | None = None
    core_hour_cost: float = 1.0
    min_served_fraction: float = 0.95  # throughput must reach this fraction of the rate
    max_error_rate: float = 0.01

    def __post_init__(self) -> None:
        if self.slo_p99_ms <= 0 or self.rate <= 0 or self.core_hour_cost <= 0:
            raise ValueError("slo_p99_ms, rate and core_hour_cost must be > 0")

    def meets(self, point: LoadPoint) -> bool:
        return (
            point.p99_ms <= self.slo_p99_ms
            and point.throughput_rps >= self.min_served_fraction * self.rate
            and point.error_rate <= self.max_error_rate
        )


CONFIRM_BAND = 0.2  # a p99 verdict within +-20% of the SLO is settled by a longer measurement


@dataclass(frozen=True, slots=True)
class Budget:
    seconds: float = 600.0
    max_fraction: float = 0.25  # of the configurations in the space that may be measured
    per_tier: int = 4  # load measurements per core tier before moving on
    near_miss: float = 1.5  # predicted p99 within near_miss x SLO is worth a try (the fitted model's uncertainty)
    retry: float = 1.2  # the narrowest band once a tier's first ``explore`` candidates have been measured
    explore: int = 3  # candidates per tier measured with the wide ``near_miss`` band
    confirm_band: float = CONFIRM_BAND  # a measured p99 within +-20% of the SLO is re-measured with longer windows

    def __post_init__(self) -> None:
        if self.seconds <= 0 or not 0 < self.max_fraction <= 1 or self.per_tier < 1 or self.explore < 0:
            raise ValueError("seconds must be > 0, max_fraction in (0, 1], per_tier >= 1 and explore >= 0")
        if self.near_miss < 1 or self.retry < 1 or self.confirm_band < 0:
            raise ValueError("near_miss and retry must be >= 1 and confirm_band >= 0")


@dataclass(slots=True)
class Entry:
    """One measurement in the decision record."""

    kind: str  # "probe" | "load" | "curve"
    candidate: Candidate
    elapsed_s: float
    probe: ProbeResult | None = None
    point: LoadPoint | None = None
    predicted: Prediction | None = None
    meets: bool | None = None
    cost_per_million: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "candidate": self.candidate.key(),
            "config": self.candidate.as_dict(),
            "elapsed_s": round(self.elapsed_s, 3),
            "probe": self.probe.as_dict() if self.probe else None,
            "measured": self.point.as_dict() if self.point else None,
            "predicted": self.predicted.as_dict() if self.predicted else None,
            "meets_goal": self.meets,
            "cost_per_million": self.cost_per_million,
        }


@dataclass(slots=True)
class Decision:
    goal: Goal
    space_size: int
    eligible: list[Candidate]
    excluded_by_accuracy: list[Variant]
    entries: list[Entry] = field(default_factory=list)
    curves: dict[tuple[int, int, int], ComputeCurve] = field(default_factory=dict)
    predictions: dict[Candidate, Prediction] = field(default_factory=dict)
    chosen: Entry | None = None
    binding: list[str] = field(default_factory=list)
    stopped_by: str = ""
    elapsed_s: float = 0.0

    @property
    def measured_configs(self) -> set[Candidate]:
        return {e.candidate for e in self.entries}

    def as_dict(self) -> dict[str, Any]:
        return {
            "goal": {k: getattr(self.goal, k) for k in self.goal.__slots__},
            "space_size": self.space_size,
            "eligible": len(self.eligible),
            "excluded_by_accuracy": [
                {"version": v.version, "accuracy": v.accuracy, "recipe": v.recipe} for v in self.excluded_by_accuracy
            ],
            "measured_configurations": len(self.measured_configs),
            "measured_fraction": len(self.measured_configs) / max(self.space_size, 1),
            "elapsed_s": round(self.elapsed_s, 2),
            "stopped_by": self.stopped_by,
            "chosen": self.chosen.as_dict() if self.chosen else None,
            "binding_constraints": self.binding,
            "curves": {f"v{k[0]}/i{k[1]}/t{k[2]}": c.as_dict() for k, c in self.curves.items()},
            "predictions": {c.key(): p.as_dict() for c, p in sorted(self.predictions.items())},
            "measurements": [e.as_dict() for e in self.entries],
        }


Log = Callable[[str], None]


class Planner:
    """Runs the search. ``plan()`` returns a ``Decision`` with every measurement and the chosen config."""

    def __init__(
        self, space: SearchSpace, goal: Goal, measurer: Measurer, budget: Budget = Budget(), log: Log | None = None
    ) -> None:
        self.space, self.goal, self.measurer, self.budget = space, goal, measurer, budget
        self.log = log or (lambda _: None)
        self.start = 0.0
        self._errors: dict[tuple[int, int, int], list[float]] = {}  # |log(measured / predicted)| per shape

    def plan(self) -> Decision:
        self.start = time.monotonic()
        everything = self.space.candidates()
        excluded = [v for v in self.space.variants if not self._accurate(v)]
        eligible = [c for c in everything if c.version not in {v.version for v in excluded}]
        d = Decision(self.goal, len(everything), eligible, excluded)
        self.cap = max(1, math.floor(self.budget.max_fraction * len(eligible)))
        for cores in sorted({c.cores for c in eligible}):
            if self._out_of_budget(d):
                break
            self._tier(d, [c for c in eligible if c.cores == cores])
            if d.chosen is not None:
                d.stopped_by = d.stopped_by or f"found a passing configuration with {cores} core(s)"
                break
        if d.chosen is not None:
            self._curve(d, d.chosen.candidate)
        else:
            d.binding = binding_constraints(d, self.space)
            d.stopped_by = d.stopped_by or "no eligible configuration met the goal"
        d.elapsed_s = time.monotonic() - self.start
        return d

    # -- one tier --------------------------------------------------------------------------------------
    def _tier(self, d: Decision, tier: list[Candidate]) -> None:
        for shape in sorted({c.hardware for c in tier}):
            if shape not in d.curves and not self._out_of_budget(d):
                self._probe(d, shape, [c for c in tier if c.hardware == shape])
        tried = 0
        while tried < self.budget.per_tier and not self._out_of_budget(d):
            # the most promising candidate whose prediction is within the model's uncertainty of the SLO
            promising = [(c, p) for c, p in self._ranked(d, tier) if p.p99_ms <= self._threshold(c, tried)]
            if not promising:
                self.log(f"  tier {tier[0].cores} core(s): no remaining prediction within reach of the SLO")
                return
            candidate, pred = promising[0]
            entry = self._evaluate(d, candidate, pred)
            tried += 1
            if entry.meets:
                d.chosen = entry
                return
            # recalibrate the shape: the model was off by measured / predicted
            curve = d.curves[candidate.hardware]
            ratio = (entry.point.p99_ms if entry.point else pred.p99_ms) / max(pred.p99_ms, 1e-6)
            d.curves[candidate.hardware] = _rescaled(curve, curve.scale * min(max(ratio, 0.25), 4.0))
            self._errors.setdefault(candidate.hardware, []).append(abs(math.log(max(ratio, 1e-6))))
            for c in [c for c in tier if c.hardware == candidate.hardware]:
                d.predictions.pop(c, None)

    def _threshold(self, c: Candidate, tried: int) -> float:
        # The band is the model's uncertainty for the shape: near_miss for the tier's first ``explore``
        # candidates; after, the largest error it has shown (measured / predicted), at least ``retry``. A load
        # measurement fixes the shape's scale but not the model's ranking of batch sizes and delays (near the
        # SLO they differ by less than one window's noise), so one recalibration must not end the tier.
        errors = self._errors.get(c.hardware)
        if tried < self.budget.explore or not errors:
            factor = self.budget.near_miss
        else:
            factor = max(self.budget.retry, math.exp(max(errors)))
        return factor * self.goal.slo_p99_ms

    def _ranked(self, d: Decision, tier: list[Candidate]) -> list[tuple[Candidate, Prediction]]:
        done = {e.candidate for e in d.entries if e.kind == "load"}
        out = []
        for c in tier:
            if c in done or c.hardware not in d.curves:
                continue
            if c not in d.predictions:
                d.predictions[c] = predict(d.curves[c.hardware], c, self.goal.rate, 3000)
            out.append((c, d.predictions[c]))
        # most slack first; among similar, the cheaper-to-run (smaller delay, smaller batch)
        out.sort(key=lambda cp: (round(cp[1].p99_ms, 1), cp[0].delay_ms, cp[0].max_batch))
        return out

    # -- measurements ----------------------------------------------------------------------------------
    def _probe(self, d: Decision, shape: tuple[int, int, int], shape_candidates: list[Candidate]) -> None:
        biggest = max(c.max_batch for c in shape_candidates)
        candidate = min((c for c in shape_candidates if c.max_batch == biggest), key=lambda c: c.delay_ms)
        t = time.monotonic()
        result = self.measurer.probe(candidate)
        curve = result.curve(candidate.instances)
        d.curves[shape] = curve
        d.entries.append(Entry("probe", candidate, time.monotonic() - t, probe=result))
        self.log(
            f"  probe {candidate.key()}: 1-at-a-time p50 {result.single_p50_ms:.2f} ms, saturated "
            f"{result.saturated_rps:.0f} req/s -> c(b) = {curve.base_ms:.2f} + {curve.per_item_ms:.3f} b ms"
        )

    def _evaluate(self, d: Decision, candidate: Candidate, pred: Prediction) -> Entry:
        """A load measurement at the goal rate, confirmed with longer windows when it lands near the SLO."""
        entry = self._load(d, candidate, self.goal.rate, pred)
        if entry.point is not None and near_slo(self.goal, entry.point, self.budget.confirm_band):
            entry = self._load(d, candidate, self.goal.rate, pred, confirm=True)
        return entry

    def _load(
        self, d: Decision, candidate: Candidate, rate: float, pred: Prediction | None, confirm: bool = False
    ) -> Entry:
        t = time.monotonic()
        point = self.measurer.load(candidate, rate, confirm=True) if confirm else self.measurer.load(candidate, rate)
        meets = self.goal.meets(point)
        good = point.goodput_rps
        entry = Entry(
            "load" if rate == self.goal.rate else "curve",
            candidate,
            time.monotonic() - t,
            point=point,
            predicted=pred,
            meets=meets if rate == self.goal.rate else None,
            cost_per_million=cost_per_million(candidate.cores, self.goal.core_hour_cost, good),
        )
        d.entries.append(entry)
        predicted = f" (predicted {pred.p99_ms:.2f})" if pred else ""
        self.log(
            f"  {'confirm' if confirm else 'measure'} {candidate.key()} at {rate:g} req/s: "
            f"p99 {point.p99_ms:.2f} ms{predicted}, "
            f"{point.throughput_rps:.0f} req/s, errors {point.error_rate:.1%} -> "
            + (("meets the goal" if meets else "misses") if rate == self.goal.rate else "(curve point)")
        )
        return entry

    def _curve(self, d: Decision, candidate: Candidate) -> None:
        """Measured latency-vs-throughput points of the chosen configuration, for the report."""
        for factor in (0.5, 1.25):
            if time.monotonic() - self.start > self.budget.seconds:
                return
            self._load(d, candidate, self.goal.rate * factor, None)

    def _out_of_budget(self, d: Decision) -> bool:
        if time.monotonic() - self.start > self.budget.seconds:
            d.stopped_by = f"time budget ({self.budget.seconds:g} s) spent"
            return True
        if len(d.measured_configs) >= self.cap:
            d.stopped_by = f"measured {self.cap} configurations ({self.budget.max_fraction:.0%} of the eligible space)"
            return True
        return False

    def _accurate(self, v: Variant) -> bool:
        return self.goal.min_accuracy is None or v.accuracy is None or v.accuracy >= self.goal.min_accuracy


def near_slo(goal: Goal, point: LoadPoint, band: float) -> bool:
    """Is the verdict on ``point`` too close to call from one short window? Only latency is in doubt: a
    point that fails on throughput or errors is not re-measured."""
    served = point.throughput_rps >= goal.min_served_fraction * goal.rate and point.error_rate <= goal.max_error_rate
    return served and abs(point.p99_ms / goal.slo_p99_ms - 1.0) <= band


def evaluate(measurer: Measurer, goal: Goal, candidate: Candidate, band: float = CONFIRM_BAND) -> LoadPoint:
    """The planner's verdict procedure for one configuration, for comparisons that must use the same one
    (the exhaustive arm of the benchmark): measure at the goal rate, re-measure longer if near the SLO."""
    point = measurer.load(candidate, goal.rate)
    if near_slo(goal, point, band):
        point = measurer.load(candidate, goal.rate, confirm=True)
    return point


def _rescaled(curve: ComputeCurve, scale: float) -> ComputeCurve:
    return ComputeCurve(curve.base_ms, curve.per_item_ms, curve.overhead_ms, curve.sigma, scale)


def binding_constraints(d: Decision, space: SearchSpace) -> list[str]:
    """Why nothing met the goal, each with how far off it is."""
    goal, out = d.goal, []
    if not d.eligible:
        best = max((v.accuracy for v in space.variants if v.accuracy is not None), default=None)
        out.append(
            f"accuracy: no variant reaches {goal.min_accuracy:g} (best is {best:g})"
            if best is not None
            else "accuracy: no variant has a recorded accuracy"
        )
        return out
    loads = [e for e in d.entries if e.kind == "load" and e.point]
    if d.excluded_by_accuracy:
        names = ", ".join(f"v{v.version} ({v.accuracy:g})" for v in d.excluded_by_accuracy)
        fast = [
            c
            for c, p in d.predictions.items()
            if p.p99_ms <= goal.slo_p99_ms and c.version in {v.version for v in d.excluded_by_accuracy}
        ]
        if fast:
            out.append(
                f"accuracy floor {goal.min_accuracy:g} excludes {names}; some of those are predicted to meet the SLO"
            )
    capacity = max(
        [e.probe.saturated_rps for e in d.entries if e.probe] + [e.point.throughput_rps for e in loads if e.point],
        default=0.0,
    )
    if capacity < goal.rate * goal.min_served_fraction:
        out.append(
            f"throughput: the best measured capacity is {capacity:.0f} req/s, "
            f"{goal.rate - capacity:.0f} req/s ({(goal.rate - capacity) / goal.rate:.0%}) short of {goal.rate:g}"
        )
    if loads:
        closest = min(loads, key=lambda e: e.point.p99_ms if e.point else math.inf)
        p99 = closest.point.p99_ms if closest.point else math.inf
        if p99 > goal.slo_p99_ms:
            out.append(
                f"latency: the best measured p99 at {goal.rate:g} req/s is {p99:.2f} ms "
                f"({closest.candidate.key()}), {p99 - goal.slo_p99_ms:.2f} ms "
                f"({(p99 - goal.slo_p99_ms) / goal.slo_p99_ms:.0%}) over the {goal.slo_p99_ms:g} ms SLO"
            )
    elif d.predictions:
        c, p = min(d.predictions.items(), key=lambda cp: cp[1].p99_ms)
        out.append(
            f"latency (predicted): the best predicted p99 is {p.p99_ms:.2f} ms ({c.key()}), "
            f"{p.p99_ms - goal.slo_p99_ms:.2f} ms over the {goal.slo_p99_ms:g} ms SLO"
        )
    if not out:
        out.append(f"budget: stopped before finding a configuration ({d.stopped_by})")
    elif d.stopped_by.startswith(("time budget", "measured")):
        out.append(f"budget: the search also stopped early ({d.stopped_by})")
    return out

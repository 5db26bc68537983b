"""The planner's logic against a synthetic measurer: ground truth is the batching simulation with hidden
parameters (different from what the planner fits), so no server is needed and runs are deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quiver.plan.model import ComputeCurve, fit_curve, predict, simulate
from quiver.plan.search import Budget, Goal, LoadPoint, Planner, ProbeResult, evaluate
from quiver.plan.space import Candidate, SearchSpace, Variant, cost_per_million

TRUTH = {1: (3.0, 1.0), 2: (1.5, 0.45)}  # variant -> (base_ms, per_item_ms) at one thread
THREAD_FACTOR = {1: 1.0, 2: 0.6}


class Synthetic:
    """Measures by simulating the true system (with noise the planner's model does not know about)."""

    def __init__(self) -> None:
        self.loads: list[Candidate] = []
        self.probes: list[Candidate] = []

    def truth(self, c: Candidate) -> ComputeCurve:
        base, per_item = TRUTH[c.version]
        f = THREAD_FACTOR[c.threads] * (1.1 if c.instances == 2 else 1.0)  # two instances contend a little
        return ComputeCurve(base * f, per_item * f, overhead_ms=0.4, sigma=0.2)

    def probe(self, c: Candidate) -> ProbeResult:
        self.probes.append(c)
        curve = self.truth(c)
        single = float(curve.compute_ms(1)) + curve.overhead_ms
        return ProbeResult(
            single, single * 1.5, 1000 / single, curve.capacity_rps(c.instances, c.max_batch), 50.0, c.max_batch
        )

    def load(self, c: Candidate, rate: float, confirm: bool = False) -> LoadPoint:
        self.loads.append(c)
        arrivals = np.cumsum(np.random.default_rng(7).exponential(1 / rate, 3000))
        lat = simulate(self.truth(c), c.instances, c.max_batch, c.delay_ms, arrivals, seed=7)[300:]
        capacity = self.truth(c).capacity_rps(c.instances, c.max_batch)
        served = min(rate, capacity)
        p50, p99 = np.percentile(lat, [50, 99])
        good = served * float(np.mean(lat <= 30.0))
        return LoadPoint(rate, served, good, float(p50), float(p99), 0.0)


SPACE = SearchSpace((Variant(1, 99.5), Variant(2, 98.8)))


class Noisy(Synthetic):
    """A short measurement reads the p99 ``bias`` x too high (an unlucky window); a confirmation reads the truth."""

    def __init__(self, bias: float) -> None:
        super().__init__()
        self.bias = bias
        self.confirmed: list[Candidate] = []

    def load(self, c: Candidate, rate: float, confirm: bool = False) -> LoadPoint:
        point = super().load(c, rate)
        if confirm:
            self.confirmed.append(c)
            return point
        return LoadPoint(rate, point.throughput_rps, point.goodput_rps, point.p50_ms, point.p99_ms * self.bias, 0.0)


def exhaustive_best(goal: Goal, m: Synthetic, eligible: list[Candidate]) -> float:
    costs = []
    for c in eligible:
        point = evaluate(m, goal, c)
        if goal.meets(point):
            costs.append(cost_per_million(c.cores, goal.core_hour_cost, point.goodput_rps))
    return min(costs, default=math.inf)


def test_space_is_the_full_grid_without_duplicates() -> None:
    cands = SPACE.candidates()
    assert len(cands) == 2 * 3 * (1 + 4 * 5) == 126  # b=1 keeps only delay 0; (i, t) with i*t <= 2
    assert len(set(cands)) == len(cands)
    assert max(c.cores for c in cands) == 2


@pytest.mark.parametrize(("rate", "min_accuracy"), [(600.0, 99.0), (600.0, None), (1100.0, 99.0)])
def test_planner_is_within_10_percent_of_exhaustive_measuring_a_quarter(
    rate: float, min_accuracy: float | None
) -> None:
    goal = Goal(30.0, rate, min_accuracy, core_hour_cost=0.05)
    planner_m = Synthetic()
    d = Planner(SPACE, goal, planner_m, Budget(seconds=60)).plan()
    best = exhaustive_best(goal, Synthetic(), d.eligible)
    assert d.chosen is not None and d.chosen.cost_per_million is not None
    assert d.chosen.cost_per_million <= 1.10 * best
    assert len(d.measured_configs) <= 0.25 * len(d.eligible)
    if min_accuracy is not None:
        assert all(c.version == 1 for c in d.measured_configs)


def test_a_near_miss_from_a_noisy_window_is_confirmed_not_rejected() -> None:
    # the planner's first 1-core pick (what it measures first whatever the SLO) truly meets an SLO set 3%
    # above its p99, but every short window reads 12% high -- the failure seen in bench/plan: rejected on one
    # unlucky window, the planner moved on and paid for 2 cores
    first = Planner(SPACE, Goal(1000.0, 600.0, 99.0), Synthetic(), Budget(seconds=60)).plan().chosen
    assert first is not None and first.candidate.cores == 1
    goal = Goal(Synthetic().load(first.candidate, 600.0).p99_ms * 1.03, 600.0, 99.0, core_hour_cost=0.05)
    noisy = Noisy(bias=1.12)
    d = Planner(SPACE, goal, noisy, Budget(seconds=60)).plan()
    assert d.chosen is not None and d.chosen.candidate == first.candidate
    assert noisy.confirmed == [first.candidate]
    without = Planner(SPACE, goal, Noisy(bias=1.12), Budget(seconds=60, confirm_band=0.0)).plan()
    assert without.chosen is None or without.chosen.candidate != first.candidate


def test_one_miss_does_not_end_the_cheapest_tier() -> None:
    # at 30 ms every 1-core configuration truly misses by a few ms and the model's ranking of them is off;
    # the planner must try several before paying for 2 cores, yet stay within the measurement cap
    def tier1_loads(explore: int) -> int:
        d = Planner(SPACE, Goal(30.0, 600.0, 99.0, 0.05), Synthetic(), Budget(seconds=60, explore=explore)).plan()
        assert d.chosen is not None and len(d.measured_configs) <= 0.25 * len(d.eligible)
        return sum(1 for e in d.entries if e.kind == "load" and e.candidate.cores == 1)

    assert tier1_loads(explore=0) == 1  # the old behaviour: one miss recalibrates the shape out of reach
    assert tier1_loads(explore=3) >= 3


def test_evaluate_confirms_only_near_the_slo() -> None:
    c = Candidate(1, 16, 0.0, 1, 2)
    goal = Goal(Synthetic().load(c, 600.0).p99_ms * 1.05, 600.0)
    far, near = Noisy(bias=3.0), Noisy(bias=1.1)  # short windows read 2.9x and 1.05x the SLO
    assert not goal.meets(evaluate(far, goal, c)) and far.confirmed == []
    assert goal.meets(evaluate(near, goal, c)) and near.confirmed == [c]


def test_impossible_latency_names_the_binding_constraint_and_the_gap() -> None:
    d = Planner(SPACE, Goal(2.0, 600.0, 99.0), Synthetic(), Budget(seconds=60)).plan()
    assert d.chosen is None
    text = " ".join(d.binding)
    assert "latency" in text and "over the 2 ms SLO" in text


def test_rate_beyond_capacity_names_throughput() -> None:
    d = Planner(SPACE, Goal(30.0, 50_000.0), Synthetic(), Budget(seconds=60)).plan()
    assert d.chosen is None
    assert any(line.startswith("throughput") and "short of 50000" in line for line in d.binding)


def test_accuracy_floor_above_every_variant() -> None:
    m = Synthetic()
    d = Planner(SPACE, Goal(30.0, 100.0, min_accuracy=99.9), m, Budget(seconds=60)).plan()
    assert d.chosen is None and m.loads == [] and m.probes == []
    assert d.binding == ["accuracy: no variant reaches 99.9 (best is 99.5)"]


def test_fit_curve_recovers_a_linear_compute_time() -> None:
    curve = fit_curve(single_ms=4.5, single_p99_ms=6.0, batch=16, batch_compute_ms=3.0 + 16.0, single_compute_ms=4.0)
    assert curve.base_ms == pytest.approx(3.0)
    assert curve.per_item_ms == pytest.approx(1.0)
    assert curve.overhead_ms == pytest.approx(0.5)


def test_simulated_batcher_waits_for_the_delay_at_low_load() -> None:
    curve = ComputeCurve(2.0, 0.0, overhead_ms=0.0, sigma=1e-9)
    sparse = np.arange(50) * 1.0  # one request a second: batches never fill
    assert np.allclose(simulate(curve, 1, 8, 0.0, sparse), 2.0)
    assert np.allclose(simulate(curve, 1, 8, 5.0, sparse), 7.0)
    burst = np.zeros(8)  # eight at once: one full batch, no waiting for the delay
    assert np.allclose(simulate(curve, 1, 8, 5.0, burst), 2.0)


def test_prediction_grows_with_load_and_exceeds_capacity_badly() -> None:
    curve = ComputeCurve(2.0, 1.0, sigma=0.1)
    c = Candidate(1, 4, 1.0, 1, 1)  # capacity 4 / 6 ms = 667 req/s
    light, heavy, over = (predict(curve, c, r) for r in (100.0, 550.0, 900.0))
    assert light.p99_ms < heavy.p99_ms < over.p99_ms
    assert over.utilization > 1 and over.p99_ms > 100


def test_cost_per_million() -> None:
    assert cost_per_million(2, 0.36, 100.0) == pytest.approx(2 * 0.36 / 3600 / 100 * 1e6)
    assert cost_per_million(1, 1.0, 0.0) == math.inf

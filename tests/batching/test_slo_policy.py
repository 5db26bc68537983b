"""SLO-aware batching: the learned cost model, the three decisions, and the batcher in SLO mode."""

from __future__ import annotations

import asyncio
import time

import pytest

from quiver.batching import BatcherConfig, DynamicBatcher
from quiver.batching.slo import ArrivalRate, ComputeModel, SloPolicy
from quiver.errors import DeadlineExceeded, Overloaded


def test_compute_model_learns_a_line() -> None:
    model = ComputeModel()
    for rows in (1, 2, 4, 8, 16, 32) * 5:
        model.observe(rows, 0.002 + 0.0005 * rows)
    intercept, per_row = model.coefficients
    assert intercept == pytest.approx(0.002, abs=1e-6)
    assert per_row == pytest.approx(0.0005, abs=1e-7)
    assert model.spread_s < 1e-6
    assert model.predict(10) == pytest.approx(0.007, abs=1e-5)


def test_compute_model_forgets_old_costs() -> None:
    model = ComputeModel(decay=0.9)
    for _ in range(50):
        model.observe(8, 0.010)
    for _ in range(100):
        model.observe(8, 0.020)
    assert model.predict_mean(8) == pytest.approx(0.020, rel=0.01)


def test_arrival_rate() -> None:
    rate = ArrivalRate(weight=0.2)
    for i in range(200):
        rate.arrive(i * 0.01)
    assert rate.per_s == pytest.approx(100, rel=0.01)


def _trained_policy(slo_s: float = 0.05, headroom: float = 0.0) -> SloPolicy:
    policy = SloPolicy(slo_s, max_batch_size=8, headroom=headroom)
    for rows in (1, 2, 4, 8) * 10:
        policy.model.observe(rows, 0.004 + 0.001 * rows)  # 5 ms for one row, 12 ms for eight
    return policy


def test_admit_counts_the_work_ahead() -> None:
    policy = _trained_policy()
    ok, finish = policy.admit(now=0.0, deadline=0.05, rows_ahead=0, rows=1)
    assert ok and finish == pytest.approx(0.005, abs=1e-4)
    # 24 rows ahead: three full batches (36 ms) plus ours (5 ms) fit in 50 ms; 40 rows ahead do not
    assert policy.admit(0.0, 0.05, rows_ahead=24, rows=1)[0]
    ok, finish = policy.admit(0.0, 0.05, rows_ahead=40, rows=1)
    assert not ok and finish > 0.05
    assert policy.decisions.shed_on_arrival == 1


def test_admit_accounts_for_running_batches() -> None:
    policy = _trained_policy()
    end = policy.on_start(0.0, 8)  # busy until 12 ms
    assert not policy.admit(0.0, 0.015, rows_ahead=0, rows=1)[0]
    policy.on_finish(end, 8, 0.012)
    assert policy.admit(0.02, 0.035, rows_ahead=0, rows=1)[0]


def test_wait_dispatches_when_full_or_no_slack_or_no_gain() -> None:
    policy = _trained_policy()
    assert policy.wait_s(0.0, 0.05, rows_ready=8) == 0.0
    for i in range(100):
        policy.on_arrival(i * 0.001)  # 1000 requests/s
    # plenty of slack and a fuller batch is much cheaper per row: wait, but no longer than the fill time
    wait = policy.wait_s(0.1, 0.15, rows_ready=1)
    assert 0 < wait <= 0.007 + 1e-9
    # the head's deadline is too close to wait
    assert policy.wait_s(0.1, 0.1 + 0.012, rows_ready=1) == 0.0
    # batching gains nothing when every row costs the same
    flat = SloPolicy(0.05, 8, headroom=0.0)
    for rows in (1, 2, 4, 8) * 10:
        flat.model.observe(rows, 0.002 * rows)
    for i in range(100):
        flat.on_arrival(i * 0.001)
    assert flat.wait_s(0.1, 0.15, rows_ready=1) == 0.0


def test_headroom_plans_every_decision_short_of_the_deadline() -> None:
    exact, spare = _trained_policy(), _trained_policy(headroom=0.2)  # spare keeps 10 ms of 50 free
    # 24 rows ahead + ours finish at 41 ms: inside the deadline, not inside the 40 ms target
    assert exact.admit(0.0, 0.05, rows_ahead=24, rows=1)[0]
    assert not spare.admit(0.0, 0.05, rows_ahead=24, rows=1)[0]
    assert spare.admit(0.0, 0.05, rows_ahead=16, rows=1)[0]  # 29 ms
    assert exact.max_rows(0.0, 0.0075) == 2 and spare.max_rows(0.0, 0.0075 + 0.01) == 2
    assert not exact.too_late(0.0, 0.006, 1) and spare.too_late(0.0, 0.006 + 0.009, 1)
    for policy in (exact, spare):
        for i in range(100):
            policy.on_arrival(i * 0.001)
    # 20 ms to the head's deadline: the exact policy may wait (12 ms full batch), the spare one may not
    assert exact.wait_s(0.1, 0.12, rows_ready=1) > 0 and spare.wait_s(0.1, 0.12, rows_ready=1) == 0.0
    with pytest.raises(ValueError, match="headroom"):
        SloPolicy(0.05, 8, headroom=1.0)


def test_max_rows_and_too_late() -> None:
    policy = _trained_policy()
    assert policy.max_rows(0.0, 0.05) == 8
    assert policy.max_rows(0.0, 0.0075) == 2  # 2 rows cost 6 ms, 4 rows 8 ms
    assert policy.too_late(0.0, 0.004, 1)
    assert not policy.too_late(0.0, 0.006, 1)


def test_slo_mode_sheds_at_arrival_and_meets_the_slo_for_the_rest() -> None:
    ran: list[int] = []

    def run(instance: int, payloads: list[int]) -> list[int]:
        time.sleep(0.02 + 0.005 * len(payloads))
        ran.extend(payloads)
        return payloads

    async def main() -> tuple[list[object], list[float]]:
        batcher = DynamicBatcher(run, BatcherConfig(max_batch_size=8, slo_s=0.2, queue_capacity=10_000))
        await batcher.start()
        # learn the cost model from batches of several sizes first
        for size in (1, 2, 4, 8) * 4:
            await asyncio.gather(*(batcher.submit(-1 - i) for i in range(size)))
        loop = asyncio.get_running_loop()
        latencies: list[float] = []

        async def one(i: int) -> object:
            start = loop.time()
            try:
                result = await batcher.submit(i)
            except (Overloaded, DeadlineExceeded) as exc:
                return exc
            latencies.append(loop.time() - start)
            return result

        # a burst far beyond what 200 ms can hold (about 24 rows fit: 60 ms per batch of 8)
        results = await asyncio.gather(*(one(i) for i in range(200)))
        await batcher.close()
        return results, latencies

    results, latencies = asyncio.run(main())
    shed = [r for r in results if isinstance(r, Overloaded)]
    served = [r for r in results if isinstance(r, int)]
    assert shed, "an impossible burst must be shed"
    assert len(served) >= 10, "the requests that fit are served"
    assert max(latencies) <= 0.2 * 1.25  # the accepted ones meet the SLO (with scheduling slack)
    assert "cannot meet the request's deadline" in str(shed[0])
    assert not set(r for r in range(200) if isinstance(results[r], Overloaded)) & set(ran)

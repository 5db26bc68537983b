"""SLO-aware batching: learn what a batch costs, then wait, take and shed so deadlines are met.

The batcher asks three questions of an ``SloPolicy``; each is answered from an online model of compute time
as a function of batch rows (``ComputeModel``: an exponentially-forgetting least-squares line, since on
CPUs a batch costs a fixed overhead plus a per-row time):

- ``admit``: could a new request still finish by its deadline, behind the work already queued and running?
  If not it is refused at once (429) instead of being computed late.
- ``wait_s``: may the head of the queue wait for the batch to fill? Only while the latest start time that
  still meets its deadline is ahead, and only as long as arrivals are expected to fill it.
- ``too_late``: which taken requests cannot finish by their deadline even if run now (answered 504).

Every decision plans against a *target* ``headroom`` (default 20%) short of each request's deadline, not the
deadline itself. Admission packs the queue until the last request finishes right at the target, so the
accepted requests' latencies pile up there; what the batcher cannot see -- HTTP parsing and the response
written after the batch, the client, and compute tails on a busy machine -- then lands on top. Planning to
the deadline itself put the p99 of accepted requests ~11% over a 100 ms SLO on MiniLM (see
bench/loadtest/RESULTS-slo-batching.md).

Plain Python: no asyncio, no clock of its own; times are event-loop seconds passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class ComputeModel:
    """Online fit of ``seconds = intercept + per_row * rows`` with exponential forgetting.

    >>> model = ComputeModel()
    >>> for rows, seconds in [(1, 0.011), (8, 0.039), (16, 0.071)]:
    ...     model.observe(rows, seconds)
    >>> round(model.predict(4) * 1e3)  # ms
    23
    """

    def __init__(self, decay: float = 0.98, prior_s: float = 0.005) -> None:
        self.decay = decay
        self.prior_s = prior_s
        # weighted sums for least squares: n, Σx, Σy, Σxx, Σxy, and Σ residual² for the spread
        self._n = self._sx = self._sy = self._sxx = self._sxy = 0.0
        self._resid2 = 0.0
        self.observations = 0

    def observe(self, rows: int, seconds: float) -> None:
        if self.observations >= 2:
            error = seconds - self.predict_mean(rows)
            self._resid2 = self.decay * self._resid2 + (1 - self.decay) * error * error
        d = self.decay
        self._n = d * self._n + 1
        self._sx = d * self._sx + rows
        self._sy = d * self._sy + seconds
        self._sxx = d * self._sxx + rows * rows
        self._sxy = d * self._sxy + rows * seconds
        self.observations += 1

    @property
    def coefficients(self) -> tuple[float, float]:
        """(intercept seconds, seconds per row)."""
        if self._n == 0:
            return self.prior_s, 0.0
        mean_x, mean_y = self._sx / self._n, self._sy / self._n
        var_x = self._sxx / self._n - mean_x * mean_x
        if var_x <= 1e-9:
            # Every batch had the same size so far, so the split is unknown: guess half fixed, half per row.
            return mean_y / 2, mean_y / 2 / max(mean_x, 1.0)
        slope = max(0.0, (self._sxy / self._n - mean_x * mean_y) / var_x)
        return max(0.0, mean_y - slope * mean_x), slope

    @property
    def spread_s(self) -> float:
        """Standard deviation of recent prediction errors."""
        return math.sqrt(self._resid2)

    def predict_mean(self, rows: int) -> float:
        intercept, slope = self.coefficients
        return intercept + slope * rows

    def predict(self, rows: int) -> float:
        """A cautious estimate: the mean plus two standard deviations of recent error."""
        return self.predict_mean(rows) + 2.0 * self.spread_s


class ArrivalRate:
    """Requests per second from an exponentially-weighted mean of inter-arrival gaps."""

    def __init__(self, weight: float = 0.05) -> None:
        self.weight = weight
        self._last: float | None = None
        self._gap_s: float | None = None

    def arrive(self, now: float) -> None:
        if self._last is not None:
            gap = max(now - self._last, 1e-7)
            self._gap_s = gap if self._gap_s is None else self._gap_s + self.weight * (gap - self._gap_s)
        self._last = now

    @property
    def per_s(self) -> float:
        return 1.0 / self._gap_s if self._gap_s else 0.0


@dataclass(slots=True)
class SloDecisions:
    """Counters of what the policy decided, exposed as metrics."""

    admitted: int = 0
    shed_on_arrival: int = 0
    dropped_late: int = 0
    waited: int = 0
    dispatched_full: int = 0
    dispatched_deadline: int = 0
    dispatched_no_gain: int = 0


class SloPolicy:
    def __init__(self, slo_s: float, max_batch_size: int, instances: int = 1, headroom: float = 0.2) -> None:
        if slo_s <= 0:
            raise ValueError(f"slo_s must be > 0, got {slo_s}")
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), got {headroom}")
        self.slo_s = slo_s
        self.margin_s = headroom * slo_s  # kept free before every deadline for time outside the batcher
        self.max_batch_size = max(1, max_batch_size)
        self.instances = max(1, instances)
        self.model = ComputeModel()
        self.arrivals = ArrivalRate()
        self.decisions = SloDecisions()
        self._busy_until: list[float] = []  # predicted end times of running batches

    # ---- what the batcher reports

    def on_arrival(self, now: float) -> None:
        self.arrivals.arrive(now)

    def on_start(self, now: float, rows: int) -> float:
        end = now + self.model.predict_mean(rows)
        self._busy_until.append(end)
        return end

    def on_finish(self, predicted_end: float, rows: int, seconds: float) -> None:
        if predicted_end in self._busy_until:
            self._busy_until.remove(predicted_end)
        self.model.observe(rows, seconds)

    # ---- the three decisions

    def admit(self, now: float, deadline: float, rows_ahead: int, rows: int) -> tuple[bool, float]:
        """(admit?, estimated finish). Work ahead runs in full batches spread over the instances."""
        free_at = min(self._busy_until) if len(self._busy_until) >= self.instances else now
        total = rows_ahead + rows
        full, rest = divmod(total, self.max_batch_size)
        batches = [self.max_batch_size] * full + ([rest] if rest else [])
        work = sum(self.model.predict_mean(b) for b in batches) / self.instances
        finish = max(now, free_at) + work + 2.0 * self.model.spread_s
        ok = finish <= deadline - self.margin_s
        if ok:
            self.decisions.admitted += 1
        else:
            self.decisions.shed_on_arrival += 1
        return ok, finish

    def wait_s(self, now: float, head_deadline: float, rows_ready: int) -> float:
        """Seconds the head may wait for more rows; 0 means dispatch now."""
        if rows_ready >= self.max_batch_size:
            self.decisions.dispatched_full += 1
            return 0.0
        rate = self.arrivals.per_s
        if rate <= 0:
            self.decisions.dispatched_no_gain += 1
            return 0.0
        fill_s = (self.max_batch_size - rows_ready) / rate
        expected = min(self.max_batch_size, rows_ready + int(rate * fill_s))
        latest_start = head_deadline - self.margin_s - self.model.predict(expected)
        slack = latest_start - now
        # Waiting costs the head latency and leaves the instance idle. It pays only when more rows are
        # expected before the latest start, and a fuller batch is clearly cheaper per row.
        if slack <= 0 or rate * slack < 1.0:
            self.decisions.dispatched_deadline += 1
            return 0.0
        per_row_now = self.model.predict_mean(rows_ready) / max(rows_ready, 1)
        per_row_full = self.model.predict_mean(expected) / expected
        if per_row_full > 0.8 * per_row_now:
            self.decisions.dispatched_no_gain += 1
            return 0.0
        self.decisions.waited += 1
        return min(slack, fill_s)

    def max_rows(self, now: float, head_deadline: float) -> int:
        """The most rows a batch may take so that its head still meets its deadline (at least 1)."""
        rows = self.max_batch_size
        while rows > 1 and now + self.model.predict_mean(rows) > head_deadline - self.margin_s:
            rows //= 2
        return rows

    def too_late(self, now: float, deadline: float, batch_rows: int) -> bool:
        late = now + self.model.predict_mean(batch_rows) > deadline - self.margin_s
        if late:
            self.decisions.dropped_late += 1
        return late

"""Continuous (iteration-level) batching under a token budget, with chunked prefill and preemption.

Plain Python, no torch. Each step the scheduler picks, for every sequence it runs, how many of its tokens
to compute (``num_new``): 1 for a decoding sequence, up to the rest of the prompt for a prefilling one.

1. Running sequences first: decodes, then prefill chunks, while the token budget lasts. A sequence that
   needs a new block and finds none preempts the newest running sequence (its blocks are freed and it
   goes back to the front of the waiting queue, to be recomputed later; its full blocks stay in the prefix
   cache until reused, so recomputation is often cheap).
2. Then waiting sequences, oldest first, if nothing was preempted: prefix-cache hits are skipped, the
   rest of the prompt is scheduled (cut to the budget: chunked prefill).

The waiting queue is bounded: ``add`` raises ``Overloaded`` (429) when it is full.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from quiver.errors import Overloaded
from quiver.generate.block_manager import BlockManager
from quiver.generate.params import EngineConfig
from quiver.generate.sequence import Sequence, Status


@dataclass(slots=True)
class ScheduledBatch:
    """The work of one step: ``num_new[i]`` tokens of ``seqs[i]`` from ``seqs[i].num_computed_tokens``."""

    seqs: list[Sequence] = field(default_factory=list)
    num_new: list[int] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.seqs

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new)


class Scheduler:
    def __init__(self, config: EngineConfig, block_manager: BlockManager) -> None:
        self.config = config
        self.block_manager = block_manager
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        # Keep a few blocks free when admitting new sequences, so running ones can grow without preempting.
        self._watermark = max(1, block_manager.num_blocks // 100)
        self.prefix_query_tokens = 0  # prompt tokens of first-time admissions
        self.prefix_hit_tokens = 0  # of which served from the prefix cache
        self.num_preemptions = 0

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def prefix_hit_rate(self) -> float:
        return self.prefix_hit_tokens / self.prefix_query_tokens if self.prefix_query_tokens else 0.0

    def add(self, seqs: Iterable[Sequence]) -> None:
        seqs = list(seqs)
        if len(self.waiting) + len(seqs) > self.config.max_waiting:
            raise Overloaded(
                f"the waiting queue is full ({len(self.waiting)} of {self.config.max_waiting} sequences); retry later"
            )
        self.waiting.extend(seqs)

    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch()
        budget = self.config.max_num_batched_tokens
        budget = self._schedule_running(batch, budget)
        if not batch.preempted:
            self._schedule_waiting(batch, budget)
        return batch

    def _schedule_running(self, batch: ScheduledBatch, budget: int) -> int:
        decodes = [s for s in self.running if s.num_tokens - s.num_computed_tokens == 1]
        prefills = [s for s in self.running if s.num_tokens - s.num_computed_tokens > 1]
        scheduled: set[int] = set()
        for seq in decodes + prefills:
            if budget == 0:
                break
            if seq.status is not Status.RUNNING:
                continue  # preempted earlier in this loop
            n = min(seq.num_tokens - seq.num_computed_tokens, budget)
            while not self.block_manager.append_slots(seq, seq.num_computed_tokens + n):
                victim = next(s for s in reversed(self.running) if s.seq_id not in scheduled)
                self._preempt(victim)
                batch.preempted.append(victim)
                if victim is seq:
                    break
            else:
                scheduled.add(seq.seq_id)
                batch.seqs.append(seq)
                batch.num_new.append(n)
                budget -= n
        return budget

    def _schedule_waiting(self, batch: ScheduledBatch, budget: int) -> None:
        bm = self.block_manager
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            cached = bm.find_cached_prefix(seq.token_ids)
            num_cached = len(cached) * bm.block_size
            remaining = seq.num_tokens - num_cached
            n = min(remaining, budget)
            if n < remaining and not self.config.enable_chunked_prefill:
                if batch.seqs:
                    break
                n = remaining  # longer than the budget: it runs alone rather than never

            new_blocks = bm.blocks_needed(seq, num_cached + n) - len(cached)
            if bm.num_free - new_blocks < self._watermark and self.running:
                break
            if not bm.allocate(seq, cached, num_cached + n):
                break
            self.waiting.popleft()
            seq.status = Status.RUNNING
            self.running.append(seq)
            if seq.first_scheduled_time is None:
                seq.first_scheduled_time = time.monotonic()
                seq.num_cached_prompt_tokens = num_cached
                self.prefix_query_tokens += seq.num_prompt_tokens
                self.prefix_hit_tokens += num_cached
            batch.seqs.append(seq)
            batch.num_new.append(n)
            budget -= n

    def _preempt(self, seq: Sequence) -> None:
        """Preemption by recomputation: drop the sequence's KV and queue it again at the front."""
        self.block_manager.free(seq)
        self.running.remove(seq)
        seq.status = Status.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def finish(self, seq: Sequence, reason: str) -> None:
        if seq.status is Status.FINISHED:
            return
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        else:
            self.waiting.remove(seq)
        self.block_manager.free(seq)
        seq.status = Status.FINISHED
        seq.finish_reason = reason

    def abort(self, request_id: str) -> list[Sequence]:
        """Finish every sequence of ``request_id`` with reason "abort" and free its blocks."""
        found = [s for s in (*self.running, *self.waiting) if s.request_id == request_id]
        for seq in found:
            self.finish(seq, "abort")
        return found

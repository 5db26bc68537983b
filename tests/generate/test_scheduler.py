from __future__ import annotations

import pytest

from quiver.errors import Overloaded
from quiver.generate.block_manager import BlockManager
from quiver.generate.params import EngineConfig, SamplingParams
from quiver.generate.scheduler import ScheduledBatch, Scheduler
from quiver.generate.sequence import Sequence, Status


def make(num_blocks: int = 64, block_size: int = 4, **kw: object) -> Scheduler:
    cfg = EngineConfig(num_kv_blocks=num_blocks, block_size=block_size, **kw)  # type: ignore[arg-type]
    return Scheduler(cfg, BlockManager(num_blocks, block_size, cfg.enable_prefix_caching))


def seq(n_prompt: int, rid: str = "r", max_tokens: int = 8, start: int = 0) -> Sequence:
    return Sequence(rid, list(range(start, start + n_prompt)), SamplingParams(max_tokens=max_tokens))


def run_step(s: Scheduler, batch: ScheduledBatch, token: int = 7) -> None:
    """What the engine does after the model ran: advance, cache blocks, append a token when sampled."""
    for q, n in zip(batch.seqs, batch.num_new, strict=True):
        q.num_computed_tokens += n
        s.block_manager.cache_blocks(q)
        if q.num_computed_tokens == q.num_tokens:
            q.token_ids.append(token)
            if q.num_output_tokens >= q.params.max_tokens:
                s.finish(q, "length")


def test_continuous_batching_admits_new_requests_between_decode_steps() -> None:
    s = make(max_num_batched_tokens=64)
    a = seq(10, "a")
    s.add([a])
    b1 = s.schedule()
    assert b1.seqs == [a] and b1.num_new == [10]
    run_step(s, b1)
    b = seq(5, "b", start=100)
    s.add([b])
    b2 = s.schedule()
    assert b2.seqs == [a, b] and b2.num_new == [1, 5]  # a decodes while b prefills, in one step


def test_chunked_prefill_respects_the_token_budget_and_decodes_go_first() -> None:
    s = make(max_num_batched_tokens=16, max_num_seqs=4)
    a = seq(4, "a")
    s.add([a])
    run_step(s, s.schedule())
    long = seq(40, "long", start=100)
    s.add([long])
    batch = s.schedule()
    assert batch.seqs == [a, long] and batch.num_new == [1, 15]
    run_step(s, batch)
    batch = s.schedule()
    assert batch.seqs == [a, long] and batch.num_new == [1, 15]
    assert batch.num_tokens <= 16


def test_without_chunking_a_long_prompt_waits_then_runs_alone() -> None:
    s = make(max_num_batched_tokens=16, max_num_seqs=4, enable_chunked_prefill=False)
    a = seq(4, "a")
    s.add([a])
    run_step(s, s.schedule())
    long = seq(40, "long", start=100)
    s.add([long])
    assert s.schedule().seqs == [a]  # the long prompt does not fit next to the decode
    s.finish(a, "abort")
    batch = s.schedule()
    assert batch.seqs == [long] and batch.num_new == [40]


def test_preemption_by_recomputation_when_blocks_run_out() -> None:
    s = make(num_blocks=5, block_size=4, max_num_batched_tokens=64)
    a, b = seq(7, "a", max_tokens=12), seq(7, "b", max_tokens=12, start=50)  # 19 tokens each: fits alone
    s.add([a, b])
    run_step(s, s.schedule())  # both prefilled: 2 blocks each
    assert s.block_manager.num_free == 1
    run_step(s, s.schedule())  # token 8 still fits in 2 blocks
    batch = s.schedule()  # a and b each need a 3rd block: a gets the last one, b (the newest) is preempted
    assert batch.seqs == [a] and batch.preempted == [b]
    assert b.status is Status.WAITING and b.block_table == [] and b.num_computed_tokens == 0
    assert s.waiting[0] is b and b.num_tokens == 9  # keeps its generated tokens, recomputed later
    while a.status is not Status.FINISHED:
        run_step(s, s.schedule())
    batch = s.schedule()
    assert batch.seqs == [b] and batch.num_new == [9]  # prompt + its output so far


def test_waiting_queue_is_bounded() -> None:
    s = make(max_waiting=2)
    s.add([seq(4), seq(4)])
    with pytest.raises(Overloaded) as exc:
        s.add([seq(4)])
    assert exc.value.status == 429


def test_max_num_seqs_caps_the_running_batch() -> None:
    s = make(max_num_seqs=2, max_num_batched_tokens=64)
    s.add([seq(4, str(i), start=10 * i) for i in range(3)])
    batch = s.schedule()
    assert len(batch.seqs) == 2 and len(s.waiting) == 1


def test_prefix_cache_hits_skip_computed_blocks_and_are_counted() -> None:
    s = make(max_num_batched_tokens=64)
    a = seq(17, "a")
    s.add([a])
    run_step(s, s.schedule())
    b = seq(17, "b")  # same prompt
    s.add([b])
    batch = s.schedule()
    assert batch.num_new[-1] == 1  # 16 tokens (4 full blocks) from the cache, the last one computed
    assert b.num_cached_prompt_tokens == 16
    assert s.prefix_hit_rate == pytest.approx(16 / 34)


def test_abort_frees_blocks_of_waiting_and_running_sequences() -> None:
    s = make(max_num_seqs=1)
    a, b = seq(9, "a"), seq(9, "b", start=50)
    s.add([a, b])
    s.schedule()
    assert s.block_manager.num_free < 64
    assert s.abort("a") == [a] and s.abort("b") == [b]
    assert a.finish_reason == "abort" and s.block_manager.num_free == 64
    assert not s.has_work

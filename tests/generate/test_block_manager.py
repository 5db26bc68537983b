from __future__ import annotations

from quiver.generate.block_manager import BlockManager
from quiver.generate.params import SamplingParams
from quiver.generate.sequence import Sequence


def seq(tokens: list[int], max_tokens: int = 4) -> Sequence:
    return Sequence("r", tokens, SamplingParams(max_tokens=max_tokens))


def test_allocate_grow_and_free_return_every_block() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    s = seq(list(range(10)))
    assert bm.allocate(s, [], 10)
    assert len(s.block_table) == 3 and bm.num_free == 5
    assert bm.append_slots(s, 12) and len(s.block_table) == 3  # still fits in block 3
    assert bm.append_slots(s, 13) and len(s.block_table) == 4
    assert s.block_table == [0, 1, 2, 3]  # consecutive while the next block is free
    bm.free(s)
    assert bm.num_free == 8 and s.block_table == [] and bm.usage == 0.0


def test_allocation_fails_without_partial_changes() -> None:
    bm = BlockManager(num_blocks=2, block_size=4)
    s = seq(list(range(12)))
    assert not bm.allocate(s, [], 12)
    assert bm.num_free == 2 and s.block_table == []
    t = seq(list(range(8)))
    assert bm.allocate(t, [], 8)
    assert not bm.append_slots(t, 9)
    assert len(t.block_table) == 2


def test_prefix_cache_shares_full_computed_blocks_with_refcounts() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    a = seq(list(range(10)))
    assert bm.find_cached_prefix(a.token_ids) == []
    bm.allocate(a, [], 10)
    a.num_computed_tokens = 10
    bm.cache_blocks(a)  # blocks 0 and 1 are full and computed; block 2 is partial
    b = seq([*range(8), 99, 98, 97])
    cached = bm.find_cached_prefix(b.token_ids)
    assert cached == a.block_table[:2]
    assert bm.allocate(b, cached, b.num_tokens)
    assert b.num_computed_tokens == 8
    assert b.block_table[:2] == a.block_table[:2] and b.block_table[2] not in a.block_table
    assert bm.ref_count[a.block_table[0]] == 2
    bm.free(a)
    assert bm.ref_count[b.block_table[0]] == 1  # still held by b


def test_freed_blocks_stay_cached_until_reused() -> None:
    bm = BlockManager(num_blocks=4, block_size=4)
    a = seq(list(range(9)))
    bm.allocate(a, [], 9)
    a.num_computed_tokens = 9
    bm.cache_blocks(a)
    blocks = list(a.block_table)
    bm.free(a)
    assert bm.num_free == 4
    again = seq(list(range(9)))
    cached = bm.find_cached_prefix(again.token_ids)
    assert cached == blocks[:2]
    assert bm.allocate(again, cached, 9)
    assert bm.num_free == 1  # two revived cached blocks + one new
    # filling the cache with other tokens evicts the cached blocks
    bm.free(again)
    other = seq(list(range(100, 116)))
    assert bm.allocate(other, [], 16)
    assert bm.find_cached_prefix(list(range(9))) == []


def test_last_token_is_never_served_from_cache() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    a = seq(list(range(8)))
    bm.allocate(a, [], 8)
    a.num_computed_tokens = 8
    bm.cache_blocks(a)
    assert len(bm.find_cached_prefix(list(range(8)))) == 1  # the block with the last token is recomputed
    assert len(bm.find_cached_prefix(list(range(9)))) == 2


def test_disabled_prefix_caching_finds_nothing() -> None:
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    a = seq(list(range(9)))
    bm.allocate(a, [], 9)
    a.num_computed_tokens = 9
    bm.cache_blocks(a)
    assert bm.find_cached_prefix(list(range(9))) == []


def test_sequences_growing_side_by_side_keep_consecutive_blocks() -> None:
    bm = BlockManager(num_blocks=64, block_size=4)
    a, b = seq(list(range(4)), max_tokens=40), seq(list(range(50, 54)), max_tokens=40)
    assert bm.allocate(a, [], 4) and bm.allocate(b, [], 4)
    for n in range(5, 45):  # decode both, one token at a time
        assert bm.append_slots(a, n) and bm.append_slots(b, n)
    for s in (a, b):
        assert s.block_table == list(range(s.block_table[0], s.block_table[0] + 11))
    bm.free(a)
    bm.free(b)
    assert bm.num_free == 64 and bytes(bm._clean) == b"\x01" * 64  # reservations were given back

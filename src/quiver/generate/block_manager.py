"""The KV cache's bookkeeping: fixed-size, reference-counted blocks, and prefix caching by block hash.

Plain Python, no torch: a block is an index into the model runner's preallocated cache tensors; a
sequence's ``block_table`` lists its blocks in order. A *full* block whose K/V have been computed is
registered under a hash of its tokens chained with its parent's hash, so a later sequence with the same
prefix reuses it instead of recomputing. Freed blocks keep their hash until they are handed out again, so
the cache also survives the end of the request that filled it (least recently freed blocks go first).

>>> bm = BlockManager(num_blocks=8, block_size=4)
>>> seq = Sequence("r1", list(range(10)), SamplingParams())  # doctest: +SKIP
>>> bm.allocate(seq, bm.find_cached_prefix(seq.token_ids), 10)  # doctest: +SKIP
"""

from __future__ import annotations

from collections import deque

from quiver.generate.sequence import Sequence


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"expected num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_count = [0] * num_blocks
        self._hash: list[int | None] = [None] * num_blocks
        self._tokens: list[tuple[int, ...] | None] = [None] * num_blocks
        self._hash_to_block: dict[int, int] = {}
        # Free pool: a queue in the order blocks were freed plus a flag per block. Taking a specific block
        # (a prefix-cache hit, or the block right after a sequence's last one) only clears its flag; stale
        # queue entries are skipped when popped.
        self._free_queue: deque[int] = deque(range(num_blocks))
        self._is_free = [True] * num_blocks
        self.num_free = num_blocks
        # Placement: a sequence's blocks should be consecutive so attention reads one view of the cache.
        # When a sequence needs a block and the one after its last is taken, it moves to a run of "clean"
        # blocks (free, not cached, not reserved) long enough for all it may still write, and *reserves*
        # that run: other sequences avoid it while it is free. Reserved blocks still count as free; the
        # least-recently-freed fallback may take them when nothing clean is left.
        self._clean = bytearray(b"\x01") * num_blocks
        self._reserved_by: list[int | None] = [None] * num_blocks
        self._reservations: dict[int, range] = {}

    # -- queries ------------------------------------------------------------------------------------------
    @property
    def usage(self) -> float:
        """Fraction of blocks held by live sequences (cached free blocks count as free)."""
        return 1.0 - self.num_free / self.num_blocks

    def blocks_needed(self, seq: Sequence, num_tokens: int) -> int:
        """New blocks ``seq`` needs so that its first ``num_tokens`` tokens have a slot."""
        return max(0, -(-num_tokens // self.block_size) - len(seq.block_table))

    def find_cached_prefix(self, token_ids: list[int]) -> list[int]:
        """Blocks holding the longest cached run of full blocks of ``token_ids``. At least one token is
        always left to compute (the model must produce logits for the last one)."""
        if not self.enable_prefix_caching:
            return []
        bs = self.block_size
        found: list[int] = []
        parent: int | None = None
        for i in range((len(token_ids) - 1) // bs):
            tokens = tuple(token_ids[i * bs : (i + 1) * bs])
            parent = hash((parent, tokens))
            block = self._hash_to_block.get(parent)
            if block is None or self._tokens[block] != tokens:
                break
            found.append(block)
        return found

    def can_allocate(self, seq: Sequence, cached: list[int], num_tokens: int) -> bool:
        revived = sum(1 for b in cached if self.ref_count[b] == 0)
        new = max(0, -(-num_tokens // self.block_size) - len(seq.block_table) - len(cached))
        return revived + new <= self.num_free

    # -- changes ------------------------------------------------------------------------------------------
    def allocate(self, seq: Sequence, cached: list[int], num_tokens: int) -> bool:
        """Give a sequence without blocks the ``cached`` prefix blocks, then fresh blocks up to
        ``num_tokens`` tokens. Returns False (and changes nothing) if there are not enough free blocks."""
        if seq.block_table:
            raise ValueError(f"sequence {seq.seq_id} already has blocks")
        if not self.can_allocate(seq, cached, num_tokens):
            return False
        for block in cached:
            if self.ref_count[block] == 0:
                self._is_free[block] = False
                self.num_free -= 1
            self.ref_count[block] += 1
            seq.block_table.append(block)
            seq.block_hashes.append(self._hash[block])  # type: ignore[arg-type]
        seq.num_computed_tokens = len(cached) * self.block_size
        return self.append_slots(seq, num_tokens)

    def append_slots(self, seq: Sequence, num_tokens: int) -> bool:
        """Grow ``seq`` so its first ``num_tokens`` tokens have slots. False (no change) if out of blocks."""
        needed = self.blocks_needed(seq, num_tokens)
        if needed > self.num_free:
            return False
        for _ in range(needed):
            seq.block_table.append(self._take_for(seq))
        return True

    def cache_blocks(self, seq: Sequence) -> None:
        """Register the hashes of ``seq``'s newly full, computed blocks (call after a step ran)."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        for i in range(len(seq.block_hashes), seq.num_computed_tokens // bs):
            tokens = tuple(seq.token_ids[i * bs : (i + 1) * bs])
            h = hash((seq.block_hashes[-1] if seq.block_hashes else None, tokens))
            seq.block_hashes.append(h)
            block = seq.block_table[i]
            if h not in self._hash_to_block and self._hash[block] is None:
                self._hash_to_block[h] = block
                self._hash[block] = h
                self._tokens[block] = tokens

    def free(self, seq: Sequence) -> None:
        """Release ``seq``'s blocks; tail blocks first, so a shared prefix is the last to be evicted."""
        for block in reversed(seq.block_table):
            self.ref_count[block] -= 1
            if self.ref_count[block] == 0:
                self._is_free[block] = True
                self._free_queue.append(block)
                self.num_free += 1
                if self._hash[block] is None and self._reserved_by[block] is None:
                    self._clean[block] = 1
        self._release(seq.seq_id)
        seq.block_table = []
        seq.block_hashes = []
        seq.num_computed_tokens = 0
        if len(self._free_queue) > 4 * self.num_blocks:
            self._free_queue = deque(b for b in self._free_queue if self._is_free[b])

    def _take_for(self, seq: Sequence) -> int:
        nxt = seq.block_table[-1] + 1 if seq.block_table else -1
        if (
            0 <= nxt < self.num_blocks
            and self._is_free[nxt]
            and self._hash[nxt] is None
            and self._reserved_by[nxt] in (None, seq.seq_id)
        ):
            return self._take(nxt)
        bs = self.block_size
        want = -(-(seq.num_prompt_tokens + seq.params.max_tokens) // bs) - len(seq.block_table)
        k = max(1, min(want, self.num_blocks))
        while k >= 1:
            start = self._clean.find(b"\x01" * k)
            if start >= 0:
                self._release(seq.seq_id)
                run = range(start, start + k)
                for b in run:
                    self._reserved_by[b] = seq.seq_id
                    self._clean[b] = 0
                self._reservations[seq.seq_id] = run
                return self._take(start)
            k //= 2
        return self._take(None)

    def _release(self, seq_id: int) -> None:
        """Give back the unused part of a sequence's reservation."""
        run = self._reservations.pop(seq_id, None)
        for b in run or ():
            if self._reserved_by[b] == seq_id:
                self._reserved_by[b] = None
                if self._is_free[b] and self._hash[b] is None:
                    self._clean[b] = 1

    def _take(self, block: int | None) -> int:
        """Take ``block``, or (None) the least recently freed block, evicting its cache entry."""
        if block is None:
            block = self._free_queue.popleft()
            while not self._is_free[block]:
                block = self._free_queue.popleft()
        self._is_free[block] = False
        self._clean[block] = 0
        self._reserved_by[block] = None
        self.num_free -= 1
        self.ref_count[block] = 1
        h = self._hash[block]
        if h is not None:  # evict: the block is about to hold other tokens
            if self._hash_to_block.get(h) == block:
                del self._hash_to_block[h]
            self._hash[block] = None
            self._tokens[block] = None
        return block

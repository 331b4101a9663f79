"""`BlockManager`: paged KV cache with prefix caching, as vLLM v1's KV cache manager.

Blocks are integers 0..n−1. Free blocks sit in an LRU queue (head = next to be reused); a freed
block keeps its hash and stays findable until it is reused, at which point its hash is evicted.
A request's blocks are freed tail first, so its last blocks are reused first. The queue starts
as 0..n−1 and freed blocks join its tail, so it is kept as the never-used blocks
`next_fresh..n−1` (the head) followed by a list of freed blocks read from `_head` on. A block
taken out of the middle (a prefix-cache hit) leaves a stale entry behind, skipped when the head
reaches it: `_skip[b]` counts b's stale entries, which always come before its live one.

Reference counts matter only once a block can be shared (a request with token identity under
prefix caching) or a preempted request remembers its blocks. Until then every block in use has
ref 1 and every free one ref 0, so `ref_cnt` is left alone (no per-block work on take and free)
and `refs()` derives the counts; the first such request starts counting (`_count_refs`).
"""
from __future__ import annotations

from array import array

from fleetsim.instance.request import Request


_ONES = array("i", [1])


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_caching: bool = True):
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.next_fresh = 0
        self._queue = array("i")              # freed blocks, oldest first, from _head on (4 bytes each)
        self._head = 0
        self._queued = 0                      # live entries in _queue
        self._stale = 0                       # stale entries in _queue
        self._skip = array("i", bytes(4 * num_blocks))
        self.compact_at = 4096                # stale entries tolerated before `_compact`
        self.ref_cnt = array("i", bytes(4 * num_blocks))   # kept up to date once `counting_refs`
        self.counting_refs = False
        self.block_hash: dict[int, object] = {}     # block -> hash of its cached content (a dict, not a
                                                    # list per block: the GC would walk every slot)
        self.generation = array("i", bytes(4 * num_blocks))    # bumped when a freed block is reused
        self.track_generations = False                          # set once a request remembers blocks
        self.cached: dict[int, int] = {}

    @property
    def num_free(self) -> int:
        return self.num_blocks - self.next_fresh + self._queued

    @property
    def num_used(self) -> int:
        return self.next_fresh - self._queued

    def refs(self) -> array:
        """Every block's reference count."""
        if self.counting_refs:
            return self.ref_cnt
        refs = array("i", bytes(4 * self.num_blocks))
        refs[:self.next_fresh] = _ONES * self.next_fresh
        for b in self._live_queue():
            refs[b] = 0
        return refs

    def _count_refs(self) -> None:
        """Start keeping `ref_cnt` (from now on a block can be shared or remembered)."""
        if not self.counting_refs:
            self.ref_cnt = self.refs()
            self.counting_refs = True

    def free_order(self) -> list[int]:
        """The free queue, head (next reused) first."""
        return list(range(self.next_fresh, self.num_blocks)) + self._live_queue()

    def _live_queue(self) -> list[int]:
        """The freed-block list without its stale entries."""
        skip = array("i", self._skip)
        live = []
        for b in self._queue[self._head:]:
            if skip[b]:
                skip[b] -= 1
            else:
                live.append(b)
        return live

    def _compact(self) -> None:
        """Drop the stale entries (run when they outnumber the live ones, so amortised O(1);
        otherwise hits on freed blocks could grow the list while never-used blocks last)."""
        self._queue = array("i", self._live_queue())
        self._head = 0
        self._skip = array("i", bytes(4 * self.num_blocks))
        self._stale = 0

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def find_cached_prefix(self, req: Request) -> list[int]:
        """Blocks of the longest cached prefix of `req`, capped so ≥ 1 token is left to compute."""
        if not self.enable_caching:
            return []
        bs, cached = self.block_size, self.cached
        if not req.has_identity:
            return self._own_prefix(req)
        hits = []
        for i in range((req.num_tokens - 1) // bs):
            b = cached.get(req.block_hash(i, bs))
            if b is None:
                break
            hits.append(b)
        return hits

    def _own_prefix(self, req: Request) -> list[int]:
        """Hits of a request without token identity: its own full blocks from before a preemption,
        as long as none was reused since (what unique block hashes would find)."""
        limit = (req.num_tokens - 1) // self.block_size
        gen, ref = self.generation, self.ref_cnt
        hits = []
        for b, g in req.own_cache[:limit]:
            if gen[b] != g or ref[b] != 0:
                break
            hits.append(b)
        return hits

    def allocate(self, req: Request, num_new_tokens: int, hits: list[int] = ()) -> bool:
        """Give `req` blocks for `num_new_tokens` more tokens (after `hits`); False if they do not fit."""
        bs = self.block_size
        if not hits:
            total = req.num_computed + num_new_tokens
            if total <= len(req.blocks) * bs:          # fast path: a decode inside its last block
                if self.enable_caching and req.has_identity and total // bs > req.num_cached_blocks:
                    self._cache_full_blocks(req, min(total, req.num_tokens))
                return True
        if not self.counting_refs and (hits or (self.enable_caching and req.has_identity)):
            self._count_refs()
        ref = self.ref_cnt
        num_free = self.num_blocks - self.next_fresh + self._queued
        computed = req.num_computed + len(hits) * bs
        need = self.blocks_for(computed + num_new_tokens) - len(req.blocks) - len(hits)
        if hits:
            evictable_hits = sum(1 for b in hits if ref[b] == 0)
            if need > num_free - evictable_hits:
                return False
            for b in hits:
                if ref[b] == 0:              # leave a stale entry in the queue
                    self._skip[b] += 1
                    self._stale += 1
                    self._queued -= 1
                ref[b] += 1
            if self._stale > self.compact_at and self._stale > self._queued:
                self._compact()
            req.blocks.extend(hits)
            req.num_cached_blocks = len(req.blocks)
        elif need > num_free:
            return False
        if need > 0:
            req.blocks.extend(self.take(need))
        if self.enable_caching and req.has_identity:
            self._cache_full_blocks(req, min(computed + num_new_tokens, req.num_tokens))
        return True

    def take(self, count: int) -> list[int]:
        """`count` blocks from the head of the free queue (the caller checked they are free), each
        with ref 1; a reused block loses its cached hash and gets a new generation. (Hashes and
        generations are only looked at once some block was hashed / some request remembered
        its blocks: before that, nothing can depend on them.)"""
        nf = self.next_fresh
        fresh = min(count, self.num_blocks - nf)
        out = list(range(nf, nf + fresh))
        counting = self.counting_refs
        if fresh:
            if counting:
                self.ref_cnt[nf:nf + fresh] = _ONES * fresh
            self.next_fresh = nf + fresh
        if fresh < count:
            reused = self._pop(count - fresh)
            if counting:
                ref = self.ref_cnt
                for b in reused:
                    ref[b] = 1
            if self.track_generations:
                gen = self.generation
                for b in reused:
                    gen[b] += 1
            if self.cached:
                hashes, cached = self.block_hash, self.cached
                for b in reused:
                    h = hashes.pop(b, None)
                    if h is not None and cached.get(h) == b:
                        del cached[h]
            out += reused
        return out

    def _pop(self, count: int) -> list[int]:
        """`count` live blocks from the head of the freed-block list."""
        queue, head = self._queue, self._head
        if not self._stale:
            out = queue[head:head + count].tolist()
            head += count
        else:
            out, skip = [], self._skip
            while len(out) < count:
                b = queue[head]
                head += 1
                if skip[b]:
                    skip[b] -= 1
                    self._stale -= 1
                else:
                    out.append(b)
        self._queued -= count
        if head > 4096 and 2 * head > len(queue):
            del queue[:head]
            head = 0
        self._head = head
        return out

    def _cache_full_blocks(self, req: Request, tokens: int) -> None:
        full = tokens // self.block_size
        if full <= req.num_cached_blocks:
            return
        bs, cached, hashes, blocks = self.block_size, self.cached, self.block_hash, req.blocks
        for i in range(req.num_cached_blocks, full):
            h = req.block_hash(i, bs)
            if h not in cached:
                cached[h] = blocks[i]
                hashes[blocks[i]] = h
        req.num_cached_blocks = full

    def free(self, req: Request, preempted: bool = False) -> None:
        """Release `req`'s blocks, tail first; hashed blocks stay cached until reused (for a
        preempted request without token identity, its full blocks are remembered instead)."""
        shared = self.enable_caching and req.has_identity      # only such blocks can have ref > 1
        if preempted and self.enable_caching and not req.has_identity:
            self.track_generations = True
            self._count_refs()
            gen = self.generation
            req.own_cache = [(b, gen[b]) for b in req.blocks[:req.num_computed // self.block_size]]
        ref, queue = self.ref_cnt, self._queue
        tail_first = req.blocks[::-1]
        if shared:
            for b in tail_first:
                ref[b] -= 1
                if ref[b] == 0:
                    queue.append(b)
                    self._queued += 1
        else:
            if self.counting_refs:
                for b in tail_first:
                    ref[b] = 0
            queue.extend(tail_first)
            self._queued += len(tail_first)
        req.blocks = []
        req.num_cached_blocks = 0

    def held_only_by(self, reqs) -> int:
        """How many blocks in use would be free if `reqs` were all freed. (Only blocks of
        requests with token identity can be shared, as in `free`: the others count whole.)"""
        count: dict[int, int] = {}
        alone = 0
        caching = self.enable_caching
        for r in reqs:
            if not (caching and r.has_identity):
                alone += len(r.blocks)
                continue
            for b in r.blocks:
                count[b] = count.get(b, 0) + 1
        if not count:
            return alone
        ref = self.ref_cnt
        return alone + sum(1 for b, c in count.items() if ref[b] == c)

    def check_invariants(self) -> None:
        """Every block is either free with ref 0 or held with ref > 0; the cache map agrees."""
        queued = set(self.free_order())
        assert len(queued) == self.num_free, "free queue holds a block twice"
        refs = self.refs()
        for b in range(self.num_blocks):
            free = b in queued
            assert (refs[b] == 0) == free, f"block {b} ref/free mismatch"
            assert b < self.next_fresh or b not in self.block_hash, f"never-used block {b} has a hash"
        for h, b in self.cached.items():
            assert self.block_hash.get(b) == h, f"cached hash of block {b} out of sync"

"""KV block manager: unit cases and a hypothesis fuzz of whole engine runs."""
from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings, strategies as st

from fleetsim.instance.block_manager import BlockManager
from fleetsim.instance.request import Request
from conftest import check_clean, make_engine


def _r(rid, n, ids=None):
    return Request(rid, 0, n, 1, token_ids=ids)


def test_allocate_and_free_count_blocks():
    bm = BlockManager(8, 4)
    a = _r(0, 10)
    assert bm.blocks_for(10) == 3 and bm.blocks_for(12) == 3 and bm.blocks_for(13) == 4
    assert bm.allocate(a, 10)
    assert len(a.blocks) == 3 and bm.num_free == 5 and bm.num_used == 3
    a.num_computed = 10
    assert bm.allocate(a, 2)                      # 12 tokens still fit 3 blocks
    assert len(a.blocks) == 3
    a.num_computed = 12
    assert bm.allocate(a, 1)                      # 13th token needs a 4th block
    assert len(a.blocks) == 4 and bm.num_free == 4
    bm.check_invariants()
    bm.free(a)
    assert a.blocks == [] and bm.num_free == 8
    bm.check_invariants()


def test_allocate_that_does_not_fit_changes_nothing():
    bm = BlockManager(3, 4)
    a, b = _r(0, 8), _r(1, 8)
    assert bm.allocate(a, 8)
    assert not bm.allocate(b, 8)
    assert b.blocks == [] and bm.num_free == 1
    bm.check_invariants()


def test_free_is_tail_first_and_reuse_is_lru():
    bm = BlockManager(4, 4)
    a = _r(0, 8, ids=list(range(8)))
    assert bm.allocate(a, 8)
    assert a.blocks == [0, 1]
    bm.free(a)
    assert bm.free_order() == [2, 3, 1, 0]    # never-used blocks first, then a's tail first
    b = _r(1, 12, ids=[90 + i for i in range(12)])
    assert bm.allocate(b, 12)
    assert b.blocks == [2, 3, 1]
    c = _r(2, 9, ids=list(range(8)) + [5])
    assert bm.find_cached_prefix(c) == [0]        # a's block 1 was evicted by reuse
    bm.check_invariants()


def test_freed_blocks_stay_cached_until_reused():
    bm = BlockManager(4, 4)
    a = _r(0, 8, ids=list(range(8)))
    bm.allocate(a, 8)
    bm.free(a)
    c = _r(1, 9, ids=list(range(8)) + [5])
    assert bm.find_cached_prefix(c) == [0, 1]
    d = _r(2, 8, ids=list(range(8)))
    assert bm.find_cached_prefix(d) == [0]        # capped: one token must be computed


def test_hits_on_free_blocks_count_as_available():
    """4 blocks: a's 3 freed blocks are hits for b, which needs only 1 more; then nothing is left."""
    bm = BlockManager(4, 4)
    a = _r(0, 12, ids=list(range(12)))
    bm.allocate(a, 12)
    bm.free(a)
    b = _r(1, 16, ids=list(range(16)))
    hits = bm.find_cached_prefix(b)
    assert hits == [0, 1, 2]
    assert bm.allocate(b, 4, hits)
    assert b.blocks == [0, 1, 2, 3] and bm.num_free == 0
    assert not bm.allocate(_r(2, 4), 4)
    bm.check_invariants()
    bm.free(b)
    assert bm.num_free == 4
    bm.check_invariants()


def test_shared_blocks_are_ref_counted():
    bm = BlockManager(8, 4)
    a = _r(0, 9, ids=list(range(9)))
    bm.allocate(a, 9)
    b = _r(1, 9, ids=list(range(9)))
    hits = bm.find_cached_prefix(b)
    assert hits == [0, 1]
    assert bm.allocate(b, 1, hits)
    assert [bm.refs()[x] for x in (0, 1)] == [2, 2]
    assert b.blocks[:2] == [0, 1] and b.blocks[2] not in a.blocks
    bm.free(a)
    assert 0 not in bm.free_order() and bm.refs()[0] == 1
    bm.free(b)
    assert bm.num_free == 8
    bm.check_invariants()


# --------------------------------------------------------------------------- fuzz

PREFIXES = [list(range(1, 41)), list(range(1, 21)) + list(range(500, 520)), [3] * 40]


def test_refs_are_counted_only_once_a_block_can_be_shared_or_remembered():
    """Without token identity every block in use has ref 1: `refs()` derives that (no per-block
    work on take and free) and agrees with a manager that counts from the start; a preempted
    request that remembers its blocks, or one with identity, starts the counting."""
    plain, counted = BlockManager(6, 4), BlockManager(6, 4)
    counted.counting_refs = True
    reqs = {}
    for bm in (plain, counted):
        a, b = _r(0, 9), _r(1, 8)
        assert bm.allocate(a, 9) and bm.allocate(b, 8)       # blocks 0-2 and 3-4
        bm.free(a)                                           # queue: 2, 1, 0
        c = _r(2, 12)
        assert bm.allocate(c, 12)                            # block 5, then reused 2, 1
        reqs[id(bm)] = (b, c)
    assert not plain.counting_refs
    assert list(plain.refs()) == list(counted.refs()) == [0, 1, 1, 1, 1, 1]
    assert list(plain.ref_cnt) == [0] * 6                    # never touched
    b, c = reqs[id(plain)]
    b.num_computed = 8
    plain.free(b, preempted=True)                            # remembers blocks 3, 4: counting starts
    assert plain.counting_refs and list(plain.ref_cnt) == [0, 1, 1, 0, 0, 1]
    plain.check_invariants()
    d = BlockManager(4, 4)
    assert d.allocate(_r(3, 5, ids=list(range(5))), 5) and d.counting_refs
    assert list(d.ref_cnt) == [1, 1, 0, 0]


@st.composite
def scenario(draw):
    block_size = draw(st.sampled_from([2, 4, 8, 16]))
    n = draw(st.integers(1, 12))
    use_ids = draw(st.booleans())
    reqs = []
    t = 0
    for rid in range(n):
        t += draw(st.integers(0, 3_000))
        prompt = draw(st.integers(1, 48))
        output = draw(st.integers(1, 16))
        ids = None
        if use_ids:
            base = PREFIXES[draw(st.integers(0, len(PREFIXES) - 1))]
            keep = draw(st.integers(0, min(prompt, len(base))))
            ids = base[:keep] + [10_000 + rid * 100 + i for i in range(prompt - keep)]
            if draw(st.booleans()):
                ids = ids + [20_000 + i for i in range(output)]
        reqs.append((rid, t, prompt, output, ids))
    longest = max(p + o for _, _, p, o, _ in reqs)
    min_blocks = -(-longest // block_size)
    chunked = draw(st.booleans())
    budget = draw(st.integers(1, 96)) if chunked else draw(st.integers(longest, longest + 64))
    cfg = dict(
        block_size=block_size,
        num_gpu_blocks=min_blocks + draw(st.integers(0, 6)),
        max_num_seqs=draw(st.integers(1, 6)),
        max_num_batched_tokens=budget,
        enable_chunked_prefill=chunked,
        enable_prefix_caching=draw(st.booleans()),
        long_prefill_token_threshold=draw(st.sampled_from([0, 0, 1, 5, 17])),
        async_scheduling=draw(st.booleans()),
    )
    return cfg, reqs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_fuzz_engine_runs_to_completion_cleanly(case):
    cfg, specs = case
    e = make_engine(**cfg)
    reqs = [Request(rid, t, p, o, token_ids=ids) for rid, t, p, o, ids in specs]
    for r in reqs:
        e.add_request(r)
    sched = e.scheduler
    orig = sched.schedule

    def checked_schedule(now):
        out = orig(now)
        assert sum(n for _, n in out) <= cfg["max_num_batched_tokens"]
        assert len(sched.running) <= cfg["max_num_seqs"]
        assert len({id(r) for r, _ in out}) == len(out)
        for r, n in out:
            assert n >= 1 and r.num_computed + n <= r.num_tokens
            assert r.hit_tokens % cfg["block_size"] == 0
            assert len(r.blocks) * cfg["block_size"] >= r.num_computed + n
            if cfg["long_prefill_token_threshold"] and n > 1:
                assert n <= cfg["long_prefill_token_threshold"]
        return out

    sched.schedule = checked_schedule
    guard = 0
    while e.has_work:
        e.advance_until(max(e.now, e.next_event_ns()) + 1)   # one step (or one idle jump) at a time
        e.blocks.check_invariants()
        used = sum(1 for c in e.blocks.refs() if c > 0)
        assert used == e.blocks.num_used
        guard += 1
        assert guard < 100_000
    check_clean(e)
    assert len(e.finished) == len(reqs)
    for r in reqs:
        assert r.num_output == r.output_len
        assert len(r.token_times) == r.output_len
        assert all(a < b for a, b in zip(r.token_times, r.token_times[1:]))
        assert r.token_times[0] - r.arrival_ns > 0                # TTFT > 0
        assert r.first_scheduled_ns >= r.arrival_ns
        assert r.token_times[0] > r.first_scheduled_ns
        assert r.blocks == []
    assert sum(r.preemptions for r in reqs) == sched.preemptions
    assert e.output_tokens_done == sum(r.output_len for r in reqs)
    assert e.prompt_tokens_done == sum(r.prompt_len for r in reqs)
    if not cfg["enable_prefix_caching"]:
        assert sched.prefix_hits == 0
    event("preempted" if sched.preemptions else "no preemption")
    event("prefix hits" if sched.prefix_hits else "no prefix hits")


def test_fuzz_like_tiny_cache_does_preempt():
    """Sanity for the fuzz: a tiny cache with many growing requests really preempts (and finishes)."""
    e = make_engine(num_gpu_blocks=6, block_size=2, max_num_batched_tokens=32)
    reqs = [Request(i, i * 10, 3, 8) for i in range(5)]
    for r in reqs:
        e.add_request(r)
    e.run_to_completion()
    check_clean(e)
    assert e.scheduler.preemptions > 0
    assert all(len(r.token_times) == 8 for r in reqs)


# ------------------------------------------------------------- LRU order against a plain list

@st.composite
def block_ops(draw):
    """A block size, a pool size and a sequence of admit / grow / free / preempt operations."""
    ops = draw(st.lists(st.tuples(st.sampled_from(["admit", "admit", "grow", "free", "free", "preempt"]),
                                  st.integers(0, 3), st.integers(1, 40), st.integers(0, 3), st.booleans()),
                        min_size=1, max_size=60))
    return draw(st.sampled_from([2, 4, 8])), draw(st.integers(8, 60)), ops, draw(st.sampled_from([0, 2, 4096]))


@settings(max_examples=300, deadline=None)
@given(block_ops())
def test_free_queue_is_lru_like_a_plain_list(case):
    """Every block the manager takes is the head of a reference LRU list (never-used blocks, then
    freed ones in the order freed, tail first; a prefix hit takes its block out of the middle)."""
    bs, num_blocks, ops, compact_at = case
    bm = BlockManager(num_blocks, bs, enable_caching=True)
    bm.compact_at = compact_at                 # also with the stale entries dropped early and often
    ref_queue = list(range(num_blocks))
    live: dict[int, Request] = {}
    prefixes = [list(range(1, 81)), list(range(1, 81)), list(range(1, 41)) + list(range(900, 940)), None]
    rid = 0

    def allocate(req, n, hits=()):
        before = len(req.blocks)
        queued_hits = [b for b in hits if b in ref_queue]
        if not bm.allocate(req, n, list(hits)):
            return False
        for b in queued_hits:
            ref_queue.remove(b)
        new = req.blocks[before + len(hits):]
        assert new == ref_queue[:len(new)], "took blocks out of LRU order"
        del ref_queue[:len(new)]
        return True

    def release(req, preempted):
        held = list(req.blocks)
        bm.free(req, preempted)
        ref_queue.extend(b for b in reversed(held) if bm.refs()[b] == 0 and b not in ref_queue)

    for op, slot, size, prefix, flag in ops:
        if op == "admit" and slot not in live:
            ids = prefixes[prefix]
            req = Request(rid, 0, size, 1, token_ids=ids[:size] + [10_000 + rid] * max(0, size - len(ids))
                          if ids is not None else None)
            rid += 1
            hits = bm.find_cached_prefix(req)
            if any(b in ref_queue for b in hits):
                event("hit on a freed block (taken out of the middle)")
            if allocate(req, size - len(hits) * bs, hits):
                req.num_computed = size
                live[slot] = req
        elif op == "grow" and slot in live:
            req = live[slot]
            req.num_tokens += 1
            if allocate(req, 1):
                req.num_computed += 1
            else:
                req.num_tokens -= 1
        elif op in ("free", "preempt") and slot in live:
            release(live.pop(slot), op == "preempt" and flag)
        assert bm.free_order() == ref_queue
        bm.check_invariants()
    for slot in sorted(live):                  # free everything, then take every block once more:
        release(live.pop(slot), False)         # the head passes every stale entry
    sweep = Request(rid, 0, bm.num_free * bs, 1)
    assert allocate(sweep, bm.num_free * bs)
    assert bm.num_free == 0 and sorted(sweep.blocks) == list(range(num_blocks))

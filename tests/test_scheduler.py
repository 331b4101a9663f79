"""Scheduler / engine semantics on small hand-computed cases (fake cost model: 1000 ns + 10 ns/token)."""
from __future__ import annotations

import pytest

from fleetsim.instance.engine import RequestRejected
from fleetsim.instance.request import Request
from conftest import check_clean, make_engine, req, run_all, scheduled_per_step, step_ns


def test_fake_step_cost_and_idle_jump():
    """One request alone: the engine jumps to its arrival, then steps back to back."""
    e = make_engine()
    (r,) = run_all(e, [req(0, 5_000, 10, 3)])
    assert r.first_scheduled_ns == 5_000
    t1 = 5_000 + step_ns(10)          # 6100: prefill of 10 tokens gives token 1
    t2 = t1 + step_ns(1)              # 7110
    t3 = t2 + step_ns(1)              # 8120
    assert r.token_times == [6_100, 7_110, 8_120] == [t1, t2, t3]
    assert e.steps == 3 and e.busy_ns == 3_120
    assert scheduled_per_step(e) == [(10, 1, ((10, 0),), 0), (1, 1, (), 1), (1, 1, (), 1)]
    assert e.prompt_tokens_done == 10 and e.output_tokens_done == 3


def test_token_budget_split_across_requests():
    """Budget 100: r0 takes its 80-token prompt, r1 gets the 20 left, then its 30 remaining next step."""
    e = make_engine(max_num_batched_tokens=100)
    r0, r1 = run_all(e, [req(0, 0, 80, 3), req(1, 0, 50, 2)])
    assert scheduled_per_step(e) == [
        (100, 2, ((80, 0), (20, 0)), 0),     # 2000 ns
        (31, 2, ((30, 20),), 1),             # r0 decode + r1's last 30 prompt tokens: 1310 ns
        (2, 2, (), 2),                       # 1020 ns
    ]
    assert r0.token_times == [2_000, 3_310, 4_330]
    assert r1.token_times == [3_310, 4_330]
    assert r0.first_scheduled_ns == r1.first_scheduled_ns == 0


def test_chunked_prefill_long_prompt_exact_ttft():
    """A 200-token prompt with budget 64 takes chunks 64, 64, 64, 8."""
    e = make_engine(max_num_batched_tokens=64)
    (r,) = run_all(e, [req(0, 500, 200, 2)])
    assert scheduled_per_step(e) == [
        (64, 1, ((64, 0),), 0), (64, 1, ((64, 64),), 0), (64, 1, ((64, 128),), 0),
        (8, 1, ((8, 192),), 0), (1, 1, (), 1)]
    # 500 + 1640·3 + 1080 = 6500, then one decode of 1010
    assert r.token_times == [6_500, 7_510]
    assert r.token_times[0] - r.arrival_ns == 6_000


def test_admission_fcfs_stops_at_first_request_that_does_not_fit():
    """4 blocks of 16: r0 holds 3, r1 needs 2 and waits; r2 (needs 1) must not jump the queue."""
    e = make_engine(num_gpu_blocks=4, block_size=16, enable_prefix_caching=False)
    r0, r1, r2 = run_all(e, [req(0, 0, 40, 5), req(1, 0, 30, 1), req(2, 0, 10, 1)])
    steps = scheduled_per_step(e)
    assert steps[0] == (40, 1, ((40, 0),), 0)            # only r0 admitted (1400 ns)
    assert all(s[1] == 1 for s in steps[:5])              # r0 alone for its 5 tokens
    assert r0.token_times == [1_400, 2_410, 3_420, 4_430, 5_440]
    assert steps[5] == (40, 2, ((30, 0), (10, 0)), 0)    # r1 and r2 once r0 freed its blocks
    assert r1.first_scheduled_ns == r2.first_scheduled_ns == 5_440
    assert r1.token_times == r2.token_times == [6_840]
    assert e.scheduler.preemptions == 0                   # admission never preempts


def test_max_num_seqs_limits_running_set():
    e = make_engine(max_num_seqs=2)
    r0, r1, r2 = run_all(e, [req(i, 0, 10, 2) for i in range(3)])
    assert [s[1] for s in scheduled_per_step(e)] == [2, 2, 1, 1]
    assert r0.token_times == r1.token_times == [1_200, 2_220]
    assert r2.first_scheduled_ns == 2_220
    assert r2.token_times == [3_320, 4_330]


def test_long_prefill_token_threshold_caps_each_prefill():
    e = make_engine(max_num_batched_tokens=100, long_prefill_token_threshold=30)
    r0, r1 = run_all(e, [req(0, 0, 70, 1), req(1, 0, 20, 1)])
    assert scheduled_per_step(e) == [
        (50, 2, ((30, 0), (20, 0)), 0), (30, 1, ((30, 30),), 0), (10, 1, ((10, 60),), 0)]
    assert r1.token_times == [1_500]
    assert r0.token_times == [3_900]


def test_no_chunked_prefill_prompt_waits_for_whole_budget():
    """Without chunked prefill r1 (50) does not fit the 40 left; r2 (30 would fit) must not skip it."""
    e = make_engine(max_num_batched_tokens=100, enable_chunked_prefill=False)
    r0, r1, r2 = run_all(e, [req(0, 0, 60, 3), req(1, 0, 50, 1), req(2, 0, 30, 1)])
    assert scheduled_per_step(e) == [
        (60, 1, ((60, 0),), 0),                           # 1600
        (81, 3, ((50, 0), (30, 0)), 1),                   # 1810
        (1, 1, (), 1)]                                    # 1010
    assert r0.token_times == [1_600, 3_410, 4_420]
    assert r1.first_scheduled_ns == r2.first_scheduled_ns == 1_600
    assert r1.token_times == r2.token_times == [3_410]


def test_chunked_prefill_on_splits_what_off_would_delay():
    """Same workload with chunked prefill on: r1 starts in step 1 with the 40 tokens left."""
    e = make_engine(max_num_batched_tokens=100)
    r0, r1, r2 = run_all(e, [req(0, 0, 60, 3), req(1, 0, 50, 1), req(2, 0, 30, 1)])
    assert scheduled_per_step(e)[0] == (100, 2, ((60, 0), (40, 0)), 0)
    assert r1.first_scheduled_ns == 0


def test_no_chunked_prefill_rejects_request_larger_than_budget():
    e = make_engine(max_num_batched_tokens=100, enable_chunked_prefill=False)
    with pytest.raises(RequestRejected):
        e.add_request(req(0, 0, 95, 10))


def test_request_longer_than_kv_cache_is_rejected():
    e = make_engine(num_gpu_blocks=2, block_size=16)
    with pytest.raises(RequestRejected):
        e.add_request(req(0, 0, 30, 3))


def _preemption_workload(with_r2=True):
    rs = [req(0, 0, 8, 6), req(1, 0, 8, 6)]
    if with_r2:
        rs.append(req(2, 3_000, 4, 1))
    return rs


def test_tail_preemption_recompute_and_no_admission_in_that_step():
    """6 blocks of 4. r0, r1 (8+6 tokens) grow to 3 blocks each; at the 6th step r0 needs a 4th:
    r1 (the tail) is preempted, goes to the head of waiting (before r2), keeps its 5 outputs, and
    nothing is admitted in that step although 2 blocks are free; then it recomputes 8+5 tokens."""
    e = make_engine(num_gpu_blocks=6, block_size=4, enable_prefix_caching=False)
    r0, r1, r2 = _preemption_workload()
    for r in (r0, r1, r2):
        e.add_request(r)
    e.advance_until(5_241)                                # steps 1..6 (step 6 starts at 5240)
    assert e.now == 6_250
    s = e.scheduler
    assert s.running == []                                # r0 finished in step 6
    assert list(s.waiting) == [r1, r2]                    # preempted r1 at the head
    assert r1.preemptions == 1 and s.preemptions == 1 and r0.preemptions == 0
    assert r1.num_output == 5 and r1.num_computed == 0 and r1.blocks == []
    assert r1.token_times == [1_160, 2_180, 3_200, 4_220, 5_240]
    assert r2.first_scheduled_ns == -1                    # not admitted in the preempting step
    assert scheduled_per_step(e)[5] == (1, 1, (), 1)
    assert e.blocks.num_free == 6
    e.blocks.check_invariants()
    e.run_to_completion()
    check_clean(e)
    assert r0.token_times == [1_160, 2_180, 3_200, 4_220, 5_240, 6_250]
    # step 7: r1 recomputes prompt + 5 outputs = 13 tokens, r2 its 4
    assert scheduled_per_step(e)[6] == (17, 2, ((13, 0), (4, 0)), 0)
    assert r1.token_times == [1_160, 2_180, 3_200, 4_220, 5_240, 7_420]
    assert r2.first_scheduled_ns == 6_250 and r2.token_times == [7_420]
    assert r1.first_scheduled_ns == 0                     # first schedule is kept
    assert s.preemptions == 1


def test_preempted_request_reuses_its_own_cached_blocks_lru():
    """With prefix caching, r1's freed blocks stay hashed. r0 took r1's last freed block (block 2 of
    r1, freed first) so only r1's first two blocks (8 tokens) are hits on re-admission."""
    e = make_engine(num_gpu_blocks=6, block_size=4)
    r0, r1 = run_all(e, _preemption_workload(with_r2=False))
    assert r1.preemptions == 1 and e.scheduler.preemptions == 1
    assert r1.hit_tokens == 8
    assert scheduled_per_step(e)[6] == (5, 1, ((5, 8),), 0)
    assert r1.token_times[-1] == 6_250 + step_ns(5)


def test_preempting_self_ends_running_pass():
    """4 blocks of 4: r1 (tail) needs a 3rd block, none is free: it preempts itself; r0 runs alone."""
    e = make_engine(num_gpu_blocks=4, block_size=4, enable_prefix_caching=False)
    r0, r1 = run_all(e, [req(0, 0, 6, 2), req(1, 0, 8, 3)])
    assert scheduled_per_step(e) == [
        (14, 2, ((6, 0), (8, 0)), 0),      # 1140
        (1, 1, (), 1),                     # r0 only: 1010 → 2150
        (9, 1, ((9, 0),), 0),              # r1 recomputes 8 + 1 output: 1090 → 3240
        (1, 1, (), 1)]                     # 1010 → 4250
    assert r0.token_times == [1_140, 2_150]
    assert r1.token_times == [1_140, 3_240, 4_250]
    assert r1.preemptions == 1 and r0.preemptions == 0 and e.scheduler.preemptions == 1


def test_preempt_several_from_tail_until_it_fits():
    """10 blocks of 4, threshold 16. Step 2: r0 needs 4 blocks, none free; r2 (3 blocks) then r1
    (3 blocks) are preempted; both end up waiting in their original order."""
    e = make_engine(num_gpu_blocks=10, block_size=4, long_prefill_token_threshold=16,
                    enable_prefix_caching=False)
    r0, r1, r2 = rs = [req(0, 0, 36, 1), req(1, 0, 9, 3), req(2, 0, 9, 3)]
    for r in rs:
        e.add_request(r)
    e.advance_until(1_341)                       # steps 1 (0..1340) and 2 (1340..2500)
    assert e.now == 2_500
    assert list(e.scheduler.waiting) == [r1, r2]
    assert e.scheduler.running == [r0]
    assert e.scheduler.preemptions == 2 and r1.preemptions == r2.preemptions == 1
    e.run_to_completion()
    check_clean(e)
    assert scheduled_per_step(e) == [
        (34, 3, ((16, 0), (9, 0), (9, 0)), 0),   # 1340
        (16, 1, ((16, 16),), 0),                 # 2500
        (4, 1, ((4, 32),), 0),                   # r1 waits: 3 blocks needed, 1 free. 3540
        (20, 2, ((10, 0), (10, 0)), 0),          # 4740
        (2, 2, (), 2)]                           # 5760
    assert r0.token_times == [3_540]
    assert r1.token_times == r2.token_times == [1_340, 4_740, 5_760]


def test_prefix_cache_full_prompt_hit_is_capped_below_prompt():
    """Identical 32-token prompts, block 16: the second hits 16 tokens (not 32) and computes 16."""
    ids = list(range(100, 132))
    e = make_engine(block_size=16)
    r0, r1 = run_all(e, [req(0, 0, 32, 1, ids=ids), req(1, 5_000, 32, 1, ids=list(ids))])
    assert r0.hit_tokens == 0 and r1.hit_tokens == 16
    assert scheduled_per_step(e) == [(32, 1, ((32, 0),), 0), (16, 1, ((16, 16),), 0)]
    assert r0.token_times == [1_320] and r1.token_times == [6_160]
    assert e.scheduler.prefix_hits == 16 and e.scheduler.prefix_queries == 64


@pytest.mark.parametrize("shared, hit", [(0, 0), (15, 0), (16, 16), (31, 16), (32, 32), (39, 32)])
def test_prefix_cache_hits_are_full_shared_blocks(shared, hit):
    a = list(range(40))
    b = a[:shared] + [1000 + i for i in range(40 - shared)]
    e = make_engine(block_size=16)
    r0, r1 = run_all(e, [req(0, 0, 40, 2, ids=a), req(1, 10_000, 40, 2, ids=b)])
    assert r1.hit_tokens == hit
    assert scheduled_per_step(e)[2][2] == ((40 - hit, hit),)
    assert r1.token_times[0] == 10_000 + step_ns(40 - hit)


def test_prefix_cache_hit_while_owner_still_running_shares_blocks():
    ids = list(range(48))
    e = make_engine(block_size=16)
    r0, r1 = [req(0, 0, 48, 3, ids=ids), req(1, 100, 48, 2, ids=list(ids))]
    e.add_request(r0)
    e.add_request(r1)
    e.advance_until(1_481)                               # steps at 0 and 1480
    assert r1.hit_tokens == 32                           # capped: 2 full blocks of 47 tokens
    assert r1.blocks[:2] == r0.blocks[:2]
    assert [e.blocks.refs()[b] for b in r0.blocks[:2]] == [2, 2]
    assert scheduled_per_step(e)[1] == (17, 2, ((16, 32),), 1)
    e.run_to_completion()
    check_clean(e)
    assert r0.token_times == [1_480, 2_650, 3_670]
    assert r1.token_times == [2_650, 3_670]


@pytest.mark.parametrize("evictor_len, hit", [(8, 8), (12, 4)])
def test_freed_hashed_blocks_evicted_lru_tail_first(evictor_len, hit):
    """4 blocks of 4. r0 (ids A, 8 tokens) frees blocks tail first; r1 (other ids) then takes
    the 2 never-used blocks, and with 12 tokens also A's *last* block; r2 = A + 1 token hits
    what is left of A."""
    a = [7, 7, 7, 7, 8, 8, 8, 8]
    e = make_engine(num_gpu_blocks=4, block_size=4)
    r0 = req(0, 0, 8, 1, ids=a)
    r1 = req(1, 5_000, evictor_len, 1, ids=[50 + i for i in range(evictor_len)])
    r2 = req(2, 10_000, 9, 1, ids=a + [9])
    run_all(e, [r0, r1, r2])
    assert r2.hit_tokens == hit
    assert r0.blocks == [] and r2.token_times == [10_000 + step_ns(9 - hit)]


def test_prefix_caching_off_gives_no_hits():
    ids = list(range(64))
    e = make_engine(block_size=16, enable_prefix_caching=False)
    r0, r1 = run_all(e, [req(0, 0, 64, 1, ids=ids), req(1, 5_000, 64, 1, ids=list(ids))])
    assert r1.hit_tokens == 0 and e.scheduler.prefix_hits == 0
    assert r1.token_times == [5_000 + step_ns(64)]


def test_arrival_during_step_is_seen_by_next_step():
    e = make_engine()
    r0, r1 = run_all(e, [req(0, 0, 100, 2), req(1, 1, 10, 1)])
    # r1 arrives 1 ns into r0's 2000 ns prefill step: first scheduled at 2000.
    assert r1.first_scheduled_ns == 2_000
    assert scheduled_per_step(e)[1] == (11, 2, ((10, 0),), 1)


def test_prefix_cache_with_trace_hash_ids():
    """Mooncake-style hash ids (one per 512 prompt tokens): sharing the first id shares 512 tokens."""
    e = make_engine(block_size=16)
    r0 = Request(0, 0, 600, 1, hash_ids=[7, 8])
    r1 = Request(1, 10_000, 600, 1, hash_ids=[7, 9])
    r2 = Request(2, 20_000, 600, 1, hash_ids=[6, 8])     # chained: a different first block breaks all
    run_all(e, [r0, r1, r2])
    assert (r0.hit_tokens, r1.hit_tokens, r2.hit_tokens) == (0, 512, 0)
    assert r1.token_times == [10_000 + step_ns(88)]


def test_step_shape_equals_batch_shape_of_its_pairs(monkeypatch):
    """The engine's one-pass shape and prompt-token count equal `BatchShape.of_pairs` / the
    definition, at every step of a run with chunked prefills, decodes and preemptions."""
    from fleetsim.costmodel.batch import BatchShape
    from fleetsim.instance.scheduler import Scheduler
    seen = []
    schedule = Scheduler.schedule

    def spy(self, now_ns):
        out = schedule(self, now_ns)
        seen.append([(r, n, r.num_computed, r.num_output) for r, n in out])
        return out
    monkeypatch.setattr(Scheduler, "schedule", spy)
    e = make_engine(num_gpu_blocks=40, block_size=4, max_num_batched_tokens=24, max_num_seqs=6,
                    enable_prefix_caching=False)
    shapes = []
    batch_of = e.schedule_batch

    def keep(start, allow_empty=False):
        out = batch_of(start, allow_empty)
        shapes.append(out[1:])
        return out
    e.schedule_batch = keep
    e.fast_forward = False
    run_all(e, [req(i, 3 * i, 5 + 7 * i % 31, 2 + 5 * i % 13) for i in range(30)])
    assert len(shapes) == len(seen) > 30 and e.scheduler.preemptions > 0
    for (shape, prompt), step in zip(shapes, seen):
        assert shape == BatchShape.of_pairs([(n, c) for _, n, c, _ in step])
        assert prompt == sum(n for _, n, _, out in step if n > 1 or out == 0)


@pytest.mark.parametrize("prompt, output", [(5, 0), (0, 3)])
def test_request_without_prompt_or_output_tokens_is_rejected(prompt, output):
    """A request has >= 1 prompt token and >= 1 output token (the first output is counted)."""
    with pytest.raises(RequestRejected, match="output_len >= 1"):
        make_engine().add_request(Request(0, 0, prompt, output))

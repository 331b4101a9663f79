"""Exact multi-step fast-forward of a decode-only batch.

When every running request is decoding, nobody can be admitted (the queue is empty or the
running set is full), and the KV cache has enough free blocks for every block the next steps
will need, the next k steps have the same composition: each running request decodes one token
per step, contexts growing by one. They are then run as one event: step times still come from
the cost model step by step; per-request token times, block allocations (in running order,
step by step, so block ids and LRU order are those of stepping), prefix-cache registration of
filled blocks and time-series buckets are recorded exactly as stepping one by one would.
k stops before a step that would start at or after `limit` (the next arrival or window end)
and at the first step in which a request finishes (that step is included).
"""
from __future__ import annotations

MIN_STEPS = 2


def fast_forward(engine, limit: int) -> tuple[int, bool]:
    """Run k ≥ MIN_STEPS identical decode steps if possible; returns (k, a finished request had a follow-up)."""
    sched = engine.scheduler
    running = sched.running
    n = len(running)
    cfg = engine.config
    if n == 0 or n > cfg.max_num_batched_tokens or (sched.waiting and n < cfg.max_num_seqs):
        return 0, False
    kv = engine.blocks
    bs = kv.block_size
    k_max = 1 << 62
    ctx_sum = 0
    ctx_min = 1 << 62
    ctx_max = 0
    firsts = []          # per running request: the step at which it first needs a new block
    for req in running:
        c = req.num_computed
        if req.num_tokens - c != 1:
            return 0, False
        firsts.append(len(req.blocks) * bs - c)
        left = req.output_len - req.num_output
        if left < k_max:
            k_max = left
        ctx_sum += c
        if c < ctx_min:
            ctx_min = c
        if c > ctx_max:
            ctx_max = c
    if k_max < MIN_STEPS:
        return 0, False
    k_max = _alloc_limit(firsts, bs, kv.num_free, k_max)
    if k_max < MIN_STEPS:
        return 0, False
    cm = engine.cost_model
    overhead = cm.cpu_overhead_ns(n)
    step = cm.decode_steps(n, ctx_sum, ctx_min, ctx_max)
    ends, gaps = [], []
    now = t = engine.now
    j = 0
    while j < k_max and t < limit:
        gap = step(j) + overhead
        t += gap
        ends.append(t)
        gaps.append(gap)
        j += 1
    k = len(ends)
    if k < MIN_STEPS:
        return 0, False
    starting = [r for r in running if r.num_output == 0]    # last prompt token: first output
    engine.prompt_tokens_done += sum(r.prompt_len for r in starting)
    used = _allocate_steps(kv, running, firsts, k, bs)
    series = engine.series
    waiting = len(sched.waiting)
    series.record_steps(ends[:-1], len(starting), n, n, waiting, used)
    done = []
    later = gaps[1:]
    for req in running:
        if req.last_token_ns == now:      # produced a token in the step that just ended
            req.itl.extend(gaps)
        else:
            if req.num_output == 0:
                req.first_token_ns = ends[0]
            else:
                req.itl.append(ends[0] - req.last_token_ns)
            req.itl.extend(later)
        req.last_token_ns = t
        req.num_computed += k
        req.num_output += k
        req.num_tokens += k
        if req.num_output >= req.output_len:
            done.append(req)
    engine.now = t
    engine.steps += k
    engine.busy_ns += t - now
    engine.output_tokens_done += n * k
    followup = engine.finish(done)
    series.record(ends[-1], 0, n, len(running), waiting, kv.num_used)
    return k, followup


def _allocate_steps(kv, running, firsts: list, k: int, bs: int) -> list[int]:
    """Give the running decodes the blocks their next k steps need, as stepping would (step by
    step, in running order); returns the blocks in use after each step. Without prefix-cache
    identity nothing else happens at block boundaries, so the blocks are taken in one go."""
    if kv.enable_caching and any(r.has_identity for r in running):
        return _allocate_stepwise(kv, running, k, bs)
    wants = sorted([(j, i) for i, f in enumerate(firsts) if f < k for j in range(f, k, bs)])
    per_step = [0] * k
    for (j, i), b in zip(wants, kv.take(len(wants))):
        running[i].blocks.append(b)
        per_step[j] += 1
    used, out = kv.num_used - len(wants), []
    for count in per_step:
        used += count
        out.append(used)
    return out


def _allocate_stepwise(kv, running, k: int, bs: int) -> list[int]:
    """`_allocate_steps` through `allocate`, one block event at a time: a step whose token fills
    a block (it gets cached) or needs a new one, plus step 0 where a cache registration lags."""
    events: dict[int, list] = {}
    for req in running:          # gathered walking `running`, so each step's list is in running order
        c = req.num_computed
        for j in range(len(req.blocks) * bs - c, k, bs):
            events.setdefault(j, []).append(req)
        if req.has_identity:
            if req.num_cached_blocks < (c + 1) // bs:
                events.setdefault(0, []).append(req)
            for j in range((-(c + 1)) % bs, k, bs):
                events.setdefault(j, []).append(req)
    out = []
    for j in range(k):
        for req in events.get(j, ()):
            c0, t0 = req.num_computed, req.num_tokens
            req.num_computed, req.num_tokens = c0 + j, t0 + j
            ok = kv.allocate(req, 1)
            req.num_computed, req.num_tokens = c0, t0
            if not ok:
                raise RuntimeError("fast-forward: allocation failed despite enough free blocks")
        out.append(kv.num_used)
    return out


def _allocs(firsts: list, bs: int, k: int) -> int:
    """New blocks the running decodes need over the next k steps."""
    return sum(1 + (k - 1 - f) // bs for f in firsts if f < k)


def _alloc_limit(firsts: list, bs: int, free: int, k_max: int) -> int:
    """Largest k ≤ k_max whose block needs fit in `free` blocks (so no step can preempt)."""
    if _allocs(firsts, bs, k_max) <= free:
        return k_max
    lo, hi = 0, k_max          # allocs(lo) fits, allocs(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _allocs(firsts, bs, mid) <= free:
            lo = mid
        else:
            hi = mid
    return lo

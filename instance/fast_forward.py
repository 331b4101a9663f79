"""Exact fast-forward: a run of steps in which every running request decodes.

While every running request is decoding (one token per step, contexts growing by one) and the
KV cache has a free block for every new block the coming steps need (so nothing can be
preempted), the running requests are a *group* that needs no per-request work per step:
- decode-only stretches are priced step by step from the cost model (`decode_steps`: the
  shape's contexts grow by one per step) and their new blocks are taken in stepping order
  (step, then running order, so block ids and LRU order are those of stepping; with prefix-
  cache identity through `allocate`, so that blocks are cached as they fill, as stepping does);
  time-series buckets are updated once per bucket;
- a step at which waiting requests can be admitted runs the scheduler's own admission
  (`Scheduler.admit`) after the group's blocks of that step, is priced by `time_batch` of its
  whole shape, and the admitted requests join the group if their prefill completed in it;
- a request that finishes leaves the group at its last step (requests have output_len >= 1,
  which `Engine.check_request` enforces).
Members' token counts, token times (ITL gaps) and last-token times are brought up to date only
when they leave or the run ends: a member that joined at step `run_from` produced a token at
every step since. The run ends, and stepping takes over, when no request is running, at the
window end, at a follow-up turn, before a step whose new blocks do not fit, and after a step
that admitted a partial prefill.
With async scheduling (engine.py) a step's scheduler sees the arrivals up to the start of the
step before it (`seen`), so a stretch runs while that time is before the next arrival; a run
does not start while a finished request's release is pending; a member that finishes keeps its
seat and blocks through the next step's scheduling, so that step is run as an admission step
(its members' blocks, the admission, then the release, as `Engine._schedule_async` does them).
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, insort
from heapq import heapify, heappop, heappush, heapreplace

from fleetsim.costmodel.batch import BatchShape


def fast_forward(engine, t_end: int) -> tuple[int, bool]:
    """Run steps starting before `t_end` while the running requests form a group; returns
    (steps run, a finished request had a follow-up turn). 0 steps: the caller steps instead."""
    sched = engine.scheduler
    running = sched.running
    n = len(running)
    if n == 0 or n > engine.config.max_num_batched_tokens or sched.finishing:
        return 0, False
    for req in running:
        if req.num_tokens - req.num_computed != 1:
            return 0, False
    kv = engine.blocks
    return _Run(engine, kv.enable_caching and any(r.has_identity for r in running)).go(t_end)


def _admits(engine, members: int) -> bool:
    """Would a step starting now, with `members` decodes, try to admit a waiting request? (Seats
    held by finishing requests count until their release.)"""
    sched, cfg = engine.scheduler, engine.config
    return bool(sched.waiting) and len(sched.running) < cfg.max_num_seqs and cfg.max_num_batched_tokens > members


class _Run:
    """One run. A member's context before step j is `base + j` (base = num_computed − run_from,
    which bringing it up to date keeps). `fin` holds (last step, join order, request) and
    `need` (step of its next new block, join order, request); join order is running order. A
    `need` entry is current only while its step equals the request's `run_need`."""

    def __init__(self, engine, identity: bool):
        self.engine = engine
        self.sched = engine.scheduler
        self.kv = engine.blocks
        self.bs = self.kv.block_size
        self.cm = engine.cost_model
        self.identity = identity
        self.now0 = self.t = engine.now
        self.lag = engine.async_scheduling
        self.seen = engine.seen_ns      # async: what the next step's scheduler knows (engine.py)
        self.ends: list[int] = []       # end time of each step of the run
        self.gaps = array("q")         # gaps[j] = ends[j] − (end of step j − 1)
        self.gap_text: list[str] = []   # str of gaps[j], made as members need them (bring_up_to_date)
        self.produced = 0
        self.blocked = False            # the next step's new blocks do not fit: stepping takes over
        running = self.sched.running
        self.fin: list = []
        self.need: list = []
        self.bases: list[int] = []      # sorted
        self.phase: dict[int, list] = {}     # base mod bs -> members with identity (they fill a block together)
        self.late: dict[int, list] = {}      # step -> members whose cache registration lags at it
        for order, r in enumerate(running):      # `join(r, 0)` for each, heaps built at once
            b = self.enter(r, 0, order)
            self.bases.append(b)
            self.fin.append((r.output_len - r.num_output - 1, order, r))
            self.need.append((r.run_need, order, r))
        heapify(self.fin)
        heapify(self.need)
        self.bases.sort()
        self.base_sum = sum(self.bases)
        self.joined = len(running)

    def join(self, r, j: int) -> None:
        """`r` decodes from step j on; its counts are up to date before step j."""
        self.identity = self.identity or (self.kv.enable_caching and r.has_identity)
        order = self.joined
        self.joined += 1
        b = self.enter(r, j, order)
        self.base_sum += b
        insort(self.bases, b)
        heappush(self.fin, (j + r.output_len - r.num_output - 1, order, r))
        heappush(self.need, (r.run_need, order, r))

    def enter(self, r, j: int, order: int) -> int:
        """A member's own run fields (`run_from`, `run_order`, `run_need`) and, with identity,
        its block-fill phase: it fills a block at every step s with (base + s + 1) % bs == 0, and
        a registration that lags when it joins is made at step j, as stepping would. Returns
        its base."""
        bs = self.bs
        r.run_from, r.run_order = j, order
        b = r.num_computed - j
        r.run_need = len(r.blocks) * bs - b
        if self.identity and r.has_identity:
            self.phase.setdefault(b % bs, []).append(r)
            if r.num_cached_blocks < (r.num_computed + 1) // bs:
                self.late.setdefault(j, []).append(r)
        return b

    def leave(self, done: list, j: int) -> bool:
        """Members whose last token came from step j leave; True if one has a follow-up."""
        self.bring_up_to_date(done, j)
        bases = self.bases
        for r in done:
            b = r.num_computed - r.run_from
            self.base_sum -= b
            del bases[bisect_left(bases, b)]
            r.run_need = -1             # not a member: its `need` entries are stale
            if self.identity and r.has_identity:
                self.phase[b % self.bs].remove(r)
        return self.engine.finish(done, self.ends[j - 1] if j else self.now0)

    def finishing(self, j: int) -> list:
        """Pop the members whose last step is j (in running order)."""
        fin, done = self.fin, []
        while fin and fin[0][0] == j:
            done.append(heappop(fin)[2])
        return done

    def step_events(self, s: int, events: list) -> int:
        """Append the members' new-block needs of step s (running order) to `events`, moving
        each one's next need bs steps on; returns how many there were before."""
        need, bs = self.need, self.bs
        mark = len(events)
        while need and need[0][0] <= s:
            top = need[0]
            r = top[2]
            if top[0] != r.run_need:
                heappop(need)
                continue
            events.append(top)
            r.run_need = s + bs
            heapreplace(need, (s + bs, top[1], r))
        return mark

    def go(self, t_end: int) -> tuple[int, bool]:
        engine, sched = self.engine, self.sched
        running, pending = sched.running, engine.pending
        followup = False
        starting = [r for r in running if r.num_output == 0]    # last prompt token: first output at step 0
        first_prompt = len(starting)
        while running and self.t < t_end:
            seen = self.seen if self.lag else self.t
            engine.take_arrivals(seen)
            prompt_tokens = 0 if self.ends else first_prompt
            finishing = len(sched.finishing)
            if finishing or _admits(engine, len(running)):
                if finishing == len(running):
                    break                # nothing left to decode: stepping schedules afresh
                go_on, followup = self.admission_step(prompt_tokens, seen)
                if not go_on:
                    break
                continue
            k, followup = self.decode_stretch(t_end, pending[0][0] if pending else t_end, prompt_tokens)
            if k == 0 or followup or self.blocked:
                break
        steps = len(self.ends)
        if steps:
            engine.prompt_tokens_done += sum(r.prompt_len for r in starting)
        self.bring_up_to_date(running, steps - 1)
        engine.now = self.t
        engine.seen_ns = self.seen
        engine.steps += steps
        engine.busy_ns += self.t - self.now0
        engine.output_tokens_done += self.produced
        return steps, followup

    def decode_stretch(self, t_end: int, arrival: int, prompt_tokens: int) -> tuple[int, bool]:
        """Decode-only steps starting before `t_end` whose scheduler has not seen `arrival` (the
        next one), up to and including the first in which a member finishes, as long as their
        new blocks fit; returns (steps, follow-up)."""
        engine, kv = self.engine, self.kv
        running = self.sched.running
        n = len(running)
        j0 = len(self.ends)
        left = self.fin[0][0] - j0 + 1           # steps up to the first finish
        free = kv.num_free
        overhead = self.cm.cpu_overhead_ns(n)
        step = self.cm.decode_steps(n, self.base_sum + n * j0, self.bases[0] + j0, self.bases[-1] + j0)
        ends, gaps, events, need = self.ends, self.gaps, [], self.need
        end, gap_of = ends.append, gaps.append
        t, seen, lag = self.t, self.seen, self.lag
        due = need[0][0] - j0                # the next step at which some member's block is due
        j = 0
        while j < left and t < t_end and (seen if lag else t) < arrival:
            if j >= due:                     # (or a stale entry's step)
                mark = self.step_events(j0 + j, events)
                if len(events) > free:       # stepping would preempt here: stop before this step
                    del events[mark:]
                    self.blocked = True
                    break
                due = need[0][0] - j0
            gap = step(j) + overhead
            seen = t
            t += gap
            end(t)
            gap_of(gap)
            j += 1
        if j == 0:
            return 0, False
        self.t, self.seen = t, seen
        self.produced += n * j
        used = self.give_blocks(events, j0, j)
        series, waiting = engine.series, len(self.sched.waiting)
        series.record_steps(ends[j0:j0 + j - 1], prompt_tokens, n, n, waiting, used)
        followup = False
        if j == left:
            followup = self.leave(self.finishing(j0 + j - 1), j0 + j - 1)
        series.record(t, prompt_tokens if j == 1 else 0, n, engine.num_running, waiting, engine.kv_used)
        return j, followup

    def admission_step(self, prompt_tokens: int, seen: int) -> tuple[bool, bool]:
        """One step that admits waiting requests (the scheduler's own admission at `seen`,
        after the members' block needs of the step) and releases the finishing ones (async: they
        keep their seats and blocks through the scheduling, as in `Engine._schedule_async`);
        returns (the run may go on, follow-up)."""
        engine, kv, sched = self.engine, self.kv, self.sched
        running = sched.running
        n = len(running) - len(sched.finishing)       # the members
        j = len(self.ends)
        events = []
        self.step_events(j, events)
        if len(events) > kv.num_free:
            return False, False
        self.give_blocks(events, j, 1)
        admitted = []
        sched.admit(seen, engine.config.max_num_batched_tokens - n, admitted)
        if sched.finishing:
            sched.release_finishing()
        ctx = (self.base_sum + n * j, self.bases[0] + j, self.bases[-1] + j)
        if admitted:
            pairs = [(a, r.num_computed) for r, a in admitted]
            prompt_tokens += sum(a for r, a in admitted if a > 1 or r.num_output == 0)
            gap = self.cm.time_batch(BatchShape.with_decodes(pairs, n, *ctx)) + self.cm.cpu_overhead_ns(n + len(pairs))
        else:          # only releases: a decode-only step, priced as a stretch's first step (the same ns)
            gap = self.cm.decode_steps(n, *ctx)(0) + self.cm.cpu_overhead_ns(n)
        self.seen = start = self.t
        self.t += gap
        self.ends.append(self.t)
        self.gaps.append(gap)
        produced, done_admitted = engine.produce(admitted, self.t)
        self.produced += n + produced
        followup = self.leave(self.finishing(j), j) if self.fin[0][0] == j else False
        followup = engine.finish(done_admitted, start) or followup
        engine.series.record(self.t, prompt_tokens, n + produced, engine.num_running, len(sched.waiting), engine.kv_used)
        go_on = not followup     # admitting nothing: the next step tries again, as stepping does
        for r, _ in admitted:
            # counts up to date before step j + 1, also for one that does not join or is done
            # (the run then ends, and bringing the running requests up to date must skip it;
            # with async scheduling a finished one stays running until its release)
            r.run_from = j + 1
            if r.num_output < r.output_len and (r.num_output == 0 or r.num_tokens - r.num_computed != 1):
                go_on = False                    # its prefill is not done
        if go_on:
            for r, _ in admitted:
                if r.num_output < r.output_len:
                    self.join(r, j + 1)
        return go_on, followup

    def give_blocks(self, events: list, j0: int, k: int) -> list[int]:
        """The members' blocks of steps j0..j0+k−1, whose new-block needs are `events`, as
        stepping gives them: without identity, all taken at once in (step, running) order; with
        identity, step by step through `allocate` for each member that needs or fills a block
        (so that full blocks are cached as stepping caches them). Returns the blocks in use
        after each step."""
        kv = self.kv
        if not self.identity:
            if not events:
                return [kv.num_used] * k
            used = [0] * k
            for (s, _, r), b in zip(events, kv.take(len(events))):
                r.blocks.append(b)
                used[s - j0] += 1
            total = kv.num_used - len(events)
            for i in range(k):
                total += used[i]
                used[i] = total
            return used
        used = [0] * k
        e = 0
        for i in range(k):
            s = j0 + i
            movers = {}
            while e < len(events) and events[e][0] == s:
                movers[events[e][1]] = events[e][2]
                e += 1
            for r in self.phase.get(-(s + 1) % self.bs, ()):
                movers[r.run_order] = r
            for r in self.late.pop(s, ()):
                movers[r.run_order] = r
            for o in sorted(movers):
                r = movers[o]
                c0, t0 = r.num_computed, r.num_tokens
                lag = s - r.run_from          # steps not yet applied to its counts
                r.num_computed, r.num_tokens = c0 + lag, t0 + lag
                ok = kv.allocate(r, 1)
                r.num_computed, r.num_tokens = c0, t0
                if not ok:
                    raise RuntimeError("fast-forward: allocation failed despite enough free blocks")
            used[i] = kv.num_used
        return used

    def bring_up_to_date(self, members: list, j: int) -> None:
        """Apply steps run_from..j (each produced one token of every member) to `members`; their
        ITL text gets one piece, joined from the run's text of each gap (converted once)."""
        ends, gaps, text = self.ends, self.gaps, self.gap_text
        if len(text) <= j:
            text.extend(map(str, gaps[len(text):j + 1]))
        for r in members:
            f = r.run_from
            k = j - f + 1
            if k <= 0:
                continue
            itl = r.itl
            r.text_up_to_date()
            if r.num_output == 0:
                r.first_token_ns = ends[f]
                if k > 1:
                    r.itl_text.append(", ".join(text[f + 1:j + 1]))
            else:
                gap = ends[f] - r.last_token_ns
                itl.append(gap)
                r.itl_text.append(f"{gap}, " + ", ".join(text[f + 1:j + 1]) if k > 1 else str(gap))
            itl.extend(gaps[f + 1:j + 1])
            r.itl_texted = len(itl)
            r.last_token_ns = ends[j]
            r.num_computed += k
            r.num_output += k
            r.num_tokens += k
            r.run_from = j + 1


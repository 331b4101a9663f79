"""`Engine`: one serving instance advanced through simulated time, step by step.

Steps are events: a step starts when the previous one ends (or, when idle, at the next
arrival), takes `cost_model.time_batch + cpu_overhead` ns, and its tokens count at its end.
The first output token comes from the step that computes the last prompt token; each later step
of a running request produces one token.

Synchronous scheduling (`async_scheduling: false`, LLMServingSim's arithmetic): a step's batch
is chosen when it starts, so a request that arrives while a step runs is first seen by the next
step's scheduler, and a request that finishes frees its seat and blocks at the end of its step.

Async scheduling (vLLM ≥ 0.14's default; docs/engine.md): vLLM schedules step n+1 while step n
runs (a batch queue of depth 2) and learns step n's outputs one step late. Here that is:
- step n+1's batch is chosen with what was known when step n started (`seen_ns`): arrivals up
  to then, and the requests that finish in step n still holding their seats and blocks (they
  are `finishing`, skipped, and released right after step n+1 is scheduled). A request that
  arrives during step n joins step n+2 at the earliest;
- a decode, or the first decode after a prefill, is scheduled in every step all the same (vLLM
  counts the token in flight as a placeholder), so token times within a request are unchanged;
- when that choice is empty, vLLM waits for step n's outputs and schedules afresh: the
  finishing requests are released, arrivals up to now are taken, and the scheduler runs again.
Token times and finishes are reported at the end of their step, as without the lag.

Requests come through the API server's `frontend` (instance/frontend.py): one sent at
`arrival_ns` reaches the engine `frontend.delay_ns(prompt_len)` later. The engine takes it into
its waiting queue at the first step boundary after that (at once when idle): its `queued_ns`,
vLLM's `queued_ts` (the engine core reads its input queue between steps).

PD disaggregation (instance/handoff.py; the cluster side is cluster/pd.py). A prefill instance
(`hands_off`) retires a request at the step that emits its first token when more tokens are to
come: it goes to `handoffs` (not `finished`), its seat is freed as a finished request's is, its
blocks stay held until `release_held(rid, at)`, which frees them at the first step boundary at or
after `at` (at once when the engine is idle past `at`). When every block the waiting head needs
is held, the engine is `stalled`: it takes no step until a release comes (it does not fast-forward
either: its requests never decode here). A decode instance takes handed-off requests with
`add_handoff(req, at)`: they reach its waiting queue at `at` (their transfer end) without the API
server's front end, keeping the prefill side's queued time.
"""
from __future__ import annotations

import heapq

from fleetsim.costmodel.batch import BatchShape
from fleetsim.instance.block_manager import BlockManager
from fleetsim.instance.config import EngineConfig
from fleetsim.instance.fast_forward import fast_forward
from fleetsim.instance.frontend import NO_FRONTEND, FrontEnd
from fleetsim.instance.request import Request
from fleetsim.instance.scheduler import Scheduler
from fleetsim.instance.timeseries import TimeSeries

NEVER = 1 << 62


class RequestRejected(ValueError):
    """A request this engine can never serve (longer than max_model_len or the KV cache)."""


class Engine:
    def __init__(self, cost_model, config: EngineConfig, instance_id: int = 0, fast_forward: bool = True,
                 frontend: FrontEnd = NO_FRONTEND):
        config.validate()
        self.cost_model = cost_model
        self.config = config
        self.instance_id = instance_id
        num_blocks = config.num_gpu_blocks or cost_model.num_kv_blocks(config.block_size, config.gpu_memory_utilization)
        if num_blocks < 1:
            raise ValueError(
                f"model {cost_model.arch.name} does not fit: weights need {cost_model.weight_bytes_per_gpu() / 2**30:.1f} GiB"
                f" per GPU, {cost_model.hardware.name} offers {cost_model.hardware.memory_gib * config.gpu_memory_utilization:.1f} GiB"
                f" at gpu_memory_utilization {config.gpu_memory_utilization}")
        self.blocks = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(config, self.blocks)
        self.max_model_len = min(config.max_model_len or cost_model.arch.max_position_embeddings or NEVER,
                                 num_blocks * config.block_size)
        self.now = 0
        self.frontend = frontend
        self.pending: list = []           # heap of (time it reaches the engine, rid, request)
        self.finished: list[Request] = []
        self.steps = 0
        self.busy_ns = 0
        self.prompt_tokens_done = 0
        self.output_tokens_done = 0
        self.series = TimeSeries()
        self.fast_forward = fast_forward   # exact multi-step decode (instance/fast_forward.py)
        self.async_scheduling = config.async_scheduling is not False   # None: vLLM's default, on
        self.seen_ns = 0   # async: what the next step's scheduler knows is the state as of this time
        self.tracer = None  # instance/trace.py StepTracer: records the steps in its window
        self.hands_off = False     # PD prefill role: requests leave after their first token
        self.handoffs: list[Request] = []   # ... those that left, not yet collected
        self.releases: list = []   # heap of (time, rid): held blocks to free at that time
        self.stalled = False       # every block the next admission needs is held for a transfer

    def check_request(self, req: Request) -> None:
        """Raise RequestRejected if `req` can never be served here (or is malformed: a request
        has at least one prompt token and one output token, the first counted in `output_len`)."""
        if req.prompt_len < 1 or req.output_len < 1:
            raise RequestRejected(f"request {req.rid}: needs prompt_len >= 1 and output_len >= 1, got "
                                  f"{req.prompt_len} and {req.output_len}")
        total = req.prompt_len + req.output_len
        if total > self.max_model_len:
            blocks, bs = self.blocks.num_blocks, self.config.block_size
            limit = (f"max_model_len {self.max_model_len}" if self.max_model_len < blocks * bs
                     else f"the KV cache ({blocks} blocks of {bs} tokens)")
            raise RequestRejected(f"request {req.rid}: {req.prompt_len}+{req.output_len} tokens exceed "
                                  f"{limit} of instance {self.instance_id}")
        if not self.config.enable_chunked_prefill and total > self.config.max_num_batched_tokens:
            raise RequestRejected(f"request {req.rid}: {total} tokens exceed max_num_batched_tokens "
                                  f"{self.config.max_num_batched_tokens} with chunked prefill off")

    def add_request(self, req: Request) -> None:
        self.check_request(req)
        req.instance = self.instance_id
        heapq.heappush(self.pending, (req.arrival_ns + self.frontend.delay_ns(req.prompt_len), req.rid, req))

    def add_handoff(self, req: Request, at_ns: int) -> None:
        """A request handed off by a prefill instance, its KV here at `at_ns` (PD)."""
        self.check_request(req)
        req.decode_instance = self.instance_id
        heapq.heappush(self.pending, (at_ns, req.rid, req))

    def release_held(self, rid: int, at_ns: int) -> None:
        """Free the blocks of handed-off request `rid` at the first step boundary >= `at_ns`."""
        heapq.heappush(self.releases, (at_ns, rid))

    def apply_releases(self, upto: int) -> None:
        """Free the held blocks due by `upto`."""
        releases, sched = self.releases, self.scheduler
        while releases and releases[0][0] <= upto:
            rid = heapq.heappop(releases)[1]
            req = sched.held.pop(rid)
            if rid not in sched.finishing:      # (else its seat's release frees them)
                self.blocks.free(req)
            self.stalled = False

    def drain_handoffs(self) -> list[Request]:
        out, self.handoffs = self.handoffs, []
        return out

    @property
    def has_work(self) -> bool:
        s = self.scheduler
        return bool(self.pending or s.running or s.waiting)

    def next_event_ns(self) -> int:
        """When this engine next does something on its own (NEVER if idle with nothing pending)."""
        s = self.scheduler
        if self.stalled:
            return max(self.now, self.releases[0][0]) if self.releases else NEVER
        if s.running or s.waiting:
            return self.now
        return self.pending[0][0] if self.pending else NEVER

    def advance_until(self, t_end: int) -> None:
        """Run every step that starts before `t_end` (the last may end after it).

        Returns early, right after the step, when a request with a follow-up turn finished, so
        that the caller can release the follow-up at its exact arrival time.
        """
        sched, pending, waiting = self.scheduler, self.pending, self.scheduler.waiting
        lag = self.async_scheduling
        while True:
            if self.releases:
                if self.stalled and self.releases[0][0] > self.now:
                    if self.releases[0][0] >= t_end:
                        return
                    self.now = self.seen_ns = self.releases[0][0]    # idle until the blocks come back
                self.apply_releases(self.now)
            elif self.stalled:
                return
            self.take_arrivals(self.seen_ns if lag else self.now)
            if not sched.running and not waiting:
                if pending and pending[0][0] < t_end:
                    self.now = self.seen_ns = pending[0][0]
                    continue
                return
            if self.now >= t_end:
                return
            tracer = self.tracer
            if self.fast_forward and (tracer is None or not tracer.covers(self.now)):
                k, followup = fast_forward(self, t_end if tracer is None or self.now >= tracer.start
                                           else tracer.limit(t_end))
                if k:
                    if followup:
                        return
                    continue
            if self._step():
                return

    def take_arrivals(self, upto: int) -> None:
        """Move the requests that reached the engine by `upto` into the waiting queue, queued at
        `upto` (the engine reads its input queue there: a step boundary, or the arrival itself)."""
        pending, waiting = self.pending, self.scheduler.waiting
        while pending and pending[0][0] <= upto:
            req = heapq.heappop(pending)[2]
            if req.num_output == 0:         # (a handed-off request keeps the prefill side's)
                req.queued_ns = upto
            waiting.append(req)

    def run_to_completion(self) -> None:
        while self.has_work:
            self.advance_until(NEVER)

    def _step(self) -> bool:
        """One engine step; True if a request with a follow-up turn finished in it. With async
        scheduling there may be nothing to run once the finishing requests are released: then
        no step is taken."""
        start = self.now
        scheduled, batch, prompt_tokens = self.choose_batch(start)
        if batch is None:
            sched = self.scheduler
            if sched.held and (sched.running or sched.waiting):
                self.stalled = True         # work, but only held blocks would fit it: wait for a transfer (PD)
                return True
            if not self.async_scheduling:
                raise RuntimeError(f"instance {self.instance_id}: scheduler made no progress at t={start} ns")
            return False
        cm = self.cost_model
        end = start + cm.time_batch(batch) + cm.cpu_overhead_ns(len(scheduled))
        self.now = end
        self.steps += 1
        self.busy_ns += end - start
        followup = self.complete_batch(scheduled, end, prompt_tokens, start)
        if self.tracer is not None and self.tracer.covers(start):
            breakdown = getattr(getattr(cm, "backend", None), "breakdown", None)
            self.tracer.step(start, end, batch, scheduled, self.kv_used, breakdown(batch) if breakdown else {})
        return followup

    def _schedule_async(self, start: int) -> list:
        """The batch of the step starting at `start`, chosen as vLLM's async scheduler chose it
        when the previous step started (see the module docstring); empty if there is nothing
        to run even with everything known at `start`."""
        sched = self.scheduler
        scheduled = sched.schedule(self.seen_ns)
        sched.release_finishing()
        if not scheduled:
            self.take_arrivals(start)
            scheduled = sched.schedule(start)
            if not scheduled and (sched.running or sched.waiting) and not sched.held:
                raise RuntimeError(f"instance {self.instance_id}: scheduler made no progress at t={start} ns")
        self.seen_ns = start
        return scheduled

    def choose_batch(self, start: int) -> tuple[list, BatchShape | None, int]:
        """The batch of a step starting at `start` under this engine's scheduling mode (async:
        as chosen when the previous step started), its `BatchShape` and prompt tokens; the shape
        is None when there is nothing to run."""
        if not self.async_scheduling:
            return self.schedule_batch(start, allow_empty=True)
        scheduled = self._schedule_async(start)
        if not scheduled:
            return scheduled, None, 0
        return (scheduled, *self.shape_of(scheduled))

    def schedule_batch(self, start: int, allow_empty: bool = False) -> tuple[list, BatchShape, int]:
        """The scheduler's choice at `start`, its `BatchShape`, and its prompt tokens."""
        scheduled = self.scheduler.schedule(start)
        if not scheduled:
            if allow_empty:
                return scheduled, None, 0
            raise RuntimeError(f"instance {self.instance_id}: scheduler made no progress at t={start} ns")
        return (scheduled, *self.shape_of(scheduled))

    def shape_of(self, scheduled: list) -> tuple[BatchShape, int]:
        """The `BatchShape` of (request, new_tokens) pairs and their prompt tokens."""
        # one pass for the shape and the prompt tokens: `BatchShape.of_pairs` of the (tokens,
        # context) pairs computes the same shape, at ~1.7x the cost for 100 sequences (checked
        # against it step by step in tests/test_scheduler.py)
        prefills = []
        prompt_tokens = 0
        d_n = d_sum = d_max = 0
        d_min = NEVER
        tokens = 0
        for req, n in scheduled:
            ctx = req.num_computed
            tokens += n
            if n > 1 or req.num_output == 0:
                prompt_tokens += n
            if n > 1:
                prefills.append((n, ctx))
            else:
                d_n += 1
                d_sum += ctx
                if ctx > d_max:
                    d_max = ctx
                if ctx < d_min:
                    d_min = ctx
        batch = BatchShape(tokens, len(scheduled), tuple(prefills), d_n, d_sum, d_min if d_n else 0, d_max)
        return batch, prompt_tokens

    def complete_batch(self, scheduled: list, end: int, prompt_tokens: int, report_ns: int) -> bool:
        """Apply a batch that ends at `end`: computed tokens, produced tokens, finished requests
        (reported at `report_ns`, see `finish`). True if a finished request has a follow-up turn."""
        produced, done = self.produce(scheduled, end)
        self.output_tokens_done += produced
        followup = self.finish(done, report_ns)
        sched = self.scheduler
        self.series.record(end, prompt_tokens, produced, self.num_running,
                           len(sched.waiting), self.kv_used)
        return followup

    @property
    def num_running(self) -> int:
        """Running requests, not counting those finished whose release is pending (async)."""
        s = self.scheduler
        return len(s.running) - len(s.finishing)

    @property
    def kv_used(self) -> int:
        """KV blocks in use, not counting those only finished requests whose release is pending
        hold (async: vLLM reports its usage after applying the outputs)."""
        finishing = self.scheduler.finishing
        used = self.blocks.num_used
        return used - self.blocks.held_only_by(finishing.values()) if finishing else used

    def produce(self, scheduled: list, end: int) -> tuple[int, list[Request]]:
        """Count the batch's computed tokens; a request whose tokens are all computed produces
        one at `end`. Returns (tokens produced, requests now finished)."""
        done = []
        produced = 0
        hands_off = self.hands_off
        for req, n in scheduled:
            computed = req.num_computed + n
            req.num_computed = computed
            if computed >= req.num_tokens:
                out = req.num_output
                if out == 0:
                    self.prompt_tokens_done += req.prompt_len
                    req.first_token_ns = end
                else:
                    req.itl.append(end - req.last_token_ns)
                req.last_token_ns = end
                req.num_output = out = out + 1
                req.num_tokens += 1
                produced += 1
                if out >= req.output_len or hands_off:
                    done.append(req)
        return produced, done

    def finish(self, done: list[Request], report_ns: int) -> bool:
        """Retire finished requests (reported at once; with async scheduling their seats and
        blocks are released after the next step is scheduled); True if one of them has a
        follow-up turn. `report_ns` is the time that places them in a window (cluster/router.py):
        the start of the step that finished them, the first time `advance_until` can pass
        (a pipeline: when its clock reaches the batch's end)."""
        followup = False
        if done:
            if self.tracer is not None:
                self.tracer.finished(done)
            sched = self.scheduler
            running, finishing, lag = sched.running, sched.finishing, self.async_scheduling
            for req in done:
                handoff = req.num_output < req.output_len      # PD: it decodes elsewhere
                if handoff:
                    sched.held[req.rid] = req
                req.report_ns = report_ns
                if lag:
                    finishing[req.rid] = req
                else:
                    running.remove(req)
                    if not handoff:
                        self.blocks.free(req)
                (self.handoffs if handoff else self.finished).append(req)
                followup = followup or req.followup is not None
        return followup

    def drain_finished(self) -> list[Request]:
        out, self.finished = self.finished, []
        return out

    def load_tuple(self) -> tuple:
        """(waiting, running, kv_used, kv_total, prefill_outstanding, decode_outstanding, clock).

        Waiting counts requests queued or not yet arrived; outstanding prefill is tokens still to
        compute before the next token can be sampled (prompt, or prompt + outputs when
        recomputing after a preemption); outstanding decode is output tokens not yet produced.
        """
        s = self.scheduler
        prefill = decode = 0
        for queue in (s.running, s.waiting):
            for req in queue:
                left = req.num_tokens - req.num_computed
                if left > 1 or req.num_output == 0:
                    prefill += left
                decode += req.output_len - req.num_output
        for _, _, req in self.pending:
            if req.num_output == 0:         # (a handed-off one has its prompt computed)
                prefill += req.prompt_len
            decode += req.output_len - req.num_output
        # the clock; when the engine holds only requests still in the front end, the time the
        # first reaches it (nothing happens here before then)
        now = self.pending[0][0] if self.pending and not (s.running or s.waiting) and self.pending[0][0] > self.now \
            else self.now
        return (len(s.waiting) + len(self.pending), self.num_running, self.kv_used, self.blocks.num_blocks,
                prefill, decode, now)

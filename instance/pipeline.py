"""`PipelineEngine`: an engine whose model is split into pp pipeline stages.

Up to pp micro-batches are in flight. A batch is scheduled when stage 0 is free (and fewer than
pp are in flight) from the requests that are not in a batch already; it runs through the
stages in order, each stage starting when the previous stage has finished it plus one
send/recv of its hidden states (`CostModel.p2p_ns`) and the stage is free; its tokens count
when the last stage ends. Stage times come from `CostModel.stage_times_ns` (layers split
evenly, the remainder to the earlier stages); the host overhead is spent before stage 0.
Stages process batches first-in first-out, so batches complete in the order they started.
With pp = 1 this is exactly `Engine` with synchronous scheduling. Fast-forward does not apply
(batches overlap in the stages), so the `fast_forward` argument is accepted for a uniform
signature and ignored. Async scheduling is not modelled with pp > 1: vLLM 0.14–0.19 leaves it
off by default there (the batch queue holds pp micro-batches instead), so `async_scheduling:
null` means off here and `true` is rejected.
"""
from __future__ import annotations

from collections import deque

from fleetsim.instance.engine import NEVER, Engine
from fleetsim.instance.frontend import NO_FRONTEND


class PipelineEngine(Engine):
    def __init__(self, cost_model, config, instance_id: int = 0, fast_forward: bool = True, frontend=NO_FRONTEND):
        if config.async_scheduling:
            raise ValueError(f"async_scheduling with pp {cost_model.pp}: not supported (vLLM 0.14-0.19 runs "
                             f"pipeline parallelism without it); leave async_scheduling unset or set it to false")
        super().__init__(cost_model, config, instance_id, fast_forward=False, frontend=frontend)
        self.async_scheduling = False
        self.pp = cost_model.pp
        self.stage_free = [0] * self.pp
        self.in_flight: deque = deque()     # (end_ns, scheduled, prompt_tokens)
        self.busy_until = 0
        self.blocked = False     # the last launch found nothing to run: wait for a completion

    @property
    def has_work(self) -> bool:
        return bool(self.in_flight) or super().has_work

    def next_event_ns(self) -> int:
        """The next batch completion, arrival, or launch (when something is schedulable)."""
        times = []
        if self.in_flight:
            times.append(self.in_flight[0][0])
        if self.pending:
            times.append(self.pending[0][0])
        if len(self.in_flight) < self.pp and self._schedulable():
            times.append(max(self.now, self.stage_free[0]))
        return min(times) if times else NEVER

    def advance_until(self, t_end: int) -> None:
        """Launch every batch that can start before `t_end`; complete those that end by then."""
        sched, pending, in_flight = self.scheduler, self.pending, self.in_flight
        while True:
            if pending and pending[0][0] <= self.now:
                self.take_arrivals(self.now)
                self.blocked = False
            followup = False
            while in_flight and in_flight[0][0] <= self.now:
                self.blocked = False
                end, scheduled, prompt_tokens = in_flight.popleft()
                for req, _ in scheduled:
                    sched.in_flight.discard(req.rid)
                followup = self.complete_batch(scheduled, end, prompt_tokens, end) or followup   # reached now
            if followup:
                return
            if (self.now < t_end and len(in_flight) < self.pp and self.stage_free[0] <= self.now
                    and self._schedulable() and self._launch()):
                continue
            nxt = [t for t in (in_flight[0][0] if in_flight else None,
                               pending[0][0] if pending else None,
                               self.stage_free[0] if len(in_flight) < self.pp and self._schedulable() else None)
                   if t is not None and t > self.now]
            if not nxt or min(nxt) >= t_end:
                return
            self.now = min(nxt)

    def _schedulable(self) -> bool:
        s = self.scheduler
        return not self.blocked and (bool(s.waiting) or len(s.in_flight) < len(s.running))

    def _launch(self) -> bool:
        """Schedule and start a batch now; False if nothing could be scheduled (e.g. the KV
        cache is held by batches in flight: then wait for the next completion)."""
        start = self.now
        scheduled, batch, prompt_tokens = self.schedule_batch(start, allow_empty=True)
        if not scheduled:
            self.blocked = True
            return False
        cm = self.cost_model
        stages = cm.stage_times_ns(batch)
        p2p = cm.p2p_ns(batch.tokens)
        t = start + cm.cpu_overhead_ns(len(scheduled))
        free = self.stage_free
        for s, dur in enumerate(stages):
            if s:
                t = max(t + p2p, free[s])
            t += dur
            free[s] = t
        self.scheduler.in_flight.update(req.rid for req, _ in scheduled)
        self.in_flight.append((t, scheduled, prompt_tokens))
        self.steps += 1
        self.busy_ns += max(0, t - max(start, self.busy_until))
        self.busy_until = max(self.busy_until, t)
        return True


def make_engine(cost_model, config, instance_id: int = 0, fast_forward: bool = True,
                frontend=NO_FRONTEND) -> Engine:
    """`PipelineEngine` when the cost model has pp > 1 stages, else `Engine`; requests come
    through `frontend` (instance/frontend.py)."""
    cls = PipelineEngine if getattr(cost_model, "pp", 1) > 1 else Engine
    return cls(cost_model, config, instance_id, fast_forward, frontend)

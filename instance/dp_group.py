"""`DPGroup`: the engines of one data-parallel group of a MoE model, stepped in lock-step.

vLLM runs a MoE model with data parallelism (+ expert parallelism) as one engine per DP rank
whose forward passes are collective: every MoE layer gathers the tokens of all ranks, so all
ranks step together, and a rank with nothing to do runs a dummy batch so that the others are
not left waiting in the collective. Semantics here:

- Members share one clock. A group step starts when any member has a running or waiting
  request (arrivals are moved into each member's waiting queue as `Engine` moves them: up to
  the step start, or with async scheduling up to what the scheduler has seen); when none has,
  the group idles until the next arrival at any member.
- At a step start every member runs its own scheduler in its own mode (`Engine.choose_batch`:
  synchronous, or vLLM's async scheduling with its one-step lag). The group's
  largest token count T is the step's padding target: each member's batch is priced by
  `CostModel.group_time_ns(batch, T)` (dense and MoE ops at T, its own attention, one dummy
  decode per padding token in lm_head/sampler); a member with nothing scheduled runs the dummy
  batch `BatchShape.empty()` padded to T. Each member's time adds its own host overhead; the
  group step lasts as long as its slowest member, and every member's tokens count at its end.
- A member's `steps` and `busy_ns` count its real batches only (dummy steps are the group's
  cost of lock-step, visible as the busy members' longer steps).
- `advance_until(t_end)` runs every group step that starts before `t_end` (the window protocol
  of `cluster/router.py`: the group reaches the window end together) and returns right after a
  step in which a request with a follow-up turn finished, as `Engine.advance_until` does.
- Not yet combined with fast-forward (`instance/fast_forward.py`): a group steps one by one,
  since a stretch's step times depend on every member's batch; nor with pipeline parallelism.

With `record_steps` each step appends a `GroupStep` to `steps_log` (tests and traces can price
its breakdown from the members' `BatchShape`s with `CostModel.group_breakdown`).
"""
from __future__ import annotations

from typing import NamedTuple

from fleetsim.costmodel.batch import BatchShape
from fleetsim.instance.engine import NEVER, Engine


class MemberStep(NamedTuple):
    instance: int
    batch: BatchShape          # BatchShape.empty() for a dummy batch
    dummy: bool
    gpu_ns: int                # group_time_ns(batch, group_tokens)
    overhead_ns: int


class GroupStep(NamedTuple):
    start: int
    end: int
    group_tokens: int
    members: tuple


class DPGroup:
    """Drives member `Engine`s (same model and parallelism) in lock-step; same stepping calls
    as an `Engine` (`has_work`, `now`, `next_event_ns`, `advance_until`)."""

    def __init__(self, members: list[Engine], record_steps: bool = False):
        if len(members) < 2:
            raise ValueError("a DP group needs at least two members")
        self.members = list(members)
        self.now = max(e.now for e in members)
        for e in members:
            e.now = self.now
        self.steps = 0
        self.steps_log: list[GroupStep] | None = [] if record_steps else None

    @property
    def has_work(self) -> bool:
        return any(e.has_work for e in self.members)

    def next_event_ns(self) -> int:
        """Now if any member has a request to schedule, else the earliest pending arrival."""
        nxt = NEVER
        for e in self.members:
            s = e.scheduler
            if s.running or s.waiting:
                return self.now
            if e.pending and e.pending[0][0] < nxt:
                nxt = e.pending[0][0]
        return nxt

    def advance_until(self, t_end: int) -> None:
        """Run every group step that starts before `t_end`; return early right after a step in
        which a request with a follow-up turn finished."""
        members = self.members
        while True:
            now = self.now
            busy = False
            for e in members:
                e.take_arrivals(e.seen_ns if e.async_scheduling else now)
                busy = busy or bool(e.scheduler.running or e.scheduler.waiting)
            if not busy:
                nxt = self.next_event_ns()
                if nxt < t_end:
                    self._set_now(nxt)
                    for e in members:
                        e.seen_ns = nxt
                    continue
                return
            if now >= t_end:
                return
            if self._step():
                return

    def _set_now(self, t: int) -> None:
        self.now = t
        for e in self.members:
            e.now = t

    def _step(self) -> bool:
        """One lock-stepped group step; True if a request with a follow-up turn finished."""
        start = self.now
        plans = [e.choose_batch(start) for e in self.members]
        group_tokens = max((batch.tokens for _, batch, _ in plans if batch is not None), default=0)
        if group_tokens == 0:
            if any(e.async_scheduling for e in self.members):
                return False        # the lagged choices were empty and nothing is left to run
            raise RuntimeError(f"DP group of instances {[e.instance_id for e in self.members]}: "
                               f"no member could schedule a request at t={start} ns")
        costs = []
        for e, (scheduled, batch, _) in zip(self.members, plans):
            cm = e.cost_model
            shape = batch if batch is not None else BatchShape.empty()
            costs.append((shape, cm.group_time_ns(shape, group_tokens), cm.cpu_overhead_ns(len(scheduled))))
        end = start + max(gpu + host for _, gpu, host in costs)
        self._set_now(end)
        self.steps += 1
        followup = False
        for e, (scheduled, batch, prompt_tokens) in zip(self.members, plans):
            if batch is None:
                continue
            e.steps += 1
            e.busy_ns += end - start
            followup = e.complete_batch(scheduled, end, prompt_tokens, start) or followup
        if self.steps_log is not None:
            self.steps_log.append(GroupStep(start, end, group_tokens, tuple(
                MemberStep(e.instance_id, shape, batch is None, gpu, host)
                for e, (shape, gpu, host), (_, batch, _) in zip(self.members, costs, plans))))
        return followup

    def run_to_completion(self) -> None:
        while self.has_work:
            self.advance_until(NEVER)

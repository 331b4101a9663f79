"""`Autoscaler`: which of the fleet's `max` engines are provisioning, active, draining or stopped.

Every engine is built up front (indices 0..max-1 are fixed); the autoscaler only decides which
take part. Its clock is the router's: the window loop (cluster/fleet_loop.py) stops at every
`boundary()` — the evaluation instants k·interval (k >= 1) and the instants provisioning ends —
so each is a window boundary, with the snapshots taken there.

- t = 0: instances 0..initial-1 are active (the fleet exists before the run: no cold start).
- At a boundary t, first the instances whose provisioning ends at t become active (routable
  from t on: arrivals at t or later may go there), then, if t is an evaluation instant, the
  policy recommends a count from the active instances' snapshots (policies.py), clamped to
  [min, max], stabilised as Kubernetes' HPA does with its default behaviour: scale up at once to
  the recommendation; scale down only to the highest recommendation of the last
  `stabilisation_window` (evaluations in (t − window, t]); else stay. With `in_service` =
  active + provisioning:
  - up: the lowest stopped indices start provisioning at t (paid from t) and become routable at
    t + provisioning_delay (at once with a delay of 0). A draining instance is not taken back:
    its index is free once it stops; with too few stopped, fewer start.
  - down: provisioning instances are cancelled first (highest index first: they stop at t), then
    the highest active indices drain: from t they get no new request, run what they hold, and
    stop when their last request finishes (the end of its last step; at t if they hold none).
- Evaluation ends once the router has routed its last request: what is provisioning then
  becomes active at its time, and the last window runs every held request to its end.
- Paid time (instance-hours) runs from provisioning start (t = 0 for the initial ones) to stop,
  or to the run's end (the last completion) for those still held then. Cost: each instance's
  price per hour (tp·pp·ep GPUs × the hardware's `cost_per_hour`, experiments/capacity.py)
  × its paid hours; cost per served request = cost / requests finished.
- Instance-count levels: `columns(bucket)` gives the counts (active, provisioning, draining) after
  every transition in or before that 1-s bucket (a transition at t is in bucket t // 1 s), the
  level convention of timeseries_fleet.csv (cluster/timeseries_writer.py).

Deterministic: integer ns, index order, exact rational metrics; nothing depends on a backend.
"""
from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from fleetsim.cluster.autoscaling import policy_class
from fleetsim.cluster.errors import InputError, is_int
from fleetsim.cluster.metrics import END, INSTANCE
from fleetsim.instance.engine import NEVER
from fleetsim.instance.timeseries import BUCKET_NS

ACTIVE, PROVISIONING, DRAINING, STOPPED = "active", "provisioning", "draining", "stopped"
STATES = (ACTIVE, PROVISIONING, DRAINING)       # the counted ones, in column order
NS_PER_HOUR = 3_600_000_000_000


class Autoscaler:
    def __init__(self, spec, prices: list):
        """`spec` (AutoscalerSpec), `prices[i]`: instance i's price per hour (None: unknown)."""
        n = spec.max
        self.spec, self.prices = spec, list(prices)
        self.policy = policy_class(spec.policy)(spec.options)
        self.state = [ACTIVE] * spec.initial + [STOPPED] * (n - spec.initial)
        self.since: list = [0] * spec.initial + [None] * (n - spec.initial)   # start of the paid life
        self.paid_ns = [0] * n                    # closed lives
        self.ready_at: dict[int, int] = {}        # provisioning instance -> when it becomes routable
        self.drain_from: dict[int, int] = {}      # draining instance -> when it stopped taking requests
        self.last_end = np.zeros(n, dtype=np.int64)   # last finish seen per instance
        self.next_eval = spec.interval_ns
        self.recent: deque = deque()              # (t, recommendation) of the stabilisation window
        self.evaluating = True
        self.scale_ups = self.scale_downs = 0
        self.events: list = []                    # heap of (t, seq, instance, state)
        self.log: list = []                       # every transition, as it happened (for the summary)
        self._counts = dict.fromkeys(STATES, 0)   # the series' levels, after the transitions applied
        self._seen = [STOPPED] * n                # ... and each instance's state there
        for i in range(spec.initial):
            self._event(0, i, ACTIVE)

    def routable(self) -> list[int]:
        return [i for i, s in enumerate(self.state) if s == ACTIVE]

    def boundary(self) -> int:
        """The next instant that must be a window boundary (NEVER once evaluation ended)."""
        if not self.evaluating:
            return NEVER
        return min(self.next_eval, min(self.ready_at.values(), default=NEVER))

    def at(self, t: int, snapshots: list) -> None:
        """The fleet reached boundary `t` with fresh `snapshots` (all instances, by index)."""
        for i in sorted(self.ready_at):
            if self.ready_at[i] <= t:
                self._become_active(i)
        if t >= self.next_eval:
            self._evaluate(t, snapshots)
            self.next_eval = (t // self.spec.interval_ns + 1) * self.spec.interval_ns

    def finish(self) -> None:
        """The router routed its last request: no more evaluations."""
        for i in sorted(self.ready_at):
            self._become_active(i)
        self.evaluating = False

    def observe(self, fixed: np.ndarray, snaps) -> None:
        """A window's finished-request rows and its snapshots `[(index, load tuple)]`: a draining
        instance that holds nothing stops at its last finish."""
        if len(fixed):
            np.maximum.at(self.last_end, fixed[:, INSTANCE], fixed[:, END])
        for idx, load in snaps:
            if self.state[idx] == DRAINING and load[0] == 0 and load[1] == 0:
                self._stop(idx, max(self.drain_from.pop(idx), int(self.last_end[idx])))

    def _evaluate(self, t: int, snapshots: list) -> None:
        spec = self.spec
        active = self.routable()
        provisioning = sorted(self.ready_at)
        in_service = len(active) + len(provisioning)
        rec = self.policy.recommend(t, [snapshots[i] for i in active], in_service)
        if not is_int(rec):
            raise InputError(f"autoscaler.policy {spec.policy}: recommend() returned {rec!r}; an integer count is needed")
        rec = min(spec.max, max(spec.min, rec))
        recent = self.recent
        recent.append((t, rec))
        while recent[0][0] < t and recent[0][0] <= t - spec.stabilisation_window_ns:
            recent.popleft()
        highest = max(r for _, r in recent)
        target = rec if rec > in_service else min(in_service, highest)
        if target > in_service:
            free = [i for i, s in enumerate(self.state) if s == STOPPED][:target - in_service]
            for i in free:
                self.since[i] = t
                self.scale_ups += 1
                if spec.provisioning_delay_ns == 0:
                    self._event(t, i, ACTIVE)
                else:
                    self.ready_at[i] = t + spec.provisioning_delay_ns
                    self._event(t, i, PROVISIONING)
        elif target < in_service:
            remove = in_service - target
            for i in sorted(provisioning, reverse=True)[:remove]:
                del self.ready_at[i]
                self._stop(i, t)
                self.scale_downs += 1
            for i in sorted(active, reverse=True)[:max(0, remove - len(provisioning))]:
                self.scale_downs += 1
                s = snapshots[i]
                self._event(t, i, DRAINING)
                self.drain_from[i] = t
                if s.waiting == 0 and s.running == 0:
                    self._stop(i, max(t, int(self.last_end[i])))
                    del self.drain_from[i]

    def _become_active(self, i: int) -> None:
        self._event(self.ready_at.pop(i), i, ACTIVE)

    def _stop(self, i: int, t: int) -> None:
        self._event(t, i, STOPPED)
        self.paid_ns[i] += t - self.since[i]
        self.since[i] = None

    def _event(self, t: int, i: int, state: str) -> None:
        self.state[i] = state
        heapq.heappush(self.events, (t, len(self.log), i, state))
        self.log.append((t, i, state))

    def columns(self, bucket: int) -> str:
        """',active,provisioning,draining' after every transition in or before `bucket` (called
        with increasing buckets)."""
        events, counts, seen = self.events, self._counts, self._seen
        while events and events[0][0] // BUCKET_NS <= bucket:
            _, _, i, state = heapq.heappop(events)
            _count(counts, seen, i, state)
        return f",{counts[ACTIVE]},{counts[PROVISIONING]},{counts[DRAINING]}"

    def summary(self, run_end: int, served: int) -> dict:
        """summary.json's `autoscaler` block (module doc), the run ending at `run_end` ns."""
        paid = list(self.paid_ns)
        for i, since in enumerate(self.since):
            if since is not None:
                paid[i] += max(0, run_end - since)
        total = sum(paid)
        cost = None
        if all(p is not None for p in self.prices):
            cost = sum(ns * p for ns, p in zip(paid, self.prices)) / NS_PER_HOUR
        timeline, counts, seen = [], dict.fromkeys(STATES, 0), [STOPPED] * len(paid)
        for t, i, s in sorted(self.log, key=lambda e: e[0]):       # stable: same-time events in order
            if t > run_end:
                break
            _count(counts, seen, i, s)
            row = [t / 1e9, counts[ACTIVE], counts[PROVISIONING], counts[DRAINING]]
            if timeline and timeline[-1][0] == row[0]:
                timeline[-1] = row
            else:
                timeline.append(row)
        return {**self.spec.info(), "instance_hours": total / NS_PER_HOUR,
                "mean_instances": total / run_end if run_end else None,
                "peak_instances": max((sum(r[1:]) for r in timeline), default=0),
                "scale_ups": self.scale_ups, "scale_downs": self.scale_downs,
                "cost": cost, "cost_per_request": cost / served if cost is not None and served else None,
                "paid_s": [p / 1e9 for p in paid],
                "timeline": timeline}


def _count(counts: dict, seen: list, i: int, state: str) -> None:
    """Move instance `i` to `state` in the level `counts` (`seen`: each instance's state)."""
    if seen[i] in counts:
        counts[seen[i]] -= 1
    if state in counts:
        counts[state] += 1
    seen[i] = state

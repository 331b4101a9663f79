"""The router: owns arrivals, routes them window by window, releases session follow-ups.

Protocol (DESIGN.md "The cluster"). For a window [t, t+Δ) the router routes every arrival in
it with the instance snapshots taken at t plus its own record of what it sent during the
window; every instance gets its new requests and advances to t+Δ (all steps that start before
t+Δ); instances return finished-request rows and fresh snapshots. The members of a DP group
(`instance/dp_group.py`) are instances here like any other (routed, snapshotted one by one);
they advance together, running every lock-stepped group step that starts before t+Δ. Details:

- Δ = `router.sync_interval_ms` (default 50 ms). Windows lie on the grid k·Δ; windows with no
  arrival (and no session turn in flight) are merged, so idle or busy stretches without
  arrivals cost one sync, not one per Δ.
- Δ = 0 is exact: a sync at every distinct arrival time.
- Policies that ignore load (round_robin, random, session_affinity) need no snapshots: their
  windows are 1 s of simulated time, only to stream results. Window boundaries do reach the
  output across instances (records are ordered within a window), so they stay at 1 s, but with
  no session turn in flight the fleet runs up to 16 of them as one (cluster/fleet_loop.py
  `_merge`: no instance's fast-forwarded run ends at their boundaries, and each request is still
  reported with the window in which the step that finished it started); one instance's records
  and buckets come out in time order whatever the window, so a single-instance fleet with no
  session turn in flight uses 256 s windows (fewer syncs, same bytes).
- Arrivals are taken from the workload's stream (`add_source`) as routing reaches them: the
  heap holds only the next request of the stream plus released follow-ups, so a run holds the
  requests in flight, not the whole workload.
- Session follow-ups: a turn's successor is released when the router sees the turn finish
  (at the sync ending the window in which it finished). Its arrival is the finish time plus
  the tool/think time if that is still ahead of the next window start; otherwise it is delayed
  to the next window start (the first window that can still honour it). While session turns
  are in flight, windows are at most max(Δ, 1 ms) long, so that delay is at most one window.
- Closed-loop clients (`--max-concurrency`, cluster/workloads/clients.py) are released on the
  same path: when a request that ends a client's work finishes, the client's next request is
  sent at max(its arrival, the finish, the next window start). While clients wait, each window
  ends 1 ns after the earliest clock of a busy instance (or the next arrival): that instance
  runs exactly one step, no other starts one, so a step that finishes a request always ends at
  or after the window end and the next request is sent at the finish exactly — and no instance
  has simulated past it. One sync per step, with snapshots, for the closed-loop part of a run.
- Warm-up: the first K requests routed are simulated but their records are dropped here.
- Admission control (cluster/admission.py, optional): each arrival is admitted or rejected as
  it is routed, from the same view (snapshots + what was routed since); stages that read the
  queues make the router sync like a load-aware policy. A rejected request is not sent: it is
  kept for the outputs (cluster/rejections.py) with the window it was rejected in; a closed-loop
  client sends its next request at the rejected one's arrival, and a session whose turn was
  rejected ends there (its later turns are not sent).
- Records of a window are ordered by (end time, instance, request id) before they are
  aggregated, so the output does not depend on how instances are spread over workers.
- Routable instances (an autoscaler, cluster/autoscaling/): `set_routable(indices)` narrows the
  snapshots a policy chooses among to those instances (in index order; `Snapshot.index` says
  which instance each is), and `boundary` (NEVER without an autoscaler) is an instant every plan
  stops at, so that the autoscaler's decisions fall on window boundaries. A policy must return
  the `index` of one of the snapshots it is given; without an autoscaler they are the whole
  fleet, `snapshots[i].index == i`, as before.
"""
from __future__ import annotations

import heapq

import numpy as np

from fleetsim.cluster.policies import policy_rng
from fleetsim.cluster.errors import InputError
from fleetsim.cluster.metrics import END, RID
from fleetsim.cluster.snapshot import Snapshot
from fleetsim.cluster.workloads.clients import ClosedLoop
from fleetsim.instance.engine import NEVER

LOAD_BLIND_WINDOW_NS = 1_000_000_000
SINGLE_INSTANCE_WINDOW_NS = 256 * LOAD_BLIND_WINDOW_NS
SESSION_WINDOW_NS = 1_000_000


class Router:
    def __init__(self, policy, num_instances: int, sync_interval_ns: int, seed: int, warmup_requests: int = 0,
                 admission=None, rejections=None):
        """`admission` (an `admission.Admission`, None: every request admitted) records what it
        rejects in `rejections` (a `rejections.Rejections`)."""
        self.policy = policy
        self.admission, self.rejections = admission, rejections
        self.needs_load = policy.needs_load or (admission is not None and admission.needs_load)
        self.arrived = 0                          # requests taken from the heap (routed or rejected)
        self.n = num_instances
        self.sync_ns = int(sync_interval_ns)
        self.rng = policy_rng(policy, seed, "router")
        self.arrivals: list = []                  # heap of (routing time, rid, request)
        self.followups: dict[int, object] = {}    # rid -> next turn (held by the router)
        self.source = iter(())                    # the workload's requests not yet in the heap
        self.head = None                          # ... and the one of them that is in it
        self.clients = None                       # ClosedLoop, with --max-concurrency
        self.warmup_left = warmup_requests
        self.warmup: set[int] = set()             # ids of warm-up requests not yet finished
        self.warmup_routed = [0] * num_instances  # warm-up requests sent to each instance
        self.snapshots = [Snapshot(i) for i in range(num_instances)]
        self.routed = [0] * num_instances
        self.view = self.snapshots                # the snapshots policies choose among
        self.routable = None                      # their indices when narrowed (else all)
        self.boundary = NEVER                     # the next instant a window must end at
        self.autoscaler = None                    # cluster/autoscaling/scaler.py, driven by FleetLoop

    def add_source(self, requests, max_concurrency: int | None = None) -> None:
        """Route `requests` (an iterator in (arrival, id) order); with `max_concurrency`, through
        that many closed-loop clients."""
        if max_concurrency is None:
            self.source = requests
            self._pull()
        else:
            self.clients = ClosedLoop(requests, max_concurrency)
            for req in self.clients.start():
                self._push(req, req.arrival_ns)

    def _pull(self) -> None:
        self.head = next(self.source, None)
        if self.head is not None:
            self._push(self.head, self.head.arrival_ns)

    def _push(self, req, route_at: int) -> None:
        if req.followup is not None:
            self.followups[req.rid] = (req.followup, req.think_ns)
            req.followup = None
        heapq.heappush(self.arrivals, (route_at, req.rid, req))

    @property
    def holding(self) -> bool:
        """Whether a finish can release a request (session turns or clients waiting)."""
        return bool(self.followups) or (self.clients is not None and not self.clients.exhausted)

    def set_snapshots(self, snaps) -> None:
        for idx, t in snaps:
            self.snapshots[idx] = Snapshot.from_tuple(idx, t)
        self._sync_policy()

    def set_routable(self, indices: list[int]) -> None:
        """Route only to `indices` (ascending) from now on."""
        self.routable = frozenset(indices)
        self._sync_policy()

    def _sync_policy(self) -> None:
        if self.routable is not None:
            self.view = [self.snapshots[i] for i in sorted(self.routable)]
        sync = getattr(self.policy, "sync", None)      # optional for user policies
        if sync is not None:
            sync(self.view)
        if self.admission is not None:
            self.admission.sync(self.snapshots)

    @property
    def done(self) -> bool:
        return not self.arrivals and not self.holding

    def plan(self, t: int) -> tuple[int, int, bool]:
        """(start, end, exact) of the next window after the fleet reached `t`.

        The fleet syncs at `start` first when start > t and the policy reads load. With
        `exact` (Δ = 0) only the arrivals at `start` are routed and `end` is set by `route`.
        No window passes `boundary`: one that would start at or after it becomes [t, boundary).
        """
        start, end, exact = self._plan(t)
        if start >= self.boundary:
            return t, self.boundary, False
        return start, min(end, self.boundary), exact

    def _plan(self, t: int) -> tuple[int, int, bool]:
        if self.done:
            return t, NEVER, False
        first = self.arrivals[0][0] if self.arrivals else NEVER
        if self.clients is not None and not self.clients.exhausted:
            busy = min((s.now for s in self.snapshots if s.waiting or s.running), default=NEVER)
            return t, min(first, busy) + 1, False
        if self.needs_load and self.sync_ns == 0:
            if self.holding and first > t + SESSION_WINDOW_NS:
                return t, t + SESSION_WINDOW_NS, False
            return max(t, first), NEVER, True
        step = LOAD_BLIND_WINDOW_NS if not self.needs_load else self.sync_ns
        if self.holding:
            step = min(step, max(self.sync_ns, SESSION_WINDOW_NS))
            return t, (t // step + 1) * step, False
        if self.n == 1 and not self.needs_load:
            step = SINGLE_INSTANCE_WINDOW_NS
        start = max(t, (first // step) * step)
        return start, (start // step + 1) * step, False

    def route(self, t_end: int, exact: bool) -> tuple[dict[int, list], int]:
        """Route held arrivals before `t_end` (exact: those at the first arrival time only).

        Returns ({instance: [requests]}, window end)."""
        out: dict[int, list] = {}
        arrivals, policy, snaps, admission = self.arrivals, self.policy, self.snapshots, self.admission
        needs_load = self.needs_load
        start = arrivals[0][0] if arrivals else 0
        if exact and arrivals:
            t_end = start + 1
        while arrivals and arrivals[0][0] < t_end:
            req = heapq.heappop(arrivals)[2]
            if req is self.head:
                self._pull()
            self.arrived += 1
            warm = self.warmup_left > 0
            if warm:
                self.warmup_left -= 1
            if admission is None:
                idx = self._choose(req)
            else:
                idx, reason = admission.decide(req, snaps, lambda: self._choose(req))
                if reason is not None:
                    self._reject(req, idx, reason, warm)
                    continue
            if warm:
                self.warmup.add(req.rid)
            if needs_load:
                snaps[idx].note_routed(req)
            policy.routed(req, idx)
            self.routed[idx] += 1
            if warm:
                self.warmup_routed[idx] += 1
            out.setdefault(idx, []).append(req)
        if exact:
            t_end = arrivals[0][0] if arrivals else NEVER
            if self.holding:
                t_end = min(t_end, start + SESSION_WINDOW_NS)
            t_end = min(t_end, self.boundary)
        return out, t_end

    def _choose(self, req) -> int:
        """The policy's instance for `req`, checked."""
        policy = self.policy
        idx = policy.choose(req, self.view, self.rng)
        if not (isinstance(idx, (int, np.integer)) and 0 <= idx < self.n):
            raise InputError(f"router.policy {policy.name}: choose() returned instance {idx!r}; "
                             f"allowed 0..{self.n - 1}")
        if self.routable is not None and idx not in self.routable:
            raise InputError(f"router.policy {policy.name}: choose() returned instance {idx}, which is not "
                             f"routable now (provisioning, draining or stopped); return the index of one "
                             f"of the snapshots passed")
        return int(idx)

    def _reject(self, req, idx, reason: str, warm: bool) -> None:
        """`req` was rejected at its arrival: record it, end its session, free its client."""
        self.rejections.add(req, idx, reason, warm)
        held = self.followups.pop(req.rid, None)
        if held is not None:
            self.rejections.session_ended(held[0])
        if self.clients is not None:
            nxt = self.clients.send_after(req.arrival_ns)
            if nxt is not None:
                self._push(nxt, nxt.arrival_ns)

    def finished(self, batch, next_start: int):
        """Order a window's `RecordBatch`; release follow-ups and clients' next requests of
        finished ones; drop warm-up records."""
        batch = batch.ordered()
        if self.holding and len(batch):
            for rid, end in batch.fixed[:, [RID, END]].tolist():
                held = self.followups.pop(rid, None)
                if held is not None:
                    nxt, think = held
                    nxt.arrival_ns = max(end + think, next_start)
                    self._push(nxt, nxt.arrival_ns)
                elif self.clients is not None:
                    nxt = self.clients.send_after(max(end, next_start))
                    if nxt is not None:
                        self._push(nxt, nxt.arrival_ns)
        if self.warmup and len(batch):
            rids = batch.fixed[:, RID]
            warm = np.isin(rids, np.fromiter(self.warmup, dtype=np.int64, count=len(self.warmup)))
            if warm.any():
                self.warmup.difference_update(rids[warm].tolist())
                batch = batch.select(~warm)
        return batch

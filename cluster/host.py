"""`InstanceHost`: a group of engines advanced together, one call per window.

This is the whole per-window protocol on the instance side (the Ray actor is a thin wrapper):
new requests in, advance every engine to the window end, finished-request rows, load
snapshots and completed time-series buckets out. The instances of a DP group (`groups`: lists of
instance indices) are advanced as one `DPGroup` (lock-step); every member is still an instance
of its own for deliveries, records, snapshots and time series.
"""
from __future__ import annotations

from fleetsim.cluster.invariants import instance_checks
from fleetsim.cluster.records import RecordBatch
from fleetsim.cluster.requests_csv import check_detail
from fleetsim.instance.dp_group import DPGroup
from fleetsim.instance.engine import NEVER, Engine
from fleetsim.instance.timeseries import BUCKET_NS


class InstanceHost:
    def __init__(self, engines: dict[int, Engine], models: dict[int, str], requests_detail: str = "full",
                 full_checks: bool = False, groups=()):
        self.engines = engines            # instance index -> engine (indices ascending)
        self.models = models
        self.detail = check_detail(requests_detail)       # requests.csv lines (none: none)
        self.order = sorted(engines)
        self.full_checks = full_checks    # cluster/invariants.py: `full` adds the KV block checks
        self.received = dict.fromkeys(self.order, 0)
        grouped = {idx: tuple(sorted(g)) for g in groups for idx in g}
        # what advances: a lone engine or a DP group, in order of their first instance index
        self.units = []
        for idx in self.order:
            members = grouped.get(idx, (idx,))
            if members[0] != idx:
                continue
            if len(members) == 1:
                self.units.append(engines[idx])
            else:
                self.units.append(DPGroup([engines[i] for i in members]))

    def window(self, deliveries: dict, t_end: int, want_snapshots: bool) -> tuple:
        """Deliver `{index: [Request]}`, advance all engines to `t_end`.

        Returns (records, snapshots, series): a `RecordBatch` of the finished requests,
        `[(index, load_tuple)]` if wanted, and `[(index, bucket_row)]` of completed buckets. Every
        bucket before `t_end`'s is complete once the window returns (a step that starts later
        ends at `t_end` or after), so an idle engine's open bucket is sent too.
        """
        for idx in sorted(deliveries):
            eng = self.engines[idx]
            for req in deliveries[idx]:
                eng.add_request(req)
            self.received[idx] += len(deliveries[idx])
        finished, snaps, series = [], [], []
        final = t_end >= NEVER
        complete_before = t_end // BUCKET_NS   # every later step ends at t_end or after
        before = {idx: eng.now for idx, eng in self.engines.items()}
        for unit in self.units:
            while unit.has_work and unit.next_event_ns() < t_end and unit.now < t_end:
                unit.advance_until(t_end)
        for idx in self.order:
            eng = self.engines[idx]
            done = eng.drain_finished()
            instance_checks(eng, before[idx], done, self.full_checks)
            finished.extend(done)
            if want_snapshots:
                snaps.append((idx, eng.load_tuple()))
            total = eng.blocks.num_blocks
            series.extend((idx, b[:6] + (round(100.0 * b[6] / total, 2),))
                          for b in eng.series.drain(final, complete_before))
        batch = RecordBatch.from_requests(finished, self.models, self.detail)
        for r in finished:
            r.itl = []                      # the batch has them; do not keep per-token ints alive
            r.hashes = []
        return batch, snaps, series

    def snapshots(self) -> list:
        return [(idx, self.engines[idx].load_tuple()) for idx in self.order]

    def stats(self) -> list[tuple[int, dict]]:
        out = []
        for idx in self.order:
            e = self.engines[idx]
            s = e.scheduler
            out.append((idx, {"busy_ns": e.busy_ns, "steps": e.steps, "preemptions": s.preemptions,
                              "prefix_queries": s.prefix_queries, "prefix_hits": s.prefix_hits,
                              "kv_blocks": e.blocks.num_blocks, "kv_used": e.blocks.num_used,
                              "received": self.received[idx], "now": e.now}))
        return out

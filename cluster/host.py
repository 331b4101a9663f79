"""`InstanceHost`: a group of engines advanced together, one call per window.

This is the whole per-window protocol on the instance side (the Ray actor is a thin wrapper):
new requests in, advance every engine to the window end, finished-request rows, load
snapshots and completed time-series buckets out.
"""
from __future__ import annotations

from fleetsim.cluster.invariants import instance_checks
from fleetsim.cluster.metrics import request_row
from fleetsim.cluster.records import RecordBatch
from fleetsim.cluster.requests_csv import formatter
from fleetsim.instance.engine import NEVER, Engine
from fleetsim.instance.timeseries import BUCKET_NS


class InstanceHost:
    def __init__(self, engines: dict[int, Engine], models: dict[int, str], requests_detail: str = "full",
                 full_checks: bool = False):
        self.engines = engines            # instance index -> engine (indices ascending)
        self.models = models
        self.format_line = formatter(requests_detail)     # requests.csv lines (None: none)
        self.order = sorted(engines)
        self.full_checks = full_checks    # cluster/invariants.py: `full` adds the KV block checks
        self.received = dict.fromkeys(self.order, 0)

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
        rows, snaps, series = [], [], []
        final = t_end >= NEVER
        complete_before = t_end // BUCKET_NS   # every later step ends at t_end or after
        for idx in self.order:
            eng = self.engines[idx]
            before = eng.now
            while eng.has_work and eng.next_event_ns() < t_end and eng.now < t_end:
                eng.advance_until(t_end)
            done = eng.drain_finished()
            instance_checks(eng, before, done, self.full_checks)
            for r in done:
                rows.append(request_row(r))
                r.itl = []                  # the row has them; do not keep per-token ints alive
                r.hashes = []
            if want_snapshots:
                snaps.append((idx, eng.load_tuple()))
            total = eng.blocks.num_blocks
            series.extend((idx, b[:6] + (round(100.0 * b[6] / total, 2),))
                          for b in eng.series.drain(final, complete_before))
        return RecordBatch.from_rows(rows, self.models, self.format_line), snaps, series

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

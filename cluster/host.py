"""`InstanceHost`: a group of engines advanced together, one call per window.

This is the whole per-window protocol on the instance side (the Ray actor is a thin wrapper):
new requests in, advance every engine to the window end, finished-request rows, load
snapshots and completed time-series buckets out.
"""
from __future__ import annotations

from fleetsim.cluster.metrics import request_row
from fleetsim.cluster.records import RecordBatch
from fleetsim.instance.engine import NEVER, Engine


class InstanceHost:
    def __init__(self, engines: dict[int, Engine], models: dict[int, str]):
        self.engines = engines            # instance index -> engine (indices ascending)
        self.models = models
        self.order = sorted(engines)

    def window(self, deliveries: dict, t_end: int, want_snapshots: bool) -> tuple:
        """Deliver `{index: [Request]}`, advance all engines to `t_end`.

        Returns (records, snapshots, series): a `RecordBatch` of the finished requests,
        `[(index, load_tuple)]` if wanted, and `[(index, bucket_row)]` of completed buckets.
        """
        for idx in sorted(deliveries):
            eng = self.engines[idx]
            for req in deliveries[idx]:
                eng.add_request(req)
        rows, snaps, series = [], [], []
        final = t_end >= NEVER
        for idx in self.order:
            eng = self.engines[idx]
            while eng.has_work and eng.next_event_ns() < t_end and eng.now < t_end:
                eng.advance_until(t_end)
            for r in eng.drain_finished():
                rows.append(request_row(r))
                r.itl = []                  # the row has them; do not keep per-token ints alive
                r.hashes = []
            if want_snapshots:
                snaps.append((idx, eng.load_tuple()))
            total = eng.blocks.num_blocks
            series.extend((idx, b[:6] + (round(100.0 * b[6] / total, 2),)) for b in eng.series.drain(final))
        return RecordBatch.from_rows(rows, self.models), snaps, series

    def snapshots(self) -> list:
        return [(idx, self.engines[idx].load_tuple()) for idx in self.order]

    def stats(self) -> list[tuple[int, dict]]:
        out = []
        for idx in self.order:
            e = self.engines[idx]
            s = e.scheduler
            out.append((idx, {"busy_ns": e.busy_ns, "steps": e.steps, "preemptions": s.preemptions,
                              "prefix_queries": s.prefix_queries, "prefix_hits": s.prefix_hits,
                              "kv_blocks": e.blocks.num_blocks}))
        return out

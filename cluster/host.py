"""`InstanceHost`: a group of engines advanced together, one call per window.

This is the whole per-window protocol on the instance side (the Ray actor is a thin wrapper):
new requests in, advance every engine to the window end, finished-request rows, load
snapshots and completed time-series buckets out. The instances of a DP group (`groups`: lists of
instance indices) are advanced as one `DPGroup` (lock-step); every member is still an instance
of its own for deliveries, records, snapshots and time series.

With PD roles (`roles`, cluster/pd.py) a window comes in two calls: `phase="prefill"` delivers
new requests and due block releases to the prefill-capable instances, advances them and also
returns their handoffs; `phase="decode"` delivers handed-off requests (at their transfer end)
to the decode instances and advances them. Rows then carry the PD columns (`pd.with_pd_columns`).
"""
from __future__ import annotations

from array import array
from bisect import bisect_right

from fleetsim.cluster.invariants import instance_checks
from fleetsim.cluster.records import RecordBatch
from fleetsim.cluster.requests_csv import check_detail
from fleetsim.instance.dp_group import DPGroup
from fleetsim.instance.engine import NEVER, Engine
from fleetsim.instance.handoff import decode_copy
from fleetsim.instance.timeseries import BUCKET_NS


class InstanceHost:
    def __init__(self, engines: dict[int, Engine], models: dict[int, str], requests_detail: str = "full",
                 full_checks: bool = False, groups=(), roles: dict | None = None):
        self.engines = engines            # instance index -> engine (indices ascending)
        self.models = models
        self.detail = check_detail(requests_detail)       # requests.csv lines (none: none)
        self.roles = roles                # PD: instance index -> role (None: no PD)
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
        self.phases = {None: (self.order, self.units)}
        if roles is not None:
            for idx in self.order:
                if roles[idx] == "prefill":
                    engines[idx].hands_off = True
                    engines[idx].fast_forward = False     # its requests never decode there
            for phase, wanted in (("prefill", ("prefill", "mixed")), ("decode", ("decode",))):
                # a DP group is mixed as a whole (cluster/pd.py refuses other roles in groups)
                idxs = [i for i in self.order if roles[i] in wanted]
                self.phases[phase] = (idxs, [u for u in self.units if _first_instance(u) in idxs])

    def window(self, deliveries: dict, t_end: int, want_snapshots: bool, phase: str | None = None,
               releases: dict | None = None, cuts: tuple = ()) -> tuple:
        """Deliver `{index: [Request]}`, advance all engines to `t_end`.

        Returns (records, snapshots, series): a `RecordBatch` of the finished requests,
        `[(index, load_tuple)]` if wanted, and `[(index, bucket_row)]` of completed buckets. Every
        bucket before `t_end`'s is complete once the window returns (a step that starts later
        ends at `t_end` or after), so an idle engine's open bucket is sent too.
        With a PD `phase` (module docstring) only that phase's instances are delivered to and
        advanced, `releases` `{index: [(rid, te)]}` free held blocks, and the result has a fourth
        item: the handoffs `[(first token ns, rid, index, KV bytes, decode copy)]`.
        With `cuts` (ascending ends of load-blind windows merged into this one, never with PD:
        cluster/fleet_loop.py `_merge`) each record's `window` is the index of the window, of those
        ending at `*cuts, t_end`, in which its `report_ns` lies: the one that would have reported it
        had it run alone.
        """
        order, units = self.phases[phase]
        decode = phase == "decode"
        for idx in sorted(releases or ()):
            for rid, at in releases[idx]:
                self.engines[idx].release_held(rid, at)
        for idx in sorted(deliveries):
            eng = self.engines[idx]
            for req in deliveries[idx]:
                if decode:
                    eng.add_handoff(req, req.transfer_end_ns)
                else:
                    eng.add_request(req)
            if not decode:
                self.received[idx] += len(deliveries[idx])
        finished, snaps, series, handoffs = [], [], [], []
        final = t_end >= NEVER
        complete_before = t_end // BUCKET_NS   # every later step ends at t_end or after
        before = {idx: self.engines[idx].now for idx in order}
        for unit in units:
            while unit.has_work and unit.next_event_ns() < t_end and unit.now < t_end:
                unit.advance_until(t_end)
        pd = self.roles is not None
        for idx in order:
            eng = self.engines[idx]
            if eng.releases and not (eng.scheduler.running or eng.scheduler.waiting):
                eng.apply_releases(t_end - 1)       # idle: no step can tell when they were freed
            done = eng.drain_finished()
            instance_checks(eng, before[idx], done, self.full_checks)
            if eng.handoffs:
                per_token = eng.cost_model.kv_block_bytes(1)     # KV bytes per token, one TP rank
                for r in eng.drain_handoffs():
                    handoffs.append((r.first_token_ns, r.rid, idx, r.prompt_len * per_token, decode_copy(r)))
            finished.extend(done)
            if want_snapshots:
                snaps.append((idx, eng.load_tuple()))
            total = eng.blocks.num_blocks
            series.extend((idx, b[:6] + (round(100.0 * b[6] / total, 2),))
                          for b in eng.series.drain(final, complete_before))
        models = self.models
        if decode and finished:   # a row names the prefill instance, maybe hosted elsewhere: same model
            models = {**{r.instance: models[r.decode_instance] for r in finished}, **models}
        if cuts:
            batch = RecordBatch.from_requests(finished, models, self.detail,
                                              [bisect_right(cuts, r.report_ns) for r in finished])
        else:
            batch = RecordBatch.from_requests(finished, models, self.detail)
            if pd:
                from fleetsim.cluster.pd import with_pd_columns      # deferred: only PD runs need it
                batch = with_pd_columns(batch, finished)
        for r in finished:
            r.itl = array("q")              # the batch has them; do not keep the gaps alive
            r.itl_text, r.itl_texted = [], 0
            r.hashes = []
        return (batch, snaps, series) if phase is None else (batch, snaps, series, handoffs)

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


def _first_instance(unit) -> int:
    """The lowest instance index of a unit (an engine or a `DPGroup`)."""
    return unit.members[0].instance_id if isinstance(unit, DPGroup) else unit.instance_id

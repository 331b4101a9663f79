"""`FleetLoop`: the window loop of one run — router, backend, metrics, invariants, streamed outputs.

One `advance()` is one turn of the loop of DESIGN.md "The cluster": plan the next window, route
its arrivals (cluster/router.py), have the backend advance every instance to its end, take the
finished turns and snapshots back into the router, and record the windows in order: metrics,
invariants (cluster/invariants.py), requests.csv lines through `write_requests` and the time
series through `series_streams` (with admission control, a window's rejected requests are recorded
with it: cluster/rejections.py). With load-blind routing and no session turn in flight, up to
`MERGED_WINDOWS` windows run as one at the workers (`_merge`: a window end no instance needs does
not end its fast-forwarded run; requests are still recorded window by window), and up to
`PIPELINE_DEPTH` such windows are kept queued there (nothing the router does depends on their
results). `summary()` ends the run: the summary dict (without the `run` block).

With an autoscaler (`router.autoscaler`, cluster/autoscaling/scaler.py) the loop stops at each of
its boundaries, hands it the snapshots there and narrows the router to the routable instances;
every window then returns snapshots (a draining instance stops when it holds nothing), nothing
is pipelined, and evaluation ends when the router has routed its last request. timeseries_fleet.csv
gains the instance counts (`fleet_columns`) and summary.json an `autoscaler` block, after `slo`.

With PD roles (`pd`, cluster/pd.py) the backend is wrapped in a `PDFleet`, which runs each
window in its two phases; windows are then always synced, with snapshots, and shortened while
PD work is in flight (`PDFleet.limit` / `clip`).

The loop is the same wherever it runs: in the driver with the local backend (fleet.py writes
straight into the output files), or inside the router actor with Ray
(cluster/backends/ray_router.py: the streams are buffers the driver drains), so the output
bytes are the same.
"""
from __future__ import annotations

from fleetsim.cluster.invariants import InvariantViolation, RunChecker
from fleetsim.cluster.metrics import MetricsCollector, hit_rate
from fleetsim.cluster.timeseries_writer import TimeSeriesWriter
from fleetsim.instance.engine import NEVER

PIPELINE_DEPTH = 4   # windows queued ahead at the workers when routing does not read load
MERGED_WINDOWS = 16  # load-blind windows run as one (`_merge`) ...
MERGED_REQUESTS_PER_INSTANCE = 64   # ... unless they route this many requests per instance first


class FleetLoop:
    def __init__(self, router, fleet, source: tuple, write_requests, series_streams: tuple, router_info: dict,
                 slo: dict | None = None, pd=None):
        """`router` (a fresh `Router`), `fleet` (a backend), `source` (the workload and the number of
        closed-loop clients or None: the router takes requests from it as it routes them),
        `write_requests(lines)` or None (no requests.csv), `series_streams` (timeseries.csv and
        timeseries_fleet.csv, each with its header written), `router_info` (summary's `router`),
        `slo` (an SLO set, experiments.slo: summary's `slo` block, after `instances`), `pd` (a
        `pd.PDPlan` or None)."""
        n = router.n
        if pd is not None:
            from fleetsim.cluster.pd import PDFleet
            fleet = PDFleet(fleet, pd)
        self.pd = fleet if pd is not None else None
        self.router, self.fleet = router, fleet
        self.scaler = router.autoscaler
        # an autoscaler or PD roles: every window is synced, with snapshots, and none is merged
        self.always_sync = self.scaler is not None or self.pd is not None
        self.write_requests = write_requests
        self.series = TimeSeriesWriter(*series_streams, n, self.scaler.columns if self.scaler else None)
        self.metrics = MetricsCollector(n)
        self.checker = RunChecker(n)
        self.tracker = None
        if slo:
            from fleetsim.cluster.experiments.slo import SloTracker     # deferred: only runs with SLOs need it
            self.tracker = SloTracker(slo)
        self.router_info = router_info
        self.t = 0
        self.in_flight: list = []     # (handle, window end) submitted, not yet collected
        self.synced: list = []        # ([(batch, rejected)], buckets, window end) synced, not yet recorded (FIFO)
        self.done = False
        router.set_snapshots(fleet.snapshots())
        if self.scaler is not None:
            router.set_routable(self.scaler.routable())
            router.boundary = self.scaler.boundary()
        workload, max_concurrency = source
        router.add_source(iter(workload), max_concurrency)     # requests are made as routed

    @property
    def progress(self) -> tuple[int, int]:
        """(simulated ns reached, finished requests recorded)."""
        return min(self.t, self.metrics.last_end), self.metrics.count

    def advance(self) -> bool:
        """Run one window (a sync first, if routing reads load and time jumps); True when the
        last window is recorded."""
        router, fleet, scaler, pd = self.router, self.fleet, self.scaler, self.pd
        if scaler is not None:
            self._autoscale()
        start, end, exact = router.plan(self.t)
        if pd is not None:
            start, end, exact = pd.limit(self.t, start, end, exact)
        if start > self.t and router.needs_load:
            self._sync_window({}, [(start, ())], True)
            self.t = start
        deliveries, end = router.route(end, exact)
        if pd is not None:
            end = pd.clip(self.t, start, end)
        # [(end, rejected rows)] of each window run as one (just this one unless `_merge` merges)
        windows = self._merge(deliveries, [(end, self._rejected())])
        end = windows[-1][0]
        if router.needs_load or router.holding or end >= NEVER or self.always_sync:
            for handle, w_windows in self.in_flight:
                self.synced.append(self._sync(fleet.collect(handle), w_windows))
            self.in_flight = []
            self._sync_window(deliveries, windows, router.needs_load or router.clients is not None or self.always_sync)
        else:
            # load-blind routing with no session turn in flight: nothing the router does
            # depends on results, so keep a few windows queued at the workers
            self.in_flight.append((self._submit(deliveries, windows, False), windows))
            if len(self.in_flight) > PIPELINE_DEPTH:
                handle, w_windows = self.in_flight.pop(0)
                self.synced.append(self._sync(fleet.collect(handle), w_windows))
                self._record_synced()
        self.t = end
        if end >= NEVER:
            if not router.done:
                raise InvariantViolation("the router still holds requests after the final window")
            self._record_synced()
            self.done = True
        return self.done

    def summary(self) -> dict:
        """The run's summary (call once `advance` returned True); closes the time series."""
        router, metrics = self.router, self.metrics
        summary = metrics.summary()
        stats = dict(self.fleet.stats())
        warm = router.warmup_routed               # simulated, finished, not in the metrics
        rejections = router.rejections
        self.checker.end(router.routed, [f + w for f, w in zip(metrics.per_inst[:, 0].tolist(), warm)], stats)
        self.checker.arrivals(router.arrived, sum(router.routed), rejections.total if rejections is not None else 0)
        queries = sum(s["prefix_queries"] for s in stats.values())
        hits = sum(s["prefix_hits"] for s in stats.values())
        summary["prefix_hit_rate"] = hit_rate(hits, queries)
        summary["router"] = dict(self.router_info)
        admitted = [r - w for r, w in zip(router.routed, warm)]
        if rejections is not None:
            summary["admission"] = rejections.block(router.admission.info(), sum(admitted))
        summary["instances"] = metrics.per_instance(stats, admitted)
        if self.pd is not None:
            for inst, role in zip(summary["instances"], self.pd.plan.spec.roles):
                inst["role"] = role
            summary["pd"] = self.pd.summary()
        if self.tracker is not None:
            summary["slo"] = self.tracker.summary(summary, rejections.measured if rejections is not None else None)
        if self.scaler is not None:
            summary["autoscaler"] = self.scaler.summary(metrics.last_end, metrics.count)
        self.series.close()
        return summary

    def _autoscale(self) -> None:
        """At the autoscaler's boundary (or once routing is over), let it act; narrow the router."""
        router, scaler = self.router, self.scaler
        if not scaler.evaluating:
            return
        if router.done:
            scaler.finish()
        elif self.t >= router.boundary:
            scaler.at(self.t, router.snapshots)
        else:
            return
        router.set_routable(scaler.routable())
        router.boundary = scaler.boundary()

    def _rejected(self):
        """The rejected rows of the window just routed."""
        rejections = self.router.rejections
        return rejections.take_window() if rejections is not None else ()

    def _merge(self, deliveries: dict, windows: list) -> list:
        """With load-blind routing and nothing held, route the windows after `windows` (one, the
        one just routed) too, up to `MERGED_WINDOWS` of them or `MERGED_REQUESTS_PER_INSTANCE`
        requests per instance, into `deliveries` (in routing order); returns `windows` with their
        (end, rejected rows) appended. Nothing in them needs a sync: the fleet runs them as one,
        so their ends do not end an instance's fast-forwarded run, and each request is still
        reported with the window it finished in (`InstanceHost.window`), so the records, in
        window order, and everything made of them keep their bytes. The last window of a run
        stays its own; nothing is merged with an autoscaler or PD roles."""
        router = self.router
        end = windows[-1][0]
        if (router.needs_load or router.n == 1 or router.holding or router.clients is not None or end >= NEVER
                or self.always_sync):
            return windows
        routed = sum(map(len, deliveries.values()))
        cap = MERGED_REQUESTS_PER_INSTANCE * router.n
        while len(windows) < MERGED_WINDOWS and routed < cap and not router.holding:
            _, nxt, _ = router.plan(end)
            if nxt >= NEVER:
                break
            more, end = router.route(nxt, False)
            for idx, reqs in more.items():
                deliveries.setdefault(idx, []).extend(reqs)
                routed += len(reqs)
            windows.append((end, self._rejected()))
        return windows

    def _submit(self, deliveries: dict, windows: list, want_snapshots: bool):
        """Start the windows `[(end, rejected rows)]` as one (`InstanceHost.window`'s `cuts`)."""
        end = windows[-1][0]
        if len(windows) == 1:
            return self.fleet.submit(deliveries, end, want_snapshots)
        return self.fleet.submit(deliveries, end, want_snapshots, cuts=tuple(e for e, _ in windows[:-1]))

    def _sync_window(self, deliveries: dict, windows: list, want_snapshots: bool) -> None:
        handle = self._submit(deliveries, windows, want_snapshots)
        self._record_synced()                 # record the previous windows while the workers run this one
        self.synced.append(self._sync(self.fleet.collect(handle), windows))

    def _record_synced(self) -> None:
        rejections = self.router.rejections
        for parts, buckets, w_end in self.synced:
            for batch, rejected in parts:
                self.checker.records(batch.fixed, batch.itl, batch.window is not None)
                self.metrics.add_batch(batch)
                if self.tracker is not None:
                    self.tracker.add(batch.fixed)
                if self.write_requests is not None:
                    self.write_requests(batch.lines if rejections is None else rejections.lines(batch, rejected))
            self.series.add(buckets, w_end)
        self.synced.clear()

    def _sync(self, result, windows: list) -> tuple:
        """Take the snapshots and finished turns of windows run as one into the router, window by
        window; their ([(ordered batch, rejected rows)], time-series buckets, last end) are
        recorded later, in window order."""
        batch, snaps, buckets = result
        if len(windows) > 1:     # merged (`_merge`: no autoscaler, nothing held): one batch, cut only for rejections
            batch = self.router.finished(batch, windows[-1][0])
            if self.router.rejections is None:
                parts = [(batch, ())]
            else:
                parts = [(part, rejected) for part, (_, rejected) in zip(batch.split(len(windows)), windows)]
        else:
            if self.scaler is not None:
                self.scaler.observe(batch.fixed, snaps)
            parts = [(self.router.finished(batch, windows[0][0]), windows[0][1])]
        if snaps:
            self.router.set_snapshots(snaps)
        return parts, buckets, windows[-1][0]

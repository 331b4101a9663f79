"""Run a workload through a fleet: router + backend + streamed metrics and output files."""
from __future__ import annotations

import os
import re
import time

from fleetsim.cluster.config import ClusterConfig, InstanceSpec
from fleetsim.cluster.dp_groups import lockstep_groups
from fleetsim.cluster.errors import InputError
from fleetsim.cluster.experiments.slo import SloTracker
from fleetsim.cluster.invariants import LEVELS, InvariantViolation, RunChecker
from fleetsim.cluster.metrics import MetricsCollector, hit_rate
from fleetsim.cluster.policies import make_policy, warn_if_blind
from fleetsim.cluster.progress import run_bar
from fleetsim.cluster.report import RunOutput
from fleetsim.cluster.router import Router
from fleetsim.cluster.requests_csv import writes_file
from fleetsim.cluster.timeseries_writer import FLEET_HEADER, HEADER as TIMESERIES_HEADER, TimeSeriesWriter
from fleetsim.cluster.workloads import Workload
from fleetsim.cluster.workloads.clients import ClientSpec
from fleetsim.costmodel import CostModel, CostModelError
from fleetsim.instance.engine import NEVER, Engine, RequestRejected
from fleetsim.instance.pipeline import make_engine as new_engine


PIPELINE_DEPTH = 4   # windows queued ahead at the workers when routing does not read load


def load_cost_model(spec: InstanceSpec, perf_root=None, models_root=None) -> CostModel:
    return CostModel.load(model=spec.model, hardware=spec.hardware, backend=spec.cost_model, tp=spec.tp,
                          perf_root=perf_root, models_root=models_root, variant=spec.variant,
                          decode_skew=spec.decode_skew, overhead_ns=spec.overhead_ns,
                          overhead_per_seq_ns=spec.overhead_per_seq_ns, memory_gib=spec.memory_gib,
                          ep=spec.ep, moe_skew=spec.moe_skew, pp=spec.pp, network=spec.network,
                          link_gbps=spec.link_gbps, link_latency_us=spec.link_latency_us, dtype=spec.dtype,
                          kv_cache_dtype=spec.kv_cache_dtype, attention_pricing=spec.attention_pricing)


def make_engine(cm: CostModel, spec: InstanceSpec, index: int, fast_forward: bool = True) -> Engine:
    try:
        return new_engine(cm, spec.engine, index, fast_forward)
    except ValueError as exc:
        raise InputError(f"instance {index}: {exc}") from None


def instance_models(config: ClusterConfig, perf_root=None, models_root=None) -> tuple[dict, dict]:
    """(cost model, probe engine) of every distinct instance spec. An error (an InputError) names
    the cluster config that chose the model, hardware, bundle or engine (`config.source`), unless
    it starts with a data file of its own (a bundle CSV, a model's config.json: that file is the
    source); an engine that cannot be built (the model does not fit) also lists the engine flags
    applied."""
    cost_models, probes = {}, {}
    for spec in dict.fromkeys(config.instances):
        index = config.instances.index(spec)
        try:
            cost_models[spec] = load_cost_model(spec, perf_root, models_root)
        except CostModelError as exc:
            head = re.sub(r":\d+$", "", str(exc).split(": ", 1)[0])
            raise InputError(str(exc) if os.path.isfile(head) or not config.source
                             else f"{config.source}: {exc}") from None
        try:
            probes[spec] = make_engine(cost_models[spec], spec, index)
        except InputError as exc:
            where = f"{config.source}: " if config.source else ""
            raise InputError(f"{where}{exc}{config.overrides_note()}") from None
    return cost_models, probes


def check_workload(workload: Workload, probes: list[Engine], note: str = "") -> None:
    """Reject up front a workload with a request that some instance could never serve (`note`
    ends the message). Every limit an engine checks grows with prompt + output (loaders
    guarantee both >= 1), so checking the longest request decides for all of them."""
    req = workload.longest()
    try:
        for eng in probes:
            eng.check_request(req)
    except RequestRejected as exc:
        raise InputError(f"{workload.source}: {exc}{note}") from None


def clip_limit(probes: list[Engine]) -> int:
    """The most prompt + output tokens every instance accepts (max_model_len, and
    max_num_batched_tokens where chunked prefill is off)."""
    return min(e.max_model_len if e.config.enable_chunked_prefill
               else min(e.max_model_len, e.config.max_num_batched_tokens) for e in probes)


def run_fleet(config: ClusterConfig, workload: Workload, out: "str | RunOutput | None", backend: str = "local",
              perf_root=None, models_root=None, progress: bool = False, fast_forward: bool = True,
              requests_detail: str = "full", check_invariants: str = "basic", provenance: dict | None = None,
              slo: dict | None = None, clients: ClientSpec | None = None, clip_to_model: bool = False,
              **backend_options) -> dict:
    """Simulate; write requests.csv, summary.json, timeseries.csv and timeseries_fleet.csv to
    `out` (a folder, or a `RunOutput`; None keeps them in memory).

    `fast_forward` runs identical decode steps as one event (same output bytes, faster).
    `clients` sends the workload through benchmark clients (re-timing, --max-concurrency,
    warm-up; cluster/workloads/clients.py); `clip_to_model` cuts requests longer than the
    instances accept instead of rejecting the workload.
    `slo` (an SLO set, experiments.slo) adds summary.json's `slo` block, after `instances`.
    `requests_detail` (full, no-itl, none) is how much of requests.csv is written
    (cluster/requests_csv.py); a `RunOutput` passed in is made with
    `requests_csv=writes_file(requests_detail)`. `check_invariants` is `basic` or `full`
    (cluster/invariants.py); `provenance`, if given, is summary.json's `run` block (what
    produced the run; its `files` are filled in here).
    Returns the summary plus `wall_s`, the run's wall time, which is kept out of the files so
    that they are byte-identical across runs, backends and machines."""
    wall0 = time.perf_counter()
    write_requests = writes_file(requests_detail)      # checks the value first
    specs = config.instances
    n = len(specs)
    for flag, path in (("--perf-root", perf_root), ("--models-root", models_root)):
        if path is not None and not os.path.isdir(path):
            raise InputError(f"{flag} {path!r}: no such directory")
    cost_models, probes = instance_models(config, perf_root or config.perf_root, models_root or config.models_root)
    if clip_to_model:
        workload = workload.clipped(clip_limit(list(probes.values())))
    check_workload(workload, list(probes.values()), config.overrides_note())
    groups = lockstep_groups(specs, cost_models, config.source)
    clients = (clients or ClientSpec()).validate()
    if clients.warmup_requests >= len(workload):
        raise InputError(f"--warmup-requests {clients.warmup_requests} leaves nothing to measure: "
                         f"{workload.source} has {len(workload)} requests")
    workload = clients.retime(workload, config.seed)
    try:
        policy = make_policy(config.router.policy, n, config.router.options, specs[0].engine.block_size)
    except InputError as exc:
        raise InputError(f"{config.source}: {exc}") from None
    if not workload.has_identity:
        warn_if_blind(policy, (), workload.source)
    router = Router(policy, n, round(config.router.sync_interval_ms * 1e6), config.seed, clients.warmup_requests)
    if check_invariants not in LEVELS:
        raise InputError(f"--check-invariants {check_invariants!r}: choose one of {', '.join(LEVELS)}")
    fleet = _make_backend(backend, specs, cost_models, groups, fast_forward, requests_detail,
                          check_invariants == "full", backend_options)
    out = out if isinstance(out, RunOutput) else RunOutput(out, write_requests)
    series = TimeSeriesWriter(out.stream("timeseries.csv", TIMESERIES_HEADER),
                              out.stream("timeseries_fleet.csv", FLEET_HEADER), n)
    metrics = MetricsCollector(n)
    checker = RunChecker(n)
    tracker = SloTracker(slo) if slo else None
    bar = run_bar(len(workload) - clients.warmup_requests, progress)
    try:
        router.set_snapshots(fleet.snapshots())
        router.add_source(iter(workload), clients.max_concurrency)   # requests are made as routed
        t = 0
        in_flight: list = []         # (handle, window end) submitted, not yet collected
        synced: list = []            # (batch, buckets, window end) synced, not yet recorded (FIFO)

        def record_synced() -> None:
            for batch, buckets, w_end in synced:
                checker.records(batch.fixed, batch.itl)
                metrics.add_batch(batch)
                if tracker is not None:
                    tracker.add(batch.fixed)
                if write_requests:
                    out.write_lines(batch.lines)
                series.add(buckets, w_end)
            synced.clear()

        def sync_window(deliveries: dict, w_end: int, want_snapshots: bool) -> None:
            # record the previous windows while the workers run this one
            handle = fleet.submit(deliveries, w_end, want_snapshots)
            record_synced()
            synced.append(_sync(router, fleet.collect(handle), w_end))

        while True:
            start, end, exact = router.plan(t)
            if start > t and policy.needs_load:
                sync_window({}, start, True)
                t = start
            deliveries, end = router.route(end, exact)
            if policy.needs_load or router.holding or end >= NEVER:
                for handle, w_end in in_flight:
                    synced.append(_sync(router, fleet.collect(handle), w_end))
                in_flight = []
                sync_window(deliveries, end, policy.needs_load or router.clients is not None)
            else:
                # load-blind routing with no session turn in flight: nothing the router does
                # depends on results, so keep a few windows queued at the workers
                in_flight.append((fleet.submit(deliveries, end, False), end))
                if len(in_flight) > PIPELINE_DEPTH:
                    handle, w_end = in_flight.pop(0)
                    synced.append(_sync(router, fleet.collect(handle), w_end))
                    record_synced()
            t = end
            bar.update(min(t, metrics.last_end), metrics.count)
            if t >= NEVER:
                if router.done:
                    break
                raise InvariantViolation("the router still holds requests after the final window")
        record_synced()
        bar.update(metrics.last_end, metrics.count)
        summary = metrics.summary()
        stats = dict(fleet.stats())
        warm = router.warmup_routed               # simulated, finished, not in the metrics
        checker.end(router.routed, [f + w for f, w in zip(metrics.per_inst[:, 0].tolist(), warm)], stats)
        queries = sum(s["prefix_queries"] for s in stats.values())
        hits = sum(s["prefix_hits"] for s in stats.values())
        summary["prefix_hit_rate"] = hit_rate(hits, queries)
        summary["router"] = {"policy": policy.name, "sync_interval_ms": config.router.sync_interval_ms}
        summary["instances"] = metrics.per_instance(stats, [r - w for r, w in zip(router.routed, warm)])
        if tracker is not None:
            summary["slo"] = tracker.summary(summary)
        series.close()
        if provenance is not None:
            summary["run"] = {**provenance, "files": sorted([*out.names, "summary.json"])}
        out.add_json("summary.json", summary)
        out.commit()
        summary["wall_s"] = time.perf_counter() - wall0
    except BaseException:
        out.abort()
        raise
    finally:
        bar.close()
        fleet.close()
    return summary


def _sync(router, result, next_start) -> tuple:
    """Take a window's snapshots and finished turns into the router; its (ordered batch,
    time-series buckets, window end) are recorded later, in window order."""
    batch, snaps, buckets = result
    batch = router.finished(batch, next_start)
    if snaps:
        router.set_snapshots(snaps)
    return batch, buckets, next_start


def _make_backend(name: str, specs, cost_models: dict, groups, fast_forward: bool, requests_detail: str,
                  full_checks: bool, options: dict):
    if name == "local":
        from fleetsim.cluster.backends.local import LocalBackend
        engines = {i: make_engine(cost_models[s], s, i, fast_forward) for i, s in enumerate(specs)}
        return LocalBackend(engines, {i: s.model for i, s in enumerate(specs)}, requests_detail, full_checks,
                            groups)
    if name == "ray":
        from fleetsim.cluster.backends.ray_backend import RayBackend
        return RayBackend(specs, cost_models, fast_forward=fast_forward, requests_detail=requests_detail,
                          full_checks=full_checks, groups=groups, **options)
    raise InputError(f"--backend {name!r}: unknown; choose local or ray")

"""Run a workload through a fleet: router + backend + streamed metrics and output files."""
from __future__ import annotations

import os
import re
import time

from fleetsim.cluster.config import ClusterConfig, InstanceSpec
from fleetsim.cluster.dp_groups import lockstep_groups
from fleetsim.cluster.errors import InputError
from fleetsim.cluster.fleet_loop import FleetLoop
from fleetsim.cluster.full_collections import spaced_full_collections
from fleetsim.cluster.invariants import LEVELS
from fleetsim.cluster.memory_limit import check_memory
from fleetsim.cluster.policies import make_policy, warn_if_blind
from fleetsim.cluster.instance_capacity import prefill_rates, relative_capacities
from fleetsim.cluster.progress import run_bar
from fleetsim.cluster.rejections import Rejections
from fleetsim.cluster.report import RunOutput
from fleetsim.cluster.router import Router
from fleetsim.cluster.requests_csv import writes_file
from fleetsim.cluster.timeseries_writer import HEADER as TIMESERIES_HEADER, fleet_header
from fleetsim.cluster.workloads import Workload
from fleetsim.cluster.workloads.clients import ClientSpec
from fleetsim.costmodel import CostModel, CostModelError
from fleetsim.instance.engine import Engine, RequestRejected
from fleetsim.instance.pipeline import make_engine as new_engine


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
        return new_engine(cm, spec.engine, index, fast_forward, spec.frontend)
    except ValueError as exc:
        raise InputError(f"instance {index}: {exc}") from None


def instance_models(config: ClusterConfig, perf_root=None, models_root=None, num_requests: int = 0,
                    memory_limit=None) -> tuple[dict, dict]:
    """(cost model, probe engine) of every distinct instance spec, once the run's memory estimate
    for `num_requests` requests is within `memory_limit` (GiB; None: the memory available,
    cluster/memory_limit.py) — checked before any engine is built. An error (an InputError) names
    the cluster config that chose the model, hardware, bundle or engine (`config.source`), unless
    it starts with a data file of its own (a bundle CSV, a model's config.json: that file is the
    source); an engine that cannot be built (the model does not fit) also lists the engine flags
    applied."""
    cost_models, probes = {}, {}
    for spec in dict.fromkeys(config.instances):
        try:
            cost_models[spec] = load_cost_model(spec, perf_root, models_root)
        except CostModelError as exc:
            head = re.sub(r":\d+$", "", str(exc).split(": ", 1)[0])
            raise InputError(str(exc) if os.path.isfile(head) or not config.source
                             else f"{config.source}: {exc}") from None
    check_memory(config, cost_models, num_requests, memory_limit)
    for spec in cost_models:
        index = config.instances.index(spec)
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
              slo: dict | None = None, trace=None, clients: ClientSpec | None = None, clip_to_model: bool = False,
              memory_limit=None,
              **backend_options) -> dict:
    """Simulate; write requests.csv, summary.json, timeseries.csv and timeseries_fleet.csv to
    `out` (a folder, or a `RunOutput`; None keeps them in memory).

    `fast_forward` runs identical decode steps as one event (same output bytes, faster).
    `clients` sends the workload through benchmark clients (re-timing, --max-concurrency,
    warm-up; cluster/workloads/clients.py); `clip_to_model` cuts requests longer than the
    instances accept instead of rejecting the workload.
    `slo` (an SLO set, experiments.slo) adds summary.json's `slo` block, after `instances`.
    `trace` (cluster/trace_json.py TraceSpec; local backend) adds trace.json, the traced
    instances' steps in the trace window.
    `requests_detail` (full, no-itl, none) is how much of requests.csv is written
    (cluster/requests_csv.py); a `RunOutput` passed in is made with
    `requests_csv=writes_file(requests_detail)`. `check_invariants` is `basic` or `full`
    (cluster/invariants.py); `memory_limit` (GiB, None: the memory available) bounds the run's
    estimated memory (cluster/memory_limit.py); `provenance`, if given, is summary.json's `run` block (what
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
    cost_models, probes = instance_models(config, perf_root or config.perf_root, models_root or config.models_root,
                                          len(workload), memory_limit)
    if clip_to_model:
        workload = workload.clipped(clip_limit(list(probes.values())))
    check_workload(workload, list(probes.values()), config.overrides_note())
    groups = lockstep_groups(specs, cost_models, config.source)
    if config.autoscaler is not None and groups:
        raise InputError(f"{config.source}: autoscaler: instances {', '.join(map(str, groups[0]))} step in lock-step "
                         f"(a MoE dp_group) and cannot be scaled one by one; drop dp_group or the autoscaler")
    clients = (clients or ClientSpec()).validate()
    if clients.warmup_requests >= len(workload):
        raise InputError(f"--warmup-requests {clients.warmup_requests} leaves nothing to measure: "
                         f"{workload.source} has {len(workload)} requests")
    workload = clients.retime(workload, config.seed)
    routed_to = n if config.pd is None else len(config.pd.members("prefill", "mixed"))
    try:
        policy = make_policy(config.router.policy, routed_to, config.router.options, specs[0].engine.block_size)
    except InputError as exc:
        raise InputError(f"{config.source}: {exc}") from None
    if not workload.has_identity:
        warn_if_blind(policy, (), workload.source)
    rates = prefill_rates(specs, cost_models) if config.admission or getattr(policy, "needs_capacity", False) else None
    router_info = {"policy": policy.name, "sync_interval_ms": config.router.sync_interval_ms}
    if getattr(policy, "needs_capacity", False):
        capacities = relative_capacities(rates if config.pd is None else
                                         [rates[i] for i in config.pd.members("prefill", "mixed")])
        policy.set_capacities(capacities)
        router_info["relative_capacity"] = [round(c, 4) for c in capacities]
    admission = rejections = None
    if config.admission:
        from fleetsim.cluster.admission import Admission      # deferred: only runs with admission control need it
        admission = Admission(config.admission, rates)
        rejections = Rejections([s.name for s in config.admission], [s.model for s in specs],
                                4 if config.pd is not None else 0)     # PD: its columns (cluster/pd.py) empty
    sync_ns = round(config.router.sync_interval_ms * 1e6)
    pd = None
    if config.pd is not None:         # PD disaggregation (cluster/pd.py)
        from fleetsim.cluster.pd import make_plan, prefill_policy
        try:
            pd = make_plan(config.pd, config.seed, sync_ns, specs[0].engine.block_size)
        except InputError as exc:
            raise InputError(f"{config.source}: pd.decode_policy: {exc}") from None
        policy = prefill_policy(policy, config.pd)
    router = Router(policy, n, sync_ns, config.seed, clients.warmup_requests, admission, rejections)
    if config.autoscaler is not None:
        router.autoscaler = make_autoscaler(config)
    if check_invariants not in LEVELS:
        raise InputError(f"--check-invariants {check_invariants!r}: choose one of {', '.join(LEVELS)}")
    backend_options = {"fast_forward": fast_forward, "requests_detail": requests_detail,
                       "full_checks": check_invariants == "full", "groups": groups, **backend_options}
    if pd is not None:
        backend_options["roles"] = dict(enumerate(config.pd.roles))
    source = (workload, clients.max_concurrency)
    if trace is not None:
        check_trace(trace, backend, specs, groups)
    run = _start(backend, router, source, specs, cost_models, write_requests, router_info, slo, backend_options, pd)
    tracers = attach_tracers(run.fleet, trace, n) if trace is not None else {}
    try:
        out = out if isinstance(out, RunOutput) else RunOutput(out, write_requests, bool(config.admission),
                                                               pd is not None)
        streams = (out.stream("timeseries.csv", TIMESERIES_HEADER),
                   out.stream("timeseries_fleet.csv", fleet_header(config.autoscaler is not None)))
        bar = run_bar(len(workload) - clients.warmup_requests, progress)
        try:
            with spaced_full_collections():
                summary = run.run(out.write_lines if write_requests else None, streams, bar.update)
            if tracers:
                from fleetsim.cluster.trace_json import trace_text
                out.stream("trace.json", trace_text(tracers))
            if provenance is not None:
                summary["run"] = {**provenance, "files": sorted([*out.names, "summary.json"])}
            out.add_json("summary.json", summary)
            out.commit()
            summary.update(run.notes())
            summary["wall_s"] = time.perf_counter() - wall0
        except BaseException:
            out.abort()
            raise
        finally:
            bar.close()
    finally:
        run.close()
    return summary


def make_autoscaler(config: ClusterConfig):
    """The config's autoscaler, with each instance's price per hour (the hardware YAML's
    `cost_per_hour` per GPU, experiments/capacity.py; None where it has none)."""
    from fleetsim.cluster.autoscaling.scaler import Autoscaler
    from fleetsim.cluster.experiments.capacity import instance_price
    prices = {spec: instance_price(spec, {})[1] for spec in dict.fromkeys(config.instances)}
    return Autoscaler(config.autoscaler, [prices[s] for s in config.instances])


def check_trace(trace, backend: str, specs, groups) -> None:
    """What `--trace` supports: the local backend, single-stage engines outside lock-step groups,
    existing instances."""
    if backend != "local":
        raise InputError("--trace needs --backend local (the Ray backend does not trace yet)")
    grouped = {i for g in groups for i in g}
    for i in range(len(specs)) if trace.instances is None else trace.instances:
        if i >= len(specs):
            raise InputError(f"--trace-instances: instance {i} does not exist (the fleet has {len(specs)}: "
                             f"0..{len(specs) - 1})")
        if specs[i].pp > 1 or i in grouped:
            raise InputError(f"--trace: instance {i} is pipeline-parallel or in a lock-step DP group, "
                             f"which is not traced yet")


def attach_tracers(fleet, trace, n: int) -> dict:
    """{instance: StepTracer} attached to the local backend's engines (instance/trace.py)."""
    from fleetsim.instance.trace import StepTracer
    tracers = {}
    for i in range(n) if trace.instances is None else trace.instances:
        tracers[i] = fleet.host.engines[i].tracer = StepTracer(trace.start_ns, trace.end_ns)
    return tracers


def _start(name: str, router, source: tuple, specs, cost_models: dict, write_requests: bool, router_info: dict,
           slo: dict | None, options: dict, pd=None):
    """The run on backend `name`, its instances started; `source` is (workload, max concurrency
    of closed-loop clients or None), what the router routes (`FleetLoop`); `pd` a `pd.PDPlan`."""
    if name == "local":
        from fleetsim.cluster.backends.local import LocalBackend
        ff = options.pop("fast_forward")
        engines = {i: make_engine(cost_models[s], s, i, ff) for i, s in enumerate(specs)}
        return LocalRun(router, LocalBackend(engines, {i: s.model for i, s in enumerate(specs)}, **options),
                        source, router_info, slo, pd)
    if name == "ray":
        from fleetsim.cluster.backends.ray_router import RayRun
        return RayRun(router, source, specs, cost_models, write_requests, router_info, slo, pd=pd, **options)
    raise InputError(f"--backend {name!r}: unknown; choose local or ray")


class LocalRun:
    """A run in this process: the `FleetLoop` writes straight into the output streams."""

    def __init__(self, router, fleet, source: tuple, router_info: dict, slo: dict | None, pd=None):
        self.fleet = fleet
        self.args = (router, fleet, source)
        self.router_info, self.slo, self.pd = router_info, slo, pd

    def run(self, write_requests, series_streams: tuple, progress) -> dict:
        loop = FleetLoop(*self.args, write_requests, series_streams, self.router_info, self.slo, self.pd)
        self.args = None
        while not loop.advance():
            progress(*loop.progress)
        progress(*loop.progress)
        return loop.summary()

    def notes(self) -> dict:
        return {}

    def close(self) -> None:
        self.fleet.close()

"""Build engines from a cluster config and run a workload through them."""
from __future__ import annotations

import time

from cluster.config import ClusterConfig, InstanceSpec
from cluster.errors import InputError
from cluster.metrics import MetricsCollector, request_row
from cluster.report import RunOutput
from cluster.workload import Workload
from costmodel import CostModel
from instance.engine import Engine, RequestRejected


def load_cost_model(spec: InstanceSpec, perf_root=None, models_root=None) -> CostModel:
    cm = CostModel.load(model=spec.model, hardware=spec.hardware, backend=spec.cost_model, tp=spec.tp,
                        perf_root=perf_root, models_root=models_root, variant=spec.variant,
                        decode_skew=spec.decode_skew, overhead_ns=spec.overhead_ns,
                        overhead_per_seq_ns=spec.overhead_per_seq_ns, memory_gib=spec.memory_gib)
    return cm


def build_engine(spec: InstanceSpec, index: int, perf_root=None, models_root=None) -> Engine:
    cm = load_cost_model(spec, perf_root, models_root)
    try:
        return Engine(cm, spec.engine, index)
    except ValueError as exc:
        raise InputError(f"instance {index}: {exc}") from None


def run_single(config: ClusterConfig, workload: Workload, out_dir: str, perf_root=None, models_root=None) -> dict:
    """Run one instance over the whole workload; write requests.csv and summary.json."""
    start = time.perf_counter()
    if len(config.instances) != 1:
        raise InputError(f"{config.source}: this build runs exactly one instance")
    spec = config.instances[0]
    engine = build_engine(spec, 0, perf_root or config.perf_root, models_root or config.models_root)
    try:
        for req in workload.initial:
            engine.add_request(req)
    except RequestRejected as exc:
        raise InputError(f"{workload.source}: {exc}") from None
    metrics = MetricsCollector()
    out = RunOutput(out_dir)
    models = [spec.model]
    try:
        while engine.has_work:
            engine.advance_until(1 << 62)
            rows = []
            for req in engine.drain_finished():
                rows.append(request_row(req, spec.model))
                nxt = req.followup
                if nxt is not None:
                    nxt.arrival_ns = req.token_times[-1] + req.think_ns
                    engine.add_request(nxt)
            for row in rows:
                metrics.add(row)
            out.write_rows(rows, models)
        summary = metrics.summary()
        s = engine.scheduler
        summary["prefix_hit_rate"] = s.prefix_hits / s.prefix_queries if s.prefix_queries else 0.0
        summary["wall_s"] = time.perf_counter() - start
        out.add_json("summary.json", summary)
        out.commit()
    except BaseException:
        out.abort()
        raise
    return summary


__all__ = ["build_engine", "load_cost_model", "run_single"]

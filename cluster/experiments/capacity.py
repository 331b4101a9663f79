"""Capacity planning under SLOs: the largest sustainable rate, the smallest fleet, cost per request.

A probe is one simulation of the workload at an arrival-rate scale s (every arrival time divided
by s, experiments.sweep.scale_arrivals) with the SLO set; it passes when summary.json's
`slo.holds` is true: every aggregate SLO holds, the per-request SLOs hold at their attainment
target, and the load state is stable (experiments/slo.py). Passing is assumed monotone: a fleet
that passes at a rate passes at any lower one, and more instances of it pass where fewer do.

- `max_rate` (a): the largest passing scale. Bracketing from s = 1: double while passing (or
  halve while failing) until a passing `lo` and a failing `hi = 2 lo` are found, then bisect
  until `hi - lo <= tolerance * lo`. The answer is `lo`, the largest scale seen to pass, so the
  true capacity lies in [lo, hi): within `tolerance` (relative) above the answer. A fleet that
  fails even at scale 2^-MAX_STEPS, or passes at 2^MAX_STEPS, is reported as such (no bracket).
- `min_instances` (b): the smallest instance count (a homogeneous fleet: `instances` of the
  config's one kind) that passes at a target rate, by doubling from 1 then bisecting the
  integers in (last failing, first passing].
- cost (c): the fleet's price per hour is the sum over instances of tp * pp * ep GPUs at the
  hardware's cost per GPU-hour: `cost_per_hour` in its hardware YAML, or given by the caller
  (`--gpu-cost NAME=USD`; the shipped catalogue has no prices, prices change too fast to ship).
  Cost per 1000 served requests = price per hour / (3600 * goodput requests/s at the answer) * 1000.

The offered rate of a scale is s times the workload's base rate: (requests arriving on their
own - 1) / (last - first of their arrival times), the rate of its arrivals as given (session
follow-ups come on top, driven by the clients). Probes of one search run one after another (each
depends on the last); searches of different clusters run in parallel as Ray tasks.
"""
from __future__ import annotations

import pickle

from fleetsim.cluster.errors import InputError

MAX_STEPS = 20
MAX_INSTANCES = 4096


def base_rate(workload) -> float:
    """Requests per second of the workload's own arrivals (module doc)."""
    arrivals = workload.arrival.tolist()      # of the requests arriving on their own, in order
    if len(arrivals) < 2 or arrivals[-1] == arrivals[0]:
        raise InputError(f"{workload.source}: capacity needs at least two requests arriving at different times")
    return (len(arrivals) - 1) / ((arrivals[-1] - arrivals[0]) / 1e9)


class Prober:
    """Runs probes of one cluster config on one (pickled) workload, remembering each result."""

    def __init__(self, config, workload_blob: bytes, slo: dict, options: dict):
        self.config, self.blob, self.slo, self.options = config, workload_blob, slo, options
        self.rate = base_rate(pickle.loads(workload_blob))
        self.probes: list[dict] = []

    def __call__(self, scale: float, instances: int | None = None) -> bool:
        from fleetsim.cluster.experiments.sweep import scale_arrivals
        from fleetsim.cluster.simulation import simulate
        workload = scale_arrivals(pickle.loads(self.blob), scale)
        opts = {**self.options, "slo": self.slo}
        if instances is not None:
            opts["instances"] = instances
        s = simulate(self.config, workload, **opts).summary
        b = s["slo"]
        self.probes.append({
            "scale": scale, "instances": instances if instances is not None else len(s["instances"]),
            "offered_rps": scale * self.rate, "holds": b["holds"], "load_state": b["load"]["state"],
            "attainment": b["attainment"]["all"], "goodput_rps": b["goodput"]["requests_per_s"],
            "throughput_rps": s["throughput"]["requests_per_s"],
            **{f"{m}_p99_ms": s[f"{m}_ms"]["p99"] for m in ("ttft", "tpot", "e2e")}})
        return b["holds"]


def max_rate(probe, tolerance: float, start: float = 1.0) -> dict:
    """(a): the largest passing scale by bracketing then bisection (module doc)."""
    if not 0 < tolerance < 1:
        raise InputError(f"--tolerance must be in (0, 1), got {tolerance}")
    lo = hi = None
    s = start
    if probe(s):
        lo = s
        for _ in range(MAX_STEPS):
            s *= 2
            if not probe(s):
                hi = s
                break
            lo = s
        else:
            return {"scale": lo, "bracket": [lo, None], "found": "passes at every scale tried"}
    else:
        hi = s
        for _ in range(MAX_STEPS):
            s /= 2
            if probe(s):
                lo = s
                break
            hi = s
        else:
            return {"scale": None, "bracket": [None, hi], "found": "fails at every scale tried"}
    while hi - lo > tolerance * lo:
        mid = (lo + hi) / 2
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return {"scale": lo, "bracket": [lo, hi], "found": "bracketed"}


def min_instances(probe, scale: float) -> dict:
    """(b): the smallest instance count passing at `scale` (module doc)."""
    n, last_fail = 1, 0
    while not probe(scale, n):
        last_fail = n
        n *= 2
        if n > MAX_INSTANCES:
            return {"instances": None, "found": f"fails with {last_fail} instances"}
    hi = n
    while hi - last_fail > 1:
        mid = (last_fail + hi) // 2
        if probe(scale, mid):
            hi = mid
        else:
            last_fail = mid
    return {"instances": hi, "found": "bracketed"}


def instance_price(spec, gpu_cost: dict) -> tuple[int, float | None]:
    """(GPUs, price per hour or None when its hardware has no price) of one instance spec."""
    from fleetsim.costmodel.catalogue import resolve_hardware_doc
    n = spec.tp * spec.pp * spec.ep
    cost = gpu_cost.get(spec.hardware, resolve_hardware_doc(spec.hardware).get("cost_per_hour"))
    return n, None if cost is None else n * float(cost)


def gpus_and_price(config, gpu_cost: dict) -> tuple[int, float | None]:
    """(GPUs, price per hour or None when some hardware has no price) of a cluster config."""
    gpus, price = 0, 0.0
    for spec in config.instances:
        n, cost = instance_price(spec, gpu_cost)
        gpus += n
        price = None if cost is None or price is None else price + cost
    return gpus, price


def search(label: str, config, workload_blob: bytes, slo: dict, options: dict, tolerance: float,
           target_rate: float | None, gpu_cost: dict, files_snapshot: dict | None = None) -> dict:
    """One cluster's search: (a) without `target_rate`, else (b); with its cost (c)."""
    if files_snapshot:
        from fleetsim.costmodel import files
        files.install(files_snapshot)
    probe = Prober(config, workload_blob, slo, options)
    out = {"label": label, "slo": slo, "base_rate_rps": probe.rate}
    if target_rate is None:
        found = max_rate(probe, tolerance)
        best = found["scale"]
        out.update(mode="max_rate", tolerance=tolerance, **found)
        at = [p for p in probe.probes if p["scale"] == best and p["holds"]]
    else:
        scale = target_rate / probe.rate
        found = min_instances(probe, scale)
        out.update(mode="min_instances", target_rps=target_rate, scale=scale, **found)
        at = [p for p in probe.probes if p["instances"] == found["instances"] and p["holds"]]
    result = at[-1] if at else None
    instances = result["instances"] if result else None
    sized = config if instances is None else config.with_fleet_overrides(instances=instances) \
        if len(set(config.instances)) == 1 else config
    gpus, price = gpus_and_price(sized, gpu_cost)
    out.update(result=result, gpus=gpus, price_per_hour=price,
               cost_per_1k_requests=(price / (3600 * result["goodput_rps"]) * 1000
                                     if price is not None and result and result["goodput_rps"] > 0 else None),
               probes=probe.probes)
    return out


def run_capacity(clusters: list, workload_path: str, slo: dict, options: dict, tolerance: float,
                 target_rate: float | None, gpu_cost: dict, backend: str, ray_address: str | None = None,
                 num_requests: int | None = None, fmt: str | None = None) -> list[dict]:
    """Search each (label, ClusterConfig) of `clusters`; results in the order given. The driver
    parses the workload and the cost-model files once; on Ray each cluster's search is one task
    and gets them from the object store."""
    from fleetsim.cluster.fleet import load_cost_model
    from fleetsim.cluster.workloads import load_workload
    from fleetsim.costmodel import files

    if target_rate is not None and not target_rate > 0:
        raise InputError(f"--target-rate must be a number > 0, got {target_rate}")
    blob = pickle.dumps(load_workload(workload_path, num_requests, 1.0, fmt), protocol=pickle.HIGHEST_PROTOCOL)
    for _, config in clusters:
        for spec in dict.fromkeys(config.instances):
            load_cost_model(spec, config.perf_root, config.models_root)
    args = [(label, config, blob, slo, options, tolerance, target_rate, gpu_cost) for label, config in clusters]
    if backend == "local":
        return [search(*a) for a in args]
    from fleetsim.cluster.backends.ray_backend import start_ray
    ray, _ = start_ray(ray_address)
    task = ray.remote(num_cpus=1)(search)
    blob_ref, files_ref = ray.put(blob), ray.put(files.snapshot())
    return ray.get([task.remote(label, config, blob_ref, slo, options, tolerance, target_rate, gpu_cost, files_ref)
                    for label, config, *_ in args])


TABLE = (("cluster", "label", "{}"), ("mode", "mode", "{}"), ("scale", "scale", "{:.4g}"),
         ("offered req/s", "offered_rps", "{:.4g}"), ("goodput req/s", "goodput_rps", "{:.4g}"),
         ("TTFT p99 ms", "ttft_p99_ms", "{:.1f}"), ("TPOT p99 ms", "tpot_p99_ms", "{:.2f}"),
         ("instances", "instances", "{}"), ("GPUs", "gpus", "{}"), ("$/h", "price_per_hour", "{:.2f}"),
         ("$/1k req", "cost_per_1k_requests", "{:.4f}"))


def table_rows(results: list[dict]) -> tuple[list, list]:
    """(header, rows of raw values): one row per cluster, at its answer."""
    rows = []
    for r in results:
        at = r["result"] or {}
        merged = {**at, **{k: v for k, v in r.items() if k != "result"}}
        merged["instances"] = at.get("instances")
        rows.append([merged.get(key) for _, key, _ in TABLE])
    return [h for h, _, _ in TABLE], rows


def format_table(results: list[dict]) -> str:
    header, rows = table_rows(results)
    cells = [[("n/a" if v is None else fmt.format(v)) for v, (_, _, fmt) in zip(row, TABLE)] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def save(out_dir: str, results: list[dict]) -> None:
    """capacity.json (every probe of every search) and capacity.csv (the table), atomically."""
    import csv
    import io
    import json
    import os
    from fleetsim.cluster.experiments.sweep import cell, write_atomic
    os.makedirs(out_dir, exist_ok=True)
    write_atomic(os.path.join(out_dir, "capacity.json"), json.dumps(results, indent=1) + "\n")
    header, rows = table_rows(results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([key for _, key, _ in TABLE])
    w.writerows([[cell(v) for v in row] for row in rows])
    write_atomic(os.path.join(out_dir, "capacity.csv"), buf.getvalue())

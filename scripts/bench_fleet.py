"""Fleet benchmark: N instances of Llama-3.1-8B (RTXPRO6000 profile) under a Poisson workload at
~70 % of fleet capacity (one instance serves ~22.9 req/s of 512±50 % in / 128±50 % out at
max_num_seqs 128, max_num_batched_tokens 2048; measured with this simulator), local vs ray.

    python scripts/bench_fleet.py                       # the full grid (long)
    python scripts/bench_fleet.py --instances 8 64 --backends local --policies round_robin

Each configuration runs in a fresh process; prints one JSON line per configuration: wall time
(whole; Ray start-up, i.e. Ray plus its actor worker processes up and answering; and the run
itself: loading the instances into the actors, routing, simulation, output), simulated
requests per wall second of the run, peak RSS of the driver and of each Ray actor.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts", "bench"))
from scenarios import RTX_CAPACITY  # noqa: E402  (one measured capacity for both benchmarks)


def one(n: int, backend: str, policy: str, requests: int, actors: int, seed: int) -> dict:
    sys.path.insert(0, REPO)
    import dataclasses
    from fleetsim.cluster.backends.ray_backend import peak_rss_kb
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.fleet import run_fleet
    from fleetsim.cluster.workloads.synthetic import synthetic_workload

    cfg = load_cluster_config(os.path.join(REPO, "configs", "clusters", "rtxpro6000-llama8b.yaml"))
    cfg = cfg.with_fleet_overrides(instances=n, policy=policy, sync_interval_ms=50)
    cfg = dataclasses.replace(cfg, seed=seed)
    wl = synthetic_workload(requests, 0.7 * RTX_CAPACITY * n, 512, 128, seed=seed, length_spread=0.5)
    options = {"actors": actors} if backend == "ray" else {}
    actor_rss = []      # the router actor's, then each instance actor's
    if backend == "ray":
        import fleetsim.cluster.backends.ray_router as rr
        orig_close = rr.RayRun.close

        def close(self):
            actor_rss.extend(self.call("peak_rss_kb"))
            orig_close(self)
        rr.RayRun.close = close
    t0 = time.perf_counter()
    if backend == "ray":
        from fleetsim.cluster.backends.ray_backend import start_ray
        from fleetsim.cluster.backends.ray_router import warm_router
        warm_router(start_ray()[0], actors)     # Ray and its worker processes, up and answering
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        summary = run_fleet(cfg, wl, out, backend, **options)
    t2 = time.perf_counter()
    wall, ray_start, sim_wall = t2 - t0, t1 - t0, t2 - t1
    return {"instances": n, "backend": backend + (f"({actors})" if backend == "ray" else ""), "policy": policy,
            "requests": requests, "wall_s": round(wall, 2), "ray_start_s": round(ray_start, 2),
            "run_wall_s": round(sim_wall, 2), "sim_requests_per_wall_s": round(requests / sim_wall),
            "simulated_s": round(summary["simulated_s"], 2), "ttft_p50_ms": round(summary["ttft_ms"]["p50"], 1),
            "driver_peak_rss_mb": round(peak_rss_kb() / 1024),
            "router_peak_rss_mb": round(actor_rss[0] / 1024) if actor_rss else None,
            "actor_peak_rss_mb": [round(k / 1024) for k in actor_rss[1:]]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, nargs="+", default=[8, 64, 256, 1024])
    ap.add_argument("--backends", nargs="+", default=["local", "ray"])
    ap.add_argument("--policies", nargs="+", default=["round_robin", "least_loaded"])
    ap.add_argument("--requests-per-instance", type=int, default=100)
    ap.add_argument("--min-requests", type=int, default=10_000)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", nargs=3, metavar=("N", "BACKEND", "POLICY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        n = int(args.one[0])
        requests = max(args.min_requests, args.requests_per_instance * n)
        print(json.dumps(one(n, args.one[1], args.one[2], requests, args.actors, args.seed)))
        return
    for n in args.instances:
        for policy in args.policies:
            for backend in args.backends:
                cmd = [sys.executable, __file__, "--one", str(n), backend, policy, "--actors", str(args.actors),
                       "--requests-per-instance", str(args.requests_per_instance),
                       "--min-requests", str(args.min_requests), "--seed", str(args.seed)]
                res = subprocess.run(cmd, capture_output=True, text=True)
                line = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
                print(line if res.returncode == 0 else json.dumps({"instances": n, "backend": backend, "policy": policy,
                                                                   "error": res.stderr.strip().splitlines()[-1:]}),
                      flush=True)


if __name__ == "__main__":
    main()

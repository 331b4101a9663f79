"""`fleetsim capacity`: the largest rate meeting the SLOs, or the smallest fleet for a target rate,
for one or several clusters, with cost per served request (experiments/capacity.py)."""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("capacity", help="largest sustainable rate under SLOs, or smallest fleet for a target rate")
    p.add_argument("--cluster", action="append", required=True,
                   help="cluster config (repeat to compare clusters: their searches run in parallel on Ray)")
    p.add_argument("--labels", help="comma-separated names of the clusters, in order (default: file names)")
    p.add_argument("--workload", required=True, help="workload file (any format fleetsim run reads)")
    p.add_argument("--format", help="read --workload as this format instead of detecting it")
    p.add_argument("--num-requests", type=int, help="use only the first N requests")
    p.add_argument("--slo", required=True, help="SLO set, e.g. ttft_p99_ms=2000,tpot_p99_ms=100 (docs/experiments.md)")
    p.add_argument("--instances", type=int, help="(a) at this instance count (default: the config's)")
    p.add_argument("--target-rate", type=float, help="(b) smallest instance count sustaining this many req/s")
    p.add_argument("--tolerance", type=float, default=0.02, help="relative tolerance of the rate search (default 0.02)")
    p.add_argument("--gpu-cost", action="append", default=[], metavar="HARDWARE=USD",
                   help="price per GPU-hour of a hardware name (else the hardware YAML's cost_per_hour)")
    p.add_argument("--out", help="write capacity.json (every probe) and capacity.csv here")
    p.add_argument("--backend", choices=("local", "ray"),
                   help="ray: one task per cluster (default with several clusters); local: one by one")
    p.add_argument("--ray-address", help="join an existing Ray cluster")
    p.add_argument("--plots", action="store_true",
                   help="with --out: a latency-versus-rate PNG per cluster, SLO lines and the answer marked (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no table on stdout")
    p.set_defaults(handler=cmd_capacity)


def _gpu_cost(items: list[str]) -> dict:
    from fleetsim.cluster.errors import InputError
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            price = float(value)
        except ValueError:
            price = -1.0
        if not sep or not name or not price >= 0:
            raise InputError(f"--gpu-cost {item!r}: expected HARDWARE=USD_PER_GPU_HOUR, e.g. H100-SXM-80GB=2.5")
        out[name] = price
    return out


def cmd_capacity(args) -> int:
    import os
    from fleetsim.cluster.errors import InputError
    from fleetsim.cluster.experiments import capacity
    from fleetsim.cluster.experiments.slo import parse_slo
    from fleetsim.cluster.simulation import RunOptions, resolve_config

    if args.instances is not None and args.target_rate is not None:
        raise InputError("--instances and --target-rate exclude each other: (a) fixes the fleet, (b) searches it")
    labels = args.labels.split(",") if args.labels else [os.path.splitext(os.path.basename(c))[0] for c in args.cluster]
    if len(labels) != len(args.cluster):
        raise InputError(f"--labels: {len(labels)} names for {len(args.cluster)} clusters")
    if args.ray_address and args.backend == "local":
        raise InputError("--ray-address needs --backend ray")
    slo = parse_slo(args.slo)
    if args.plots:
        from fleetsim.cluster.experiments.plots import need_matplotlib
        if not args.out:
            raise InputError("--plots needs --out (the figures are written there)")
        need_matplotlib()
    gpu_cost = _gpu_cost(args.gpu_cost)
    opts = RunOptions(instances=args.instances)
    clusters = [(label, resolve_config(path, opts)) for label, path in zip(labels, args.cluster)]
    backend = args.backend or ("ray" if len(clusters) > 1 or args.ray_address else "local")
    results = capacity.run_capacity(clusters, args.workload, slo, {}, args.tolerance, args.target_rate, gpu_cost,
                                    backend, args.ray_address, args.num_requests, args.format)
    if args.out:
        capacity.save(args.out, results)
    if args.plots:
        from fleetsim.cluster.experiments.plots import write_capacity_plots
        write_capacity_plots(args.out, results)
    if not args.quiet:
        print(capacity.format_table(results))
    return 0 if all(r["result"] for r in results) else 1

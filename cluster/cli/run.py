"""`fleetsim run`: simulate one cluster config on one workload."""
from __future__ import annotations


from fleetsim.cluster.cli.common import config_from_args, engine_flags
from fleetsim.cluster.errors import InputError


def register(sub) -> None:
    run = sub.add_parser("run", help="simulate one cluster config on one workload")
    run.add_argument("--cluster", required=True, help="fleetsim YAML or LLMServingSim cluster JSON")
    run.add_argument("--workload", required=True,
                     help="LLMServingSim workload JSONL, Azure trace CSV or Mooncake trace JSONL (format "
                          "detected from the content)")
    run.add_argument("--format", help="read --workload as this format instead of detecting it "
                                      "(llmservingsim, azure, mooncake)")
    run.add_argument("--time-scale", type=float, default=1.0,
                     help="multiply trace inter-arrival times (Azure/Mooncake; < 1 = more load)")
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--num-requests", type=int, help="use only the first N requests")
    run.add_argument("--perf-root", help="folder of perf bundles <hardware>/<org>/<name>/<variant>/tp<N>/")
    run.add_argument("--models-root", help="folder of HF configs <org>/<name>.json, searched first")
    run.add_argument("--seed", type=int, help="run seed (overrides the config's)")
    run.add_argument("--quiet", action="store_true", help="no progress bar, no summary table")
    run.add_argument("--no-fast-forward", action="store_true",
                     help="step every iteration one by one (same results, slower; for checking)")
    f = run.add_argument_group("fleet")
    f.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: all instances in this process (default); ray: instances in Ray actors")
    f.add_argument("--instances", type=int, help="number of (identical) instances")
    f.add_argument("--router", help="routing policy name or dotted path")
    f.add_argument("--sync-interval-ms", type=float, help="router signal staleness Δ (0 = exact)")
    f.add_argument("--actors", type=int, help="ray: number of actors (default: Ray's CPUs)")
    f.add_argument("--instances-per-actor", type=int, help="ray: instances packed per actor")
    f.add_argument("--ray-address", help="ray: join an existing cluster (e.g. auto) instead of starting one")
    engine_flags(run)
    run.set_defaults(handler=cmd_run)


def cmd_run(args) -> int:
    import dataclasses
    from fleetsim.cluster.fleet import run_fleet
    from fleetsim.cluster.report import summary_table
    from fleetsim.cluster.workload import load_workload

    config = config_from_args(args)
    if args.seed is not None:
        if args.seed < 0:
            raise InputError("--seed must be >= 0")
        config = dataclasses.replace(config, seed=args.seed)
    config = config.with_fleet_overrides(instances=args.instances, policy=args.router,
                                         sync_interval_ms=args.sync_interval_ms)
    workload = load_workload(args.workload, args.num_requests, args.time_scale, args.format)
    options = {k: v for k, v in (("actors", args.actors), ("instances_per_actor", args.instances_per_actor),
                                 ("ray_address", args.ray_address)) if v is not None}
    if options and args.backend != "ray":
        raise InputError("--actors, --instances-per-actor and --ray-address need --backend ray")
    summary = run_fleet(config, workload, args.out, args.backend, args.perf_root, args.models_root,
                        progress=not args.quiet, fast_forward=not args.no_fast_forward, **options)
    if not args.quiet:
        print(summary_table(summary))
    return 0

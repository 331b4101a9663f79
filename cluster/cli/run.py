"""`fleetsim run`: simulate one cluster config on one workload."""
from __future__ import annotations


from fleetsim.cluster.cli.common import engine_flags, workload_flags
from fleetsim.cluster.requests_csv import DETAILS


def register(sub) -> None:
    run = sub.add_parser("run", help="simulate one cluster config on one workload")
    run.add_argument("--cluster", required=True, help="fleetsim YAML or LLMServingSim cluster JSON")
    run.add_argument("--workload", required=True,
                     help="a trace (fleetsim/LLMServingSim JSONL, Mooncake JSONL, Azure, Vidur or BurstGPT CSV; "
                          "format detected from the content), a workload YAML, or synth:KEY=VALUE,...")
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--requests-detail", choices=DETAILS, default="full",
                     help="requests.csv: full (with the ITL list, default), no-itl (ITL cells empty), "
                          "none (no requests.csv)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace a previous run's results in --out (removed before the run starts)")
    run.add_argument("--check-invariants", choices=("basic", "full"), default="basic",
                     help="basic: cheap checks on every run (default); full: also the KV block manager after "
                          "every window (a violation exits 3)")
    run.add_argument("--memory-limit", type=float, metavar="GIB",
                     help="refuse a run whose estimated memory (engines, KV block arrays, request records) "
                          "exceeds GIB (default: the memory available on this machine)")
    run.add_argument("--perf-root", help="folder of perf bundles <hardware>/<org>/<name>/<variant>/tp<N>/")
    run.add_argument("--models-root", help="folder of HF configs <org>/<name>.json, searched first")
    run.add_argument("--seed", type=int, help="run seed (overrides the config's)")
    run.add_argument("--quiet", action="store_true", help="no progress bars (loading, running), no summary table; the bars are also off when stderr is not a terminal")
    run.add_argument("--no-fast-forward", action="store_true",
                     help="step every iteration one by one (same results, slower; for checking)")
    run.add_argument("--plots", action="store_true",
                     help="also write PNG figures into --out: latency_cdf.png, timeseries.png, load_balance.png "
                          "(needs matplotlib: pip install 'fleetsim[plots]')")
    run.add_argument("--trace", action="store_true", default=None,
                     help="write trace.json: each traced instance's engine steps (Chrome/Perfetto format; local backend)")
    run.add_argument("--trace-instances", help="with --trace: instance indices to trace, e.g. 0,3 (default: all)")
    run.add_argument("--trace-window", help="with --trace: START:END in simulated seconds, e.g. 10:12 (default: all)")
    run.add_argument("--slo", help="SLOs reported in summary.json's slo block, e.g. ttft_p99_ms=2000,tpot_p99_ms=100,"
                                    "ttft_ms=1000 (overrides the config's slo:; see docs/experiments.md)")
    f = run.add_argument_group("fleet")
    f.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: all instances in this process (default); ray: instances in Ray actors")
    f.add_argument("--instances", type=int, help="number of (identical) instances")
    f.add_argument("--router", help="routing policy name or dotted path")
    f.add_argument("--sync-interval-ms", type=float, help="router signal staleness Δ (0 = exact)")
    f.add_argument("--admission", action="append", metavar="STAGE",
                   help="admission control at the router, replacing the config's router.admission: none, or "
                        "token_bucket:rate=R,burst=B | queue_cap:max_queued=K[,scope=fleet] | slo:ttft_ms=MS; "
                        "repeat for stages in order (docs/topologies.md)")
    f.add_argument("--actors", type=int, help="ray: number of actors (default: Ray's CPUs)")
    f.add_argument("--instances-per-actor", type=int, help="ray: instances packed per actor")
    f.add_argument("--ray-address", help="ray: join an existing cluster (e.g. auto) instead of starting one")
    workload_flags(run)
    run.add_argument("--clip-to-model", action="store_true", default=None,
                     help="cut requests longer than the instances accept (default: such a request is an error)")
    c = run.add_argument_group("benchmark clients (vllm bench serve's flags)")
    c.add_argument("--max-concurrency", type=int,
                   help="closed loop: at most N requests in flight (fleet-wide); the next is sent when one ends")
    c.add_argument("--request-rate", type=float, help="re-time arrivals at R req/s (inf: all at once)")
    c.add_argument("--burstiness", type=float,
                   help="Gamma shape of the re-timed gaps (default 1 = Poisson, < 1 burstier, inf = constant)")
    c.add_argument("--warmup-requests", type=int,
                   help="simulate the first K requests sent but leave them out of the metrics")
    engine_flags(run)
    run.set_defaults(handler=cmd_run)


def options_from_args(args):
    """The run's options from the parsed flags (each RunOptions field is the flag's name)."""
    import dataclasses
    from fleetsim.cluster.simulation import RunOptions

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunOptions) if hasattr(args, f.name)}
    given.update(fast_forward=not args.no_fast_forward, progress=not args.quiet,
                 enable_prefix_caching=False if args.no_prefix_caching else None,
                 enable_chunked_prefill=False if args.no_chunked_prefill else None)
    return RunOptions(**given)


def cmd_run(args) -> int:
    import dataclasses
    from fleetsim.cluster.report import summary_table
    from fleetsim.cluster.simulation import simulate

    options = dataclasses.asdict(options_from_args(args))
    result = simulate(args.cluster, args.workload, out=args.out, overwrite=args.overwrite, **options)
    if not args.quiet:
        print(summary_table({**result.summary, "wall_s": result.wall_s}))
    return 0

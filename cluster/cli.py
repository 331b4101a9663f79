"""`fleetsim` command line: run, validate (and fit the host overhead)."""
from __future__ import annotations

import argparse
import json
import sys

from fleetsim.cluster.config import load_cluster_config
from fleetsim.cluster.errors import InputError
from fleetsim.costmodel import CostModelError


def _engine_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("vLLM engine overrides (all instances)")
    g.add_argument("--max-num-seqs", type=int)
    g.add_argument("--max-num-batched-tokens", type=int)
    g.add_argument("--block-size", type=int)
    g.add_argument("--num-gpu-blocks", type=int)
    g.add_argument("--gpu-memory-utilization", type=float)
    g.add_argument("--long-prefill-token-threshold", type=int)
    g.add_argument("--max-model-len", type=int)
    g.add_argument("--no-prefix-caching", action="store_true")
    g.add_argument("--no-chunked-prefill", action="store_true")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleetsim", description="Simulate LLM serving fleets in simulated time.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate one cluster config on one workload")
    run.add_argument("--cluster", required=True, help="fleetsim YAML or LLMServingSim cluster JSON")
    run.add_argument("--workload", required=True,
                     help="LLMServingSim workload JSONL, Azure trace CSV or Mooncake trace JSONL")
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
    _engine_flags(run)
    val = sub.add_parser("validate", help="compare a simulated run with a real vLLM run")
    val.add_argument("--real", required=True, help="real run directory (requests.jsonl + meta.json)")
    val.add_argument("--sim", required=True, help="fleetsim --out directory (with --fit-overhead: where the "
                                                   "best-fitting run is written)")
    val.add_argument("--json", action="store_true", help="print JSON instead of the table")
    fit = val.add_argument_group("fitting the per-step host overhead (re-simulates the workload)")
    fit.add_argument("--fit-overhead", action="store_true",
                     help="fit overhead {step_us, per_seq_us} to the real run; needs --cluster and --workload")
    fit.add_argument("--cluster", help="cluster config of the simulated run")
    fit.add_argument("--workload", help="workload of the simulated run")
    fit.add_argument("--num-requests", type=int)
    fit.add_argument("--perf-root")
    fit.add_argument("--models-root")
    _engine_flags(val)
    return p


def config_from_args(args):
    """The cluster config with the command line's engine overrides applied and checked."""
    config = load_cluster_config(args.cluster)
    config = config.with_engine_overrides(
        max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
        block_size=args.block_size, num_gpu_blocks=args.num_gpu_blocks,
        gpu_memory_utilization=args.gpu_memory_utilization,
        long_prefill_token_threshold=args.long_prefill_token_threshold, max_model_len=args.max_model_len,
        enable_prefix_caching=False if args.no_prefix_caching else None,
        enable_chunked_prefill=False if args.no_chunked_prefill else None)
    for spec in config.instances:
        try:
            spec.engine.validate("command line")
        except ValueError as exc:
            raise InputError(str(exc)) from None
    return config


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
    workload = load_workload(args.workload, args.num_requests, args.time_scale)
    options = {k: v for k, v in (("actors", args.actors), ("instances_per_actor", args.instances_per_actor),
                                 ("ray_address", args.ray_address)) if v is not None}
    if options and args.backend != "ray":
        raise InputError("--actors, --instances-per-actor and --ray-address need --backend ray")
    summary = run_fleet(config, workload, args.out, args.backend, args.perf_root, args.models_root,
                        progress=not args.quiet, fast_forward=not args.no_fast_forward, **options)
    if not args.quiet:
        print(summary_table(summary))
    return 0


def cmd_validate(args) -> int:
    from fleetsim.cluster.validate import compare, format_table, load_real, load_sim
    if args.fit_overhead:
        return cmd_fit_overhead(args)
    result = compare(load_real(args.real), load_sim(args.sim))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result), end="")
    return 0


def cmd_fit_overhead(args) -> int:
    from fleetsim.cluster.fleet import run_fleet
    from fleetsim.cluster.overhead_fit import fit_overhead, with_overhead
    from fleetsim.cluster.validate import format_table, load_real
    from fleetsim.cluster.workload import load_workload

    if not args.cluster or not args.workload:
        raise InputError("--fit-overhead needs --cluster and --workload (the simulated run to fit)")
    config = config_from_args(args)
    real = load_real(args.real, args.num_requests)
    load = lambda: load_workload(args.workload, args.num_requests)  # noqa: E731
    step_us, per_seq_us, result, base = fit_overhead(config, load, real, args.perf_root, args.models_root)
    run_fleet(with_overhead(config, step_us, per_seq_us), load(), args.sim, "local", args.perf_root, args.models_root)
    if args.json:
        print(json.dumps({"overhead": {"step_us": step_us, "per_seq_us": per_seq_us}, "fitted": result,
                          "no_overhead": base}, indent=2))
    else:
        print(f"fitted overhead: step_us {step_us}, per_seq_us {per_seq_us} "
              f"(add `overhead: {{step_us: {step_us}, per_seq_us: {per_seq_us}}}` to the cluster config)")
        print("without overhead:")
        print(format_table(base), end="")
        print("with the fitted overhead:")
        print(format_table(result), end="")
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return {"run": cmd_run, "validate": cmd_validate}[args.command](args)
    except (InputError, CostModelError) as exc:
        print(f"fleetsim: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:             # unwritable --out, disk full, ...: the file and the reason
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"fleetsim: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fleetsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

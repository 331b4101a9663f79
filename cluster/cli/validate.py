"""`fleetsim validate`: compare a simulated run with a real vLLM run (and fit the host overhead)."""
from __future__ import annotations

import json

from fleetsim.cluster.cli.common import config_from_args, engine_flags, load_workload_from_args, workload_flags
from fleetsim.cluster.errors import InputError


def register(sub) -> None:
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
    fit.add_argument("--perf-root")
    fit.add_argument("--models-root")
    workload_flags(val)
    engine_flags(val)
    val.set_defaults(handler=cmd_validate)


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

    if not args.cluster or not args.workload:
        raise InputError("--fit-overhead needs --cluster and --workload (the simulated run to fit)")
    config = config_from_args(args)
    real = load_real(args.real, args.num_requests)
    load = lambda: load_workload_from_args(args)  # noqa: E731
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

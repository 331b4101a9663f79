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
    val.add_argument("--match", choices=("all", "prefix"), default="all",
                     help="all: the simulation holds every request of the real run (default); prefix: its first N")
    val.add_argument("--sim-from-arrival", action="store_true",
                     help="measure the simulated times from the client send time whatever the real run's anchor "
                          "(LLMServingSim's own comparison; default: like with like, cluster/validate.py)")
    fit = val.add_argument_group("fitting the per-step host overhead and the front end (re-simulates the workload)")
    fit.add_argument("--fit-overhead", action="store_true",
                     help="fit overhead {step_us, per_seq_us} and, for a client-anchored real run, frontend "
                          "{request_us, per_prompt_token_us} to the real run; needs --cluster and --workload")
    fit.add_argument("--cluster", help="cluster config of the simulated run")
    fit.add_argument("--workload", help="workload of the simulated run")
    fit.add_argument("--perf-root")
    fit.add_argument("--models-root")
    workload_flags(val)
    engine_flags(val)
    val.set_defaults(handler=cmd_validate)


def cmd_validate(args) -> int:
    from fleetsim.cluster.validate import anchor_line, compare, format_table, load_real, load_sim, same_workload
    if args.fit_overhead:
        return cmd_fit_overhead(args)
    real = load_real(args.real)
    sim_anchor = "client" if args.sim_from_arrival else real["anchor"]
    sim = load_sim(args.sim, sim_anchor)
    n = same_workload(real, sim, args.match)
    if n < len(real["lengths"]):
        real = load_real(args.real, n)
    result = compare(real, sim)
    if args.json:
        print(json.dumps({**result, "anchor": real["anchor"], "sim_anchor": sim_anchor}, indent=2))
    else:
        print(anchor_line(real["anchor"], sim_anchor) + format_table(result), end="")
    return 0


def cmd_fit_overhead(args) -> int:
    from fleetsim.cluster.fleet import run_fleet
    from fleetsim.cluster.overhead_fit import fit_overhead, with_costs
    from fleetsim.cluster.validate import anchor_line, format_table, load_real

    if not args.cluster or not args.workload:
        raise InputError("--fit-overhead needs --cluster and --workload (the simulated run to fit)")
    config = config_from_args(args)
    real = load_real(args.real, args.num_requests)
    load = lambda: load_workload_from_args(args)  # noqa: E731
    costs, result, base, fitted_frontend = fit_overhead(config, load, real, args.perf_root, args.models_root)
    run_fleet(with_costs(config, costs), load(), args.sim, "local", args.perf_root, args.models_root)
    overhead = {"step_us": costs.step_us, "per_seq_us": costs.per_seq_us}
    frontend = {"request_us": costs.request_us, "per_prompt_token_us": costs.per_prompt_token_us}
    if args.json:
        print(json.dumps({"anchor": real["anchor"], "overhead": overhead, "frontend": frontend,
                          "frontend_fitted": fitted_frontend, "fitted": result, "no_overhead": base}, indent=2))
    else:
        print(anchor_line(real["anchor"], real["anchor"]), end="")
        print(f"fitted overhead: step_us {costs.step_us}, per_seq_us {costs.per_seq_us} "
              f"(add `overhead: {{step_us: {costs.step_us}, per_seq_us: {costs.per_seq_us}}}` to the cluster config)")
        if fitted_frontend:
            print(f"fitted frontend: request_us {costs.request_us}, per_prompt_token_us {costs.per_prompt_token_us} "
                  f"(add `frontend: {{request_us: {costs.request_us}, per_prompt_token_us: "
                  f"{costs.per_prompt_token_us}}}` to the cluster config)")
        else:
            print("frontend: not fitted (an engine-anchored real run does not see it), kept at "
                  f"request_us {costs.request_us}, per_prompt_token_us {costs.per_prompt_token_us}")
        print("before the fit (no overhead; front end as above when not fitted, else none):")
        print(format_table(base), end="")
        print("with the fitted values:")
        print(format_table(result), end="")
    return 0

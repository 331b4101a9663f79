"""`fleetsim workload stats|convert|synth`: look at, convert and generate workloads.

- `stats FILE` prints what `cluster/workloads/stats.py` computes (`--json` for the numbers);
- `convert IN --to jsonl OUT` writes any readable workload (window, --num-requests and
  --time-scale applied) as fleetsim's JSONL;
- `synth SPEC --out FILE` writes a synthetic workload (`synth:KEY=VALUE,...`, bare
  `KEY=VALUE,...`, or a workload YAML) as fleetsim's JSONL.
"""
from __future__ import annotations

import json

from fleetsim.cluster.cli.common import load_workload_from_args, workload_flags
from fleetsim.cluster.errors import InputError


def register(sub) -> None:
    wl = sub.add_parser("workload", help="inspect, convert or generate workloads")
    cmds = wl.add_subparsers(dest="workload_command", required=True)
    stats = cmds.add_parser("stats", help="request count, duration, rate, burstiness, lengths, prefix sharing")
    stats.add_argument("workload", metavar="FILE", help="a workload file, workload YAML or synth:...")
    stats.add_argument("--block-size", type=int, default=16, help="block size of the prefix-sharing ratio (16)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of the table")
    workload_flags(stats)
    stats.set_defaults(handler=cmd_stats)
    conv = cmds.add_parser("convert", help="write a workload as fleetsim JSONL")
    conv.add_argument("workload", metavar="IN")
    conv.add_argument("--to", required=True, help="output format (jsonl)")
    conv.add_argument("out", metavar="OUT")
    workload_flags(conv)
    conv.set_defaults(handler=cmd_convert)
    syn = cmds.add_parser("synth", help="generate a synthetic workload as fleetsim JSONL")
    syn.add_argument("spec", metavar="SPEC", help="synth:KEY=VALUE,... (or without synth:) or a workload YAML")
    syn.add_argument("--out", required=True)
    syn.set_defaults(handler=cmd_synth)


def cmd_stats(args) -> int:
    from fleetsim.cluster.workloads.stats import format_stats, workload_stats
    if args.block_size < 1:
        raise InputError(f"--block-size must be >= 1, got {args.block_size}")
    s = workload_stats(load_workload_from_args(args), args.block_size)
    print(json.dumps(s, indent=2) if args.json else format_stats(s), end="\n" if args.json else "")
    return 0


def cmd_convert(args) -> int:
    from fleetsim.cluster.workloads.writer import write_jsonl
    if args.to != "jsonl":
        raise InputError(f"--to {args.to!r}: unknown; the output format is jsonl")
    wl = load_workload_from_args(args)
    write_jsonl(wl, args.out)
    print(f"wrote {len(wl)} requests to {args.out}")
    return 0


def cmd_synth(args) -> int:
    from fleetsim.cluster.workloads import SYNTH_PREFIX, is_synthetic, load_workload
    from fleetsim.cluster.workloads.writer import write_jsonl
    spec = args.spec if is_synthetic(args.spec) else SYNTH_PREFIX + args.spec
    wl = load_workload(spec)
    write_jsonl(wl, args.out)
    print(f"wrote {len(wl)} requests to {args.out}")
    return 0

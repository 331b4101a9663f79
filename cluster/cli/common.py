"""Flags and config handling shared by the subcommands."""
from __future__ import annotations

import argparse

from fleetsim.cluster.config import load_cluster_config


def workload_flags(p: argparse.ArgumentParser) -> None:
    """How a workload file is read (`load_workload_from_args`)."""
    g = p.add_argument_group("reading the workload")
    g.add_argument("--format", help="read the workload as this format instead of detecting it from its content: "
                                    "llmservingsim, mooncake, azure, vidur, burstgpt, csv (with --columns)")
    g.add_argument("--columns", help="generic CSV: arrival=COL,input=COL,output=COL[,unit=s|ms|us|ns]")
    g.add_argument("--num-requests", type=int, help="use only the first N requests")
    g.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply trace arrival times (< 1 = more load; not for llmservingsim JSONL)")
    g.add_argument("--start", type=float, help="window: skip the trace's first S seconds (trace time)")
    g.add_argument("--duration", type=float, help="window: keep D seconds of trace time")


def load_workload_from_args(args, path: str | None = None):
    from fleetsim.cluster.workloads import load_workload
    return load_workload(path or args.workload, args.num_requests, args.time_scale, args.format, args.start,
                         args.duration, args.columns)


def engine_flags(p: argparse.ArgumentParser) -> None:
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
    g.add_argument("--async-scheduling", action=argparse.BooleanOptionalAction, default=None,
                   help="vLLM >= 0.14's async scheduling (default: on; off for an LLMServingSim cluster JSON "
                        "and with pp > 1); --no-async-scheduling reproduces LLMServingSim's arithmetic")


def config_from_args(args):
    """The cluster config with the command line's engine overrides applied and checked."""
    from fleetsim.cluster.simulation import with_engine_options

    overrides = {"enable_prefix_caching": False if args.no_prefix_caching else None,
                 "enable_chunked_prefill": False if args.no_chunked_prefill else None}
    args = argparse.Namespace(**{**vars(args), **overrides})
    return with_engine_options(load_cluster_config(args.cluster), args)

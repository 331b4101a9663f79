"""Flags and config handling shared by the subcommands."""
from __future__ import annotations

import argparse

from fleetsim.cluster.config import load_cluster_config


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

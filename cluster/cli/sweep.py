"""`fleetsim sweep SPEC.yaml --out DIR` and `fleetsim sweep status DIR` (experiments/sweep.py)."""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run every point of a sweep SPEC (resumable), or `sweep status DIR`",
                       description="fleetsim sweep SPEC.yaml --out DIR [--backend ray|local] | fleetsim sweep status DIR")
    p.add_argument("spec", help="sweep SPEC.yaml (docs/experiments.md), or the word status")
    p.add_argument("dir", nargs="?", help="with status: the sweep folder")
    p.add_argument("--out", help="sweep folder (points/, results.csv, summary.md); re-running resumes it")
    p.add_argument("--backend", choices=("ray", "local"), default="ray",
                   help="ray: points in Ray tasks, one CPU each (default; a local loopback Ray unless "
                        "--ray-address); local: in this process, one after another")
    p.add_argument("--ray-address", help="join an existing Ray cluster (e.g. auto, or host:port)")
    p.add_argument("--force", action="store_true",
                   help="recompute finished points that no longer match the SPEC or its inputs")
    p.add_argument("--retry-failed", action="store_true", help="run failed points again")
    p.add_argument("--plots", action="store_true",
                   help="also write metric-versus-axis PNGs (first axis on x, a line per value of the second; needs "
                        "matplotlib) into the folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no closing line")
    p.set_defaults(handler=cmd_sweep)


def cmd_sweep(args) -> int:
    from fleetsim.cluster.errors import InputError
    from fleetsim.cluster.experiments import sweep

    if args.spec == "status":
        if not args.dir or args.out:
            raise InputError("sweep status: give the sweep folder: fleetsim sweep status DIR")
        print("\n".join(sweep.status_lines(args.dir)))
        return 0
    if args.dir:
        raise InputError(f"sweep: unexpected argument {args.dir!r}; the folder goes in --out")
    if not args.out:
        raise InputError("sweep: --out DIR is required (the sweep folder)")
    if args.ray_address and args.backend != "ray":
        raise InputError("--ray-address needs --backend ray")
    from fleetsim.cluster.experiments.spec import load_spec
    spec = load_spec(args.spec)
    if args.plots:
        from fleetsim.cluster.experiments.plots import need_matplotlib
        need_matplotlib()
    done = sweep.run_sweep(spec, args.out, args.backend, args.ray_address, args.force, args.retry_failed,
                           progress=not args.quiet)
    if args.plots:
        from fleetsim.cluster.experiments.plots import write_sweep_plots
        write_sweep_plots(args.out)
    if not args.quiet or done["failed"]:
        print(f"fleetsim: sweep: {done['points']} points: {done['ran']} run, {done['skipped']} already done, "
              f"{done['failed']} failed; {args.out}/results.csv", file=sys.stderr)
    return 1 if done["failed"] else 0

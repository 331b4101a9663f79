"""`fleetsim rerun SUMMARY --out DIR`: run again what a summary.json's `run` block recorded."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("rerun", help="re-run a finished run from its summary.json alone")
    p.add_argument("summary", help="summary.json of the run (its `run` block names the inputs)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run's results in --out")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where the instances run (does not change the outputs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no summary table")
    p.set_defaults(handler=cmd_rerun)


def cmd_rerun(args) -> int:
    from fleetsim.cluster.provenance import rerun_inputs
    from fleetsim.cluster.report import summary_table
    from fleetsim.cluster.simulation import simulate

    config, workload, options = rerun_inputs(args.summary)
    result = simulate(config, workload, out=args.out, overwrite=args.overwrite, backend=args.backend,
                      progress=not args.quiet, **options)
    if not args.quiet:
        print(summary_table({**result.summary, "wall_s": result.wall_s}))
    return 0

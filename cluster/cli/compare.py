"""`fleetsim compare OUT1 OUT2 ... [--labels a,b,...] [--out DIR]`: runs side by side (experiments/compare.py)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("compare", help="headline metrics of several runs side by side, with overlay figures")
    p.add_argument("runs", nargs="+", help="run folders (fleetsim run --out), the first is the reference")
    p.add_argument("--labels", help="comma-separated names of the runs, in order (default: folder names)")
    p.add_argument("--out", help="write compare.csv and the figures (needs matplotlib) here")
    p.set_defaults(handler=cmd_compare)


def cmd_compare(args) -> int:
    from fleetsim.cluster.experiments import compare
    runs = compare.load_runs(args.runs, args.labels.split(",") if args.labels else None)
    header, rows = compare.compare_rows(runs)
    if args.out:
        compare.save(args.out, runs)
    print(compare.format_table(header, rows))
    return 0

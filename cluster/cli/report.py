"""`fleetsim report DIR [--out FILE]`: one self-contained HTML page for a run, sweep or capacity
folder (experiments/html_report.py); written to DIR/report.html unless --out."""
from __future__ import annotations

import os


def register(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page (tables + figures) for a run, sweep or capacity folder")
    p.add_argument("dir", help="a fleetsim run --out, sweep --out or capacity --out folder")
    p.add_argument("--out", help="the HTML file to write (default: DIR/report.html)")
    p.set_defaults(handler=cmd_report)


def cmd_report(args) -> int:
    from fleetsim.cluster.errors import InputError
    from fleetsim.cluster.experiments.html_report import report
    from fleetsim.cluster.experiments.sweep import write_atomic
    if not os.path.isdir(args.dir):
        raise InputError(f"{args.dir}: no such folder")
    text = report(args.dir)
    path = args.out or os.path.join(args.dir, "report.html")
    write_atomic(path, text)
    print(path)
    return 0

#!/usr/bin/env python3
"""Fit the roofline efficiencies of one hardware entry to a measured profile bundle.

    python3 scripts/calibrate_roofline.py --hardware H100-SXM-80GB --model meta-llama/Llama-3.1-8B [--write]

Least squares on log-time over the bundle's dense ops (token grid), per-sequence ops and attention
rows (costmodel/calibrate.py). Prints the fit's error (median / p90 abs % per-op error, before and
after), the error of the fitted parameters on every other bundle of that hardware (cross-model),
and the fitted `efficiency:` mapping; `--write` stores it in configs/hardware/<hardware>.yaml.
Rows the bundle marks as estimated (embedding, sampler) are fitted but left out of the errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fleetsim.costmodel.calibrate import _yaml_block, run_calibration, write_efficiency  # noqa: E402
from fleetsim.costmodel.errors import CostModelError  # noqa: E402
from fleetsim.costmodel.paths import hardware_path  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--variant", default="bf16")
    ap.add_argument("--perf-root", action="append", default=[], help="extra bundle roots, searched first")
    ap.add_argument("--max-rows", type=int, default=1500, help="rows per parameter group used by the fit")
    ap.add_argument("--write", action="store_true", help="write the fitted efficiencies into the hardware YAML")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = ap.parse_args(argv)
    try:
        res = run_calibration(args.hardware, args.model, args.tp, args.variant, tuple(args.perf_root), args.max_rows)
    except CostModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        f = res["fit"]
        print(f"fit on {res['bundle']}")
        for k in ("uncalibrated", "calibrated"):
            s = f[k]
            print(f"  {k:13s} median {s['median']:5.1f} %  p90 {s['p90']:5.1f} %  ({s['n']} measured rows)  "
                  + " ".join(f"{g}={v:.1f}" for g, v in s["by_group"].items()))
        print("\nper-op abs % error on every bundle (median / p90), default vs fitted efficiencies:")
        print(f"  {'model':28s} {'tp':>3s} {'uncal med':>9s} {'p90':>6s} {'cal med':>8s} {'p90':>6s}")
        for e in res["eval"]:
            u, c = e["uncalibrated"], e["calibrated"]
            tag = " (fit)" if (e["model"], e["tp"]) == (res["model"], res["tp"]) else ""
            print(f"  {e['model']:28s} {e['tp']:>3d} {u['median']:9.1f} {u['p90']:6.1f} {c['median']:8.1f} {c['p90']:6.1f}{tag}")
        print("\nefficiency:")
        print("\n".join(_yaml_block(res["efficiency"])))
    if args.write:
        path = hardware_path(args.hardware)
        s = res["fit"]["calibrated"]
        write_efficiency(path, res["efficiency"],
                         f"fitted by scripts/calibrate_roofline.py on {args.model} tp{args.tp} "
                         f"(median {s['median']:.1f} %, p90 {s['p90']:.1f} % abs per-op error).")
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Add estimated qk_norm rows to a profile bundle that lacks them (e.g. one measured by
scripts/profile_gpu.py, which does not measure qk_norm yet).

qk_norm(T) = two RMSNorm kernels (q as [T·heads, head_dim], k as [T·kv_heads, head_dim]), each
priced as the bundle's own final_layernorm (RMSNorm over hidden) at the same bytes
(`convert_gpu_profiles.qk_norm_rows`). Appends the rows to `tp<N>/dense.csv` and a line to
meta.yaml's `source`. Refuses a bundle that already has qk_norm rows.

    python3 scripts/add_qk_norm_estimate.py configs/perf/H200-SXM-141GB/Qwen/Qwen3-8B/bf16 --model Qwen/Qwen3-8B
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from convert_gpu_profiles import REPO, fmt, qk_norm_rows  # noqa: E402

NOTE = ("qk_norm: NOT measured, estimated by scripts/add_qk_norm_estimate.py as two RMSNorm kernels (q over "
        "[T*heads, head_dim], k over [T*kv_heads, head_dim]), each priced as this bundle's final_layernorm at "
        "the same bytes (T*heads*head_dim/hidden, resp. kv_heads, tokens; clamped to the grid's first point).")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variant_dir", type=Path, help="<perf>/<hardware>/<org>/<name>/<variant>")
    p.add_argument("--model", required=True, help="org/name (its config under --models-root)")
    p.add_argument("--models-root", type=Path, default=REPO / "configs" / "models")
    args = p.parse_args(argv)
    cfg = json.loads((args.models_root / f"{args.model}.json").read_text(encoding="utf-8"))
    for tp_dir in sorted(args.variant_dir.glob("tp*")):
        dense = tp_dir / "dense.csv"
        with open(dense, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if any(r["layer"] == "qk_norm" for r in rows):
            raise SystemExit(f"{dense}: already has qk_norm rows")
        final_norm = {int(r["tokens"]): float(r["time_us"]) for r in rows if r["layer"] == "final_layernorm"}
        with open(dense, "a", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            for op, t, us in qk_norm_rows(cfg, int(tp_dir.name[2:]), final_norm):
                w.writerow([op, t, fmt(us)])
        print(f"{dense}: {len(final_norm)} qk_norm rows")
    meta = args.variant_dir / "meta.yaml"
    text = meta.read_text(encoding="utf-8")
    marker = "  No skew profile." if "  No skew profile." in text else None
    if marker is None or NOTE in text:
        raise SystemExit(f"{meta}: add the note by hand: {NOTE}")
    meta.write_text(text.replace(marker, f"  {NOTE}\n{marker}", 1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

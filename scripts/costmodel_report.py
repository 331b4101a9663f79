#!/usr/bin/env python3
"""Cost-model report: profile vs roofline step times, roofline error, catalogue and MoE breakdowns.

    python3 scripts/costmodel_report.py [--hardware H100-SXM-80GB] [--ctx 1024] [--sections ...]

Prints Markdown (the tables of docs/costmodel.md):

- `steps`: per shipped model, one decode step at batch 1/64/256 with `--ctx` tokens of context
  and one 2048-token prefill: the measured sum from the bundle's tables (grid points read directly,
  no interpolation; + the all-reduce model for tp > 1), the profile backend, the roofline backend
  with the hardware YAML's (calibrated) efficiencies and with the generic defaults.
- `errors`: per-op abs % error of the roofline backend on every bundle of the hardware, default
  vs YAML efficiencies (median / p90 over the measured rows).
- `catalogue`: roofline decode-64 and prefill-2048 step times of every shipped model on every
  catalogue GPU (tp 1).
- `moe`: Qwen3-30B-A3B (and Mixtral) per-step breakdown with ep=1 and ep=2, balanced and skewed.
- `family`: for a `--hardware` entry that `inherits` another (H200 from H100), on every bundle both
  have: per step (at `--ctx` and 4x it), the measured ratio of step times to the parent's, the
  roofline's ratio and error without and with the SM-side decode ceiling (`attention.max_gbps`),
  and the per-op error without and with it.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from fleetsim.costmodel import CostModel, CostModelError  # noqa: E402
from fleetsim.costmodel.architecture import sequence_for  # noqa: E402
from fleetsim.costmodel.batch import BatchShape  # noqa: E402
from fleetsim.costmodel.calibrate import bundle_rows, error_stats, find_bundles, roofline_for  # noqa: E402
from fleetsim.costmodel.catalogue import resolve_hardware_doc  # noqa: E402
from fleetsim.costmodel.paths import SHIPPED  # noqa: E402
from fleetsim.costmodel.profile import read_bundle  # noqa: E402

SECTIONS = ("steps", "errors", "catalogue", "moe", "family")


def shipped_models() -> list[str]:
    root = SHIPPED / "models"
    return sorted(os.path.relpath(p, root)[:-5] for p in glob.glob(str(root / "*" / "*.json")))


def shipped_hardware() -> list[str]:
    order = ["A100-SXM-80GB", "H100-SXM-80GB", "H200-SXM-141GB", "B200", "L40S", "RTX4090", "RTXPRO6000"]
    names = sorted(p.stem for p in (SHIPPED / "hardware").glob("*.yaml"))
    return [n for n in order if n in names] + [n for n in names if n not in order]


def scenarios(ctx: int):
    return [(f"decode b1 @{ctx}", [(1, ctx)]), (f"decode b64 @{ctx}", [(1, ctx)] * 64),
            (f"decode b256 @{ctx}", [(1, ctx)] * 256), ("prefill 2048", [(2048, 0)])]


def allreduce_total(b: dict) -> int:
    """The step's all-reduce time: the sum of its `allreduce.<term>` breakdown entries."""
    return sum(v for k, v in b.items() if k.startswith("allreduce."))


def measured_sum_ns(tp_dir: str, arch, seqs, network=None, tp: int = 1):
    """Σ of the bundle's table rows at exact grid points (None if a point is not on the grid)."""
    b = BatchShape.from_seqs(seqs)
    bundle = read_bundle(tp_dir)
    dense, per_seq, att = bundle["dense.csv"], bundle["per_sequence.csv"], bundle["attention.csv"]

    def at(cols, name_col, key_col, op, key):
        m = (cols[name_col] == op) & (cols[key_col] == key)
        return float(cols["time_us"][m][-1]) if m.any() else None
    T, S = b.tokens, b.seqs
    ops = sequence_for(arch.model_type, bundle.get("meta.yaml"))
    parts = [at(dense, "layer", "tokens", op, T) for op in ops.pre_ops + ops.post_ops]
    layer = [at(dense, "layer", "tokens", op, T) for op in ops.layer_ops(moe=False)]
    seq = [at(per_seq, "layer", "sequences", op, S) for op in ops.seq_ops]
    pc, kp = b.prefill_tokens, b.prefill_context
    kd = b.decode_ctx_sum // b.decodes if b.decodes else 0
    m = ((att["prefill_chunk"] == pc) & (att["kv_prefill"] == kp) & (att["n_decode"] == b.decodes)
         & (att["kv_decode"] == kd))
    attn = float(att["time_us"][m][-1]) if m.any() else None
    if None in parts + layer + seq or attn is None:
        return None
    us = sum(parts) + arch.num_layers * (sum(layer) + attn) + sum(seq)
    ns = us * 1e3
    if tp > 1:
        ns += arch.num_layers * 2 * network.allreduce_ns(T * arch.hidden_size * arch.dtype_bytes, tp)
    return ns


def ms(ns) -> str:
    return "—" if ns is None else f"{ns / 1e6:.3f}"


def err(pred, ref) -> str:
    return "" if ref is None or pred is None else f" ({(pred / ref - 1) * 100:+.0f} %)"


def section_steps(hardware: str, ctx: int) -> None:
    bundles = {(m, tp): d for m, tp, d in find_bundles(hardware)}
    print(f"### Step times on {hardware} (ms): measured table sum, profile, roofline\n")
    print("Roofline (cal) = the hardware YAML's efficiencies; (uncal) = generic defaults. "
          "(±%) = vs the measured sum.\n")
    runs = [(m, 1) for m in shipped_models()]
    runs += sorted(k for k in bundles if k[1] > 1)
    for model, tp in sorted(runs):
        d = bundles.get((model, tp))
        cm_roof = CostModel.load(model, hardware, "roofline", tp)
        uncal = roofline_for(hardware, model, tp, efficiency={})
        cm_prof = CostModel.load(model, hardware, "profile", tp) if d else None
        print(f"**{model}** tp{tp}" + ("" if d else " (no bundle)") + "\n")
        print("| step | measured sum | profile | roofline (cal) | roofline (uncal) |")
        print("|---|---:|---:|---:|---:|")
        for name, seqs in scenarios(ctx):
            meas = measured_sum_ns(d, cm_roof.arch, seqs, cm_roof.state.network, tp) if d else None
            prof = cm_prof.iteration_time_ns(seqs) if cm_prof else None
            roof = cm_roof.iteration_time_ns(seqs)
            unc = uncal.time_batch(BatchShape.from_seqs(seqs))
            print(f"| {name} | {ms(meas)} | {ms(prof)} | {ms(roof)}{err(roof, meas)} | {ms(unc)}{err(unc, meas)} |")
        if tp > 1:
            b = cm_roof.breakdown(scenarios(ctx)[1][1])
            algos = sorted({k.split(".")[1] for k in b if k.startswith("allreduce.")})
            print(f"\nall-reduce model (2 per layer over {tp} ranks, {', '.join(algos)}), decode b64: "
                  f"{allreduce_total(b) / 1e6:.3f} ms of {sum(b.values()) / 1e6:.3f} ms")
        print()


def section_errors(hardware: str) -> None:
    print(f"### Roofline per-op error vs the {hardware} tables (abs %, measured rows)\n")
    print("| bundle | rows | default median | default p90 | YAML median | YAML p90 | YAML by group (median) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for model, tp, d in find_bundles(hardware):
        rows = bundle_rows(d)
        u = error_stats(roofline_for(hardware, model, tp, efficiency={}), rows)
        c = error_stats(roofline_for(hardware, model, tp), rows)
        groups = ", ".join(f"{g.replace('elementwise.', '')} {v:.1f}" for g, v in c["by_group"].items())
        print(f"| {model} tp{tp} | {c['n']} | {u['median']:.1f} | {u['p90']:.1f} | {c['median']:.1f} | "
              f"{c['p90']:.1f} | {groups} |")
    print()


def section_catalogue(ctx: int) -> None:
    hws = shipped_hardware()
    print(f"### Roofline across the catalogue (tp 1): decode b64 @{ctx} / prefill 2048, ms\n")
    print("| model | " + " | ".join(hws) + " |")
    print("|---|" + "---:|" * len(hws))
    d64, p2k = scenarios(ctx)[1][1], scenarios(ctx)[3][1]
    for model in shipped_models():
        cells = []
        for hw in hws:
            cm = CostModel.load(model, hw, "roofline", 1)
            cells.append(f"{ms(cm.iteration_time_ns(d64))} / {ms(cm.iteration_time_ns(p2k))}")
        print(f"| {model} | " + " | ".join(cells) + " |")
    print()


def section_moe(hardware: str, ctx: int) -> None:
    print(f"### MoE on {hardware}: per-step breakdown (ms), balanced routing unless noted\n")
    cases = [("Qwen/Qwen3-30B-A3B", 1, 1, 0.0), ("Qwen/Qwen3-30B-A3B", 1, 2, 0.0),
             ("Qwen/Qwen3-30B-A3B", 2, 2, 0.0), ("Qwen/Qwen3-30B-A3B", 1, 2, 1.0),
             ("mistralai/Mixtral-8x7B-v0.1", 2, 1, 0.0), ("mistralai/Mixtral-8x7B-v0.1", 1, 2, 0.0)]
    steps = [scenarios(ctx)[1], scenarios(ctx)[3]]
    keys = ["attention", "qkv_proj", "o_proj", "moe_router", "moe_experts", "act_fn", "ep_dispatch",
            "ep_combine", "allreduce", "lm_head", "other"]
    print("| model | tp | ep | skew | step | total | " + " | ".join(keys) + " |")
    print("|---|---:|---:|---:|---|---:|" + "---:|" * len(keys))
    for model, tp, ep, skew in cases:
        cm = CostModel.load(model, hardware, "roofline", tp, ep=ep, moe_skew=skew)
        for name, seqs in steps:
            b = cm.breakdown(seqs)
            total = sum(b.values())
            shown = {k: b.get(k) for k in keys[:-1]}
            shown["allreduce"] = allreduce_total(b) or None
            shown["other"] = total - sum(v for v in shown.values() if v)
            cells = ["—" if v is None else f"{v / 1e6:.3f}" for v in shown.values()]
            print(f"| {model.split('/')[1]} | {tp} | {ep} | {skew:g} | {name} | {total / 1e6:.3f} | "
                  + " | ".join(cells) + " |")
    print()


def section_family(hardware: str, ctx: int) -> None:
    parent = resolve_hardware_doc(hardware).get("inherits") or resolve_hardware_doc(hardware).get("name")
    mine = {(m, tp): d for m, tp, d in find_bundles(hardware)}
    theirs = {(m, tp): d for m, tp, d in find_bundles(parent)}
    print(f"### {hardware} against {parent} (the entry it inherits): measured vs roofline\n")
    print("Ratio = step time on " + hardware + " / on " + parent + "; the roofline without the ceiling is "
          "the arithmetic before `attention.max_gbps` (the same efficiencies otherwise).\n")
    for (model, tp) in sorted(set(mine) & set(theirs)):
        arch = CostModel.load(model, hardware, "roofline", tp).arch
        net, net_p = (CostModel.load(model, hardware, "roofline", tp).state.network,
                      CostModel.load(model, parent, "roofline", tp).state.network)
        without = roofline_for(hardware, model, tp)
        without.eff["attention.max_gbps"] = 0.0
        with_c, ref_p = roofline_for(hardware, model, tp), roofline_for(parent, model, tp)
        print(f"**{model}** tp{tp}\n")
        print("| step | measured ms | measured ratio | roofline ratio (no ceiling) | roofline ratio | "
              "roofline error (no ceiling) | roofline error |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        steps = scenarios(ctx)[:3] + [(n.replace(f"@{ctx}", f"@{4 * ctx}"), [(1, 4 * ctx)] * len(q))
                                      for n, q in scenarios(ctx)[:3]] + scenarios(ctx)[3:]
        for name, seqs in steps:
            b = BatchShape.from_seqs(seqs)
            meas = measured_sum_ns(mine[(model, tp)], arch, seqs, net, tp)
            meas_p = measured_sum_ns(theirs[(model, tp)], arch, seqs, net_p, tp)
            r0, r1, rp = without.time_batch(b), with_c.time_batch(b), ref_p.time_batch(b)
            ratio = "—" if meas is None or meas_p is None else f"{meas / meas_p:.2f}"
            print(f"| {name} | {ms(meas)} | {ratio} | {r0 / rp:.2f} | {r1 / rp:.2f} |{err(r0, meas)} |{err(r1, meas)} |")
        rows = bundle_rows(mine[(model, tp)])
        for label, backend in (("no ceiling", without), ("with the ceiling", with_c)):
            e = error_stats(backend, rows)
            groups = ", ".join(f"{g.replace('elementwise.', '')} {v:.1f}" for g, v in e["by_group"].items())
            print(f"\nper-op abs error, {label}: median {e['median']:.1f} %, p90 {e['p90']:.1f} % ({e['n']} rows; {groups})")
        print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hardware", default="H100-SXM-80GB")
    ap.add_argument("--ctx", type=int, default=1024, help="decode context (tokens already in the KV cache)")
    ap.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=SECTIONS)
    args = ap.parse_args(argv)
    np.set_printoptions(precision=3)
    try:
        if "steps" in args.sections:
            section_steps(args.hardware, args.ctx)
        if "errors" in args.sections:
            section_errors(args.hardware)
        if "catalogue" in args.sections:
            section_catalogue(args.ctx)
        if "moe" in args.sections:
            section_moe(args.hardware, args.ctx)
        if "family" in args.sections:
            section_family(args.hardware, args.ctx)
    except CostModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Convert the measured H100 op tables (shared/data/gpu-profiles) into profile-backend bundles.

Input (`--src`, see shared/data/gpu-profiles/README.md): `dense.csv` and `dense_fused.csv`
(`model,op,tokens,time_us`) and `attention.csv`
(`model,prefill_chunk,kv_prefill,n_decode,kv_decode,time_us`), measured on one H100 80GB HBM3
with PyTorch 2.11 (CUDA 13), bf16, each op captured in a CUDA graph and replayed.

Output (`--out`, LLMServingSim layout): `<out>/<hardware>/<org>/<name>/bf16/meta.yaml` and
`tp<N>/{dense,per_sequence,attention}.csv`. A model `org/name` goes to `tp1/`; a tensor-parallel
shard `org/name@tpN` (heads, KV heads, intermediate and vocab divided by N; no communication,
the backend adds the all-reduces itself) goes to `tpN/` of the same model.

Mapping (T = tokens in the step, S = sequences in the step):
  layernorm(T)       = min(add_rms_norm(T), add_rms_norm_fused(T))   vLLM fuses residual add + norm
  final_layernorm(T) = min(rms_norm(T), rms_norm_fused(T))
  rotary_emb(T)      = min(rotary_emb(T), rotary_emb_fused(T))       (the unfused one is several kernels)
  act_fn(T)          = min(act_fn(T), act_fn_fused(T))
      A model or token count missing from dense_fused.csv uses the unfused value, except for TP
      shards with `--shard-fused base` (default), which take the fused value of the unsharded
      model at the shape-equivalent point: the norms at the same T (hidden is not sharded, so the
      op is identical), rotary_emb and act_fn at T/N (a shard does 1/N of the heads or of the
      intermediate per token, so its elementwise work at T equals the full model's at T/N;
      linear interpolation on the measured grid, clamped to its first point below it).
      `--shard-fused none` keeps the shards' unfused values.
  qkv_proj, o_proj, gate_up_proj, down_proj: as measured (GEMMs, weights rotated out of L2).
  embedding(T)       not measured: a memory-bound gather, 2·T·hidden·2 bytes (read + write, bf16)
                     at 2.6 TB/s (the README's measured copy throughput) + 2 µs launch floor;
                     hidden from configs/models/<org>/<name>.json (unchanged for TP shards).
  qk_norm(T)         not measured (models whose architecture lists it: Qwen3): vLLM runs RMSNorm
                     over q viewed as [T·heads, head_dim] and over k as [T·kv_heads, head_dim],
                     two kernels; each is priced as this bundle's final_layernorm (RMSNorm over
                     hidden) at the same bytes, i.e. at T·heads·head_dim/hidden (resp. kv_heads)
                     tokens, linear on the grid and clamped to its first point (the launch floor).
                     heads and KV heads per TP rank (KV heads at least 1).
  lm_head(S)         = the measured lm_head GEMM at tokens = S (vLLM computes logits only at the
                     sampled positions); for shards the measured vocab/N GEMM (no logit gather).
  sampler(S)         not measured: memory-bound over the fp32 logits read twice,
                     2·S·vocab·4 bytes at 2.6 TB/s + 10 µs floor (full vocab also for shards:
                     vLLM samples from the gathered logits).
      S runs over the measured token grid up to `--max-seqs` (1024); the backend extrapolates
      linearly above it.
  attention.csv      the measured rows (pure decode, pure prefill, mixed) copied unchanged.

meta.yaml carries no skew_fit, so the backend runs without decode-skew correction.
Times are written in µs with at most 4 decimals.
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
from bisect import bisect_left
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO.parent))
sys.path.insert(0, str(REPO))

from fleetsim.costmodel.architecture import sequence_for  # noqa: E402
COPY_BYTES_PER_S = 2.6e12
EMBED_FLOOR_US = 2.0
SAMPLER_FLOOR_US = 10.0
GEMMS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
# bundle op -> (unfused op in dense.csv, fused op in dense_fused.csv, shard token divisor applies)
ELEMENTWISE = {
    "layernorm": ("add_rms_norm", "add_rms_norm_fused", False),
    "final_layernorm": ("rms_norm", "rms_norm_fused", False),
    "rotary_emb": ("rotary_emb", "rotary_emb_fused", True),
    "act_fn": ("act_fn", "act_fn_fused", True),
}
DENSE_ORDER = ("embedding", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "gate_up_proj", "act_fn",
               "down_proj", "final_layernorm")


def fmt(x: float) -> str:
    s = f"{x:.4f}".rstrip("0").rstrip(".")
    return s or "0"


def read_ops(path: Path) -> dict:
    """{model: {op: {tokens: time_us}}}"""
    out: dict = collections.defaultdict(lambda: collections.defaultdict(dict))
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            out[r["model"]][r["op"]][int(r["tokens"])] = float(r["time_us"])
    return out


def read_attention(path: Path) -> dict:
    out: dict = collections.defaultdict(list)
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            out[r["model"]].append(tuple(int(r[k]) for k in ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode"))
                                   + (float(r["time_us"]),))
    return out


def interp(curve: dict, x: float) -> float:
    """Piecewise linear on a {key: value} curve; clamped below and above its keys."""
    keys = sorted(curve)
    if x <= keys[0]:
        return curve[keys[0]]
    if x >= keys[-1]:
        return curve[keys[-1]]
    hi = bisect_left(keys, x)
    lo = hi - 1
    w = (x - keys[lo]) / (keys[hi] - keys[lo])
    return curve[keys[lo]] + w * (curve[keys[hi]] - curve[keys[lo]])


def split_model(name: str) -> tuple[str, int]:
    if "@tp" in name:
        base, tp = name.split("@tp")
        return base, int(tp)
    return name, 1


def model_config(models_root: Path, model: str) -> dict:
    path = models_root / f"{model}.json"
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def qk_norm_rows(cfg: dict, tp: int, final_norm: dict) -> list:
    """qk_norm(T) estimated from the RMSNorm-over-hidden curve at equal bytes (module docstring)."""
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or hidden // heads
    q_heads, kv_heads = max(1, heads // tp), max(1, cfg.get("num_key_value_heads", heads) // tp)
    return [("qk_norm", t, interp(final_norm, t * q_heads * head_dim / hidden)
             + interp(final_norm, t * kv_heads * head_dim / hidden)) for t in sorted(final_norm)]


def dense_rows(name: str, base: str, tp: int, dense: dict, fused: dict, cfg: dict,
               shard_fused: str) -> tuple[list, dict]:
    hidden = cfg["hidden_size"]
    ops = dense[name]
    grid = sorted(ops["qkv_proj"])
    rows, picked = [], collections.Counter()
    for t in grid:
        bytes_ = 2 * t * hidden * 2
        rows.append(("embedding", t, bytes_ / COPY_BYTES_PER_S * 1e6 + EMBED_FLOOR_US))
    for op in DENSE_ORDER[1:]:
        for t in grid:
            if op in GEMMS:
                rows.append((op, t, ops[op][t]))
                continue
            unfused_op, fused_op, scales = ELEMENTWISE[op]
            value = ops[unfused_op][t]
            f = None
            if fused_op in fused.get(name, {}) and t in fused[name][fused_op]:
                f = fused[name][fused_op][t]
            elif tp > 1 and shard_fused == "base" and fused_op in fused.get(base, {}):
                f = interp(fused[base][fused_op], t / tp if scales else t)
            if f is not None and f < value:
                value = f
                picked[op] += 1
            rows.append((op, t, value))
    if "qk_norm" in sequence_for(cfg.get("model_type", "")).layer_ops(moe=False):
        rows += qk_norm_rows(cfg, tp, {t: v for op, t, v in rows if op == "final_layernorm"})
    return rows, {op: f"{picked[op]}/{len(grid)}" for op in ELEMENTWISE}


def sequence_rows(name: str, dense: dict, vocab: int, max_seqs: int) -> list:
    lm = dense[name]["lm_head"]
    grid = [s for s in sorted(lm) if s <= max_seqs]
    rows = [("lm_head", s, lm[s]) for s in grid]
    rows += [("sampler", s, 2 * s * vocab * 4 / COPY_BYTES_PER_S * 1e6 + SAMPLER_FLOOR_US) for s in grid]
    return rows


def write_csv(path: Path, header: tuple, rows: list) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([fmt(v) if isinstance(v, float) else v for v in r])


def _literal_str(dumper, data):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


def source_text(src: Path, shard_fused: str, max_seqs: int, qk_norm: bool) -> str:
    shard = ("TP shards (@tpN rows) have no fused rows; with --shard-fused base the norms take the "
             "unsharded model's fused kernel at the same T (identical shape) and rotary_emb/act_fn "
             "its fused kernel at T/N (same elementwise work), where faster than the shard's unfused value."
             if shard_fused == "base" else
             "TP shards (@tpN rows) have no fused rows and keep their unfused values.")
    return (
        f"Converted by scripts/convert_gpu_profiles.py from {src.name}/{{dense,dense_fused,attention}}.csv "
        "(shared/data/gpu-profiles): one NVIDIA H100 80GB HBM3 (132 SMs), PyTorch 2.11 (CUDA 13), bf16, "
        "every op captured n times in one CUDA graph and replayed (no CPU launch gaps, as under vLLM's "
        "CUDA graphs); GEMM weights rotated among >= 256 MiB of copies so they do not stay in L2.\n"
        "dense.csv: qkv_proj, o_proj, gate_up_proj, down_proj as measured. layernorm = faster of "
        "add_rms_norm and add_rms_norm_fused (vLLM fuses residual add + norm); final_layernorm = faster "
        "of rms_norm and rms_norm_fused; rotary_emb = faster of rotary_emb and rotary_emb_fused; "
        "act_fn = faster of act_fn and act_fn_fused (torch.compile/Triton fused kernels); unfused value "
        f"where the fused table lacks the model or token count. {shard}\n"
        "embedding: NOT measured, estimated as a memory-bound gather of 2*T*hidden*2 bytes (read + write, "
        "bf16) at 2.6 TB/s (measured copy throughput) + 2 us launch floor.\n"
        + ("qk_norm: NOT measured, estimated as two RMSNorm kernels (q over [T*heads, head_dim], k over "
           "[T*kv_heads, head_dim]), each priced as final_layernorm at the same bytes: at "
           "T*heads*head_dim/hidden (resp. kv_heads) tokens, clamped to the grid's first point.\n"
           if qk_norm else "") +
        "per_sequence.csv: lm_head(S) = measured lm_head GEMM at tokens = S (logits only at sampled "
        "positions; vocab/N for shards, no logit gather). sampler(S): NOT measured, estimated as "
        "memory-bound over fp32 logits read twice, 2*S*vocab*4 bytes (full vocab) at 2.6 TB/s + 10 us "
        f"floor. S over the measured token grid up to {max_seqs}.\n"
        "attention.csv: rows copied as measured (one varlen causal FlashAttention-2 call, PyTorch built-in "
        "kernel, GQA): pure decode n 1..256 x kv 128..16384, pure prefill chunk 16..8192 x context "
        "0/512/2048/8192, mixed chunk 256/1024/2048 + 16/64/256 decodes at kv 1024/4096.\n"
        "Shard tables (tpN, N > 1) hold one rank's ops without communication; the backend adds the "
        "all-reduces. No skew profile.\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data" / "gpu-profiles" / "H100-SXM-80GB")
    p.add_argument("--hardware", default="H100-SXM-80GB")
    p.add_argument("--out", type=Path, default=REPO / "configs" / "perf")
    p.add_argument("--models-root", type=Path, default=REPO / "configs" / "models")
    p.add_argument("--variant", default="bf16")
    p.add_argument("--max-seqs", type=int, default=1024, help="largest S written to per_sequence.csv")
    p.add_argument("--shard-fused", choices=("base", "none"), default="base",
                   help="fused values for TP shards: from the unsharded model at the equivalent shape, or none")
    args = p.parse_args(argv)

    dense = read_ops(args.src / "dense.csv")
    fused = read_ops(args.src / "dense_fused.csv") if (args.src / "dense_fused.csv").is_file() else {}
    attention = read_attention(args.src / "attention.csv")

    tp_degrees: dict = collections.defaultdict(set)
    for name in dense:
        base, tp = split_model(name)
        tp_degrees[base].add(tp)

    yaml.SafeDumper.add_representer(str, _literal_str)
    for name in sorted(dense):
        base, tp = split_model(name)
        if name not in attention:
            print(f"skip {name}: no attention rows", file=sys.stderr)
            continue
        cfg = model_config(args.models_root, base)
        variant_dir = args.out / args.hardware / base / args.variant
        tp_dir = variant_dir / f"tp{tp}"
        tp_dir.mkdir(parents=True, exist_ok=True)
        rows, picked = dense_rows(name, base, tp, dense, fused, cfg, args.shard_fused)
        write_csv(tp_dir / "dense.csv", ("layer", "tokens", "time_us"), rows)
        write_csv(tp_dir / "per_sequence.csv", ("layer", "sequences", "time_us"),
                  sequence_rows(name, dense, cfg["vocab_size"], args.max_seqs))
        write_csv(tp_dir / "attention.csv", ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us"),
                  sorted(attention[name]))
        meta = {
            "hardware": args.hardware,
            "gpu": "NVIDIA H100 80GB HBM3",
            "model": base,
            "variant": args.variant,
            "tp_degrees": sorted(tp_degrees[base]),
            "framework": "PyTorch 2.11 (CUDA 13), CUDA graphs",
            "source": source_text(args.src, args.shard_fused, args.max_seqs, any(r[0] == "qk_norm" for r in rows)),
            # mixed points from PyTorch's FlashAttention-2 varlen kernel, not vLLM's: price each
            # prefill on its own and the decodes as their own part (costmodel/profile.py)
            "mixed_attention_kernel": "flash_attn2_varlen",
            "attention_pricing": "per_sequence",
        }
        with open(variant_dir / "meta.yaml", "w", encoding="utf-8") as fh:
            yaml.safe_dump(meta, fh, sort_keys=False, width=100, allow_unicode=False)
        print(f"{name:32s} -> {tp_dir.relative_to(args.out)}  fused picked (of grid): {picked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

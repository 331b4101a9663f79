#!/usr/bin/env python3
"""Measure a profile-backend perf bundle for any Hugging Face decoder config, with PyTorch only.

    python scripts/profile_gpu.py --config configs/models/Qwen/Qwen3-8B.json \\
        --hardware H100-SXM-80GB --out configs/perf --tp 1 --grid full

Output (fleetsim / LLMServingSim bundle layout, read by costmodel/profile.py):
`<out>/<hardware>/<org>/<name>/<variant>/meta.yaml` and `tp<N>/dense.csv` (`layer,tokens,time_us`),
`tp<N>/per_sequence.csv` (`layer,sequences,time_us`), `tp<N>/attention.csv`
(`prefill_chunk,kv_prefill,n_decode,kv_decode,time_us`), plus `tp<N>/profile_raw.csv`
(`op,impl,key,time_us`: every eager / compiled measurement, for diagnosis; the backend ignores it).
`<org>/<name>` is `--model`, else the last two path parts of `--config` (`.../Qwen/Qwen3-8B.json`).

What is measured (T = tokens in the step, S = sequences; shapes are one TP rank's: heads, KV heads
(at least 1), intermediate size and vocab divided by `--tp`; no communication — the backend adds
the all-reduces from the hardware spec):
  embedding(T)        F.embedding of T random ids in a [vocab/tp, hidden] table.
  layernorm(T)        residual add + F.rms_norm over hidden (vLLM's fused_add_rms_norm).
  final_layernorm(T)  F.rms_norm over hidden.
  qkv_proj, o_proj, gate_up_proj, down_proj (T)
                      GEMMs x[T, K] @ W[K, N] (torch.matmul into a preallocated output) with
                      K, N = hidden -> (heads + 2·kv_heads)·head_dim, heads·head_dim -> hidden,
                      hidden -> 2·intermediate, intermediate -> hidden. W is rotated among copies
                      totalling >= --rotate-mib (256 MiB on CUDA) and every captured graph holds at
                      least one call per copy, so weights come from HBM as in a real forward pass.
  rotary_emb(T)       neox rotate-half on q and k with cos/sin gathered by position.
  qk_norm(T)          (architectures with per-head q/k norm: HF model_type in QK_NORM_MODEL_TYPES,
                      Qwen3) F.rms_norm over q as [T, heads, head_dim] and over k as
                      [T, kv_heads, head_dim] (head_dim weights): vLLM's q_norm and k_norm, two
                      kernels, one op as in configs/architectures/qwen3.yaml.
  act_fn(T)           silu(gate) * up over [T, 2·intermediate].
  lm_head(S)          GEMM x[S, hidden] @ W[hidden, vocab/tp] (logits only at sampled positions).
  sampler(S)          over fp32 logits [S, vocab] (full vocab): cast to fp32, temperature, softmax,
                      greedy argmax and an exponential-race sample argmax(probs / q) with a fixed
                      noise tensor q (no RNG inside the graph); `--sampler-top-k K` adds a top-k.
  attention           one varlen causal attention call per layer over a batch of one prefill chunk
                      (`prefill_chunk` new tokens after `kv_prefill` cached ones) plus `n_decode`
                      decodes each attending to `kv_decode` tokens; GQA; causal mask aligned
                      bottom-right. CUDA + bf16/fp16 (`--attention auto`): PyTorch's built-in
                      FlashAttention-2 varlen kernel (torch.ops.aten._flash_attention_forward, what
                      torch.nn.attention.varlen.varlen_attn calls), else the flash-attn package's
                      flash_attn_varlen_func if installed. Otherwise (CPU, fp32, neither kernel
                      usable) the fallback is F.scaled_dot_product_attention with one call
                      per uniform group — the prefill with an explicit bottom-right causal mask,
                      the decodes as one [n, H, 1, D] batch (no padding needed: the grid's decodes
                      share one length) — timed together as one op. K/V are rotated among copies
                      like the weights. KV-cache writes (reshape_and_cache) are not included.
Elementwise ops (layernorm, final_layernorm, qk_norm, rotary_emb, act_fn) are measured eager and, with
`--fuse compile` (default on CUDA when Triton imports), also as one torch.compile'd (Inductor /
Triton) kernel each, closer to vLLM's fused custom kernels (`--compile-dynamic all`: every dim
dynamic, one compile per op; `tokens`: only the token dim dynamic, static feature dims); the table keeps the faster of the two
per point (as scripts/convert_gpu_profiles.py does with the shared H100 tables). The compiled pass
runs last, so a run cut short still leaves complete eager tables. MoE layers are not modeled (MoE
configs are refused).

Timing: on CUDA every measurement captures n calls of the op into one CUDA graph (n chosen so a
replay takes about --target-ms, 3..--max-n, and at least one call per rotated copy) and replays it
--repeats times between CUDA events; the value is the median replay / n. On CPU (no CUDA) plain
wall-clock loops of n calls, median of --repeats. With `--monotone` (default: on for CPU, off for
CUDA) dense and per-sequence curves are made non-decreasing (each point at least the previous),
which removes timer-noise dips on a busy CPU; real kernel effects on a GPU are kept as measured.

Grids (`--grid`; `--max-tokens` / `--max-seqs` / `--max-kv` cap them):
  tiny   T 1..256, S 1..8, a dozen attention points (CPU smoke tests)
  small  T 1,2,4,...,8192; S 1..256; decode n 1,4,16,64,256 x kv 128,1024,4096,16384;
         prefill 16,128,512,2048,8192 x context 0,2048,8192; mixed 256/2048 + 16/256 decodes at
         kv 1024/4096
  full   T 1,2,4,8,16,24,32,48,...,16384 (the shared H100 grid); S up to 4096; decode n 1..256 x
         kv 128..16384 (n·kv <= 2^21); prefill 16..8192 x context 0/512/2048/8192; mixed
         256/1024/2048 + 16/64/256 decodes at kv 1024/4096
`--layers-subset op1,op2` measures only those ops (names above, `attention` for the attention
table); rows of the other ops are kept from an existing bundle at the same place.
Needs only PyTorch (no numpy, no PyYAML).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import time

DENSE_OPS = ("embedding", "layernorm", "qkv_proj", "qk_norm", "rotary_emb", "o_proj", "gate_up_proj", "act_fn",
             "down_proj", "final_layernorm")
SEQ_OPS = ("lm_head", "sampler")
ALL_OPS = DENSE_OPS + SEQ_OPS + ("attention",)
ELEMENTWISE = ("layernorm", "final_layernorm", "qk_norm", "rotary_emb", "act_fn")
# HF model types whose architecture lists qk_norm (configs/architectures/*.yaml; this script reads no YAML)
QK_NORM_MODEL_TYPES = ("qwen3", "qwen3_moe")
GEMMS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
ATT_COLS = ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode")
VARIANTS = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
MiB = 1 << 20


# ---------------------------------------------------------------------------------------- config

class Arch:
    """The shapes one TP rank sees, from a HF config.json."""

    def __init__(self, cfg: dict, tp: int):
        if "hidden_size" not in cfg and isinstance(cfg.get("text_config"), dict):
            cfg = cfg["text_config"]
        if cfg.get("num_experts") or cfg.get("num_local_experts"):
            raise SystemExit("MoE configs are not supported by this profiler (no moe.csv); dense decoders only")
        self.hidden = int(cfg["hidden_size"])
        self.layers = int(cfg["num_hidden_layers"])
        heads = int(cfg["num_attention_heads"])
        kv = int(cfg.get("num_key_value_heads") or heads)
        self.head_dim = int(cfg.get("head_dim") or self.hidden // heads)
        inter = int(cfg["intermediate_size"])
        vocab = int(cfg["vocab_size"])
        if heads % tp or inter % tp:
            raise SystemExit(f"--tp {tp} must divide num_attention_heads ({heads}) and intermediate_size ({inter})")
        self.tp = tp
        self.heads = heads // tp
        self.kv_heads = max(1, kv // tp)
        self.inter = inter // tp
        self.vocab = vocab
        self.vocab_shard = -(-vocab // tp)
        self.eps = float(cfg.get("rms_norm_eps") or 1e-6)
        self.rope_theta = float(cfg.get("rope_theta") or 10000.0)
        self.rot_dim = int(self.head_dim * float(cfg.get("partial_rotary_factor") or 1.0)) // 2 * 2
        self.max_pos = int(cfg.get("max_position_embeddings") or 4096)
        self.qk_norm = cfg.get("model_type") in QK_NORM_MODEL_TYPES

    def gemm(self, op: str) -> tuple[int, int]:
        h, d = self.hidden, self.head_dim
        return {
            "qkv_proj": (h, (self.heads + 2 * self.kv_heads) * d),
            "o_proj": (self.heads * d, h),
            "gate_up_proj": (h, 2 * self.inter),
            "down_proj": (self.inter, h),
            "lm_head": (h, self.vocab_shard),
        }[op]


def hardware_name(device: str) -> str:
    """A catalogue-style name for a CUDA device name (`--hardware auto`)."""
    known = (("H200", "H200-SXM-141GB"), ("H100 80GB HBM3", "H100-SXM-80GB"), ("A100-SXM4-80GB", "A100-SXM-80GB"),
             ("B200", "B200"), ("L40S", "L40S"), ("RTX 4090", "RTX4090"), ("RTX PRO 6000", "RTXPRO6000"))
    for key, name in known:
        if key in device:
            return name
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in device.replace("NVIDIA ", "")).strip("-")


def model_name(config_path: str, cfg: dict) -> str:
    parts = os.path.normpath(os.path.abspath(config_path)).split(os.sep)
    stem = parts[-1][:-5] if parts[-1].endswith(".json") else parts[-1]
    if stem == "config":
        name = cfg.get("_name_or_path") or ""
        if name.count("/") == 1:
            return name
        return f"{parts[-3]}/{parts[-2]}"
    return f"{parts[-2]}/{stem}"


# ------------------------------------------------------------------------------------------ grids

def _pow2(lo: int, hi: int) -> list[int]:
    out, v = [], lo
    while v <= hi:
        out.append(v)
        v *= 2
    return out


def token_grid(grid: str) -> list[int]:
    if grid == "tiny":
        return [1, 2, 4, 8, 16, 32, 64, 128, 256]
    if grid == "small":
        return _pow2(1, 8192)
    out = [1, 2, 4, 8]
    for p in _pow2(16, 8192):
        out += [p, p + p // 2]
    return sorted(set(out + [16384]))


def seq_grid(grid: str) -> list[int]:
    return {"tiny": _pow2(1, 8), "small": _pow2(1, 256)}.get(grid) or token_grid("full")[:-4]


def attention_grid(grid: str) -> list[tuple[int, int, int, int]]:
    """(prefill_chunk, kv_prefill, n_decode, kv_decode) points."""
    if grid == "tiny":
        dec_n, dec_kv = [1, 4], [16, 128]
        pre_c, pre_ctx = [16, 64, 256], [0, 128]
        mixed = [(64, 4, 128)]
    elif grid == "small":
        dec_n, dec_kv = [1, 4, 16, 64, 256], [128, 1024, 4096, 16384]
        pre_c, pre_ctx = [16, 128, 512, 2048, 8192], [0, 2048, 8192]
        mixed = [(c, n, kv) for c in (256, 2048) for n in (16, 256) for kv in (1024, 4096)]
    else:
        dec_n, dec_kv = _pow2(1, 256), _pow2(128, 16384)
        pre_c, pre_ctx = _pow2(16, 8192), [0, 512, 2048, 8192]
        mixed = [(c, n, kv) for c in (256, 1024, 2048) for n in (16, 64, 256) for kv in (1024, 4096)]
    pts = [(0, 0, n, kv) for n in dec_n for kv in dec_kv if n * kv <= (1 << 21)]
    pts += [(c, ctx, 0, 0) for c in pre_c for ctx in pre_ctx]
    pts += [(c, 0, n, kv) for c, n, kv in mixed]
    return pts


# ----------------------------------------------------------------------------------------- timing

class Timer:
    def __init__(self, torch, device: str, repeats: int, target_ms: float, max_n: int):
        self.torch = torch
        self.cuda = device == "cuda"
        self.repeats = repeats
        self.target_ms = target_ms
        self.max_n = max_n

    def measure(self, fn, min_n: int = 1) -> float:
        """Median µs of one `fn(i)` call (i = call index, for rotating inputs)."""
        return self._cuda(fn, min_n) if self.cuda else self._cpu(fn, min_n)

    def _pick_n(self, one_ms: float, min_n: int) -> int:
        n = int(math.ceil(self.target_ms / max(one_ms, 1e-4)))
        return max(min(n, self.max_n), min(min_n, self.max_n), 3 if self.cuda else 1)

    def _cpu(self, fn, min_n: int) -> float:
        fn(0)
        t0 = time.perf_counter()
        fn(1)
        n = self._pick_n((time.perf_counter() - t0) * 1e3, min_n)
        times = []
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            for i in range(n):
                fn(i)
            times.append((time.perf_counter() - t0) / n)
        return statistics.median(times) * 1e6

    def _cuda(self, fn, min_n: int) -> float:
        torch = self.torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):        # warm-up (cuBLAS workspaces, compiles) off the capture stream
            for i in range(2):
                fn(i)
        torch.cuda.current_stream().wait_stream(side)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(3):
            fn(i)
        end.record()
        end.synchronize()
        n = self._pick_n(start.elapsed_time(end) / 3, min_n)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(n):
                fn(i)
        graph.replay()
        torch.cuda.synchronize()
        times = []
        for _ in range(self.repeats):
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        del graph
        return statistics.median(times) * 1e3 / n


# -------------------------------------------------------------------------------------------- ops

class Ops:
    """Builders of `fn(i)` closures for every op at a given size."""

    def __init__(self, torch, arch: Arch, device: str, dtype, rotate_bytes: int, sampler_top_k: int,
                 max_copies: int):
        import torch.nn.functional as F
        self.torch, self.F, self.a = torch, F, arch
        self.dev, self.dt = device, dtype
        self.esize = torch.tensor([], dtype=dtype).element_size()
        self.rotate_bytes = rotate_bytes
        self.max_copies = max_copies
        self.top_k = sampler_top_k
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(0)
        self._weights: dict = {}
        self.compiled: dict = {}
        self.compile_dynamic = "all"
        a = arch
        self.norm_w = torch.ones(a.hidden, device=device, dtype=dtype)
        self.head_w = torch.ones(a.head_dim, device=device, dtype=dtype)
        inv = 1.0 / (a.rope_theta ** (torch.arange(0, a.rot_dim, 2, device=device, dtype=torch.float32) / a.rot_dim))
        freqs = torch.outer(torch.arange(a.max_pos, device=device, dtype=torch.float32), inv)
        self.cos_sin = torch.cat([freqs.cos(), freqs.sin()], dim=-1).to(dtype)
        self.has_rms_norm = hasattr(F, "rms_norm")

    # --- helpers
    def randn(self, *shape, dtype=None):
        t = self.torch.empty(*shape, device=self.dev, dtype=dtype or self.dt)
        return t.normal_(0.0, 0.5, generator=self.gen)

    def copies(self, nbytes: int) -> int:
        return max(1, min(self.max_copies, -(-self.rotate_bytes // max(1, nbytes))))

    def weights(self, op: str):
        """[c, K, N] rotated copies of one GEMM weight (cached while that op is measured)."""
        if op not in self._weights:
            self._weights.clear()
            k, n = self.a.gemm(op)
            c = self.copies(k * n * self.esize)
            self._weights[op] = self.randn(c, k, n).mul_(0.05)
        return self._weights[op]

    def release(self):
        self._weights.clear()
        if self.dev == "cuda":
            self.torch.cuda.empty_cache()

    def rms_norm(self, x, w, eps):
        if self.has_rms_norm:
            return self.F.rms_norm(x, (x.shape[-1],), w, eps)
        xf = x.float()
        return (xf * self.torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w

    # --- elementwise kernels (module-level shapes; also what torch.compile fuses)
    def k_add_rms_norm(self, x, res, w):
        r = x + res
        return self.rms_norm(r, w, self.a.eps), r

    def k_rms_norm(self, x, w):
        return self.rms_norm(x, w, self.a.eps)

    def k_qk_norm(self, q, k, w):
        a = self.a
        return (self.rms_norm(q.view(q.shape[0], a.heads, a.head_dim), w, a.eps),
                self.rms_norm(k.view(k.shape[0], a.kv_heads, a.head_dim), w, a.eps))

    def k_rotary(self, pos, q, k):
        a, torch = self.a, self.torch
        cos, sin = self.cos_sin.index_select(0, pos).chunk(2, dim=-1)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        half = a.rot_dim // 2
        out = []
        for t, h in ((q, a.heads), (k, a.kv_heads)):
            t = t.view(t.shape[0], h, a.head_dim)
            x1, x2, rest = t[..., :half], t[..., half:a.rot_dim], t[..., a.rot_dim:]
            out.append(torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1).flatten(1))
        return out[0], out[1]

    def k_act(self, x):
        i = x.shape[-1] // 2
        return self.F.silu(x[..., :i]) * x[..., i:]

    def kernel(self, op: str, impl: str):
        base = {"layernorm": self.k_add_rms_norm, "final_layernorm": self.k_rms_norm, "qk_norm": self.k_qk_norm,
                "rotary_emb": self.k_rotary, "act_fn": self.k_act}[op]
        if impl == "eager":
            return base
        if op not in self.compiled:
            fn = self.torch.compile(base, dynamic=self.compile_dynamic == "all", fullgraph=True)
            if self.compile_dynamic == "tokens":
                mark = self.torch._dynamo.maybe_mark_dynamic

                def tokens_dynamic(*xs, _fn=fn):
                    for x in xs:
                        if x.dim() and x.shape[0] > 1 and x is not self.norm_w and x is not self.head_w:
                            mark(x, 0)
                    return _fn(*xs)
                self.compiled[op] = tokens_dynamic
            else:
                self.compiled[op] = fn
        return self.compiled[op]

    # --- closures
    def dense_fn(self, op: str, T: int, impl: str = "eager"):
        a, torch, F = self.a, self.torch, self.F
        if op in GEMMS:
            return self.gemm_fn(op, T)
        if op == "embedding":
            if "embedding" not in self._weights:
                self._weights.clear()
                self._weights["embedding"] = self.randn(a.vocab_shard, a.hidden)
            table = self._weights["embedding"]
            ids = torch.randint(0, a.vocab_shard, (T,), device=self.dev, generator=self.gen)
            return (lambda i: F.embedding(ids, table)), 1
        k = self.kernel(op, impl)
        if op == "layernorm":
            x, r = self.randn(T, a.hidden), self.randn(T, a.hidden)
            return (lambda i: k(x, r, self.norm_w)), 1
        if op == "final_layernorm":
            x = self.randn(T, a.hidden)
            return (lambda i: k(x, self.norm_w)), 1
        if op == "qk_norm":
            q, kk = self.randn(T, a.heads * a.head_dim), self.randn(T, a.kv_heads * a.head_dim)
            return (lambda i: k(q, kk, self.head_w)), 1
        if op == "rotary_emb":
            pos = torch.randint(0, a.max_pos, (T,), device=self.dev, generator=self.gen)
            q, kk = self.randn(T, a.heads * a.head_dim), self.randn(T, a.kv_heads * a.head_dim)
            return (lambda i: k(pos, q, kk)), 1
        if op == "act_fn":
            x = self.randn(T, 2 * a.inter)
            return (lambda i: k(x)), 1
        raise KeyError(op)

    def gemm_fn(self, op: str, T: int):
        w = self.weights(op)
        x = self.randn(T, w.shape[1])
        y = self.torch.empty(T, w.shape[2], device=self.dev, dtype=self.dt)
        c = w.shape[0]
        return (lambda i: self.torch.matmul(x, w[i % c], out=y)), c

    def sampler_fn(self, S: int):
        torch = self.torch
        logits = self.randn(S, self.a.vocab)
        noise = torch.empty(S, self.a.vocab, device=self.dev, dtype=torch.float32).exponential_(generator=self.gen)
        temp = torch.full((S, 1), 0.8, device=self.dev, dtype=torch.float32)
        top_k = self.top_k

        def fn(i):
            x = logits.to(torch.float32, copy=True).div_(temp)
            probs = torch.softmax(x, dim=-1)
            greedy = x.argmax(dim=-1)
            sampled = probs.div_(noise).argmax(dim=-1)
            if top_k:
                torch.topk(probs, top_k, dim=-1)
            return greedy, sampled
        return fn, 1

    # --- attention
    def pick_attention(self, choice: str) -> str:
        """'aten' (PyTorch's built-in FlashAttention-2 varlen), 'flash_attn' (the flash-attn package's
        varlen kernel) or 'sdpa' (fallback): the first of `choice` (auto: that order) that runs."""
        order = ("aten", "flash_attn", "sdpa") if choice == "auto" else (choice,)
        for impl in order:
            if impl == "sdpa":
                return impl
            if self.dev != "cuda" or self.dt == self.torch.float32:
                continue
            try:
                fn, _ = self.attention_fn((8, 4, 2, 16), impl)
                fn(0)
                self.torch.cuda.synchronize()
                return impl
            except Exception as exc:  # noqa: BLE001 - any failure means: try the next one
                print(f"attention {impl} unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
        if choice != "auto":
            raise SystemExit(f"--attention {choice}: not usable here")
        return "sdpa"

    def _kv_buffers(self, total_k: int):
        a = self.a
        per = 2 * total_k * a.kv_heads * a.head_dim * self.esize
        c = self.copies(per)
        k = self.randn(c * total_k, a.kv_heads, a.head_dim)
        v = self.randn(c * total_k, a.kv_heads, a.head_dim)
        return k, v, c

    def _flash_fn(self, pc: int, kp: int, nd: int, kvd: int, package: bool = False):
        torch, a = self.torch, self.a
        lens = ([(pc, kp + pc)] if pc else []) + [(1, kvd)] * nd
        cu_q = torch.tensor([0] + [sum(q for q, _ in lens[:i + 1]) for i in range(len(lens))],
                            device=self.dev, dtype=torch.int32)
        cu_k = torch.tensor([0] + [sum(k for _, k in lens[:i + 1]) for i in range(len(lens))],
                            device=self.dev, dtype=torch.int32)
        tq, tk = int(cu_q[-1]), int(cu_k[-1])
        mq, mk = max(q for q, _ in lens), max(k for _, k in lens)
        q = self.randn(tq, a.heads, a.head_dim)
        kbuf, vbuf, c = self._kv_buffers(tk)
        scale = a.head_dim ** -0.5
        if package:
            from flash_attn import flash_attn_varlen_func

            def fn(i):
                j = (i % c) * tk
                return flash_attn_varlen_func(q, kbuf[j:j + tk], vbuf[j:j + tk], cu_q, cu_k, mq, mk,
                                              softmax_scale=scale, causal=True)
            return fn, c
        op = torch.ops.aten._flash_attention_forward

        def fn(i):
            j = (i % c) * tk
            return op(q, kbuf[j:j + tk], vbuf[j:j + tk], cu_q, cu_k, mq, mk, 0.0, True, False, scale=scale)[0]
        return fn, c

    def _sdpa_fn(self, pc: int, kp: int, nd: int, kvd: int):
        torch, F, a = self.torch, self.F, self.a
        gqa = a.heads != a.kv_heads
        groups = []
        if pc:
            lk = kp + pc
            mask = torch.arange(lk, device=self.dev)[None, :] <= torch.arange(pc, device=self.dev)[:, None] + kp
            groups.append((1, pc, lk, mask))
        if nd:
            groups.append((nd, 1, kvd, None))
        per = sum(2 * b * lk * a.kv_heads * a.head_dim * self.esize for b, _, lk, _ in groups)
        c = self.copies(per)
        built = []
        for b, lq, lk, mask in groups:
            q = self.randn(b, a.heads, lq, a.head_dim)
            k = self.randn(c, b, a.kv_heads, lk, a.head_dim)
            v = self.randn(c, b, a.kv_heads, lk, a.head_dim)
            built.append((q, k, v, mask))

        def expand(t):
            return t.repeat_interleave(a.heads // a.kv_heads, dim=1) if gqa else t

        def fn(i):
            j = i % c
            for q, k, v, mask in built:
                try:
                    F.scaled_dot_product_attention(q, k[j], v[j], attn_mask=mask, enable_gqa=gqa)
                except TypeError:  # torch < 2.5: no enable_gqa
                    F.scaled_dot_product_attention(q, expand(k[j]), expand(v[j]), attn_mask=mask)
        return fn, c

    def attention_fn(self, point, impl: str):
        if impl == "sdpa":
            return self._sdpa_fn(*point)
        return self._flash_fn(*point, package=impl == "flash_attn")


# ---------------------------------------------------------------------------------------- output

def fmt(x: float) -> str:
    s = f"{x:.4f}".rstrip("0").rstrip(".")
    return s if s not in ("", "0", "-0") else "0.0001"


def read_rows(path: str, key_cols: tuple) -> list:
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [tuple(r[c] if c == "layer" else int(r[c]) for c in key_cols) + (float(r["time_us"]),)
                for r in csv.DictReader(fh)]


def write_rows(path: str, header: tuple, rows: list) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([fmt(v) if isinstance(v, float) else v for v in r])
    os.replace(tmp, path)


def yaml_scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def write_meta(path: str, meta: dict) -> None:
    lines = []
    for key, value in meta.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"- {yaml_scalar(v)}" for v in value]
        elif isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {yaml_scalar(v)}" for k, v in value.items()]
        elif isinstance(value, str) and "\n" in value:
            lines.append(f"{key}: |")
            lines += [f"  {ln}" if ln else "" for ln in value.rstrip("\n").split("\n")]
        else:
            lines.append(f"{key}: {yaml_scalar(value)}")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def existing_tp_degrees(path: str) -> set:
    found, inside = set(), False
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            for ln in fh:
                if ln.startswith("tp_degrees:"):
                    inside = True
                elif inside and ln.startswith("- "):
                    found.add(int(ln[2:].strip()))
                else:
                    inside = False
    return found


def monotone(rows: list) -> list:
    """Per op (rows sorted by key), each time at least the previous one."""
    out, last = [], {}
    for op, key, t in sorted(rows, key=lambda r: (r[0], r[1])):
        t = max(t, last.get(op, 0.0))
        last[op] = t
        out.append((op, key, t))
    return out


# ------------------------------------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="HF config.json of the model")
    p.add_argument("--model", help="bundle model name org/name (default: from the --config path)")
    p.add_argument("--hardware", required=True,
                   help="hardware name, the bundle's top folder (e.g. H100-SXM-80GB); auto: from the device name")
    p.add_argument("--out", default="configs/perf", help="perf root to write under")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--grid", choices=("tiny", "small", "full"), default="small")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    p.add_argument("--dtype", choices=tuple(VARIANTS), default="bfloat16")
    p.add_argument("--variant", help="bundle variant folder (default from dtype: bf16/fp16/fp32)")
    p.add_argument("--layers-subset", help="comma-separated ops to measure (" + ",".join(ALL_OPS) + ")")
    p.add_argument("--max-tokens", type=int, help="cap the token grid and prefill chunks")
    p.add_argument("--max-seqs", type=int, help="cap the sequence grid")
    p.add_argument("--max-kv", type=int, help="cap kv_decode and kv_prefill + chunk")
    p.add_argument("--attention", choices=("auto", "aten", "flash_attn", "sdpa"), default="auto",
                   help="attention kernel (auto: PyTorch's flash varlen, else flash-attn's, else SDPA)")
    p.add_argument("--fuse", choices=("auto", "compile", "eager"), default="auto",
                   help="also measure torch.compile'd elementwise ops (auto: on CUDA if triton imports)")
    p.add_argument("--compile-dynamic", choices=("all", "tokens"), default="all",
                   help="torch.compile shapes: all dims dynamic (dynamic=True; what the shipped H200 bundle used) or "
                        "only the token dim (static feature dims, as vLLM compiles; not yet run on a GPU)")
    p.add_argument("--rotate-mib", type=float, help="total size of rotated weight/KV copies (default 256 on CUDA, 0 on CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats, median taken (default 7 CUDA, 5 CPU)")
    p.add_argument("--target-ms", type=float, default=None, help="time of one captured graph / loop (default 2 CUDA, 1 CPU)")
    p.add_argument("--max-n", type=int, default=200, help="most op calls per graph / loop")
    p.add_argument("--monotone", choices=("auto", "on", "off"), default="auto",
                   help="make dense/per-sequence curves non-decreasing (auto: on for CPU)")
    p.add_argument("--sampler-top-k", type=int, default=0)
    p.add_argument("--deadline-s", type=float, default=0,
                   help="skip the remaining compiled-op measurements after this many seconds (0: none)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    cuda = device == "cuda"
    dtype = getattr(torch, args.dtype)
    with open(args.config, encoding="utf-8") as fh:
        cfg = json.load(fh)
    arch = Arch(cfg, args.tp)
    model = args.model or model_name(args.config, cfg)
    variant = args.variant or VARIANTS[args.dtype]
    subset = set(ALL_OPS)
    if args.layers_subset:
        subset = {s.strip() for s in args.layers_subset.split(",") if s.strip()}
        unknown = subset - set(ALL_OPS)
        if unknown:
            raise SystemExit(f"--layers-subset: unknown op(s) {sorted(unknown)}; known: {','.join(ALL_OPS)}")
    if not arch.qk_norm:
        if args.layers_subset and "qk_norm" in subset:
            raise SystemExit(f"--layers-subset: qk_norm: model_type {cfg.get('model_type')!r} has no per-head q/k norm")
        subset.discard("qk_norm")
    fuse = args.fuse
    if fuse == "auto":
        fuse = "eager"
        if cuda:
            try:
                import triton  # noqa: F401
                fuse = "compile"
            except ImportError:
                pass
    mono = args.monotone == "on" or (args.monotone == "auto" and not cuda)
    rotate = int((args.rotate_mib if args.rotate_mib is not None else (256 if cuda else 0)) * MiB)
    timer = Timer(torch, device, args.repeats or (7 if cuda else 5), args.target_ms or (2.0 if cuda else 1.0),
                  args.max_n)
    ops = Ops(torch, arch, device, dtype, rotate, args.sampler_top_k, args.max_n)
    ops.compile_dynamic = args.compile_dynamic

    tokens = [t for t in token_grid(args.grid) if not args.max_tokens or t <= args.max_tokens]
    seqs = [s for s in seq_grid(args.grid) if not args.max_seqs or s <= args.max_seqs]
    att_pts = [p for p in attention_grid(args.grid)
               if (not args.max_tokens or p[0] <= args.max_tokens)
               and (not args.max_kv or (p[3] <= args.max_kv and p[0] + p[1] <= args.max_kv))]

    gpu = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    hardware = args.hardware if args.hardware != "auto" else hardware_name(gpu if cuda else "CPU")
    variant_dir = os.path.join(args.out, hardware, *model.split("/"), variant)
    tp_dir = os.path.join(variant_dir, f"tp{args.tp}")
    os.makedirs(tp_dir, exist_ok=True)
    paths = {n: os.path.join(tp_dir, n) for n in ("dense.csv", "per_sequence.csv", "attention.csv", "profile_raw.csv")}
    dense_rows = [r for r in read_rows(paths["dense.csv"], ("layer", "tokens")) if r[0] not in subset]
    seq_rows = [r for r in read_rows(paths["per_sequence.csv"], ("layer", "sequences")) if r[0] not in subset]
    att_rows = [] if "attention" in subset else read_rows(paths["attention.csv"], ATT_COLS)
    raw: list = []          # (op, impl, key, us)
    failed: list = []       # ops whose compiled variant failed
    best: dict = {}         # (op, key) -> us
    wins: dict = {}         # op -> points where the compiled kernel was faster

    cuda_ver = f"CUDA {torch.version.cuda}" if cuda else "CPU"
    att_choice = ops.pick_attention(args.attention) if "attention" in subset else "sdpa"
    att_impl = {"aten": "torch.ops.aten._flash_attention_forward (FlashAttention-2 varlen, built into PyTorch)",
                "flash_attn": "flash_attn.flash_attn_varlen_func (flash-attn package)",
                "sdpa": "F.scaled_dot_product_attention, one call per uniform group (fallback)"}[att_choice]
    print(f"profiling {model} tp{args.tp} {args.dtype} on {gpu} (torch {torch.__version__}, {cuda_ver}); "
          f"grid {args.grid}: {len(tokens)} T, {len(seqs)} S, {len(att_pts)} attention points; "
          f"attention: {att_choice}; fuse: {fuse}", flush=True)

    def meta(status: str) -> dict:
        degrees = sorted(existing_tp_degrees(os.path.join(variant_dir, "meta.yaml")) | {args.tp})
        return {
            "hardware": hardware,
            "gpu": gpu,
            "model": model,
            "variant": variant,
            "tp_degrees": degrees,
            "framework": f"PyTorch {torch.__version__} ({cuda_ver}), " + ("CUDA graphs" if cuda else "wall-clock loops"),
            # not the serving engine's kernel: the profile backend prices mixed steps as parts
            "mixed_attention_kernel": {"aten": "flash_attn2_varlen", "flash_attn": "flash_attn2_varlen",
                                       "sdpa": "sdpa"}[att_choice],
            "attention_pricing": "per_sequence",
            "profiler": {
                "script": "scripts/profile_gpu.py",
                "status": status,
                "grid": args.grid,
                "dtype": args.dtype,
                "tp": args.tp,
                "layers_subset": ",".join(sorted(subset)),
                "attention": att_impl,
                "fuse": fuse,
                "compile_dynamic": args.compile_dynamic,
                "fused_picked": ", ".join(f"{op} {wins.get(op, 0)}/{len(tokens)}" for op in ELEMENTWISE
                                          if op in subset) if fuse == "compile" else "none",
                "fused_failed": ",".join(failed) or "none",
                "rotate_mib": rotate / MiB,
                "repeats": timer.repeats,
                "target_ms": timer.target_ms,
                "monotone": mono,
                "elapsed_s": round(time.time() - t_start, 1),
            },
            "source": (
                f"Measured by scripts/profile_gpu.py on {gpu}, PyTorch {torch.__version__} ({cuda_ver}), "
                f"{args.dtype}, one TP rank of tp={args.tp} (no communication). "
                + ("Every op captured n times in one CUDA graph and replayed, median of repeats / n. "
                   if cuda else "Wall-clock loops, median of repeats / n. ")
                + f"GEMM weights and attention K/V rotated among copies totalling >= {rotate // MiB} MiB.\n"
                "dense.csv: embedding gather; layernorm = residual add + rms_norm; final_layernorm = rms_norm; "
                + ("qk_norm = rms_norm per head over q and over k (two kernels); " if "qk_norm" in subset else "")
                + "rotary_emb = neox rotate-half on q and k; act_fn = silu(gate)*up; elementwise ops take the "
                "faster of eager PyTorch and torch.compile (when fuse=compile); GEMMs x[T,K] @ W[K,N].\n"
                "per_sequence.csv: lm_head GEMM at S rows (vocab/tp); sampler = fp32 softmax + argmax over "
                "the full vocab.\n"
                f"attention.csv: one causal varlen call per layer ({att_impl}); GQA; bottom-right causal; "
                "one prefill chunk after kv_prefill cached tokens + n_decode decodes of kv_decode tokens.\n"
                "No skew profile.\n"),
        }

    def flush(status: str) -> None:
        d = [(op, t, best[(op, t)]) for op in DENSE_OPS for t in tokens if (op, t) in best]
        s = [(op, n, best[(op, n)]) for op in SEQ_OPS for n in seqs if (op, n) in best]
        if mono:
            d, s = monotone(d), monotone(s)
        order = {op: i for i, op in enumerate(DENSE_OPS + SEQ_OPS)}
        d = sorted(dense_rows + d, key=lambda r: (order.get(r[0], 99), r[0], r[1]))
        s = sorted(seq_rows + s, key=lambda r: (order.get(r[0], 99), r[0], r[1]))
        write_rows(paths["dense.csv"], ("layer", "tokens", "time_us"), d)
        write_rows(paths["per_sequence.csv"], ("layer", "sequences", "time_us"), s)
        write_rows(paths["attention.csv"], ATT_COLS + ("time_us",), sorted(att_rows))
        write_rows(paths["profile_raw.csv"], ("op", "impl", "key", "time_us"),
                   [(o, i, k if isinstance(k, int) else "/".join(map(str, k)), t) for o, i, k, t in raw])
        write_meta(os.path.join(variant_dir, "meta.yaml"), meta(status))

    def record(op, impl, key, us):
        raw.append((op, impl, key, us))
        if (op, key) not in best or us < best[(op, key)]:
            if impl != "eager":
                wins[op] = wins.get(op, 0) + 1
            best[(op, key)] = us

    if cuda:  # bring the clocks up before the first measurement
        a = torch.randn(4096, 4096, device=device, dtype=dtype)
        t0 = time.time()
        while time.time() - t0 < 1.0:
            for _ in range(20):
                a @ a
            torch.cuda.synchronize()
        del a
    # 1. dense ops (eager)
    for op in DENSE_OPS:
        if op not in subset:
            continue
        t0 = time.time()
        for T in tokens:
            fn, c = ops.dense_fn(op, T)
            record(op, "eager", T, timer.measure(fn, min_n=c))
        ops.release()
        print(f"  {op:16s} {len(tokens)} points {time.time() - t0:6.1f}s  "
              f"T={tokens[0]}: {best[(op, tokens[0])]:.2f}us  T={tokens[-1]}: {best[(op, tokens[-1])]:.2f}us", flush=True)
    flush("partial")
    # 2. per-sequence ops
    for op in SEQ_OPS:
        if op not in subset:
            continue
        t0 = time.time()
        for S in seqs:
            fn, c = ops.gemm_fn("lm_head", S) if op == "lm_head" else ops.sampler_fn(S)
            record(op, "eager", S, timer.measure(fn, min_n=c))
        ops.release()
        print(f"  {op:16s} {len(seqs)} points {time.time() - t0:6.1f}s", flush=True)
    flush("partial")
    # 3. attention
    if "attention" in subset:
        t0 = time.time()
        for p in att_pts:
            fn, c = ops.attention_fn(p, att_choice)
            us = timer.measure(fn, min_n=c)
            raw.append(("attention", att_choice, p, us))
            att_rows.append(p + (us,))
            del fn
            ops.release()
        print(f"  attention        {len(att_pts)} points {time.time() - t0:6.1f}s", flush=True)
        flush("partial")
    # 4. compiled elementwise ops (last: a failure or timeout leaves the eager tables intact)
    status = "complete"
    if fuse == "compile":
        for op in ELEMENTWISE:
            if op not in subset:
                continue
            t0 = time.time()
            try:
                for T in tokens:
                    if args.deadline_s and time.time() - t_start > args.deadline_s:
                        status = "complete (compiled pass cut by --deadline-s)"
                        break
                    fn, c = ops.dense_fn(op, T, impl="compile")
                    record(op, "compile", T, timer.measure(fn, min_n=c))
            except Exception as exc:  # noqa: BLE001 - keep eager values
                print(f"  {op}: compiled variant failed ({type(exc).__name__}: {exc}); eager kept", file=sys.stderr)
                failed.append(op)
            print(f"  {op:16s} compiled {time.time() - t0:6.1f}s  faster at {wins.get(op, 0)}/{len(tokens)} T",
                  flush=True)
            flush("partial")
    flush(status)
    print(f"wrote {tp_dir} in {time.time() - t_start:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

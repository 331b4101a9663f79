"""The *roofline* backend: analytical step times from `ModelArch` + `Hardware` (+ tp, ep) only.

Every kernel costs `launch + max(compute, memory)` (seconds → integer ns, at least 1):

- GEMM `(M tokens) × K → N`: compute = 2·M·N·K / (peak · eff_c(M)) with the saturating curve
  eff_c(M) = c_max · M / (M + m_half) (small M cannot fill the tensor cores); memory =
  (K·N + M·K + M·N)·dtype / (bw · e_mem) (weights read once per step + activations).
- attention, prefill chunks: FlashAttention's tile model. Each chunk of c new tokens with k cached
  tokens runs heads · ⌈c/Bq⌉ CTAs; query block i reads k + min((i+1)·Bq, c) keys (causal), plus a
  fixed per-CTA cost of `cta_keys` keys. The CTAs run in ⌈CTAs / sm_count⌉ waves (and no faster
  than the longest CTA) at 4·Bq·head_dim FLOPs per key on one SM at (peak / sm_count)·c_max
  (`sm_count` from the hardware YAML). This is the 2·2·heads·hd·c·(k + c/2) FLOPs of causal
  attention, quantised to tiles and waves (a small chunk over a long context is latency-bound on a
  few SMs, as measured). Memory term: Q, O and the
  K/V of k + c tokens.
- attention, decodes: memory-bound (split-KV decode kernel), (ctx + 1) · kv_bytes_per_token_per_layer
  per sequence at bw · e_mem; when the decodes' CTAs (decodes × KV heads) fill more than one wave
  of SMs, at most `attention.max_gbps` (an SM-side ceiling that does not scale with HBM bandwidth:
  measured on H100 and H200 alike; 0 = none). In a step that also has a prefill chunk the decodes run inside the
  varlen prefill kernel as 1-token chunks (one CTA per sequence and head over its whole context,
  no split-KV), i.e. they join the tile/wave model; this is what makes mixed steps much slower
  than the sum of their parts on FlashAttention-2 varlen (measured on H100 and RTX PRO 6000).
  `mixed_decode_tiles: 0` prices them with the decode kernel instead (sum of the parts). One
  launch per layer.
- elementwise ops (memory-bound): layernorm (fused residual add + RMSNorm, 4·T·h bytes, ×2 per
  layer), qk_norm where the architecture lists it (Qwen3: RMSNorm per head on q and on k, two
  kernels of 2·T·heads·hd and 2·T·kv_heads·hd bytes, final_layernorm's parameters unless
  `elementwise.qk_norm` is calibrated), rotary_emb (q and k read + written), act_fn (SiLU·mul: 3·T·I), embedding (2·T·h),
  final_layernorm (2·T·h), sampler (fp32 logits read twice, 2·S·vocab·4), each with its own
  bandwidth efficiency and launch time where calibrated; the part of an elementwise op's traffic
  that fits in the L2 cache (`l2_mib` in the hardware YAML) moves `l2_gain` times faster.
- per sequence: lm_head GEMM with M = S (logits only at sampled positions), sampler.

FP8 (`ModelArch.linear_dtype_bytes` 1): the decoder's linear layers (qkv, o, gate_up, down,
experts) stream 1-byte weights and multiply at `Hardware.fp8_tflops` (the bf16 peak where the GPU
has no fp8 tensor cores); lm_head, the MoE router and activations stay bf16. An fp8 KV cache
(`kv_dtype_bytes` 1) halves the attention's K/V bytes.

TP shards heads, KV heads (replicated below tp), intermediate and vocab by tp and adds two ring
all-reduces per layer of T·hidden·dtype bytes (`collectives`: the instance's network). MoE layers (ModelArch.is_moe)
replace gate_up/down with a router GEMM (T × hidden → E) and grouped expert GEMMs over the T·k
routed token copies: balanced routing spreads them evenly, experts touched = min(E, T·k), weights
read for touched experts only; `moe_skew` s > 0 routes with Zipf-like popularity p_e ∝ rank^-s
(a per-layer permutation drawn once from `numpy.random.default_rng(MOE_SEED)`; expected counts,
expected experts touched Σ 1 − (1 − p_e)^(T·k), and the slowest EP rank sets the layer time),
deterministic. EP (`ep` > 1) splits the experts over ep ranks (whole experts; their intermediate
is sharded by tp // ep when tp > ep) and adds an all-to-all dispatch and combine of the T·k·hidden
routed activations: (ep−1)·(latency + recv_bytes/(ep·bw)) on the busiest rank; with ep > 1 the
MoE combine replaces the MLP all-reduce (one all-reduce per layer left for attention when tp > 1).
The instance then spans max(tp, ep) GPUs; attention and the dense ops are priced at tp (replicated
when ep > tp) and the step time is that of one rank (the busiest).

Efficiency parameters live in the hardware YAML's `efficiency:` mapping (nested: `gemm`,
`attention`, `elementwise` (+ per-op sub-mappings)); missing keys take `DEFAULT_EFFICIENCY`
(generic, uncalibrated values). `calibrate.py` fits them to a measured bundle.
"""
from __future__ import annotations

import math

import numpy as np

from fleetsim.costmodel.architecture import sequence_for
from fleetsim.costmodel.batch import BatchShape
from fleetsim.costmodel.catalogue import flatten, merge_efficiency
from fleetsim.costmodel.collectives import default_network
from fleetsim.costmodel.errors import CostModelError

MOE_SEED = 20240917
DEFAULT_SM_COUNT = 132

# Generic values (not fitted to any measurement): what a well-tuned cuBLAS / FlashAttention stack
# typically reaches. Calibrated hardware entries override them.
DEFAULT_EFFICIENCY = {
    "gemm": {"c_max": 0.75, "m_half": 64.0, "e_mem": 0.85, "launch_us": 4.0},
    "attention": {"c_max": 0.45, "cta_keys": 256.0, "block_q": 128, "e_mem": 0.75, "launch_us": 6.0,
                  "mixed_decode_tiles": 1, "max_gbps": 0.0},
    "elementwise": {"e_mem": 0.7, "launch_us": 3.0, "l2_gain": 1.0},
}
ELEMENTWISE_OPS = ("embedding", "layernorm", "rotary_emb", "act_fn", "final_layernorm", "sampler")
GEMM_OPS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head", "moe_router")
PRICED_OPS = set(ELEMENTWISE_OPS) | set(GEMM_OPS) | {"qk_norm"}


def _ns(seconds: float) -> int:
    return max(1, round(seconds * 1e9))


class RooflineBackend:
    """Prices a `BatchShape` analytically (see the module docstring). Same interface as
    `ProfileBackend`: `time_batch(BatchShape) -> int ns`, `breakdown(BatchShape) -> {op: ns}`."""

    name = "roofline"

    def __init__(self, arch, hardware, tp: int = 1, ep: int = 1, moe_skew: float = 0.0,
                 sm_count: int | None = None, efficiency: dict | None = None, l2_mib: float | None = None,
                 network=None):
        if not isinstance(ep, int) or ep < 1:
            raise CostModelError(f"ep must be a positive integer, got {ep!r}")
        if ep > 1 and not arch.is_moe:
            raise CostModelError(f"ep={ep}: model {arch.name} has no experts")
        if moe_skew < 0:
            raise CostModelError(f"moe_skew must be >= 0, got {moe_skew!r}")
        self.arch, self.hardware, self.tp, self.ep = arch, hardware, tp, ep
        self.network = network if network is not None else default_network(hardware)
        self.moe_skew = float(moe_skew)
        self.sm_count = int(sm_count or DEFAULT_SM_COUNT)
        self.l2_bytes = float(l2_mib or 0.0) * 2**20
        eff = merge_efficiency(DEFAULT_EFFICIENCY, hardware.efficiency if efficiency is None else efficiency)
        self.eff = flatten(eff)
        for key in ("e_mem", "launch_us", "l2_gain"):       # qk_norm: the RMSNorm kernel of final_layernorm
            self.eff.setdefault(f"elementwise.qk_norm.{key}", self.elem_p("final_layernorm", key))
        seq = sequence_for(arch.model_type)
        unknown = sorted({*seq.layer_ops(arch.is_moe), *seq.pre_ops, *seq.post_ops, *seq.seq_ops} - PRICED_OPS)
        if unknown:
            raise CostModelError(f"roofline: no model for op(s) {', '.join(unknown)} of the {seq.name!r} architecture")
        self.qk_norm = "qk_norm" in seq.layer_ops(arch.is_moe)
        self.peak = hardware.bf16_tflops * 1e12
        self.bw = hardware.hbm_gbps * 1e9
        a, dt = arch, arch.dtype_bytes
        self.dt = dt
        self.linear_dt = a.linear_dtype_bytes
        fp8 = a.linear_dtype_bytes == 1 and hardware.fp8_tflops > 0
        self.linear_peak = hardware.fp8_tflops * 1e12 if fp8 else self.peak
        self.L = a.num_layers
        self.h = a.hidden_size
        self.hd = a.head_dim
        self.heads = max(1, a.num_heads // tp)
        self.kv_heads = a.kv_heads_per_rank(tp)
        self.inter = max(1, a.intermediate_size // tp)
        self.vocab_shard = max(1, a.vocab_size // tp)
        self.vocab = a.vocab_size
        self.kv_token_layer = 2 * self.kv_heads * self.hd * a.kv_dtype_bytes   # K+V bytes of one token, one layer
        if a.is_moe:
            shard = max(1, tp // ep) if ep > 1 else tp
            self.moe_inter = max(1, a.moe_intermediate_size // shard)
            self.experts = a.num_experts
            self.topk = max(1, a.experts_per_token)
            self.experts_per_rank = math.ceil(a.num_experts / ep)
            self._popularity = self._routing_popularity() if self.moe_skew > 0 else None
        self._dense_cache: dict = {}
        self._seq_cache: dict = {}
        self._dense_totals: dict = {}
        self._seq_totals: dict = {}
        self._decode_consts: dict = {}     # n -> `decode_steps`' constants (a simulation's eff is fixed,
                                           # as for the totals above; calibration prices uncached)

    # ---- primitives (seconds) -------------------------------------------------------------
    def p(self, key: str) -> float:
        return float(self.eff[key])

    def elem_p(self, op: str, key: str) -> float:
        return float(self.eff.get(f"elementwise.{op}.{key}", self.eff[f"elementwise.{key}"]))

    def eff_c(self, m: float) -> float:
        return self.p("gemm.c_max") * m / (m + self.p("gemm.m_half"))

    def gemm_s(self, m: float, n: float, k: float, weight_copies: float = 1.0, linear: bool = True) -> float:
        """One GEMM (or a grouped GEMM over `weight_copies` weight matrices, m rows in total);
        `linear`: a decoder linear layer (fp8 weights and peak when the model is served in fp8)."""
        if m <= 0:
            return 0.0
        rows_per_matrix = m / weight_copies
        peak, wdt = (self.linear_peak, self.linear_dt) if linear else (self.peak, self.dt)
        compute = 2.0 * m * n * k / (peak * self.eff_c(rows_per_matrix))
        if wdt == self.dt:
            nbytes = (weight_copies * k * n + m * k + m * n) * self.dt
        else:
            nbytes = weight_copies * k * n * wdt + (m * k + m * n) * self.dt
        memory = nbytes / (self.bw * self.p("gemm.e_mem"))
        return self.p("gemm.launch_us") * 1e-6 + max(compute, memory)

    def elementwise_s(self, op: str, nbytes: float) -> float:
        """launch + bytes at HBM speed, except the part that fits in L2 (activations just written
        by the previous kernel), which moves `l2_gain` times faster."""
        in_l2 = min(nbytes, self.l2_bytes)
        hbm = nbytes - in_l2 + in_l2 / self.elem_p(op, "l2_gain")
        return self.elem_p(op, "launch_us") * 1e-6 + hbm / (self.bw * self.elem_p(op, "e_mem"))

    def elementwise_bytes(self, op: str, t: float) -> float:
        dt, h = self.dt, self.h
        if op == "embedding":
            return 2.0 * t * h * dt
        if op == "layernorm":
            return 4.0 * t * h * dt
        if op == "final_layernorm":
            return 2.0 * t * h * dt
        if op == "rotary_emb":
            return 2.0 * t * (self.heads + self.kv_heads) * self.hd * dt
        if op == "act_fn":
            return 3.0 * t * self.inter * dt
        if op == "sampler":
            return 2.0 * t * self.vocab * 4
        raise KeyError(op)

    def op_s(self, op: str, t: float) -> float:
        """One kernel of a token-proportional op (or per-sequence op, t = S) for t rows."""
        if op == "qk_norm":
            hd, dt = self.hd, self.dt
            return (self.elementwise_s(op, 2.0 * t * self.heads * hd * dt)
                    + self.elementwise_s(op, 2.0 * t * self.kv_heads * hd * dt))
        if op in ELEMENTWISE_OPS:
            if op == "act_fn" and self.arch.is_moe:
                return self.moe_act_s(t)
            return self.elementwise_s(op, self.elementwise_bytes(op, t))
        h, hd = self.h, self.hd
        if op == "qkv_proj":
            return self.gemm_s(t, (self.heads + 2 * self.kv_heads) * hd, h)
        if op == "o_proj":
            return self.gemm_s(t, h, self.heads * hd)
        if op == "gate_up_proj":
            return self.gemm_s(t, 2 * self.inter, h)
        if op == "down_proj":
            return self.gemm_s(t, h, self.inter)
        if op == "lm_head":
            return self.gemm_s(t, self.vocab_shard, h, linear=False)
        if op == "moe_router":
            return self.gemm_s(t, self.experts, h, linear=False)
        raise KeyError(op)

    # ---- attention --------------------------------------------------------------------------
    def attention_parts_s(self, prefills, decodes: int, decode_ctx_sum: int,
                          decode_ctx_max: int | None = None) -> tuple[float, float]:
        """(varlen / prefill part, split-KV decode part) of one layer's attention, seconds, no launch.

        With a prefill in the step (and `attention.mixed_decode_tiles` on), the decodes run inside
        the varlen prefill kernel as 1-token chunks: one CTA per (sequence, head) over its whole
        context, no split-KV, so they join the tile/wave model instead of the decode kernel."""
        hd, heads, dt = self.hd, self.heads, self.dt
        pre = dec = 0.0
        tiled_decodes = decodes if (prefills and self.p("attention.mixed_decode_tiles") >= 0.5) else 0
        if prefills:
            bq = int(self.p("attention.block_q"))
            extra = self.p("attention.cta_keys")
            ctas = tiled_decodes
            key_work = decode_ctx_sum + tiled_decodes * (1 + extra) if tiled_decodes else 0.0
            longest = 0.0
            if tiled_decodes:
                longest = (decode_ctx_max if decode_ctx_max is not None else decode_ctx_sum / decodes) + 1 + extra
            nbytes = 0.0
            for c, k in prefills:
                nb = -(-c // bq)
                ctas += nb
                key_work += nb * (k + extra) + bq * nb * (nb - 1) / 2 + c
                longest = max(longest, k + c + extra)
                nbytes += 2.0 * c * heads * hd * dt + (k + c) * self.kv_token_layer
            if tiled_decodes:
                nbytes += (decode_ctx_sum + decodes) * self.kv_token_layer + 2.0 * decodes * heads * hd * dt
            ctas *= heads
            key_work *= heads
            per_key = 4.0 * bq * hd / (self.peak / self.sm_count * self.p("attention.c_max"))
            waves = -(-ctas // self.sm_count)
            compute = max(waves * key_work / ctas, longest) * per_key
            pre = max(compute, nbytes / (self.bw * self.p("attention.e_mem")))
        if decodes and not tiled_decodes:
            keys = decode_ctx_sum + decodes
            nbytes = keys * self.kv_token_layer + 2.0 * decodes * heads * hd * dt
            flops = 4.0 * heads * hd * keys
            dec = max(nbytes / self.decode_bw(decodes),
                      flops / (self.peak * self.p("attention.c_max")))
        return pre, dec

    def decode_bw(self, decodes: int) -> float:
        """Bytes/s of the split-KV decode kernel: bw · e_mem, capped at `attention.max_gbps` once
        its CTAs (decodes × KV heads) need more than one wave of SMs."""
        bw = self.bw * self.p("attention.e_mem")
        ceiling = self.p("attention.max_gbps") * 1e9
        if ceiling > 0 and decodes * self.kv_heads > self.sm_count:
            return min(bw, ceiling)
        return bw

    def attention_s(self, prefills, decodes: int, decode_ctx_sum: int, decode_ctx_max: int | None = None) -> float:
        if not prefills and not decodes:
            return 0.0
        pre, dec = self.attention_parts_s(prefills, decodes, decode_ctx_sum, decode_ctx_max)
        return self.p("attention.launch_us") * 1e-6 + pre + dec

    def attention_ns(self, b: BatchShape) -> int:
        if not b.prefills and not b.decodes:
            return 0
        return _ns(self.attention_s(b.prefills, b.decodes, b.decode_ctx_sum, b.decode_ctx_max))

    # ---- MoE -------------------------------------------------------------------------------------
    def _routing_popularity(self) -> np.ndarray:
        """(layers, E) expert popularity, Zipf-like with exponent moe_skew, a seeded permutation per layer."""
        rng = np.random.default_rng(MOE_SEED)
        E = self.experts
        base = 1.0 / np.arange(1, E + 1, dtype=np.float64) ** self.moe_skew
        base /= base.sum()
        return np.stack([base[rng.permutation(E)] for _ in range(self.L)])

    def _rank_loads(self, t: float) -> list[tuple[float, float]]:
        """Per layer: (routed token copies, experts touched) on the busiest EP rank."""
        tk = t * self.topk
        if self._popularity is None:
            return [(tk / self.ep, min(self.experts, tk) / self.ep)] * self.L
        P = self._popularity
        E, per = self.experts, self.experts_per_rank
        pad = per * self.ep - E
        copies = np.pad(P * tk, ((0, 0), (0, pad))).reshape(self.L, self.ep, per).sum(axis=2)
        touched = np.pad(1.0 - (1.0 - P) ** tk, ((0, 0), (0, pad))).reshape(self.L, self.ep, per).sum(axis=2)
        busiest = np.argmax(copies, axis=1)
        rows = np.arange(self.L)
        return list(zip(copies[rows, busiest].tolist(), touched[rows, busiest].tolist()))

    def moe_experts_s(self, t: float) -> float:
        """Grouped gate_up + down expert GEMMs, summed over layers (slowest rank per layer)."""
        h, i = self.h, self.moe_inter
        total = 0.0
        for copies, touched in self._rank_loads(t):
            touched = max(touched, 1e-9)
            total += self.gemm_s(copies, 2 * i, h, touched) + self.gemm_s(copies, h, i, touched)
        return total

    def moe_act_s(self, t: float) -> float:
        """SiLU·mul over the routed token copies of one layer (busiest rank, balanced estimate)."""
        copies = t * self.topk / self.ep
        return self.elementwise_s("act_fn", 3.0 * copies * self.moe_inter * self.dt)

    def alltoall_s(self, t: float) -> float:
        """One EP all-to-all of the step's routed activations (busiest rank receives its share)."""
        if self.ep <= 1:
            return 0.0
        hw = self.hardware
        if hw.interconnect_gbps <= 0:
            raise CostModelError(f"hardware {hw.name}: interconnect_gbps is needed for ep > 1")
        share = max(c for c, _ in self._rank_loads(t)) / max(t * self.topk, 1e-9)
        recv = t * self.topk * self.h * self.dt * share
        n = self.ep
        return (n - 1) * (hw.interconnect_latency_us * 1e-6 + recv / (n * hw.interconnect_gbps * 1e9))

    # ---- step composition ------------------------------------------------------------------
    def dense_ops(self, t: int) -> dict[str, int]:
        """Per-op ns summed over layers for the token-proportional ops at T = t (no attention)."""
        hit = self._dense_cache.get(t)
        if hit is not None:
            return hit
        L = self.L
        out = {"embedding": _ns(self.op_s("embedding", t)),
               "layernorm": L * 2 * _ns(self.op_s("layernorm", t)),
               "qkv_proj": L * _ns(self.op_s("qkv_proj", t)),
               "rotary_emb": L * _ns(self.op_s("rotary_emb", t)),
               "o_proj": L * _ns(self.op_s("o_proj", t))}
        if self.qk_norm:
            out["qk_norm"] = L * _ns(self.op_s("qk_norm", t))
        if self.arch.is_moe:
            out["moe_router"] = L * _ns(self.op_s("moe_router", t))
            out["moe_experts"] = _ns(self.moe_experts_s(t))
            out["act_fn"] = L * _ns(self.moe_act_s(t))
            if self.ep > 1:
                a2a = _ns(self.alltoall_s(t))
                out["ep_dispatch"] = L * a2a
                out["ep_combine"] = L * a2a
        else:
            out["gate_up_proj"] = L * _ns(self.op_s("gate_up_proj", t))
            out["act_fn"] = L * _ns(self.op_s("act_fn", t))
            out["down_proj"] = L * _ns(self.op_s("down_proj", t))
        if self.tp > 1:
            per_layer = 1 if (self.arch.is_moe and self.ep > 1) else 2
            for term, ns in self.network.allreduce_terms(t * self.h * self.dt, self.tp).items():
                out[f"allreduce.{term}"] = L * per_layer * ns
        out["final_layernorm"] = _ns(self.op_s("final_layernorm", t))
        self._dense_cache[t] = out
        return out

    def sequence_ops(self, s: int) -> dict[str, int]:
        hit = self._seq_cache.get(s)
        if hit is None:
            hit = self._seq_cache[s] = {"lm_head": _ns(self.op_s("lm_head", s)),
                                        "sampler": _ns(self.op_s("sampler", s))}
        return hit

    def breakdown(self, b: BatchShape, group_tokens: int = 0) -> dict[str, int]:
        """Per-op ns of one step (ops summed over layers); sums to `time_batch(b, group_tokens)`."""
        T, S = b.padded_counts(group_tokens)
        out = dict(self.dense_ops(T))
        out["attention"] = self.L * self.attention_ns(b)
        out.update(self.sequence_ops(max(1, S)))
        return out

    def edge_ns(self, b: BatchShape) -> tuple[int, int]:
        """(first-stage-only ns, last-stage-only ns): embedding; final norm + lm_head + sampler."""
        d = self.dense_ops(max(1, b.tokens))
        return d["embedding"], d["final_layernorm"] + sum(self.sequence_ops(max(1, b.seqs)).values())

    def _fixed_ns(self, tokens: int, seqs: int) -> int:
        """Everything but attention: token-proportional ops at T, per-sequence ops at S."""
        t = max(1, tokens)
        dense = self._dense_totals.get(t)
        if dense is None:
            dense = self._dense_totals[t] = sum(self.dense_ops(t).values())
        seq = self._seq_totals.get(seqs)
        if seq is None:
            seq = self._seq_totals[seqs] = sum(self.sequence_ops(max(1, seqs)).values())
        return dense + seq

    def time_batch(self, b: BatchShape, group_tokens: int = 0) -> int:
        """GPU ns of one step; `group_tokens` > 0: as a DP-group member padded to that count
        (`BatchShape.padded_counts`: token ops at the group's largest T, attention on `b`)."""
        T, S = b.padded_counts(group_tokens) if group_tokens else (b.tokens, b.seqs)
        return self._fixed_ns(T, S) + self.L * self.attention_ns(b)

    def decode_steps(self, n: int, ctx_sum: int, ctx_min: int, ctx_max: int):
        """j -> `time_batch` of a decode-only step of n sequences whose contexts all grew by j:
        the split-KV decode attention of `attention_parts_s` with its constants folded (same
        float operations, so the same ns)."""
        consts = self._decode_consts.get(n)
        if consts is None:
            heads, hd = self.heads, self.hd
            consts = self._decode_consts[n] = (
                self._fixed_ns(n, n), self.L, self.p("attention.launch_us") * 1e-6, self.kv_token_layer,
                2.0 * n * heads * hd * self.dt, self.decode_bw(n), 4.0 * heads * hd, self.peak * self.p("attention.c_max"))
        fixed, L, launch, per_key, q_bytes, mem, flops_per_key, comp = consts
        keys0 = ctx_sum + n

        def step(j: int) -> int:       # max() spelt as comparisons (what max returns, without its call)
            keys = keys0 + j * n
            memory = (keys * per_key + q_bytes) / mem
            compute = flops_per_key * keys / comp
            ns = round((launch + (compute if compute > memory else memory)) * 1e9)
            return fixed + L * (ns if ns > 1 else 1)
        return step

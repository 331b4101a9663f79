"""The *profile* backend: per-op latencies looked up in a measured perf bundle.

Reads LLMServingSim's bundle layout (`<variant>/meta.yaml`, `tp<N>/dense.csv`,
`tp<N>/per_sequence.csv`, `tp<N>/attention.csv`, optional `tp<N>/skew_fit.csv`). The ops of a
step come from the architecture's op sequence (`architecture.sequence_for`); for a Llama-style
dense decoder, T = tokens in the step, S = sequences in the step:

    embedding(T) + L·[2·layernorm(T) + qkv_proj(T) + rotary_emb(T) + attention(batch) + o_proj(T)
    + gate_up_proj(T) + act_fn(T) + down_proj(T) (+ 2 all-reduces if tp > 1, `collectives`)]
    + final_layernorm(T) + lm_head(S) + sampler(S)

(Qwen3 adds qk_norm(T) per layer.) Every op the sequence lists must have rows in the bundle:
a missing one is an error naming it, never a silent zero.

MoE models price each layer's expert block from `moe.csv` instead of the three MLP ops; with
expert parallelism (`ep` > 1) at the per-rank routing of `expert_parallel.ExpertParallel`, plus
its dispatch all-gather and combine reduce-scatter per layer, and one all-reduce per layer
(after o_proj) when tp > 1. In a DP group (`time_batch(b, group_tokens)`) the token-proportional
ops see the group's largest token count and the per-sequence ops the member's sequences plus
one dummy decode per padding token (`BatchShape.padded_counts`); attention sees the real batch.

Every op is an integer number of ns (see `interp`). Attention (`attention_pricing`):

- `aggregate` (LLMServingSim's arithmetic): one lookup at prefill_chunk = Σ chunks,
  kv_prefill = Σ chunk contexts, n_decode, kv_decode = ⌊mean decode context⌋ (context = tokens
  already in the KV cache before the step), on the 4-D grid with its nearest-slice fallback.
- `per_sequence`: each prefill chunk priced with its own chunk and context, and only between
  measured slices (`AttentionTable.measured`). The decodes join the largest chunk in a mixed-slice
  lookup when the bundle's mixed points come from the serving engine's own kernel
  (`mixed_attention_kernel: serving_engine` in meta.yaml; a bundle with `vllm_version`, i.e.
  profiled inside vLLM, counts as such), otherwise they are priced as a pure-decode part (the
  H100 bundles' mixed points come from PyTorch's FlashAttention-2 varlen kernel, which tiles
  decodes as prefill queries, unlike vLLM's kernels). One attention call per layer: every part
  after the first is charged without the call's fixed cost (`AttentionTable.prefill_floor`).
  Decode-only steps are priced identically by both.

With `decode_skew` on and a fit in the bundle, decodes of unequal length are corrected towards
the max-context time.
"""
from __future__ import annotations

import os

import numpy as np

from fleetsim.costmodel.architecture import sequence_for
from fleetsim.costmodel.attention_table import AttentionTable
from fleetsim.costmodel.batch import BatchShape
from fleetsim.costmodel.collectives import default_network
from fleetsim.costmodel.decode_skew import DecodeSkew
from fleetsim.costmodel.errors import CostModelError
from fleetsim.costmodel.expert_parallel import ExpertParallel
from fleetsim.costmodel.files import load_csv_columns, load_yaml
from fleetsim.costmodel.interp import Curve, CurveRows, us_to_ns

OPTIONAL_MOE_OPS = ("moe_gate",)   # the router GEMM, when the bundle measured it separately


TABLE_COLUMNS = {
    "dense.csv": ("tokens", "time_us"),
    "per_sequence.csv": ("sequences", "time_us"),
    "attention.csv": ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us"),
    "skew_fit.csv": ("pc", "alpha"),
    "moe.csv": ("tokens", "activated_experts", "time_us"),
}
OPTIONAL_TABLES = ("skew_fit.csv", "moe.csv")


def read_bundle(tp_dir: str) -> dict:
    """The raw parsed files of one bundle `tp<N>/` directory: {file name: columns} + "meta.yaml"."""
    raw = {}
    for name, numeric in TABLE_COLUMNS.items():
        path = os.path.join(tp_dir, name)
        if name in OPTIONAL_TABLES and not os.path.isfile(path):
            continue
        raw[name] = load_csv_columns(path, numeric)
    meta_path = os.path.join(os.path.dirname(tp_dir), "meta.yaml")
    raw["meta.yaml"] = load_yaml(meta_path) if os.path.isfile(meta_path) else {}
    return raw


class ProfileTables:
    """Lookup structures built from a bundle's raw columns (`read_bundle`); no file access."""

    def __init__(self, raw: dict, tp: int, source: str, model_type: str = ""):
        self.source = source
        dense, per_seq, att = raw["dense.csv"], raw["per_sequence.csv"], raw["attention.csv"]
        meta = raw.get("meta.yaml") or {}
        self.sequence = seq = sequence_for(model_type, meta, os.path.join(os.path.dirname(source), "meta.yaml"))
        self.moe = None
        if "moe.csv" in raw:
            m = raw["moe.csv"]
            self.moe = MoeTable(m["tokens"], m["activated_experts"], m["time_us"])
        layer_ops = seq.layer_ops(moe=self.moe is not None)
        self.pre_ops, self.post_ops, self.seq_ops = seq.pre_ops, seq.post_ops, seq.seq_ops
        self.dense = self._curves(dense, "layer", "tokens", os.path.join(source, "dense.csv"),
                                  set(layer_ops + self.pre_ops + self.post_ops), seq.name)
        self.layer_ops = layer_ops + tuple(op for op in OPTIONAL_MOE_OPS if self.moe is not None and op in self.dense)
        self.per_sequence = self._curves(per_seq, "layer", "sequences", os.path.join(source, "per_sequence.csv"),
                                         set(self.seq_ops), seq.name)
        if not len(att["time_us"]):
            raise CostModelError(f"{os.path.join(source, 'attention.csv')}: no rows (attention is priced from them)")
        self.attention = AttentionTable(att["prefill_chunk"], att["kv_prefill"], att["n_decode"],
                                        att["kv_decode"], att["time_us"])
        kernel = meta.get("mixed_attention_kernel")
        self.mixed_from_serving_engine = kernel == "serving_engine" or (kernel is None and "vllm_version" in meta)
        self.skew = None
        if (meta.get("skew_fit") or {}).get("enabled") and "skew_fit.csv" in raw:
            self.skew = DecodeSkew(meta, raw["skew_fit.csv"], tp, os.path.join(source, "skew_fit.csv"))

    @staticmethod
    def _curves(cols, name_col, key_col, path, needed, architecture):
        if name_col not in cols:
            raise CostModelError(f"{path}: missing column {name_col}")
        names = cols[name_col]
        curves = {}
        for op in sorted(set(names.tolist())):
            mask = names == op
            curves[op] = Curve(cols[key_col][mask], us_to_ns(cols["time_us"][mask]))
        missing = sorted(needed - set(curves))
        if missing:
            hint = "; scripts/add_qk_norm_estimate.py adds estimated qk_norm rows" if "qk_norm" in missing else ""
            raise CostModelError(f"{path}: no rows for op(s) {', '.join(missing)} (listed by the "
                                 f"{architecture!r} architecture's op sequence){hint}")
        return curves


def _skewed(t_mean: int, alpha: float, t_max: int) -> int:
    """The bundle's decode-skew correction: t_mean + alpha·(t_max − t_mean) when t_max is slower."""
    return round(t_mean + alpha * (t_max - t_mean)) if t_max > t_mean else t_mean


class MoeTable:
    """LLMServingSim `moe.csv` (`tokens,activated_experts,time_us`): one MoE block of one layer.
    Linear in tokens within each measured activated-experts row, then linear across rows
    (edges as `interp.bracket`)."""

    def __init__(self, tokens, experts, time_us):
        experts = np.asarray(experts, dtype=np.int64)
        ns = us_to_ns(time_us)
        self.table = CurveRows({e: Curve(np.asarray(tokens)[experts == e], ns[experts == e])
                                for e in set(experts.tolist())})

    def __call__(self, tokens: int, activated: int) -> int:
        return max(1, int(self.table.raw(activated, tokens)))


class ProfileBackend:
    """Prices a `BatchShape` from `ProfileTables` (+ TP all-reduces over the instance's network).

    MoE models with a `moe.csv` price each layer's expert block from it at the per-rank routing
    of `ExpertParallel` (ep = 1: T tokens and min(num_experts, T·experts_per_token) activated
    experts, balanced routing), in place of gate_up_proj + act_fn + down_proj; the network also
    prices the EP dispatch / combine."""

    name = "profile"

    def __init__(self, tables: ProfileTables, arch, tp: int = 1, hardware=None, decode_skew: bool = True,
                 network=None, attention_pricing: str = "aggregate", ep: int = 1):
        self.tables = tables
        self.arch = arch
        self.num_layers = arch.num_layers
        if arch.is_moe and tables.moe is None:
            raise CostModelError(f"{tables.source}: {arch.name} is a MoE model but the bundle has no moe.csv")
        if ep > 1 and not arch.is_moe:
            raise CostModelError(f"ep={ep}: model {arch.name} has no experts")
        self.allreduce_bytes_per_token = arch.hidden_size * arch.dtype_bytes
        # all-reduces per layer: after o_proj and down_proj; with EP the expert block's combine
        # reduce-scatter replaces the second one
        self.allreduces_per_layer = 1 if ep > 1 else 2
        self.tp = tp
        self.ep = ep
        self.hardware = hardware
        self.network = network if network is not None else default_network(hardware)
        self.expert_parallel = ExpertParallel(arch, ep, self.network) if arch.is_moe else None
        self.decode_skew = decode_skew and tables.skew is not None
        self.per_sequence = attention_pricing == "per_sequence"
        att = tables.attention
        self.mixed_slices = tables.mixed_from_serving_engine and att.has("mixed")
        self.floor_ns = att.prefill_floor()
        self._dense_cache: dict = {}
        self._edge_cache: dict = {}
        self._seq_cache: dict = {}
        self._decode_cache: dict = {}      # n -> what `decode_steps` needs of n decodes

    def dense_ns(self, tokens: int) -> tuple[int, int]:
        """(once-per-step ns, per-layer ns) of the token-proportional ops for T tokens."""
        hit = self._dense_cache.get(tokens)
        if hit is None:
            d = self.tables.dense
            once = sum(self._edges(tokens))
            per_layer = (sum(d[op](tokens) for op in self.tables.layer_ops) + self.moe_ns(tokens)
                         + sum(self.ep_collectives_ns(tokens)))
            if self.tp > 1:
                per_layer += self.allreduces_per_layer * self.network.allreduce_ns(
                    tokens * self.allreduce_bytes_per_token, self.tp)
            hit = self._dense_cache[tokens] = (once, per_layer)
        return hit

    def _edges(self, tokens: int) -> tuple[int, int]:
        """(Σ prologue ns, Σ head ops at T ns) at T tokens: the once-per-step ops."""
        hit = self._edge_cache.get(tokens)
        if hit is None:
            d = self.tables.dense
            hit = self._edge_cache[tokens] = (sum(d[op](tokens) for op in self.tables.pre_ops),
                                              sum(d[op](tokens) for op in self.tables.post_ops))
        return hit

    def moe_ns(self, tokens: int) -> int:
        """One layer's expert block on one EP rank (0 for dense models, and for a rank that
        receives no token)."""
        ep = self.expert_parallel
        if ep is None:
            return 0
        local = ep.local_tokens(tokens)
        if local <= 0:
            return 0
        return self.tables.moe(local, max(1, ep.activated_experts(tokens)))

    def ep_collectives_ns(self, tokens: int) -> tuple[int, int]:
        """(dispatch, combine) ns of one MoE layer at T tokens ((0, 0) without EP)."""
        ep = self.expert_parallel
        if ep is None or self.ep == 1:
            return 0, 0
        return ep.dispatch_ns(tokens), ep.combine_ns(tokens)

    def sequence_ns(self, seqs: int) -> int:
        hit = self._seq_cache.get(seqs)
        if hit is None:
            hit = self._seq_cache[seqs] = sum(self.tables.per_sequence[op](seqs) for op in self.tables.seq_ops)
        return hit

    def attention_ns(self, b: BatchShape) -> int:
        """One layer's attention for the whole batch."""
        table = self.tables.attention
        if not self.per_sequence or not b.prefills:
            return self._lookup_ns(table.lookup, b.prefill_tokens, b.prefill_context, b.decodes, b)
        chunks = sorted(b.prefills, key=lambda p: -p[0])        # largest first (stable)
        c, k = chunks[0]
        if self.mixed_slices:
            parts = [self._lookup_ns(table.measured, c, k, b.decodes, b)]
        else:
            parts = [self._lookup_ns(table.measured, c, k, 0, b)]
            if b.decodes:
                parts.append(self._lookup_ns(table.lookup, 0, 0, b.decodes, b))
        parts += [self._lookup_ns(table.measured, c, k, 0, b) for c, k in chunks[1:]]
        return max(max(parts), round(sum(parts) - (len(parts) - 1) * self.floor_ns))

    def _lookup_ns(self, lookup, pc: int, kp: int, nd: int, b: BatchShape) -> int:
        """One attention lookup at (pc, kp) with nd of b's decodes (0 or all): mean decode
        context, skew-corrected towards the max context."""
        if pc == 0 and nd == 0:
            return 0
        kv_mean = b.decode_ctx_sum // nd if nd else 0
        t_mean = max(1, int(lookup(pc, kp, nd, kv_mean)))
        if self.decode_skew and nd > 1 and b.decode_ctx_max != kv_mean:
            alpha = self.tables.skew.alpha(pc, nd, b.decode_ctx_sum / nd, b.decode_ctx_min, b.decode_ctx_max, kp)
            if alpha:
                return _skewed(t_mean, alpha, max(1, int(lookup(pc, kp, nd, b.decode_ctx_max))))
        return t_mean

    def decode_steps(self, n: int, ctx_sum: int, ctx_min: int, ctx_max: int):
        """j -> `time_batch` of a decode-only step of n sequences whose contexts (sum, min, max)
        all grew by j; table brackets other than the context resolved once per n, those of the
        contexts and the skew bins remembered from step to step (`Curve.cursor`,
        `DecodeSkew.along`: a cursor gives the table's value wherever x moves, so one per n
        serves every stretch of n sequences)."""
        parts = self._decode_cache.get(n)
        if parts is None:
            once, per_layer = self.dense_ns(n)
            table = self.tables.attention
            skewed = self.decode_skew and n > 1
            parts = self._decode_cache[n] = (
                once + self.sequence_ns(n), per_layer, table.along_kvd(0, 0, n),
                self.tables.skew.along(0, n, 0) if skewed else None,
                table.along_kvd(0, 0, n) if skewed else None)       # its own brackets: the max context
        fixed, per_layer, look, alpha, look_max = parts
        L = self.num_layers

        def step(j: int) -> int:
            s = ctx_sum + j * n
            kv_mean = s // n
            attn = int(look(kv_mean))
            attn = attn if attn > 1 else 1
            mx = ctx_max + j
            if alpha is not None and mx != kv_mean:
                a = alpha(s / n, ctx_min + j, mx)
                if a:
                    attn = _skewed(attn, a, max(1, int(look_max(mx))))
            return fixed + L * (per_layer + attn)
        return step

    def breakdown(self, b: BatchShape, group_tokens: int = 0) -> dict[str, int]:
        """Per-op ns of one step (ops summed over layers); sums to `time_batch(b, group_tokens)`."""
        d, L = self.tables.dense, self.num_layers
        T, S = b.padded_counts(group_tokens)
        out = {op: d[op](T) for op in self.tables.pre_ops}
        ops = self.tables.layer_ops
        for op in dict.fromkeys(ops):
            out[op] = L * ops.count(op) * d[op](T)
        if self.tables.moe is not None:
            out["moe_experts"] = L * self.moe_ns(T)
        if self.ep > 1:
            dispatch, combine = self.ep_collectives_ns(T)
            out["ep_dispatch"], out["ep_combine"] = L * dispatch, L * combine
        out["attention"] = L * self.attention_ns(b)
        for term, ns in self.network.allreduce_terms(T * self.allreduce_bytes_per_token, self.tp).items():
            out[f"allreduce.{term}"] = L * self.allreduces_per_layer * ns
        for op in self.tables.post_ops:
            out[op] = d[op](T)
        for op in self.tables.seq_ops:
            out[op] = self.tables.per_sequence[op](S)
        return out

    def edge_ns(self, b: BatchShape) -> tuple[int, int]:
        """(first-stage-only ns, last-stage-only ns): embedding; final norm + lm_head + sampler."""
        pre, post = self._edges(max(1, b.tokens))
        return pre, post + self.sequence_ns(b.seqs)

    def time_batch(self, b: BatchShape, group_tokens: int = 0) -> int:
        """GPU ns of one step; `group_tokens` > 0: as a DP-group member padded to that count."""
        T, S = b.padded_counts(group_tokens) if group_tokens else (max(1, b.tokens), b.seqs)
        once, per_layer = self.dense_ns(T)
        return once + self.num_layers * (per_layer + self.attention_ns(b)) + self.sequence_ns(S)

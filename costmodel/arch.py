"""`ModelArch`: the shapes of a decoder-only transformer, derived from a Hugging Face config."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fleetsim.costmodel.errors import CostModelError

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "fp8": 1, "float8": 1}
# vLLM's names: `dtype` (weights; fp8 = vLLM's `quantization: fp8`, W8A8 with bf16 activations)
# and `kv_cache_dtype`; "auto" keeps the checkpoint's dtype (weights) / the model dtype (KV).
WEIGHT_DTYPES = {"auto": None, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2, "fp8": 1}
KV_CACHE_DTYPES = {"auto": None, "bfloat16": 2, "bf16": 2, "float16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}


@dataclass(frozen=True)
class ModelArch:
    """Architecture numbers of one model (per full model, unsharded).

    `head_dim` defaults to hidden_size / num_attention_heads. MoE models set `num_experts`
    (HF `num_experts` or `num_local_experts`), `experts_per_token` and `moe_intermediate_size`
    (Mixtral has no separate key: its `intermediate_size` is the per-expert size).
    """
    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    dtype_bytes: int = 2
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    model_type: str = ""          # HF `model_type`: picks the op sequence (costmodel/architecture.py)
    linear_dtype_bytes: int = 2
    kv_dtype_bytes: int = 2

    @classmethod
    def from_hf_config(cls, name: str, cfg: dict, source: str = "config") -> "ModelArch":
        """Build from a parsed HF `config.json` dict; `source` names the file in errors."""
        def need(key, default=None):
            """A positive integer field; `default` when absent (or null / 0) if one is given."""
            value = cfg.get(key)
            if default is not None and not value:
                return default
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise CostModelError(f"{source}: field {key!r} must be a positive integer, got {value!r}")
            return value
        hidden = need("hidden_size")
        heads = need("num_attention_heads")
        experts = need("num_experts", 0) or need("num_local_experts", 0)
        moe_inter = need("moe_intermediate_size", need("intermediate_size") if experts else 0)
        dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
        return cls(
            name=name,
            hidden_size=hidden,
            num_layers=need("num_hidden_layers"),
            num_heads=heads,
            num_kv_heads=need("num_key_value_heads", heads),
            head_dim=need("head_dim", hidden // heads),
            intermediate_size=need("intermediate_size"),
            vocab_size=need("vocab_size"),
            max_position_embeddings=need("max_position_embeddings", 0),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            dtype_bytes=DTYPE_BYTES.get(dtype, 2),
            linear_dtype_bytes=DTYPE_BYTES.get(dtype, 2),
            kv_dtype_bytes=DTYPE_BYTES.get(dtype, 2),
            num_experts=experts,
            experts_per_token=need("num_experts_per_tok", 0),
            moe_intermediate_size=moe_inter,
            model_type=str(cfg.get("model_type") or ""),
        )

    def with_precision(self, dtype: str = "auto", kv_cache_dtype: str = "auto") -> "ModelArch":
        """This model served with vLLM's `dtype` / `kv_cache_dtype` (names in WEIGHT_DTYPES,
        KV_CACHE_DTYPES; "auto" keeps the checkpoint's)."""
        if dtype not in WEIGHT_DTYPES:
            raise CostModelError(f"dtype {dtype!r}: unknown; allowed: {', '.join(WEIGHT_DTYPES)}")
        if kv_cache_dtype not in KV_CACHE_DTYPES:
            raise CostModelError(f"kv_cache_dtype {kv_cache_dtype!r}: unknown; allowed: {', '.join(KV_CACHE_DTYPES)}")
        linear = WEIGHT_DTYPES[dtype] or self.linear_dtype_bytes
        kv = KV_CACHE_DTYPES[kv_cache_dtype] or self.kv_dtype_bytes
        if (linear, kv) == (self.linear_dtype_bytes, self.kv_dtype_bytes):
            return self
        return dataclasses.replace(self, linear_dtype_bytes=linear, kv_dtype_bytes=kv)

    def check_parallelism(self, tp: int, pp: int, moe_skew: float = 0.0) -> None:
        """Refuse a split vLLM would refuse (CostModelError naming the model): tp must divide the
        attention heads and divide or be a multiple of the KV heads (a KV head is then replicated
        over tp / kv ranks); pp at most the layers; moe_skew needs experts (ep is checked
        against them by `expert_parallel.ExpertParallel`)."""
        if self.num_heads % tp:
            raise CostModelError(f"tp {tp} must divide the {self.num_heads} attention heads of {self.name}")
        if self.num_kv_heads % tp and tp % self.num_kv_heads:
            raise CostModelError(f"tp {tp} must divide the {self.num_kv_heads} KV heads of {self.name} "
                                 f"or be a multiple of them")
        if pp > self.num_layers:
            raise CostModelError(f"pp {pp} exceeds the {self.num_layers} layers of {self.name}")
        if moe_skew and not self.is_moe:
            raise CostModelError(f"moe_skew {moe_skew}: {self.name} is a dense model (no experts)")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def kv_heads_per_rank(self, tp: int) -> int:
        """KV heads held by one TP rank (replicated when there are fewer KV heads than ranks)."""
        return max(1, self.num_kv_heads // tp)

    def kv_bytes_per_token(self, tp: int = 1) -> int:
        """K and V bytes of one token over all layers on one rank."""
        return 2 * self.num_layers * self.kv_heads_per_rank(tp) * self.head_dim * self.kv_dtype_bytes

    def layer_weight_params(self) -> int:
        """Parameters of one decoder layer (attention + MLP or experts + router + norms)."""
        h, d = self.hidden_size, self.head_dim
        attn = h * self.num_heads * d + 2 * h * self.num_kv_heads * d + self.num_heads * d * h
        if self.is_moe:
            mlp = self.num_experts * 3 * h * self.moe_intermediate_size + h * self.num_experts
        else:
            mlp = 3 * h * self.intermediate_size
        return attn + mlp + 2 * h

    def weight_bytes(self, tp: int = 1, ep: int = 1) -> int:
        """Weight bytes held by one rank: layers and vocab-parallel embeddings sharded by tp,
        norms replicated; KV projections replicated when KV heads < tp; MoE experts spread
        over max(tp, ep) ranks (expert parallelism). Decoder linear layers at
        `linear_dtype_bytes`, embeddings and norms at `dtype_bytes`."""
        h, d = self.hidden_size, self.head_dim
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        experts = self.num_experts * 3 * h * self.moe_intermediate_size if self.is_moe else 0
        per_layer = self.layer_weight_params() - 2 * h - experts
        kv_extra = 0
        if self.num_kv_heads < tp:
            kv_extra = 2 * h * d * (self.kv_heads_per_rank(tp) * tp - self.num_kv_heads)
        dense = self.num_layers * (per_layer + kv_extra)
        expert = self.num_layers * experts // max(tp, ep)
        replicated = self.num_layers * 2 * h + h
        if self.linear_dtype_bytes == self.dtype_bytes:     # one dtype: embeddings sharded with the layers
            return ((embed + dense) // tp + expert + replicated) * self.dtype_bytes
        return (dense // tp + expert) * self.linear_dtype_bytes + (embed // tp + replicated) * self.dtype_bytes


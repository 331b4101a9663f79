"""`OpSequence`: the ops of one engine step, from the model's architecture (not a fixed tuple).

LLMServingSim describes each architecture by a `sequence:` of six lists (its
`profiler/models/<model_type>.yaml`); fleetsim ships the same layout under
`configs/architectures/<name>.yaml`:

    prologue   once per step, at T tokens (embedding)
    pre_attn   per layer, before and including attention
    post_attn  per layer, after attention
    mlp_dense  per layer, dense MLP
    mlp_moe    per layer, MoE block (`moe`: one layer's expert block, moe.csv)
    head       once per step: final norm at T tokens; lm_head and sampler at S sequences

`attention` is priced from the attention table and `moe` from moe.csv; every other name is a
token-proportional op with its own rows (dense.csv; per_sequence.csv for PER_SEQUENCE_OPS).
Which architecture: a bundle's `meta.yaml` may carry the sequence itself (`sequence:`) or name
one (`architecture:`, LLMServingSim's field); otherwise the HF config's `model_type` picks it, and
a config without one (or of a type fleetsim does not ship) uses `llama` (a plain decoder).
Files are parsed once per process (`files.load_yaml`).
"""
from __future__ import annotations

from dataclasses import dataclass

from fleetsim.costmodel.errors import CostModelError
from fleetsim.costmodel.files import load_yaml
from fleetsim.costmodel.paths import SHIPPED

PARTS = ("prologue", "pre_attn", "post_attn", "mlp_dense", "mlp_moe", "head")
PER_SEQUENCE_OPS = ("lm_head", "sampler")
TABLE_OPS = ("attention", "moe")       # priced from their own tables, not per-op rows
DEFAULT = "llama"


@dataclass(frozen=True)
class OpSequence:
    name: str
    prologue: tuple[str, ...]
    pre_attn: tuple[str, ...]
    post_attn: tuple[str, ...]
    mlp_dense: tuple[str, ...]
    mlp_moe: tuple[str, ...]
    head: tuple[str, ...]

    @classmethod
    def from_doc(cls, name: str, doc, source: str) -> "OpSequence":
        if not isinstance(doc, dict) or set(doc) != set(PARTS):
            raise CostModelError(f"{source}: sequence must be a mapping of exactly {', '.join(PARTS)}")
        parts = {}
        for part in PARTS:
            ops = doc[part] or []
            if not isinstance(ops, list) or not all(isinstance(op, str) and op for op in ops):
                raise CostModelError(f"{source}: sequence.{part} must be a list of op names")
            parts[part] = tuple(ops)
        return cls(name, **parts)

    def layer_ops(self, moe: bool) -> tuple[str, ...]:
        """Per-layer ops with their own rows (attention and moe excluded), MoE block or dense MLP."""
        ops = self.pre_attn + self.post_attn + (self.mlp_moe if moe else self.mlp_dense)
        return tuple(op for op in ops if op not in TABLE_OPS)

    @property
    def pre_ops(self) -> tuple[str, ...]:
        return self.prologue

    @property
    def post_ops(self) -> tuple[str, ...]:
        """Once-per-step ops at T tokens (the head minus the per-sequence ops)."""
        return tuple(op for op in self.head if op not in PER_SEQUENCE_OPS)

    @property
    def seq_ops(self) -> tuple[str, ...]:
        return tuple(op for op in self.head if op in PER_SEQUENCE_OPS)


def load_sequence(name: str) -> OpSequence:
    """The shipped architecture `name` (configs/architectures/<name>.yaml)."""
    path = SHIPPED / "architectures" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (SHIPPED / "architectures").glob("*.yaml"))
        raise CostModelError(f"architecture {name!r}: unknown; shipped: {', '.join(known)}")
    doc = load_yaml(str(path))
    return OpSequence.from_doc(name, (doc or {}).get("sequence"), str(path))


def sequence_for(model_type: str, meta: dict | None = None, meta_source: str = "meta.yaml") -> OpSequence:
    """The op sequence of a step: the bundle's own (`meta.yaml` `sequence:` or `architecture:`),
    else the shipped one for the HF `model_type`, else the plain decoder."""
    meta = meta or {}
    if meta.get("sequence") is not None:
        return OpSequence.from_doc(str(meta.get("architecture") or model_type or "bundle"), meta["sequence"],
                                   meta_source)
    name = meta.get("architecture")
    if name:
        return load_sequence(str(name))
    if model_type and (SHIPPED / "architectures" / f"{model_type}.yaml").is_file():
        return load_sequence(model_type)
    return load_sequence(DEFAULT)

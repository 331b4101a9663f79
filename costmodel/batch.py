"""`BatchShape`: what the cost model needs to know about one engine step."""
from __future__ import annotations

from typing import NamedTuple, Sequence


class BatchShape(NamedTuple):
    """Summary of one step's sequences.

    A sequence with new_tokens > 1 is a prefill chunk, new_tokens == 1 a decode (DESIGN.md).
    `prefills` keeps each chunk as (new_tokens, context_before) for backends that price them
    one by one; decode contexts are summarised by count, sum, min and max.
    """
    tokens: int                 # T: tokens computed this step
    seqs: int                   # S: sequences in the step
    prefills: tuple             # ((chunk, context_before), ...)
    decodes: int
    decode_ctx_sum: int
    decode_ctx_min: int
    decode_ctx_max: int

    def padded_counts(self, group_tokens: int = 0) -> tuple[int, int]:
        """(T, S) that the token- and sequence-proportional ops see when a DP group pads every
        member to its largest token count `group_tokens` (0: no group): T = max(1, tokens, group),
        and each padding token is a dummy decode, so S grows by the same amount (LLMServingSim's
        DP padding; attention still sees only the real sequences)."""
        pad = max(0, group_tokens - self.tokens)
        return max(1, self.tokens + pad), self.seqs + pad

    @property
    def prefill_tokens(self) -> int:
        return sum(c for c, _ in self.prefills)

    @property
    def prefill_context(self) -> int:
        return sum(k for _, k in self.prefills)

    @classmethod
    def empty(cls) -> "BatchShape":
        """No sequences: an idle DP-group member's dummy batch, before padding."""
        return cls(0, 0, (), 0, 0, 0, 0)

    @classmethod
    def from_seqs(cls, seqs: Sequence[tuple[int, int]]) -> "BatchShape":
        """From `(new_tokens, context_before)` pairs (checked: new >= 1, context >= 0)."""
        seqs = [(int(new), int(ctx)) for new, ctx in seqs]
        for new, ctx in seqs:
            if new < 1 or ctx < 0:
                raise ValueError(f"bad sequence (new_tokens={new}, context_before={ctx}): need new>=1, context>=0")
        return cls.of_pairs(seqs)

    @classmethod
    def with_decodes(cls, seqs: list[tuple[int, int]], n: int, ctx_sum: int, ctx_min: int, ctx_max: int) -> "BatchShape":
        """`of_pairs(seqs)` plus n ≥ 1 decodes given by their contexts' sum, min and max."""
        b = cls.of_pairs(seqs)
        if b.decodes:
            ctx_min, ctx_max = min(ctx_min, b.decode_ctx_min), max(ctx_max, b.decode_ctx_max)
        return cls(b.tokens + n, b.seqs + n, b.prefills, b.decodes + n, b.decode_ctx_sum + ctx_sum, ctx_min, ctx_max)

    @classmethod
    def of_pairs(cls, seqs: list[tuple[int, int]]) -> "BatchShape":
        """From valid `(new_tokens, context_before)` int pairs, unchecked (the engine's per-step path)."""
        decodes = [ctx for new, ctx in seqs if new == 1]
        prefills = tuple(p for p in seqs if p[0] > 1)
        tokens = len(decodes) + sum([p[0] for p in prefills])
        if not decodes:
            return cls(tokens, len(seqs), prefills, 0, 0, 0, 0)
        return cls(tokens, len(seqs), prefills, len(decodes), sum(decodes), min(decodes), max(decodes))

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

    @property
    def prefill_tokens(self) -> int:
        return sum(c for c, _ in self.prefills)

    @property
    def prefill_context(self) -> int:
        return sum(k for _, k in self.prefills)

    @classmethod
    def from_seqs(cls, seqs: Sequence[tuple[int, int]]) -> "BatchShape":
        """From `(new_tokens, context_before)` pairs."""
        prefills = []
        d_n = d_sum = 0
        d_min = d_max = 0
        tokens = 0
        for new, ctx in seqs:
            new, ctx = int(new), int(ctx)
            if new < 1 or ctx < 0:
                raise ValueError(f"bad sequence (new_tokens={new}, context_before={ctx}): need new>=1, context>=0")
            tokens += new
            if new > 1:
                prefills.append((new, ctx))
            else:
                d_min = ctx if d_n == 0 else min(d_min, ctx)
                d_max = max(d_max, ctx)
                d_n += 1
                d_sum += ctx
        return cls(tokens, len(seqs), tuple(prefills), d_n, d_sum, d_min, d_max)

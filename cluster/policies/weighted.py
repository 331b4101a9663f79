"""weighted: the instance with the smallest weighted sum of normalised scorers.

Options: `weights: {queue: 1.0, kv: 1.0, outstanding: 0.0, prefix: 0.0}`. Each scorer is in
[0, 1], smaller is better: queue = (4·waiting + running) / fleet max; kv = KV fraction used;
outstanding = outstanding tokens / fleet max; prefix = 1 − indexed prefix / prompt blocks
(the prefix_aware index). Ties break to the lower index.
"""
from __future__ import annotations

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.policies.base import Policy, queue_score
from fleetsim.cluster.policies.prefix_aware import PrefixIndex

SCORERS = ("queue", "kv", "outstanding", "prefix")


class Weighted(Policy):
    name = "weighted"
    draws = False
    OPTIONS = ("weights", "index_blocks")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        weights = self.options.get("weights", {"queue": 1.0, "kv": 1.0})
        if not isinstance(weights, dict) or set(weights) - set(SCORERS):
            raise InputError(f"router.options.weights: a mapping of scorer -> weight; scorers: {', '.join(SCORERS)}")
        self.weights = {k: self.weight(f"weights.{k}", weights.get(k, 0.0)) for k in SCORERS}
        self.needs_token_ids = self.weights["prefix"] > 0
        self.index = PrefixIndex(self.n, self.int_option("index_blocks", 65536)) if self.needs_token_ids else None

    def choose(self, request, snapshots, rng) -> int:
        w = self.weights
        max_q = max(1, max(queue_score(s) for s in snapshots))
        max_o = max(1, max(s.outstanding_tokens for s in snapshots))
        matches, blocks = {}, 1
        if self.index is not None:
            matches, blocks = self.index.lookup(request, self.block_size)
            blocks = max(1, blocks)
        best, best_score = 0, None
        for s in snapshots:
            score = (w["queue"] * queue_score(s) / max_q + w["kv"] * s.kv_used / s.kv_total
                     + w["outstanding"] * s.outstanding_tokens / max_o
                     + w["prefix"] * (1.0 - matches.get(s.index, 0) / blocks))
            if best_score is None or score < best_score:
                best, best_score = s.index, score
        return best

    def routed(self, request, index: int) -> None:
        if self.index is not None:
            self.index.add_routed(index)

"""Policies that read instance load: least_loaded, least_outstanding_tokens, least_kv, power_of_two."""
from __future__ import annotations

from fleetsim.cluster.policies.base import LeastKey, Policy, queue_score


class LeastLoaded(LeastKey):
    """vLLM's DP balancer: smallest 4·waiting + running."""
    name = "least_loaded"
    OPTIONS = ()
    key = staticmethod(queue_score)


class LeastOutstandingTokens(LeastKey):
    """Smallest outstanding work: prompt tokens still to prefill + output tokens still to decode."""
    name = "least_outstanding_tokens"
    OPTIONS = ()

    def key(self, s) -> int:
        return s.prefill_tokens + s.decode_tokens


class LeastKV(LeastKey):
    """Lowest KV-cache use (fraction of blocks), then fewest waiting."""
    name = "least_kv"
    OPTIONS = ()

    def key(self, s) -> tuple:
        return (s.kv_used * 1.0 / s.kv_total, s.waiting)


class PowerOfTwo(Policy):
    """Two distinct instances drawn from the seeded generator; the lighter (4·waiting + running)
    wins, the first drawn on a tie."""
    name = "power_of_two"
    OPTIONS = ()

    def choose(self, request, snapshots, rng) -> int:
        if self.n == 1:
            return 0
        a, b = (int(x) for x in rng.choice(self.n, size=2, replace=False))
        return b if queue_score(snapshots[b]) < queue_score(snapshots[a]) else a

"""Policies that read instance load: least_loaded, least_outstanding_tokens, least_kv, power_of_two."""
from __future__ import annotations

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.policies.base import LeastKey, Policy, queue_score

NORMALIZE = ("none", "capacity")


class LeastLoaded(LeastKey):
    """vLLM's DP balancer: smallest 4·waiting + running.

    With `normalize: capacity` (for fleets of unequal instances), the smallest score divided by
    the instance's relative capacity: its prefill rate from its cost model over the fastest
    instance's (cluster/instance_capacity.py; the fastest is 1.0), so an instance three times
    as fast gets three times the queue before it stops being chosen. The run sets the
    capacities (`needs_capacity`, `set_capacities`); summary.json's `router` block lists them.
    """
    name = "least_loaded"
    OPTIONS = ("normalize",)
    key = staticmethod(queue_score)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        normalize = self.options.get("normalize", "none")
        if normalize not in NORMALIZE:
            raise InputError(f"router.options.normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        self.needs_capacity = normalize == "capacity"
        self.capacity = [1.0] * self.n

    def set_capacities(self, capacities: list[float]) -> None:
        self.capacity = list(capacities)
        self.key = self._normalized

    def _normalized(self, s) -> float:
        return queue_score(s) / self.capacity[s.index]


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
        if len(snapshots) == 1:
            return snapshots[0].index
        a, b = (snapshots[int(x)] for x in rng.choice(len(snapshots), size=2, replace=False))
        return b.index if queue_score(b) < queue_score(a) else a.index

"""prefix_aware: route to the instance most likely to hold the request's prompt prefix.

The router keeps an approximate index of the prompt block hashes it has sent to each
instance (LRU, `index_blocks` per instance, default 65536). Candidates are the instances whose
load (4·waiting + running) is within `load_cap` (default 16) of the least loaded; among them
the longest indexed prefix wins, then lower load, then lower index.
"""
from __future__ import annotations

from collections import OrderedDict

from fleetsim.cluster.policies.base import Policy, queue_score


class PrefixIndex:
    """Which instances were sent which prompt block hashes (per-instance LRU)."""

    def __init__(self, num_instances: int, capacity: int):
        self.capacity = capacity
        self.lru = [OrderedDict() for _ in range(num_instances)]
        self.owners: dict[int, set] = {}
        self._pending: list[int] = []          # hashes of the request being routed

    def lookup(self, request, block_size: int) -> tuple[dict[int, int], int]:
        """(`match_lengths` of `request`'s prompt block hashes, their count); the hashes are
        kept for `add_routed`, called once the router has placed the request."""
        self._pending = request.prompt_block_hashes(block_size)
        return self.match_lengths(self._pending), len(self._pending)

    def add_routed(self, index: int) -> None:
        self.add(index, self._pending)
        self._pending = []

    def match_lengths(self, hashes: list[int]) -> dict[int, int]:
        """Instance → number of leading blocks of `hashes` indexed there (only instances with ≥ 1)."""
        result: dict[int, int] = {}
        alive = None
        for depth, h in enumerate(hashes, 1):
            owners = self.owners.get(h)
            if not owners:
                break
            alive = set(owners) if alive is None else alive & owners
            if not alive:
                break
            for i in alive:
                result[i] = depth
        return result

    def add(self, index: int, hashes: list[int]) -> None:
        lru = self.lru[index]
        for h in hashes:
            if h in lru:
                lru.move_to_end(h)
                continue
            lru[h] = None
            self.owners.setdefault(h, set()).add(index)
            if len(lru) > self.capacity:
                old, _ = lru.popitem(last=False)
                owners = self.owners[old]
                owners.discard(index)
                if not owners:
                    del self.owners[old]


class PrefixAware(Policy):
    name = "prefix_aware"
    needs_token_ids = True
    draws = False
    OPTIONS = ("load_cap", "index_blocks")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.load_cap = self.int_option("load_cap", 16, minimum=0)
        self.index = PrefixIndex(self.n, self.int_option("index_blocks", 65536))

    def choose(self, request, snapshots, rng) -> int:
        matches, _ = self.index.lookup(request, self.block_size)
        floor = min(queue_score(s) for s in snapshots) + self.load_cap
        best, best_key = 0, None
        for s in snapshots:
            load = queue_score(s)
            if load > floor:
                continue
            key = (-matches.get(s.index, 0), load, s.index)
            if best_key is None or key < best_key:
                best, best_key = s.index, key
        return best

    def routed(self, request, index: int) -> None:
        self.index.add_routed(index)

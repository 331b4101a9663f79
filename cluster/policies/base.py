"""The policy interface and a stable hash.

A policy picks the instance for one request: `choose(request, snapshots, rng) -> index`. It
declares `needs_load`: policies that ignore load are routed without window syncs. `routed` is
called after every decision (policies with their own state, e.g. a prefix index, update it).
Ties always break towards the lower index, and all randomness comes from `rng` (the router's
seeded generator), so decisions are identical on every backend.
"""
from __future__ import annotations

import hashlib


def stable_hash(value) -> int:
    """64-bit hash of `str(value)` that is the same in every process (unlike `hash()` of a str)."""
    return int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8).digest(), "little")


class Policy:
    name = "policy"
    needs_load = True

    def __init__(self, num_instances: int, options: dict | None = None, block_size: int = 16):
        self.n = num_instances
        self.options = dict(options or {})
        self.block_size = block_size

    def choose(self, request, snapshots, rng) -> int:
        raise NotImplementedError

    def routed(self, request, index: int) -> None:
        """Called after `request` was sent to instance `index`."""


def queue_score(s) -> int:
    """vLLM's data-parallel balancer score: 4·waiting + running."""
    return 4 * s.waiting + s.running


def argmin(snapshots, key) -> int:
    """Index of the snapshot with the smallest key (lowest index on ties)."""
    best, best_key = 0, None
    for s in snapshots:
        k = key(s)
        if best_key is None or k < best_key:
            best, best_key = s.index, k
    return best

"""The policy interface and a stable hash.

A policy picks the instance for one request: `choose(request, snapshots, rng) -> index`, the
`index` of one of `snapshots` (the routable instances, in index order: the whole fleet, where
`snapshots[i].index == i`, unless an autoscaler has some provisioning, draining or stopped —
cluster/router.py). It declares `needs_load`: policies that ignore load are routed without window syncs. `routed` is
called after every decision (policies with their own state, e.g. a prefix index, update it);
`sync` (optional) whenever the router receives fresh snapshots or the routable set changes.
Ties always break towards the lower index, and all randomness comes from `rng` (the router's
seeded generator), so decisions are identical on every backend. A policy that never draws
declares `draws = False` and is given `rng=None`: the router then makes no generator (and a
run that draws nothing elsewhere does not import numpy.random, ~25 ms). `draws` defaults to
True, so a user policy gets a generator whether it declares it or not.

A policy also declares `needs_token_ids` (a class attribute, or set in `__init__` when it
depends on the options): it matches prompts by their token ids or block hash ids, so on a
workload with neither it cannot see any shared prefix. The run then logs one warning
(`warn_if_blind`; logger `fleetsim.cluster.policies.base`, level WARNING) and goes on: the
results are still right, only the prefix matching is idle. Logging, not `warnings`, because
it is a fact about this run's inputs rather than about the calling code: it is reported on
every run, and a library user silences or redirects it like any other log record (`fleetsim`
prints it as one `fleetsim: warning: ...` line on stderr).
"""
from __future__ import annotations

import hashlib
import heapq

import numpy as np

from fleetsim.cluster.errors import InputError, is_finite_number, is_int


def stable_hash(value) -> int:
    """64-bit hash of `str(value)` that is the same in every process (unlike `hash()` of a str)."""
    return int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8).digest(), "little")


def policy_rng(policy, seed: int, stream: str):
    """The seeded generator `policy` is given (stream `stream` of `seed`), or None for a policy
    that declares `draws = False` (module doc)."""
    if not getattr(policy, "draws", True):
        return None
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stable_hash(stream)])))


class Policy:
    name = "policy"
    needs_load = True
    needs_token_ids = False                  # matches prompts by token / hash ids (module doc)
    draws = True                             # draws from `rng` (False: it is given None)
    OPTIONS: tuple[str, ...] | None = None   # router.options keys it reads (None: not checked)

    def __init__(self, num_instances: int, options: dict | None = None, block_size: int = 16):
        self.n = num_instances
        self.options = dict(options or {})
        self.block_size = block_size
        unknown = self.unknown_options(self.options)
        if unknown:
            raise InputError(f"router.options: unknown key(s) {', '.join(unknown)} for {self.name}; "
                             f"allowed: {self.allowed_options()}")

    @classmethod
    def unknown_options(cls, options: dict) -> list:
        """The keys of `options` this policy does not take (none when it does not check, OPTIONS None)."""
        return sorted(set(options) - set(cls.OPTIONS), key=str) if cls.OPTIONS is not None else []

    @classmethod
    def allowed_options(cls) -> str:
        return ", ".join(cls.OPTIONS or ()) or "none"

    def int_option(self, key: str, default: int, minimum: int = 1) -> int:
        """`router.options[key]`, an integer >= `minimum` (InputError otherwise)."""
        value = self.options.get(key, default)
        if not is_int(value) or value < minimum:
            raise InputError(f"router.options.{key} must be an integer >= {minimum}, got {value!r}")
        return value

    @staticmethod
    def weight(key: str, value) -> float:
        """A finite number >= 0 given as `router.options.{key}` (InputError otherwise)."""
        if not is_finite_number(value) or value < 0:
            raise InputError(f"router.options.{key} must be a number >= 0, got {value!r}")
        return float(value)

    def choose(self, request, snapshots, rng) -> int:
        raise NotImplementedError

    def routed(self, request, index: int) -> None:
        """Called after `request` was sent to instance `index`."""

    def sync(self, snapshots) -> None:
        """Called after the router replaced `snapshots` with fresh ones from the instances."""


def warn_if_blind(policy: Policy, requests, source: str) -> bool:
    """One warning if `policy.needs_token_ids` and none of `requests` (nor their sessions' later
    turns) has token ids or hash ids; whether it warned."""
    if not policy.needs_token_ids:
        return False
    for req in requests:
        while req is not None:
            if req.has_identity:
                return False
            req = req.followup
    import logging                      # deferred: the only log record of a run, and most never emit it
    logging.getLogger(__name__).warning("router policy %s matches prompt prefixes by token or hash ids, but %s "
                                        "has none: it routes as if no two prompts shared a prefix", policy.name, source)
    return True


class LeastKey(Policy):
    """Routes to the snapshot with the smallest `key` (lowest index on ties).

    Between syncs a key changes only when the router notes a request it sent, which never
    lowers it, so the minimum is kept in a lazy heap: an entry whose key is out of date is
    refreshed when it reaches the top. O(log n) per request instead of a scan of all n.
    Entries hold positions in `snapshots` (in index order, so position ties break as index ties).
    """
    draws = False

    def key(self, s):
        raise NotImplementedError

    def sync(self, snapshots) -> None:
        self._heap = [(self.key(s), pos) for pos, s in enumerate(snapshots)]
        heapq.heapify(self._heap)
        self._synced = snapshots

    def choose(self, request, snapshots, rng) -> int:
        if snapshots is not getattr(self, "_synced", None):
            self.sync(snapshots)
        heap, key = self._heap, self.key
        while True:
            k, pos = heap[0]
            now = key(snapshots[pos])
            if now == k:
                return snapshots[pos].index
            heapq.heapreplace(heap, (now, pos))


def queue_score(s) -> int:
    """vLLM's data-parallel balancer score: 4·waiting + running."""
    return 4 * s.waiting + s.running

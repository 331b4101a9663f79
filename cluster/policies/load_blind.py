"""Policies that ignore load: round_robin, random, session_affinity (routed without syncs)."""
from __future__ import annotations

from bisect import bisect_left

from fleetsim.cluster.policies.base import Policy, stable_hash


class RoundRobin(Policy):
    """Instances in turn, in arrival order (the routable ones: the turn counts positions among
    them, so a fleet that grows or shrinks keeps taking turns)."""
    name = "round_robin"
    OPTIONS = ()
    needs_load = False
    draws = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.next = 0

    def choose(self, request, snapshots, rng) -> int:
        k = len(snapshots)
        pos = self.next % k
        self.next = (pos + 1) % k
        return snapshots[pos].index


class Random(Policy):
    """A uniformly random (routable) instance from the router's seeded generator."""
    name = "random"
    OPTIONS = ()
    needs_load = False

    def choose(self, request, snapshots, rng) -> int:
        return snapshots[int(rng.integers(len(snapshots)))].index


class SessionAffinity(Policy):
    """Consistent hashing of the session id (request id when there is none) onto a ring with
    `virtual_nodes` points per instance (option, default 64): a session stays on one instance,
    and resizing the fleet moves only about 1/n of the sessions: a session whose instance is not
    routable goes to the next routable owner clockwise on the ring."""
    name = "session_affinity"
    needs_load = False
    draws = False
    OPTIONS = ("virtual_nodes",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        vnodes = self.int_option("virtual_nodes", 64)
        ring = sorted((stable_hash(f"instance-{i}-{v}"), i) for i in range(self.n) for v in range(vnodes))
        self.points = [p for p, _ in ring]
        self.owners = [i for _, i in ring]

    def choose(self, request, snapshots, rng) -> int:
        key = request.session if request.session is not None else f"request-{request.rid}"
        k = bisect_left(self.points, stable_hash(key)) % len(self.points)
        if len(snapshots) == self.n:
            return self.owners[k]
        if snapshots is not getattr(self, "_view", None):
            self._view, self._routable = snapshots, {s.index for s in snapshots}
        owners, routable = self.owners, self._routable
        while owners[k] not in routable:
            k = (k + 1) % len(owners)
        return owners[k]

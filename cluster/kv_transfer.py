"""`KVLink`: the link that carries KV caches from prefill to decode instances (PD disaggregation).

A transfer of B bytes takes `B / bandwidth + latency` when it has the link to itself. Links are
processor-shared: the transfers active on one link at a time each get an equal share of its
bandwidth (fair sharing), so k concurrent transfers' shares add up to the bandwidth. The
latency is added after a transfer's last byte is served (propagation and set-up: it does not
occupy the link). `mode` chooses the links:
- `pair`: each (prefill, decode) instance pair has a link of its own; only transfers of the same
  pair share one;
- `shared`: one link for the whole fleet (a common fabric or a spine), shared by every transfer.

Bandwidth is in GB/s (10^9 bytes per second, as `link_gbps` elsewhere in fleetsim). Service is
computed exactly (rational arithmetic over integer ns event times), and a transfer's end is its
exact completion rounded up to the next ns, plus the latency.

Causality (cluster/pd.py): a transfer starts when its prompt's last step ends; transfers are
added in (start, id) order once a window's prefill phase is known, and `settle(t)` returns the
transfers whose last byte is served by `t` — their ends can no longer change, because every
transfer starting before `t` is known by then. The others stay in flight: a transfer that starts
later may still slow them down.
"""
from __future__ import annotations

import heapq
from fractions import Fraction

MODES = ("pair", "shared")


class _Link:
    """One processor-shared link: `active` {key: bytes left}, `queued` heap of future starts."""

    def __init__(self):
        self.t = Fraction(0)            # the time up to which service is applied
        self.active: dict = {}          # key -> Fraction bytes left
        self.queued: list = []          # heap of (start, key, bytes)

    def run(self, upto: int, rate: Fraction, done: list) -> None:
        """Serve until `upto`, appending (exact completion time, key) of transfers done by then."""
        active, queued = self.active, self.queued
        while True:
            start = queued[0][0] if queued else None
            if not active:
                if start is None or start > upto:
                    return
                self.t = Fraction(start)
                while queued and queued[0][0] == start:
                    _, key, nbytes = heapq.heappop(queued)
                    active[key] = Fraction(nbytes)
                continue
            n = len(active)
            least = min(active.values())
            finish = self.t + least * n / rate
            nxt = finish if start is None or finish <= start else Fraction(start)
            if nxt > upto:
                return
            served = (nxt - self.t) * rate / n
            self.t = nxt
            for key in sorted(active):
                left = active[key] - served
                if left <= 0:
                    del active[key]
                    done.append((nxt, key))
                else:
                    active[key] = left
            while queued and queued[0][0] == nxt:
                _, key, nbytes = heapq.heappop(queued)
                active[key] = Fraction(nbytes)


class KVLink:
    def __init__(self, mode: str = "pair", gbps: float = 50.0, latency_us: float = 10.0):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
        self.mode = mode
        self.rate = Fraction(round(gbps * 1e9), 10 ** 9)      # bytes per ns
        self.latency_ns = round(latency_us * 1000)
        self.links: dict = {}

    def start(self, key: int, src: int, dst: int, at_ns: int, nbytes: int) -> None:
        """A transfer `key` (a request id) of `nbytes` from instance `src` to `dst` from `at_ns` on."""
        link_id = (src, dst) if self.mode == "pair" else 0
        link = self.links.get(link_id)
        if link is None:
            link = self.links[link_id] = _Link()
        if at_ns < link.t:
            raise ValueError(f"transfer {key} starts at {at_ns} ns, before its link's settled time {link.t}")
        heapq.heappush(link.queued, (at_ns, key, nbytes))

    def settle(self, upto: int) -> list[tuple[int, int]]:
        """(end ns, key) of every transfer whose last byte is served by `upto`, in (end, key) order."""
        done: list = []
        for link_id in sorted(self.links):
            self.links[link_id].run(upto, self.rate, done)
        return sorted((-((-exact.numerator) // exact.denominator) + self.latency_ns, key) for exact, key in done)

    @property
    def in_flight(self) -> int:
        """Transfers started and not yet settled."""
        return sum(len(link.active) + len(link.queued) for link in self.links.values())

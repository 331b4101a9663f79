"""PD disaggregation: prefill and decode roles, the two-phase window, the KV transfers.

Every instance has a role: `prefill`, `decode` or `mixed` (the default; a fleet with no other
role runs exactly as before, byte for byte). New requests are routed only to prefill-capable
instances (prefill or mixed) by the router's own policy (`MemberPolicy` restricts it to them). A
mixed instance serves whole requests and never receives a handoff. A prefill instance runs a
request up to the step that computes its last prompt token, which emits its first token there
(TTFT is the prefill side's), then hands it off (instance/handoff.py): it leaves the seat, and
its KV blocks stay allocated until its transfer ends. A request with one output token is done
on the prefill instance and is not transferred.

One window [t, T) runs in two phases (`PDFleet.submit`), because prefill-capable instances never
depend on decode instances within a window:
1. every prefill-capable instance gets its new requests (and the block releases due, below) and
   advances to T; its handoffs come back as (prefill end f, request id, source, KV bytes, copy);
2. in (f, id) order the decode policy (`pd.decode_policy`, default least_loaded; its snapshots
   are the decode instances' at t plus the handoffs it sent since) chooses a decode instance for
   each, and the transfer starts at f on the link model (cluster/kv_transfer.py:
   bytes = prompt tokens × KV bytes per token of one TP rank, each rank sending its shard over a
   link of its own in parallel); the transfers whose last byte is served by T are settled (their
   end te can no longer change: every transfer starting before T is known); each settled one
   reaches its decode instance at te (te > t, so the decode engine takes it exactly as a request
   arriving at te: it waits in that engine's waiting queue, the transfer queue, until the
   scheduler has blocks for its prompt and the next token — back-pressure, never a drop — and
   decodes on from the token after the first); then every decode instance advances to T.
   Transfers still in flight wait for a later window.
The one approximation: a prefill instance learns that a transfer ended with the next window
(its release travels with phase 1), and frees the blocks at its first step boundary at or after
max(te, T) of the window that settled it (an idle one: at once); it therefore holds them up to
one window (plus a step) longer than the transfer. While anything of PD is in flight (transfers, releases not
yet delivered, work on a prefill-capable instance), windows are at most `router.sync_interval_ms`
long (1 ms when it is 0), so that bound is one router window; load-blind policies are routed
window by window then, like load-aware ones.

The KV bytes are pushed when the prompt finishes (the decode side buffers them until it has
blocks; the buffer is not modelled). requests.csv of a run with roles gains
`decode_instance,transfer_start,transfer_end,decode_scheduled` (-1 when the request was not
handed off); TTFT is the prefill side's, TPOT and ITL the decode side's (the first gap after the
first token includes the transfer and the transfer-queue wait); `instance id` stays the instance
the router sent it to. summary.json gains a `pd` block and each instance's `role`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fleetsim.cluster.errors import InputError, is_finite_number
from fleetsim.cluster.kv_transfer import MODES, KVLink
from fleetsim.cluster.metrics import DECODE_INSTANCE, DECODE_SCHEDULED, TRANSFER_END, stats_ms
from fleetsim.cluster.policies import make_policy, policy_class, policy_rng
from fleetsim.cluster.records import RecordBatch
from fleetsim.cluster.snapshot import Snapshot

ROLES = ("prefill", "decode", "mixed")
PD_KEYS = {"decode_policy", "decode_options", "link"}
LINK_KEYS = {"mode", "gbps", "latency_us"}
MIN_WINDOW_NS = 1_000_000


@dataclass(frozen=True)
class PDSpec:
    roles: tuple[str, ...]                 # one per instance
    decode_policy: str = "least_loaded"
    decode_options: dict = field(default_factory=dict)
    link_mode: str = "pair"
    link_gbps: float = 50.0                # GB/s per link (a 400 Gb/s NIC)
    link_latency_us: float = 10.0

    def members(self, *roles: str) -> list[int]:
        return [i for i, r in enumerate(self.roles) if r in roles]


def check_role(value, where: str) -> str:
    if value not in ROLES:
        raise InputError(f"{where}: field 'role' must be one of {', '.join(ROLES)}, got {value!r}")
    return value


def parse_pd(doc, roles: list, specs, where: str) -> PDSpec | None:
    """The PD spec of a fleet with `roles` (one per instance) and the `pd:` mapping `doc` (None:
    defaults); None when every instance is mixed and there is no `pd:`."""
    if doc is None and all(r == "mixed" for r in roles):
        return None
    if doc is not None and not isinstance(doc, dict):
        raise InputError(f"{where}: 'pd' must be a mapping with {', '.join(sorted(PD_KEYS))}")
    doc = doc or {}
    unknown = sorted(set(doc) - PD_KEYS, key=str)
    if unknown:
        raise InputError(f"{where}: pd: unknown key(s) {', '.join(map(str, unknown))}; allowed: "
                         f"{', '.join(sorted(PD_KEYS))}")
    if "prefill" not in roles or "decode" not in roles:
        raise InputError(f"{where}: PD disaggregation needs instances with role prefill and with role decode "
                         f"(roles given: {', '.join(sorted(set(roles)))})")
    for i, (role, spec) in enumerate(zip(roles, specs)):
        if role != "mixed" and (spec.pp > 1 or spec.dp_group is not None):
            raise InputError(f"{where}: instance {i}: role {role} with pp > 1 or a dp_group is not supported yet")
        if spec.model != specs[0].model:
            raise InputError(f"{where}: instance {i}: PD disaggregation hands requests over between instances of "
                             f"one model; {spec.model} is not {specs[0].model}")
    name = doc.get("decode_policy", "least_loaded")
    options = doc.get("decode_options") or {}
    if not isinstance(name, str) or not isinstance(options, dict):
        raise InputError(f"{where}: pd.decode_policy must be a policy name and pd.decode_options a mapping")
    cls = policy_class(name, f"{where}: pd.decode_policy")
    if cls.unknown_options(options):
        raise InputError(f"{where}: pd.decode_options: unknown key(s) {', '.join(map(str, cls.unknown_options(options)))} "
                         f"for {name}; allowed: {cls.allowed_options()}")
    link = doc.get("link") or {}
    if not isinstance(link, dict) or set(link) - LINK_KEYS:
        raise InputError(f"{where}: pd.link must be a mapping with {', '.join(sorted(LINK_KEYS))}")
    mode = link.get("mode", "pair")
    if mode not in MODES:
        raise InputError(f"{where}: pd.link.mode must be one of {', '.join(MODES)}, got {mode!r}")
    gbps, latency = link.get("gbps", 50.0), link.get("latency_us", 10.0)
    if not is_finite_number(gbps) or gbps <= 0:
        raise InputError(f"{where}: pd.link.gbps must be a positive number (GB/s), got {gbps!r}")
    if not is_finite_number(latency) or latency < 0:
        raise InputError(f"{where}: pd.link.latency_us must be a number >= 0, got {latency!r}")
    return PDSpec(tuple(roles), name, dict(options), mode, float(gbps), float(latency))


def with_pd_columns(batch, reqs: list):
    """`batch` (of the finished `reqs`, in their order) with the PD columns: decode instance,
    transfer start and end, decode admission (-1: not handed off), in `fixed` and in its lines."""
    cols = np.array([(r.decode_instance, r.transfer_start_ns, r.transfer_end_ns, r.decode_scheduled_ns)
                     for r in reqs], dtype=np.int64).reshape(len(reqs), 4)
    lines = [f"{line[:-1]},{a},{b},{c},{d}\n" for line, (a, b, c, d) in zip(batch.lines, cols.tolist())]
    return RecordBatch(np.hstack([batch.fixed, cols]), batch.itl, lines)


def note_handoff(snap: Snapshot, req) -> None:
    """A decode instance's snapshot after the router sent it a handoff: one more waiting, its
    remaining output tokens (its prompt is computed)."""
    snap.waiting += 1
    snap.decode_tokens += req.output_len - req.num_output


class MemberPolicy:
    """A routing policy restricted to `members` (instance indices, ascending): the policy sees
    them as instances 0..k−1 (snapshots re-indexed), the router the real indices."""

    def __init__(self, inner, members: list[int], note=Snapshot.note_routed):
        self.inner, self.members, self.note = inner, list(members), note
        self.name = inner.name
        self.needs_load = inner.needs_load
        self.needs_token_ids = getattr(inner, "needs_token_ids", False)
        self.draws = getattr(inner, "draws", True)
        self.position = {m: k for k, m in enumerate(self.members)}
        self.local = [Snapshot(k) for k in range(len(self.members))]

    def sync(self, snapshots) -> None:
        self.local = [Snapshot(k, s.waiting, s.running, s.kv_used, s.kv_total, s.prefill_tokens, s.decode_tokens,
                               s.now) for k, s in enumerate(snapshots[m] for m in self.members)]
        sync = getattr(self.inner, "sync", None)
        if sync is not None:
            sync(self.local)

    def choose(self, request, snapshots, rng) -> int:
        k = self.inner.choose(request, self.local, rng)
        if not (isinstance(k, (int, np.integer)) and 0 <= k < len(self.members)):
            raise InputError(f"policy {self.name}: choose() returned instance {k!r}; allowed 0..{len(self.members) - 1}")
        return self.members[int(k)]

    def routed(self, request, index: int) -> None:
        k = self.position[index]
        if self.needs_load:
            self.note(self.local[k], request)
        self.inner.routed(request, k)


@dataclass
class PDPlan:
    """What a run's `FleetLoop` needs for PD (built by the driver, pickled to the router actor)."""
    spec: PDSpec
    decode_policy: object        # a MemberPolicy over the decode instances
    seed: int
    window_ns: int


def make_plan(spec: PDSpec, seed: int, sync_interval_ns: int, block_size: int) -> PDPlan:
    decode = spec.members("decode")
    inner = make_policy(spec.decode_policy, len(decode), spec.decode_options, block_size)
    return PDPlan(spec, MemberPolicy(inner, decode, note_handoff), seed, sync_interval_ns or MIN_WINDOW_NS)


def prefill_policy(policy, spec: PDSpec) -> MemberPolicy:
    """The router's policy restricted to the prefill-capable instances."""
    return MemberPolicy(policy, spec.members("prefill", "mixed"))


class PDFleet:
    """A backend (local or ray) run in two phases per window (module docstring); the same
    interface as a backend for `FleetLoop`."""

    def __init__(self, backend, plan: PDPlan):
        self.backend, self.plan = backend, plan
        spec = plan.spec
        self.link = KVLink(spec.link_mode, spec.link_gbps, spec.link_latency_us)
        self.decode = plan.decode_policy
        self.rng = policy_rng(self.decode, plan.seed, "pd_decode")
        self.snaps = [Snapshot(i) for i in range(len(spec.roles))]
        self.flight: dict[int, tuple] = {}          # rid -> (decode copy, source, decode instance)
        self.releases: dict[int, list] = {}         # source -> [(rid, te)] for the next window
        self.prefill_busy = False
        self.count = 0
        self.bytes = 0
        self.durations: list[int] = []              # te - f of settled transfers
        self.waits: list[int] = []                  # decode_scheduled - te of finished handed-off requests

    @property
    def busy(self) -> bool:
        return bool(self.flight or self.releases or self.prefill_busy)

    def limit(self, t: int, start: int, end: int, exact: bool) -> tuple[int, int, bool]:
        """The router's plan (start, end, exact) after the fleet reached `t`, shortened to one PD
        window while PD work is in flight."""
        if not self.busy:
            return start, end, exact
        last = t + self.plan.window_ns
        if start >= last:
            return t, last, False
        return start, end if exact else min(end, last), exact

    def clip(self, t: int, start: int, end: int) -> int:
        """A routed window's end, shortened while PD work is in flight."""
        return min(end, max(start + 1, t + self.plan.window_ns)) if self.busy else end

    def snapshots(self) -> list:
        snaps = self.backend.snapshots()
        self._take(snaps)
        return snaps

    def _take(self, snaps) -> None:
        for idx, tup in snaps:
            self.snaps[idx] = Snapshot.from_tuple(idx, tup)
        self.decode.sync(self.snaps)

    def submit(self, deliveries: dict, t_end: int, want_snapshots: bool):
        backend = self.backend
        releases, self.releases = self.releases, {}
        batch1, snaps1, series1, handoffs = backend.collect(backend.submit(deliveries, t_end, True, "prefill", releases))
        self.prefill_busy = any(tup[0] or tup[1] for _, tup in snaps1)
        decode, link, snaps = self.decode, self.link, self.snaps
        for f, rid, src, nbytes, req in sorted(handoffs, key=lambda h: (h[0], h[1])):
            dst = decode.choose(req, snaps, self.rng)
            decode.routed(req, dst)
            req.transfer_start_ns = f
            link.start(rid, src, dst, f, nbytes)
            self.flight[rid] = (req, src, dst)
            self.count += 1
            self.bytes += nbytes
        arrivals: dict[int, list] = {}
        for te, rid in link.settle(t_end):
            req, src, dst = self.flight.pop(rid)
            req.transfer_end_ns = te
            self.durations.append(te - req.transfer_start_ns)
            arrivals.setdefault(dst, []).append(req)
            self.releases.setdefault(src, []).append((rid, max(te, t_end)))   # known there from t_end on
        batch2, snaps2, series2, _ = backend.collect(backend.submit(arrivals, t_end, True, "decode", None))
        snaps = sorted(snaps1 + snaps2)
        self._take(snaps)
        batch = RecordBatch.concat([batch1, batch2])
        self._note_waits(batch)
        return batch, snaps, series1 + series2

    def collect(self, handle):
        return handle

    def _note_waits(self, batch) -> None:
        f = batch.fixed
        if len(f):
            moved = f[:, DECODE_INSTANCE] >= 0
            self.waits.extend((f[moved, DECODE_SCHEDULED] - f[moved, TRANSFER_END]).tolist())

    def stats(self) -> list:
        return self.backend.stats()

    def close(self) -> None:
        self.backend.close()

    def summary(self) -> dict:
        """summary.json's `pd` block."""
        spec = self.plan.spec
        return {"roles": {r: spec.roles.count(r) for r in ROLES},
                "decode_policy": self.decode.name,
                "link": {"mode": spec.link_mode, "gbps": spec.link_gbps, "latency_us": spec.link_latency_us},
                "transfers": self.count, "transfer_bytes": self.bytes,
                "transfer_ms": stats_ms(np.array(self.durations, dtype=np.int64)),
                "transfer_queue_wait_ms": stats_ms(np.array(self.waits, dtype=np.int64))}


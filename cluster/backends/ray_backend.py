"""`ray`: instances packed into Ray actors, one batched call per actor per window.

The driver parses every config and table once and puts the parsed state (`CostModelState`:
arch, hardware, numpy tables) in the object store once (`share_cost_models`); every actor gets
the same reference and rebuilds its lookup structures from it without opening a file. By
default there are as many actors as Ray has CPUs, instances spread over them in contiguous
blocks (`instances_per_actor` or `actors` change that). A DP group (lock-stepped members) is one
unit of packing: its members always share an actor, which advances them as one `DPGroup`. Which
Ray: `ray_start.start_ray`. With `--backend ray` the `RayBackend` lives in the router actor
(cluster/backends/ray_router.py).

Lost actors are rebuilt by deterministic replay: `RayBackend` keeps every window call it sent
to each actor (the requests, pickled once, the window end, whether snapshots were wanted). When
a call finds its actor dead (killed process, node lost: a `RayActorError`), a new actor is
started, loaded with the same instances, sent that actor's earlier windows again (their results
dropped: an instance's state after a window depends only on the calls it received), then the
lost window and every later one not yet collected; the run goes on with byte-identical output.
An actor lost more than `MAX_REBUILDS` times ends the run with one line naming the actor, its
instances and the cause (`BackendFailure`, exit code 4). The log costs the memory of the routed
requests (about 40 bytes per plain request), kept until the run ends.
"""
from __future__ import annotations

import os
import pickle
import sys

import numpy as np

from fleetsim.cluster.backends.ray_start import start_ray
from fleetsim.cluster.errors import BackendFailure, InputError
from fleetsim.cluster.full_collections import spaced_full_collections
from fleetsim.cluster.invariants import InvariantViolation
from fleetsim.cluster.records import RecordBatch

MAX_REBUILDS = 3      # per actor and run


def pack_requests(deliveries: dict) -> tuple:
    """{instance: [Request]} → (int64 matrix of plain requests, {instance: [other Requests]}).

    Plain requests (no token or hash ids, no session, not handed off) travel as one row each:
    instance, id, arrival, prompt, output; the others are pickled as objects."""
    rows, others = [], {}       # rows: flat (a list of ints converts to numpy faster than one of tuples)
    for idx, reqs in deliveries.items():
        for r in reqs:
            if r.token_ids is None and r.hash_ids is None and r.session is None and r.num_output == 0:
                rows += (idx, r.rid, r.arrival_ns, r.prompt_len, r.output_len)
            else:
                others.setdefault(idx, []).append(r)
    return np.array(rows, dtype=np.int64).reshape(-1, 5), others


def unpack_requests(packed: tuple) -> dict:
    """Inverse of `pack_requests` (order within an instance: by arrival, then id, as routed)."""
    from fleetsim.instance.request import Request
    matrix, others = packed
    out: dict = {idx: list(reqs) for idx, reqs in others.items()}
    for idx, rid, arrival, prompt, output in matrix.tolist():
        out.setdefault(idx, []).append(Request(rid, arrival, prompt, output))
    return out


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM), in KiB; 0 where /proc is unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def check_packing(actors: int | None, instances_per_actor: int | None) -> None:
    """`--actors` and `--instances-per-actor`, if given, are at least 1."""
    for flag, value in (("--actors", actors), ("--instances-per-actor", instances_per_actor)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")


def share_cost_models(ray, specs, cost_models: dict):
    """Put the parsed state of each distinct spec's cost model in the object store once; the
    reference `RayBackend` takes."""
    keys = _spec_keys(specs)
    return ray.put({keys[s]: cost_models[s].state for s in keys})


def _spec_keys(specs) -> dict:
    return {spec: k for k, spec in enumerate(dict.fromkeys(specs))}


class HostActorImpl:
    """What each actor runs: an `InstanceHost` built from the shared state.

    Actors are pooled per driver process and reloaded for each run (`load`), so sweeps and
    test suites pay Ray's worker start-up once. An audit hook records every file the actor
    opens (tests assert it opens no config or table file).
    """

    def __init__(self):
        self.opened: list[str] = []
        self.host = None
        sys.addaudithook(self._audit)

    def load(self, shared: dict, assignments: list, fast_forward: bool = True, requests_detail: str = "full",
             full_checks: bool = False, groups=(), roles: dict | None = None) -> None:
        from fleetsim.cluster.host import InstanceHost
        from fleetsim.costmodel import CostModel
        from fleetsim.instance.pipeline import make_engine
        engines, models, built = {}, {}, {}
        for idx, key, spec in assignments:
            if key not in built:
                built[key] = CostModel.from_state(shared[key])
            cm = built[key].variant(spec.overhead_ns, spec.overhead_per_seq_ns, spec.memory_gib, spec.pp)
            engines[idx] = make_engine(cm, spec.engine, idx, fast_forward, spec.frontend)
            models[idx] = spec.model
        self.host = InstanceHost(engines, models, requests_detail, full_checks, groups, roles)
        self.opened = []

    def _audit(self, event, args):
        if event == "open" and args and isinstance(args[0], str):
            self.opened.append(args[0])

    def window(self, packed: bytes, t_end, want_snapshots, phase=None, releases=None, cuts=()):
        """One window (a PD phase of one, with its block releases; merged windows: cluster/host.py)."""
        with spaced_full_collections():
            return self.host.window(unpack_requests(pickle.loads(packed)), t_end, want_snapshots, phase, releases,
                                    cuts)

    def snapshots(self):
        return self.host.snapshots()

    def stats(self):
        return self.host.stats()

    def files_opened(self):
        return list(self.opened)

    def pid(self):
        return os.getpid()

    def peak_rss_kb(self):
        return peak_rss_kb()


class RayBackend:
    """Instances packed into host actors; a lost actor is rebuilt by replay (module docstring)."""
    name = "ray"

    def __init__(self, specs, shared, actors: int | None = None, instances_per_actor: int | None = None,
                 ray_address: str | None = None, num_cpus: int | None = None, fast_forward: bool = True,
                 requests_detail: str = "full", full_checks: bool = False, groups=(),
                 max_rebuilds: int = MAX_REBUILDS, roles: dict | None = None):
        """`shared`: what `share_cost_models` returned for these specs."""
        check_packing(actors, instances_per_actor)
        self.ray, self.started = start_ray(ray_address, num_cpus)
        ray = self.ray
        units = packing_units(len(specs), groups)
        n = len(units)
        if instances_per_actor is not None:
            actors = -(-len(specs) // instances_per_actor)
        if actors is None:
            actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actors = min(actors, n)
        keys = _spec_keys(specs)
        blocks = [units[a * n // actors:(a + 1) * n // actors] for a in range(actors)]
        self.actors = _pooled_actors(ray, actors)
        self.owner = {}
        self.loads = []                  # per actor: the arguments of its `load` (kept for a rebuild)
        self.members = []                # per actor: its instances, ascending
        for a, block in enumerate(blocks):
            members = sorted(i for unit in block for i in unit)
            for idx in members:
                self.owner[idx] = a
            self.members.append(members)
            self.loads.append((shared, [(i, keys[specs[i]], specs[i]) for i in members], fast_forward,
                               requests_detail, full_checks, [u for u in block if len(u) > 1],
                               None if roles is None else {i: roles[i] for i in members}))
        self.sent: list[list] = [[] for _ in blocks]     # per actor: every window call, in order
        self.pending: dict[int, list] = {}                # window number -> [ref per actor], not collected
        self.rebuilds = [0] * actors
        self.max_rebuilds = max_rebuilds
        self._gather([a.load.remote(*args) for a, args in zip(self.actors, self.loads)],
                     lambda a: self.actors[a].pid.remote(), replay_upto=lambda a: 0)   # a rebuild loads

    def submit(self, deliveries: dict, t_end: int, want_snapshots: bool, phase: str | None = None,
               releases: dict | None = None, cuts: tuple = ()) -> int:
        """Queue a window (or a PD phase of one: cluster/host.py; the handoffs between the
        phases are messages through the router actor; or merged windows, `cuts`) at every actor
        (actors run their calls in order); returns its number."""
        per_actor = [{} for _ in self.actors]
        for idx, reqs in deliveries.items():
            per_actor[self.owner[idx]][idx] = reqs
        w = len(self.sent[0])
        calls = [(pickle.dumps(pack_requests(d), protocol=5), t_end, want_snapshots) for d in per_actor]
        if phase is not None:
            per_release = [{} for _ in self.actors]
            for idx, rel in (releases or {}).items():
                per_release[self.owner[idx]][idx] = rel
            calls = [call + (phase, rel) for call, rel in zip(calls, per_release)]
        if cuts:
            calls = [call + (None, None, cuts) for call in calls]
        for log, call in zip(self.sent, calls):
            log.append(call)
        self.pending[w] = [a.window.remote(*call) for a, call in zip(self.actors, calls)]
        return w

    def collect(self, w: int):
        """The merged result of submitted window `w`, gathered in actor order."""
        refs = self.pending.pop(w)
        try:
            results = self._gather(refs, lambda a: self._resend(a, w), replay_upto=lambda a: w)
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, InvariantViolation):    # raised by an actor's host: one line
                raise exc.cause from None
            raise
        snaps, series, handoffs = [], [], []
        for result in results:
            snaps.extend(result[1])
            series.extend(result[2])
            if len(result) > 3:
                handoffs.extend(result[3])
        batch = RecordBatch.concat([r[0] for r in results])
        return (batch, snaps, series) if len(results[0]) == 3 else (batch, snaps, series, handoffs)

    def snapshots(self) -> list:
        return [s for part in self._everyone("snapshots") for s in part]

    def stats(self) -> list:
        return [s for part in self._everyone("stats") for s in part]

    def actor_peak_rss_kb(self) -> list[int]:
        return self._everyone("peak_rss_kb")

    def files_opened(self) -> list[list[str]]:
        return self._everyone("files_opened")

    def actor_pids(self) -> list[int]:
        return self._everyone("pid")

    def close(self) -> None:
        self.actors = []
        if self.started:
            _POOL.clear()
            self.ray.shutdown()
            from fleetsim.cluster.backends.ray_reaper import release
            release()
            self.started = False

    def _everyone(self, method: str) -> list:
        """Call `method` on every actor (after every window sent to it); results in actor order."""
        call = lambda a: getattr(self.actors[a], method).remote()   # noqa: E731
        return self._gather([call(a) for a in range(len(self.actors))], call,
                            replay_upto=lambda a: len(self.sent[a]))

    def _gather(self, refs: list, resend, replay_upto) -> list:
        """`ray.get(refs)` (one per actor); an actor found dead is rebuilt (`_rebuild`, replaying
        its first `replay_upto(a)` windows) and `resend(a)` gives the replacement ref."""
        lost = self.ray.exceptions.RayActorError
        try:
            return self.ray.get(refs)
        except lost:
            pass
        results = []
        for a, ref in enumerate(refs):
            while True:
                try:
                    results.append(self.ray.get(ref))
                    break
                except lost as exc:
                    self._rebuild(a, exc, replay_upto(a))
                    ref = resend(a)
        return results

    def _rebuild(self, a: int, cause, windows: int) -> None:
        """Replace dead actor `a`: a new actor, loaded as before, sent its first `windows` windows
        again (results dropped: the same calls give the same state), or one line if it was lost
        more than `max_rebuilds` times."""
        self.rebuilds[a] += 1
        if self.rebuilds[a] > self.max_rebuilds:
            block = self.members[a]
            reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            raise BackendFailure(f"ray actor {a} (instances {block[0]}-{block[-1]}) lost {self.rebuilds[a]} times "
                                 f"(at most {self.max_rebuilds} rebuilds); last cause: {type(cause).__name__}: {reason}")
        actor = _replace_pooled(self.ray, a)
        self.actors[a] = actor
        actor.load.remote(*self.loads[a])
        for call in self.sent[a][:windows]:
            actor.window.remote(*call)

    def _resend(self, a: int, w: int):
        """After a rebuild that replayed windows before `w`: send `w` and every later window not
        yet collected again; returns the new ref of `w`."""
        ref = self.actors[a].window.remote(*self.sent[a][w])
        for later in sorted(k for k in self.pending if k > w):
            self.pending[later][a] = self.actors[a].window.remote(*self.sent[a][later])
        return ref


def packing_units(n: int, groups=()) -> list[tuple[int, ...]]:
    """The units actors host: each DP group whole, every other instance alone; ordered by their
    first instance index (so with no group, blocks of units are blocks of instances)."""
    grouped = {i for g in groups for i in g}
    units = [tuple(g) for g in groups] + [(i,) for i in range(n) if i not in grouped]
    return sorted(units)


_POOL: list = []
_POOL_JOB: list = []      # the Ray job (driver connection) the pooled actors belong to


def warm_actors(ray, count: int) -> None:
    """Start `count` pooled host actors and wait until each answers (part of Ray's start-up)."""
    ray.get([a.pid.remote() for a in _pooled_actors(ray, count)])


def _actor_class(ray):
    return ray.remote(num_cpus=0)(HostActorImpl)


def _pooled_actors(ray, count: int) -> list:
    """`count` host actors from this process's pool, started on first need (a pool of an
    earlier Ray session of this process is dropped)."""
    job = ray.get_runtime_context().get_job_id()
    if _POOL_JOB != [job]:
        _POOL.clear()
        _POOL_JOB[:] = [job]
    while len(_POOL) < count:
        _POOL.append(_actor_class(ray).remote())
    return _POOL[:count]


def _replace_pooled(ray, a: int):
    """A fresh actor in place of pooled actor `a` (which died)."""
    _POOL[a] = _actor_class(ray).remote()
    return _POOL[a]


__all__ = ["RayBackend", "share_cost_models", "start_ray"]

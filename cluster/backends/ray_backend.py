"""`ray`: instances packed into Ray actors, one batched call per actor per window.

The driver parses every config and table once and puts the parsed state (`CostModelState`:
arch, hardware, numpy tables) in the object store once; every actor gets the same reference
and rebuilds its lookup structures from it without opening a file. By default there are as
many actors as Ray has CPUs, instances spread over them in contiguous blocks
(`instances_per_actor` or `actors` change that). A DP group (lock-stepped members) is one unit
of packing: its members always share an actor, which advances them as one `DPGroup`. Ray stays on 127.0.0.1, with no dashboard
and no usage stats, unless `ray_address` joins an existing cluster.
"""
from __future__ import annotations

import os
import socket
import sys

import numpy as np

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.invariants import InvariantViolation
from fleetsim.cluster.records import RecordBatch

QUIET_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
             "RAY_DEDUP_LOGS": "0"}


def start_ray(address: str | None = None, num_cpus: int | None = None, object_store_mb: int = 512):
    """Join or start Ray quietly on loopback; returns the ray module and whether we started it.

    The cluster joined, as plain `ray.init()` would: `address` (`--ray-address`; `auto` as Ray
    reads it), else `RAY_ADDRESS`, else the cluster a `ray start` on this machine recorded (in
    Ray's temp folder), if it answers. Joining passes no start-up arguments (Ray refuses them
    then). `local`, or nothing to join, starts a private Ray on 127.0.0.1 with `num_cpus` and
    an object store of `object_store_mb`, watched by `ray_reaper` so that it does not outlive
    this process even when this process is killed with SIGKILL."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    try:
        import ray
    except ImportError:
        raise InputError("--backend ray needs Ray: pip install 'fleetsim[ray]'") from None
    if address and address != "local":
        _check_reachable(address, "--ray-address")
    if ray.is_initialized():
        return ray, False
    join, source = _cluster_to_join(address)
    if join is not None:
        try:
            ray.init(address=join, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise InputError(f"{source} {join}: {str(exc).splitlines()[0]}") from None
        return ray, True
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR", object_store_memory=object_store_mb * 2**20, _node_ip_address="127.0.0.1")
    from fleetsim.cluster.backends.ray_reaper import watch
    watch(ray)
    return ray, True


def _cluster_to_join(address: str | None) -> tuple:
    """(address to join or None to start one, where it came from: a flag or variable name)."""
    if address == "local":
        return None, None
    if address:
        return address, "--ray-address"
    env = os.environ.get("RAY_ADDRESS", "")
    if env and env != "local":
        _check_reachable(env, "RAY_ADDRESS")
        return env, "RAY_ADDRESS"
    if env == "local":
        return None, None
    from ray._private.utils import read_ray_address      # what `ray start` wrote, if anything
    recorded = read_ray_address()
    if recorded and _answers(recorded):
        return recorded, "the cluster `ray start` recorded at"
    return None, None


def _answers(address: str) -> bool:
    return _connect_error(address) is None


def _check_reachable(address: str, source: str) -> None:
    """Fail fast (Ray itself retries for minutes) when a `host:port` address does not answer."""
    error = _connect_error(address)
    if error is not None:
        raise InputError(f"{source} {address}: no Ray cluster answers there ({error})")


def _connect_error(address: str, timeout_s: float = 3.0) -> str | None:
    """Why nothing answers at a `host:port` address; None if something does or it is no such address."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or address.startswith(("ray://", "auto")):
        return None
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def pack_requests(deliveries: dict) -> tuple:
    """{instance: [Request]} → (int64 matrix of plain requests, {instance: [other Requests]}).

    Plain requests (no token or hash ids, no session) travel as one row each:
    instance, id, arrival, prompt, output; the others are pickled as objects."""
    rows, others = [], {}
    for idx, reqs in deliveries.items():
        for r in reqs:
            if r.token_ids is None and r.hash_ids is None and r.session is None:
                rows.append((idx, r.rid, r.arrival_ns, r.prompt_len, r.output_len))
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
             full_checks: bool = False, groups=()) -> None:
        from fleetsim.cluster.host import InstanceHost
        from fleetsim.costmodel import CostModel
        from fleetsim.instance.pipeline import make_engine
        engines, models, built = {}, {}, {}
        for idx, key, spec in assignments:
            if key not in built:
                built[key] = CostModel.from_state(shared[key])
            cm = built[key].variant(spec.overhead_ns, spec.overhead_per_seq_ns, spec.memory_gib, spec.pp)
            engines[idx] = make_engine(cm, spec.engine, idx, fast_forward)
            models[idx] = spec.model
        self.host = InstanceHost(engines, models, requests_detail, full_checks, groups)
        self.opened = []

    def _audit(self, event, args):
        if event == "open" and args and isinstance(args[0], str):
            self.opened.append(args[0])

    def window(self, packed, t_end, want_snapshots):
        return self.host.window(unpack_requests(packed), t_end, want_snapshots)

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
    name = "ray"

    def __init__(self, specs, cost_models: dict, actors: int | None = None, instances_per_actor: int | None = None,
                 ray_address: str | None = None, num_cpus: int | None = None, fast_forward: bool = True,
                 requests_detail: str = "full", full_checks: bool = False, groups=()):
        for flag, value in (("--actors", actors), ("--instances-per-actor", instances_per_actor)):
            if value is not None and value < 1:
                raise InputError(f"{flag} must be >= 1, got {value}")
        self.ray, self.started = start_ray(ray_address, num_cpus)
        ray = self.ray
        units = packing_units(len(specs), groups)
        n = len(units)
        if instances_per_actor is not None:
            actors = -(-len(specs) // instances_per_actor)
        if actors is None:
            actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actors = min(actors, n)
        keys = {spec: k for k, spec in enumerate(dict.fromkeys(specs))}
        shared_ref = ray.put({keys[s]: cost_models[s].state for s in keys})
        blocks = [units[a * n // actors:(a + 1) * n // actors] for a in range(actors)]
        self.actors = _pooled_actors(ray, actors)
        self.owner = {}
        loads = []
        for a, block in enumerate(blocks):
            members = sorted(i for unit in block for i in unit)
            for idx in members:
                self.owner[idx] = a
            loads.append(self.actors[a].load.remote(shared_ref, [(i, keys[specs[i]], specs[i]) for i in members],
                                                    fast_forward, requests_detail, full_checks,
                                                    [u for u in block if len(u) > 1]))
        ray.get(loads)

    def submit(self, deliveries: dict, t_end: int, want_snapshots: bool) -> list:
        """Queue a window at every actor (actors run their calls in order); returns the refs."""
        per_actor = [{} for _ in self.actors]
        for idx, reqs in deliveries.items():
            per_actor[self.owner[idx]][idx] = reqs
        return [a.window.remote(pack_requests(d), t_end, want_snapshots) for a, d in zip(self.actors, per_actor)]

    def collect(self, refs: list):
        """The merged result of a submitted window, gathered in actor order."""
        try:
            results = self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, InvariantViolation):    # raised by an actor's host: one line
                raise exc.cause from None
            raise
        snaps, series = [], []
        for _, s, b in results:
            snaps.extend(s)
            series.extend(b)
        return RecordBatch.concat([r for r, _, _ in results]), snaps, series

    def snapshots(self) -> list:
        return [s for part in self.ray.get([a.snapshots.remote() for a in self.actors]) for s in part]

    def stats(self) -> list:
        return [s for part in self.ray.get([a.stats.remote() for a in self.actors]) for s in part]

    def actor_peak_rss_kb(self) -> list[int]:
        return self.ray.get([a.peak_rss_kb.remote() for a in self.actors])

    def files_opened(self) -> list[list[str]]:
        return self.ray.get([a.files_opened.remote() for a in self.actors])

    def close(self) -> None:
        self.actors = []
        if self.started:
            _POOL.clear()
            self.ray.shutdown()
            from fleetsim.cluster.backends.ray_reaper import release
            release()
            self.started = False


def packing_units(n: int, groups=()) -> list[tuple[int, ...]]:
    """The units actors host: each DP group whole, every other instance alone; ordered by their
    first instance index (so with no group, blocks of units are blocks of instances)."""
    grouped = {i for g in groups for i in g}
    units = [tuple(g) for g in groups] + [(i,) for i in range(n) if i not in grouped]
    return sorted(units)


_POOL: list = []


def warm_actors(ray, count: int) -> None:
    """Start `count` pooled host actors and wait until each answers (part of Ray's start-up)."""
    ray.get([a.pid.remote() for a in _pooled_actors(ray, count)])


def _pooled_actors(ray, count: int) -> list:
    """`count` host actors from this process's pool, started on first need."""
    if _POOL and not ray.is_initialized():
        _POOL.clear()
    actor_cls = ray.remote(num_cpus=0)(HostActorImpl)
    while len(_POOL) < count:
        _POOL.append(actor_cls.remote())
    return _POOL[:count]


__all__ = ["RayBackend", "start_ray"]

"""`ray_router`: with `--backend ray`, the run's window loop runs in a router actor.

The design's shape (DESIGN.md "The cluster"): the driver parses the inputs once, builds the
router (policy, seed), puts the parsed cost-model state and the workload (its compact table; the
router makes the requests as it routes them) in the object store and starts one call at the
router actor. The router actor owns the windows: it builds the `RayBackend` (the instance
actors, their packing, the rebuild of lost ones) and runs the same `FleetLoop` as the local
backend — routing, dispatch, metrics, invariants — writing the output text into buffers. Each
`step` call runs up to `WINDOWS_PER_CALL` windows (fewer once `TEXT_PER_CALL` characters of
requests.csv are waiting: load-blind windows are 1 s long) and returns that text (requests.csv,
timeseries.csv, timeseries_fleet.csv lines) and the progress; the driver keeps one call queued
ahead, so it only writes text to disk while the router goes on, and writes summary.json at the
end. The driver can therefore be remote (`ray job submit`, or
`--ray-address` to a cluster elsewhere): what crosses to it is output text only.

The router actor (no CPU reserved) is pooled per driver process like the host actors, which it
keeps in its own pool, so sweeps and test suites start both once. An error raised in it (bad
input, a violated invariant, an instance actor lost beyond its rebuilds) reaches the driver as
the same exception; a lost router actor is a `BackendFailure`.
"""
from __future__ import annotations

import io

from fleetsim.cluster.errors import BackendFailure, InputError
from fleetsim.cluster.invariants import InvariantViolation
from fleetsim.costmodel import CostModelError

WINDOWS_PER_CALL = 16
TEXT_PER_CALL = 1 << 22      # ... or fewer once this many characters of requests.csv are buffered


class RouterActorImpl:
    """What the router actor runs: a `RayBackend` and a `FleetLoop` over it."""

    def __init__(self):
        self.fleet = self.loop = None
        self.buffers: list[io.StringIO] = []

    def start(self, router, source: tuple, specs: list, shared: list, backend_options: dict, write_requests: bool,
              router_info: dict, slo: dict | None, pd=None) -> None:
        """A new run (`shared` is `[ref]` of the cost-model state, kept a reference inside a list)."""
        from fleetsim.cluster.backends.ray_backend import RayBackend
        from fleetsim.cluster.fleet_loop import FleetLoop
        self.close()
        self.fleet = RayBackend(specs, shared[0], **backend_options)
        self.buffers = [io.StringIO() for _ in range(3)]
        requests_buf = self.buffers[0]
        write = (lambda lines: requests_buf.write("".join(lines))) if write_requests else None
        self.loop = FleetLoop(router, self.fleet, source, write, (self.buffers[1], self.buffers[2]), router_info,
                              slo, pd)

    def step(self, windows: int) -> tuple:
        """Up to `windows` more windows: (texts, (simulated ns, finished), done)."""
        loop = self.loop
        for _ in range(windows):
            if loop.done or loop.advance() or self.buffers[0].tell() >= TEXT_PER_CALL:
                break
        return self._drain(), loop.progress, loop.done

    def summary(self) -> tuple:
        """(summary, the last texts, rebuilds per instance actor) of the finished run."""
        summary = self.loop.summary()
        return summary, self._drain(), list(self.fleet.rebuilds)

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.close()
        self.fleet = self.loop = None

    def instance_pids(self) -> list[int]:
        """The instance actors' process ids ([] between runs)."""
        return self.fleet.actor_pids() if self.fleet is not None else []

    def peak_rss_kb(self) -> list[int]:
        """Peak resident set (KiB) of this actor, then of each instance actor."""
        from fleetsim.cluster.backends.ray_backend import peak_rss_kb
        return [peak_rss_kb(), *self.fleet.actor_peak_rss_kb()]

    def warm(self, count: int) -> None:
        """Start `count` pooled instance actors and wait until each answers."""
        import ray
        from fleetsim.cluster.backends.ray_backend import warm_actors
        warm_actors(ray, count)

    def _drain(self) -> list[str]:
        texts = []
        for buf in self.buffers:
            texts.append(buf.getvalue())
            buf.seek(0)
            buf.truncate()
        return texts


class RayRun:
    """The driver's side of a run on Ray: starts the router actor's run, yields its output text."""

    def __init__(self, router, source: tuple, specs: list, cost_models: dict, write_requests: bool,
                 router_info: dict, slo: dict | None = None, ray_address: str | None = None,
                 num_cpus: int | None = None, pd=None, **backend_options):
        from fleetsim.cluster.backends.ray_backend import check_packing, share_cost_models, start_ray
        check_packing(backend_options.get("actors"), backend_options.get("instances_per_actor"))   # before Ray starts
        self.ray, self.started = start_ray(ray_address, num_cpus)
        ray = self.ray
        self.actor = router_actor(ray)
        self.rebuilds: list[int] = []
        shared = share_cost_models(ray, specs, cost_models)
        self._get(self.actor.start.remote(router, ray.put(source), specs, [shared], backend_options,
                                          write_requests, router_info, slo, pd))

    def run(self, write_requests, series_streams: tuple, progress) -> dict:
        """Write the router actor's output text as it comes (`write_requests(lines)` or None,
        the two time-series streams), reporting `progress(simulated ns, finished)`; the summary."""
        def write(texts):
            requests, series, fleet = texts
            if requests and write_requests is not None:
                write_requests([requests])
            series_streams[0].write(series)
            series_streams[1].write(fleet)
        for texts, done in self.steps():
            write(texts)
            progress(*done)
        summary, texts, self.rebuilds = self._get(self.actor.summary.remote())
        write(texts)
        return summary

    def notes(self) -> dict:
        """Kept out of the files: how many lost instance actors were rebuilt."""
        return {"actor_rebuilds": sum(self.rebuilds)}

    def steps(self):
        """Yield (texts, progress) per call until the run's last window; one call queued ahead."""
        ref = self.actor.step.remote(WINDOWS_PER_CALL)
        while True:
            texts, progress, done = self._get(ref)
            if not done:
                ref = self.actor.step.remote(WINDOWS_PER_CALL)
            yield texts, progress
            if done:
                return

    def call(self, method: str, *args):
        """Another call at the router actor (in order after the queued ones)."""
        return self._get(getattr(self.actor, method).remote(*args))

    def close(self) -> None:
        try:
            if self.ray.is_initialized():
                self._get(self.actor.close.remote())
        finally:
            if self.started:
                from fleetsim.cluster.backends.ray_reaper import release
                _ROUTER.clear()
                self.ray.shutdown()
                release()
                self.started = False

    def _get(self, ref):
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, (InputError, CostModelError, InvariantViolation, BackendFailure)):
                raise exc.cause from None
            raise
        except ray.exceptions.RayActorError as exc:
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else type(exc).__name__
            raise BackendFailure(f"the ray router actor was lost: {type(exc).__name__}: {reason}") from None


def warm_router(ray, count: int) -> None:
    """Start the router actor and `count` instance actors in its pool (part of Ray's start-up)."""
    ray.get(router_actor(ray).warm.remote(count))


_ROUTER: list = []
_ROUTER_JOB: list = []    # the Ray job (driver connection) the pooled router actor belongs to


def router_actor(ray):
    """This driver's pooled router actor, started on first need (one of an earlier Ray session
    of this process is dropped)."""
    job = ray.get_runtime_context().get_job_id()
    if _ROUTER_JOB != [job]:
        _ROUTER.clear()
        _ROUTER_JOB[:] = [job]
    if not _ROUTER:
        _ROUTER.append(ray.remote(num_cpus=0)(RouterActorImpl).remote())
    return _ROUTER[0]

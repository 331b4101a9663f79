"""The router as a Ray actor, and lost instance actors rebuilt by deterministic replay.

A killed actor process (SIGKILL of the pid `HostActorImpl.pid()` reports) is replaced, replayed
window by window and the run goes on: window results equal the local backend's, and a whole
run killed mid-way writes the bytes of an undisturbed one."""
import os
import signal
import threading
import time

import numpy as np
import pytest

from fleet_helpers import EXAMPLE_WORKLOAD, FLEET_CLUSTER, outputs, run_cli

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

WINDOW_NS = 50_000_000


def _specs_and_models(n: int):
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.fleet import load_cost_model
    cfg = load_cluster_config(str(FLEET_CLUSTER))
    spec = cfg.instances[0]
    return cfg.instances[:n], {spec: load_cost_model(spec)}


def _ray_backend(specs, models, actors: int, **options):
    from fleetsim.cluster.backends.ray_backend import RayBackend, share_cost_models
    return RayBackend(specs, share_cost_models(ray, specs, models), actors=actors, **options)


def _deliveries(k: int, n: int) -> dict:
    """Window k's new requests: two per instance, lengths varying with k (fresh objects)."""
    from fleetsim.instance.request import Request
    out = {}
    for i in range(n):
        rid = 1000 * k + i
        out[i] = [Request(rid, k * WINDOW_NS + 7 * i, 100 + 37 * (rid % 11), 5 + 13 * (rid % 7)),
                  Request(rid + 500, k * WINDOW_NS + 7 * i + 3, 40 + 91 * (rid % 5), 3 + 29 * (rid % 3))]
    return out


def _same(a, b) -> bool:
    (ra, sa, ba), (rb, sb, bb) = a, b
    ra, rb = ra.ordered(), rb.ordered()
    return (np.array_equal(ra.fixed, rb.fixed) and np.array_equal(ra.itl, rb.itl) and ra.lines == rb.lines
            and sa == sb and ba == bb)


def _kill(backend, actor: int) -> None:
    os.kill(backend.actor_pids()[actor], signal.SIGKILL)


def test_killed_actors_are_rebuilt_by_replay_window_by_window(ray_session):
    from fleetsim.cluster.backends.local import LocalBackend
    from fleetsim.cluster.fleet import make_engine
    n = 6
    specs, models = _specs_and_models(n)
    cm = models[specs[0]]
    local = LocalBackend({i: make_engine(cm, s, i) for i, s in enumerate(specs)}, {i: s.model for i, s in enumerate(specs)})
    remote = _ray_backend(specs, models, actors=3)
    try:
        assert remote.snapshots() == local.snapshots()
        for k in range(30):
            if k == 10:
                _kill(remote, 1)              # between windows: the next window finds it dead
            if k == 20:                       # two windows in flight at the actor when it dies
                handles = [remote.submit(_deliveries(k, n), (k + 1) * WINDOW_NS, True),
                           remote.submit(_deliveries(k + 1, n), (k + 2) * WINDOW_NS, True)]
                _kill(remote, 2)
                for j, h in enumerate(handles):
                    assert _same(remote.collect(h), local.collect(local.submit(_deliveries(k + j, n),
                                                                               (k + j + 1) * WINDOW_NS, True)))
                continue
            if k == 21:
                continue
            want = local.collect(local.submit(_deliveries(k, n), (k + 1) * WINDOW_NS, True))
            assert _same(remote.collect(remote.submit(_deliveries(k, n), (k + 1) * WINDOW_NS, True)), want), k
        _kill(remote, 0)                      # lost before the final stats
        assert remote.stats() == local.stats()
        assert remote.rebuilds == [1, 1, 1]
    finally:
        remote.close()


def test_an_actor_lost_too_often_ends_the_run_with_one_line(ray_session):
    from fleetsim.cluster.errors import BackendFailure
    specs, models = _specs_and_models(4)
    remote = _ray_backend(specs, models, actors=2, max_rebuilds=0)
    try:
        _kill(remote, 1)
        with pytest.raises(BackendFailure) as err:
            remote.snapshots()
        text = str(err.value)
        assert "\n" not in text
        assert text.startswith("ray actor 1 (instances 2-3) lost 1 times (at most 0 rebuilds); last cause: ")
        assert "ActorDiedError" in text
    finally:
        remote.close()


def test_the_router_actor_runs_the_loop_and_the_driver_only_writes(ray_session, tmp_path, monkeypatch):
    from fleetsim.cluster.fleet_loop import FleetLoop
    common = ("--instances", "8", "--router", "least_kv", "--num-requests", "80")
    local = outputs(run_cli(tmp_path / "local", *common))

    def not_here(self):
        raise AssertionError("the driver ran a window")
    monkeypatch.setattr(FleetLoop, "advance", not_here)
    assert outputs(run_cli(tmp_path / "ray", *common, "--backend", "ray", "--actors", "3")) == local


def test_a_run_with_an_instance_actor_killed_mid_run_writes_the_undisturbed_bytes(ray_session, tmp_path):
    from fleetsim.cluster.backends import ray_router
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.fleet import run_fleet
    from fleetsim.cluster.workloads import load_workload
    killed, stop = [], threading.Event()

    def killer():                             # waits for the run's instance actors, kills one
        while not stop.is_set():
            pids = ray.get(ray_router._ROUTER[0].instance_pids.remote()) if ray_router._ROUTER else []
            if pids:
                os.kill(pids[1], signal.SIGKILL)
                killed.append(pids[1])
                return
            time.sleep(0.02)
    thread = threading.Thread(target=killer)
    thread.start()
    try:
        summary = run_fleet(load_cluster_config(str(FLEET_CLUSTER)), load_workload(str(EXAMPLE_WORKLOAD)),
                            str(tmp_path / "ray"), "ray", actors=2)
    finally:
        stop.set()
        thread.join()
    assert killed and summary["actor_rebuilds"] == 1
    assert outputs(tmp_path / "ray") == outputs(run_cli(tmp_path / "local"))

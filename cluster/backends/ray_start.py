"""`ray_start`: which Ray a run uses — a cluster joined, or a private one started on loopback.

`start_ray` joins, as plain `ray.init()` would, `--ray-address` (`auto`: Ray's own search), else
`RAY_ADDRESS`, else the cluster a `ray start` on this machine recorded in Ray's temp folder, if
it answers; joining passes no start-up arguments (Ray refuses `num_cpus`, `object_store_memory`
and the like then). `local`, or nothing to join, starts a private Ray on 127.0.0.1 (no
dashboard, no usage stats), watched by `ray_reaper` so that it dies with this process.
"""
from __future__ import annotations

import os

from fleetsim.cluster.errors import InputError

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
    import socket                       # deferred: only a Ray address to join needs it
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return str(exc.strerror or exc)
    return None

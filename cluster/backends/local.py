"""`local`: every instance in the calling process (the default and the reference; no Ray)."""
from __future__ import annotations

from fleetsim.cluster.host import InstanceHost


class LocalBackend:
    name = "local"

    def __init__(self, engines: dict, models: dict, requests_detail: str = "full", full_checks: bool = False,
                 groups=(), roles: dict | None = None):
        self.host = InstanceHost(engines, models, requests_detail, full_checks, groups, roles)

    def submit(self, deliveries: dict, t_end: int, want_snapshots: bool, phase: str | None = None,
               releases: dict | None = None, cuts: tuple = ()):
        """Start a window (a PD phase of one, merged windows: cluster/host.py); `collect` returns
        its result (here it is computed at once)."""
        return self.host.window(deliveries, t_end, want_snapshots, phase, releases, cuts)

    def collect(self, handle):
        return handle

    def snapshots(self) -> list:
        return self.host.snapshots()

    def stats(self) -> list:
        return self.host.stats()

    def close(self) -> None:
        pass

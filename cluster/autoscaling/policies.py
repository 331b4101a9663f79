"""Autoscaling policies: how many instances the fleet should have, from the active instances' load.

Interface (`AutoscalingPolicy`; a user class, named by dotted path `package.module:Class` in
`autoscaler.policy`, subclasses it):

- `OPTIONS`: the option keys it takes (the `autoscaler:` keys that are not the autoscaler's own);
  None: not checked. `__init__(options)` receives them as a dict.
- `recommend(now_ns, active, in_service) -> int`: the number of instances wanted, from `active`
  (the snapshots of the routable instances, cluster/snapshot.py, taken at `now_ns`: waiting,
  running, kv_used, kv_total, outstanding tokens) and `in_service` (active + provisioning, the
  count the fleet is heading for). The autoscaler clamps it to [min, max] and applies the
  scale-down stabilisation (cluster/autoscaling/scaler.py); the policy does neither.

Built in, both Kubernetes HPA's rule on an average per-instance metric (exact rationals, so a
hand computation gives the same count): with `total` the metric summed over the active
instances, `ratio = total / (target · in_service)`; within `tolerance` of 1 (|ratio − 1| <=
tolerance, default 0.1) the count stays `in_service`, else it is `ceil(total / target)`
(= ceil(current · average / target), HPA's formula over the ready instances; an instance still
provisioning counts as 0, as HPA counts a pod that is not ready when scaling up).

- `target_utilisation`: metric = an instance's KV-cache utilisation, kv_used / kv_total (vLLM's
  `kv_cache_usage_perc`, the usual signal LLM autoscalers read; GPU busy time is near 1 whenever
  anything runs), `target` in (0, 1].
- `queue_length`: metric = requests at the instance, waiting (queued or still in its front end)
  + running: vLLM's num_requests_waiting + num_requests_running, the number in the system
  (waiting alone is 0 below saturation and gives no proportional signal), `target` > 0 per instance.
"""
from __future__ import annotations

import math
from fractions import Fraction

from fleetsim.cluster.errors import InputError, exact_fraction, is_finite_number


class AutoscalingPolicy:
    name = "autoscaling_policy"
    OPTIONS: tuple[str, ...] | None = None

    def __init__(self, options: dict | None = None):
        self.options = dict(options or {})
        self.check_options(self.options, "autoscaler")

    @classmethod
    def check_options(cls, options: dict, where: str) -> None:
        """InputError on a key the policy does not take (and on bad values: subclasses)."""
        if cls.OPTIONS is None:
            return
        unknown = sorted(set(options) - set(cls.OPTIONS), key=str)
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} for policy {cls.name}; "
                             f"its options: {', '.join(cls.OPTIONS) or 'none'}")

    def recommend(self, now_ns: int, active: list, in_service: int) -> int:
        raise NotImplementedError


class HpaPolicy(AutoscalingPolicy):
    """HPA's rule on `metric(snapshot)` (module doc)."""
    OPTIONS = ("target", "tolerance")
    TARGET_MAX: float | None = None

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        self.target = exact_fraction(self.options["target"])
        self.tolerance = exact_fraction(self.options.get("tolerance", 0.1))

    @classmethod
    def check_options(cls, options: dict, where: str) -> None:
        super().check_options(options, where)
        target = options.get("target")
        bound = f" and at most {cls.TARGET_MAX:g}" if cls.TARGET_MAX is not None else ""
        if not is_finite_number(target) or target <= 0 or (cls.TARGET_MAX is not None and target > cls.TARGET_MAX):
            raise InputError(f"{where}: target (policy {cls.name}) must be a number > 0{bound}, got {target!r}")
        tol = options.get("tolerance", 0.1)
        if not is_finite_number(tol) or not 0 <= tol < 1:
            raise InputError(f"{where}: tolerance must be a number in [0, 1), got {tol!r}")

    def metric(self, snap) -> Fraction:
        raise NotImplementedError

    def recommend(self, now_ns: int, active: list, in_service: int) -> int:
        total = sum((self.metric(s) for s in active), Fraction(0))
        if abs(total / (self.target * in_service) - 1) <= self.tolerance:
            return in_service
        return math.ceil(total / self.target)


class TargetUtilisation(HpaPolicy):
    name = "target_utilisation"
    TARGET_MAX = 1.0

    def metric(self, snap) -> Fraction:
        return Fraction(snap.kv_used, max(1, snap.kv_total))


class QueueLength(HpaPolicy):
    name = "queue_length"

    def metric(self, snap) -> Fraction:
        return Fraction(snap.waiting + snap.running)

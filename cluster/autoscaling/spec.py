"""`AutoscalerSpec`: the cluster YAML's `autoscaler:` block, checked once when the config loads.

    autoscaler:
      min: 1                       # instances kept in service (>= 1)
      max: 4                       # engines built up front (the fleet's instance indices 0..max-1)
      initial: 1                   # active at t = 0 (default: min), no cold start
      interval_s: 15               # evaluation every interval_s of simulated time (HPA's sync period)
      provisioning_delay_s: 60     # cold start: a new instance is routable that long after it starts
      stabilisation_window_s: 300  # scale down to the highest recommendation of this window (HPA's)
      policy: queue_length         # target_utilisation | queue_length | package.module:Class
      target: 8                    # policy options: every other key goes to the policy
      tolerance: 0.1

The fleet is `max` engines: `instances` may be omitted (then `max` copies of the config's instance
spec are built) or must count exactly `max` (a list of kinds is fine: instance i keeps its kind).
Times are simulated seconds, turned into integer ns here (round to the ns).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fleetsim.cluster.errors import InputError, is_finite_number, is_int

MAX_SECONDS = 1e8          # 10^17 ns: the arrival bound (cluster/invariants.py) is 10^18 ns
OWN_KEYS = ("min", "max", "initial", "interval_s", "provisioning_delay_s", "stabilisation_window_s", "policy")


@dataclass(frozen=True)
class AutoscalerSpec:
    min: int
    max: int
    initial: int
    interval_ns: int
    provisioning_delay_ns: int
    stabilisation_window_ns: int
    policy: str
    options: dict = field(default_factory=dict)       # the policy's options (target, tolerance, ...)

    def info(self) -> dict:
        """summary.json's description of the autoscaler (before its measured fields)."""
        return {"policy": self.policy, **{k: self.options[k] for k in sorted(self.options)},
                "min": self.min, "max": self.max, "initial": self.initial, "interval_s": self.interval_ns / 1e9,
                "provisioning_delay_s": self.provisioning_delay_ns / 1e9,
                "stabilisation_window_s": self.stabilisation_window_ns / 1e9}


def _seconds(doc: dict, key: str, default: float, where: str, positive: bool = False) -> int:
    value = doc.get(key, default)
    low = "> 0" if positive else ">= 0"
    if not is_finite_number(value) or value < 0 or (positive and value == 0) or value > MAX_SECONDS:
        raise InputError(f"{where}: autoscaler.{key} must be a number of seconds {low} and at most "
                         f"{MAX_SECONDS:g}, got {value!r}")
    ns = round(value * 1e9)
    return max(ns, 1) if positive else ns


def parse_autoscaler(doc, where: str) -> AutoscalerSpec:
    """The `autoscaler:` mapping of a cluster config `where` (InputError: one line naming the field)."""
    from fleetsim.cluster.autoscaling import policy_class
    if not isinstance(doc, dict):
        raise InputError(f"{where}: 'autoscaler' must be a mapping with {', '.join(OWN_KEYS)} and the policy's options")
    if "max" not in doc:
        raise InputError(f"{where}: autoscaler.max is required (the number of engines built up front)")
    counts = {}
    for key in ("min", "max", "initial"):
        value = doc.get(key, counts.get("min", 1) if key == "initial" else 1)
        if not is_int(value) or value < 1:
            raise InputError(f"{where}: autoscaler.{key} must be an integer >= 1, got {value!r}")
        counts[key] = value
    if not counts["min"] <= counts["initial"] <= counts["max"]:
        raise InputError(f"{where}: autoscaler needs min <= initial <= max, got min {counts['min']}, "
                         f"initial {counts['initial']}, max {counts['max']}")
    name = doc.get("policy")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: autoscaler.policy is required: target_utilisation, queue_length or a dotted path")
    cls = policy_class(name, f"{where}: autoscaler.policy")
    options = {k: v for k, v in doc.items() if k not in OWN_KEYS}
    spec = AutoscalerSpec(counts["min"], counts["max"], counts["initial"],
                          _seconds(doc, "interval_s", 15, where, positive=True),
                          _seconds(doc, "provisioning_delay_s", 0, where),
                          _seconds(doc, "stabilisation_window_s", 300, where), name, options)
    cls.check_options(options, f"{where}: autoscaler")
    return spec


def fleet_specs(specs: list, autoscaler: AutoscalerSpec, instances_given: bool, where: str) -> list:
    """The instance specs of an autoscaled fleet: `max` of them (module doc)."""
    if not instances_given:
        return [specs[0]] * autoscaler.max
    if len(specs) != autoscaler.max:
        raise InputError(f"{where}: instances counts {len(specs)} but autoscaler.max is {autoscaler.max}: "
                         f"omit instances or give exactly max (every engine is built up front)")
    return specs

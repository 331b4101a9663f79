"""Autoscaling (issue 13 item 3): the `autoscaler:` block (spec.py), its policies (policies.py,
a registry by name or dotted path) and the state machine the router's loop drives (scaler.py)."""
from __future__ import annotations

from fleetsim.cluster.autoscaling.policies import AutoscalingPolicy, QueueLength, TargetUtilisation
from fleetsim.cluster.plugins import plugin_class

POLICIES = {p.name: p for p in (TargetUtilisation, QueueLength)}


def policy_class(name: str, where: str = "autoscaler.policy") -> type:
    """The autoscaling policy class `name` (registered name or `package.module:Class`)."""
    return plugin_class(name, POLICIES, AutoscalingPolicy, "fleetsim.AutoscalingPolicy", where)


__all__ = ["POLICIES", "AutoscalingPolicy", "policy_class"]

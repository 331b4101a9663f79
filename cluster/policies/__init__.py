"""Routing policies, selectable by name or by dotted path (`package.module:Class`)."""
from __future__ import annotations

from fleetsim.cluster.plugins import plugin_class
from fleetsim.cluster.policies.base import Policy, policy_rng, stable_hash, warn_if_blind
from fleetsim.cluster.policies.load_aware import LeastKV, LeastLoaded, LeastOutstandingTokens, PowerOfTwo
from fleetsim.cluster.policies.load_blind import Random, RoundRobin, SessionAffinity
from fleetsim.cluster.policies.prefix_aware import PrefixAware
from fleetsim.cluster.policies.weighted import Weighted

POLICIES = {p.name: p for p in (RoundRobin, Random, LeastLoaded, LeastOutstandingTokens, LeastKV, PowerOfTwo,
                                PrefixAware, SessionAffinity, Weighted)}


def policy_class(name: str, where: str = "router.policy") -> type:
    """The policy class `name` (registered name or dotted path); an InputError names `where` the
    name came from (the config's field, or the flag)."""
    return plugin_class(name, POLICIES, Policy, "fleetsim.Policy", where)


def make_policy(name: str, num_instances: int, options: dict | None = None, block_size: int = 16) -> Policy:
    return policy_class(name)(num_instances, options or {}, block_size)


__all__ = ["POLICIES", "Policy", "make_policy", "policy_class", "policy_rng", "stable_hash", "warn_if_blind"]

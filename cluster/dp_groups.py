"""Which instances form lock-stepped DP(+EP) engine groups, checked once per run.

Instances naming the same `dp_group` (fleetsim YAML `dp_group`, LLMServingSim JSON `dp_group`)
of a MoE model form one vLLM data-parallel engine group (`instance.dp_group.DPGroup`). The
members must agree on model, hardware, cost model, variant, tp, pp and ep; `ep` is the group's
expert-parallel degree (LLMServingSim's `ep_size`: experts are split over ep ranks in total),
a multiple of the member count with at most tp EP ranks per member (LLMServingSim's
config_builder rules; vLLM's `--enable-expert-parallel` uses ep = members·tp). Pipeline
parallelism inside a group is not supported yet. A dense model's `dp_group` is plain data
parallelism (independent engines, as vLLM runs a dense model with DP), and a group of one
member is a lone instance.
"""
from __future__ import annotations

from fleetsim.cluster.errors import InputError

SHARED_FIELDS = ("model", "hardware", "cost_model", "variant", "tp", "pp", "ep")


def lockstep_groups(specs, cost_models: dict, source: str) -> tuple[tuple[int, ...], ...]:
    """The lock-stepped groups as tuples of instance indices, ordered by their first index."""
    named: dict[str, list[int]] = {}
    for idx, spec in enumerate(specs):
        if spec.dp_group is not None:
            named.setdefault(spec.dp_group, []).append(idx)
    groups = []
    for name, members in named.items():
        first = specs[members[0]]
        for idx in members[1:]:
            for f in SHARED_FIELDS:
                a, b = getattr(first, f), getattr(specs[idx], f)
                if a != b:
                    raise InputError(f"{source}: dp_group {name!r}: instances {members[0]} and {idx} differ in "
                                     f"{f} ({a!r} vs {b!r}); the members of a group must agree on "
                                     f"{', '.join(SHARED_FIELDS)}")
        cm = cost_models[first]
        if len(members) == 1 or not cm.arch.is_moe:
            continue
        n, ep = len(members), cm.ep
        if first.pp > 1:
            raise InputError(f"{source}: dp_group {name!r}: pp {first.pp}: pipeline parallelism in a DP group "
                             f"is not supported yet; allowed: pp 1")
        if ep % n or ep // n > first.tp:
            raise InputError(f"{source}: dp_group {name!r}: ep {ep} over {n} members of tp {first.tp}: ep must be "
                             f"a multiple of the member count with at most tp EP ranks per member "
                             f"(allowed: {', '.join(str(n * j) for j in range(1, first.tp + 1))})")
        groups.append(tuple(members))
    return tuple(sorted(groups))

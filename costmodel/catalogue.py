"""Hardware catalogue entries as documents: `inherits` resolution and nested efficiency mappings.

An entry may say `inherits: OTHER` (a family: the H200 inherits the H100): it takes every key of
OTHER's resolved entry that it does not set itself, and OTHER's `efficiency:` mapping is
deep-merged under its own (its keys win). Cycles are an error.
"""
from __future__ import annotations

from fleetsim.costmodel.errors import CostModelError
from fleetsim.costmodel.files import load_yaml
from fleetsim.costmodel.paths import hardware_path


def flatten(eff: dict, prefix: str = "") -> dict:
    """Nested efficiency mapping → {"gemm.c_max": 0.8, "elementwise.rotary_emb.e_mem": 0.3, ...}."""
    out = {}
    for key, value in (eff or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def unflatten(flat: dict) -> dict:
    out: dict = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def merge_efficiency(base: dict, override: dict) -> dict:
    """Deep merge: `override`'s keys win."""
    return unflatten({**flatten(base), **flatten(override)})


def resolve_hardware_doc(name: str, hardware_roots: tuple[str, ...] = (), _seen: tuple = ()) -> dict:
    """The hardware YAML as a dict, with `inherits: OTHER` resolved: every key of OTHER's
    (recursively resolved) entry that this one does not set, and the `efficiency` mapping deep-merged
    (this entry's keys win). A family (e.g. Hopper: H200 inherits H100) thus shares its compute
    ceilings, per-kernel costs and SM-side bandwidth ceilings, and each entry states its own memory."""
    if name in _seen:
        raise CostModelError(f"hardware {name!r}: inherits cycle: {' -> '.join(_seen + (name,))}")
    path = hardware_path(name, hardware_roots)
    doc = load_yaml(path)
    if not isinstance(doc, dict):
        raise CostModelError(f"{path}: expected a mapping of hardware fields")
    parent = doc.get("inherits")
    if not parent:
        return doc
    base = resolve_hardware_doc(str(parent), hardware_roots, _seen + (name,))
    merged = {**base, **doc}
    merged["efficiency"] = merge_efficiency(base.get("efficiency") or {}, doc.get("efficiency") or {})
    return merged

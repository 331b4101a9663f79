"""An LLMServingSim cluster JSON (`nodes[].instances[]`), read unchanged and in full.

Top level: `num_nodes` (must equal len(nodes)), `link_bw` (GB/s, read as 2^30 bytes per GB as
ASTRA-Sim's analytical backend does), `link_latency` (ns), `nodes`; `cxl_mem` is accepted and
unused (it only matters with weight/KV placement, which is refused). Per node:
`num_instances` (must equal len(instances)), `instances`; `cpu_mem` and `power` are accepted
and unused (host-memory offloading and the power model do not change step times here).

Per instance: `model_name`, `hardware`, `tp_size` (default 1), `pp_size` (default 1),
`num_npus` (if given, must equal tp_size·pp_size), `npu_mem.{mem_size (GiB), mem_util
(default 0.9), mem_bw (GB/s), mem_latency (accepted, unused: ASTRA-Sim's NPU memory reads
ignore it)}`, `ep_size`, `dp_group`, `pd_type`:
- `pd_type` prefill / decode is the instance's PD role (cluster/pd.py: a fleet with both
  disaggregates prefill and decode, with fleetsim's default decode policy and KV link); null,
  "" or "none" is a plain (mixed) instance.
- `dp_group` names the instance's data-parallel engine group (`cluster/dp_groups.py`: a MoE
  model's group steps in lock-step); `ep_size` becomes the instance's `ep`, the group's total
  expert-parallel degree as LLMServingSim's config_builder reads it (absent: its default, tp
  for a MoE model, else 1).
- `placement` (weights / KV on host or CXL memory) is refused.
Every other key is an input error naming it. Engine limits are LLMServingSim's defaults
(max_num_seqs 128, max_num_batched_tokens 2048), and async scheduling is off: LLMServingSim does
not model it, and a JSON read unchanged reproduces its arithmetic (`--async-scheduling` turns
it on; docs/engine.md).

Collectives of such an instance follow LLMServingSim's network, `AstraSimNetwork(link_bw,
link_latency, npu_mem.mem_bw)`; `link_bw` / `link_latency` / `mem_bw` are required for
tp_size > 1 or ep_size > 1 (LLMServingSim itself always requires the first two).
"""
from __future__ import annotations

import dataclasses

from fleetsim.cluster.config import ClusterConfig, RouterSpec, engine_config, instance_spec
from fleetsim.cluster.errors import InputError, is_finite_number, is_int
from fleetsim.cluster.pd import parse_pd
from fleetsim.costmodel.collectives import AstraSimNetwork
from fleetsim.instance.config import EngineConfig

LLMSERVINGSIM_ENGINE = {"max_num_seqs": 128, "max_num_batched_tokens": 2048, "async_scheduling": False}
TOP_KEYS = {"num_nodes", "link_bw", "link_latency", "nodes", "cxl_mem"}
NODE_KEYS = {"num_instances", "instances", "cpu_mem", "power"}
INSTANCE_KEYS = {"model_name", "hardware", "npu_mem", "num_npus", "tp_size", "pp_size", "ep_size", "dp_group",
                 "pd_type", "placement"}
NPU_MEM_KEYS = {"mem_size", "mem_bw", "mem_latency", "mem_util"}


def _check_keys(doc: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(sorted(allowed))}")


def _positive(doc: dict, key: str, where: str, required: bool, why: str = ""):
    value = doc.get(key)
    if value is None:
        if required:
            raise InputError(f"{where}: field {key!r} is required{why}")
        return None
    if not is_finite_number(value) or value <= 0:
        raise InputError(f"{where}: field {key!r} must be a positive number, got {value!r}")
    return float(value)


def _count(doc: dict, key: str, where: str, default: int = 1) -> int:
    value = doc.get(key, default)
    if value is None:
        return default
    if not is_int(value) or value < 1:
        raise InputError(f"{where}: field {key!r} must be a positive integer, got {value!r}")
    return value


def _instance(inst, doc: dict, engine: EngineConfig, where: str, iw: str):
    if not isinstance(inst, dict):
        raise InputError(f"{iw}: expected an object")
    _check_keys(inst, INSTANCE_KEYS, iw)
    mem = inst.get("npu_mem") or {}
    if not isinstance(mem, dict):
        raise InputError(f"{iw}: npu_mem must be an object")
    _check_keys(mem, NPU_MEM_KEYS, f"{iw}: npu_mem")
    pd = inst.get("pd_type")
    if pd not in (None, "", "none", "prefill", "decode"):
        raise InputError(f"{iw}: pd_type {pd!r}: choose prefill, decode, or null for a plain instance")
    role = pd if pd in ("prefill", "decode") else "mixed"
    if inst.get("placement"):
        raise InputError(f"{iw}: placement: weights/KV placement on host or CXL memory is not supported")
    tp, pp = _count(inst, "tp_size", iw), _count(inst, "pp_size", iw)
    ep = None if inst.get("ep_size") is None else _count(inst, "ep_size", iw)
    if "num_npus" in inst and _count(inst, "num_npus", iw) != tp * pp:
        raise InputError(f"{iw}: num_npus {inst['num_npus']} does not match tp_size·pp_size = {tp * pp}")
    item = {"model": inst.get("model_name"), "hardware": inst.get("hardware"), "tp": tp, "pp": pp, "ep": ep,
            "dp_group": inst.get("dp_group") or None,
            "attention_pricing": "aggregate"}        # LLMServingSim's arithmetic, whatever the bundle says
    if "mem_size" in mem:
        item["memory_gib"] = mem["mem_size"]
    spec = instance_spec(item, {}, iw, model_default_ep=True)
    spec = dataclasses.replace(spec, engine=engine_config({"gpu_memory_utilization": mem.get("mem_util", 0.9)},
                                                          engine, iw))
    need = (" for tp_size > 1 (the all-reduce model)" if tp > 1 else
            " for ep_size > 1 (the expert-parallel collectives)" if (ep or 1) > 1 else "")
    link_bw = _positive(doc, "link_bw", f"{where}: top level", bool(need), need)
    latency = doc.get("link_latency")
    if latency is None and need:
        raise InputError(f"{where}: top level: field 'link_latency' is required{need}")
    mem_bw = _positive(mem, "mem_bw", f"{iw}: npu_mem", bool(need), need)
    if link_bw is not None and latency is not None and mem_bw is not None:
        spec = dataclasses.replace(spec, network=AstraSimNetwork(link_bw, float(latency), mem_bw))
    return spec, role


def from_llmservingsim_json(doc: dict, where: str) -> ClusterConfig:
    _check_keys(doc, TOP_KEYS, f"{where}: top level")
    nodes = doc.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise InputError(f"{where}: field 'nodes' must be a non-empty list")
    if "num_nodes" in doc and doc["num_nodes"] != len(nodes):
        raise InputError(f"{where}: num_nodes is {doc['num_nodes']!r} but 'nodes' lists {len(nodes)}")
    latency = doc.get("link_latency")
    if latency is not None and (not is_finite_number(latency) or latency < 0):
        raise InputError(f"{where}: top level: field 'link_latency' must be a number >= 0 (ns), got {latency!r}")
    engine = EngineConfig(**LLMSERVINGSIM_ENGINE)
    specs, roles = [], []
    for n, node in enumerate(nodes):
        nw = f"{where}: nodes[{n}]"
        if not isinstance(node, dict):
            raise InputError(f"{nw}: expected an object")
        _check_keys(node, NODE_KEYS, nw)
        insts = node.get("instances")
        if not isinstance(insts, list) or not insts:
            raise InputError(f"{nw}.instances must be a non-empty list")
        if "num_instances" in node and node["num_instances"] != len(insts):
            raise InputError(f"{nw}: num_instances is {node['num_instances']!r} but 'instances' lists {len(insts)}")
        for i, inst in enumerate(insts):
            spec, role = _instance(inst, doc, engine, where, f"{where}: nodes[{n}].instances[{i}]")
            specs.append(spec)
            roles.append(role)
    return ClusterConfig(tuple(specs), RouterSpec(), 0, None, None, where, pd=parse_pd(None, roles, specs, where))

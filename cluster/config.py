"""Cluster configuration: fleetsim's YAML, or an LLMServingSim cluster JSON unchanged.

fleetsim YAML (every key optional except `model` and `hardware`)::

    model: meta-llama/Llama-3.1-8B     # HF name, config under <models-root>/<org>/<name>.json
    hardware: RTXPRO6000               # configs/hardware/<name>.yaml
    cost_model: profile                # latency backend: profile (measured bundle) or roofline
    tp: 1
    pp: 1                              # pipeline stages (up to pp micro-batches in flight)
    ep: 1                              # expert parallelism (MoE): ranks the experts are split over
    dp_group: null                     # instances naming the same group form one DP(+EP) engine group
    link_gbps: 450                     # override the hardware's interconnect GB/s (collectives, pp sends)
    link_latency_us: 3                 # override its latency
    moe_skew: 0.0                      # seeded skewed expert routing (Zipf exponent; 0 = balanced)
    variant: bf16                      # perf bundle variant folder (default fp8 with dtype: fp8, else bf16)
    dtype: auto                        # weights, vLLM's names: auto | bfloat16 | float16 | fp8
    kv_cache_dtype: auto               # auto | bfloat16 | fp8 (fp8_e4m3, fp8_e5m2): fp8 halves KV bytes
    attention_pricing: per_sequence    # profile backend: per_sequence | aggregate (LLMServingSim's);
                                       # default: the bundle's meta.yaml, else aggregate
    memory_gib: 96                     # override the hardware's memory
    decode_skew: true                  # bundle's decode-length skew correction
    overhead: {step_us: 0, per_seq_us: 0}   # host CPU time added to every step
    frontend: {request_us: 0, per_prompt_token_us: 0}   # API server: client send -> engine (docs/engine.md)
    engine:                            # vLLM names (instance.config.EngineConfig)
      max_num_seqs: 128
      max_num_batched_tokens: 2048
      async_scheduling: true           # vLLM >= 0.14's default (off with pp > 1)
    instances: 1                       # a count, or a list of per-instance overrides:
    #  - {count: 2, hardware: H100-SXM-80GB, tp: 2, engine: {max_num_seqs: 64}}
    #  - {count: 4, role: prefill}     # PD disaggregation: role prefill | decode | mixed (default)
    router: {policy: round_robin, sync_interval_ms: 50, options: {}}
    #  router.admission: none | {policy: token_bucket, rate: 20, burst: 10} | a list of stages
    #  (queue_cap, slo: cluster/admission.py)
    pd: {decode_policy: least_loaded, decode_options: {}, link: {mode: pair, gbps: 50, latency_us: 10}}
                                       # with prefill/decode roles (cluster/pd.py, docs/topologies.md)
    seed: 0
    slo: {ttft_p99_ms: 2000, tpot_ms: 100}   # SLOs reported in summary.json (experiments/slo.py)
    autoscaler: {max: 4, policy: queue_length, target: 8}   # cluster/autoscaling/spec.py

A MoE model's instances that share a `dp_group` step in lock-step as one vLLM data-parallel
engine group, `ep` being the group's expert-parallel degree (the same for every member, a
multiple of the member count, at most members·tp: `cluster/dp_groups.py`,
`instance/dp_group.py`); a dense model's `dp_group` is plain data parallelism (independent
engines, as vLLM runs dense DP).

LLMServingSim cluster JSON (a mapping with `nodes`): read by `cluster.llmservingsim`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fleetsim.cluster.errors import InputError, is_finite_number, is_int
from fleetsim.cluster.memory_limit import check_instance_count
from fleetsim.cluster.policies import policy_class
from fleetsim.cluster.textfile import yaml_document
from fleetsim.costmodel.arch import KV_CACHE_DTYPES, WEIGHT_DTYPES
from fleetsim.costmodel.collectives import AstraSimNetwork
from fleetsim.costmodel.costmodel import ATTENTION_PRICING
from fleetsim.instance.config import EngineConfig
from fleetsim.instance.frontend import NO_FRONTEND, FrontEnd

if TYPE_CHECKING:
    from fleetsim.cluster.autoscaling.spec import AutoscalerSpec
    from fleetsim.cluster.pd import PDSpec

ENGINE_KEYS = {f.name for f in dataclasses.fields(EngineConfig)}
INSTANCE_KEYS = {"model", "hardware", "cost_model", "tp", "pp", "ep", "moe_skew", "variant", "memory_gib", "decode_skew",
                 "overhead", "frontend", "engine", "count", "link_gbps", "link_latency_us", "dtype", "kv_cache_dtype",
                 "attention_pricing", "dp_group"}
TOP_KEYS = (INSTANCE_KEYS - {"count"}) | {"instances", "router", "seed", "name", "perf_root", "models_root", "slo",
                                         "autoscaler", "pd"}
ITEM_KEYS = INSTANCE_KEYS | {"role"}      # an `instances` entry may also set its PD role
MAX_OVERHEAD_US = 1e6          # a host overhead of a second per step (or per sequence) is already absurd
VLLM_BLOCK_SIZES = (1, 8, 16, 32, 64, 128, 256)   # vLLM's CacheConfig BlockSize (>= 0.11)


@dataclass(frozen=True)
class InstanceSpec:
    model: str
    hardware: str
    cost_model: str = "profile"
    tp: int = 1
    pp: int = 1
    ep: int | None = 1          # None: LLMServingSim's default (tp for a MoE model, else 1)
    moe_skew: float = 0.0
    variant: str | None = None
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    attention_pricing: str | None = None
    memory_gib: float | None = None
    decode_skew: bool = True
    overhead_ns: int = 0
    overhead_per_seq_ns: int = 0
    frontend: FrontEnd = NO_FRONTEND
    engine: EngineConfig = field(default_factory=EngineConfig)
    link_gbps: float | None = None          # fleetsim YAML: override the hardware's interconnect
    link_latency_us: float | None = None
    network: AstraSimNetwork | None = None  # LLMServingSim JSON: its analytical network
    dp_group: str | None = None             # DP(+EP) engine group name (cluster/dp_groups.py)


@dataclass(frozen=True)
class RouterSpec:
    policy: str = "round_robin"
    sync_interval_ms: float = 50.0
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterConfig:
    instances: tuple[InstanceSpec, ...]
    router: RouterSpec = RouterSpec()
    seed: int = 0
    perf_root: str | None = None
    models_root: str | None = None
    source: str = ""
    engine_overrides: tuple[str, ...] = ()   # the engine flags applied, e.g. "--max-model-len 100"
    document: object = field(default=None, compare=False, repr=False)   # the parsed file or dict
    sha256: str | None = field(default=None, compare=False, repr=False)  # of the file's bytes
    slo: dict = field(default_factory=dict)     # experiments.slo.parse_slo's {key: value}; {} = none
    admission: tuple = ()     # router.admission: admission.StageSpec stages; () = none (kept out of RouterSpec,
                              # so summary.json's resolved router of a run without it keeps its bytes)
    autoscaler: AutoscalerSpec | None = None    # cluster/autoscaling/spec.py; None = a fixed fleet
    pd: PDSpec | None = None                    # PD roles and link (cluster/pd.py); None: every instance mixed

    def with_engine_overrides(self, **overrides) -> "ClusterConfig":
        """Apply vLLM-named engine overrides (None = keep) to every instance; a bad value is an
        InputError naming its flag (`engine_flag`)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self
        for key, value in given.items():
            try:      # each field is checked on its own (EngineConfig.validate has no cross-field rule)
                check_engine(dataclasses.replace(EngineConfig(), **{key: value}), engine_flag(key))
            except ValueError as exc:
                raise InputError(str(exc)) from None
        inst = tuple(dataclasses.replace(s, engine=dataclasses.replace(s.engine, **given)) for s in self.instances)
        applied = tuple(_as_flag(k, v) for k, v in given.items())
        return dataclasses.replace(self, instances=inst, engine_overrides=self.engine_overrides + applied)

    def overrides_note(self) -> str:
        """' (engine overrides: --max-model-len 100, ...)' for a message about an instance or a
        request limit, or '' when no engine flag was applied."""
        return f" (engine overrides: {', '.join(self.engine_overrides)})" if self.engine_overrides else ""

    def with_fleet_overrides(self, instances=None, policy=None, sync_interval_ms=None) -> "ClusterConfig":
        """Apply --instances / --router / --sync-interval-ms (None = keep). A --router policy must
        exist and accept the config's router.options, which it keeps."""
        cfg = self
        if policy is not None:
            cls = policy_class(policy, "--router")
            unknown = cls.unknown_options(cfg.router.options)
            if unknown:
                raise InputError(f"--router {policy}: {cfg.source or 'the cluster config'} sets router.options "
                                 f"{', '.join(map(str, unknown))}, which {policy} does not take "
                                 f"(allowed: {cls.allowed_options()})")
        if instances is not None:
            if cfg.autoscaler is not None:
                raise InputError(f"--instances: {cfg.source or 'the cluster config'} has an autoscaler "
                                 f"(autoscaler.max is the fleet size)")
            if not is_int(instances) or instances < 1:
                raise InputError(f"--instances must be >= 1, got {instances!r}")
            check_instance_count(instances, "--instances")
            if cfg.pd is not None:
                raise InputError(f"{cfg.source}: --instances needs a fleet without prefill/decode roles")
            if len(set(cfg.instances)) != 1:
                raise InputError(f"{cfg.source}: --instances needs a homogeneous fleet (the config lists different instances)")
            cfg = dataclasses.replace(cfg, instances=(cfg.instances[0],) * instances)
        if sync_interval_ms is not None and not (is_finite_number(sync_interval_ms) and sync_interval_ms >= 0):
            raise InputError(f"--sync-interval-ms must be a finite number >= 0, got {sync_interval_ms}")
        if policy is not None or sync_interval_ms is not None:
            r = cfg.router
            cfg = dataclasses.replace(cfg, router=RouterSpec(policy or r.policy,
                                                             r.sync_interval_ms if sync_interval_ms is None else sync_interval_ms,
                                                             r.options))
        return cfg


def engine_flag(key: str) -> str:
    """The `fleetsim run` flag of engine field `key` (--max-num-seqs, --no-prefix-caching, ...)."""
    if key.startswith("enable_"):
        return "--no-" + key[len("enable_"):].replace("_", "-")
    return "--" + key.replace("_", "-")


def _as_flag(key: str, value) -> str:
    """An applied engine override as a flag: `--max-model-len 100`, `--no-prefix-caching`,
    `--async-scheduling` (a switch is named by what it turns on or off)."""
    if isinstance(value, bool):
        switch = key.removeprefix("enable_").replace("_", "-")
        return f"--{switch}" if value else f"--no-{switch}"
    return f"{engine_flag(key)} {value}"


def engine_config(doc, base: EngineConfig, where: str) -> EngineConfig:
    if doc is None:
        return base
    if not isinstance(doc, dict):
        raise InputError(f"{where}: 'engine' must be a mapping")
    unknown = sorted(set(doc) - ENGINE_KEYS)
    if unknown:
        raise InputError(f"{where}: engine: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(ENGINE_KEYS))}")
    cfg = dataclasses.replace(base, **doc)
    try:
        check_engine(cfg, f"{where}: engine")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return cfg


def check_engine(cfg: EngineConfig, source: str) -> None:
    """`cfg.validate(source)`, and the block size one of vLLM's (a user's engine settings; the
    engine itself takes any size, which its unit tests use)."""
    cfg.validate(source)
    if cfg.block_size not in VLLM_BLOCK_SIZES:
        raise ValueError(f"{source}: block_size must be one of vLLM's {', '.join(map(str, VLLM_BLOCK_SIZES))}, "
                         f"got {cfg.block_size!r}")


def instance_spec(doc: dict, base: dict, where: str, model_default_ep: bool = False) -> InstanceSpec:
    """One instance's spec; `model_default_ep`: an `ep` of None is allowed (the model's default)."""
    merged = {**base, **{k: v for k, v in doc.items() if k not in ("engine", "count")}}
    for key in ("model", "hardware"):
        if not isinstance(merged.get(key), str) or not merged.get(key):
            raise InputError(f"{where}: field {key!r} is required (a name)")
    tp, ep, pp = merged.get("tp", 1), merged.get("ep", 1), merged.get("pp", 1)
    for key, value in (("tp", tp), ("ep", ep), ("pp", pp)):
        if key == "ep" and value is None and model_default_ep:
            continue
        if not is_int(value) or value < 1:
            raise InputError(f"{where}: field {key!r} must be a positive integer, got {value!r}")
    skew = merged.get("moe_skew", 0.0)
    if not is_finite_number(skew) or skew < 0:
        raise InputError(f"{where}: field 'moe_skew' must be a number >= 0, got {skew!r}")
    mem = merged.get("memory_gib")
    if mem is not None and (not is_finite_number(mem) or mem <= 0):
        raise InputError(f"{where}: field 'memory_gib' must be a positive number, got {mem!r}")
    link = {k: merged.get(k) for k in ("link_gbps", "link_latency_us")}
    for key, value in link.items():
        if value is not None and (not is_finite_number(value) or value < 0 or (key == "link_gbps" and value == 0)):
            raise InputError(f"{where}: field {key!r} must be a {'positive' if key == 'link_gbps' else 'non-negative'} "
                             f"number, got {value!r}")
    overhead = _times_us(merged, "overhead", ("step_us", "per_seq_us"), where)
    frontend = _times_us(merged, "frontend", ("request_us", "per_prompt_token_us"), where)
    for key in ("cost_model", "variant"):
        if key in merged and not isinstance(merged[key], str):
            raise InputError(f"{where}: field {key!r} must be a name, got {merged[key]!r}")
    group = merged.get("dp_group")
    if group is not None and (isinstance(group, bool) or not isinstance(group, (str, int))):
        raise InputError(f"{where}: field 'dp_group' must be a group name, got {group!r}")
    for key, allowed in (("dtype", WEIGHT_DTYPES), ("kv_cache_dtype", KV_CACHE_DTYPES),
                         ("attention_pricing", ATTENTION_PRICING)):
        if key in merged and (isinstance(merged[key], (list, dict)) or merged[key] not in allowed):
            raise InputError(f"{where}: field {key!r} must be one of {', '.join(allowed)}, got {merged[key]!r}")
    if not isinstance(merged.get("decode_skew", True), bool):
        raise InputError(f"{where}: field 'decode_skew' must be true or false, got {merged['decode_skew']!r}")
    engine = engine_config(base.get("engine"), EngineConfig(), where)
    engine = engine_config(doc.get("engine"), engine, where)
    return InstanceSpec(
        model=merged["model"], hardware=merged["hardware"], cost_model=str(merged.get("cost_model", "profile")),
        tp=tp, pp=pp, ep=ep, moe_skew=float(skew), variant=merged.get("variant"), memory_gib=mem,
        dtype=merged.get("dtype", "auto"), kv_cache_dtype=merged.get("kv_cache_dtype", "auto"),
        attention_pricing=merged.get("attention_pricing"),
        decode_skew=bool(merged.get("decode_skew", True)),
        overhead_ns=round(float(overhead.get("step_us", 0)) * 1000),
        overhead_per_seq_ns=round(float(overhead.get("per_seq_us", 0)) * 1000),
        frontend=FrontEnd.from_us(float(frontend.get("request_us", 0)), float(frontend.get("per_prompt_token_us", 0))),
        engine=engine, dp_group=None if group is None else str(group),
        **{k: float(v) for k, v in link.items() if v is not None})


def _times_us(merged: dict, name: str, keys: tuple, where: str) -> dict:
    """The mapping `name` of µs values in [0, MAX_OVERHEAD_US] under `keys` (missing: empty)."""
    doc = merged.get(name) or {}
    if not isinstance(doc, dict) or set(doc) - set(keys):
        raise InputError(f"{where}: {name!r} must be a mapping with {' and/or '.join(keys)}")
    for key, value in doc.items():
        if not is_finite_number(value) or not 0 <= value <= MAX_OVERHEAD_US:
            raise InputError(f"{where}: {name}.{key} must be a number >= 0 and at most {MAX_OVERHEAD_US:g} µs, "
                             f"got {value!r}")
    return doc


def _router(doc, where: str) -> RouterSpec:
    if doc is None:
        return RouterSpec()
    if not isinstance(doc, dict):
        raise InputError(f"{where}: 'router' must be a mapping")
    unknown = sorted(set(doc) - {"policy", "sync_interval_ms", "options", "admission"})
    if unknown:
        raise InputError(f"{where}: router: unknown key(s) {', '.join(unknown)}")
    sync = doc.get("sync_interval_ms", 50.0)
    if not is_finite_number(sync) or sync < 0:
        raise InputError(f"{where}: router.sync_interval_ms must be a number >= 0, got {sync!r}")
    options = doc.get("options") or {}
    if not isinstance(options, dict):
        raise InputError(f"{where}: router.options must be a mapping")
    return RouterSpec(str(doc.get("policy", "round_robin")), float(sync), dict(options))


def from_fleetsim_yaml(doc: dict, where: str) -> ClusterConfig:
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(TOP_KEYS))}")
    base = {k: v for k, v in doc.items() if k in INSTANCE_KEYS}
    inst_doc = doc.get("instances", 1)
    specs: list[InstanceSpec] = []
    roles: list[str] = []
    if is_int(inst_doc):
        if inst_doc < 1:
            raise InputError(f"{where}: 'instances' must be >= 1, got {inst_doc}")
        check_instance_count(inst_doc, f"{where}: instances")
        specs = [instance_spec({}, base, where)] * inst_doc
    elif isinstance(inst_doc, list) and inst_doc:
        from fleetsim.cluster.pd import check_role      # deferred: a fleet given by a count has no roles
        for i, item in enumerate(inst_doc):
            item_where = f"{where}: instances[{i}]"
            if not isinstance(item, dict):
                raise InputError(f"{item_where}: expected a mapping")
            unknown = sorted(set(item) - ITEM_KEYS)
            if unknown:
                raise InputError(f"{item_where}: unknown key(s) {', '.join(unknown)}")
            count = item.get("count", 1)
            if not is_int(count) or count < 1:
                raise InputError(f"{item_where}: 'count' must be a positive integer")
            check_instance_count(len(specs) + count, f"{item_where}: count")
            role = check_role(item.get("role", "mixed"), item_where)
            specs.extend([instance_spec({k: v for k, v in item.items() if k != "role"}, base, item_where)] * count)
            roles.extend([role] * count)
    else:
        raise InputError(f"{where}: 'instances' must be a positive count or a non-empty list")
    seed = doc.get("seed", 0)
    if not is_int(seed) or seed < 0:
        raise InputError(f"{where}: 'seed' must be an integer >= 0")
    for key in ("perf_root", "models_root"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise InputError(f"{where}: {key!r} must be a directory path, got {doc[key]!r}")
    slo = {}
    if doc.get("slo") is not None:
        from fleetsim.cluster.experiments.slo import parse_slo      # deferred: only configs with slo: need it
        slo = parse_slo(doc["slo"], f"{where}: slo")
    router = _router(doc.get("router"), where)
    admission = ()
    if (doc.get("router") or {}).get("admission") is not None:
        from fleetsim.cluster.admission import parse_admission      # deferred: only configs with admission need it
        admission = parse_admission(doc["router"]["admission"], f"{where}: router.admission")
    pd = None
    if roles or doc.get("pd") is not None:
        from fleetsim.cluster.pd import parse_pd        # deferred: without roles and pd: a fleet is not PD
        pd = parse_pd(doc.get("pd"), roles or ["mixed"] * len(specs), specs, where)
    if pd is not None and doc.get("autoscaler") is not None:
        raise InputError(f"{where}: an autoscaler with prefill/decode roles is not supported yet")
    autoscaler = None
    if doc.get("autoscaler") is not None:
        from fleetsim.cluster.autoscaling.spec import fleet_specs, parse_autoscaler   # deferred: only autoscaled fleets
        autoscaler = parse_autoscaler(doc["autoscaler"], where)
        specs = fleet_specs(specs, autoscaler, "instances" in doc, where)
        check_instance_count(len(specs), f"{where}: autoscaler.max")
    return ClusterConfig(tuple(specs), router, seed, doc.get("perf_root"), doc.get("models_root"), where, slo=slo,
                         admission=admission, autoscaler=autoscaler, pd=pd)


def load_cluster_config(path: str) -> ClusterConfig:
    """Read a fleetsim YAML or LLMServingSim JSON cluster file (chosen by content)."""
    doc, text = yaml_document(path, "cluster config", "YAML/JSON")     # YAML is a superset of JSON
    cfg = config_from_doc(doc, path, os.path.dirname(os.path.abspath(path)))
    return dataclasses.replace(cfg, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())


def config_from_doc(doc, where: str, base_dir: str) -> ClusterConfig:
    """A parsed cluster document (fleetsim YAML, or LLMServingSim JSON when it has `nodes`);
    relative `perf_root` / `models_root` are taken from `base_dir`."""
    if isinstance(doc, dict) and "nodes" in doc:
        from fleetsim.cluster.llmservingsim import from_llmservingsim_json   # it builds on this module
        return dataclasses.replace(from_llmservingsim_json(doc, where), document=doc)
    cfg = from_fleetsim_yaml(doc, where)
    fix = {k: os.path.join(base_dir, getattr(cfg, k)) for k in ("perf_root", "models_root") if getattr(cfg, k)}
    for key, path in fix.items():
        if not os.path.isdir(path):
            raise InputError(f"{where}: {key} {getattr(cfg, key)!r}: no such directory ({path})")
    return dataclasses.replace(cfg, document=doc, **fix)


__all__ = ["ClusterConfig", "InstanceSpec", "RouterSpec", "config_from_doc", "load_cluster_config"]

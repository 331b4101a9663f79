"""`CostModel`: one (model, hardware, backend, tp) combination, priced per engine step."""
from __future__ import annotations

import dataclasses
import threading
from typing import Sequence

from fleetsim.costmodel.arch import ModelArch
from fleetsim.costmodel.batch import BatchShape
from fleetsim.costmodel.catalogue import resolve_hardware_doc
from fleetsim.costmodel.collectives import Network, network_from_hardware
from fleetsim.costmodel.errors import CostModelError
from fleetsim.costmodel.expert_parallel import check_expert_parallel
from fleetsim.costmodel.files import load_json
from fleetsim.costmodel.hardware import Hardware
from fleetsim.costmodel.paths import bundle_dir, hardware_path, model_config_path
from fleetsim.costmodel.profile import ProfileBackend, ProfileTables, read_bundle

BACKENDS = ("profile", "roofline")
ATTENTION_PRICING = ("aggregate", "per_sequence")   # profile backend, see profile.ProfileBackend
_LOADED: dict = {}
_LOCK = threading.Lock()


def load_arch(model: str, models_roots: tuple[str, ...] = ()) -> ModelArch:
    path = model_config_path(model, models_roots)
    return ModelArch.from_hf_config(model, load_json(path), source=path)


def load_hardware(name: str, hardware_roots: tuple[str, ...] = ()) -> Hardware:
    """The hardware entry, with `inherits` resolved (see catalogue.resolve_hardware_doc)."""
    path = hardware_path(name, hardware_roots)
    return Hardware.from_dict(resolve_hardware_doc(name, hardware_roots), source=path)


def bundle_attention_pricing(raw: dict, source: str) -> str:
    """A bundle's default `attention_pricing` (its meta.yaml key; absent: aggregate, LLMServingSim's)."""
    value = (raw.get("meta.yaml") or {}).get("attention_pricing", "aggregate")
    if value not in ATTENTION_PRICING:
        raise CostModelError(f"{source}/../meta.yaml: attention_pricing {value!r}: choose one of {', '.join(ATTENTION_PRICING)}")
    return value


def _as_tuple(root) -> tuple[str, ...]:
    if root is None:
        return ()
    if isinstance(root, str):
        return (root,)
    return tuple(str(r) for r in root)


def _interconnect(hw: Hardware, doc: dict, network, link_gbps, link_latency_us) -> tuple[Hardware, Network]:
    """(hardware with the instance's link, TP network): an explicit `network` (its link for
    pipeline sends too), else the catalogue's collectives over the (overridden) interconnect."""
    if network is not None:
        if link_gbps is not None or link_latency_us is not None:
            raise CostModelError("link_gbps / link_latency_us cannot be combined with an explicit network")
        return dataclasses.replace(hw, **network.link()), network
    for name, value in (("link_gbps", link_gbps), ("link_latency_us", link_latency_us)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                                  or (name == "link_gbps" and value == 0)):
            raise CostModelError(f"{name} must be a {'positive' if name == 'link_gbps' else 'non-negative'} number, "
                                 f"got {value!r}")
    if link_gbps is not None:
        hw = dataclasses.replace(hw, interconnect_gbps=float(link_gbps))
    if link_latency_us is not None:
        hw = dataclasses.replace(hw, interconnect_latency_us=float(link_latency_us))
    return hw, network_from_hardware(doc, hw.interconnect_gbps, hw.interconnect_latency_us, f"hardware {hw.name}")


@dataclasses.dataclass(frozen=True)
class CostModelState:
    """Everything parsed from files for one cost model: picklable, numpy tables read-only, so one
    copy can be shared (ray.put) and every process rebuilds its lookup structures from it."""
    arch: ModelArch
    hardware: Hardware
    backend: str
    tp: int
    decode_skew: bool
    raw_tables: dict
    source: str
    ep: int = 1
    moe_skew: float = 0.0
    network: Network | None = None
    attention_pricing: str = "aggregate"

    def build_backend(self):
        if self.backend == "roofline":
            from fleetsim.costmodel.roofline import RooflineBackend      # deferred: profile runs do not need it
            doc = self.raw_tables.get("hardware.yaml") or {}
            return RooflineBackend(self.arch, self.hardware, self.tp, self.ep, self.moe_skew,
                                   sm_count=doc.get("sm_count"), l2_mib=doc.get("l2_mib"), network=self.network)
        tables = ProfileTables(self.raw_tables, self.tp, self.source, self.arch.model_type)
        a = self.arch
        return ProfileBackend(tables, a, self.tp, self.hardware, self.decode_skew, self.network,
                              self.attention_pricing, self.ep)


class CostModel:
    """Per-iteration latency of one serving instance.

    `iteration_time_ns(seqs)` takes `(new_tokens, context_before)` pairs and returns the step's
    GPU time in integer ns; `cpu_overhead_ns(num_seqs)` is the host time around it
    (`overhead_ns + overhead_per_seq_ns·S`, 0 unless configured).
    """

    def __init__(self, arch: ModelArch, hardware: Hardware, backend, tp: int = 1,
                 overhead_ns: int = 0, overhead_per_seq_ns: int = 0, pp: int = 1):
        self.arch = arch
        self.hardware = hardware
        self.backend = backend
        self.tp = tp
        self.overhead_ns = int(overhead_ns)
        self.overhead_per_seq_ns = int(overhead_per_seq_ns)
        self.pp = pp

    @classmethod
    def load(cls, model: str, hardware: str, backend: str = "profile", tp: int = 1, perf_root=None,
             models_root=None, variant: str | None = None, decode_skew: bool = True,
             overhead_ns: int = 0, overhead_per_seq_ns: int = 0, memory_gib: float | None = None,
             ep: int | None = 1, moe_skew: float = 0.0, pp: int = 1, network: Network | None = None,
             link_gbps: float | None = None, link_latency_us: float | None = None, dtype: str = "auto",
             kv_cache_dtype: str = "auto", attention_pricing: str | None = None) -> "CostModel":
        """Load (once per process; later calls with the same arguments share the objects).

        Collectives: `network` (e.g. `collectives.AstraSimNetwork` for an LLMServingSim cluster
        JSON) prices them and sets the interconnect of pipeline sends; otherwise the hardware
        entry's `collectives:` block (vLLM custom all-reduce / NCCL by size, `VllmCollectives`)
        over its interconnect, which `link_gbps` (GB/s) / `link_latency_us` override.

        `pp` splits the layers into pipeline stages (`stage_times_ns`); the engine keeps up to
        pp micro-batches in flight.
        `memory_gib` overrides the hardware's memory (e.g. from an LLMServingSim cluster JSON).
        `ep` (expert-parallel degree: the ranks a MoE layer's experts are split over; None:
        LLMServingSim's default, tp for a MoE model, else 1) applies to MoE models on both
        backends (the network prices its dispatch / combine); `moe_skew` (Zipf exponent of
        seeded skewed routing, 0 = balanced) on the roofline backend.
        `dtype` / `kv_cache_dtype` (vLLM's names, `ModelArch.with_precision`): "fp8" halves the
        weight / KV bytes; the profile backend then reads the bundle variant folder `fp8/` unless
        `variant` is given (default `bf16/`). `attention_pricing` (profile backend): "aggregate"
        (LLMServingSim's arithmetic) or "per_sequence"; None = the bundle's `meta.yaml`
        `attention_pricing`, else aggregate.
        """
        if backend not in BACKENDS:
            raise CostModelError(f"cost model backend {backend!r}: unknown; choose one of {', '.join(BACKENDS)}")
        if not isinstance(tp, int) or tp < 1:
            raise CostModelError(f"tp must be a positive integer, got {tp!r}")
        if ep is not None and (not isinstance(ep, int) or ep < 1):
            raise CostModelError(f"ep must be a positive integer, got {ep!r}")
        if not isinstance(pp, int) or pp < 1:
            raise CostModelError(f"pp must be a positive integer, got {pp!r}")
        if backend == "profile" and moe_skew:
            raise CostModelError("moe_skew (skewed expert routing) needs the roofline backend")
        if attention_pricing is not None and attention_pricing not in ATTENTION_PRICING:
            raise CostModelError(f"attention_pricing {attention_pricing!r}: unknown; choose one of {', '.join(ATTENTION_PRICING)}")
        if variant is None:
            variant = "fp8" if dtype == "fp8" else "bf16"
        perf_roots, models_roots = _as_tuple(perf_root), _as_tuple(models_root)
        key = (model, hardware, backend, tp, perf_roots, models_roots, variant, decode_skew, ep, float(moe_skew),
               network, link_gbps, link_latency_us, dtype, kv_cache_dtype, attention_pricing)
        with _LOCK:
            shared = _LOADED.get(key)
        if shared is None:
            arch = load_arch(model, models_roots).with_precision(dtype, kv_cache_dtype)
            if ep is None:
                ep = tp if arch.is_moe else 1
            arch.check_parallelism(tp, 1, moe_skew)    # before any bundle or table is read
            if ep > 1:
                check_expert_parallel(arch, ep)
            hw = load_hardware(hardware)
            hw, net = _interconnect(hw, resolve_hardware_doc(hardware), network, link_gbps, link_latency_us)
            pricing = attention_pricing or "aggregate"
            if backend == "roofline":
                source = hardware_path(hardware)
                raw = {"hardware.yaml": resolve_hardware_doc(hardware)}
            else:
                source = bundle_dir(hardware, model, variant, tp, perf_roots)
                raw = read_bundle(source)
                pricing = attention_pricing or bundle_attention_pricing(raw, source)
            state = CostModelState(arch, hw, backend, tp, decode_skew, raw, source, ep, float(moe_skew), net,
                                   pricing)
            shared = (state, state.build_backend())
            with _LOCK:
                _LOADED.setdefault(key, shared)
        state, engine = shared
        state.arch.check_parallelism(tp, pp, moe_skew)
        return cls._assemble(state, engine, overhead_ns, overhead_per_seq_ns, memory_gib, pp)

    @classmethod
    def _assemble(cls, state, engine, overhead_ns, overhead_per_seq_ns, memory_gib, pp=1) -> "CostModel":
        hw = state.hardware
        if memory_gib is not None:
            hw = dataclasses.replace(hw, memory_gib=float(memory_gib))
        cm = cls(state.arch, hw, engine, state.tp, overhead_ns, overhead_per_seq_ns, pp)
        cm.state = state
        return cm

    @classmethod
    def from_state(cls, state: "CostModelState", overhead_ns: int = 0, overhead_per_seq_ns: int = 0,
                   memory_gib: float | None = None, pp: int = 1) -> "CostModel":
        """Rebuild from shared parsed state (e.g. from the Ray object store) without touching files."""
        return cls._assemble(state, state.build_backend(), overhead_ns, overhead_per_seq_ns, memory_gib, pp)

    def variant(self, overhead_ns: int = 0, overhead_per_seq_ns: int = 0,
                memory_gib: float | None = None, pp: int = 1) -> "CostModel":
        """The same (shared) latency backend with other per-instance settings."""
        return self._assemble(self.state, self.backend, overhead_ns, overhead_per_seq_ns, memory_gib, pp)

    def stage_layers(self) -> list[int]:
        """Layers per pipeline stage: an even split, the remainder to the earlier stages."""
        L, pp = self.arch.num_layers, self.pp
        return [L // pp + (1 if s < L % pp else 0) for s in range(pp)]

    def stage_times_ns(self, batch: BatchShape) -> list[int]:
        """GPU time of one micro-batch on each pipeline stage (they sum to `time_batch`):
        the layers' share by layer count, the embedding on the first stage, the final norm,
        lm_head and sampler on the last."""
        total = self.backend.time_batch(batch)
        if self.pp == 1:
            return [total]
        pre, post = self.backend.edge_ns(batch)
        layers = total - pre - post
        L = self.arch.num_layers
        out, done = [], 0
        for n in self.stage_layers():
            out.append(layers * (done + n) // L - layers * done // L)
            done += n
        out[0] += pre
        out[-1] += post
        return out

    def p2p_ns(self, tokens: int) -> int:
        """Send/recv of the hidden states of `tokens` tokens between two pipeline stages."""
        return self.hardware.p2p_ns(tokens * self.arch.hidden_size * self.arch.dtype_bytes)

    def time_batch(self, batch: BatchShape) -> int:
        """GPU time of one step described by a `BatchShape`."""
        return self.backend.time_batch(batch)

    def decode_steps(self, n: int, ctx_sum: int, ctx_min: int, ctx_max: int):
        """j -> GPU time of step j of a decode-only run: n sequences, contexts (sum, min, max)
        now, each growing by one per step; equal to `time_batch` of that step's shape."""
        return self.backend.decode_steps(n, ctx_sum, ctx_min, ctx_max)

    def group_time_ns(self, batch: BatchShape, group_tokens: int) -> int:
        """GPU time of one DP-group member's step: `batch` (`BatchShape.empty()` for an idle
        member's dummy batch) padded to the group's largest token count `group_tokens`."""
        return self.backend.time_batch(batch, group_tokens)

    def group_breakdown(self, batch: BatchShape, group_tokens: int) -> dict[str, int]:
        """Per-op ns of `group_time_ns(batch, group_tokens)`."""
        return self.backend.breakdown(batch, group_tokens)

    @property
    def ep(self) -> int:
        return self.state.ep

    def iteration_time_ns(self, seqs: Sequence[tuple[int, int]]) -> int:
        """GPU time of one step: `seqs` are `(new_tokens, context_before)` pairs."""
        if not seqs:
            return 0
        return self.backend.time_batch(BatchShape.from_seqs(seqs))

    def breakdown(self, seqs: Sequence[tuple[int, int]]) -> dict[str, int]:
        """Per-op ns of one step."""
        return self.backend.breakdown(BatchShape.from_seqs(seqs))

    def cpu_overhead_ns(self, num_seqs: int) -> int:
        return self.overhead_ns + self.overhead_per_seq_ns * num_seqs

    def kv_block_bytes(self, block_size: int) -> int:
        return block_size * self.arch.kv_bytes_per_token(self.tp)

    def num_kv_blocks(self, block_size: int, gpu_memory_utilization: float) -> int:
        """floor((mem_GiB·2^30·util − weight_bytes) / block_bytes) on one rank; with pp stages,
        on the fullest stage (weights and KV scaled by its share of the layers)."""
        share = max(self.stage_layers()) / self.arch.num_layers
        free = self.hardware.memory_gib * 2**30 * gpu_memory_utilization - self.weight_bytes_per_gpu()
        return int(free // (self.kv_block_bytes(block_size) * share))

    def weight_bytes_per_gpu(self) -> float:
        """Weight bytes on the fullest GPU: one rank of tp (and ep), the largest pipeline stage."""
        share = max(self.stage_layers()) / self.arch.num_layers
        return self.arch.weight_bytes(self.tp, self.state.ep) * share


def clear_loaded() -> None:
    """Forget shared cost models (tests only)."""
    with _LOCK:
        _LOADED.clear()

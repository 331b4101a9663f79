"""Collectives between the GPUs of one instance: one function per algorithm, chosen by size.

Every algorithm function returns its cost as named terms in ns (floats, not yet rounded); a
*network* (`AstraSimNetwork`, `VllmCollectives`, `RingNetwork`) picks the algorithm for a
message and `terms(...)` rounds each term to integer ns. The step's price is the sum of the
rounded terms, so a backend's per-op breakdown can show every term and still sum to the step
(`breakdown()` keys `allreduce.<term>`). `allreduce_ns` = that sum, 0 for one rank.

S = bytes of the tensor every rank holds (T·hidden·dtype for a TP all-reduce), n = ranks.

- `astra_ring_allreduce` (LLMServingSim cluster JSON; ASTRA-Sim analytical backend, FullyConnected,
  ring all-reduce): 2(n−1) messages of S/n bytes, each `L + (S/n)/(bw·2^30/10^9)` ns (bw in
  GB/s read as 2^30 bytes per GB, L = link_latency in ns), plus one reduction per
  reduce-scatter step, a memory pass over three chunks (one write, two reads) at
  `mem_bw` GB/s (10^9 bytes): (n−1)·3·(S/n)/mem_bw, plus 30 ns of fixed memory-bus hand-offs.
  Sources in docs/costmodel.md.
- `ring_allreduce` (fleetsim's earlier formula; hardware without a `collectives:` block):
  2(n−1)·(latency + S/(n·bw)).
- `one_shot_allreduce` (vLLM custom all-reduce, 1-stage): every rank reads the n−1 peer buffers
  over NVLink peer memory and reduces locally: launch + 2 barrier latencies + (n−1)·S/bw.
- `two_shot_allreduce` (vLLM custom all-reduce, 2-stage: reduce-scatter then all-gather through
  peer memory): launch + 3 barrier latencies + 2(n−1)/n·S/bw.
- `nccl_allreduce` (one NCCL algorithm/protocol, NCCL's own tuning model in one node):
  base + 2(n−1)·hop + 2(n−1)/n·S/busbw.

`VllmCollectives` follows vLLM's choice on CUDA: its custom all-reduce when the world size is
supported and S < max_bytes (one-shot below the per-world-size threshold, two-shot above),
otherwise NCCL, which picks the variant (ring LL / ring Simple / NVLS ...) with the lowest
predicted time, as NCCL's tuner does. Parameters come from the hardware catalogue's
`collectives:` block (`network_from_hardware`).

All-gather and reduce-scatter (MoE expert-parallel dispatch / combine, `expert_parallel.py`):
`allgather_ns(S, n)` gathers a per-rank chunk of S bytes, `reducescatter_ns(S, n)` scatters a
whole buffer of S bytes (ASTRA-Sim's data_size conventions: Ring.cc's All_Gather sends
`msg_size = data_size` per step, Reduce_Scatter `data_size / nodes_in_ring`).

- `astra_ring_allgather`: n−1 messages of S bytes, `L + S/(bw·2^30/10^9)` ns each, no
  reduction, + 30 ns fixed (Ring.cc: `stream_count` = n−1 for every collective but All_Reduce,
  packets of an all-gather are never `processed`).
- `astra_ring_reducescatter`: n−1 messages of S/n bytes + n−1 reductions of three chunks at
  `mem_bw` (every Reduce_Scatter packet is `processed`), + 30 ns: the reduce-scatter half of
  `astra_ring_allreduce`.
- `ring_allgather` / `ring_reducescatter` (a plain link): (n−1)·(latency + S/bw) and
  (n−1)·(latency + S/(n·bw)).
- `nccl_allgather` / `nccl_reducescatter` (`VllmCollectives`: vLLM runs them on NCCL): the
  cheapest variant of base + (n−1)·hop + (n−1)·chunk/busbw (chunk = S, resp. S/n: a ring
  all-gather / reduce-scatter is half an all-reduce's steps).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fleetsim.costmodel.errors import CostModelError

ASTRA_FIXED_NS = 30.0


# ---- algorithms (ns, unrounded) ---------------------------------------------------------------
def astra_ring_allreduce(nbytes: float, n: int, link_gb_s: float, link_latency_ns: float,
                         mem_bw_gb_s: float) -> dict[str, float]:
    chunk = nbytes / n
    return {"link_latency": 2 * (n - 1) * link_latency_ns,
            "link_transfer": 2 * (n - 1) * chunk / (link_gb_s * 2**30 / 1e9),
            "reduction": (n - 1) * 3 * chunk / mem_bw_gb_s,
            "fixed": ASTRA_FIXED_NS}


def ring_allreduce(nbytes: float, n: int, gbps: float, latency_us: float) -> dict[str, float]:
    return {"latency": 2 * (n - 1) * latency_us * 1e3,
            "transfer": 2 * (n - 1) * nbytes / (n * gbps)}


def one_shot_allreduce(nbytes: float, n: int, gbps: float, launch_us: float, barrier_us: float) -> dict[str, float]:
    return {"latency": (launch_us + 2 * barrier_us) * 1e3,
            "transfer": (n - 1) * nbytes / gbps}


def two_shot_allreduce(nbytes: float, n: int, gbps: float, launch_us: float, barrier_us: float) -> dict[str, float]:
    return {"latency": (launch_us + 3 * barrier_us) * 1e3,
            "transfer": 2 * (n - 1) * nbytes / (n * gbps)}


def nccl_allreduce(nbytes: float, n: int, bus_gbps: float, base_us: float, hop_us: float) -> dict[str, float]:
    return {"latency": (base_us + 2 * (n - 1) * hop_us) * 1e3,
            "transfer": 2 * (n - 1) * nbytes / (n * bus_gbps)}


def astra_ring_allgather(nbytes: float, n: int, link_gb_s: float, link_latency_ns: float) -> dict[str, float]:
    return {"link_latency": (n - 1) * link_latency_ns,
            "link_transfer": (n - 1) * nbytes / (link_gb_s * 2**30 / 1e9),
            "fixed": ASTRA_FIXED_NS}


def astra_ring_reducescatter(nbytes: float, n: int, link_gb_s: float, link_latency_ns: float,
                             mem_bw_gb_s: float) -> dict[str, float]:
    chunk = nbytes / n
    return {"link_latency": (n - 1) * link_latency_ns,
            "link_transfer": (n - 1) * chunk / (link_gb_s * 2**30 / 1e9),
            "reduction": (n - 1) * 3 * chunk / mem_bw_gb_s,
            "fixed": ASTRA_FIXED_NS}


def ring_allgather(nbytes: float, n: int, gbps: float, latency_us: float) -> dict[str, float]:
    return {"latency": (n - 1) * latency_us * 1e3, "transfer": (n - 1) * nbytes / gbps}


def ring_reducescatter(nbytes: float, n: int, gbps: float, latency_us: float) -> dict[str, float]:
    return {"latency": (n - 1) * latency_us * 1e3, "transfer": (n - 1) * nbytes / (n * gbps)}


def nccl_half_ring(chunk: float, n: int, bus_gbps: float, base_us: float, hop_us: float) -> dict[str, float]:
    """An NCCL all-gather (chunk = S) or reduce-scatter (chunk = S/n): n−1 ring steps."""
    return {"latency": (base_us + (n - 1) * hop_us) * 1e3, "transfer": (n - 1) * chunk / bus_gbps}


def _rounded(algorithm: str, terms: dict[str, float]) -> dict[str, int]:
    prefix = f"{algorithm}." if algorithm else ""
    return {prefix + k: round(v) for k, v in terms.items()}


# ---- networks ---------------------------------------------------------------------------------
class Network:
    """Base: `allreduce_terms(nbytes, ranks) -> {term: ns}` (rounded), `allreduce_ns` their sum."""

    def allreduce_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        raise NotImplementedError

    def allreduce_ns(self, nbytes: int, ranks: int) -> int:
        return _total(self.allreduce_terms, nbytes, ranks)

    def link(self) -> dict:
        """`Hardware` fields this network sets for point-to-point sends (pipeline stages)."""
        return {}

    def allgather_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        raise NotImplementedError

    def reducescatter_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        raise NotImplementedError

    def allgather_ns(self, nbytes: int, ranks: int) -> int:
        """All-gather of a per-rank chunk of `nbytes` (0 for one rank)."""
        return _total(self.allgather_terms, nbytes, ranks)

    def reducescatter_ns(self, nbytes: int, ranks: int) -> int:
        """Reduce-scatter of a whole buffer of `nbytes` (0 for one rank)."""
        return _total(self.reducescatter_terms, nbytes, ranks)


def _total(terms_of, nbytes: int, ranks: int) -> int:
    """A collective's ns: the sum of its rounded terms, at least 1; 0 for one rank."""
    if ranks <= 1:
        return 0
    return max(1, sum(terms_of(nbytes, ranks).values()))


@dataclass(frozen=True)
class AstraSimNetwork(Network):
    """LLMServingSim's analytical network: `link_bw` GB/s (2^30 B), `link_latency` ns (cluster
    JSON top level), `npu_mem.mem_bw` GB/s (10^9 B) of the instance."""
    link_gb_s: float
    link_latency_ns: float
    mem_bw_gb_s: float

    def link(self) -> dict:
        return {"interconnect_gbps": self.link_gb_s * 2**30 / 1e9, "interconnect_latency_us": self.link_latency_ns / 1e3}

    def allreduce_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        if ranks <= 1:
            return {}
        return _rounded("", astra_ring_allreduce(nbytes, ranks, self.link_gb_s, self.link_latency_ns,
                                                 self.mem_bw_gb_s))

    def allgather_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        return _rounded("", astra_ring_allgather(nbytes, ranks, self.link_gb_s, self.link_latency_ns))

    def reducescatter_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        return _rounded("", astra_ring_reducescatter(nbytes, ranks, self.link_gb_s, self.link_latency_ns,
                                                     self.mem_bw_gb_s))


@dataclass(frozen=True)
class RingNetwork(Network):
    """Ring over a plain link: per-direction `gbps` GB/s (10^9 B) and a per-hop `latency_us`."""
    gbps: float
    latency_us: float
    source: str = "hardware"

    def allreduce_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        if ranks <= 1:
            return {}
        if self.gbps <= 0:
            raise CostModelError(f"{self.source}: interconnect_gbps is needed for tp > 1")
        return _rounded("ring", ring_allreduce(nbytes, ranks, self.gbps, self.latency_us))

    def _link_needed(self, ranks: int) -> None:
        if self.gbps <= 0:
            raise CostModelError(f"{self.source}: interconnect_gbps is needed for collectives over {ranks} ranks")

    def allgather_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        self._link_needed(ranks)
        return _rounded("ring", ring_allgather(nbytes, ranks, self.gbps, self.latency_us))

    def reducescatter_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        self._link_needed(ranks)
        return _rounded("ring", ring_reducescatter(nbytes, ranks, self.gbps, self.latency_us))


@dataclass(frozen=True)
class NcclVariant:
    """One NCCL algorithm/protocol: latency base + 2(n−1)·hop µs, bus bandwidth = bw_eff · link."""
    name: str
    base_us: float
    hop_us: float
    bw_eff: float
    min_ranks: int = 2


@dataclass(frozen=True)
class VllmCollectives(Network):
    """TP all-reduce as vLLM runs it: custom all-reduce (one-shot / two-shot) for small tensors,
    NCCL (cheapest variant) otherwise. `link_gbps` / `barrier_us` are the instance's link
    (the hardware's interconnect, or the config's `link_gbps` / `link_latency_us`)."""
    link_gbps: float
    barrier_us: float
    custom_max_bytes: int = 0                       # 0: no custom all-reduce
    custom_ranks: tuple[int, ...] = ()
    one_shot_below: tuple[tuple[int, int], ...] = ()  # (max ranks, bytes): one-shot if n <= r and S < b
    custom_launch_us: float = 0.0
    custom_bw_eff: float = 1.0
    nccl: tuple[NcclVariant, ...] = field(default_factory=tuple)
    source: str = "hardware"

    def algorithm(self, nbytes: int, ranks: int) -> str:
        """The algorithm vLLM (and NCCL's tuner) would use for an all-reduce of nbytes over ranks."""
        if self.custom_max_bytes and ranks in self.custom_ranks and nbytes < self.custom_max_bytes:
            one = any(ranks <= r and nbytes < b for r, b in self.one_shot_below)
            return "one_shot" if one else "two_shot"
        best = min(((sum(self._nccl(v, nbytes, ranks).values()), v.name) for v in self.nccl
                    if ranks >= v.min_ranks), default=None)
        if best is None:
            raise CostModelError(f"{self.source}: collectives: no NCCL algorithm for {ranks} ranks")
        return best[1]

    def _nccl(self, v: NcclVariant, nbytes: int, ranks: int) -> dict[str, float]:
        return nccl_allreduce(nbytes, ranks, v.bw_eff * self.link_gbps, v.base_us, v.hop_us)

    def allreduce_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        if ranks <= 1:
            return {}
        algo = self.algorithm(nbytes, ranks)
        bw = self.custom_bw_eff * self.link_gbps
        if algo == "one_shot":
            terms = one_shot_allreduce(nbytes, ranks, bw, self.custom_launch_us, self.barrier_us)
        elif algo == "two_shot":
            terms = two_shot_allreduce(nbytes, ranks, bw, self.custom_launch_us, self.barrier_us)
        else:
            terms = self._nccl(next(v for v in self.nccl if v.name == algo), nbytes, ranks)
        return _rounded(algo, terms)

    def _half_ring(self, chunk: float, ranks: int) -> dict[str, int]:
        """The cheapest NCCL variant for an all-gather / reduce-scatter step chunk."""
        options = [(v.name, nccl_half_ring(chunk, ranks, v.bw_eff * self.link_gbps, v.base_us, v.hop_us))
                   for v in self.nccl if ranks >= v.min_ranks]
        if not options:
            raise CostModelError(f"{self.source}: collectives: no NCCL algorithm for {ranks} ranks")
        name, terms = min(options, key=lambda o: (sum(o[1].values()), o[0]))
        return _rounded(name, terms)

    def allgather_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        return self._half_ring(nbytes, ranks)

    def reducescatter_terms(self, nbytes: int, ranks: int) -> dict[str, int]:
        return self._half_ring(nbytes / ranks, ranks)


def _num(doc: dict, key: str, where: str, positive: bool = True) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
        raise CostModelError(f"{where}: field {key!r} must be a {'positive' if positive else 'non-negative'} "
                             f"number, got {value!r}")
    return float(value)


def network_from_hardware(doc: dict, gbps: float, latency_us: float, source: str) -> Network:
    """The TP network of a hardware entry: `VllmCollectives` from its `collectives:` block over a
    link of `gbps` / `latency_us`, or `RingNetwork` when the entry has no such block."""
    block = doc.get("collectives")
    if block is None:
        return RingNetwork(gbps, latency_us, source)
    where = f"{source}: collectives"
    if not isinstance(block, dict) or set(block) - {"custom_allreduce", "nccl"}:
        raise CostModelError(f"{where}: expected a mapping with custom_allreduce and/or nccl")
    if gbps <= 0:
        raise CostModelError(f"{source}: interconnect_gbps must be positive when collectives are given")
    custom = block.get("custom_allreduce") or {}
    kwargs: dict = {}
    if custom:
        cw = f"{where}.custom_allreduce"
        known = {"max_bytes", "ranks", "one_shot_below", "launch_us", "bw_eff"}
        if not isinstance(custom, dict) or set(custom) - known:
            raise CostModelError(f"{cw}: expected a mapping of {', '.join(sorted(known))}")
        ranks = custom.get("ranks")
        below = custom.get("one_shot_below") or []
        if not isinstance(ranks, list) or not ranks or not all(isinstance(r, int) and r >= 2 for r in ranks):
            raise CostModelError(f"{cw}: 'ranks' must be a list of integers >= 2")
        if not isinstance(below, list) or not all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) for x in p)
                                                  for p in below):
            raise CostModelError(f"{cw}: 'one_shot_below' must be a list of [max_ranks, bytes] pairs")
        kwargs = dict(custom_max_bytes=int(_num(custom, "max_bytes", cw)), custom_ranks=tuple(ranks),
                      one_shot_below=tuple((int(r), int(b)) for r, b in below),
                      custom_launch_us=_num(custom, "launch_us", cw, positive=False),
                      custom_bw_eff=_num(custom, "bw_eff", cw))
    nccl_doc = block.get("nccl") or {}
    if not isinstance(nccl_doc, dict) or not nccl_doc:
        raise CostModelError(f"{where}.nccl: expected a mapping of algorithm name -> {{base_us, hop_us, bw_eff}}")
    variants = []
    for name in sorted(nccl_doc):
        v, vw = nccl_doc[name], f"{where}.nccl.{name}"
        if not isinstance(v, dict) or set(v) - {"base_us", "hop_us", "bw_eff", "min_ranks"}:
            raise CostModelError(f"{vw}: expected a mapping of base_us, hop_us, bw_eff (and optional min_ranks)")
        variants.append(NcclVariant(f"nccl_{name}", _num(v, "base_us", vw, positive=False),
                                    _num(v, "hop_us", vw, positive=False), _num(v, "bw_eff", vw),
                                    int(v.get("min_ranks", 2))))
    return VllmCollectives(gbps, latency_us, nccl=tuple(variants), source=source, **kwargs)


def default_network(hardware) -> Network:
    """A backend built without a network (direct construction in tests and scripts): the ring
    over the hardware's interconnect."""
    gbps = hardware.interconnect_gbps if hardware is not None else 0.0
    latency = hardware.interconnect_latency_us if hardware is not None else 0.0
    return RingNetwork(gbps, latency, f"hardware {hardware.name}" if hardware is not None else "hardware")

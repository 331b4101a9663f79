"""`Hardware`: one accelerator's spec-sheet numbers, from a small YAML file.

Keys: `name`, `memory_gib`, `bf16_tflops` (dense), optional `fp8_tflops` (dense; absent: no fp8
tensor cores, fp8 weights are dequantised and multiplied at the bf16 peak), `hbm_gbps` (GB/s),
`interconnect_gbps` (per-direction GB/s between the GPUs of one instance),
`interconnect_latency_us`, optional `efficiency` (calibrated roofline parameters),
`collectives` (TP all-reduce algorithms, read by `collectives.network_from_hardware`), `family`
(a label, e.g. hopper) and `inherits` (another entry whose keys this one takes where it sets
none; resolved by `catalogue.resolve_hardware_doc`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fleetsim.costmodel.errors import CostModelError


@dataclass(frozen=True)
class Hardware:
    name: str
    memory_gib: float
    bf16_tflops: float
    hbm_gbps: float
    fp8_tflops: float = 0.0
    interconnect_gbps: float = 0.0
    interconnect_latency_us: float = 0.0
    efficiency: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: dict, source: str = "hardware") -> "Hardware":
        if not isinstance(doc, dict):
            raise CostModelError(f"{source}: expected a mapping of hardware fields")

        def num(key, required=True, default=0.0):
            value = doc.get(key, None if required else default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (required and value == 0):
                raise CostModelError(f"{source}: field {key!r} must be a positive number, got {value!r}")
            return float(value)
        return cls(
            name=str(doc.get("name") or source),
            memory_gib=num("memory_gib"),
            bf16_tflops=num("bf16_tflops"),
            hbm_gbps=num("hbm_gbps"),
            fp8_tflops=num("fp8_tflops", required=False),
            interconnect_gbps=num("interconnect_gbps", required=False),
            interconnect_latency_us=num("interconnect_latency_us", required=False),
            efficiency=dict(doc.get("efficiency") or {}),
        )

    def p2p_ns(self, nbytes: int) -> int:
        """One point-to-point send of `nbytes` between two GPUs: latency + bytes/bandwidth."""
        if self.interconnect_gbps <= 0:
            raise CostModelError(f"hardware {self.name}: interconnect_gbps is needed for pp > 1")
        return max(1, round((self.interconnect_latency_us * 1e-6 + nbytes / (self.interconnect_gbps * 1e9)) * 1e9))

"""Expert parallelism under LLMServingSim's arithmetic: per-rank routing and dispatch/combine.

The experts of a MoE layer are split over `ep` ranks (E/ep whole experts each; `ep` must divide
E). For a step whose MoE layers see T tokens (a DP group's largest token count, every member
padded to it; a lone instance's own count), with k experts per token and balanced routing:

- per rank `local_tokens = round(T·(1 − ((ep−1)/ep)^k))`: the tokens with at least one of
  their k (independently drawn) experts on that rank;
- per rank `activated = min(round(T·k/ep), E/ep)` experts touched;
- the rank's expert block is looked up in `moe.csv` at (local_tokens, activated); all ranks are
  equal under balanced routing, so that is the layer's expert time (no lookup at 0 tokens);
- dispatch: vLLM's default `allgather_reducescatter` all2all backend gathers each rank's hidden
  states and router logits, an all-gather of `max(1, ⌊T/ep⌋)·(hidden + E)·dtype` bytes per rank;
- combine: a reduce-scatter of the `T·hidden·dtype`-byte output buffer.

Both collectives run over the ep ranks per MoE layer (none at ep = 1) and are priced by the
instance's `collectives.Network` (`allgather_ns` / `reducescatter_ns`: ASTRA-Sim's ring for
LLMServingSim cluster JSONs, NCCL's cheapest variant or a plain ring from the hardware
catalogue otherwise). With ep = 1 the lookup is at (T, min(T·k, E)), the plain MoE step.
This is the routing of LLMServingSim's trace generator (`GateRouter.route_ep`, BALANCED, and
`_emit_moe_block`), which takes T as the group's largest padded count (not the gathered sum).
"""
from __future__ import annotations

from fleetsim.costmodel.errors import CostModelError


def check_expert_parallel(arch, ep: int) -> None:
    """Refuse an `ep` the model cannot be split by: a dense model has no experts to split, and
    `ep` must divide the experts (each rank holds E/ep whole experts)."""
    if not arch.is_moe:
        raise CostModelError(f"ep={ep}: model {arch.name} has no experts")
    if arch.num_experts % ep:
        raise CostModelError(f"ep={ep} must divide the {arch.num_experts} experts of {arch.name}")


class ExpertParallel:
    """Routing and collectives of one MoE model's layers split over `ep` ranks."""

    def __init__(self, arch, ep: int, network):
        check_expert_parallel(arch, ep)
        self.ep = ep
        self.k = max(1, arch.experts_per_token)
        self.experts = arch.num_experts
        self.hidden = arch.hidden_size
        self.dtype = arch.dtype_bytes
        self.network = network

    def local_tokens(self, tokens: int) -> int:
        ep = self.ep
        return round(tokens * (1 - ((ep - 1) / ep) ** self.k))

    def activated_experts(self, tokens: int) -> int:
        return min(round(tokens * self.k / self.ep), self.experts // self.ep)

    def dispatch_bytes(self, tokens: int) -> int:
        """All-gather data size: one rank's chunk of hidden states + router logits."""
        return max(1, tokens // self.ep) * (self.hidden + self.experts) * self.dtype

    def combine_bytes(self, tokens: int) -> int:
        """Reduce-scatter data size: the whole output buffer."""
        return tokens * self.hidden * self.dtype

    def dispatch_ns(self, tokens: int) -> int:
        return self.network.allgather_ns(self.dispatch_bytes(tokens), self.ep)

    def combine_ns(self, tokens: int) -> int:
        return self.network.reducescatter_ns(self.combine_bytes(tokens), self.ep)

"""`FrontEnd`: the API server in front of one engine (vLLM's OpenAI-compatible server).

A request the client sends at `arrival_ns` reaches the engine core's input queue
`delay_ns(prompt_len) = request_ns + per_prompt_token_ns · prompt_len` later: the HTTP request
and its parsing, tokenisation of the prompt (the per-token part) and the IPC to the engine core
(`frontend: {request_us, per_prompt_token_us}` in the cluster YAML, each rounded to the ns;
default 0, which is LLMServingSim's arithmetic). Nothing is added on the way out: vLLM's API
server detokenises incrementally and streams each token while the engine runs its next step,
so a token reaches the client a small, near-constant time after its step ends; that constant
belongs in `request_us` (it moves TTFT and latency alike and leaves TPOT as it is).

Client-side times (requests.csv's arrival, TTFT, latency) therefore include the front end; the
engine's own anchor is the request's `queued_ns` (engine.py), as vLLM's `queued_ts`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrontEnd:
    request_ns: int = 0
    per_prompt_token_ns: int = 0

    @classmethod
    def from_us(cls, request_us: float = 0.0, per_prompt_token_us: float = 0.0) -> "FrontEnd":
        return cls(round(request_us * 1000), round(per_prompt_token_us * 1000))

    def delay_ns(self, prompt_len: int) -> int:
        """Time from the client's send to the engine core's input queue."""
        return self.request_ns + self.per_prompt_token_ns * prompt_len


NO_FRONTEND = FrontEnd()

"""`StepTracer`: one instance's iteration trace (the design's per-instance trace generator).

An engine with a tracer records every step that starts inside the tracer's window [start, end)
ns of simulated time: start, end, the batch (prefill chunks as (tokens, context), decodes,
tokens), the KV blocks in use after it, the cost model's per-op breakdown of the step, and the
(request id, tokens) pairs it scheduled; for each request it touched, its arrival, first and last
token times once it has finished. Fast-forward is suspended inside the window (the engine runs
those steps one by one; fast-forward is exact, so every output byte is the same) and kept
outside it, so tracing a short window of a long run stays cheap.
"""
from __future__ import annotations


class StepTracer:
    def __init__(self, start_ns: int = 0, end_ns: int | None = None):
        self.start = start_ns
        self.end = end_ns
        self.steps: list[tuple] = []        # (start, end, prefills, decodes, tokens, kv_used, ops, pairs)
        self.requests: dict[int, tuple] = {}   # rid -> (arrival, first token, last token), when finished
        self._touched: set[int] = set()

    def covers(self, t: int) -> bool:
        return t >= self.start and (self.end is None or t < self.end)

    def limit(self, t_end: int) -> int:
        """The end to give fast-forward at time `now` before the window: the window's start."""
        return min(t_end, self.start)

    def step(self, start: int, end: int, batch, scheduled: list, kv_used: int, ops: dict) -> None:
        pairs = tuple((req.rid, n) for req, n in scheduled)
        self._touched.update(r for r, _ in pairs)
        self.steps.append((start, end, batch.prefills, batch.decodes, batch.tokens, kv_used, ops, pairs))

    def finished(self, done: list) -> None:
        for req in done:
            if req.rid in self._touched:
                self.requests[req.rid] = (req.arrival_ns, req.first_token_ns, req.last_token_ns)

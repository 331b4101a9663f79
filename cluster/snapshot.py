"""`Snapshot`: what the router knows about one instance's load.

Taken by the instance at a window boundary, then updated by the router with every request it
sends during the window (waiting +1, outstanding prefill += prompt, outstanding decode +=
output), so policies see their own decisions. `now` is the instance's simulated clock when the
snapshot was taken; no built-in policy reads it, but a user policy may (e.g. to age a signal).
"""
from __future__ import annotations


class Snapshot:
    __slots__ = ("index", "waiting", "running", "kv_used", "kv_total", "prefill_tokens", "decode_tokens", "now")

    def __init__(self, index: int, waiting: int = 0, running: int = 0, kv_used: int = 0, kv_total: int = 1,
                 prefill_tokens: int = 0, decode_tokens: int = 0, now: int = 0):
        self.index = index
        self.waiting = waiting
        self.running = running
        self.kv_used = kv_used
        self.kv_total = kv_total
        self.prefill_tokens = prefill_tokens
        self.decode_tokens = decode_tokens
        self.now = now


    @classmethod
    def from_tuple(cls, index: int, t) -> "Snapshot":
        return cls(index, *t)

    def note_routed(self, req) -> None:
        """The router sent `req` here during the current window."""
        self.waiting += 1
        self.prefill_tokens += req.prompt_len
        self.decode_tokens += req.output_len

    @property
    def outstanding_tokens(self) -> int:
        return self.prefill_tokens + self.decode_tokens


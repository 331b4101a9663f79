"""Handing a request over from a prefill instance to a decode instance (PD disaggregation).

A prefill instance (`Engine.hands_off`) runs a request up to the step that computes its last
prompt token; that step emits the first output token there (TTFT is stamped on the prefill
side), the request leaves the prefill scheduler's seat, and its KV blocks stay allocated
(`Scheduler.held`) until the cluster says its transfer ended (`Engine.release_held`).

The decode instance gets `decode_copy(req)`: a new `Request` with the same identity and the
progress of the prefill side — prompt computed, one output token produced (its time kept, so
the first ITL gap on the decode side runs from the first token, transfer and queueing
included) — and no blocks. It enters the decode engine at its transfer end
(`Engine.add_handoff`), waits in the waiting queue until the scheduler can give it blocks for
its prompt and the token it decodes next (the transfer queue: `Scheduler.admit`), then decodes
from the token after the first: nothing is recomputed.
"""
from __future__ import annotations

from array import array

from fleetsim.instance.request import Request


def decode_copy(req: Request) -> Request:
    """The decode side's `Request` for `req`, handed off after its first output token."""
    new = Request(req.rid, req.arrival_ns, req.prompt_len, req.output_len, req.token_ids, req.hash_ids,
                  req.hash_block, req.session)
    new.think_ns = req.think_ns
    new.instance = req.instance
    new.num_computed = req.num_computed
    new.num_output = req.num_output
    new.num_tokens = req.num_tokens
    new.queued_ns = req.queued_ns
    new.first_scheduled_ns = req.first_scheduled_ns
    new.first_token_ns = req.first_token_ns
    new.last_token_ns = req.last_token_ns
    new.itl = array("q", req.itl)
    new.preemptions = req.preemptions
    new.hit_tokens = req.hit_tokens
    return new

"""`Scheduler`: one step of vLLM v1's scheduler (FCFS policy, recompute preemption).

Per step, with a token budget of `max_num_batched_tokens`:
1. Running requests, in order: each gets min(remaining, long_prefill_token_threshold, budget)
   tokens (a decode gets 1). If its KV blocks do not fit, the request at the *tail* of the
   running list is preempted (blocks freed, computed tokens reset to 0, outputs kept, put at the
   head of the waiting queue) until they fit; if the tail is the request itself, it is preempted
   and the running pass ends.
2. Only if nothing was preempted this step: waiting requests in FCFS order are admitted while
   the running set is below `max_num_seqs` and budget remains. A newly admitted request first
   takes its longest prefix-cache hit. Admission never preempts and stops at the first request
   that does not fit (blocks, or, without chunked prefill, a prompt larger than the budget).
With pipeline parallelism, requests of a batch still in flight are skipped (and never
preempted) until that batch completes.
With async scheduling (vLLM's `AsyncScheduler`), a request whose last token comes from the
step in flight is `finishing`: it keeps its seat and blocks, is skipped (vLLM does not schedule a
step past `max_tokens`), and may still be chosen as a preemption victim, which frees its blocks at
once and ends its stay (vLLM prepends it to the waiting queue and drops it when its last token
arrives; it is not counted as a preemption here: nothing is recomputed). The engine calls
`release_finishing` after the next step is scheduled (engine.py).
PD disaggregation (instance/handoff.py): a request handed off by a prefill instance leaves its
seat like a finished one but its blocks stay `held` until its KV transfer ends (a held request is
never a preemption victim's source of blocks: preempting it only ends its stay). On a decode
instance a handed-off request arrives with its prompt computed (`num_computed` > 0, which no
other waiting request has: preemption resets it): admission gives it blocks for its prompt and
the token it decodes next, with no prefix-cache lookup (its KV came over the link), FCFS with the
waiting queue like any request, so a decode instance's waiting queue is its transfer queue.
"""
from __future__ import annotations

from collections import deque

from fleetsim.instance.block_manager import BlockManager
from fleetsim.instance.config import EngineConfig
from fleetsim.instance.request import Request


class Scheduler:
    def __init__(self, config: EngineConfig, blocks: BlockManager):
        self.config = config
        self.blocks = blocks
        self.running: list[Request] = []
        self.waiting: deque[Request] = deque()
        self.preemptions = 0
        self.prefix_queries = 0   # tokens looked up in the prefix cache at admission
        self.prefix_hits = 0      # of which were cached
        self.in_flight: set[int] = set()   # ids of requests in a pipelined batch not yet done
        self.finishing: dict[int, Request] = {}   # async: id -> request done, not yet released
        self.held: dict[int, Request] = {}        # PD: id -> handed off, blocks kept until its transfer ends

    def schedule(self, now_ns: int) -> list[tuple[Request, int]]:
        """Choose this step's (request, new_tokens) pairs; updates running/waiting and blocks."""
        cfg, kv = self.config, self.blocks
        budget = cfg.max_num_batched_tokens
        threshold = cfg.long_prefill_token_threshold
        running = self.running
        bs, caching = kv.block_size, kv.enable_caching
        in_flight, finishing = self.in_flight, self.finishing
        scheduled: list[tuple[Request, int]] = []
        preempted = False
        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            if (in_flight and req.rid in in_flight) or (finishing and req.rid in finishing):
                i += 1
                continue
            n = req.num_tokens - req.num_computed
            if 0 < threshold < n:
                n = threshold
            if n > budget:
                n = budget
            if n <= 0:
                i += 1
                continue
            fits = True
            if n == 1 and req.num_computed < len(req.blocks) * bs and not (caching and req.has_identity):
                scheduled.append((req, 1))        # a decode inside its last block: nothing to allocate
                budget -= 1
                i += 1
                continue
            while not kv.allocate(req, n):
                victim = self._pop_victim()
                self._preempt(victim)
                preempted = True
                if victim is req:
                    fits = False
                    break
            if not fits:
                break
            scheduled.append((req, n))
            budget -= n
            i += 1

        if not preempted:
            self.admit(now_ns, budget, scheduled)
        return scheduled

    def admit(self, now_ns: int, budget: int, scheduled: list) -> None:
        """Step 2: admit waiting requests, FCFS, while seats and `budget` tokens last; appends their
        (request, new_tokens) to `scheduled`."""
        cfg, kv, running, waiting = self.config, self.blocks, self.running, self.waiting
        threshold = cfg.long_prefill_token_threshold
        while waiting and budget > 0 and len(running) < cfg.max_num_seqs:
            req = waiting[0]
            if req.num_computed:              # handed off (PD): its prompt's KV arrived
                n = req.num_tokens - req.num_computed
                if not kv.allocate(req, n):
                    break
                waiting.popleft()
                running.append(req)
                if req.decode_scheduled_ns < 0:
                    req.decode_scheduled_ns = now_ns
                scheduled.append((req, n))
                budget -= n
                continue
            hits = kv.find_cached_prefix(req)
            hit_tokens = len(hits) * kv.block_size
            n = req.num_tokens - hit_tokens
            if 0 < threshold < n:
                n = threshold
            if n > budget:
                if not cfg.enable_chunked_prefill:
                    break
                n = budget
            if not kv.allocate(req, n, hits):
                break
            waiting.popleft()
            running.append(req)
            req.num_computed = hit_tokens
            self.prefix_queries += req.num_tokens
            self.prefix_hits += hit_tokens
            req.hit_tokens += hit_tokens
            if req.first_scheduled_ns < 0:
                req.first_scheduled_ns = now_ns
            scheduled.append((req, n))
            budget -= n

    def _pop_victim(self) -> Request:
        """The running request at the tail, skipping those in a pipelined batch in flight."""
        running, in_flight = self.running, self.in_flight
        if not in_flight:
            return running.pop()
        for j in range(len(running) - 1, -1, -1):
            if running[j].rid not in in_flight:
                return running.pop(j)
        raise RuntimeError("no preemptible request")

    def release_finishing(self) -> None:
        """Retire the finishing requests (async scheduling): seats and blocks become free."""
        held = self.held
        for req in self.finishing.values():
            self.running.remove(req)
            if req.rid not in held:
                self.blocks.free(req)
        self.finishing = {}

    def _preempt(self, req: Request) -> None:
        if self.finishing and req.rid in self.finishing:
            del self.finishing[req.rid]      # done already: its blocks go, nothing to recompute
            if req.rid not in self.held:     # (a handed-off one's stay here with its transfer)
                self.blocks.free(req)
            return
        self.blocks.free(req, preempted=True)
        req.num_computed = 0
        req.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(req)

"""`Request`: one inference request and its progress through an engine."""
from __future__ import annotations

from array import array
from itertools import accumulate


class Request:
    """A request: `prompt_len` tokens in, `output_len` tokens out (the first included).

    Prefix-cache identity of its tokens comes from `token_ids` (prompt ids, then output ids when
    the workload has them) or from `hash_ids` (one id per `hash_block` prompt tokens, as in the
    Mooncake trace). Tokens with no identity get keys unique to this request, so only the request
    itself can hit them (e.g. when recomputing after a preemption); a request with no identity at
    all is not hashed: the block manager remembers its blocks instead (`own_cache`), which hits
    exactly the same blocks. Block hashes are chained
    (each covers the whole prefix) with Python's tuple-of-int hash, which is not salted and so is
    identical in every process.
    """
    __slots__ = ("rid", "arrival_ns", "prompt_len", "output_len", "token_ids", "hash_ids", "hash_block",
                 "session", "followup", "think_ns", "own_cache", "has_identity", "num_computed", "num_output", "num_tokens", "blocks", "num_cached_blocks", "hashes",
                 "queued_ns", "first_scheduled_ns", "first_token_ns", "last_token_ns", "itl", "itl_text", "itl_texted", "preemptions", "hit_tokens", "instance",
                 "run_from", "run_need", "run_order", "report_ns",
                 "decode_instance", "transfer_start_ns", "transfer_end_ns", "decode_scheduled_ns")

    def __init__(self, rid: int, arrival_ns: int, prompt_len: int, output_len: int,
                 token_ids=None, hash_ids=None, hash_block: int = 512, session=None):
        self.rid = rid
        self.arrival_ns = arrival_ns
        self.prompt_len = prompt_len
        self.output_len = output_len
        self.token_ids = token_ids
        self.hash_ids = hash_ids
        self.hash_block = hash_block
        # whether its tokens have an identity other requests can share (token or hash ids);
        # fixed here: token_ids / hash_ids are given at construction, not set later
        self.has_identity = token_ids is not None or hash_ids is not None
        self.session = session
        self.own_cache = ()     # (block, generation) of full blocks kept after a preemption
        self.followup = None    # next turn of the same session: arrives think_ns after this ends
        self.think_ns = 0
        self.instance = -1
        self.num_computed = 0
        self.num_output = 0
        self.num_tokens = prompt_len        # tokens known so far: prompt + outputs generated
        self.blocks: list[int] = []
        self.num_cached_blocks = 0
        self.hashes: list[int] = []
        self.queued_ns = -1                 # when the engine took it from its input queue (vLLM's queued_ts)
        self.first_scheduled_ns = -1
        self.first_token_ns = -1            # end of the step that produced the first output token
        self.last_token_ns = -1             # ... and the latest one
        self.itl = array("q")              # gaps between consecutive output tokens (int64: no
                                            # per-token objects for the GC to walk)
        self.itl_text: list[str] = []      # the text of itl[:itl_texted] in pieces (`itl_cell`)
        self.itl_texted = 0
        self.preemptions = 0
        self.hit_tokens = 0
        self.run_from = 0                   # fast-forward: first step of the run not yet applied
        self.run_need = -1                  # ... the step of its next new block
        self.run_order = 0                  # ... and its place in the run's join (= running) order
        self.report_ns = -1                 # finished: the time whose window reports it (Engine.finish)
        # PD disaggregation (cluster/pd.py): where it decodes, its KV transfer, its admission there
        self.decode_instance = -1
        self.transfer_start_ns = -1
        self.transfer_end_ns = -1
        self.decode_scheduled_ns = -1

    @property
    def token_times(self) -> list[int]:
        """End times of the steps that produced each output token (first, then first + gaps)."""
        return [] if self.first_token_ns < 0 else list(accumulate(self.itl, initial=self.first_token_ns))

    @token_times.setter
    def token_times(self, times) -> None:
        times = list(times)
        self.first_token_ns = times[0] if times else -1
        self.last_token_ns = times[-1] if times else -1
        self.itl = array("q", [b - a for a, b in zip(times, times[1:])])
        self.itl_text, self.itl_texted = [], 0

    def text_up_to_date(self) -> None:
        """Convert the gaps not yet in `itl_text` (those stepping appended) into one piece."""
        if self.itl_texted < len(self.itl):
            self.itl_text.append(str(self.itl[self.itl_texted:].tolist())[1:-1])
            self.itl_texted = len(self.itl)

    def itl_cell(self) -> str:
        """Python's list text of the ITL gaps, `str(list(itl))`, from the pieces of `itl_text`:
        the members of a fast-forward run share the text of its gaps (instance/fast_forward.py),
        so most gaps are converted once per step, not once per request."""
        self.text_up_to_date()
        return "[" + ", ".join(self.itl_text) + "]"

    def _block_key(self, i: int, bs: int):
        lo, hi = i * bs, (i + 1) * bs
        ids = self.token_ids
        if ids is not None and hi <= len(ids):
            return tuple(ids[lo:hi])
        if self.hash_ids is not None and hi <= self.prompt_len:
            j = lo // self.hash_block
            if j < len(self.hash_ids) and (hi - 1) // self.hash_block == j:
                return (self.hash_ids[j], lo - j * self.hash_block)
        return (-1, self.rid, i)

    def prompt_block_hashes(self, bs: int) -> list[int]:
        """Chained hashes of the prompt's full blocks for block size `bs`, computed afresh (the
        router's view; does not touch the engine's cached `hashes`)."""
        out, h = [], 0
        for i in range(self.prompt_len // bs):
            h = hash((h, self._block_key(i, bs)))
            out.append(h)
        return out

    def block_hash(self, i: int, bs: int) -> int:
        """Chained hash of full block i (tokens [i·bs, (i+1)·bs) must be known)."""
        hashes = self.hashes
        while len(hashes) <= i:
            k = len(hashes)
            hashes.append(hash((hashes[k - 1] if k else 0, self._block_key(k, bs))))
        return hashes[i]

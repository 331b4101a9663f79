"""`TimeSeries`: 1-second buckets of one instance's activity.

Per bucket (by step end time): prompt tokens computed, generation tokens produced, steps, and
the running / waiting / KV-blocks-used levels at the end of the bucket's last step. Buckets
without a step have no row here (the fleet's writer, cluster/timeseries_writer.py, fills them).
"""
from __future__ import annotations

from bisect import bisect_left

BUCKET_NS = 1_000_000_000


class TimeSeries:
    __slots__ = ("rows", "_bucket", "_cur")

    def __init__(self):
        self.rows: list[tuple] = []    # (bucket, prompt_tokens, gen_tokens, steps, running, waiting, kv_used)
        self._bucket = -1
        self._cur = None

    def record(self, end_ns: int, prompt_tokens: int, gen_tokens: int, running: int, waiting: int, kv_used: int):
        b = end_ns // BUCKET_NS
        cur = self._cur
        if b != self._bucket:
            if cur is not None:
                self.rows.append(tuple(cur))
            self._bucket = b
            self._cur = [b, prompt_tokens, gen_tokens, 1, running, waiting, kv_used]
            return
        cur[1] += prompt_tokens
        cur[2] += gen_tokens
        cur[3] += 1
        cur[4] = running
        cur[5] = waiting
        cur[6] = kv_used

    def record_steps(self, ends: list, first_prompt_tokens: int, gen_tokens: int, running: int, waiting: int,
                     kv_used: list) -> None:
        """`record` for consecutive steps ending at `ends` (increasing), each producing `gen_tokens`,
        prompt tokens only in the first, KV use `kv_used[i]` after step i; one update per bucket."""
        i, k = 0, len(ends)
        prompt = first_prompt_tokens
        while i < k:
            b = ends[i] // BUCKET_NS
            j = bisect_left(ends, (b + 1) * BUCKET_NS, i)
            if b != self._bucket:
                if self._cur is not None:
                    self.rows.append(tuple(self._cur))
                self._bucket = b
                self._cur = [b, 0, 0, 0, 0, 0, 0]
            cur = self._cur
            cur[1] += prompt
            cur[2] += gen_tokens * (j - i)
            cur[3] += j - i
            cur[4] = running
            cur[5] = waiting
            cur[6] = kv_used[j - 1]
            prompt = 0
            i = j

    def drain(self, final: bool = False, before: int | None = None) -> list[tuple]:
        """Completed buckets; the open one too when `final`, or when it lies before bucket
        `before` (the caller knows that every later step ends in bucket `before` or after)."""
        if self._cur is not None and (final or (before is not None and self._bucket < before)):
            self.rows.append(tuple(self._cur))
            self._cur, self._bucket = None, -1
        out, self.rows = self.rows, []
        return out

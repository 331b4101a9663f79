"""`RecordBatch`: finished requests of one window, compact for transport and aggregation.

`fixed` is an int64 matrix, one row per request: instance, request id, input, output, arrival,
end, e2e, queueing, ttft, tpot, preemptions, prefix hit tokens, queued; `itl` concatenates every
request's inter-token gaps; `lines` are the requests.csv lines (cluster/requests_csv.py),
formatted a window at a time where the requests finished (in the Ray actors, in parallel), or none at all with
`--requests-detail none`.
Windows run as one (cluster/fleet_loop.py `_merge`) give one batch whose `window` says, row by
row, which of them reports the request (None: a single window); `ordered` then sorts by window
first, so the batch is those windows' ordered batches end to end, and `split` cuts it into them.
"""
from __future__ import annotations

from array import array

import numpy as np

from fleetsim.cluster.metrics import END, INSTANCE, OUTPUT, RID, request_matrix
from fleetsim.cluster.requests_csv import format_lines


class RecordBatch:
    __slots__ = ("fixed", "itl", "lines", "window")

    def __init__(self, fixed: np.ndarray, itl: np.ndarray, lines: list[str], window: np.ndarray | None = None):
        self.fixed, self.itl, self.lines, self.window = fixed, itl, lines, window

    @classmethod
    def from_requests(cls, reqs: list, models: dict, detail: str = "full", window: list | None = None) -> "RecordBatch":
        """From finished `Request`s; `models[instance]` names the model in the CSV, `detail` is the
        `--requests-detail` value (`none`: no lines); `window`: each one's window (module doc)."""
        if not reqs:
            return cls.empty()
        batch = cls._of(request_matrix(reqs), [r.itl for r in reqs],
                        [r.itl_cell() for r in reqs] if detail == "full" else (), models, detail)
        if window is not None:
            batch.window = np.array(window, dtype=np.int64)
        return batch

    @classmethod
    def from_rows(cls, rows: list, models: dict, detail: str = "full") -> "RecordBatch":
        """From `metrics.request_row` tuples (as `from_requests`)."""
        if not rows:
            return cls.empty()
        return cls._of(np.array([r[:10] + r[11:] for r in rows], dtype=np.int64), [array("q", r[10]) for r in rows],
                       [str(list(r[10])) for r in rows], models, detail)

    @classmethod
    def _of(cls, fixed: np.ndarray, itls: list, cells, models: dict, detail: str) -> "RecordBatch":
        """`itls`: each row's gaps (int64 arrays, joined in C); `cells`: their CSV text (`full` only)."""
        itl = np.frombuffer(bytearray().join(itls), dtype=np.int64)
        return cls(fixed, itl, format_lines(fixed, cells, models, detail) if detail != "none" else [])

    @classmethod
    def empty(cls) -> "RecordBatch":
        return cls(np.empty((0, 13), dtype=np.int64), np.empty(0, dtype=np.int64), [])

    @classmethod
    def concat(cls, batches: list) -> "RecordBatch":
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        window = np.concatenate([b.window for b in batches]) if batches[0].window is not None else None
        return cls(np.concatenate([b.fixed for b in batches]), np.concatenate([b.itl for b in batches]),
                   [line for b in batches for line in b.lines], window)

    def __len__(self) -> int:
        return len(self.fixed)

    def ordered(self) -> "RecordBatch":
        """Rows (and their ITL gaps, output − 1 per row) in (window, end time, instance, request
        id) order: independent of how work was spread."""
        if len(self) < 2:
            return self
        f, w = self.fixed, self.window
        keys = (f[:, RID], f[:, INSTANCE], f[:, END]) + (() if w is None else (w,))
        order = np.lexsort(keys)
        lines = self.lines
        return RecordBatch(f[order], _reorder_segments(self.itl, f[:, OUTPUT] - 1, order),
                           [lines[i] for i in order.tolist()] if lines else lines, None if w is None else w[order])

    def select(self, keep: np.ndarray) -> "RecordBatch":
        """The rows where `keep` is true (with their ITL gaps), in their order."""
        gaps = self.fixed[:, OUTPUT] - 1
        return RecordBatch(self.fixed[keep], self.itl[np.repeat(keep, gaps)],
                           [line for line, k in zip(self.lines, keep.tolist()) if k],
                           None if self.window is None else self.window[keep])

    def split(self, windows: int) -> list["RecordBatch"]:
        """An ordered batch of `windows` windows run as one, cut into each one's batch."""
        if self.window is None:
            if len(self):
                raise ValueError("split: a batch of one window")
            return [self] * windows
        rows = np.searchsorted(self.window, np.arange(windows + 1)).tolist()
        gaps = np.concatenate(([0], np.cumsum(self.fixed[:, OUTPUT] - 1))).tolist()
        return [RecordBatch(self.fixed[a:b], self.itl[gaps[a]:gaps[b]], self.lines[a:b], self.window[a:b])
                for a, b in zip(rows, rows[1:])]


def _reorder_segments(values: np.ndarray, lengths: np.ndarray, order: np.ndarray) -> np.ndarray:
    """`values` cut into consecutive segments of `lengths`, the segments put in `order`."""
    starts = np.cumsum(lengths) - lengths
    new_lengths = lengths[order]
    shift = starts[order] - (np.cumsum(new_lengths) - new_lengths)
    return values[np.arange(len(values)) + np.repeat(shift, new_lengths)]

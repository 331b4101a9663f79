"""`ValueStream`: the mean and percentiles of a long stream of int64 ns values (a run's ITL gaps),
in ms, to the last digit of numpy's own arithmetic over the whole array — without holding it.

`metrics.stats_ms` on an array converts it to ms (float64(ns) / 1e6), takes `a.mean()` (numpy's
pairwise sum, then / n) and `np.percentile(a, [50, 90, 95, 99])` (linear). A stream of a hundred
million gaps took 1 GB that way. Here:

- values are buffered up to `BUFFER_VALUES`; a run that never fills the buffer is summarised by
  `stats_ms` itself, on the same array;
- a full buffer is folded into exact value → count pairs (sorted; decode gaps repeat step after
  step, so there are about as many distinct values as engine steps, not as tokens) and appended
  to an unlinked temporary file, in stream order;
- the percentiles need only the order statistics next to each virtual index, which the counts
  give (ns → ms is monotone), combined with numpy's formulas (`_percentiles`);
- the mean needs numpy's pairwise summation, whose tree depends only on the length n
  (`pairwise_sum`): it is walked over the file and the buffer, and every subtree of at most
  `CHUNK` values is read back and summed by `np.add.reduce`, which walks the same subtree.

Memory: the buffer, the counts and one chunk (8 MB) at a time; disk: 8 bytes a value (less than
the same gaps take as text in requests.csv). tests/test_value_stream.py checks both statistics
against `stats_ms` on the whole array over many lengths, spills and value sets.
"""
from __future__ import annotations

import tempfile

import numpy as np

BUFFER_VALUES = 1 << 22  # values held before they are folded into counts and the file (32 MB)
CHUNK = 1 << 20          # values read back and summed at once (a subtree of numpy's pairwise sum)
PW_BLOCKSIZE = 128       # numpy's pairwise summation: longer runs are split in two
PERCENTILES = (50, 90, 95, 99)


class ValueStream:
    def __init__(self, buffer_values: int | None = None):
        self.buffer_values = BUFFER_VALUES if buffer_values is None else buffer_values
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.n = 0                                     # values so far
        self.spilled = 0                               # ... of them in the file
        self.file = None
        self.values = np.empty(0, dtype=np.int64)      # distinct spilled values, ascending
        self.counts = np.empty(0, dtype=np.int64)      # ... and how often each occurred

    def __len__(self) -> int:
        return self.n

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        self.buffer.append(np.ascontiguousarray(values, dtype=np.int64))
        self.buffered += len(values)
        self.n += len(values)
        if self.buffered >= self.buffer_values:
            self._spill()

    def _spill(self) -> None:
        chunk = np.concatenate(self.buffer)
        self.buffer, self.buffered = [], 0
        if self.file is None:
            self.file = tempfile.TemporaryFile(prefix="fleetsim-values-")
        chunk.tofile(self.file)
        self.spilled += len(chunk)
        values, counts = np.unique(chunk, return_counts=True)
        self.values, self.counts = _merge_counts(self.values, self.counts, values, counts)

    def stats_ms(self) -> dict:
        """{mean, p50, p90, p95, p99} in ms, as `metrics.stats_ms` of the whole stream (call once)."""
        from fleetsim.cluster.metrics import stats_ms
        if self.file is None:
            out = stats_ms(np.concatenate(self.buffer) if self.buffer else np.empty(0, dtype=np.int64))
            self.buffer = []
            return out
        if self.buffer:
            self._spill()
        self.file.flush()
        try:
            mean = float(pairwise_sum(self._read_ms, self.n) / self.n)
        finally:
            self.file.close()
        p = _percentiles(self.values, self.counts, self.n)
        return {"mean": mean, "p50": float(p[0]), "p90": float(p[1]), "p95": float(p[2]), "p99": float(p[3])}

    def _read_ms(self, start: int, length: int) -> np.ndarray:
        self.file.seek(start * 8)
        a = np.fromfile(self.file, dtype=np.int64, count=length).astype(np.float64)
        a /= 1e6
        return a


def pairwise_sum(read, n: int, chunk: int | None = None) -> float:
    """`np.add.reduce` of the float64 array of length `n` whose values [start, start + length) are
    `read(start, length)`: numpy's pairwise summation (a run of more than PW_BLOCKSIZE values is
    split at half its length, rounded down to a multiple of 8; numpy/_core/src/umath/
    loops_utils.h.src), its subtrees of at most `chunk` values summed by numpy itself."""
    def walk(start: int, length: int) -> float:
        if length <= chunk:
            return np.add.reduce(read(start, length))
        half = length // 2
        half -= half % 8
        return walk(start, half) + walk(start + half, length - half)
    chunk = CHUNK if chunk is None else chunk
    if chunk < PW_BLOCKSIZE:
        raise ValueError(f"chunk must be at least {PW_BLOCKSIZE}")
    return np.float64(0.0) + walk(0, n)


def _merge_counts(v1, c1, v2, c2):
    """Sorted distinct values with their summed counts, of two such pairs."""
    v = np.concatenate([v1, v2])
    c = np.concatenate([c1, c2])
    order = np.argsort(v, kind="stable")
    v, c = v[order], c[order]
    starts = np.flatnonzero(np.concatenate(([True], v[1:] != v[:-1])))
    return v[starts], np.add.reduceat(c, starts)


def _percentiles(values: np.ndarray, counts: np.ndarray, n: int) -> np.ndarray:
    """`np.percentile(a, PERCENTILES)` (linear) of the ms values of the int64 multiset
    {values[i] × counts[i]} of size n, by numpy's own steps (numpy.lib._function_base_impl:
    `_compute_virtual_index` for 'linear', `_get_indexes`, `_get_gamma`, `_lerp`)."""
    q = np.true_divide(np.asarray(PERCENTILES), 100)
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    nxt = previous + 1
    above = virtual >= n - 1
    previous[above] = -1
    nxt[above] = -1
    previous, nxt = previous.astype(np.intp), nxt.astype(np.intp)
    ends = np.cumsum(counts)                       # sorted position k holds values[searchsorted(ends, k, 'right')]
    ms = values.astype(np.float64) / 1e6

    def order_stat(k):
        return ms[np.searchsorted(ends, np.where(k < 0, n + k, k), side="right")]
    a, b = order_stat(previous), order_stat(nxt)
    gamma = np.asanyarray(virtual - previous, dtype=virtual.dtype)
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out

"""`ValueStream` (cluster/value_stream.py): its mean and percentiles equal `metrics.stats_ms` of
the whole array to the last bit, whether the values stay buffered or were spilled to counts and
the file; `pairwise_sum` is numpy's own summation over any length and chunk size."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fleetsim.cluster import value_stream
from fleetsim.cluster.metrics import stats_ms
from fleetsim.cluster.value_stream import ValueStream, pairwise_sum


def ms(values):
    return np.asarray(values, dtype=np.int64).astype(np.float64) / 1e6


@pytest.mark.parametrize("n", [1, 7, 8, 127, 128, 129, 136, 255, 1000, 4099, 65_537])
@pytest.mark.parametrize("chunk", [128, 200, 1024, 1 << 20])
def test_pairwise_sum_is_numpys(n, chunk):
    a = ms(np.random.default_rng(n).integers(1, 10 ** 9, n))
    got = pairwise_sum(lambda start, length: a[start:start + length], n, chunk)
    assert got == np.add.reduce(a)
    assert got.tobytes() == np.add.reduce(a).tobytes()


def test_pairwise_sum_of_a_long_array_read_in_small_chunks():
    a = ms(np.random.default_rng(1).integers(1, 10 ** 8, 3_000_003))
    reads = []

    def read(start, length):
        reads.append(length)
        return a[start:start + length]
    assert pairwise_sum(read, len(a), 1 << 12) == np.add.reduce(a)
    assert max(reads) <= 1 << 12 and sum(reads) == len(a)
    assert a.sum() / len(a) == a.mean()          # stats_ms's mean: this sum over n


def streamed(chunks, buffer_values):
    s = ValueStream(buffer_values)
    for c in chunks:
        s.add(np.asarray(c, dtype=np.int64))
    return s


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.one_of(st.integers(0, 3), st.integers(1, 10 ** 12)), max_size=40), min_size=1,
                max_size=12), st.integers(1, 50))
def test_stream_stats_equal_stats_ms_of_the_whole(chunks, buffer_values):
    whole = np.array([v for c in chunks for v in c], dtype=np.int64)
    s = streamed(chunks, buffer_values)
    assert len(s) == len(whole)
    assert s.stats_ms() == stats_ms(whole.copy())


@pytest.mark.parametrize("n", [1, 2, 3, 100, 101, 20_001])
def test_stream_of_repeated_gaps(monkeypatch, n):
    monkeypatch.setattr(value_stream, "CHUNK", 256)
    rng = np.random.default_rng(n)
    values = rng.choice(np.array([25_000_001, 25_000_003, 31_415_926, 7], dtype=np.int64), n)
    s = streamed(np.array_split(values, 7), 1000)
    assert (s.file is not None) == (n > 1000)
    expect = stats_ms(values.copy())
    assert s.stats_ms() == expect
    # by hand for the smallest: one value is every statistic
    if n == 1:
        assert expect == dict.fromkeys(("mean", "p50", "p90", "p95", "p99"), values[0] / 1e6)


def test_spilled_counts_are_exact():
    s = streamed([[5, 3, 5], [3, 3, 9], [5]], 2)       # two spills; the last 5 stays buffered
    assert s.values.tolist() == [3, 5, 9] and s.counts.tolist() == [3, 2, 1] and s.spilled == 6 and len(s) == 7
    assert s.stats_ms() == stats_ms(np.array([5, 3, 5, 3, 3, 9, 5]))


def test_empty_stream():
    assert ValueStream().stats_ms() == dict.fromkeys(("mean", "p50", "p90", "p95", "p99"))

"""`CostModel.decode_steps` (fast-forward's pricing) equals `time_batch` of every step's shape."""
from __future__ import annotations

import os

import numpy as np
import pytest

from fleetsim.costmodel import CostModel
from fleetsim.costmodel.batch import BatchShape

REPO_PERF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "perf")
CASES = [("meta-llama/Llama-3.1-8B", "RTXPRO6000", "profile", 1, 1),           # shipped profile bundles
         ("meta-llama/Llama-3.1-8B", "H100-SXM-80GB", "profile", 1, 1),
         ("Qwen/Qwen3-8B", "H200-SXM-141GB", "profile", 1, 1),
         ("meta-llama/Llama-3.1-70B", "A100-SXM-80GB", "roofline", 2, 1),
         ("Qwen/Qwen3-30B-A3B", "H100-SXM-80GB", "roofline", 2, 2)]


def _shapes(g, count):
    for _ in range(count):
        n = int(g.integers(1, 200))
        ctx = g.integers(1, 20_000, n) if g.random() < 0.7 else np.full(n, int(g.integers(1, 20_000)))
        yield n, int(ctx.sum()), int(ctx.min()), int(ctx.max())


@pytest.mark.parametrize("model, hardware, backend, tp, ep", CASES)
def test_decode_steps_match_time_batch_to_the_ns(model, hardware, backend, tp, ep):
    cm = CostModel.load(model, hardware, backend, tp, perf_root=REPO_PERF, ep=ep)
    g = np.random.Generator(np.random.PCG64(3))
    for n, s, lo, hi in _shapes(g, 150):
        step = cm.decode_steps(n, s, lo, hi)
        for j in (0, 1, 2, 7, 15, 16, 17, 100, 1000):
            expected = cm.time_batch(BatchShape(n, n, (), n, s + j * n, lo + j, hi + j))
            assert step(j) == expected, (n, s, lo, hi, j)


@pytest.mark.parametrize("model, hardware, backend, tp, ep", CASES[:3])
def test_decode_steps_step_by_step(model, hardware, backend, tp, ep):
    """As fast-forward calls it (j = 0, 1, 2, ... and on across table keys and skew bins: the
    remembered brackets of `Curve.cursor` and `DecodeSkew.along`), then going back."""
    cm = CostModel.load(model, hardware, backend, tp, perf_root=REPO_PERF, ep=ep)
    g = np.random.Generator(np.random.PCG64(5))
    for n, s, lo, hi in _shapes(g, 12):
        step = cm.decode_steps(n, s, lo, hi)
        for j in [*range(300), 4000, 3, 20_000, 0]:
            assert step(j) == cm.time_batch(BatchShape(n, n, (), n, s + j * n, lo + j, hi + j)), (n, s, lo, hi, j)


def test_cursors_equal_the_searches():
    """`Curve.cursor` and `_Bins.cursor` give `Curve.raw` and `_Bins.label` for any order of
    queries: keys themselves, between them, below the first and above the last."""
    from fleetsim.costmodel.decode_skew import _Bins
    from fleetsim.costmodel.interp import Curve
    g = np.random.Generator(np.random.PCG64(11))
    for size in (1, 2, 3, 9):
        keys = np.sort(g.choice(1000, size, replace=False)).astype(float)
        curve = Curve(keys, g.integers(1, 10**7, size))
        bins = _Bins(keys, [f"b{i}" for i in range(size - 1)], "test") if size > 1 else None
        raw, label = curve.cursor(), bins.cursor() if bins else None
        xs = [*keys, *(keys + 0.5), *(keys - 1), -5.0, 2000.0, *g.uniform(-100, 1100, 200), *np.arange(-3, 1003)]
        for x in [*xs, *xs[::-1], *g.permutation(xs)]:
            assert raw(x) == curve.raw(x), (size, x)
            assert bins is None or label(x) == bins.label(x), (size, x)

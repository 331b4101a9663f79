"""The engine's 1-second time series (instance.timeseries) on hand-made cases."""
from __future__ import annotations

import numpy as np

from fleetsim.instance.timeseries import BUCKET_NS, TimeSeries
from conftest import make_engine, req, run_all


def _totals(engine):
    rows = engine.series.drain(final=True)
    return rows, sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows)


def test_series_counts_prompt_and_generation_tokens():
    e = make_engine(max_num_batched_tokens=64)
    run_all(e, [req(0, 0, 200, 3), req(1, 0, 30, 2)])
    rows, prompt, gen, steps = _totals(e)
    assert prompt == 230 and gen == 5 and steps == e.steps
    assert len(rows) == 1 and rows[0][0] == 0          # a few µs: all in bucket 0
    assert rows[0][4:] == (0, 0, 0)                    # running, waiting, KV used after the last step


def test_series_buckets_by_step_end():
    e = make_engine()
    run_all(e, [req(0, 0, 10, 1), req(1, 3 * BUCKET_NS, 20, 2)])
    rows, prompt, gen, steps = _totals(e)
    assert [r[0] for r in rows] == [0, 3]
    assert rows[0][1:4] == (10, 1, 1)
    assert rows[1][1:4] == (20, 2, 2)


def test_series_counts_one_token_prompt_chunks():
    e = make_engine(max_num_batched_tokens=64)
    run_all(e, [req(0, 0, 65, 2)])                     # chunks 64 + 1
    _, prompt, gen, _ = _totals(e)
    assert gen == 2
    assert prompt == 65


def test_record_steps_equals_one_record_per_step():
    g = np.random.Generator(np.random.PCG64(5))
    a, b = TimeSeries(), TimeSeries()
    t = 0
    for _ in range(300):
        k = int(g.integers(1, 40))
        ends = [t := t + int(g.integers(1, BUCKET_NS // 7)) for _ in range(k)]
        used = [int(x) for x in g.integers(0, 500, k)]
        prompt, gen, run, wait = (int(x) for x in g.integers(0, 50, 4))
        if g.random() < 0.3:
            a.record(ends[0], prompt, gen, run, wait, used[0])
            b.record(ends[0], prompt, gen, run, wait, used[0])
            continue
        for i, (e, u) in enumerate(zip(ends, used)):
            a.record(e, prompt if i == 0 else 0, gen, run, wait, u)
        b.record_steps(ends, prompt, gen, run, wait, used)
    assert a.drain(final=True) == b.drain(final=True)

"""The engine's 1-second time series (instance.timeseries) on hand-made cases."""
from __future__ import annotations

import pytest

from instance.timeseries import BUCKET_NS
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

"""Metric definitions (DESIGN.md "One instance"): TTFT, ITL, TPOT, E2E, queueing, per request."""
from __future__ import annotations

import numpy as np
import pytest

from fleetsim.cluster.metrics import MetricsCollector, _as_float_in_place, request_row, stats_ms
from fleetsim.cluster.records import RecordBatch
from fleetsim.cluster.requests_csv import format_row
from fleetsim.instance.request import Request
from conftest import make_engine, req, run_all


def test_one_request_row():
    """Prompt 50, 4 outputs, budget 32, arrival 300: chunks 32 (1320) + 18 (1180), 3 decodes (1010)."""
    e = make_engine(max_num_batched_tokens=32)
    (r,) = run_all(e, [req(7, 300, 50, 4)])
    assert r.token_times == [2_800, 3_810, 4_820, 5_830]
    row = request_row(r)
    inst, rid, inp, out, arr, end, e2e, q, ttft, tpot, itl, pre, hits, queued = row
    assert (inst, rid, inp, out, arr, end) == (0, 7, 50, 4, 300, 5_830)
    assert queued == 300                       # the idle engine takes it at once
    assert ttft == 2_500
    assert e2e == 5_530
    assert itl == [1_010, 1_010, 1_010]
    assert tpot == 1_010                       # (5530 − 2500) / 3
    assert q == 0
    assert (pre, hits) == (0, 0)


def test_two_request_rows():
    """r0 (20 in, 4 out, t=0) and r1 (10 in, 2 out, t=1500); fake steps of 1000 + 10/token.

    step 1 0→1200 r0 prefill 20 | step 2 1200→2210 r0 decode (r1 not yet arrived)
    step 3 2210→3320 r0 decode + r1 prefill 10 | step 4 3320→4340 both decode."""
    e = make_engine()
    r0, r1 = run_all(e, [req(0, 0, 20, 4), req(1, 1_500, 10, 2)])
    assert r0.token_times == [1_200, 2_210, 3_320, 4_340]
    assert r1.token_times == [3_320, 4_340]
    row0, row1 = request_row(r0), request_row(r1)
    # r0: TTFT 1200, E2E 4340, ITL [1010, 1110, 1020], TPOT 3140/3 = 1046.67 → 1047, queueing 0
    assert row0[6:11] == (4_340, 0, 1_200, 1_047, [1_010, 1_110, 1_020])
    # r1: TTFT 3320 − 1500 = 1820, E2E 2840, ITL [1020], TPOT 1020, queueing 2210 − 1500 = 710
    assert row1[6:11] == (2_840, 710, 1_820, 1_020, [1_020])
    # queued: r0 at once (idle engine), r1 at the end of step 2 (the step running at 1500)
    assert format_row(row0, "m") == '0,0,m,20,4,0,4340,4340,0,1200,1047,"[1010, 1110, 1020]",0,0,0\n'
    assert format_row(row1, "m") == '0,1,m,10,2,1500,4340,2840,710,1820,1020,"[1020]",0,0,2210\n'
    assert format_row(row0, "m", "no-itl") == '0,0,m,20,4,0,4340,4340,0,1200,1047,,0,0,0\n'

    mc = MetricsCollector()
    mc.add_batch(RecordBatch.from_rows([row0, row1], {0: "m"}))
    s = mc.summary()
    assert s["num_requests"] == 2
    assert s["ttft_ms"]["mean"] == pytest.approx((1_200 + 1_820) / 2 / 1e6)
    assert s["tpot_ms"]["mean"] == pytest.approx((1_047 + 1_020) / 2 / 1e6)
    assert s["itl_ms"]["mean"] == pytest.approx((1_010 + 1_110 + 1_020 + 1_020) / 4 / 1e6)
    assert s["e2e_ms"]["p50"] == pytest.approx((4_340 + 2_840) / 2 / 1e6)
    assert s["queueing_ms"]["mean"] == pytest.approx(710 / 2 / 1e6)
    assert s["throughput"]["output_tokens_per_s"] == pytest.approx(6 / 4_340e-9)
    assert s["simulated_s"] == pytest.approx(4_340e-9)


def _fake_req(arrival, times, first_sched=None):
    r = Request(0, arrival, 5, len(times))
    r.token_times = list(times)
    r.first_scheduled_ns = arrival if first_sched is None else first_sched
    r.queued_ns = arrival
    return r


@pytest.mark.parametrize("arrival, times, expected_tpot", [
    (0, [10, 13, 17, 20], 3),              # 10/3 = 3.33 → 3
    (0, [10, 15, 21, 27], 6),              # 17/3 = 5.67 → 6
    (5, [10, 1_010, 2_011, 3_013], 1_001),  # 3003/3 = 1001 exactly
    (0, [7, 9], 2),                        # 2 outputs: the single gap
])
def test_tpot_rounds_to_nearest_ns(arrival, times, expected_tpot):
    row = request_row(_fake_req(arrival, times))
    assert row[9] == expected_tpot
    assert row[8] == times[0] - arrival and row[6] == times[-1] - arrival


def test_request_matrix_is_the_integer_arithmetic_row_by_row():
    """A window's rows computed column by column (int64) are Python's integer arithmetic per
    request, up to the 10^18 ns time bound (half-ns TPOTs round up)."""
    from fleetsim.cluster.metrics import request_matrix
    rng = np.random.default_rng(3)
    reqs = []
    for k in range(300):
        n = int(rng.integers(1, 6)) if k % 3 else 2
        arrival = int(rng.integers(0, 10 ** 17))
        times = np.sort(rng.integers(arrival, 10 ** 18, n)).tolist()
        reqs.append(_fake_req(arrival, times, first_sched=int(rng.integers(arrival, times[0] + 1))))
    reqs.append(_fake_req(0, [1, 2, 4]))                  # (4 - 1) / 2 = 1.5 → 2
    got = request_matrix(reqs).tolist()
    for r, row in zip(reqs, got):
        e2e, ttft, n = r.token_times[-1] - r.arrival_ns, r.token_times[0] - r.arrival_ns, r.output_len
        tpot = (2 * (e2e - ttft) + (n - 1)) // (2 * (n - 1)) if n > 1 else 0
        assert row == [r.instance, 0, 5, n, r.arrival_ns, r.token_times[-1], e2e,
                       r.first_scheduled_ns - r.arrival_ns, ttft, tpot, 0, 0, r.arrival_ns]
    assert got[-1][9] == 2


def test_single_output_request_has_no_tpot_and_no_itl():
    row = request_row(_fake_req(1_000, [4_000], first_sched=1_500))
    assert row[6:11] == (3_000, 500, 3_000, 0, [])
    assert format_row(row, "m") == '-1,0,m,5,1,1000,4000,3000,500,3000,,"[]",0,0,1000\n'       # TPOT empty
    assert format_row(row, "m", "no-itl") == '-1,0,m,5,1,1000,4000,3000,500,3000,,,0,0,1000\n'
    mc = MetricsCollector()
    mc.add_batch(RecordBatch.from_rows([row], {row[0]: "m"}))
    s = mc.summary()
    assert s["tpot_ms"] == {"mean": None, "p50": None, "p90": None, "p95": None, "p99": None}
    assert s["itl_ms"] == s["tpot_ms"]
    assert s["ttft_ms"]["mean"] == pytest.approx(3e-3)


def test_ttft_of_preempted_request_keeps_first_token():
    """A preempted request's TTFT is its first token's step, not the recompute's."""
    e = make_engine(num_gpu_blocks=4, block_size=4, enable_prefix_caching=False)
    r0, r1 = run_all(e, [req(0, 0, 6, 2), req(1, 0, 8, 3)])
    row = request_row(r1)
    assert row[8] == 1_140 and row[6] == 4_250 and row[10] == [2_100, 1_010]
    assert row[9] == 1_555                         # 3110 / 2
    assert row[11] == 1


def test_stats_ms_converts_in_place_with_the_plain_arithmetic():
    """ms first, then mean and percentiles: as `np.asarray(v, float64) / 1e6` would give, to the bit,
    across conversion chunks, without a second array."""
    g = np.random.Generator(np.random.PCG64(11))
    values = g.integers(1, 10**11, 10_007).astype(np.int64)
    ref = values.astype(np.float64) / 1e6
    expected = {"mean": float(ref.mean()), **dict(zip(("p50", "p90", "p95", "p99"),
                                                   map(float, np.percentile(ref, [50, 90, 95, 99]))))}
    assert stats_ms(values.copy()) == expected
    a = values.copy()
    f = _as_float_in_place(a, chunk=1000)
    assert np.shares_memory(f, a) and np.array_equal(f, values.astype(np.float64))


def test_ordered_batch_moves_each_rows_itl_gaps_with_it():
    from fleetsim.cluster.records import RecordBatch
    rows = []
    for rid, (end, out) in enumerate([(900, 3), (100, 1), (500, 4), (100, 2)]):
        gaps = [rid * 100 + k for k in range(out - 1)]
        rows.append((0, rid, 5, out, 0, end, end, 0, 10, 1, gaps, 0, 0, 0))
    batch = RecordBatch.from_rows(rows, {0: "m"}).ordered()
    assert batch.fixed[:, 1].tolist() == [1, 3, 2, 0]               # by end, then request id
    assert batch.itl.tolist() == [300, 200, 201, 202, 0, 1]          # rid 1 has none, then 3, 2, 0


def test_merged_batch_orders_window_first_and_splits_into_each_windows_batch():
    """A batch of windows run as one (`window` per row) is the windows' ordered batches end to
    end: `split` gives each back, rows, gaps and lines, as ordering each window alone would."""
    rows, window = [], [1, 0, 2, 0, 1]          # no row in window 3
    for rid, (end, out) in enumerate([(100, 3), (900, 2), (50, 1), (500, 4), (100, 2)]):
        rows.append((0, rid, 5, out, 0, end, end, 0, 10, 1, [rid * 100 + k for k in range(out - 1)], 0, 0, 0))
    whole = RecordBatch.from_rows(rows, {0: "m"})
    whole.window = np.array(window, dtype=np.int64)
    merged = whole.ordered()
    assert merged.fixed[:, 1].tolist() == [3, 1, 0, 4, 2]          # window, then end, then request id
    parts = merged.split(4)
    assert [p.fixed[:, 1].tolist() for p in parts] == [[3, 1], [0, 4], [2], []]
    for w, part in enumerate(parts):
        alone = RecordBatch.from_rows([r for r, k in zip(rows, window) if k == w], {0: "m"}).ordered()
        assert part.itl.tolist() == alone.itl.tolist() and part.lines == alone.lines
    assert RecordBatch.concat(parts).itl.tolist() == merged.itl.tolist() == [300, 301, 302, 100, 0, 1, 400]
    assert [len(p) for p in RecordBatch.empty().split(3)] == [0, 0, 0]

"""Profile cost model on the shared LLMServingSim bundle: exact step times, parse-once, no I/O per step."""
from __future__ import annotations

import builtins
import io
import os

import pytest

from fleetsim.costmodel import costmodel as costmodel_module, files as costmodel_files
from fleetsim.cluster.cli import main
from fleetsim.cluster.workloads import load_workload
from fleetsim.costmodel import CostModel
from fleetsim.costmodel.batch import BatchShape
from fleetsim.instance.config import EngineConfig
from fleetsim.instance.engine import Engine
from fleetsim.instance.request import Request
from conftest import CLUSTER_JSON, PERF_ROOT, WORKLOAD_300, check_clean

MODEL = "meta-llama/Llama-3.1-8B"


def load_8b(**kw) -> CostModel:
    return CostModel.load(model=MODEL, hardware="RTXPRO6000", backend="profile", tp=1,
                          perf_root=str(PERF_ROOT), **kw)


@pytest.mark.parametrize("ctx, ns", [(2358, 11_506_465), (2359, 11_506_529), (2360, 11_506_625)])
def test_exact_decode_step_times(shared_data, ctx, ns):
    cm = load_8b()
    assert cm.iteration_time_ns([(1, ctx)]) == ns
    assert cm.time_batch(BatchShape.from_seqs([(1, ctx)])) == ns
    assert sum(cm.breakdown([(1, ctx)]).values()) == ns


def test_step_time_is_monotone_in_decode_context(shared_data):
    cm = load_8b()
    times = [cm.iteration_time_ns([(1, c)]) for c in range(2000, 2400, 7)]
    assert all(a <= b for a, b in zip(times, times[1:]))
    assert cm.iteration_time_ns([]) == 0


def test_batch_shape_from_seqs():
    b = BatchShape.from_seqs([(100, 0), (1, 50), (30, 20), (1, 10), (1, 90)])
    assert b == BatchShape(133, 5, ((100, 0), (30, 20)), 3, 150, 10, 90)
    assert b.prefill_tokens == 130 and b.prefill_context == 20
    with pytest.raises(ValueError):
        BatchShape.from_seqs([(0, 5)])


def test_load_is_shared_and_memory_override(shared_data):
    a, b = load_8b(), load_8b(memory_gib=10)
    assert a.backend is b.backend and a.arch is b.arch
    assert b.hardware.memory_gib == 10.0 and a.hardware.memory_gib != 10.0


def test_num_kv_blocks_formula(shared_data):
    cm = load_8b(memory_gib=96)
    arch = cm.arch
    # Llama-3.1-8B: 32 layers × 8 KV heads × 128 dims × K,V × 2 bytes = 131072 B/token
    assert arch.kv_bytes_per_token(1) == 131_072
    assert cm.kv_block_bytes(16) == 16 * 131_072
    # embeddings 2·128256·4096 + 32 layers·(attention 41943040 + MLP 176160768) + norms 266240
    # = 8030261248 params = 16060522496 bytes
    assert arch.weight_bytes(1) == 16_060_522_496
    # (96·2^30·0.9 − 16060522496) / 2097152 = 36578.8
    assert cm.num_kv_blocks(16, 0.9) == 36_578


def test_engine_step_is_gpu_time_plus_cpu_overhead(shared_data):
    cm = load_8b(overhead_ns=5_000, overhead_per_seq_ns=100)
    e = Engine(cm, EngineConfig(num_gpu_blocks=1000))
    r0 = Request(0, 0, 100, 2)
    r1 = Request(1, 0, 30, 1)
    e.add_request(r0)
    e.add_request(r1)
    e.run_to_completion()
    check_clean(e)
    t1 = cm.iteration_time_ns([(100, 0), (30, 0)]) + 5_000 + 2 * 100
    t2 = t1 + cm.iteration_time_ns([(1, 100)]) + 5_000 + 100
    assert r0.token_times == [t1, t2] and r1.token_times == [t1]


def _run_args(out, n=60):
    return ["run", "--cluster", str(CLUSTER_JSON), "--workload", str(WORKLOAD_300), "--out", str(out),
            "--perf-root", str(PERF_ROOT), "--max-num-seqs", "128", "--max-num-batched-tokens", "2048",
            "--num-requests", str(n), "--quiet"]


def test_parse_once_whole_simulation(shared_data, tmp_path):
    costmodel_files.clear_cache()
    costmodel_module.clear_loaded()
    assert main(_run_args(tmp_path / "a")) == 0
    reads = dict(costmodel_files.READS)
    names = sorted(os.path.basename(p) for p in reads)
    for expected in ("Llama-3.1-8B.json", "meta.yaml", "dense.csv", "per_sequence.csv",
                     "attention.csv", "skew_fit.csv"):
        assert expected in names, f"{expected} never read: {names}"
    assert all(n == 1 for n in reads.values()), reads
    # a second run in the same process reads nothing again
    assert main(_run_args(tmp_path / "b")) == 0
    assert dict(costmodel_files.READS) == reads


def test_no_file_io_in_step_loop(shared_data, monkeypatch):
    cm = load_8b(memory_gib=96)

    def build():
        e = Engine(cm, EngineConfig(max_num_seqs=128, max_num_batched_tokens=2048))
        for r in list(load_workload(str(WORKLOAD_300), 60)):
            e.add_request(r)
        return e

    ref = build()
    ref.run_to_completion()
    expected = {r.rid: list(r.token_times) for r in ref.finished}

    e = build()

    def no_open(*a, **k):
        raise AssertionError(f"file opened during the simulation: {a!r}")

    monkeypatch.setattr(builtins, "open", no_open)
    monkeypatch.setattr(io, "open", no_open)
    with pytest.raises(AssertionError):
        open(__file__)                       # the patch is in force
    e.run_to_completion()
    monkeypatch.undo()
    check_clean(e)
    assert {r.rid: r.token_times for r in e.finished} == expected
    assert len(expected) == 60


# ------------------------------------------------------------------ lookups (no shared data needed)

def test_curve_clamps_interpolates_and_extrapolates():
    from fleetsim.costmodel.interp import Curve
    c = Curve([10, 1, 20], [200, 100, 400])              # unsorted input
    assert c(0) == 100 and c(1) == 100                   # clamp below the grid
    assert c(5.5) == 150                                 # 100 + 4.5/9·100
    assert c(10) == 200 and c(15) == 300
    assert c(30) == 600                                  # extrapolate from (10,200),(20,400)
    assert c(12.34) == 246                               # 246.8 truncated
    assert Curve([1, 2, 2], [5, 7, 9])(2) == 9           # duplicate key: last row wins
    assert Curve([1, 2], [5, 1])(100) == 1               # never below 1 ns


def test_us_to_ns():
    from fleetsim.costmodel.interp import us_to_ns
    assert us_to_ns([1.2344, 1.2346, 0.0, 0.0004, 12.0]).tolist() == [1234, 1235, 1, 1, 12000]


def test_attention_table_nested_interpolation():
    from fleetsim.costmodel.attention_table import AttentionTable
    #            pc  kp  nd  kvd   us
    rows = [(0, 0, 1, 0, 10.0), (0, 0, 1, 1000, 20.0),
            (0, 0, 3, 0, 30.0), (0, 0, 3, 1000, 60.0),
            (100, 0, 0, 0, 50.0), (100, 200, 0, 0, 90.0)]
    t = AttentionTable(*[[r[i] for r in rows] for i in range(5)])
    assert t.lookup(0, 0, 1, 500) == 15_000
    assert t.lookup(0, 0, 2, 500) == 30_000              # halfway between 15000 (nd 1) and 45000 (nd 3)
    assert t.lookup(100, 100, 0, 0) == 70_000            # along kv_prefill
    assert t.lookup(0, 0, 1, 2000) == 30_000             # extrapolated along kv_decode


def test_attention_table_rows_in_any_order_last_duplicate_wins():
    """The rows of all (pc, nd, kp) curves are sorted and de-duplicated at once: file order does
    not matter except between rows of the same (pc, nd, kp, kvd), where the later one wins."""
    from fleetsim.costmodel.attention_table import AttentionTable
    #            pc  kp  nd  kvd   us
    rows = [(0, 0, 1, 1000, 20.0), (100, 200, 0, 0, 90.0), (0, 0, 1, 0, 99.0),
            (0, 0, 1, 0, 10.0),                                   # replaces the 99 µs row
            (100, 0, 0, 0, 50.0), (0, 0, 1, 500, 40.0), (0, 0, 1, 500, 16.0)]
    t = AttentionTable(*[[r[i] for r in rows] for i in range(5)])
    curve = t.slices[(0, 1)].rows[0]
    assert curve.keys == [0.0, 500.0, 1000.0] and curve.values == [10_000, 16_000, 20_000]
    assert all(type(k) is float for k in curve.keys) and all(type(v) is int for v in curve.values)
    assert t.lookup(0, 0, 1, 250) == 13_000                  # between the 0 and 500 rows
    assert t.lookup(100, 100, 0, 0) == 70_000                # along kv_prefill
    assert sorted(t.slices) == [(0, 1), (100, 0)] and t.slices[(100, 0)].y_keys == [0, 200]


def test_attention_table_lerps_along_n_decode_then_across_prefill_chunk(monkeypatch):
    """Both axes bracketed: each chunk's slices along n_decode first, then across the chunks;
    the brackets `lookup` keeps per (pc, nd) give the same values when kept, hit or cleared."""
    import fleetsim.costmodel.attention_table as attention_table
    #            pc  kp nd kvd  us                                      at kvd 500 (ns)
    rows = [(0, 0, 2, 0, 10.0), (0, 0, 2, 1000, 20.0),                # 15000
            (0, 0, 4, 0, 30.0), (0, 0, 4, 1000, 50.0),                # 40000
            (100, 0, 2, 0, 60.0), (100, 0, 2, 1000, 80.0),            # 70000
            (100, 0, 4, 0, 100.0), (100, 0, 4, 1000, 140.0)]          # 120000
    expected = {(50, 3): 61_250,           # (15000 → 40000: 27500) → (70000 → 120000: 95000), halfway
                (50, 2): 42_500,           # n_decode on a key: across the chunks only
                (0, 3): 27_500, (100, 4): 120_000}
    for kept in (attention_table.BRACKETS_KEPT, 1):
        monkeypatch.setattr(attention_table, "BRACKETS_KEPT", kept)
        t = attention_table.AttentionTable(*[[r[i] for r in rows] for i in range(5)])
        for _ in range(2):
            assert {(pc, nd): t.lookup(pc, 0, nd, 500) for pc, nd in expected} == expected

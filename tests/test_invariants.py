"""Run invariants (cluster/invariants.py): hand-made violations are caught and named; real runs
pass at both levels with identical bytes; a broken block manager or clock stops the run (exit 3)."""
from __future__ import annotations

import numpy as np
import pytest

from fleetsim.cluster.cli import main
from fleetsim.cluster.invariants import InvariantViolation, RunChecker, TIME_LIMIT_NS, instance_checks
from fleetsim.cluster.metrics import ARRIVAL, E2E, END, INSTANCE, OUTPUT, QUEUEING, RID, TTFT
from fleetsim.instance.block_manager import BlockManager
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, outputs, run_cli


def _row(inst, rid, arrival, queueing, ttft, e2e, output):
    row = np.zeros(12, dtype=np.int64)
    row[[INSTANCE, RID, ARRIVAL, QUEUEING, TTFT, E2E, OUTPUT]] = inst, rid, arrival, queueing, ttft, e2e, output
    row[END] = arrival + e2e
    return row


def test_records_accept_consistent_rows():
    checker = RunChecker(2)
    # request 0: TTFT 50, then gaps 10 and 40 (E2E 100); request 1: one output token
    fixed = np.array([_row(0, 0, 0, 5, 50, 100, 3), _row(1, 1, 20, 0, 90, 90, 1)])
    checker.records(fixed[np.argsort(fixed[:, END])], np.array([10, 40]))
    assert list(checker.last_end) == [100, 110]


@pytest.mark.parametrize("row, itl, needle", [
    (_row(0, 7, 0, 60, 50, 100, 2), [50], "request 7: timestamps out of order"),       # queued past TTFT
    (_row(0, 7, 0, 0, 120, 100, 2), [-20], "request 7: timestamps out of order"),      # TTFT > E2E
    (_row(1, 4, 0, 0, 50, 100, 3), [10, 30], "instance 1, request 4: timestamps"),     # gaps sum 40, not 50
    (_row(0, 2, 0, 0, 50, 100, 3), [50], "ITL gaps do not match"),                     # one gap, needs two
])
def test_records_name_the_bad_request(row, itl, needle):
    with pytest.raises(InvariantViolation, match=needle):
        RunChecker(2).records(row[None, :], np.array(itl))


def test_completion_times_never_go_back():
    checker = RunChecker(1)
    checker.records(_row(0, 0, 0, 0, 100, 100, 1)[None, :], np.array([], dtype=np.int64))
    with pytest.raises(InvariantViolation, match="request 1: finished at 90 ns, before .* 100 ns"):
        checker.records(_row(0, 1, 0, 0, 90, 90, 1)[None, :], np.array([], dtype=np.int64))


def test_merged_windows_never_go_back_either():
    """Rows of windows run as one (window after window, each in end order): an instance's ends
    may not decrease from one window to the next; another instance's earlier end is fine."""
    one = np.array([], dtype=np.int64)
    w0, w1 = _row(0, 0, 0, 0, 100, 100, 1), _row(1, 1, 0, 0, 80, 80, 1)      # instance 1 ends first, a window later
    RunChecker(2).records(np.array([w0, w1]), one, merged=True)
    with pytest.raises(InvariantViolation, match="instance 0, request 1: finished at 80 ns, before .* 100 ns"):
        RunChecker(2).records(np.array([w0, _row(0, 1, 0, 0, 80, 80, 1)]), one, merged=True)


def _stats(**over):
    return {0: {"now": 1000, "received": 3, "kv_used": 0, **over}}


def test_end_of_run_totals():
    RunChecker.end([3], [3], _stats())
    with pytest.raises(InvariantViolation, match="instance 0: the router sent 3 requests, the instance received 2"):
        RunChecker.end([3], [3], _stats(received=2))
    with pytest.raises(InvariantViolation, match="instance 0: 3 requests routed, 1 finished"):
        RunChecker.end([3], [1], _stats())
    with pytest.raises(InvariantViolation, match="5 KV blocks still in use"):
        RunChecker.end([3], [3], _stats(kv_used=5))
    with pytest.raises(InvariantViolation, match="past the bound"):
        RunChecker.end([3], [0], _stats(now=TIME_LIMIT_NS + 1))


class _Req:
    def __init__(self, rid, output_len, num_output, gaps):
        self.rid, self.output_len, self.num_output, self.itl, self.last_token_ns = rid, output_len, num_output, gaps, 9


class _Engine:
    instance_id = 2

    def __init__(self, now=10, blocks=None):
        self.now, self.blocks = now, blocks or BlockManager(8, 16)


def test_instance_side_checks():
    instance_checks(_Engine(), 5, [_Req(1, 3, 3, [1, 2])], full=True)
    with pytest.raises(InvariantViolation, match="instance 2, request 1: finished with 2 of 3 output tokens"):
        instance_checks(_Engine(), 5, [_Req(1, 3, 2, [1])], full=False)
    with pytest.raises(InvariantViolation, match="instance 2: clock went back from 20 to 10"):
        instance_checks(_Engine(), 20, [], full=False)
    with pytest.raises(InvariantViolation, match="instance 2: simulated time reached .* past the bound"):
        instance_checks(_Engine(now=TIME_LIMIT_NS + 1), 5, [], full=False)
    broken = BlockManager(8, 16)
    broken.counting_refs = True
    broken.ref_cnt[7] = 1                  # referenced but never handed out: the free queue disagrees
    with pytest.raises(InvariantViolation, match="instance 2: KV block manager"):
        instance_checks(_Engine(blocks=broken), 5, [], full=True)
    instance_checks(_Engine(blocks=broken), 5, [], full=False)       # basic does not walk the blocks


def test_real_runs_pass_at_both_levels_with_the_same_bytes(tmp_path):
    args = ("--instances", "3", "--router", "least_loaded", "--num-requests", "120", "--num-gpu-blocks", "700")
    basic = run_cli(tmp_path / "basic", *args)
    full = run_cli(tmp_path / "full", *args, "--check-invariants", "full")
    assert outputs(basic)[:1] == outputs(full)[:1]          # requests.csv
    assert outputs(basic)[2:] == outputs(full)[2:]          # time series


def test_leaking_blocks_stop_the_run_with_exit_3(tmp_path, monkeypatch, capsys):
    real_free = BlockManager.free

    def leaky_free(self, req, preempted=False):      # keeps one block referenced on every free
        if req.blocks:
            req.blocks = req.blocks[1:]
        real_free(self, req, preempted)

    monkeypatch.setattr(BlockManager, "free", leaky_free)
    code = main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--out",
                 str(tmp_path / "o"), "--num-requests", "20", "--quiet", "--no-fast-forward"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1, err
    assert err[0].startswith("fleetsim: invariant violated: instance 0:") and "KV blocks still in use" in err[0]
    assert not (tmp_path / "o").exists()


def test_a_step_cost_past_the_time_bound_is_exit_3(tmp_path, capsys, monkeypatch):
    # a cluster file can no longer ask for it (overhead is at most 1e6 µs: test_bad_inputs), so
    # the cost model itself is made to return a host overhead of 10^17 ns per step
    from fleetsim.costmodel import CostModel
    monkeypatch.setattr(CostModel, "cpu_overhead_ns", lambda self, num_seqs: 10 ** 17)
    cluster = tmp_path / "c.yaml"
    cluster.write_text(EXAMPLE_CLUSTER.read_text())
    code = main(["run", "--cluster", str(cluster), "--workload", str(EXAMPLE_WORKLOAD), "--out",
                 str(tmp_path / "o"), "--num-requests", "20", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1, err
    assert "past the bound of 1e+18 ns" in err[0]
    assert not (tmp_path / "o").exists()

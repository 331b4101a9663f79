"""Merged load-blind windows (cluster/fleet_loop.py `_merge`) give the bytes of 1-s windows."""
import pytest

import fleetsim.cluster.fleet_loop as fleet_loop
import fleetsim.cluster.host as host
from fleet_helpers import EXAMPLE_CLUSTER, outputs, run_cli
from fleetsim.cluster.backends.local import LocalBackend

# two round-robin instances, 2.5 s of arrivals: a prefill-heavy step of one instance that
# starts before a 1-s boundary and finishes a request after a request of the other instance
# finished in a step that started after it (found by search; the async case has such a pair)
WORKLOAD = "synth:n=100,rate=40,seed=1,prompt=uniform(50,1500),output=uniform(5,60)"
ARGS = ("--instances", "2", "--router", "round_robin")


def _run(path, monkeypatch, mode: tuple, merged: int) -> tuple:
    """(outputs, windows merged away) of a run with at most `merged` windows run as one."""
    monkeypatch.setattr(fleet_loop, "MERGED_WINDOWS", merged)
    cut = []
    submit = LocalBackend.submit

    def counting(self, *args, cuts=(), **kwargs):
        cut.append(len(cuts))
        return submit(self, *args, cuts=cuts, **kwargs)
    monkeypatch.setattr(LocalBackend, "submit", counting)
    out = outputs(run_cli(path, *ARGS, *mode, cluster=EXAMPLE_CLUSTER, workload=WORKLOAD))
    return out, sum(cut)


@pytest.mark.parametrize("mode", [(), ("--no-async-scheduling",), ("--admission", "token_bucket:rate=20,burst=5")],
                         ids=["async", "synchronous", "rejections"])
def test_merged_windows_keep_the_bytes(tmp_path, monkeypatch, mode):
    one, none_merged = _run(tmp_path / "one", monkeypatch, mode, 1)
    merged, cuts = _run(tmp_path / "merged", monkeypatch, mode, 16)
    assert none_merged == 0 and cuts == 2          # windows ending at 1 s, 2 s and 3 s run as one
    assert merged == one
    if mode[:1] == ("--admission",):               # rejected rows sit in their own windows too
        assert one[0].count(b",token_bucket\n") > 20


def test_merged_windows_report_each_request_in_its_own_window(tmp_path, monkeypatch):
    """Without the per-window grouping (every request reported with the merged window's end)
    requests.csv changes order: the case above does exercise a boundary."""
    one, _ = _run(tmp_path / "one", monkeypatch, (), 1)
    monkeypatch.setattr(host, "bisect_right", lambda cuts, t: len(cuts))
    ungrouped, _ = _run(tmp_path / "ungrouped", monkeypatch, (), 16)
    assert ungrouped[0] != one[0] and sorted(ungrouped[0].splitlines()) == sorted(one[0].splitlines())
    assert ungrouped[1:] == one[1:]

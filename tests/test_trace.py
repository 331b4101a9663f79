"""`fleetsim run --trace`: trace.json against requests.csv, every step of the window recorded one by
one (fast-forward suspended there only), outputs unchanged, errors one line."""
from __future__ import annotations

import csv
import json

import pytest

from fleetsim.cluster.cli import main
from fleet_helpers import EXAMPLE_WORKLOAD, FLEET_CLUSTER


def _run(out, *extra):
    return main(["run", "--cluster", str(FLEET_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--out", str(out),
                 "--quiet", "--instances", "4", "--num-requests", "120", *extra])


def _ns(us) -> int:
    return round(us * 1000)


def test_trace_matches_requests_csv_and_changes_no_output(tmp_path):
    assert _run(tmp_path / "plain") == 0
    assert _run(tmp_path / "t", "--trace", "--trace-instances", "0,3", "--trace-window", "2:4") == 0
    for name in ("requests.csv", "timeseries.csv", "timeseries_fleet.csv"):
        assert (tmp_path / "t" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
    plain, traced = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("plain", "t"))
    assert {k: v for k, v in plain.items() if k != "run"} == {k: v for k, v in traced.items() if k != "run"}
    assert traced["run"]["options"]["trace_window"] == "2:4" and "trace" not in plain["run"]["options"]
    events = json.loads((tmp_path / "t" / "trace.json").read_text())["traceEvents"]
    steps = [e for e in events if e["ph"] == "X"]
    assert {e["pid"] for e in events} == {0, 3}
    assert steps and all(2e9 <= _ns(e["ts"]) < 4e9 for e in steps)
    rows = {int(r["request id"]): r for r in csv.DictReader((tmp_path / "t" / "requests.csv").read_text().splitlines())}
    begins = [e for e in events if e["ph"] == "b"]
    assert begins
    ends = {e["id"]: e for e in events if e["ph"] == "e"}
    step_ends = {(e["pid"], _ns(e["ts"]) + _ns(e["dur"])) for e in steps}
    checked = 0
    for b in begins:
        r = rows[b["id"]]
        assert int(r["instance id"]) == b["pid"]
        first = int(r["arrival"]) + int(r["TTFT"])
        assert b["args"] == {"arrival_ns": int(r["arrival"]), "first_token_ns": first, "last_token_ns": int(r["end_time"])}
        assert _ns(b["ts"]) == int(r["arrival"]) and _ns(ends[b["id"]]["ts"]) == int(r["end_time"])
        if 2.5e9 <= first < 4e9:     # made by a step that started in the window (steps last < 0.5 s here)
            assert (b["pid"], first) in step_ends
            checked += 1
    assert checked
    # every traced request was scheduled by some step of the window
    scheduled = {(e["pid"], rid) for e in steps for rid, _ in e["args"]["requests"]}
    assert all((b["pid"], b["id"]) in scheduled for b in begins)


def test_whole_run_trace_has_every_step_one_by_one(tmp_path):
    """Fast-forward is on by default; inside the window every step is still its own slice:
    as many slices as the summary counts steps, back to back or with idle gaps, never overlapping."""
    assert _run(tmp_path / "t", "--trace", "--trace-instances", "1") == 0
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    steps = [e for e in json.loads((tmp_path / "t" / "trace.json").read_text())["traceEvents"] if e["ph"] == "X"]
    assert len(steps) == summary["instances"][1]["steps"]
    for a, b in zip(steps, steps[1:]):
        assert _ns(a["ts"]) + _ns(a["dur"]) <= _ns(b["ts"])
    assert all(e["args"]["tokens"] == sum(c for c, _ in e["args"]["prefill_chunks"]) + e["args"]["decodes"]
               for e in steps)
    ops = steps[0]["args"]["ops"]
    assert ops and all(isinstance(v, int) and v >= 0 for v in ops.values())


def test_trace_is_deterministic(tmp_path):
    for d in ("a", "b"):
        assert _run(tmp_path / d, "--trace", "--trace-window", "1:3") == 0
    assert (tmp_path / "a" / "trace.json").read_bytes() == (tmp_path / "b" / "trace.json").read_bytes()


@pytest.mark.parametrize("extra, needle", [
    (["--trace", "--trace-window", "5"], "--trace-window '5': expected START:END"),
    (["--trace", "--trace-window", "4:2"], "--trace-window '4:2'"),
    (["--trace", "--trace-instances", "x"], "--trace-instances 'x': expected instance indices"),
    (["--trace", "--trace-instances", "9"], "--trace-instances: instance 9 does not exist (the fleet has 4: 0..3)"),
    (["--trace-window", "1:2"], "--trace-instances and --trace-window need --trace"),
    (["--trace", "--backend", "ray"], "--trace needs --backend local"),
])
def test_errors_are_one_line_exit_2(tmp_path, capsys, extra, needle):
    assert _run(tmp_path / "o", *extra) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o" / "summary.json").exists()

"""Every output file read with pandas: timeseries grids, the fleet file, requests.csv's TPOT and
--requests-detail modes, nulls in summary.json (cluster/timeseries_writer.py, requests_csv.py)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.timeseries_writer import FLEET_HEADER, HEADER, TimeSeriesWriter
from fleetsim.cluster.validate import load_sim
from fleetsim.instance.timeseries import BUCKET_NS
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, FLEET_CLUSTER, run_cli

pd = pytest.importorskip("pandas")

LSS_COLUMNS = ["instance id", "request id", "model", "input", "output", "arrival", "end_time", "latency",
               "queuing_delay", "TTFT", "TPOT", "ITL"]
LEVELS = ["running", "waiting", "kv_pct"]
COUNTS = ["prompt_tokens", "generation_tokens", "steps"]


def _write_workload(path, rows) -> str:
    """rows: (input, output, arrival ns)."""
    path.write_text("".join(json.dumps({"input_toks": i, "output_toks": o, "arrival_time_ns": a}) + "\n"
                            for i, o, a in rows))
    return path


def _series(out):
    return pd.read_csv(out / "timeseries.csv"), pd.read_csv(out / "timeseries_fleet.csv")


def _check_grid(per, fleet, n: int) -> None:
    """Sorted by (second, instance), every instance in every second, integer columns, and the
    fleet file = sums over all instances (kv_pct: their mean)."""
    assert list(per.columns) == HEADER.strip().split(",")
    assert list(fleet.columns) == FLEET_HEADER.strip().split(",")
    for col in ["second", "instance", *COUNTS, "running", "waiting"]:
        assert per[col].dtype == np.int64, col
    assert per["kv_pct"].dtype == np.float64 and fleet["kv_pct"].dtype == np.float64
    first, last = int(per.second.min()), int(per.second.max())
    grid = pd.MultiIndex.from_product([range(first, last + 1), range(n)], names=["second", "instance"])
    assert list(per.set_index(["second", "instance"]).index) == list(grid)      # sorted, complete, unique
    assert fleet.second.tolist() == list(range(first, last + 1))
    by_second = per.groupby("second")
    sums = by_second[COUNTS + ["running", "waiting"]].sum()
    f = fleet.set_index("second")
    assert (f[COUNTS + ["running", "waiting"]] == sums).all().all()
    assert np.allclose(f["kv_pct"], by_second["kv_pct"].mean(), rtol=0, atol=0.005 + 1e-9)
    assert f.steps.loc[first] > 0 and f.steps.loc[last] > 0                    # no idle seconds at the ends


def test_timeseries_of_a_fleet_with_idle_instances(tmp_path):
    out = run_cli(tmp_path / "o", "--instances", "32", "--num-requests", "120", cluster=FLEET_CLUSTER)
    per, fleet = _series(out)
    _check_grid(per, fleet, 32)
    idle = per[per.steps == 0]
    assert len(idle) > 0 and (idle[["prompt_tokens", "generation_tokens"]] == 0).all().all()
    # the fleet KV % counts idle instances: it is below the mean over only the instances that stepped
    busy_mean = per[per.steps > 0].groupby("second").kv_pct.mean()
    assert (fleet.set_index("second").kv_pct.loc[busy_mean.index] <= busy_mean + 0.005 + 1e-9).all()   # rounded
    assert (fleet.set_index("second").kv_pct.loc[busy_mean.index] < busy_mean - 0.01).any()
    # per-instance totals match the requests and the summary; the run's span is the grid's
    req = pd.read_csv(out / "requests.csv")
    summary = json.loads((out / "summary.json").read_text())
    totals = per.groupby("instance")[["generation_tokens", "steps"]].sum()
    assert totals.generation_tokens.tolist() == [i["output_tokens"] for i in summary["instances"]]
    assert totals.steps.tolist() == [i["steps"] for i in summary["instances"]]
    assert per.second.max() == req.end_time.max() // BUCKET_NS + 1
    assert req.arrival.min() // BUCKET_NS + 1 <= per.second.min() <= (req.arrival + req.TTFT).min() // BUCKET_NS + 1


def test_timeseries_of_pipeline_parallel_instances(tmp_path):
    """pp 2: batches in flight across window ends still give every second exactly once."""
    from fleet_helpers import REPO
    out = run_cli(tmp_path / "o", "--instances", "3", "--num-requests", "60",
                  cluster=REPO / "configs" / "clusters" / "h100-llama70b-tp2-pp2.yaml")
    _check_grid(*_series(out), 3)


def test_idle_seconds_inside_a_run_are_zero_rows(tmp_path):
    """Four instances round-robin, requests at 0.1 s and 5.5 s: seconds 2..5 are idle
    everywhere, and instance 3, which gets no request, has a zero row in every second."""
    work = _write_workload(tmp_path / "w.jsonl", [(300, 20, 100_000_000), (200, 30, 120_000_000),
                                                  (250, 10, 5_500_000_000)])
    out = run_cli(tmp_path / "o", "--instances", "4", "--router", "round_robin", cluster=EXAMPLE_CLUSTER,
                  workload=work)
    per, fleet = _series(out)
    _check_grid(per, fleet, 4)
    assert fleet.second.tolist() == [1, 2, 3, 4, 5, 6]
    quiet = per[per.second.between(2, 5)]
    assert len(quiet) == 16 and (quiet[COUNTS + LEVELS] == 0).all().all()
    assert (per[per.instance == 3][COUNTS + LEVELS] == 0).all().all() and (per.instance == 3).sum() == 6
    assert (fleet[fleet.second.between(2, 5)][COUNTS + LEVELS] == 0).all().all()
    assert per[per.second == 6].steps.tolist()[2] > 0


def _row(b, prompt=0, gen=0, steps=1, running=0, waiting=0, kv=0.0):
    return (b, prompt, gen, steps, running, waiting, kv)


def test_writer_carries_levels_and_writes_seconds_once_complete():
    """Hand-made buckets: levels carry over seconds without a step (a long step, or idle);
    nothing is written before every instance has passed the second; the fleet KV is the mean
    over both instances."""
    fh, ffh = io.StringIO(), io.StringIO()
    w = TimeSeriesWriter(fh, ffh, 2)
    w.add([(0, _row(0, 100, 1, 1, 1, 2, 10.0))], 900_000_000)          # window to 0.9 s: bucket 0 open
    assert fh.getvalue() == "" and ffh.getvalue() == ""
    w.add([(1, _row(1, 50, 2, 2, 3, 0, 40.5))], 2_500_000_000)           # bucket 0 and 1 complete
    assert fh.getvalue() == ("1,0,100,1,1,1,2,10.0\n1,1,0,0,0,0,0,0.0\n"
                             "2,0,0,0,0,1,2,10.0\n2,1,50,2,2,3,0,40.5\n")
    assert ffh.getvalue() == "1,100,1,1,1,2,5.0\n2,50,2,2,4,2,25.25\n"
    w.add([(0, _row(4, 0, 1, 1, 0, 0, 0.0))], 4_000_000_000)             # buckets 2, 3 complete; 4 held
    assert fh.getvalue().splitlines()[4:] == ["3,0,0,0,0,1,2,10.0", "3,1,0,0,0,3,0,40.5",
                                              "4,0,0,0,0,1,2,10.0", "4,1,0,0,0,3,0,40.5"]
    assert list(w.pending) == [4]
    w.add([], 9_000_000_000)      # bucket 4 complete; the seconds after the last row are not written
    w.close()
    assert fh.getvalue().splitlines()[8:] == ["5,0,0,1,1,0,0,0.0", "5,1,0,0,0,3,0,40.5"]
    assert ffh.getvalue().splitlines()[-1] == "5,0,1,1,3,0,20.25"
    with pytest.raises(RuntimeError, match="instance 1 sent second 2 after it was written"):
        w.add([(1, _row(1))], 9_000_000_000)


def test_writer_memory_is_bounded_by_the_window():
    """1024 instances, a third of them stepping in each second, 2.5-second windows over 500 s:
    every second is written as soon as the window that completes it is recorded, so the
    writer holds nothing of the run's past."""
    fh, ffh = io.StringIO(), io.StringIO()
    n, window = 1024, 2_500_000_000
    w = TimeSeriesWriter(fh, ffh, n)
    done = 0
    for k in range(200):
        complete = (k + 1) * window // BUCKET_NS
        w.add([(i, _row(b, gen=1, running=1, kv=1.0)) for b in range(done, complete) for i in range(b % 3, n, 3)],
              (k + 1) * window)
        done = complete
        assert not w.pending and fh.getvalue().count("\n") == done * n
    w.close()
    per = pd.read_csv(io.StringIO(HEADER + fh.getvalue()))
    fleet = pd.read_csv(io.StringIO(FLEET_HEADER + ffh.getvalue()))
    assert len(per) == 500 * n and per.second.is_monotonic_increasing
    assert fleet.generation_tokens.tolist() == [len(range(b % 3, n, 3)) for b in range(500)]
    assert fleet.running.tolist() == [len(range(b % 3, n, 3)) if b == 0 else (n if b >= 2 else 683)
                                      for b in range(500)]


def _one_token_workload(tmp_path, outputs):
    return _write_workload(tmp_path / "w.jsonl", [(100 + 7 * k, o, 40_000_000 * k) for k, o in enumerate(outputs)])


def test_tpot_is_empty_for_one_token_outputs(tmp_path):
    outputs = [1, 5, 1, 1, 12, 2, 1, 30]
    out = run_cli(tmp_path / "o", "--instances", "2", cluster=EXAMPLE_CLUSTER,
                  workload=_one_token_workload(tmp_path, outputs))
    text = (out / "requests.csv").read_text()
    assert text.splitlines()[0].split(",")[:12] == LSS_COLUMNS
    df = pd.read_csv(out / "requests.csv")
    for col in ["instance id", "request id", "input", "output", "arrival", "end_time", "latency",
                "queuing_delay", "TTFT", "preemptions", "prefix_hit_tokens", "queued"]:
        assert df[col].dtype == np.int64, col
    assert df.TPOT.dtype == np.float64
    assert (df.TPOT.isna() == (df.output == 1)).all()
    multi = df[df.output > 1]
    expected = ((2 * (multi.latency - multi.TTFT) + multi.output - 1) // (2 * (multi.output - 1)))
    assert (multi.TPOT == expected).all()
    assert (df[df.output == 1].ITL == "[]").all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tpot_ms"]["mean"] == pytest.approx(multi.TPOT.mean() / 1e6)
    sim = load_sim(str(out))                     # cluster/validate.py reads the empty cells
    assert len(sim["TTFT"]) == len(outputs) and len(sim["TPOT"]) == 4
    assert sim["TPOT"].tolist() == pytest.approx((multi.TPOT / 1e6).tolist())


def test_undefined_statistics_are_null(tmp_path, capsys):
    """No request with two output tokens: TPOT and ITL statistics are null; an instance that
    admitted nothing has a null hit rate; the printed table says n/a."""
    from fleetsim.cluster.cli import main
    work = _one_token_workload(tmp_path, [1, 1, 1])
    out = tmp_path / "o"
    assert main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(work), "--out", str(out),
                 "--instances", "4", "--router", "round_robin"]) == 0
    text = (out / "summary.json").read_text()
    summary = json.loads(text)
    for key in ("tpot_ms", "itl_ms"):
        assert summary[key] == {"mean": None, "p50": None, "p90": None, "p95": None, "p99": None}
    assert summary["ttft_ms"]["mean"] > 0
    assert '"mean": null' in text
    inst = pd.DataFrame(summary["instances"])
    assert inst.instance.dtype == np.int64
    assert inst.prefix_hit_rate.isna().tolist() == [False, False, False, True]
    printed = capsys.readouterr().out
    tpot_line = next(line for line in printed.splitlines() if line.startswith("TPOT ms"))
    assert tpot_line.split()[2:] == ["n/a"] * 5
    assert "prefix hit rate 0.000" in printed


def test_requests_detail_modes(tmp_path):
    """full / no-itl / none: the same summary and time series; no-itl empties only the ITL
    cells; none writes no requests.csv."""
    common = ("--instances", "3", "--num-requests", "80")
    runs = {d: run_cli(tmp_path / d, *common, "--requests-detail", d, cluster=FLEET_CLUSTER)
            for d in ("full", "no-itl", "none")}
    for name in ("timeseries.csv", "timeseries_fleet.csv"):
        assert len({(o / name).read_bytes() for o in runs.values()}) == 1, name
    summaries = {d: json.loads((o / "summary.json").read_text()) for d, o in runs.items()}
    for d, s in summaries.items():      # the run block records the option and the files written
        assert s.pop("run")["options"]["requests_detail"] == d
    assert len({json.dumps(s) for s in summaries.values()}) == 1
    full = pd.read_csv(runs["full"] / "requests.csv")
    no_itl = pd.read_csv(runs["no-itl"] / "requests.csv")
    assert list(no_itl.columns) == list(full.columns)
    assert no_itl.ITL.isna().all() and full.ITL.notna().all()
    pd.testing.assert_frame_equal(no_itl.drop(columns="ITL"), full.drop(columns="ITL"))
    assert sorted(p.name for p in runs["none"].iterdir()) == ["summary.json", "timeseries.csv",
                                                              "timeseries_fleet.csv"]
    with pytest.raises(InputError, match="requests-detail full or no-itl"):
        load_sim(str(runs["none"]))
    full_lines = (runs["full"] / "requests.csv").read_text().splitlines()
    cut = [line[:line.index(',"[')] + ",," + line[line.rindex("]\",") + 3:] for line in full_lines[1:]]
    assert (runs["no-itl"] / "requests.csv").read_text().splitlines()[1:] == cut


def test_requests_header_is_llmservingsims(shared_data, tmp_path):
    """The first columns are LLMServingSim's own output's, in order."""
    theirs = (shared_data / "vllm-runs" / "RTXPRO6000" / "Llama-3.1-8B" / "llmservingsim_sim.csv")
    with open(theirs) as fh:
        header = fh.readline().strip().split(",")
    assert header == LSS_COLUMNS
    out = run_cli(tmp_path / "o", "--num-requests", "5", cluster=EXAMPLE_CLUSTER)
    assert (out / "requests.csv").read_text().splitlines()[0].split(",")[:len(header)] == header


def test_simulate_takes_requests_detail():
    """The Python API: the same option, the fleet series as a table, no requests table with none."""
    import fleetsim
    res = fleetsim.simulate(FLEET_CLUSTER, EXAMPLE_WORKLOAD, instances=3, num_requests=30, requests_detail="none")
    assert res.names == ["summary.json", "timeseries.csv", "timeseries_fleet.csv"]
    with pytest.raises(LookupError, match="no requests.csv"):
        res.requests
    _check_grid(res.timeseries, res.timeseries_fleet, 3)
    no_itl = fleetsim.simulate(FLEET_CLUSTER, EXAMPLE_WORKLOAD, instances=3, num_requests=30, requests_detail="no-itl")
    assert len(no_itl.requests) == 30 and no_itl.text("timeseries.csv") == res.text("timeseries.csv")
    with pytest.raises(fleetsim.InputError, match="--requests-detail 'some': unknown; choose one of full, no-itl, none"):
        fleetsim.simulate(FLEET_CLUSTER, EXAMPLE_WORKLOAD, requests_detail="some")

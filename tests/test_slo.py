"""SLOs, goodput and load state (cluster/experiments/slo.py) on hand-made records, and in a run."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fleetsim.cluster.cli import main
from fleetsim.cluster.errors import InputError
from fleetsim.cluster.experiments.slo import format_slo, load_state, parse_slo, slo_block
from fleetsim.cluster.metrics import MetricsCollector
from fleetsim.cluster.records import RecordBatch
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD

MS = 1_000_000
S = 1_000_000_000


def _cols(arrival, scheduled, ttft, tpot, e2e, output):
    a = np.array(arrival, dtype=np.int64)
    e2e = np.array(e2e, dtype=np.int64)
    return {"arrival": a, "scheduled": np.array(scheduled, dtype=np.int64), "end": a + e2e,
            "ttft": np.array(ttft, dtype=np.int64), "tpot": np.array(tpot, dtype=np.int64), "e2e": e2e,
            "output": np.array(output, dtype=np.int64)}


FOUR = _cols(arrival=[0, 1 * S, 2 * S, 3 * S], scheduled=[0, 1 * S, 2 * S, 3 * S],
             ttft=[100 * MS, 300 * MS, 600 * MS, 200 * MS], tpot=[10 * MS, 60 * MS, 20 * MS, 0],
             e2e=[1 * S, 2 * S, 1 * S, 200 * MS], output=[10, 20, 30, 1])
SUMMARY = {"ttft_ms": {"mean": 300.0, "p50": 250.0, "p90": 510.0, "p95": 555.0, "p99": 591.0},
           "tpot_ms": {"mean": 30.0, "p50": 20.0, "p90": 52.0, "p95": 56.0, "p99": 59.2}}


def test_per_request_attainment_and_goodput_by_hand():
    """ttft <= 500 ms: r0 r1 r3; tpot <= 50 ms: r0 r2 and r3 (one output token, no TPOT): all = r0, r3.
    Span: first arrival 0 to last end 3.2 s; good output tokens 10 + 1."""
    b = slo_block(parse_slo("ttft_ms=500,tpot_ms=50"), FOUR, SUMMARY)
    assert b["attainment"] == {"ttft_ms": 0.75, "tpot_ms": 0.75, "all": 0.5}
    assert b["goodput"]["requests_per_s"] == pytest.approx(2 / 3.2)
    assert b["goodput"]["output_tokens_per_s"] == pytest.approx(11 / 3.2)
    assert b["per_request_holds"] is False          # 0.5 < 0.9
    assert b["holds"] is False
    b = slo_block(parse_slo("ttft_ms=500,tpot_ms=50,attainment=0.5"), FOUR, SUMMARY)
    assert b["per_request_holds"] is True and b["holds"] is True


def test_threshold_is_inclusive():
    b = slo_block(parse_slo("ttft_ms=300"), FOUR, SUMMARY)      # r1's TTFT is exactly 300 ms
    assert b["attainment"]["ttft_ms"] == 0.75


def test_aggregate_slos_compare_the_summary_statistics():
    b = slo_block(parse_slo("ttft_p99_ms=600,tpot_p99_ms=50"), FOUR, SUMMARY)
    assert b["aggregate"]["ttft_p99_ms"] == {"target": 600.0, "value": 591.0, "holds": True}
    assert b["aggregate"]["tpot_p99_ms"] == {"target": 50.0, "value": 59.2, "holds": False}
    assert b["holds"] is False
    # no per-request threshold: every request counts as good
    assert b["attainment"] == {"all": 1.0} and b["goodput"]["requests_per_s"] == pytest.approx(4 / 3.2)


def test_load_state_stable_when_served_on_arrival():
    a = np.arange(100, dtype=np.int64) * S
    st = load_state(a, a + 10 * MS)
    assert st == {"state": "stable", "unserved_at_last_arrival": 0, "queue_by_quarter": [0.0, 0.0, 0.0, 0.0]}


def test_load_state_overloaded_when_service_is_half_the_arrival_rate():
    """Arrivals every 1 s, one scheduled every 2 s: at the last arrival (99 s) 99 arrived before it,
    scheduled by then 0, 2, ..., 98 s = 50; 49 unserved > 5 % of 100."""
    a = np.arange(100, dtype=np.int64) * S
    st = load_state(a, 2 * a)
    assert st["state"] == "overloaded" and st["unserved_at_last_arrival"] == 49


def test_load_state_backlogged_when_the_queue_grows_slowly():
    """Served on arrival for the first half, then each request waits 2 % of the time since 500 s
    more: the queue rises through every quarter of the last half, 10 unserved at the end (< 5 %)."""
    i = np.arange(1000, dtype=np.int64)
    a = i * S
    sched = a + np.maximum(0, i - 500) * (S // 50)
    st = load_state(a, sched)
    assert st["state"] == "backlogged"
    assert st["unserved_at_last_arrival"] == 9           # r990..r998 (r989 scheduled at 998.78 s)
    q = st["queue_by_quarter"]
    assert all(x < y for x, y in zip(q, q[1:])) and q[-1] >= 1


def test_load_state_is_not_backlogged_by_noise_below_one_request():
    a = np.arange(1000, dtype=np.int64) * S
    sched = a + (np.arange(1000) % 7 == 0) * (S + 1)     # every 7th waits just over a second
    assert load_state(a, sched)["state"] == "stable"


@pytest.mark.parametrize("text, needle", [
    ("ttft_p98_ms=1", "unknown SLO 'ttft_p98_ms'"),
    ("ttft_p99_ms", "is not key=value"),
    ("ttft_p99_ms=fast", "'fast' is not a number"),
    ("ttft_ms=-5", "ttft_ms must be a positive number of ms"),
    ("attainment=1.5", "attainment must be a fraction in (0, 1]"),
    ("ttft_ms=nan", "ttft_ms must be a positive number of ms"),
    (",", "no SLO given"),
])
def test_parse_errors(text, needle):
    with pytest.raises(InputError) as exc:
        parse_slo(text)
    assert needle in str(exc.value) and str(exc.value).startswith("--slo: ")


def test_parse_and_format_round_trip():
    slo = parse_slo({"tpot_p99_ms": 100, "ttft_p99_ms": 2000, "ttft_ms": 500.5})
    assert format_slo(slo) == "tpot_p99_ms=100,ttft_ms=500.5,ttft_p99_ms=2000"
    assert parse_slo(format_slo(slo)) == slo


def test_run_slo_block_agrees_with_requests_csv(tmp_path):
    """The block's attainment, recomputed from requests.csv's own TTFT/TPOT columns."""
    out = tmp_path / "run"
    assert main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--out", str(out),
                 "--quiet", "--num-requests", "120", "--slo", "ttft_ms=150,tpot_ms=25,ttft_p99_ms=2000"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    block = summary["slo"]
    keys = list(summary)
    assert keys.index("slo") == keys.index("instances") + 1          # its own block, after the run's own
    rows = list(csv.DictReader((out / "requests.csv").read_text().splitlines()))
    ttft_ok = [int(r["TTFT"]) <= 150 * MS for r in rows]
    tpot_ok = [int(r["output"]) <= 1 or int(r["TPOT"]) <= 25 * MS for r in rows]
    assert block["attainment"]["ttft_ms"] == sum(ttft_ok) / len(rows)
    assert block["attainment"]["tpot_ms"] == sum(tpot_ok) / len(rows)
    good = [a and b for a, b in zip(ttft_ok, tpot_ok)]
    assert block["attainment"]["all"] == sum(good) / len(rows)
    assert 0 < sum(good) < len(rows)                    # the thresholds cut somewhere inside
    assert block["aggregate"]["ttft_p99_ms"]["value"] == summary["ttft_ms"]["p99"]
    span = summary["simulated_s"] - min(int(r["arrival"]) for r in rows) / 1e9
    assert block["goodput"]["requests_per_s"] == pytest.approx(sum(good) / span)


def test_yaml_slo_and_flag_override(tmp_path):
    cluster = tmp_path / "c.yaml"
    cluster.write_text(EXAMPLE_CLUSTER.read_text() + "\nslo: {ttft_p99_ms: 1}\n")
    base = ["run", "--cluster", str(cluster), "--workload", str(EXAMPLE_WORKLOAD), "--quiet", "--num-requests", "20"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    a = json.loads((tmp_path / "a" / "summary.json").read_text())["slo"]
    assert a["targets"] == {"ttft_p99_ms": 1.0} and a["holds"] is False
    assert main(base + ["--out", str(tmp_path / "b"), "--slo", "ttft_p99_ms=100000"]) == 0
    b = json.loads((tmp_path / "b" / "summary.json").read_text())["slo"]
    assert b["targets"] == {"ttft_p99_ms": 100000.0} and b["holds"] is True


def test_no_slo_no_block(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--out", str(out),
                 "--quiet", "--num-requests", "10"]) == 0
    assert "slo" not in json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("where, needle", [("flag", "--slo: unknown SLO 'latency_ms'"),
                                           ("yaml", "c.yaml: slo: unknown SLO 'latency_ms'")])
def test_cli_bad_slo_is_one_line_exit_2(tmp_path, capsys, where, needle):
    cluster = tmp_path / "c.yaml"
    cluster.write_text(EXAMPLE_CLUSTER.read_text() + ("\nslo: {latency_ms: 5}\n" if where == "yaml" else ""))
    extra = ["--slo", "latency_ms=5"] if where == "flag" else []
    code = main(["run", "--cluster", str(cluster), "--workload", str(EXAMPLE_WORKLOAD), "--out",
                 str(tmp_path / "o"), "--quiet", *extra])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()


def test_tracker_takes_the_columns_of_record_batches():
    """SloTracker reads the same fixed columns MetricsCollector aggregates."""
    from fleetsim.cluster.experiments.slo import SloTracker
    rows = [(0, 0, 20, 4, 0, 4340, 4340, 0, 1200, 1047, [1010, 1110, 1020], 0, 0, 0),
            (0, 1, 10, 2, 1500, 4340, 2840, 710, 1820, 1020, [1020], 0, 0, 2210)]
    batch = RecordBatch.from_rows(rows, {0: "m"})
    t = SloTracker(parse_slo("ttft_ms=0.0015"))
    t.add(batch.fixed)
    cols = t.columns()
    assert cols["scheduled"].tolist() == [0, 2210] and cols["ttft"].tolist() == [1200, 1820]
    mc = MetricsCollector()
    mc.add_batch(batch)
    b = t.summary(mc.summary())
    assert b["attainment"]["ttft_ms"] == 0.5

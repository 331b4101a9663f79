"""The fleet on the local backend: equals a lone engine, matches a sequential reference, sessions."""
import csv
import json

import pytest

from fleetsim.cluster.config import load_cluster_config
from fleetsim.cluster.fleet import load_cost_model
from fleetsim.cluster.metrics import request_row
from fleetsim.cluster.workloads import load_workload
from fleet_helpers import (EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, FLEET_CLUSTER, instance_of, outputs, run_cli,
                           write_session_workload)
from fleetsim.instance.engine import Engine


def test_one_instance_fleet_equals_lone_engine(tmp_path):
    out = run_cli(tmp_path / "fleet", "--num-requests", "120", cluster=EXAMPLE_CLUSTER)
    spec = load_cluster_config(str(EXAMPLE_CLUSTER)).instances[0]
    engine = Engine(load_cost_model(spec), spec.engine, 0)
    for r in list(load_workload(str(EXAMPLE_WORKLOAD), 120)):
        engine.add_request(r)
    engine.run_to_completion()
    expected = sorted(request_row(r)[:10] for r in engine.drain_finished())
    with open(out / "requests.csv", newline="") as fh:
        got = sorted(tuple(int(row[k]) for k in ("instance id", "request id", "input", "output", "arrival",
                                                  "end_time", "latency", "queuing_delay", "TTFT", "TPOT"))
                     for row in csv.DictReader(fh))
    assert got == [(e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8], e[9]) for e in expected]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_requests"] == 120
    assert summary["instances"][0]["finished"] == 120


def sequential_least_loaded(num_instances: int, n: int) -> dict[int, int]:
    """Reference for Δ = 0: advance every engine to each distinct arrival time, then route that
    time's arrivals one by one to the smallest 4·waiting + running, re-reading the engines."""
    spec = load_cluster_config(str(FLEET_CLUSTER)).instances[0]
    cm = load_cost_model(spec)
    engines = [Engine(cm, spec.engine, i) for i in range(num_instances)]
    reqs = list(load_workload(str(EXAMPLE_WORKLOAD), n))
    placed = {}
    i = 0
    while i < len(reqs):
        t = reqs[i].arrival_ns
        for e in engines:
            e.advance_until(t)
        while i < len(reqs) and reqs[i].arrival_ns == t:
            loads = [4 * e.load_tuple()[0] + e.load_tuple()[1] for e in engines]
            best = loads.index(min(loads))
            engines[best].add_request(reqs[i])
            placed[reqs[i].rid] = best
            i += 1
    return placed


def test_exact_least_loaded_matches_sequential_reference(tmp_path):
    out = run_cli(tmp_path / "x", "--instances", "6", "--router", "least_loaded", "--sync-interval-ms", "0",
                  "--num-requests", "200")
    assert instance_of(out) == sequential_least_loaded(6, 200)


def test_stale_signals_change_routing_but_not_totals(tmp_path):
    exact = run_cli(tmp_path / "a", "--instances", "6", "--sync-interval-ms", "0", "--num-requests", "200")
    stale = run_cli(tmp_path / "b", "--instances", "6", "--sync-interval-ms", "2000", "--num-requests", "200")
    assert instance_of(exact) != instance_of(stale)
    for o in (exact, stale):
        assert json.loads((o / "summary.json").read_text())["num_requests"] == 200


@pytest.mark.parametrize("sync_ms", ["0", "50"])
def test_session_followups_arrive_after_previous_turn_plus_think_time(tmp_path, sync_ms):
    wl = write_session_workload(tmp_path / "s.jsonl")
    out = run_cli(tmp_path / "o", "--instances", "3", "--router", "least_loaded", "--sync-interval-ms", sync_ms,
                  workload=wl)
    rows = {int(r["request id"]): r for r in csv.DictReader(open(out / "requests.csv", newline=""))}
    assert len(rows) == 40 + 12 * 3
    window = max(float(sync_ms) * 1e6, 1e6)
    for s in range(12):
        first = 40 + 3 * s
        for turn in range(2):
            prev, nxt = rows[first + turn], rows[first + turn + 1]
            think = 40_000_000 * (turn + 1)
            gap = int(nxt["arrival"]) - int(prev["end_time"])
            assert think <= gap <= think + window
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prefix_hit_rate"] > 0


def test_local_runs_are_byte_identical(tmp_path):
    a = run_cli(tmp_path / "a", "--instances", "8", "--router", "power_of_two", "--num-requests", "150")
    b = run_cli(tmp_path / "b", "--instances", "8", "--router", "power_of_two", "--num-requests", "150")
    assert outputs(a) == outputs(b)


def test_timeseries_totals_add_up(tmp_path):
    out = run_cli(tmp_path / "t", "--instances", "4", "--num-requests", "100")
    per = list(csv.DictReader(open(out / "timeseries.csv", newline="")))
    tot = {r["second"]: r for r in csv.DictReader(open(out / "timeseries_fleet.csv", newline=""))}
    assert len(per) == 4 * len(tot)
    for sec, t in tot.items():
        assert int(t["generation_tokens"]) == sum(int(r["generation_tokens"]) for r in per if r["second"] == sec)
    summary = json.loads((out / "summary.json").read_text())
    assert sum(int(r["generation_tokens"]) for r in per) == sum(i["output_tokens"] for i in summary["instances"])

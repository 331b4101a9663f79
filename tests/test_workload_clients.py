"""Benchmark clients: closed loop (--max-concurrency), re-timed arrivals (--request-rate,
--burstiness), warm-up; checked from requests.csv, by hand-computable identities."""
import csv
import json

import numpy as np
import pytest

from fleet_helpers import EXAMPLE_CLUSTER, outputs, run_cli
from fleetsim.cluster.cli import main

SYNTH = "synth:n=40,rate=200,prompt=300,output=24,seed=3"


def rows(out):
    with open(out / "requests.csv", newline="") as fh:
        return [{k: v for k, v in r.items()} for r in csv.DictReader(fh)]


def ints(rs, key):
    return np.array([int(r[key]) for r in rs], dtype=np.int64)


def original_arrivals():
    from fleetsim.cluster.workloads import load_workload
    return {r.rid: r.arrival_ns for r in load_workload(SYNTH)}


def test_one_client_is_back_to_back_and_e2e_sums_to_the_span(tmp_path):
    out = run_cli(tmp_path / "o", "--max-concurrency", "1", cluster=EXAMPLE_CLUSTER, workload=SYNTH)
    rs = sorted(rows(out), key=lambda r: int(r["arrival"]))
    arrival, end, e2e = ints(rs, "arrival"), ints(rs, "end_time"), ints(rs, "latency")
    assert len(rs) == 40
    # the first request is sent at its own arrival; each next one the instant the previous ends
    # (the workload's own arrivals, 5 ms apart, are all earlier than that)
    assert arrival[0] == original_arrivals()[int(rs[0]["request id"])]
    assert (arrival[1:] == end[:-1]).all()
    assert int(e2e.sum()) == int(end[-1] - arrival[0])
    # one request at a time: no queueing behind another one, identical requests take equal time
    assert (ints(rs, "queuing_delay") == 0).all() and len(set(e2e.tolist())) == 1


@pytest.mark.parametrize("n, instances, router", [(3, 1, "round_robin"), (5, 3, "least_loaded"),
                                                  (4, 2, "round_robin")])
def test_n_clients_never_have_more_than_n_in_flight(tmp_path, n, instances, router):
    out = run_cli(tmp_path / "o", "--max-concurrency", str(n), "--instances", str(instances), "--router", router,
                  cluster=EXAMPLE_CLUSTER, workload=SYNTH)
    rs = rows(out)
    arrival, end = ints(rs, "arrival"), ints(rs, "end_time")
    events = sorted([(a, 1) for a in arrival] + [(e, -1) for e in end], key=lambda x: (x[0], x[1]))
    level = np.cumsum([d for _, d in events])
    assert level.max() == n                     # the cap is reached (the workload comes faster) ...
    # ... and the k-th request sent (k >= n) leaves at max(its own arrival, the (k-n)-th finish)
    orig = original_arrivals()
    rids = ints(rs, "request id")
    sent = np.sort(np.array([orig[r] for r in rids]))       # clients take requests in arrival order
    by_sent = np.argsort(arrival, kind="stable")
    ends = np.sort(end)
    expected = np.maximum(sent[n:], ends[:len(rs) - n])
    assert (np.sort(arrival)[n:] == expected).all()
    assert (np.sort(arrival)[:n] == sent[:n]).all() and len(by_sent) == 40


def test_warmup_requests_are_simulated_but_not_reported(tmp_path):
    base = run_cli(tmp_path / "a", "--max-concurrency", "2", cluster=EXAMPLE_CLUSTER, workload=SYNTH)
    warm = run_cli(tmp_path / "b", "--max-concurrency", "2", "--warmup-requests", "6", cluster=EXAMPLE_CLUSTER,
                   workload=SYNTH)
    all_rows, kept = rows(base), rows(warm)
    first_sent = {r["request id"] for r in sorted(all_rows, key=lambda r: (int(r["arrival"]),
                                                                          int(r["request id"])))[:6]}
    assert len(kept) == 34 and not first_sent & {r["request id"] for r in kept}
    assert kept == [r for r in all_rows if r["request id"] not in first_sent]     # same simulation
    assert json.loads((warm / "summary.json").read_text())["num_requests"] == 34
    assert (warm / "timeseries.csv").read_bytes() == (base / "timeseries.csv").read_bytes()


def test_request_rate_retimes_arrivals(tmp_path):
    const = rows(run_cli(tmp_path / "c", "--request-rate", "8", "--burstiness", "inf", cluster=EXAMPLE_CLUSTER,
                         workload=SYNTH))
    assert sorted(ints(const, "arrival").tolist()) == [round((k + 1) * 0.125e9) for k in range(40)]
    everything = rows(run_cli(tmp_path / "i", "--request-rate", "inf", cluster=EXAMPLE_CLUSTER, workload=SYNTH))
    assert set(ints(everything, "arrival").tolist()) == {0}
    a = run_cli(tmp_path / "g1", "--request-rate", "8", "--burstiness", "0.5", cluster=EXAMPLE_CLUSTER,
                workload=SYNTH)
    b = run_cli(tmp_path / "g2", "--request-rate", "8", "--burstiness", "0.5", cluster=EXAMPLE_CLUSTER,
                workload=SYNTH)
    assert outputs(a) == outputs(b)
    arrivals = np.sort(ints(rows(a), "arrival"))
    assert arrivals[-1] == 5_000_000_000          # vLLM's rescaling: the last one at n / R
    c = run_cli(tmp_path / "g3", "--request-rate", "8", "--burstiness", "0.5", "--seed", "9",
                cluster=EXAMPLE_CLUSTER, workload=SYNTH)
    assert not (np.sort(ints(rows(c), "arrival")) == arrivals).all()


def test_gamma_retiming_has_the_asked_burstiness():
    from fleetsim.cluster.workloads import load_workload
    from fleetsim.cluster.workloads.clients import ClientSpec
    wl = load_workload("synth:n=20000,rate=5,prompt=8,output=2")
    for b in (0.25, 1.0, 4.0):
        gaps = np.diff(ClientSpec(request_rate=10.0, burstiness=b).retime(wl, seed=1).arrival) / 1e9
        assert abs(gaps.mean() - 0.1) < 0.004
        assert abs(gaps.std() / gaps.mean() - b ** -0.5) < 0.05     # Gamma(shape B): CV = 1/sqrt(B)


@pytest.mark.parametrize("flags, message", [
    (("--max-concurrency", "0"), "--max-concurrency must be an integer >= 1"),
    (("--request-rate", "-1"), "--request-rate must be > 0"),
    (("--request-rate", "nan"), "--request-rate must be > 0"),
    (("--request-rate", "3", "--burstiness", "0"), "--burstiness must be > 0"),
    (("--burstiness", "2"), "--burstiness needs --request-rate"),
    (("--warmup-requests", "-2"), "--warmup-requests must be an integer >= 0"),
    (("--warmup-requests", "40"), "--warmup-requests 40 leaves nothing to measure"),
])
def test_client_flag_errors_are_one_line(tmp_path, capsys, flags, message):
    code = main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", SYNTH, "--out", str(tmp_path / "o"),
                 "--quiet", *flags])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o" / "requests.csv").exists()


@pytest.mark.ray
@pytest.mark.parametrize("router", ["least_loaded", "round_robin"])
def test_closed_loop_is_byte_identical_on_ray(ray_session, tmp_path, router):
    common = ("--max-concurrency", "6", "--warmup-requests", "4", "--request-rate", "50", "--burstiness", "0.7",
              "--instances", "3", "--router", router)
    local = outputs(run_cli(tmp_path / "l", *common, cluster=EXAMPLE_CLUSTER, workload=SYNTH))
    ray_out = outputs(run_cli(tmp_path / "r", *common, "--backend", "ray", "--actors", "2",
                              cluster=EXAMPLE_CLUSTER, workload=SYNTH))
    assert ray_out == local


def test_clip_to_model_from_the_command_line(tmp_path, capsys):
    long = "synth:n=10,rate=50,prompt=uniform(300,700),output=100,seed=2"
    code = main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", long, "--out", str(tmp_path / "e"),
                 "--quiet", "--max-model-len", "512"])
    err = capsys.readouterr().err
    assert code == 2 and "exceed max_model_len 512" in err and len(err.splitlines()) == 1
    out = run_cli(tmp_path / "c", "--max-model-len", "512", "--clip-to-model", cluster=EXAMPLE_CLUSTER,
                  workload=long)
    from fleetsim.cluster.workloads import load_workload
    orig = {r.rid: (r.prompt_len, r.output_len) for r in load_workload(long)}
    for r in rows(out):
        p, o = orig[int(r["request id"])]
        clipped = (min(p, 511), min(o, 512 - min(p, 511)))
        assert (int(r["input"]), int(r["output"])) == clipped


def test_a_closed_loop_synthetic_run_reruns_byte_identically(tmp_path):
    first = run_cli(tmp_path / "a", "--max-concurrency", "3", "--warmup-requests", "2", "--request-rate", "30",
                    cluster=EXAMPLE_CLUSTER, workload=SYNTH)
    run = json.loads((first / "summary.json").read_text())["run"]
    assert run["workload"]["path"] == SYNTH and run["options"]["max_concurrency"] == 3
    assert main(["rerun", str(first / "summary.json"), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert outputs(first) == outputs(tmp_path / "b")

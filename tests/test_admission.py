"""Admission control at the router (cluster/admission.py, cluster/rejections.py): hand-computed
counts of what each stage admits, the rejected rows of requests.csv, summary.json's blocks,
closed-loop clients and sessions after a rejection, bad input, and the Ray backend."""
import csv
import json

import pytest

from fleet_helpers import EXAMPLE_CLUSTER, outputs, run_cli
from fleetsim.cluster.admission import StageSpec, TokenBucket, parse_admission
from fleetsim.cluster.cli import main
from fleetsim.cluster.errors import InputError
from fleetsim.cluster.invariants import InvariantViolation, RunChecker


def write_jsonl(path, arrivals, prompt=64, output=8):
    path.write_text("".join(json.dumps({"input_toks": prompt, "output_toks": output, "arrival_time_ns": a}) + "\n"
                            for a in arrivals))
    return path


def rows(out):
    with open(out / "requests.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def summary(out):
    return json.loads((out / "summary.json").read_text())


class Req:
    def __init__(self, arrival_ns):
        self.arrival_ns = arrival_ns


def test_token_bucket_admits_burst_plus_rate_times_t(tmp_path):
    # rate 10/s, burst 5, one request per ms at 0, 1, ..., 2000 ms: the 5 tokens of the full bucket
    # go to the first five (0-4 ms, while 0.04 of a token comes back), then one completes every
    # 100 ms (at 100, 200, ..., 2000 ms, each taken by the request arriving then):
    # b + r * T = 5 + 10 * 2 = 25 admitted over T = 2 s, 1976 rejected
    wl = write_jsonl(tmp_path / "w.jsonl", [i * 1_000_000 for i in range(2001)])
    out = run_cli(tmp_path / "o", "--admission", "token_bucket:rate=10,burst=5", cluster=EXAMPLE_CLUSTER,
                  workload=wl)
    s = summary(out)
    assert s["admission"] == {"stages": [{"policy": "token_bucket", "burst": 5, "rate": 10}], "arrived": 2001,
                              "admitted": 25, "rejected": 1976, "rejected_by_reason": {"token_bucket": 1976},
                              "session_turns_not_sent": 0}
    assert s["num_requests"] == 25
    admitted = sorted(int(r["arrival"]) for r in rows(out) if not r["rejected"])
    assert admitted == [k * 1_000_000 for k in range(5)] + [k * 100_000_000 for k in range(1, 21)]


def test_token_bucket_with_a_fractional_rate_is_exact():
    # 2.5 tokens/s = 5/2: a token every 400 ms; arrivals every 100 ms over [0, 1.9 s] with burst 2
    # admit 2 + floor(2.5 * 1.9) = 6: at 0, 100 ms (the burst), then 400, 800, 1200, 1600 ms
    bucket = TokenBucket(StageSpec("token_bucket", (("burst", 2), ("rate", 2.5))), [])
    admitted = []
    for k in range(20):
        req = Req(k * 100_000_000)
        if bucket.admits(req, None, None):
            bucket.take(req, None)
            admitted.append(k * 100)
    assert admitted == [0, 100, 400, 800, 1200, 1600]


@pytest.mark.parametrize("scope, admitted, instances", [("instance", 6, {"0"}), ("fleet", 4, {""})])
def test_queue_cap_rejects_exactly_the_excess(tmp_path, scope, admitted, instances):
    # 20 requests within 20 µs, all routed in the first 50 ms window, long before anything
    # finishes: a cap of 3 per instance on 2 instances admits 6 (least_loaded alternates; once both
    # hold 3 the tie goes to instance 0, the instance of every rejected row); a fleet cap of 4 admits 4
    # (rejected before any instance is chosen: empty instance and model)
    wl = write_jsonl(tmp_path / "w.jsonl", [i * 1000 for i in range(20)], prompt=512, output=64)
    cap = 3 if scope == "instance" else 4
    out = run_cli(tmp_path / "o", "--instances", "2", "--router", "least_loaded",
                  "--admission", f"queue_cap:max_queued={cap},scope={scope}", cluster=EXAMPLE_CLUSTER, workload=wl)
    s = summary(out)["admission"]
    assert (s["admitted"], s["rejected"], s["rejected_by_reason"]) == (admitted, 20 - admitted,
                                                                        {"queue_cap": 20 - admitted})
    rs = rows(out)
    rejected = [r for r in rs if r["rejected"]]
    assert len(rs) == 20 and len(rejected) == 20 - admitted
    assert {r["instance id"] for r in rejected} == instances
    assert {r["model"] for r in rejected} == ({""} if scope == "fleet" else {"meta-llama/Llama-3.1-8B"})
    # the first requests are the admitted ones; a rejected row has no latencies
    assert sorted(int(r["request id"]) for r in rs if not r["rejected"]) == list(range(admitted))
    empty = ("end_time", "latency", "queuing_delay", "TTFT", "TPOT", "ITL", "preemptions", "prefix_hit_tokens",
             "queued")
    assert all(r[k] == "" for r in rejected for k in empty)
    assert all(r["input"] == "512" and r["output"] == "64" for r in rejected)


def test_slo_shedding_on_a_hand_computed_case(tmp_path):
    # prefill at 40,960 tokens/s, bound 100 ms; a busy instance adds the step in flight, its full
    # budget of 2048 tokens = 50 ms. Prompts of 300 at t = 0, 1, 2, ... µs (one window): the k-th
    # finds 300 (k - 1) tokens ahead: 7.3 ms for the first (idle), then 300 k / 40960 s + 50 ms,
    # within 100 ms while 300 k <= 2048: six admitted (93.9 ms), the seventh on is not (101.3 ms).
    # Alone on an idle instance a prompt of 4096 takes exactly the bound (admitted), 4097 does not
    wl = write_jsonl(tmp_path / "w.jsonl", [i * 1000 for i in range(10)], prompt=300)
    out = run_cli(tmp_path / "o", "--admission", "slo:ttft_ms=100,prefill_tokens_per_s=40960",
                  cluster=EXAMPLE_CLUSTER, workload=wl)
    rs = rows(out)
    assert [r["rejected"] for r in sorted(rs, key=lambda r: int(r["request id"]))] == [""] * 6 + ["slo"] * 4
    assert {r["instance id"] for r in rs} == {"0"}
    for prompt, reason in ((4096, ""), (4097, "slo")):
        wl = write_jsonl(tmp_path / f"w{prompt}.jsonl", [0], prompt=prompt)
        out = run_cli(tmp_path / f"o{prompt}", "--admission", "slo:ttft_ms=100,prefill_tokens_per_s=40960",
                      cluster=EXAMPLE_CLUSTER, workload=wl)
        assert [r["rejected"] for r in rows(out)] == [reason]


def test_slo_shedding_prices_with_the_cost_model(tmp_path):
    # without prefill_tokens_per_s: the instance's full-budget step from its cost model
    # (cluster/instance_capacity.py); an idle instance admits exactly the prompts it prefills
    # within the bound at that rate
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.fleet import instance_models
    from fleetsim.cluster.instance_capacity import prefill_rate
    config = load_cluster_config(str(EXAMPLE_CLUSTER))
    spec = config.instances[0]
    tokens, ns = prefill_rate(instance_models(config)[0][spec], spec)
    assert tokens == 2048
    largest = 100_000_000 * tokens // ns          # the longest prompt within 100 ms
    for prompt, reason in ((largest, ""), (largest + 1, "slo")):
        wl = write_jsonl(tmp_path / f"w{prompt}.jsonl", [0], prompt=prompt)
        out = run_cli(tmp_path / f"o{prompt}", "--admission", "slo:ttft_ms=100", cluster=EXAMPLE_CLUSTER, workload=wl)
        assert [r["rejected"] for r in rows(out)] == [reason]


def test_attainment_and_goodput_count_rejections(tmp_path):
    # the 25 admitted requests of the bucket above all meet a 1000 s TTFT; the 1976 rejected count
    # as missing it: attainment 25 / 2001; goodput is the admitted requests over their span
    wl = write_jsonl(tmp_path / "w.jsonl", [i * 1_000_000 for i in range(2001)])
    out = run_cli(tmp_path / "o", "--admission", "token_bucket:rate=10,burst=5", "--slo", "ttft_ms=1000000",
                  cluster=EXAMPLE_CLUSTER, workload=wl)
    s = summary(out)
    slo = s["slo"]
    assert slo["rejected"] == 1976
    assert slo["attainment"] == {"ttft_ms": 25 / 2001, "all": 25 / 2001}
    assert slo["per_request_holds"] is False
    assert slo["goodput"]["requests_per_s"] == pytest.approx(s["throughput"]["requests_per_s"])


def test_closed_loop_clients_go_on_after_a_rejection(tmp_path):
    # one client, a bucket of one token refilled once per 1000 s: the first request is admitted;
    # its finish frees the client, whose next request is rejected at once, which frees it again at
    # the same ns: the other 19 are all sent, and rejected, at the first one's end
    wl = write_jsonl(tmp_path / "w.jsonl", [i * 1_000_000 for i in range(20)])
    out = run_cli(tmp_path / "o", "--max-concurrency", "1", "--admission", "token_bucket:rate=0.001,burst=1",
                  cluster=EXAMPLE_CLUSTER, workload=wl)
    rs = rows(out)
    done = [r for r in rs if not r["rejected"]]
    assert len(rs) == 20 and len(done) == 1
    assert {int(r["arrival"]) for r in rs if r["rejected"]} == {int(done[0]["end_time"])}


def test_a_rejected_turn_ends_its_session(tmp_path):
    # a session of 3 turns; its first takes the only token, the second (sent after the first ends
    # and its tool time) is rejected, the third builds on an answer that never came: not sent
    line = {"session_id": "s", "arrival_time_ns": 0,
            "sub_requests": [{"input_toks": 100, "output_toks": 5, "tool_duration_ns": 1_000_000}] * 3}
    wl = tmp_path / "s.jsonl"
    wl.write_text(json.dumps(line) + "\n")
    out = run_cli(tmp_path / "o", "--admission", "token_bucket:rate=0.001", cluster=EXAMPLE_CLUSTER, workload=wl)
    a = summary(out)["admission"]
    assert (a["arrived"], a["admitted"], a["rejected"], a["session_turns_not_sent"]) == (2, 1, 1, 1)
    assert sorted(r["rejected"] for r in rows(out)) == ["", "token_bucket"]


def test_no_admission_keeps_the_bytes_and_the_column_only_comes_with_it(tmp_path):
    wl = write_jsonl(tmp_path / "w.jsonl", [i * 20_000_000 for i in range(30)])
    plain = run_cli(tmp_path / "p", "--instances", "2", "--router", "least_loaded", cluster=EXAMPLE_CLUSTER,
                    workload=wl)
    none = run_cli(tmp_path / "n", "--instances", "2", "--router", "least_loaded", "--admission", "none",
                   cluster=EXAMPLE_CLUSTER, workload=wl)
    assert outputs(plain) == outputs(none)
    assert "rejected" not in (plain / "requests.csv").read_text().splitlines()[0]
    assert "admission" not in summary(plain)
    # a stage that rejects nothing: the same rows, each with an empty `rejected` cell
    lax = run_cli(tmp_path / "l", "--instances", "2", "--router", "least_loaded", "--admission",
                  "queue_cap:max_queued=1000", cluster=EXAMPLE_CLUSTER, workload=wl)
    assert (lax / "requests.csv").read_text().splitlines() == [
        line + ("," if i else ",rejected") for i, line in enumerate((plain / "requests.csv").read_text().splitlines())]


@pytest.mark.parametrize("cap, by_reason, admitted", [(10, {"token_bucket": 16, "queue_cap": 0}, 4),
                                                      (2, {"token_bucket": 0, "queue_cap": 18}, 2)])
def test_stages_from_the_cluster_yaml_in_order(tmp_path, cap, by_reason, admitted):
    # 20 requests in one window, a bucket of 4 tokens (1/s), then a fleet cap: a cap of 10 lets the
    # bucket's 4 through and the bucket rejects the other 16; a cap of 2 rejects from the third on,
    # and a request the cap rejects takes no token, so the bucket never runs dry
    wl = write_jsonl(tmp_path / "w.jsonl", [i * 1000 for i in range(20)])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE_CLUSTER.read_text() + "router:\n  policy: least_loaded\n  admission:\n"
                   "    - {policy: token_bucket, rate: 1, burst: 4}\n"
                   f"    - {{policy: queue_cap, max_queued: {cap}, scope: fleet}}\n")
    a = summary(run_cli(tmp_path / "o", cluster=cfg, workload=wl))["admission"]
    assert a["rejected_by_reason"] == by_reason and a["admitted"] == admitted


@pytest.mark.parametrize("flag, message", [
    ("leaky", "unknown admission policy 'leaky'"),
    ("token_bucket", "token_bucket needs rate"),
    ("token_bucket:rate=-1", "token_bucket.rate must be a positive number"),
    ("token_bucket:rate=5,burst=0.5", "token_bucket.burst must be an integer >= 1"),
    ("queue_cap:max_queued=3,scope=pod", "queue_cap.scope must be one of instance, fleet"),
    ("slo:ttft=5", "slo: unknown option(s) ttft"),
    ("slo:ttft_ms", "'ttft_ms' is not key=value"),
])
def test_bad_admission_is_one_line_and_exit_2(tmp_path, capsys, flag, message):
    wl = write_jsonl(tmp_path / "w.jsonl", [0])
    code = main(["run", "--cluster", str(EXAMPLE_CLUSTER), "--workload", str(wl), "--out", str(tmp_path / "o"),
                 "--quiet", "--admission", flag])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--admission" in err and message in err


@pytest.mark.parametrize("doc, message", [
    ([], "an empty list"),
    ({"rate": 5}, "a stage needs 'policy'"),
    (7, "a stage is a mapping"),
])
def test_bad_admission_in_the_yaml(doc, message):
    with pytest.raises(InputError, match="router.admission: " + message):
        parse_admission(doc)


def test_the_arrival_invariant():
    RunChecker.arrivals(5, 3, 2)
    with pytest.raises(InvariantViolation, match="took 5 arrivals but routed 3 and rejected 1"):
        RunChecker.arrivals(5, 3, 1)


def test_admission_is_byte_identical_on_ray(ray_session, tmp_path):
    wl = write_jsonl(tmp_path / "w.jsonl", [i * 2_000_000 for i in range(120)], prompt=400, output=40)
    common = ("--instances", "3", "--router", "round_robin", "--admission", "token_bucket:rate=300,burst=20",
              "--admission", "queue_cap:max_queued=4", "--admission", "slo:ttft_ms=150", "--slo", "ttft_ms=200")
    local = outputs(run_cli(tmp_path / "l", *common, cluster=EXAMPLE_CLUSTER, workload=wl))
    ray_out = outputs(run_cli(tmp_path / "r", *common, "--backend", "ray", "--actors", "2", cluster=EXAMPLE_CLUSTER,
                              workload=wl))
    assert ray_out == local
    assert json.loads(local[1])["admission"]["rejected"] > 0


def test_validate_refuses_a_run_with_rejections(tmp_path):
    from fleetsim.cluster.validate import load_sim
    wl = write_jsonl(tmp_path / "w.jsonl", [0, 1])
    out = run_cli(tmp_path / "o", "--admission", "token_bucket:rate=1", cluster=EXAMPLE_CLUSTER, workload=wl)
    with pytest.raises(InputError, match="a run with admission control"):
        load_sim(str(out))


def test_the_printed_summary_says_what_was_rejected(tmp_path):
    from fleetsim.cluster.report import summary_table
    wl = write_jsonl(tmp_path / "w.jsonl", [0, 1, 2])
    s = summary(run_cli(tmp_path / "o", "--admission", "token_bucket:rate=1,burst=2", cluster=EXAMPLE_CLUSTER,
                        workload=wl))
    assert summary_table({**s, "wall_s": 0.0}).splitlines()[-1] == \
        "admission: 3 arrived, 2 admitted, 1 rejected (token_bucket 1)"


def test_bad_admission_in_a_cluster_file_names_it(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE_CLUSTER.read_text() + "router: {admission: {policy: token_bucket, burst: 3}}\n")
    code = main(["run", "--cluster", str(cfg), "--workload", str(write_jsonl(tmp_path / "w.jsonl", [0])),
                 "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith(f"{cfg}: router.admission: token_bucket needs rate")
    assert not (tmp_path / "o").exists()


def test_the_shipped_admission_sweep_builds_its_ten_points():
    # (BENCHMARKS.md's table is its five 60 req/s points; running them takes a minute, so only
    # their cluster documents are built here, each with its admission stages)
    from fleet_helpers import REPO
    from fleetsim.cluster.config import config_from_doc
    from fleetsim.cluster.experiments.spec import load_spec
    points = load_spec(str(REPO / "configs" / "sweeps" / "admission.yaml")).points()
    stages = [tuple(s.name for s in config_from_doc(p.cluster, "point", str(REPO)).admission) for p in points]
    assert stages == [(), ("token_bucket",), ("slo",), ("slo",), ("queue_cap",)] * 2
    assert [p.rate_scale for p in points] == [2 / 3] * 5 + [1.0] * 5


def test_admission_in_front_of_an_autoscaled_fleet(tmp_path):
    # one instance to start, a second after a 2 s cold start: while the first is alone, SLO
    # shedding turns requests away; every arrival is a row, admitted + rejected = arrived
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE_CLUSTER.read_text() + "router: {policy: least_loaded}\nautoscaler: {min: 1, max: 2, "
                   "initial: 1, interval_s: 1, provisioning_delay_s: 2, policy: queue_length, target: 2}\n")
    out = run_cli(tmp_path / "o", "--admission", "slo:ttft_ms=300", cluster=cfg,
                  workload="synth:n=200,rate=40,prompt=normal(1024,256),output=64,seed=2")
    s = summary(out)
    a = s["admission"]
    assert a["arrived"] == 200 == a["admitted"] + a["rejected"] and a["rejected"] > 0
    assert a["admitted"] == s["num_requests"] == sum(i["routed"] for i in s["instances"])
    rs = rows(out)
    assert len(rs) == 200 and sum(1 for r in rs if r["rejected"] == "slo") == a["rejected"]
    assert "autoscaler" in s

"""PD disaggregation (cluster/pd.py, cluster/kv_transfer.py, instance/handoff.py)."""
from __future__ import annotations

import csv
import json

import pytest

from fleet_helpers import EXAMPLE_WORKLOAD, REPO, outputs, run_cli
from fleetsim.cluster.cli import main
from fleetsim.cluster.kv_transfer import KVLink

H100 = {"model": "meta-llama/Llama-3.1-8B", "hardware": "H100-SXM-80GB", "cost_model": "profile",
        "engine": {"max_num_seqs": 256, "max_num_batched_tokens": 8192}}
KV_PER_TOKEN = 2 * 32 * 8 * 128 * 2        # Llama-3.1-8B, bf16, one rank: K and V of 32 layers x 8 heads x 128


def write_cluster(path, instances, pd=None, **top):
    doc = {**H100, "instances": instances, **top}
    if pd is not None:
        doc["pd"] = pd
    path.write_text(json.dumps(doc))        # JSON is YAML
    return path


def write_workload(path, requests):
    path.write_text("".join(json.dumps({"input_toks": p, "output_toks": o, "arrival_time_ns": a}) + "\n"
                            for p, o, a in requests))
    return path


def rows(out):
    with open(out / "requests.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# ---- the link model -------------------------------------------------------------------------

def test_one_transfer_takes_bytes_over_bandwidth_plus_latency():
    link = KVLink("pair", gbps=2.0, latency_us=3.0)        # 2 bytes per ns
    link.start(7, 0, 1, 1000, 1001)
    assert link.settle(1000 + 500) == []                    # 500.5 ns of service needed
    assert link.settle(1000 + 501) == [(1000 + 501 + 3000, 7)]   # rounded up to the ns, plus latency
    assert link.in_flight == 0


def test_two_transfers_started_together_on_a_shared_link_each_get_half():
    shared = KVLink("shared", gbps=1.0, latency_us=0)       # 1 byte per ns
    shared.start(1, 0, 2, 0, 100)
    shared.start(2, 1, 3, 0, 100)
    assert shared.settle(10_000) == [(200, 1), (200, 2)]    # 50 % each: 200 bytes in 200 ns
    pair = KVLink("pair", gbps=1.0, latency_us=0)           # other pairs: a link each
    pair.start(1, 0, 2, 0, 100)
    pair.start(2, 1, 3, 0, 100)
    assert pair.settle(10_000) == [(100, 1), (100, 2)]
    same = KVLink("pair", gbps=1.0, latency_us=0)           # the same pair shares its link
    same.start(1, 0, 2, 0, 100)
    same.start(2, 0, 2, 0, 100)
    assert same.settle(10_000) == [(200, 1), (200, 2)]


def test_processor_sharing_timeline_by_hand():
    # A: 100 bytes from 0, B: 100 bytes from 50, at 1 byte/ns. 0-50: A alone (50 done); then
    # each at 0.5 byte/ns, A's last 50 take 100 ns -> 150; B has 50 done, alone -> 200.
    link = KVLink("shared", gbps=1.0, latency_us=1.0)
    link.start(1, 0, 1, 0, 100)
    link.start(2, 0, 1, 50, 100)
    assert link.settle(149) == []
    assert link.settle(150) == [(1150, 1)]
    assert link.settle(10_000) == [(1200, 2)]


def test_a_later_transfer_slows_one_in_flight():
    link = KVLink("shared", gbps=1.0, latency_us=0)
    link.start(1, 0, 1, 0, 100)
    assert link.settle(60) == []                           # not settled: it may still be slowed
    link.start(2, 0, 1, 60, 100)                            # A has 40 left, now at half speed
    assert link.settle(10_000) == [(140, 1), (200, 2)]


# ---- one request through 1P + 1D, by hand ---------------------------------------------------

def test_one_request_ttft_is_the_prefill_step_and_decode_starts_after_the_transfer(tmp_path):
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.fleet import load_cost_model
    from fleetsim.costmodel.batch import BatchShape
    cluster = write_cluster(tmp_path / "c.yaml", [{"count": 1, "role": "prefill"}, {"count": 1, "role": "decode"}],
                            pd={"link": {"mode": "pair", "gbps": 25, "latency_us": 20}})
    prompt, arrival = 1000, 3_000_000
    workload = write_workload(tmp_path / "w.jsonl", [(prompt, 4, arrival)])
    run_cli(tmp_path / "out", cluster=cluster, workload=workload)
    cm = load_cost_model(load_cluster_config(str(cluster)).instances[0])
    prefill_ns = cm.time_batch(BatchShape.of_pairs([(prompt, 0)])) + cm.cpu_overhead_ns(1)
    (row,) = rows(tmp_path / "out")
    f = arrival + prefill_ns                                # idle engine: the prompt runs at once
    assert int(row["queuing_delay"]) == 0
    assert int(row["TTFT"]) == prefill_ns
    assert int(row["instance id"]) == 0 and int(row["decode_instance"]) == 1
    assert int(row["transfer_start"]) == f
    nbytes = prompt * KV_PER_TOKEN
    te = f + -(-nbytes // 25) + 20_000                      # 25 bytes per ns, rounded up, + 20 us
    assert int(row["transfer_end"]) == te
    assert int(row["decode_scheduled"]) == te               # idle decode engine: admitted on arrival
    decode_ns = cm.time_batch(BatchShape.of_pairs([(1, prompt)])) + cm.cpu_overhead_ns(1)
    itl = json.loads(row["ITL"])
    assert itl[0] == te + decode_ns - f                     # the gap after the first token spans the transfer
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["pd"]["transfers"] == 1 and summary["pd"]["transfer_bytes"] == nbytes
    assert [i["role"] for i in summary["instances"]] == ["prefill", "decode"]
    assert summary["instances"][0]["finished"] == 1        # counted where the router sent it


def test_a_queued_prompt_waits_for_the_step_ahead_and_its_ttft_adds_the_wait(tmp_path):
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.fleet import load_cost_model
    from fleetsim.costmodel.batch import BatchShape
    cluster = write_cluster(tmp_path / "c.yaml", [{"count": 1, "role": "prefill"}, {"count": 1, "role": "decode"}])
    workload = write_workload(tmp_path / "w.jsonl", [(2000, 3, 0), (1000, 3, 1)])     # B arrives during A's step
    got = {int(r["request id"]): r for r in rows(run_cli(tmp_path / "out", "--no-async-scheduling",
                                                           cluster=cluster, workload=workload))}
    cm = load_cost_model(load_cluster_config(str(cluster)).instances[0])
    step_a = cm.time_batch(BatchShape.of_pairs([(2000, 0)])) + cm.cpu_overhead_ns(1)
    step_b = cm.time_batch(BatchShape.of_pairs([(1000, 0)])) + cm.cpu_overhead_ns(1)   # A has left: B alone
    assert int(got[0]["TTFT"]) == step_a
    assert int(got[1]["queuing_delay"]) == step_a - 1
    assert int(got[1]["TTFT"]) == step_a - 1 + step_b          # queueing + its prefill step
    assert int(got[1]["transfer_start"]) == step_a + step_b


# ---- back-pressure --------------------------------------------------------------------------

def test_transfers_queue_when_the_decode_instance_is_full_and_nothing_is_lost(tmp_path):
    decode_engine = {"num_gpu_blocks": 400, "max_num_seqs": 4}    # 6,400 tokens, 4 seats
    cluster = write_cluster(tmp_path / "c.yaml", [{"count": 2, "role": "prefill"},
                                                  {"count": 1, "role": "decode", "engine": decode_engine}],
                            router={"policy": "round_robin"})
    reqs = [(900 + 13 * i, 1 if i % 10 == 0 else 40 + i, 1_000_000 * i) for i in range(40)]
    workload = write_workload(tmp_path / "w.jsonl", reqs)
    out = run_cli(tmp_path / "out", "--check-invariants", "full", cluster=cluster, workload=workload)
    got = rows(out)
    assert sorted(int(r["request id"]) for r in got) == list(range(40))
    moved = [r for r in got if int(r["decode_instance"]) >= 0]
    assert len(moved) == 36                                 # one-token requests end on the prefill side
    assert all(int(r["output"]) == 1 for r in got if r not in moved)
    waits = [int(r["decode_scheduled"]) - int(r["transfer_end"]) for r in moved]
    assert min(waits) >= 0 and max(waits) > 50_000_000     # the transfer queue held some for > 50 ms
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_requests"] == 40 and summary["pd"]["transfers"] == 36
    series = list(csv.DictReader(open(out / "timeseries.csv", newline="")))
    assert max(int(s["waiting"]) for s in series if s["instance"] == "2") > 4    # the queue, seen
    # exact fast-forward on the decode side: the same bytes
    assert outputs(run_cli(tmp_path / "slow", "--no-fast-forward", cluster=cluster, workload=workload)) \
        == outputs(out)


def test_mixed_instances_keep_whole_requests_and_get_no_handoffs(tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", [{"count": 1, "role": "mixed"}, {"count": 1, "role": "prefill"},
                                                  {"count": 1, "role": "decode"}], router={"policy": "round_robin"})
    workload = write_workload(tmp_path / "w.jsonl", [(500, 10, 1_000_000 * i) for i in range(6)])
    got = rows(run_cli(tmp_path / "out", cluster=cluster, workload=workload))
    by_instance = {int(r["request id"]): (int(r["instance id"]), int(r["decode_instance"])) for r in got}
    assert by_instance == {i: (0, -1) if i % 2 == 0 else (1, 2) for i in range(6)}


def test_a_run_without_roles_keeps_its_columns(tmp_path):
    out = run_cli(tmp_path / "out", "--num-requests", "5", cluster=REPO / "configs" / "clusters" / "h100-llama8b.yaml")
    header = (out / "requests.csv").read_text().splitlines()[0]
    assert header.endswith("prefix_hit_tokens,queued")
    assert "pd" not in json.loads((out / "summary.json").read_text())


# ---- bad configs ----------------------------------------------------------------------------

@pytest.mark.parametrize("instances, pd, says", [
    ([{"count": 1, "role": "prefil"}, {"count": 1, "role": "decode"}], None, "'role' must be one of"),
    ([{"count": 2, "role": "prefill"}], None, "needs instances with role prefill and with role decode"),
    ([{"count": 1, "role": "prefill"}, {"count": 1, "role": "decode"}], {"link": {"mode": "bus"}},
     "pd.link.mode must be one of pair, shared"),
    ([{"count": 1, "role": "prefill"}, {"count": 1, "role": "decode"}], {"link": {"gbps": 0}},
     "pd.link.gbps must be a positive number"),
    ([{"count": 1, "role": "prefill"}, {"count": 1, "role": "decode"}], {"decode_policy": "fastest"},
     "pd.decode_policy 'fastest': unknown"),
    ([{"count": 1, "role": "prefill"}, {"count": 1, "role": "decode"}], {"wires": 1}, "pd: unknown key(s) wires"),
])
def test_bad_role_or_link_config_is_one_line_and_exit_2(tmp_path, capsys, instances, pd, says):
    cluster = write_cluster(tmp_path / "c.yaml", instances, pd=pd)
    code = main(["run", "--cluster", str(cluster), "--workload", str(EXAMPLE_WORKLOAD), "--out",
                 str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and says in err, err


# ---- Ray: the handoffs are messages between phases, the bytes the same ------------------------

@pytest.mark.ray
@pytest.mark.parametrize("mode", ["pair", "shared"])
def test_ray_matches_local_byte_for_byte(ray_session, tmp_path, mode):
    pytest.importorskip("ray")
    cluster = write_cluster(tmp_path / "c.yaml", [{"count": 2, "role": "prefill"}, {"count": 1, "role": "mixed"},
                                                  {"count": 2, "role": "decode"}],
                            pd={"link": {"mode": mode, "gbps": 5}}, router={"policy": "least_loaded"})
    common = ("--num-requests", "60")
    local = outputs(run_cli(tmp_path / "local", *common, cluster=cluster))
    for actors in ("1", "3"):
        got = outputs(run_cli(tmp_path / f"ray{actors}", *common, "--backend", "ray", "--actors", actors,
                              cluster=cluster))
        assert got == local, f"{mode}: ray with {actors} actors differs from local"


def test_admission_in_front_of_a_pd_fleet_rejects_at_the_door(tmp_path):
    # 10 requests 1 ms apart through a full bucket of 2 tokens refilled at 100/s (one per 10 ms):
    # requests 0 and 1 take them, the next whole token comes at 10 ms, after the last arrival
    cluster = write_cluster(tmp_path / "c.yaml", [{"count": 1, "role": "prefill"}, {"count": 1, "role": "decode"}],
                            router={"policy": "least_loaded",
                                    "admission": {"policy": "token_bucket", "rate": 100, "burst": 2}})
    workload = write_workload(tmp_path / "w.jsonl", [(300, 8, 1_000_000 * i) for i in range(10)])
    got = rows(run_cli(tmp_path / "out", cluster=cluster, workload=workload))
    header = (tmp_path / "out" / "requests.csv").read_text().splitlines()[0]
    assert header.endswith("queued,decode_instance,transfer_start,transfer_end,decode_scheduled,rejected")
    admitted = [r for r in got if not r["rejected"]]
    assert [int(r["request id"]) for r in admitted] == [0, 1]
    assert all(int(r["decode_instance"]) == 1 for r in admitted)
    rejected = [r for r in got if r["rejected"]]
    assert len(rejected) == 8 and all(r["rejected"] == "token_bucket" and r["decode_instance"] == "" for r in rejected)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["admission"]["rejected"] == 8 and summary["pd"]["transfers"] == 2


def test_an_autoscaler_with_pd_roles_is_refused_in_one_line(tmp_path, capsys):
    cluster = write_cluster(tmp_path / "c.yaml", [{"count": 1, "role": "prefill"}, {"count": 1, "role": "decode"}],
                            autoscaler={"min": 1, "max": 2, "interval_s": 10, "policy": "queue_length", "target": 4})
    code = main(["run", "--cluster", str(cluster), "--workload", str(EXAMPLE_WORKLOAD), "--out",
                 str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "an autoscaler with prefill/decode roles is not supported yet" in err, err


def test_an_idle_prefill_instance_takes_the_next_prompt_while_its_last_transfer_runs(tmp_path):
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.fleet import load_cost_model
    from fleetsim.costmodel.batch import BatchShape
    cluster = write_cluster(tmp_path / "c.yaml", [{"count": 1, "role": "prefill"}, {"count": 1, "role": "decode"}],
                            pd={"link": {"gbps": 0.1}})              # A's 131 MB take 1.3 s
    cm = load_cost_model(load_cluster_config(str(cluster)).instances[0])
    f = cm.time_batch(BatchShape.of_pairs([(1000, 0)])) + cm.cpu_overhead_ns(1)
    workload = write_workload(tmp_path / "w.jsonl", [(1000, 4, 0), (100, 2, f + 1000)])
    got = {int(r["request id"]): r for r in rows(run_cli(tmp_path / "out", cluster=cluster, workload=workload))}
    assert int(got[0]["transfer_end"]) > f + 1_000_000_000
    assert int(got[1]["queuing_delay"]) == 0                 # not held up by A's blocks
    assert int(got[1]["TTFT"]) == cm.time_batch(BatchShape.of_pairs([(100, 0)])) + cm.cpu_overhead_ns(1)


def test_a_prefill_instance_full_of_held_blocks_waits_for_the_transfers(tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", [{"count": 1, "role": "prefill", "engine": {"num_gpu_blocks": 130}},
                                                  {"count": 1, "role": "decode"}], pd={"link": {"gbps": 1}})
    workload = write_workload(tmp_path / "w.jsonl", [(1000, 3, 0)] * 4)      # 63 blocks each: two fit
    got = sorted(rows(run_cli(tmp_path / "out", "--check-invariants", "full", cluster=cluster, workload=workload)),
                 key=lambda r: int(r["request id"]))
    assert len(got) == 4
    first_end = min(int(r["transfer_end"]) for r in got[:2])
    assert all(int(r["arrival"]) + int(r["queuing_delay"]) >= first_end for r in got[2:])   # admitted after a release


def test_closed_loop_clients_run_through_a_pd_fleet(tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", [{"count": 2, "role": "prefill"}, {"count": 2, "role": "decode"}],
                            router={"policy": "least_loaded"})
    out = run_cli(tmp_path / "out", "--num-requests", "40", "--max-concurrency", "4", cluster=cluster)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_requests"] == 40 and summary["pd"]["transfers"] == 40

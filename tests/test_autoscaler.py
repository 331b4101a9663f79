"""Autoscaling (issue 13 item 3): a step change in load, drain, instance-hours and cost, bad configs.

The step scenario (`STEP`, least_loaded routing, queue_length target 2 per instance, evaluation
every 1 s, 0.5 s cold start, no stabilisation window, no tolerance; min 1, max 3, initial 1):

- r0 at 0.1 s (4 tokens) is done long before 1 s: the evaluations at 1 s and 2 s see 0 requests
  -> ceil(0 / 2) = 0, clamped to min 1 = in service: no change.
- r1..r5 arrive at 2.1..2.5 s (200 output tokens each, about 2.2 s): the evaluation at 3 s sees 5
  on instance 0 -> ceil(5 / 2) = 3: instances 1 and 2 provision from 3 s and are routable from
  3.5 s exactly: r6 at 3.5 s − 1 ns goes to instance 0 (the only routable one), r7 at 3.5 s (1500
  tokens) to instance 1, r8 at 3.6 s (50 tokens) to instance 2 (least loaded: ties to the lower
  index, and instance 1 holds r7).
- 4 s: r1..r6 + r7 + r8 = 8 -> ceil(8 / 2) = 4, clamped to max 3 = in service.
- 5 s: r1..r5 and r8 have finished, r6 (instance 0) and r7 (instance 1) have not (checked below
  from requests.csv) -> 2 -> ceil(2 / 2) = 1: the highest active indices drain: instance 2 holds
  nothing and stops at 5 s; instance 1 drains until r7 finishes; r9 at 12 s goes to instance 0.
- Paid: instance 0 the whole run [0, end of r7], instance 1 from 3 s to the end of r7, instance 2
  from 3 s to 5 s.
"""
from __future__ import annotations

import json

import pytest

from fleetsim.cluster.autoscaling.policies import AutoscalingPolicy
from fleetsim.cluster.autoscaling.scaler import Autoscaler
from fleetsim.cluster.autoscaling.spec import parse_autoscaler
from fleetsim.cluster.cli import main
from fleetsim.cluster.policies import POLICIES, make_policy
from fleetsim.cluster.snapshot import Snapshot
from fleet_helpers import REPO, outputs
from test_bad_inputs import _fails

S = 1_000_000_000
LLAMA = ("model: meta-llama/Llama-3.1-8B\nhardware: RTXPRO6000\ncost_model: profile\n"
         "engine: {max_num_seqs: 128, max_num_batched_tokens: 2048}\n")
STEP = LLAMA + ("router: {policy: least_loaded, sync_interval_ms: 50}\n"
                "autoscaler: {min: 1, max: 3, interval_s: 1, provisioning_delay_s: 0.5, stabilisation_window_s: 0,\n"
                "             policy: queue_length, target: 2, tolerance: 0}\n")
STEP_REQUESTS = ([(S // 10, 4)] + [(2 * S + (i + 1) * S // 10, 200) for i in range(5)]
                 + [(7 * S // 2 - 1, 200), (7 * S // 2, 1500), (36 * S // 10, 50), (12 * S, 4)])


def write_inputs(tmp_path, cluster_text: str = STEP, requests=STEP_REQUESTS):
    cluster, workload = tmp_path / "cluster.yaml", tmp_path / "work.jsonl"
    cluster.write_text(cluster_text)
    workload.write_text("".join(json.dumps({"input_toks": 64, "output_toks": out, "arrival_time_ns": t}) + "\n"
                                for t, out in requests))
    return cluster, workload


def run(tmp_path, name: str, *extra: str, cluster_text: str = STEP):
    cluster, workload = write_inputs(tmp_path, cluster_text)
    out = tmp_path / name
    assert main(["run", "--cluster", str(cluster), "--workload", str(workload), "--out", str(out), "--quiet",
                 *extra]) == 0
    return out


def rows(out) -> dict:
    """request id -> (instance, arrival, end)."""
    lines = (out / "requests.csv").read_text().splitlines()[1:]
    return {int(c[1]): (int(c[0]), int(c[5]), int(c[6])) for c in (line.split(",") for line in lines)}


@pytest.fixture(scope="module")
def step_run(tmp_path_factory):
    out = run(tmp_path_factory.mktemp("step"), "out")
    return out, rows(out), json.loads((out / "summary.json").read_text())["autoscaler"]


def test_instance_count_follows_a_step_in_load_with_the_provisioning_delay(step_run):
    out, req, auto = step_run
    ends = {rid: end for rid, (_, _, end) in req.items()}
    # the hand computation's premises: who is still in the system at each evaluation
    assert ends[0] < 1 * S and all(3 * S < ends[i] < 5 * S for i in (1, 2, 3, 4, 5)) and ends[8] < 5 * S
    assert ends[6] > 5 * S and ends[7] > 12 * S
    assert [req[i][0] for i in range(10)] == [0, 0, 0, 0, 0, 0, 0, 1, 2, 0]
    r7_end = ends[7]
    assert auto["timeline"] == [[0.0, 1, 0, 0], [3.0, 1, 2, 0], [3.5, 3, 0, 0], [5.0, 1, 0, 1], [r7_end / S, 1, 0, 0]]
    assert (auto["scale_ups"], auto["scale_downs"], auto["peak_instances"]) == (2, 2, 3)
    # the time series: levels after the transitions in each second (second s = [s-1, s))
    fleet = (out / "timeseries_fleet.csv").read_text().splitlines()
    assert fleet[0].endswith(",kv_pct,active,provisioning,draining")
    counts = {int(r.split(",")[0]): tuple(map(int, r.split(",")[-3:])) for r in fleet[1:]}
    assert [counts[s] for s in (3, 4, 5, 6, 7)] == [(1, 0, 0), (3, 0, 0), (3, 0, 0), (1, 0, 1), (1, 0, 1)]
    assert counts[max(counts)] == (1, 0, 0)      # instance 1 stopped in the last second (r7's end)


def test_a_draining_instance_gets_no_new_request_and_finishes_its_own(step_run):
    _, req, auto = step_run
    assert [rid for rid, (inst, arrival, _) in req.items() if inst == 1] == [7]     # nothing after 5 s
    assert req[9][0] == 0 and req[9][1] == 12 * S
    assert auto["paid_s"][1] == (req[7][2] - 3 * S) / S      # stopped when its own request finished


def test_instance_hours_by_hand(step_run):
    _, req, auto = step_run
    end = req[7][2]                       # the last completion: the run's end
    paid_ns = [end, end - 3 * S, 2 * S]
    assert auto["paid_s"] == [p / S for p in paid_ns]
    assert auto["instance_hours"] == sum(paid_ns) / 3_600_000_000_000
    assert auto["mean_instances"] == sum(paid_ns) / end
    assert auto["cost"] is None and auto["cost_per_request"] is None       # the shipped hardware has no price


def test_cost_from_the_hardware_price(tmp_path, monkeypatch):
    """With `cost_per_hour` in the hardware entry: cost = paid hours × price; per finished request."""
    from fleetsim.costmodel import catalogue
    resolve = catalogue.resolve_hardware_doc
    monkeypatch.setattr(catalogue, "resolve_hardware_doc", lambda name, *a: {**resolve(name, *a), "cost_per_hour": 2.5})
    out = run(tmp_path, "priced")
    auto = json.loads((out / "summary.json").read_text())["autoscaler"]
    end = rows(out)[7][2]
    hours = (end + end - 3 * S + 2 * S) / 3_600_000_000_000
    assert auto["cost"] == pytest.approx(2.5 * hours, rel=1e-12)
    assert auto["cost_per_request"] == pytest.approx(2.5 * hours / 10, rel=1e-12)


def test_without_an_autoscaler_the_fleet_files_keep_their_columns(tmp_path):
    out = run(tmp_path, "fixed", cluster_text=LLAMA + "instances: 3\nrouter: {policy: least_loaded}\n")
    assert (out / "timeseries_fleet.csv").read_text().splitlines()[0].endswith(",waiting,kv_pct")
    assert "autoscaler" not in json.loads((out / "summary.json").read_text())


def spec(**kw):
    doc = {"min": 1, "max": 3, "interval_s": 1, "provisioning_delay_s": 0.5, "stabilisation_window_s": 2.5,
           "policy": "queue_length", "target": 2, "tolerance": 0, **kw}
    return parse_autoscaler(doc, "test")


def loads(*in_system):
    """Snapshots where instance i has in_system[i] requests running."""
    return [Snapshot(i, 0, n) for i, n in enumerate(in_system)]


def test_scale_down_waits_for_the_stabilisation_window_and_cancels_provisioning_first():
    a = Autoscaler(spec(initial=2), [1.0, 1.0, 4.0])
    a.at(1 * S, loads(5, 1, 0))            # ceil(6/2) = 3 > 2: instance 2 provisions until 1.5 s
    assert a.state == ["active", "active", "provisioning"] and a.boundary() == 3 * S // 2
    a.at(3 * S // 2, loads(5, 1, 0))       # ready
    a.at(2 * S, loads(0, 0, 0))            # rec 1, but 3 was recommended within 2.5 s: stay
    a.at(3 * S, loads(0, 0, 0))            # window (0.5, 3]: still holds the 3 of 1 s
    assert a.routable() == [0, 1, 2]
    a.at(4 * S, loads(0, 3, 0))            # window (1.5, 4]: recs 1, 1, ceil(3/2) = 2 -> down to 2
    assert a.state == ["active", "active", "stopped"]
    a.at(5 * S, loads(9, 1, 0))            # ceil(10/2) = 5 -> max 3: instance 2 provisions again
    assert a.boundary() == 11 * S // 2
    a.at(11 * S // 2, loads(9, 1, 0))
    assert a.state[2] == "active"
    b = Autoscaler(spec(initial=1, stabilisation_window_s=0, provisioning_delay_s=1.5), [1.0, 1.0, 4.0])
    b.at(1 * S, loads(6, 0, 0))            # 3: instances 1 and 2 provision until 2.5 s
    b.at(2 * S, loads(2, 0, 0))            # ceil(2/2) = 1: both cancelled at 2 s, nothing drains
    assert b.state == ["active", "stopped", "stopped"] and b.ready_at == {} and b.drain_from == {}
    summary = b.summary(3 * S, 4)
    assert summary["paid_s"] == [3.0, 1.0, 1.0]
    assert summary["cost"] == pytest.approx((3.0 * 1.0 + 1.0 * 1.0 + 1.0 * 4.0) / 3600)
    assert summary["cost_per_request"] == pytest.approx(summary["cost"] / 4)


def test_tolerance_keeps_the_count():
    a = Autoscaler(spec(initial=2, tolerance=0.25, stabilisation_window_s=0), [None] * 3)
    a.at(1 * S, loads(3, 2, 0))            # 5 / (2·2) = 1.25: within 0.25 of 1 -> stay at 2
    assert a.routable() == [0, 1]
    a.at(2 * S, loads(3, 3, 0))            # 6 / 4 = 1.5 -> ceil(6/2) = 3
    assert a.state[2] == "provisioning"


class Always(AutoscalingPolicy):
    """A user policy: always `count` instances."""
    name = "always"
    OPTIONS = ("count",)

    def recommend(self, now_ns, active, in_service):
        return self.options["count"]


def test_user_policy_by_dotted_path(tmp_path):
    text = LLAMA + "router: {policy: round_robin}\nautoscaler: {max: 3, interval_s: 1, policy: 'test_autoscaler:Always', count: 2}\n"
    out = run(tmp_path, "user", cluster_text=text)
    auto = json.loads((out / "summary.json").read_text())["autoscaler"]
    assert auto["timeline"][:2] == [[0.0, 1, 0, 0], [1.0, 2, 0, 0]]     # no delay: routable at once
    assert {inst for inst, _, _ in rows(out).values()} == {0, 1}        # round robin over the routable ones


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policies_choose_only_routable_instances(name):
    import numpy as np
    from fleetsim.instance.request import Request
    policy = make_policy(name, 4)
    view = [Snapshot(1, 0, 0), Snapshot(3, 0, 0)]
    policy.sync(view)
    rng = np.random.Generator(np.random.PCG64(3))
    picks = {policy.choose(Request(i, 0, 32, 4), view, rng) for i in range(40)}
    assert picks <= {1, 3} and picks


BAD = {
    "no-max": ("autoscaler: {policy: queue_length, target: 2}", "autoscaler.max is required"),
    "min-above-max": ("autoscaler: {min: 3, max: 2, policy: queue_length, target: 2}", "min <= initial <= max"),
    "no-policy": ("autoscaler: {max: 2}", "autoscaler.policy is required"),
    "unknown-policy": ("autoscaler: {max: 2, policy: hpa}", "autoscaler.policy 'hpa': unknown"),
    "no-target": ("autoscaler: {max: 2, policy: queue_length}", "target (policy queue_length) must be a number > 0"),
    "utilisation-above-1": ("autoscaler: {max: 2, policy: target_utilisation, target: 80}", "at most 1"),
    "unknown-key": ("autoscaler: {max: 2, policy: queue_length, target: 2, cooldown: 3}", "unknown key(s) cooldown"),
    "zero-interval": ("autoscaler: {max: 2, policy: queue_length, target: 2, interval_s: 0}", "autoscaler.interval_s"),
    "negative-delay": ("autoscaler: {max: 2, policy: queue_length, target: 2, provisioning_delay_s: -1}",
                       "autoscaler.provisioning_delay_s"),
    "instances-not-max": ("instances: 2\nautoscaler: {max: 3, policy: queue_length, target: 2}",
                          "instances counts 2 but autoscaler.max is 3"),
    "not-a-mapping": ("autoscaler: 3", "'autoscaler' must be a mapping"),
}
MOE_GROUP = ("model: Qwen/Qwen3-30B-A3B\nhardware: H100-SXM-80GB\ncost_model: roofline\nep: 2\ndp_group: g\n"
             "autoscaler: {max: 2, policy: queue_length, target: 2}\n")


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_autoscaler_config_is_one_line_exit_2(case, capsys, tmp_path):
    text, expected = BAD[case]
    line, _ = _fails(capsys, tmp_path, LLAMA + text + "\n", '{"input_toks": 8, "output_toks": 2, "arrival_time_ns": 0}\n', [])
    assert expected in line, line


def test_a_lockstep_dp_group_is_refused(capsys, tmp_path):
    line, _ = _fails(capsys, tmp_path, MOE_GROUP, '{"input_toks": 8, "output_toks": 2, "arrival_time_ns": 0}\n', [])
    assert "step in lock-step" in line and "autoscaler" in line


def test_instances_flag_is_refused_with_an_autoscaler(capsys, tmp_path):
    line, _ = _fails(capsys, tmp_path, STEP, '{"input_toks": 8, "output_toks": 2, "arrival_time_ns": 0}\n',
                     ["--instances", "2"])
    assert "--instances" in line and "autoscaler.max" in line


@pytest.mark.ray
def test_ray_matches_local(ray_session, tmp_path, step_run):
    """The autoscaler travels with the router into the router actor: the same bytes."""
    got = outputs(run(tmp_path, "ray", "--backend", "ray", "--actors", "2"))
    assert got == outputs(step_run[0])


AZURE_CONV = REPO.parent / "shared" / "data" / "traces" / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"


def test_the_azure_conversation_example_runs(tmp_path):
    """The shipped example on the trace's first 120 s, compressed 20x (6 s simulated). The fleet
    starts with 6 instances; at the first evaluation (0.75 s) the trace is just starting, so far
    fewer than 4 · 64 requests are in the system: the recommendation is below min, the count falls
    to min 4 and instances 5 and 4 drain (highest first), taking nothing after 0.75 s."""
    if not AZURE_CONV.is_file():
        pytest.skip("the Azure LLM 2023 trace (../shared/data/traces) is not present")
    out = tmp_path / "azure"
    assert main(["run", "--cluster", str(REPO / "configs" / "clusters" / "h100-llama8b-autoscaled.yaml"),
                 "--workload", str(AZURE_CONV), "--time-scale", "0.05", "--duration", "120", "--out", str(out),
                 "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    auto, span = summary["autoscaler"], summary["simulated_s"]
    assert auto["timeline"][:2] == [[0.0, 6, 0, 0], [0.75, 4, 0, 2]]
    assert all(4 <= active + prov <= 12 for _, active, prov, _ in auto["timeline"])
    assert auto["paid_s"][:4] == [span] * 4 and auto["paid_s"][6:] == [0.0] * 6
    assert all(0.75 <= auto["paid_s"][i] < span for i in (4, 5))
    late = [arrival for inst, arrival, _ in rows(out).values() if inst in (4, 5) and arrival >= 3 * S // 4]
    assert late == []
    assert auto["instance_hours"] == pytest.approx(sum(auto["paid_s"]) / 3600, rel=1e-12)


def test_the_printed_summary_has_an_autoscaler_line(tmp_path, capsys):
    cluster, workload = write_inputs(tmp_path)
    capsys.readouterr()
    assert main(["run", "--cluster", str(cluster), "--workload", str(workload), "--out", str(tmp_path / "o")]) == 0
    auto = json.loads((tmp_path / "o" / "summary.json").read_text())["autoscaler"]
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("autoscaler:")]
    assert line == [f"autoscaler: {auto['instance_hours']:.4f} instance-hours, mean {auto['mean_instances']:.2f} "
                    f"instances, peak 3, 2 up / 2 down"]


def test_plots_draw_the_instance_counts(tmp_path):
    pytest.importorskip("matplotlib")
    out = run(tmp_path, "plots", "--plots")
    assert (out / "autoscaler.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

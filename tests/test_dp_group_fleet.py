"""A two-member DP+EP group of a hand-built MoE bundle run end to end from an LLMServingSim-style
cluster JSON (and the same group from fleetsim YAML); group validation errors."""
import csv

import pytest

from fleetsim.cluster.config import load_cluster_config
from fleetsim.cluster.fleet import load_cost_model
from fleetsim.cluster.workloads import load_workload
from fleetsim.costmodel.collectives import AstraSimNetwork
from fleetsim.instance.dp_group import DPGroup
from fleetsim.instance.engine import Engine
from fleet_helpers import outputs
from moe_bundle import HARDWARE, MODEL, cluster_json, run, write_moe_bundle, write_workload

TERMS = {"embedding", "layernorm", "qkv_proj", "rotary_emb", "o_proj", "attention", "moe_experts", "ep_dispatch",
         "ep_combine", "final_layernorm", "lm_head", "sampler"}


@pytest.fixture()
def setup(tmp_path):
    write_moe_bundle(tmp_path)
    return tmp_path, write_workload(tmp_path / "wl.jsonl")


def requests_csv(out) -> dict:
    """{request id: (instance, end, TTFT)} of a run's requests.csv."""
    with open(out / "requests.csv", newline="") as fh:
        return {int(r["request id"]): (int(r["instance id"]), int(r["end_time"]), int(r["TTFT"]))
                for r in csv.DictReader(fh)}


def by_hand(tmp_path, cluster, workload):
    """The run of a two-member group by hand: the config's cost models, one DPGroup recording its
    steps, round-robin routing. Returns (cost models, group, {request id: (instance, end, TTFT)})."""
    cfg = load_cluster_config(str(cluster))
    perf, models = str(tmp_path / "perf"), str(tmp_path / "models")
    cms = [load_cost_model(s, perf, models) for s in cfg.instances]
    engines = [Engine(cm, s.engine, i) for i, (cm, s) in enumerate(zip(cms, cfg.instances))]
    group = DPGroup(engines, record_steps=True)
    for i, req in enumerate(load_workload(str(workload), fmt="llmservingsim")):
        engines[i % 2].add_request(req)
    group.run_to_completion()
    done = {r.rid: (r.instance, r.last_token_ns, r.first_token_ns - r.arrival_ns)
            for e in engines for r in e.drain_finished()}
    return cms, group, done


def check_steps(cms, group) -> None:
    """Every step's breakdown shows every term and sums to the member's price; dummies occur."""
    dummies = 0
    for step in group.steps_log:
        assert step.group_tokens == max(m.batch.tokens for m in step.members)
        assert step.end - step.start == max(m.gpu_ns + m.overhead_ns for m in step.members)
        for m, cm in zip(step.members, cms):
            parts = cm.group_breakdown(m.batch, step.group_tokens)
            assert set(parts) == TERMS and sum(parts.values()) == m.gpu_ns
            assert parts["ep_dispatch"] > 0 and parts["ep_combine"] > 0
            assert (parts["attention"] == 0) == m.dummy
            dummies += m.dummy
    assert dummies > 0 and len(group.steps_log) < sum(e.steps for e in group.members)


def test_group_from_llmservingsim_json_end_to_end(setup):
    tmp_path, workload = setup
    code, out = run(tmp_path, "json", cluster_json(), workload)
    assert code == 0
    got = requests_csv(out)
    assert len(got) == 14
    cms, group, expected = by_hand(tmp_path, tmp_path / "json.json", workload)
    assert [cm.ep for cm in cms] == [2, 2]
    assert cms[0].state.network == AstraSimNetwork(16.0, 20000.0, 1597.0)
    assert got == expected
    check_steps(cms, group)


YAML = """model: test/tiny-moe
hardware: H100-SXM-80GB
memory_gib: 1
ep: 2
dp_group: A
instances: 2
engine: {max_num_seqs: 128, max_num_batched_tokens: 2048, gpu_memory_utilization: 0.9}
"""


def test_fleetsim_yaml_group_has_the_same_semantics(setup):
    tmp_path, workload = setup
    code, from_yaml = run(tmp_path, "yaml", YAML, workload, suffix=".yaml")
    assert code == 0
    cms, group, expected = by_hand(tmp_path, tmp_path / "yaml.yaml", workload)
    assert requests_csv(from_yaml) == expected
    check_steps(cms, group)          # collectives over the H100 entry's NCCL model
    # without the group the members step independently: other times
    code, apart = run(tmp_path, "apart", YAML.replace("dp_group: A\n", ""), workload, suffix=".yaml")
    assert code == 0 and requests_csv(apart) != expected


@pytest.mark.parametrize("doc, message", [
    (cluster_json(ep=1), "dp_group 'A': ep 1 over 2 members of tp 1: ep must be a multiple of the member count"),
    (cluster_json(ep=4), r"at most tp EP ranks per member \(allowed: 2\)"),
    (cluster_json(extra=[{"model_name": MODEL, "hardware": HARDWARE, "tp_size": 1, "ep_size": 4, "dp_group": "A",
                          "npu_mem": {"mem_size": 1, "mem_bw": 1597}}]), r"instances 0 and 2 differ in ep \(2 vs 4\)"),
])
def test_bad_groups_are_one_clear_error(setup, capsys, doc, message):
    tmp_path, workload = setup
    code, out = run(tmp_path, "bad", doc, workload)
    err = capsys.readouterr().err
    assert code == 2 and "bad.json: dp_group 'A'" in err
    assert __import__("re").search(message, err), err
    assert not out.exists()


def test_dense_model_dp_group_is_plain_data_parallelism(tmp_path):
    from fleet_helpers import FLEET_CLUSTER, run_cli
    text = FLEET_CLUSTER.read_text().replace("instances: 32", "instances: 4")
    plain, grouped = tmp_path / "plain.yaml", tmp_path / "grouped.yaml"
    plain.write_text(text)
    grouped.write_text(text + "dp_group: A\n")
    assert load_cluster_config(str(grouped)).instances[0].dp_group == "A"
    a = outputs(run_cli(tmp_path / "a", "--num-requests", "40", cluster=plain))
    assert outputs(run_cli(tmp_path / "b", "--num-requests", "40", cluster=grouped)) == a

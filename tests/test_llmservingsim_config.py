"""LLMServingSim cluster JSON read in full: every field, every refusal, and a TP 2 run end to end."""
from __future__ import annotations

import copy
import csv
import json

import pytest

from fleetsim.cluster.cli import main
from fleetsim.cluster.config import load_cluster_config
from fleetsim.cluster.errors import InputError
from fleetsim.cluster.fleet import load_cost_model
from fleetsim.costmodel.collectives import AstraSimNetwork

from conftest import CLUSTER_JSON, PERF_ROOT, WORKLOAD_300

INSTANCE = {"model_name": "meta-llama/Llama-3.1-8B", "hardware": "RTXPRO6000",
            "npu_mem": {"mem_size": 96, "mem_bw": 1597, "mem_latency": 0, "mem_util": 0.9},
            "num_npus": 2, "tp_size": 2, "pp_size": 1, "pd_type": None}
TP2 = {"num_nodes": 1, "link_bw": 16, "link_latency": 20000,
       "nodes": [{"num_instances": 1, "cpu_mem": {"mem_size": 512, "mem_bw": 256, "mem_latency": 0},
                  "instances": [INSTANCE]}]}


def write(tmp_path, doc, name="cluster.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def edited(**changes):
    """TP2 with instance fields changed (None removes the field)."""
    doc = copy.deepcopy(TP2)
    inst = doc["nodes"][0]["instances"][0]
    for key, value in changes.items():
        if value is None:
            inst.pop(key, None)
        else:
            inst[key] = value
    return doc


def test_tp2_instance_gets_llmservingsim_network(tmp_path):
    cfg = load_cluster_config(write(tmp_path, TP2))
    (spec,) = cfg.instances
    # no ep_size: LLMServingSim's default, resolved with the model (tp for MoE, 1 for this dense one)
    assert (spec.tp, spec.pp, spec.ep, spec.memory_gib, spec.dp_group) == (2, 1, None, 96, None)
    assert spec.engine.max_num_seqs == 128 and spec.engine.max_num_batched_tokens == 2048
    assert spec.engine.gpu_memory_utilization == 0.9
    assert spec.network == AstraSimNetwork(16.0, 20000.0, 1597.0)


@pytest.mark.parametrize("doc, message", [
    ({**TP2, "num_nodes": 2}, "num_nodes is 2 but 'nodes' lists 1"),
    ({**TP2, "extra": 1}, "unknown key(s) extra"),
    ({**TP2, "link_bw": None}, "'link_bw' is required for tp_size > 1"),
    ({**TP2, "link_latency": -1}, "'link_latency' must be a number >= 0"),
    ({k: v for k, v in TP2.items() if k != "link_latency"}, "'link_latency' is required"),
    ({**TP2, "nodes": [{**TP2["nodes"][0], "num_instances": 2}]}, "num_instances is 2 but 'instances' lists 1"),
    ({**TP2, "nodes": [{**TP2["nodes"][0], "gpus": 2}]}, "nodes[0]: unknown key(s) gpus"),
    (edited(pd_type="prefill"), "needs instances with role prefill and with role decode"),
    (edited(pd_type="both"), "pd_type 'both': choose prefill, decode, or null"),
    (edited(num_npus=4), "num_npus 4 does not match tp_size·pp_size = 2"),
    (edited(tp_size=0), "'tp_size' must be a positive integer"),
    (edited(npu_num=2), "unknown key(s) npu_num"),
    (edited(placement={"default": {"weights": "cpu"}}), "placement"),
    (edited(npu_mem={"mem_size": 96, "mem_util": 0.9}), "'mem_bw' is required for tp_size > 1"),
    (edited(npu_mem={"mem_size": 96, "mem_bw": 1597, "bw": 1}), "npu_mem: unknown key(s) bw"),
])
def test_bad_cluster_json_is_one_clear_input_error(tmp_path, doc, message):
    path = write(tmp_path, doc)
    with pytest.raises(InputError) as err:
        load_cluster_config(path)
    assert message in str(err.value) and path in str(err.value)


def test_pp_and_ep_sizes_are_read(tmp_path):
    cfg = load_cluster_config(write(tmp_path, edited(pp_size=2, num_npus=4, ep_size=2, dp_group="A")))
    assert (cfg.instances[0].pp, cfg.instances[0].ep, cfg.instances[0].dp_group) == (2, 2, "A")


def test_shipped_tp1_cluster_json_is_accepted(shared_data):
    (spec,) = load_cluster_config(str(CLUSTER_JSON)).instances
    assert spec.tp == 1 and spec.network == AstraSimNetwork(16.0, 20000.0, 1597.0)


def test_tp2_breakdown_shows_every_astra_term(shared_data, tmp_path):
    (spec,) = load_cluster_config(write(tmp_path, TP2)).instances
    cm = load_cost_model(spec, perf_root=str(PERF_ROOT))
    bd = cm.breakdown([(1, 1000)])
    # one decode token: S = 4096·2 B, n = 2 (tests/test_collectives.py): 40 000 + 477 + 8 + 30 ns per
    # all-reduce, two all-reduces per layer, 32 layers
    assert bd["allreduce.link_latency"] == 32 * 2 * 40_000
    assert bd["allreduce.link_transfer"] == 32 * 2 * 477
    assert bd["allreduce.reduction"] == 32 * 2 * 8
    assert bd["allreduce.fixed"] == 32 * 2 * 30
    assert sum(bd.values()) == cm.iteration_time_ns([(1, 1000)])
    # the pipeline link is LLMServingSim's too
    assert cm.hardware.interconnect_latency_us == 20.0


def test_tp2_run_end_to_end(shared_data, tmp_path):
    out = tmp_path / "out"
    code = main(["run", "--cluster", write(tmp_path, TP2), "--workload", str(WORKLOAD_300), "--out", str(out),
                 "--perf-root", str(PERF_ROOT), "--num-requests", "40", "--quiet"])
    assert code == 0
    rows = list(csv.DictReader((out / "requests.csv").open()))
    assert len(rows) == 40
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_requests"] == 40 and summary["tpot_ms"]["mean"] > 0


def test_pd_type_maps_onto_pd_roles(tmp_path):
    node = TP2["nodes"][0]
    inst = node["instances"][0]
    doc = {**TP2, "nodes": [{**node, "num_instances": 3,
                             "instances": [{**inst, "pd_type": "prefill"}, {**inst, "pd_type": "decode"},
                                           {**inst, "pd_type": None}]}]}
    cfg = load_cluster_config(write(tmp_path, doc))
    assert cfg.pd.roles == ("prefill", "decode", "mixed")
    assert load_cluster_config(write(tmp_path, TP2)).pd is None

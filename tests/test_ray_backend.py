"""The Ray backend: byte-identical to local for every policy and any packing; shared, parse-once state."""
import os

import pytest

from fleet_helpers import outputs, run_cli, write_session_workload

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

POLICIES = ["round_robin", "random", "least_loaded", "least_outstanding_tokens", "least_kv", "power_of_two",
            "prefix_aware", "session_affinity", "weighted"]




@pytest.fixture(scope="module")
def session_workload(tmp_path_factory):
    return write_session_workload(tmp_path_factory.mktemp("wl") / "sessions.jsonl")


@pytest.mark.parametrize("policy", POLICIES)
def test_ray_matches_local_for_every_packing(ray_session, tmp_path, policy):
    common = ("--instances", "32", "--router", policy, "--num-requests", "60")
    local = outputs(run_cli(tmp_path / "local", *common))
    assert local == outputs(run_cli(tmp_path / "local2", *common))
    for actors in ("1", "2", "4"):
        got = outputs(run_cli(tmp_path / f"ray{actors}", *common, "--backend", "ray", "--actors", actors))
        assert got == local, f"{policy}: ray with {actors} actors differs from local"


def test_ray_matches_local_with_sessions_and_instances_per_actor(ray_session, tmp_path, session_workload):
    common = ("--instances", "5", "--router", "least_loaded", "--sync-interval-ms", "20")
    local = outputs(run_cli(tmp_path / "l", *common, workload=session_workload))
    got = outputs(run_cli(tmp_path / "r", *common, "--backend", "ray", "--instances-per-actor", "2",
                          workload=session_workload))
    assert got == local


@pytest.mark.parametrize("detail", ["no-itl", "none"])
def test_ray_matches_local_for_every_requests_detail(ray_session, tmp_path, detail):
    common = ("--instances", "6", "--router", "least_kv", "--num-requests", "60", "--requests-detail", detail)
    local = outputs(run_cli(tmp_path / "l", *common))
    assert (local[0] is None) == (detail == "none") and None not in local[1:]
    assert outputs(run_cli(tmp_path / "r", *common, "--backend", "ray", "--actors", "2")) == local


def test_actors_share_one_parsed_copy_and_open_no_files(ray_session, tmp_path):
    from fleetsim.cluster.backends.ray_backend import RayBackend, share_cost_models
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.fleet import load_cost_model
    from fleetsim.costmodel.files import READS
    from fleet_helpers import FLEET_CLUSTER

    cfg = load_cluster_config(str(FLEET_CLUSTER))
    spec = cfg.instances[0]
    cm = load_cost_model(spec)
    backend = RayBackend(cfg.instances[:6], share_cost_models(ray, cfg.instances[:6], {spec: cm}), actors=3)
    try:
        pids = backend.actor_pids()
        assert len(set(pids)) == 3 and os.getpid() not in pids
        assert len(backend.snapshots()) == 6
        opened = backend.files_opened()
        assert len(opened) == 3
        for files in opened:
            bad = [f for f in files if f.endswith((".csv", ".json", ".yaml")) and "configs" in f]
            assert bad == [], f"an actor opened config/table files: {bad}"
        # the driver parsed each file exactly once
        assert READS and all(v == 1 for v in READS.values())
    finally:
        backend.close()


def test_ray_matches_local_with_pipeline_parallel_instances(ray_session, tmp_path):
    from fleet_helpers import REPO
    cluster = REPO / "configs" / "clusters" / "h100-llama70b-tp2-pp2.yaml"
    common = ("--instances", "3", "--router", "least_outstanding_tokens", "--num-requests", "90")
    local = outputs(run_cli(tmp_path / "l", *common, cluster=cluster))
    assert outputs(run_cli(tmp_path / "r", *common, "--backend", "ray", "--actors", "2", cluster=cluster)) == local


def test_ray_matches_local_with_per_sequence_attention_and_fp8_kv(ray_session, tmp_path):
    """The H100 bundle prices attention per sequence by default; an fp8 KV cache doubles its blocks."""
    cluster = tmp_path / "h100-fp8kv.yaml"
    cluster.write_text("model: meta-llama/Llama-3.1-8B\nhardware: H100-SXM-80GB\ncost_model: profile\n"
                       "kv_cache_dtype: fp8\nengine: {max_num_seqs: 64, max_num_batched_tokens: 2048}\n")
    common = ("--instances", "3", "--router", "least_loaded", "--num-requests", "90")
    local = outputs(run_cli(tmp_path / "l", *common, cluster=cluster))
    assert outputs(run_cli(tmp_path / "r", *common, "--backend", "ray", "--actors", "2", cluster=cluster)) == local


def test_ray_matches_local_for_an_llmservingsim_tp2_cluster(ray_session, tmp_path, shared_data):
    """The ASTRA-Sim network of an LLMServingSim JSON travels in the shared cost-model state."""
    import json

    from conftest import PERF_ROOT
    from test_llmservingsim_config import TP2
    doc = json.loads(json.dumps(TP2))
    doc["nodes"][0]["instances"] = doc["nodes"][0]["instances"] * 2
    doc["nodes"][0]["num_instances"] = 2
    cluster = tmp_path / "tp2.json"
    cluster.write_text(json.dumps(doc))
    common = ("--num-requests", "40", "--perf-root", str(PERF_ROOT))
    local = outputs(run_cli(tmp_path / "l", *common, cluster=cluster))
    assert outputs(run_cli(tmp_path / "r", *common, "--backend", "ray", "--actors", "2", cluster=cluster)) == local


def test_ray_keeps_dp_groups_in_one_actor_and_matches_local(ray_session, tmp_path):
    from fleetsim.cluster.backends.ray_backend import packing_units
    from moe_bundle import HARDWARE, MODEL, cluster_json, run, write_moe_bundle, write_workload
    write_moe_bundle(tmp_path)
    workload = write_workload(tmp_path / "wl.jsonl", n=40)
    lone = {"model_name": MODEL, "hardware": HARDWARE, "tp_size": 1, "ep_size": 1, "npu_mem": {"mem_size": 1}}
    doc = cluster_json(groups=("A", "B", "A", "B"), extra=[lone])        # groups (0, 2) and (1, 3), 4 alone
    assert packing_units(5, ((0, 2), (1, 3))) == [(0, 2), (1, 3), (4,)]
    common = ("--router", "least_loaded", "--sync-interval-ms", "0.2")
    code, local = run(tmp_path, "local", doc, workload, *common)
    assert code == 0
    for packing in (("--actors", "1"), ("--actors", "2"), ("--actors", "3"), ("--instances-per-actor", "1")):
        code, out = run(tmp_path, "ray" + "".join(packing), doc, workload, *common, "--backend", "ray", *packing)
        assert code == 0 and outputs(out) == outputs(local), f"ray {packing} differs from local"
    # the members under vLLM's async scheduling (the JSON's default is LLMServingSim's synchronous one)
    lagged = (*common, "--async-scheduling")
    code, local_async = run(tmp_path, "local-async", doc, workload, *lagged)
    assert code == 0 and outputs(local_async)[0] != outputs(local)[0]
    code, out = run(tmp_path, "ray-async", doc, workload, *lagged, "--backend", "ray", "--actors", "2")
    assert code == 0 and outputs(out) == outputs(local_async)
    from fleetsim.cluster.backends.ray_backend import RayBackend, share_cost_models
    from fleetsim.cluster.config import load_cluster_config
    from fleetsim.cluster.fleet import load_cost_model
    cfg = load_cluster_config(str(tmp_path / "local.json"))
    cms = {s: load_cost_model(s, str(tmp_path / "perf"), str(tmp_path / "models")) for s in cfg.instances}
    backend = RayBackend(cfg.instances, share_cost_models(ray, cfg.instances, cms), actors=3, groups=((0, 2), (1, 3)))
    try:
        assert backend.owner[0] == backend.owner[2] != backend.owner[1] == backend.owner[3] != backend.owner[4]
    finally:
        backend.close()

"""least_loaded with `normalize: capacity` (cluster/policies/load_aware.py) and the relative
capacities it divides by (cluster/instance_capacity.py), on the mixed H100/A100 example."""
import json

import pytest

from fleet_helpers import EXAMPLE_WORKLOAD, REPO, outputs, run_cli
from fleetsim.cluster.cli import main
from fleetsim.cluster.instance_capacity import relative_capacities
from fleetsim.cluster.policies import make_policy
from fleetsim.cluster.snapshot import Snapshot
from fleetsim.instance.request import Request

MIXED = REPO / "configs" / "clusters" / "mixed-h100-a100-llama8b.yaml"


def test_normalized_least_loaded_divides_the_score_by_capacity():
    # capacities 1 and 1/2; six requests in one window, both idle: keys 4·waiting / capacity go
    # (0, 0) -> 0, (4, 0) -> 1, (4, 8) -> 0, (8, 8) -> 0 (tie: lower index), (12, 8) -> 1, (12, 16) -> 0
    policy = make_policy("least_loaded", 2, {"normalize": "capacity"})
    assert policy.needs_capacity
    policy.set_capacities([1.0, 0.5])
    snaps = [Snapshot(0), Snapshot(1)]
    chosen = []
    for rid in range(6):
        req = Request(rid, 0, 100, 10)
        i = policy.choose(req, snaps, None)
        snaps[i].note_routed(req)
        chosen.append(i)
    assert chosen == [0, 1, 0, 0, 1, 0]
    assert not make_policy("least_loaded", 2, {}).needs_capacity


def test_relative_capacities_are_rates_over_the_fastest():
    # (tokens, ns): 8192 tokens in 100 ns, in 300 ns, and 4096 in 100 ns
    assert relative_capacities([(8192, 100), (8192, 300), (4096, 100)]) == pytest.approx([1.0, 1 / 3, 0.5])


def test_the_mixed_example_sends_the_h100s_their_share(tmp_path):
    out = run_cli(tmp_path / "o", "--num-requests", "120", cluster=MIXED, workload=EXAMPLE_WORKLOAD)
    s = json.loads((out / "summary.json").read_text())
    cap = s["router"]["relative_capacity"]
    # a full 8192-token prefill chunk is compute-bound: the A100/H100 ratio is near their dense
    # bf16 peaks' (312 / 989 = 0.32)
    assert cap[:4] == [1.0] * 4 and len(set(cap[4:])) == 1 and 0.25 < cap[4] < 0.45
    routed = [i["routed"] for i in s["instances"]]
    assert sum(routed[:4]) > 2 * sum(routed[4:])


def test_a_bad_normalize_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(MIXED.read_text().replace("normalize: capacity", "normalize: flops"))
    code = main(["run", "--cluster", str(cfg), "--workload", str(EXAMPLE_WORKLOAD), "--out", str(tmp_path / "o"),
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "router.options.normalize must be one of none, capacity" in err


def test_the_mixed_example_is_byte_identical_on_ray(ray_session, tmp_path):
    common = ("--num-requests", "60", "--admission", "slo:ttft_ms=300")
    local = outputs(run_cli(tmp_path / "l", *common, cluster=MIXED, workload=EXAMPLE_WORKLOAD))
    ray_out = outputs(run_cli(tmp_path / "r", *common, "--backend", "ray", "--actors", "2", cluster=MIXED,
                              workload=EXAMPLE_WORKLOAD))
    assert ray_out == local

"""The PD examples: configs/clusters/h100-llama8b-4p4d.yaml and configs/sweeps/pd-ratios.yaml
(runs on the Azure code trace skip when ../shared/data is absent)."""
from __future__ import annotations

import csv
import json

import pytest

from conftest import SHARED
from fleet_helpers import REPO, run_cli
from fleetsim.cluster.config import config_from_doc, load_cluster_config

CLUSTER = REPO / "configs" / "clusters" / "h100-llama8b-4p4d.yaml"
SWEEP = REPO / "configs" / "sweeps" / "pd-ratios.yaml"
CODE_TRACE = SHARED / "traces" / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv"


def need_trace():
    if not CODE_TRACE.is_file():
        pytest.skip("the Azure code trace (../shared/data/traces) is not present")


def test_the_4p4d_example_has_four_prefill_and_four_decode_instances():
    cfg = load_cluster_config(str(CLUSTER))
    assert cfg.pd.roles == ("prefill",) * 4 + ("decode",) * 4
    assert (cfg.pd.link_mode, cfg.pd.link_gbps, cfg.pd.decode_policy) == ("pair", 50.0, "least_loaded")


def test_the_4p4d_example_runs_on_the_azure_code_trace(tmp_path):
    need_trace()
    out = run_cli(tmp_path / "o", "--num-requests", "80", "--time-scale", "0.1", cluster=CLUSTER, workload=CODE_TRACE)
    with open(out / "requests.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    summary = json.loads((out / "summary.json").read_text())
    multi = [r for r in rows if int(r["output"]) > 1]
    assert summary["num_requests"] == len(rows) == 80
    assert summary["pd"]["transfers"] == len(multi) > 0
    assert {int(r["decode_instance"]) for r in multi} <= {4, 5, 6, 7}
    assert {int(r["instance id"]) for r in rows} <= {0, 1, 2, 3}


def test_the_pd_ratio_sweep_compares_1p3d_2p2d_3p1d_and_4_mixed():
    need_trace()
    from fleetsim.cluster.experiments.spec import load_spec
    spec = load_spec(str(SWEEP))
    fleets = []
    for point in spec.points():
        cfg = config_from_doc(point.cluster, str(SWEEP), str(SWEEP.parent))
        fleets.append(None if cfg.pd is None else cfg.pd.roles)
    p, d = "prefill", "decode"
    assert fleets == [(p, d, d, d), (p, p, d, d), (p, p, p, d), None]
    assert len(load_cluster_config(str(CLUSTER)).instances) == 8

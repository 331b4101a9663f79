"""Provenance (summary.json's `run` block), re-runs from it, and --out with an earlier result."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

import fleetsim
from fleetsim.cluster.cli import main
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, outputs

ARGS = ("--num-requests", "40", "--instances", "2", "--router", "least_loaded", "--seed", "5",
        "--max-num-seqs", "64", "--no-prefix-caching")


def _run(tmp_path, out, *extra, workload=EXAMPLE_WORKLOAD, cluster=EXAMPLE_CLUSTER):
    return main(["run", "--cluster", str(cluster), "--workload", str(workload), "--out", str(tmp_path / out),
                 "--quiet", *ARGS, *extra])


def test_run_block_records_inputs_and_options(tmp_path):
    assert _run(tmp_path, "a") == 0
    run = json.loads((tmp_path / "a" / "summary.json").read_text())["run"]
    assert run["fleetsim_version"] == fleetsim.__version__
    assert run["cluster"]["source"] == str(EXAMPLE_CLUSTER)
    assert run["cluster"]["document"] == yaml.safe_load(EXAMPLE_CLUSTER.read_text())
    import hashlib
    assert run["cluster"]["sha256"] == hashlib.sha256(EXAMPLE_CLUSTER.read_bytes()).hexdigest()
    assert run["workload"] == {"path": str(EXAMPLE_WORKLOAD), "bytes": EXAMPLE_WORKLOAD.stat().st_size,
                               "sha256": hashlib.sha256(EXAMPLE_WORKLOAD.read_bytes()).hexdigest(), "requests": 40}
    opts = run["options"]
    assert (opts["num_requests"], opts["instances"], opts["router"], opts["seed"], opts["max_num_seqs"],
            opts["enable_prefix_caching"]) == (40, 2, "least_loaded", 5, 64, False)
    assert "backend" not in opts and "actors" not in opts            # execution only: no byte changes
    inst = run["cluster"]["resolved"]["instances"]
    assert len(inst) == 1 and inst[0]["count"] == 2 and inst[0]["engine"]["max_num_seqs"] == 64
    assert run["seed"] == 5
    assert run["files"] == ["requests.csv", "summary.json", "timeseries.csv", "timeseries_fleet.csv"]


def test_rerun_from_summary_alone_is_byte_identical(tmp_path, monkeypatch):
    # inputs copied aside and given by relative paths, the way a user keeps a run folder
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLE_CLUSTER, tmp_path / "cluster.yaml")
    shutil.copy(EXAMPLE_WORKLOAD, tmp_path / "work.jsonl")
    assert _run(tmp_path, "first", cluster="cluster.yaml", workload="work.jsonl") == 0
    (tmp_path / "cluster.yaml").unlink()                              # summary.json alone is enough
    assert main(["rerun", "first/summary.json", "--out", "again", "--quiet"]) == 0
    assert outputs(tmp_path / "first", run_block=True) == outputs(tmp_path / "again", run_block=True)


def test_rerun_refuses_a_changed_workload(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLE_WORKLOAD, tmp_path / "work.jsonl")
    assert _run(tmp_path, "first", workload="work.jsonl") == 0
    with open(tmp_path / "work.jsonl", "a") as fh:
        fh.write("\n")
    assert main(["rerun", "first/summary.json", "--out", "again", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "work.jsonl' changed since the run" in err[0]
    assert main(["rerun", "work.jsonl", "--out", "again", "--quiet"]) == 2
    assert "not a fleetsim summary.json" in capsys.readouterr().err


def test_out_with_an_earlier_result_needs_overwrite(tmp_path, capsys):
    assert _run(tmp_path, "o") == 0
    before = outputs(tmp_path / "o")
    assert _run(tmp_path, "o", "--seed", "9") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a previous run's results" in err[0] and "--overwrite" in err[0]
    assert outputs(tmp_path / "o") == before                         # untouched
    assert _run(tmp_path, "o", "--seed", "9", "--overwrite") == 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["run"]["options"]["seed"] == 9


def test_a_failed_overwrite_leaves_no_old_result(tmp_path, capsys):
    assert _run(tmp_path, "o") == 0
    (tmp_path / "o" / "notes.txt").write_text("mine")
    assert _run(tmp_path, "o", "--overwrite", workload=tmp_path / "missing.jsonl") == 2
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["notes.txt"]   # the user's file stays


def test_result_save_needs_overwrite_too(tmp_path):
    res = fleetsim.simulate(EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, num_requests=5)
    res.save(tmp_path / "s")
    with pytest.raises(fleetsim.InputError, match="holds a previous run's results"):
        res.save(tmp_path / "s")
    res.save(tmp_path / "s", overwrite=True)

"""The public API: `fleetsim.simulate` from paths, dicts and objects, `Result` tables, no files
unless asked, and the same bytes as `fleetsim run`."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import yaml

import fleetsim
from fleetsim.cluster.cli import main
from fleetsim.cluster.result import numpy_table, read_table

CLUSTER = fleetsim.CONFIGS / "clusters" / "rtxpro6000-llama8b.yaml"
WORKLOAD = fleetsim.CONFIGS / "workloads" / "sharegpt-llama-3.1-8b-300-sps10.jsonl"
OPTIONS = {"num_requests": 60, "instances": 2, "router": "least_loaded", "seed": 3}
FLAGS = ["--num-requests", "60", "--instances", "2", "--router", "least_loaded", "--seed", "3"]


def _files(folder) -> dict[str, bytes]:
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


def _without_run_block(files: dict[str, bytes]) -> dict:
    """The files, summary.json without its `run` block (which names how the inputs were given)."""
    out = dict(files)
    summary = json.loads(out.pop("summary.json"))
    del summary["run"]
    return {**out, "summary": summary}


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["run", "--cluster", str(CLUSTER), "--workload", str(WORKLOAD), "--out", str(out), "--quiet",
                 *FLAGS]) == 0
    return _files(out)


@pytest.fixture(scope="module")
def result():
    return fleetsim.simulate(CLUSTER, WORKLOAD, **OPTIONS)


def test_simulate_writes_nothing_and_saves_the_cli_bytes(tmp_path, monkeypatch, cli_files):
    monkeypatch.chdir(tmp_path)
    res = fleetsim.simulate(str(CLUSTER), str(WORKLOAD), **OPTIONS)
    assert os.listdir(tmp_path) == []
    assert res.folder is None and res.names == ["requests.csv", "summary.json", "timeseries.csv",
                                                "timeseries_fleet.csv"]
    assert _files(res.save(tmp_path / "saved")) == cli_files
    assert res.summary["num_requests"] == 60


def test_cluster_as_dict_or_config_and_workload_as_object(cli_files):
    doc = yaml.safe_load(CLUSTER.read_text())
    config = fleetsim.load_cluster_config(str(CLUSTER))
    for cluster in (doc, config):
        res = fleetsim.simulate(cluster, fleetsim.load_workload(str(WORKLOAD), 60),
                                **{k: v for k, v in OPTIONS.items() if k != "num_requests"})
        assert _without_run_block({n: res.text(n).encode() for n in res.names}) == _without_run_block(cli_files)
        assert res.summary["run"]["cluster"]["source"] in (str(CLUSTER), "cluster dict")


def test_out_folder_streams_to_disk(tmp_path, cli_files):
    res = fleetsim.simulate(CLUSTER, WORKLOAD, out=str(tmp_path / "o"), **OPTIONS)
    assert res.folder == str(tmp_path / "o")
    assert _files(tmp_path / "o") == cli_files
    assert len(res.requests) == 60


def test_requests_table(result):
    pd = pytest.importorskip("pandas")
    df = result.requests
    assert isinstance(df, pd.DataFrame)
    header = result.text("requests.csv").splitlines()[0].split(",")
    assert list(df.columns) == header
    assert len(df) == result.summary["num_requests"] == 60
    assert sorted(df["request id"]) == list(range(60))
    for col in ("instance id", "request id", "input", "output", "arrival", "end_time", "latency", "TTFT"):
        assert df[col].dtype == np.int64, col
    assert (df["latency"] == df["end_time"] - df["arrival"]).all()
    # the ITL gaps of a request add up to its time after the first token
    for _, row in df.iterrows():
        assert len(row["ITL"]) == row["output"] - 1
        assert sum(row["ITL"]) == row["latency"] - row["TTFT"]
    assert result.summary["ttft_ms"]["mean"] == pytest.approx(df["TTFT"].mean() / 1e6)


def testnumpy_tables_without_pandas(result, monkeypatch):
    pytest.importorskip("pandas")
    frame = result.requests
    expected = {name: list(frame[name]) for name in frame.columns}
    series_rows = len(result.timeseries)
    monkeypatch.setitem(sys.modules, "pandas", None)      # import pandas now raises ImportError
    arr = read_table(result.text("requests.csv"))
    assert isinstance(arr, np.ndarray) and arr.dtype.names == tuple(expected)
    for name in arr.dtype.names:
        assert [list(x) if name == "ITL" else x for x in arr[name]] == expected[name], name
    assert len(read_table(result.text("timeseries.csv"))) == series_rows


def test_numpy_columns_typed():
    arr = numpy_table("a,b,c,ITL\n1,2.5,x,\"[3, 4]\"\n2,,y,\n")
    assert arr["a"].dtype == np.int64 and list(arr["a"]) == [1, 2]
    assert arr["b"].dtype == np.float64 and arr["b"][0] == 2.5 and np.isnan(arr["b"][1])
    assert list(arr["c"]) == ["x", "y"]
    assert arr["ITL"][0] == [3, 4] and arr["ITL"][1] == []


def test_bad_options():
    with pytest.raises(TypeError, match="no_such_option"):
        fleetsim.simulate(CLUSTER, WORKLOAD, no_such_option=1)
    with pytest.raises(fleetsim.InputError, match="--instances must be >= 1"):
        fleetsim.simulate(CLUSTER, WORKLOAD, instances=0)
    with pytest.raises(fleetsim.InputError, match="need --backend ray"):
        fleetsim.simulate(CLUSTER, WORKLOAD, actors=2)
    with pytest.raises(fleetsim.InputError, match="cluster: expected a path"):
        fleetsim.simulate(42, WORKLOAD)


def test_a_workload_object_runs_again_with_the_same_result():
    wl = fleetsim.load_workload(str(WORKLOAD), 5)       # columns: each run makes fresh requests
    first = fleetsim.simulate(CLUSTER, wl)
    assert fleetsim.simulate(CLUSTER, wl).summary == first.summary
    with pytest.raises(fleetsim.InputError, match="apply when loading"):
        fleetsim.simulate(CLUSTER, fleetsim.load_workload(str(WORKLOAD), 5), num_requests=3)


def test_public_names():
    for name in fleetsim.__all__:
        assert hasattr(fleetsim, name), name
    assert issubclass(fleetsim.Policy, object) and fleetsim.Policy.__module__ == "fleetsim.cluster.policies.base"
    assert fleetsim.CostModel.load(model="meta-llama/Llama-3.1-8B", hardware="RTXPRO6000").iteration_time_ns(
        [(1, 100)]) > 0


def test_quickstart_example_runs(tmp_path):
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    run = subprocess.run([sys.executable, os.path.join(root, "examples", "quickstart.py")], cwd=tmp_path,
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "least_loaded" in run.stdout and "300 requests on 2 instances" in run.stdout
    assert sorted(os.listdir(tmp_path / "out" / "quickstart")) == ["requests.csv", "summary.json", "timeseries.csv",
                                                                   "timeseries_fleet.csv"]

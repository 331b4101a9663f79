"""validate --fit-overhead recovers a known per-step overhead from a synthetic "real" run."""
import csv
import json

from fleetsim.cluster.cli import main
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD


def write_real_run(sim_dir, real_dir, client: bool = False):
    """A real-run directory (requests.jsonl + meta.json) whose timings are a simulated run's:
    engine-side (arrival_time on another clock, as the shared vLLM run) or client-side."""
    real_dir.mkdir()
    lines = []
    with open(sim_dir / "requests.csv", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: int(r["request id"]))
    for r in rows:
        arr = int(r["arrival"]) / 1e9
        lines.append({"request_id": f"bench-{r['request id']}", "input_toks": int(r["input"]),
                      "output_toks": int(r["output"]), "arrival_time": (1000 if client else 1.7e9) + arr,
                      "queued_ts": 1000 + int(r["queued"]) / 1e9,
                      "scheduled_ts": 1000 + arr + int(r["queuing_delay"]) / 1e9,
                      "first_token_ts": 1000 + arr + int(r["TTFT"]) / 1e9,
                      "last_token_ts": 1000 + int(r["end_time"]) / 1e9})
    (real_dir / "requests.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (real_dir / "meta.json").write_text(json.dumps({"schema_version": 1}))


def test_fit_recovers_known_step_overhead(tmp_path, capsys):
    cluster = tmp_path / "c.yaml"
    cluster.write_text(EXAMPLE_CLUSTER.read_text() + "overhead: {step_us: 300}\n")
    common = ["--workload", str(EXAMPLE_WORKLOAD), "--num-requests", "80"]
    assert main(["run", "--cluster", str(cluster), "--out", str(tmp_path / "truth"), "--quiet", *common]) == 0
    write_real_run(tmp_path / "truth", tmp_path / "real")
    capsys.readouterr()
    assert main(["validate", "--real", str(tmp_path / "real"), "--sim", str(tmp_path / "fit"), "--fit-overhead",
                 "--cluster", str(EXAMPLE_CLUSTER), "--json", *common]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert abs(doc["overhead"]["step_us"] - 300) <= 15
    assert doc["overhead"]["per_seq_us"] <= 1.0
    assert abs(doc["fitted"]["TPOT"]["Mean"]["diff_pct"]) < 0.5
    assert doc["no_overhead"]["TPOT"]["Mean"]["diff_pct"] < -1.0       # without it the sim is too fast
    assert (tmp_path / "fit" / "requests.csv").is_file()
    assert doc["anchor"] == "engine" and doc["frontend_fitted"] is False


def test_fit_recovers_overhead_and_front_end_from_a_client_side_run(tmp_path, capsys):
    """A client-anchored run (arrival_time on the token clock) shows the front end in TTFT and
    latency: the fit finds it together with the step overhead."""
    cluster = tmp_path / "c.yaml"
    cluster.write_text(EXAMPLE_CLUSTER.read_text() + "overhead: {step_us: 300}\nfrontend: {request_us: 4000}\n")
    common = ["--workload", str(EXAMPLE_WORKLOAD), "--num-requests", "60"]
    assert main(["run", "--cluster", str(cluster), "--out", str(tmp_path / "truth"), "--quiet", *common]) == 0
    write_real_run(tmp_path / "truth", tmp_path / "real", client=True)
    capsys.readouterr()
    assert main(["validate", "--real", str(tmp_path / "real"), "--sim", str(tmp_path / "fit"), "--fit-overhead",
                 "--cluster", str(EXAMPLE_CLUSTER), "--json", *common]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["anchor"] == "client" and doc["frontend_fitted"] is True
    assert abs(doc["overhead"]["step_us"] - 300) <= 30
    assert abs(doc["frontend"]["request_us"] - 4000) <= 800     # the loss is flat around it (measured 4549)
    assert abs(doc["fitted"]["TTFT"]["Mean"]["diff_pct"]) < 0.5


def test_fit_overhead_needs_cluster_and_workload(tmp_path, capsys):
    (tmp_path / "real").mkdir()
    assert main(["validate", "--real", str(tmp_path / "real"), "--sim", str(tmp_path), "--fit-overhead"]) == 2
    assert "--fit-overhead needs --cluster and --workload" in capsys.readouterr().err

"""`fleetsim capacity` against capacities derived by hand.

The workload: 11 requests of 512 prompt tokens and one output token, arriving every 100 ms (base
rate 10 req/s); one instance with max_num_seqs 1 and synchronous scheduling serves them one at a
time, each in one prefill step of S ns (a lone request's TTFT). At arrival interval D < S request
k finishes at (k + 1) S, so its TTFT is S + k (S - D); the largest, k = 10, meets a per-request
TTFT threshold of 1.5 S (attainment 1) iff D >= 0.95 S. Capacity scale = 100 ms / (0.95 S).
"""
from __future__ import annotations

import csv
import json

import pytest

from fleetsim import simulate
from fleetsim.cluster.cli import main
from fleet_helpers import REPO

TOL = 0.005


@pytest.fixture
def setup(tmp_path):
    work = tmp_path / "w.jsonl"
    work.write_text("".join(json.dumps({"input_toks": 512, "output_toks": 1, "arrival_time_ns": 100_000_000 * i}) + "\n"
                            for i in range(11)))
    cluster = tmp_path / "c.yaml"
    cluster.write_text(f"perf_root: {REPO / 'configs' / 'perf'}\nmodel: meta-llama/Llama-3.1-8B\nhardware: RTXPRO6000\n"
                       "engine: {max_num_seqs: 1, async_scheduling: false}\n")
    s_ns = simulate(str(cluster), str(work), num_requests=1).requests["TTFT"].iloc[0]
    return cluster, work, int(s_ns)


def _slo(s_ns: int) -> str:
    return f"ttft_ms={1.5 * s_ns / 1e6!r},attainment=1"


def test_max_rate_matches_the_hand_computed_capacity(setup, tmp_path, capsys):
    cluster, work, s_ns = setup
    out = tmp_path / "cap"
    assert main(["capacity", "--cluster", str(cluster), "--workload", str(work), "--slo", _slo(s_ns),
                 "--tolerance", str(TOL), "--out", str(out), "--gpu-cost", "RTXPRO6000=2.0"]) == 0
    (result,) = json.loads((out / "capacity.json").read_text())
    expected = 100e6 / (0.95 * s_ns)
    found = result["scale"]
    lo, hi = result["bracket"]
    assert lo == found and lo <= expected < hi and hi - lo <= TOL * lo
    assert abs(found - expected) <= TOL * expected
    assert result["base_rate_rps"] == pytest.approx(10.0)
    # every probe agrees with the hand rule: passes iff its interval is >= 0.95 S
    for p in result["probes"]:
        interval = 100e6 / p["scale"]
        if abs(interval - 0.95 * s_ns) > 1e-3 * s_ns:
            assert p["holds"] == (interval >= 0.95 * s_ns), p
    # the cost: one GPU at 2 $/h, over the goodput at the answer
    row = next(csv.DictReader((out / "capacity.csv").read_text().splitlines()))
    assert row["gpus"] == "1" and float(row["price_per_hour"]) == 2.0
    assert float(row["cost_per_1k_requests"]) == pytest.approx(2.0 / (3600 * result["result"]["goodput_rps"]) * 1000)
    assert "max_rate" in capsys.readouterr().out


def test_min_instances_matches_the_hand_computed_fleet(setup, tmp_path):
    """At interval 0.4 S round robin gives each of n instances every n-th request: n = 2 sees
    0.8 S (6 requests, the last TTFT S + 5 * 0.2 S = 2 S > 1.5 S: fails), n = 3 sees 1.2 S >= S
    (every TTFT = S: passes). Smallest fleet: 3."""
    cluster, work, s_ns = setup
    rate = 1e9 / (0.4 * s_ns)
    out = tmp_path / "cap"
    assert main(["capacity", "--cluster", str(cluster), "--workload", str(work), "--slo", _slo(s_ns),
                 "--target-rate", repr(rate), "--out", str(out), "--quiet"]) == 0
    (result,) = json.loads((out / "capacity.json").read_text())
    assert result["instances"] == 3 and result["result"]["instances"] == 3
    held = {p["instances"]: p["holds"] for p in result["probes"]}
    assert held[2] is False and held[3] is True and held[1] is False
    assert result["price_per_hour"] is None and result["cost_per_1k_requests"] is None   # no price given


@pytest.mark.parametrize("extra, needle", [
    (["--instances", "2", "--target-rate", "5"], "--instances and --target-rate exclude each other"),
    (["--gpu-cost", "RTXPRO6000"], "--gpu-cost 'RTXPRO6000': expected HARDWARE=USD_PER_GPU_HOUR"),
    (["--labels", "a,b"], "--labels: 2 names for 1 clusters"),
    (["--tolerance", "0"], "--tolerance must be in (0, 1)"),
    (["--target-rate", "-1"], "--target-rate must be a number > 0"),
    (["--num-requests", "1"], "capacity needs at least two requests arriving at different times"),
    (["--backend", "local", "--ray-address", "auto"], "--ray-address needs --backend ray"),
    (["--plots"], None),
])
def test_cli_errors_are_one_line_exit_2(setup, tmp_path, capsys, extra, needle):
    cluster, work, s_ns = setup
    out = [] if needle is None else ["--out", str(tmp_path / "o")]
    needle = needle or "--plots needs --out"
    assert main(["capacity", "--cluster", str(cluster), "--workload", str(work), "--slo", _slo(s_ns), *out,
                 *extra]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()




@pytest.mark.ray
def test_clusters_in_parallel_on_ray_equal_local(ray_session, setup, tmp_path):
    cluster, work, s_ns = setup
    two = tmp_path / "c2.yaml"
    two.write_text(cluster.read_text().replace("max_num_seqs: 1", "max_num_seqs: 2"))
    base = ["capacity", "--cluster", str(cluster), "--cluster", str(two), "--labels", "seq1,seq2", "--workload",
            str(work), "--slo", _slo(s_ns), "--quiet", "--gpu-cost", "RTXPRO6000=1"]
    assert main(base + ["--backend", "local", "--out", str(tmp_path / "l")]) == 0
    assert main(base + ["--out", str(tmp_path / "r")]) == 0                # several clusters: Ray by default
    assert (tmp_path / "l" / "capacity.csv").read_bytes() == (tmp_path / "r" / "capacity.csv").read_bytes()
    assert (tmp_path / "l" / "capacity.json").read_bytes() == (tmp_path / "r" / "capacity.json").read_bytes()
    rows = list(csv.DictReader((tmp_path / "r" / "capacity.csv").read_text().splitlines()))
    assert [r["label"] for r in rows] == ["seq1", "seq2"]

"""`fleetsim sweep`: SPEC expansion, points equal to direct runs, resume, refusal, failures, status,
SIGKILL mid-way and resume = an uninterrupted run, Ray = local with no file opened in workers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetsim import simulate
from fleetsim.cluster.cli import main
from fleetsim.cluster.errors import InputError
from fleetsim.cluster.experiments.spec import spec_from_doc
from fleetsim.cluster.experiments.sweep import results_rows, status_lines
from fleet_helpers import EXAMPLE_CLUSTER, EXAMPLE_WORKLOAD, REPO


def _spec(tmp_path: Path, axes: dict, name="spec.yaml", **extra) -> Path:
    doc = {"cluster": str(EXAMPLE_CLUSTER), "workload": str(EXAMPLE_WORKLOAD),
           "workload_options": {"num_requests": 20}, "axes": axes,
           "metrics": ["num_requests", "ttft_ms.p99", "throughput.requests_per_s", "router.policy"], **extra}
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _sweep(spec: Path, out: Path, *extra: str) -> int:
    return main(["sweep", str(spec), "--out", str(out), "--backend", "local", "--quiet", *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("fleetsim: error: "), err
    return err[0]


def test_product_zip_and_ranges_expand_in_order(tmp_path):
    spec = spec_from_doc({"cluster": {"model": "m", "hardware": "h"}, "workload": "w.jsonl",
                          "axes": {"router.policy": ["a", "b"], "instances": {"from": 1, "to": 8, "times": 2},
                                   "router.sync_interval_ms": {"from": 0, "to": 0.25, "step": 0.125}}},
                         "s", str(tmp_path))
    points = spec.points()
    assert len(points) == 2 * 4 * 3
    assert [p.axes_dict["instances"] for p in points[:12:3]] == [1, 2, 4, 8]
    assert [p.axes_dict["router.sync_interval_ms"] for p in points[:3]] == [0.0, 0.125, 0.25]
    assert points[-1].cluster == {"model": "m", "hardware": "h", "instances": 8,
                                  "router": {"policy": "b", "sync_interval_ms": 0.25}}
    z = spec_from_doc({"cluster": {"model": "m", "hardware": "h"}, "workload": "w", "combine": "zip",
                       "axes": {"seed": [1, 2, 3], "workload.rate_scale": [0.5, 1, 2]}}, "s", str(tmp_path)).points()
    assert [(p.cluster["seed"], p.rate_scale) for p in z] == [(1, 0.5), (2, 1.0), (3, 2.0)]


@pytest.mark.parametrize("doc, needle", [
    ({"axes": {"seed": [1]}, "extra": 1}, "unknown key(s) extra"),
    ({"axes": {}}, "'axes' must be a non-empty mapping"),
    ({"axes": {"seed": [1, 2], "instances": [1]}, "combine": "zip"}, "zip needs axes of one length"),
    ({"axes": {"seed": {"from": 3, "to": 1, "step": 1}}}, "a range is"),
    ({"axes": {"workload.speed": [1]}}, "unknown workload axis"),
    ({"axes": {"workload.rate_scale": [0]}}, "rate_scale: every value must be a number > 0"),
    ({"axes": {"seed": [1]}, "options": {"backend": "ray"}}, "options: backend cannot be set per sweep"),
    ({"axes": {"model.name": [1]}}, "model is not a mapping"),
    ({"axes": {"seed": [1]}, "combine": "cross"}, "choose product or zip"),
])
def test_spec_errors(tmp_path, doc, needle):
    full = {"cluster": {"model": "m", "hardware": "h"}, "workload": "w", **doc}
    with pytest.raises(InputError) as exc:
        spec_from_doc(full, "s.yaml", str(tmp_path)).points()
    assert needle in str(exc.value)


def test_points_equal_direct_runs(tmp_path):
    """Each row is the run simulate() gives for that config; rate_scale 2 = arrivals halved."""
    spec = _spec(tmp_path, {"router.policy": ["round_robin", "least_loaded"], "instances": [2],
                            "workload.rate_scale": [1.0, 2.0]})
    out = tmp_path / "sw"
    assert _sweep(spec, out) == 0
    header, rows = results_rows(str(out))
    assert header == ["point", "router.policy", "instances", "workload.rate_scale", "status", "num_requests",
                      "ttft_ms.p99", "throughput.requests_per_s", "router.policy", "error"]
    lines = EXAMPLE_WORKLOAD.read_text().splitlines()[:20]
    halved = tmp_path / "halved.jsonl"
    halved.write_text("".join(json.dumps({**json.loads(x), "arrival_time_ns": round(json.loads(x)["arrival_time_ns"] / 2)})
                              + "\n" for x in lines))
    for row in rows:
        _, policy, n, rate, status = row[:5]
        assert status == "done"
        wl = EXAMPLE_WORKLOAD if rate == 1.0 else halved
        direct = simulate(str(EXAMPLE_CLUSTER), str(wl), num_requests=20, router=policy, instances=n).summary
        assert row[5:9] == [20, direct["ttft_ms"]["p99"], direct["throughput"]["requests_per_s"], policy]
    assert (out / "results.csv").read_text().count("\n") == 5
    assert "| 3 | least_loaded | 2 | 2 | done | 20 |" in (out / "summary.md").read_text()


def test_rerun_skips_refuses_changed_spec_and_force_recomputes(tmp_path, capsys):
    spec = _spec(tmp_path, {"seed": [0, 1], "instances": [1, 2]})
    out = tmp_path / "sw"
    assert _sweep(spec, out) == 0
    before = {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir()}
    csv1 = (out / "results.csv").read_bytes()
    assert main(["sweep", str(spec), "--out", str(out), "--backend", "local"]) == 0
    assert "4 points: 0 run, 4 already done, 0 failed" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir()} == before
    assert (out / "results.csv").read_bytes() == csv1
    # a new metric only re-tabulates
    doc = json.loads(spec.read_text())
    spec.write_text(json.dumps({**doc, "metrics": ["e2e_ms.p50"]}))
    assert _sweep(spec, out) == 0
    assert (out / "results.csv").read_text().splitlines()[0] == "point,seed,instances,status,e2e_ms.p50,error"
    assert {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir()} == before
    # a changed axis value invalidates finished points: one line, exit 2, nothing touched
    spec.write_text(json.dumps({**doc, "axes": {"seed": [0, 1], "instances": [1, 3]}}))
    assert _sweep(spec, out) == 2
    line = _one_error_line(capsys)
    assert "2 finished point(s) no longer match" in line and "--force" in line
    assert {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir()} == before
    assert _sweep(spec, out, "--force") == 0
    _, rows = results_rows(str(out))
    assert [r[2] for r in rows] == [1, 3, 1, 3] and all(r[3] == "done" for r in rows)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir()}
    same = {"000000.json", "000002.json"}          # instances 1: still valid, not recomputed
    assert {k: after[k] for k in same} == {k: before[k] for k in same}
    assert all(after[k] != before[k] for k in set(before) - same)


def test_failed_point_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    spec = _spec(tmp_path, {"instances": [1, 0, 2]})
    out = tmp_path / "sw"
    assert _sweep(spec, out) == 1
    err = capsys.readouterr().err
    assert "3 points: 3 run, 0 already done, 1 failed" in err
    _, rows = results_rows(str(out))
    assert [r[2] for r in rows] == ["done", "failed", "done"]
    assert "'instances' must be >= 1" in rows[1][-1]
    lines = status_lines(str(out))
    assert lines[0].endswith("3 points: 2 done, 1 failed, 0 pending")
    assert lines[1].startswith("  point 1 failed (instances=0): ") and len(lines) == 2
    os.remove(out / "points" / "000002.json")
    assert main(["sweep", "status", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("1 done, 1 failed, 1 pending") and printed[2] == "  point 2 pending (instances=2)"


@pytest.mark.parametrize("argv, needle", [
    (["sweep", "status"], "sweep status: give the sweep folder"),
    (["sweep", "{spec}"], "--out DIR is required"),
    (["sweep", "{spec}", "--out", "{out}", "--backend", "local", "--ray-address", "auto"], "--ray-address needs --backend ray"),
    (["sweep", "status", "{tmp}"], "not a sweep folder (no sweep.json)"),
    (["sweep", "{tmp}/missing.yaml", "--out", "{out}"], "missing.yaml"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, argv, needle):
    spec = _spec(tmp_path, {"seed": [0]})
    argv = [a.format(spec=spec, out=tmp_path / "o", tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert needle in _one_error_line(capsys)


def _cmd(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "fleetsim", "sweep", str(spec), "--out", str(out), "--backend", "local", "--quiet"]


def test_sigkill_midway_then_resume_equals_uninterrupted(tmp_path):
    """Kill -9 a sweep after a few points; the re-run runs only the rest, and its results.csv is
    byte-identical to a sweep that ran straight through."""
    spec = _spec(tmp_path, {"seed": list(range(8)), "instances": [1, 2]}, workload_options={"num_requests": 60})
    straight = tmp_path / "straight"
    subprocess.run(_cmd(spec, straight), check=True, cwd=REPO)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(spec, killed), cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(list((killed / "points").glob("*.json"))) >= 4 if (killed / "points").is_dir() else False:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (killed / "points").glob("*.json")}
    assert 4 <= len(done) < 16, "the sweep was not killed mid-way"
    assert not (killed / "results.csv").exists()
    rerun = subprocess.run(_cmd(spec, killed)[:-1], cwd=REPO, capture_output=True, text=True, check=True)
    assert f"16 points: {16 - len(done)} run, {len(done)} already done, 0 failed" in rerun.stderr
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (killed / "points").glob("*.json")
            if p.name in done} == done
    assert (killed / "results.csv").read_bytes() == (straight / "results.csv").read_bytes()
    assert (killed / "summary.md").read_bytes() == (straight / "summary.md").read_bytes()
    assert not list((killed / "points").glob("*.tmp"))




@pytest.mark.ray
def test_ray_sweep_equals_local_and_workers_open_no_input_file(ray_session, tmp_path):
    spec = _spec(tmp_path, {"router.policy": ["round_robin", "least_loaded", "power_of_two"], "seed": [0, 1]})
    assert _sweep(spec, tmp_path / "local") == 0
    assert main(["sweep", str(spec), "--out", str(tmp_path / "ray"), "--backend", "ray", "--quiet"]) == 0
    assert (tmp_path / "ray" / "results.csv").read_bytes() == (tmp_path / "local" / "results.csv").read_bytes()
    for p in sorted((tmp_path / "ray" / "points").glob("*.json")):
        rec = json.loads(p.read_text())
        assert rec["status"] == "ok" and rec["inputs_opened"] == [], rec["inputs_opened"]

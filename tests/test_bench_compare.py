"""scripts/bench/compare.py: a worktree of a revision, alternating runs, pair-by-pair ratios."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_compare_head_with_itself(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    try:
        run = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench" / "compare.py"), "HEAD", "a",
                              "--pairs", "2", "--pure-python"],   # (building the worktree's compiled modules takes minutes)
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        row = json.loads(run.stdout.splitlines()[0])
        assert row["scenario"] == "a" and row["pairs"] == 2
        assert len(row["old_wall_s"]) == len(row["new_wall_s"]) == 2
        ratios = [o / n for o, n in zip(row["old_wall_s"], row["new_wall_s"])]
        assert row["speedup_min"] == pytest.approx(min(ratios), abs=2e-3)
        assert row["floor_median_s"] > 0
        assert len(row["old_cpu_s"]) == len(row["new_cpu_s"]) == 2 and min(row["old_cpu_s"]) > 0
        cpu_ratios = [o / n for o, n in zip(row["old_cpu_s"], row["new_cpu_s"])]
        assert row["cpu_speedup_median"] == pytest.approx(sorted(cpu_ratios)[0] / 2 + sorted(cpu_ratios)[1] / 2,
                                                          abs=2e-3)
        assert "| a |" in run.stdout
        assert any(p.name.startswith("fleetsim-compare-") for p in tmp_path.iterdir())
        bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench" / "compare.py"), "no-such-rev"],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        assert bad.returncode != 0 and "is not a commit" in bad.stderr
    finally:
        for p in tmp_path.glob("fleetsim-compare-*"):
            subprocess.run(["git", "worktree", "remove", "--force", str(p)], cwd=ROOT, capture_output=True)


def test_scenario_without_async_scheduling_is_the_old_arithmetic():
    """`scenarios.py a --no-async-scheduling` (what compare.py's `--new-arg` passes to the working
    tree only) runs the replay with synchronous scheduling: its TTFT mean is BENCHMARKS.md's
    synchronous figure, 6815.7 ms, which the code before async scheduling also gave."""
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench" / "scenarios.py"), "a", "--one",
                          "--no-async-scheduling"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    row = json.loads(run.stdout.splitlines()[-1])
    assert row["requests"] == 300 and row["ttft_mean_ms"] == 6815.73

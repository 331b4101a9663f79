"""scripts/bench/memory.py: peak RSS of a synthetic run, as /usr/bin/time -v reports it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_memory_script_reports_the_run():
    if not os.access("/usr/bin/time", os.X_OK):
        pytest.skip("needs /usr/bin/time")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench" / "memory.py"), "--requests", "300",
                          "--instances", "2"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout.splitlines()[-1])
    assert doc["tree"] == str(ROOT) and doc["instances"] == 2
    assert doc["workload"] == "synth:n=300,rate=40,prompt=128,output=4,seed=1"
    assert 20 < doc["max_rss_mb"] < 500 and doc["wall_s"] > 0

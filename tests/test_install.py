"""A fresh virtualenv installs fleetsim as one package and runs `fleetsim.simulate` from it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = """
import fleetsim
r = fleetsim.simulate(fleetsim.CONFIGS / "clusters" / "rtxpro6000-llama8b.yaml",
                      fleetsim.CONFIGS / "workloads" / "sharegpt-llama-3.1-8b-300-sps10.jsonl", num_requests=20)
print(fleetsim.__file__)
print(r.summary["num_requests"], len(r.requests) if hasattr(r.requests, "__len__") else -1)
"""


@pytest.mark.slow
def test_fresh_virtualenv_install(tmp_path):
    # a copy of the sources (tracked and not ignored), so the build leaves nothing in the checkout
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    venv = tmp_path / "venv"
    # numpy, pyyaml, ... come from this interpreter's site-packages (no download); fleetsim itself
    # is built and installed into the venv, not in editable mode
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    # pure Python (FLEETSIM_PURE_PYTHON=1): compiling the hot modules would take minutes here, and
    # tests/test_compiled_modules.py covers them in the install the suite runs on
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
                   check=True, cwd=tmp_path, env={**os.environ, "FLEETSIM_PURE_PYTHON": "1"})
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLEETSIM_CONFIGS")}
    run = subprocess.run([py, "-c", SNIPPET], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    where, counts = run.stdout.splitlines()
    assert where.startswith(str(venv)), where          # the installed copy, not the checkout
    assert counts == "20 20"
    show = subprocess.run([py, "-m", "pip", "show", "-f", "fleetsim"], capture_output=True, text=True,
                          check=True, cwd=tmp_path).stdout
    listed = [line.strip() for line in show.split("Files:", 1)[1].splitlines() if line.strip()]
    tops = {p.split("/")[0] for p in listed if not p.startswith("..")}
    assert tops <= {"fleetsim", f"fleetsim-{_version(src)}.dist-info"}, tops
    assert "fleetsim/cluster/simulation.py" in listed
    assert any(p.startswith("fleetsim/configs/perf/RTXPRO6000/") for p in listed)


def _version(src: Path) -> str:
    return (src / "cluster" / "VERSION").read_text().strip()

"""`--ray-address` joins a running multi-node Ray cluster (head + one worker node on 127.0.0.1)."""
import subprocess
import sys
import textwrap

import pytest

from fleet_helpers import FLEET_CLUSTER, EXAMPLE_WORKLOAD, REPO, outputs, run_cli

pytestmark = pytest.mark.ray
pytest.importorskip("ray")

SCRIPT = textwrap.dedent("""
    import os, subprocess, sys
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                       "object_store_memory": 100 * 2**20})
    c.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    try:
        r = subprocess.run([sys.executable, "-m", "fleetsim.cluster.cli", "run", *sys.argv[1:], "--backend", "ray",
                            "--ray-address", c.address, "--quiet"], capture_output=True, text=True, timeout=240)
        sys.stderr.write(r.stderr)
        sys.exit(r.returncode)
    finally:
        c.shutdown()
""")


def test_join_existing_two_node_cluster_matches_local(tmp_path):
    args = ["--cluster", str(FLEET_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--num-requests", "80"]
    res = subprocess.run([sys.executable, "-c", SCRIPT, *args, "--out", str(tmp_path / "joined")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    local = run_cli(tmp_path / "local", "--num-requests", "80")
    assert outputs(tmp_path / "joined") == outputs(local)


def test_unreachable_ray_address_fails_fast(tmp_path, capsys):
    from fleetsim.cluster.cli import main
    code = main(["run", "--cluster", str(FLEET_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--out",
                 str(tmp_path / "o"), "--backend", "ray", "--ray-address", "127.0.0.1:1", "--quiet"])
    assert code == 2
    assert "--ray-address 127.0.0.1:1: no Ray cluster answers there" in capsys.readouterr().err

"""Joining Ray: `--ray-address`, `RAY_ADDRESS` and the cluster `ray start` recorded join a running
multi-node cluster (head + one worker node on 127.0.0.1) with no start-up arguments; a Ray that
fleetsim started does not outlive a driver killed with SIGKILL."""
import os
import signal
import subprocess
import sys
import textwrap
import time

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
    out, args = sys.argv[1], sys.argv[2:]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # the flag; the variable; neither (the address the head recorded, as `ray start` does)
    ways = [(["--ray-address", c.address], env), ([], {**env, "RAY_ADDRESS": c.address}), ([], env)]
    try:
        for k, (flag, run_env) in enumerate(ways):
            r = subprocess.run([sys.executable, "-m", "fleetsim.cluster.cli", "run", *args, "--backend", "ray",
                                *flag, "--out", f"{out}{k}", "--quiet"], capture_output=True, text=True,
                               timeout=240, env=run_env)
            sys.stderr.write(r.stderr)
            if r.returncode:
                sys.exit(r.returncode)
    finally:
        c.shutdown()
""")


def test_join_existing_two_node_cluster_matches_local(tmp_path):
    """Joined three ways, with no start-up argument refused: one stderr-free run each, local bytes."""
    args = ["--cluster", str(FLEET_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--num-requests", "80"]
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "joined"), *args], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    local = outputs(run_cli(tmp_path / "local", "--num-requests", "80"))
    for k in range(3):
        assert outputs(tmp_path / f"joined{k}") == local, f"join way {k} differs from local"


DRIVER = textwrap.dedent("""
    import time
    from fleetsim.cluster.backends.ray_backend import start_ray, warm_actors
    ray, started = start_ray("local", num_cpus=1, object_store_mb=100)
    warm_actors(ray, 2)
    print(ray._private.worker.global_worker.node.session_name, flush=True)
    time.sleep(600)
""")


def test_ray_started_by_fleetsim_dies_with_a_sigkilled_driver():
    """Only this driver's session is looked at (other Ray sessions on the machine are left alone)."""
    from fleetsim.cluster.backends.ray_reaper import _cmdline, _processes, session_processes
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        session = driver.stdout.readline().strip()
        assert session.startswith("session_")
        time.sleep(1.5)                          # the reaper has scanned the started processes
        ray_procs = session_processes(driver.pid, session, _processes())
        names = [_cmdline(p) for p in ray_procs]
        assert any(b"raylet" in n for n in names) and any(b"gcs_server" in n for n in names)
        assert sum(n.startswith(b"ray::HostActorImpl") for n in names) == 2
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 5
    while True:
        table = _processes()
        left = {p for p, start in ray_procs.items() if p in table and table[p][1] == start
                and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert not left, f"Ray processes of {session} alive 5 s after SIGKILL of the driver: {sorted(left)}"


def test_unreachable_ray_address_fails_fast(tmp_path, capsys):
    from fleetsim.cluster.cli import main
    code = main(["run", "--cluster", str(FLEET_CLUSTER), "--workload", str(EXAMPLE_WORKLOAD), "--out",
                 str(tmp_path / "o"), "--backend", "ray", "--ray-address", "127.0.0.1:1", "--quiet"])
    assert code == 2
    assert "--ray-address 127.0.0.1:1: no Ray cluster answers there" in capsys.readouterr().err

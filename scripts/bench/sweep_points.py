"""A 200-point sweep, local-sequential vs Ray (2 CPUs, started beforehand): points per minute.

Usage: python3 scripts/bench/sweep_points.py SPEC.yaml (writes its sweeps under the temporary folder; see BENCHMARKS.md)."""
import os
import shutil
import sys
import tempfile
import time

from fleetsim.cluster.backends.ray_backend import start_ray
from fleetsim.cluster.experiments.spec import load_spec
from fleetsim.cluster.experiments.sweep import run_sweep

spec = load_spec(sys.argv[1])
t0 = time.perf_counter(); start_ray(num_cpus=2); t_ray = time.perf_counter() - t0
for backend in ("local", "ray", "local", "ray"):          # alternated: the machine is shared
    out = os.path.join(tempfile.gettempdir(), f"fleetsim-sweep-bench-{backend}")
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    done = run_sweep(spec, out, backend)
    dt = time.perf_counter() - t0
    print(f"{backend}: {done['ran']} points in {dt:.2f} s = {done['ran'] / dt * 60:.0f} points/min", flush=True)
print(f"ray start-up {t_ray:.2f} s")

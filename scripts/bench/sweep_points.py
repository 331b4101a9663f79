"""A 200-point sweep, local-sequential vs Ray (2 CPUs, started beforehand): points per minute.

Usage: python3 scripts/bench/sweep_points.py SPEC.yaml [PAIRS] (default 5 alternating pairs, after
one unmeasured Ray sweep that starts its workers; writes its sweeps under the temporary folder;
see BENCHMARKS.md). Prints each run, then the medians and the median of the pair-by-pair ratios."""
import os
import shutil
import statistics
import sys
import tempfile
import time

from fleetsim.cluster.backends.ray_backend import start_ray
from fleetsim.cluster.experiments.spec import load_spec
from fleetsim.cluster.experiments.sweep import run_sweep

spec = load_spec(sys.argv[1])
pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
t0 = time.perf_counter(); start_ray(num_cpus=2); t_ray = time.perf_counter() - t0


def timed(backend: str, show: bool = True) -> float:
    out = os.path.join(tempfile.gettempdir(), f"fleetsim-sweep-bench-{backend}")
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    done = run_sweep(spec, out, backend)
    dt = time.perf_counter() - t0
    if show:
        print(f"{backend}: {done['ran']} points in {dt:.2f} s = {done['ran'] / dt * 60:.0f} points/min", flush=True)
    return dt


t0 = time.perf_counter(); timed("ray", show=False); t_warm = time.perf_counter() - t0
times = {"local": [], "ray": []}
for _ in range(pairs):                      # alternated, so that a drift of the machine hits both
    for backend in ("local", "ray"):
        times[backend].append(timed(backend))
ratios = [loc / ray for loc, ray in zip(times["local"], times["ray"])]
print(f"ray start-up {t_ray:.2f} s, first (warm-up) Ray sweep {t_warm:.2f} s")
print(f"medians: local {statistics.median(times['local']):.2f} s, ray {statistics.median(times['ray']):.2f} s; "
      f"ray/local speed ratio, median of {pairs} pairs: {statistics.median(ratios):.2f}x "
      f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)})")

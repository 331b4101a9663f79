"""The part of a one-instance scenario's process time that does not depend on simulation speed.

    python scripts/bench/floor.py b          # also a, e1 (one instance each)

Measures, each as the best of a few runs on this machine: the interpreter's start-up, the
imports of a `fleetsim run`, reading the workload, and, for the requests of one full run, the
output work a run does whatever its engine costs: a `requests.csv` line per request (the ITL
list as text), the record arrays, the summary statistics of the ITL gaps and writing the lines.
It also times the engine alone (the simulation) on the same requests for comparison. The sum of
the first group is a floor for the whole process: no engine speed-up brings the process under it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scenarios import REPO, scenario  # noqa: E402

CLI_IMPORTS = "import fleetsim.cluster.cli, fleetsim.cluster.fleet, fleetsim.cluster.report, fleetsim.cluster.workloads, fleetsim.cluster.backends.local"


def best_of(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def process_s(code: str, runs: int = 5) -> float:
    """Best whole-process wall time of `python -c code`, run from the repository."""
    return best_of(lambda: subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True), runs)


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "b"
    if name not in ("a", "b", "e1"):
        raise SystemExit("floor.py measures one-instance scenarios: a, b or e1")
    sys.path.insert(0, REPO)
    import numpy as np

    from fleetsim.cluster.fleet import load_cost_model, make_engine
    from fleetsim.cluster.metrics import request_matrix, stats_ms
    from fleetsim.cluster.requests_csv import format_lines
    from fleetsim.cluster.records import RecordBatch

    start = process_s("pass")
    imports = process_s(CLI_IMPORTS) - start
    load = best_of(lambda: scenario(name, None), 3)

    config, workload = scenario(name, None)
    spec = config.instances[0]
    engine = make_engine(load_cost_model(spec), spec, 0)
    for req in workload:
        engine.add_request(req)
    t0 = time.perf_counter()
    engine.run_to_completion()
    simulate = time.perf_counter() - t0
    reqs = engine.drain_finished()

    models = {0: spec.model}
    fixed, itls, cells = request_matrix(reqs), [r.itl for r in reqs], [r.itl_cell() for r in reqs]
    lines = format_lines(fixed, cells, models)
    itl = np.fromiter((g for r in itls for g in r), dtype=np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        def write():
            with open(os.path.join(tmp, "requests.csv"), "w") as fh:
                fh.writelines(lines)
        parts = {
            "interpreter start-up": start,
            "imports of a run": imports,
            "reading the workload": load,
            "requests.csv lines (format_lines)": best_of(lambda: format_lines(fixed, cells, models)),
            "record arrays (from_requests less format_lines)": max(
                0.0, best_of(lambda: RecordBatch.from_requests(reqs, models)) - best_of(lambda: format_lines(fixed, cells, models))),
            "ITL statistics": best_of(lambda: stats_ms(itl.copy())),
            "writing requests.csv": best_of(write),
        }
    print(f"scenario {name}: {len(reqs)} requests, {len(itl)} ITL gaps, {engine.steps} engine steps")
    for what, s in parts.items():
        print(f"  {what:44s} {s:6.3f} s")
    print(f"  {'floor (sum)':44s} {sum(parts.values()):6.3f} s")
    print(f"  {'engine alone (run_to_completion)':44s} {simulate:6.3f} s  ({simulate / engine.steps * 1e6:.1f} us/step)")


if __name__ == "__main__":
    main()

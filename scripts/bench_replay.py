"""Time the shipped 300-request RTXPRO6000 replay as a whole process (python start-up, imports,
parsing, simulation, output); prints each run and the median of N (default 5).

    python scripts/bench_replay.py [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    times = []
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "fleetsim.cluster.cli", "run",
               "--cluster", os.path.join(REPO, "configs", "clusters", "rtxpro6000-llama8b.yaml"),
               "--workload", os.path.join(REPO, "configs", "workloads", "sharegpt-llama-3.1-8b-300-sps10.jsonl"),
               "--out", out, "--quiet", "--overwrite"]
        for i in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=REPO)
            times.append(time.perf_counter() - t0)
            print(f"run {i + 1}: {times[-1]:.3f} s")
    print(f"median of {args.runs}: {statistics.median(times):.3f} s")


if __name__ == "__main__":
    main()

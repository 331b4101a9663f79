"""What the run invariants (cluster/invariants.py) cost on the 300-request replay.

Times every invariant call inside the run (the driver's RunChecker and each instance's
instance_checks) and prints their share of the run's CPU time (process time, which a busy
machine disturbs less than wall time), per repeat:

    python3 scripts/bench/invariants_cost.py [--repeat 5] [--level basic|full]
"""
from __future__ import annotations

import argparse
import time

import fleetsim
from fleetsim.cluster import host, invariants

spent = [0.0]


def timed(fn):
    def call(*args, **kwargs):
        t0 = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - t0
    return call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--level", choices=invariants.LEVELS, default="basic")
    args = p.parse_args()
    invariants.RunChecker.records = timed(invariants.RunChecker.records)
    invariants.RunChecker.end = staticmethod(timed(invariants.RunChecker.end))
    host.instance_checks = timed(host.instance_checks)
    for _ in range(args.repeat):
        spent[0] = 0.0
        t0 = time.process_time()
        fleetsim.simulate(fleetsim.CONFIGS / "clusters" / "rtxpro6000-llama8b.yaml",
                          fleetsim.CONFIGS / "workloads" / "sharegpt-llama-3.1-8b-300-sps10.jsonl",
                          check_invariants=args.level)
        wall = time.process_time() - t0
        print(f"run {wall:.3f} CPU s, invariants {spent[0] * 1e3:.2f} ms = {100 * spent[0] / wall:.2f} %")


if __name__ == "__main__":
    main()

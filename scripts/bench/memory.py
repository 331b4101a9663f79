"""Peak memory of a long run: `fleetsim run` on a synthetic workload under `/usr/bin/time -v`.

    python3 scripts/bench/memory.py --requests 1000000                 # 1 M requests, one instance
    python3 scripts/bench/memory.py --requests 1000000 --output 128    # long outputs: 127 M ITL gaps
    python3 scripts/bench/memory.py --requests 300000 --tree /tmp/old  # another checkout (before/after)

The cluster is benchmark scenario e1's (configs/clusters/a100-llama70b-tp2-vidur.yaml: Llama-3.1-70B,
TP 2, A100, roofline) with `--instances` replicas (round_robin); the workload is
`synth:n=N,rate=R,prompt=P,output=O,seed=1` with R = 20 req/s per instance by default (short
outputs keep a million requests to minutes; that rate is ~60 % of one instance's capacity at
128/4). The run writes every output file (requests.csv with its ITL lists) into a temporary
folder. Prints one JSON line: the tree, the workload, the whole-process wall time and the
maximum resident set size as the OS counts it (`/usr/bin/time -v`), and the load average before
the run (the machine is shared: wall times are only comparable in one sitting, peak RSS is).
For scenario d (1024 instances, 1 M requests of 512/128), run
`/usr/bin/time -v python3 scripts/bench/scenarios.py d --one` (BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--output", type=int, default=4)
    ap.add_argument("--rate", type=float, default=20.0, help="req/s per instance")
    ap.add_argument("--tree", default=REPO, help="the checkout to run (default: this one)")
    args = ap.parse_args()
    tree = os.path.abspath(args.tree)
    workload = (f"synth:n={args.requests},rate={args.rate * args.instances:g},prompt={args.prompt},"
                f"output={args.output},seed=1")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as out:
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "fleetsim", "run", "--cluster",
               os.path.join(tree, "configs", "clusters", "a100-llama70b-tp2-vidur.yaml"), "--workload", workload,
               "--instances", str(args.instances), "--router", "round_robin", "--out", os.path.join(out, "run"),
               "--quiet"]
        res = subprocess.run(cmd, cwd=tree, env={**os.environ, "PYTHONPATH": tree}, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"memory.py: the run failed: {res.stderr.strip().splitlines()[-1:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", res.stderr).group(1)
    seconds = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":"))))
    print(json.dumps({"tree": tree, "instances": args.instances, "workload": workload, "wall_s": round(seconds, 1),
                      "max_rss_mb": round(rss_kb / 1024), "load_before": [round(x, 2) for x in load]}))


if __name__ == "__main__":
    main()

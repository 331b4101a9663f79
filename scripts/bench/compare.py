"""Same-sitting speed ratios: a git revision against the working tree, scenario by scenario.

    python3 scripts/bench/compare.py OLD_REV [SCENARIO ...] [--pairs 5] [--requests N]

Builds (or reuses) a git worktree of OLD_REV under the system temp folder, then for each scenario
of scripts/bench/scenarios.py runs it N times in each tree, alternating (old, new, old, new, ...),
each run a fresh process of that tree's own `scenarios.py NAME --one` with the tree on PYTHONPATH
(so each side runs its own code and its own definition of the scenario). Before every pair it
times the machine's floor, `python3 -c 'import numpy'`. It prints one JSON line per scenario:
whole-process wall seconds of every run, their medians, the pair-by-pair ratio old/new (> 1: the
working tree is faster) with its median, min and max, and the floor's median; the same for
the CPU seconds of each run (the child's user + sys, from getrusage: less sensitive than wall
time to other jobs on a shared machine), the largest peak RSS of each side's runs (as each
scenario reports it) and the load average at the end; then a markdown table
of the same. Machines here differ by up to 3x from day to day, so only the ratios, taken
in one sitting, are comparable across days.

Bytecode: both trees are byte-compiled first (`compileall`, as `pip install` does), so each run
loads cached bytecode as an installed fleetsim would. (This workplace sets
PYTHONDONTWRITEBYTECODE=1, under which every process would recompile every module from source:
that charges a tree for its source size, about 0.1-0.2 s of scenario a here.) `--no-bytecode-cache`
measures that way instead: the trees' cached bytecode is removed and none is written.

Compiled modules: a tree whose setup.py builds them (fleetsim/compiled_modules.py) gets its builds
made first (`setup.py build_ext --inplace`, what `pip install -e .` runs), so each side runs as
installed. `--pure-python` sets FLEETSIM_PURE_PYTHON=1 on both sides instead: the .py files only.

Scenario a is the 300-request replay; `--requests` shortens b-e. Extra arguments after `--` go
to both sides' scenarios.py (e.g. `-- --backend ray`); `--new-arg ARG` (repeatable) goes to the
working tree's side only: `--new-arg=--no-async-scheduling` compares like with like against a
revision from before async scheduling became the default (the old side has no such flag and
schedules synchronously).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worktree(rev: str) -> str:
    """A detached worktree of `rev` (reused when it is already there at that commit)."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO, capture_output=True,
                            text=True)
    if commit.returncode != 0:
        raise SystemExit(f"compare.py: {rev!r} is not a commit of {REPO}")
    sha = commit.stdout.strip()
    path = os.path.join(tempfile.gettempdir(), f"fleetsim-compare-{sha[:12]}")
    if not os.path.isdir(path):
        subprocess.run(["git", "worktree", "add", "--detach", path, sha], cwd=REPO, check=True,
                       capture_output=True)
    return path


def byte_compile(tree: str) -> None:
    """Cached bytecode for the tree's Python sources, as an install writes it."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-x", r"/(tests|\.git)/", tree], check=True,
                   capture_output=True)


def build_compiled(tree: str) -> None:
    """The tree's compiled modules, as its install builds them (none before setup.py did)."""
    if os.path.isfile(os.path.join(tree, "setup.py")):
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, check=True,
                       capture_output=True)


def remove_bytecode(tree: str) -> None:
    """The tree's cached bytecode removed (its `__pycache__` folders)."""
    for folder, subdirs, _ in os.walk(tree):
        subdirs[:] = [d for d in subdirs if d != ".git"]
        if "__pycache__" in subdirs:
            shutil.rmtree(os.path.join(folder, "__pycache__"))
            subdirs.remove("__pycache__")


def timed(cmd: list[str], tree: str, env_extra: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds: the child's user + sys, its stdout) of one run."""
    env = {**os.environ, "PYTHONPATH": tree, **(env_extra or {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SystemExit(f"compare.py: {' '.join(cmd[1:3])} failed in {tree}: {last}")
    return wall, cpu, res.stdout


def compare(old: str, new: str, name: str, pairs: int, extra: list[str], new_extra: tuple = (),
            env_extra: dict | None = None) -> dict:
    floor, walls, cpus, rss = [], {"old": [], "new": []}, {"old": [], "new": []}, {"old": [], "new": []}
    for _ in range(pairs):
        floor.append(timed([sys.executable, "-c", "import numpy"], new, env_extra)[0])
        for side, tree in (("old", old), ("new", new)):
            own = list(new_extra) if side == "new" else []
            cmd = [sys.executable, os.path.join(tree, "scripts", "bench", "scenarios.py"), name, "--one", *extra, *own]
            wall, cpu, out = timed(cmd, tree, env_extra)
            walls[side].append(wall)
            cpus[side].append(cpu)
            rss[side].append(json.loads(out.strip().splitlines()[-1])["peak_rss_mb"])
    ratios = [o / n for o, n in zip(walls["old"], walls["new"])]
    cpu_ratios = [o / n for o, n in zip(cpus["old"], cpus["new"])]
    return {"scenario": name, "pairs": pairs, "old_wall_s": [round(w, 3) for w in walls["old"]],
            "new_wall_s": [round(w, 3) for w in walls["new"]],
            "old_median_s": round(statistics.median(walls["old"]), 3),
            "new_median_s": round(statistics.median(walls["new"]), 3),
            "speedup_median": round(statistics.median(ratios), 3), "speedup_min": round(min(ratios), 3),
            "speedup_max": round(max(ratios), 3), "floor_median_s": round(statistics.median(floor), 3),
            "old_cpu_s": [round(c, 3) for c in cpus["old"]], "new_cpu_s": [round(c, 3) for c in cpus["new"]],
            "cpu_speedup_median": round(statistics.median(cpu_ratios), 3), "cpu_speedup_min": round(min(cpu_ratios), 3),
            "cpu_speedup_max": round(max(cpu_ratios), 3), "old_peak_rss_mb": max(rss["old"]),
            "new_peak_rss_mb": max(rss["new"]), "load_average": [round(x, 2) for x in os.getloadavg()]}


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old_rev")
    ap.add_argument("scenarios", nargs="*", default=["a"])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--requests", type=int, help="passed to both sides' scenarios (b-e)")
    ap.add_argument("--new-arg", action="append", default=[], help="passed to the working tree's scenarios only")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="every process compiles the sources afresh (no cached bytecode read or written)")
    ap.add_argument("--pure-python", action="store_true",
                    help="FLEETSIM_PURE_PYTHON=1 on both sides: no compiled modules built or loaded")
    args = ap.parse_args(argv)
    if args.pairs < 1:
        raise SystemExit("compare.py: --pairs must be >= 1")
    if args.requests:
        extra = ["--requests", str(args.requests), *extra]
    old = worktree(args.old_rev)
    env_extra = {"PYTHONDONTWRITEBYTECODE": "1"} if args.no_bytecode_cache else {}
    if args.pure_python:
        env_extra["FLEETSIM_PURE_PYTHON"] = "1"
    for tree in (old, REPO):
        remove_bytecode(tree) if args.no_bytecode_cache else byte_compile(tree)
        if not args.pure_python:
            build_compiled(tree)
    rows = []
    for name in args.scenarios:
        rows.append(compare(old, REPO, name, args.pairs, extra, tuple(args.new_arg), env_extra))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n| scenario | {args.old_rev} median s | working tree median s | speed-up (median of pairs, min-max) "
          f"| CPU speed-up (median, min-max) | peak RSS MB (old / new) | floor s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scenario']} | {r['old_median_s']} | {r['new_median_s']} | {r['speedup_median']}x "
              f"({r['speedup_min']}-{r['speedup_max']}) | {r['cpu_speedup_median']}x ({r['cpu_speedup_min']}-"
              f"{r['cpu_speedup_max']}) | {r['old_peak_rss_mb']} / {r['new_peak_rss_mb']} | {r['floor_median_s']} |")


if __name__ == "__main__":
    main()

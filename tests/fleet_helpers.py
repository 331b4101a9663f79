"""Helpers for fleet tests: the shipped example, a session workload, output comparison."""
from __future__ import annotations

import json
from pathlib import Path

from fleetsim.cluster.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CLUSTER = REPO / "configs" / "clusters" / "rtxpro6000-llama8b.yaml"
FLEET_CLUSTER = REPO / "configs" / "clusters" / "fleet-32-least-loaded.yaml"
EXAMPLE_WORKLOAD = REPO / "configs" / "workloads" / "sharegpt-llama-3.1-8b-300-sps10.jsonl"


def write_session_workload(path: Path, sessions: int = 12, flat: int = 40) -> Path:
    """Flat requests plus multi-turn sessions whose turns share a growing prefix."""
    lines = []
    for i in range(flat):
        lines.append({"input_toks": 200 + 37 * i % 300, "output_toks": 20 + 11 * i % 90,
                      "arrival_time_ns": 25_000_000 * i})
    for s in range(sessions):
        history = [1000 + s] * 64
        subs = []
        for turn in range(3):
            prompt = history + [7 + turn] * 48
            subs.append({"input_toks": len(prompt), "output_toks": 30 + 5 * turn, "input_tok_ids": prompt,
                         "tool_duration_ns": 40_000_000 * (turn + 1)})
            history = prompt + [9] * 30
        lines.append({"session_id": f"s{s}", "arrival_time_ns": 60_000_000 * s + 7, "sub_requests": subs})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def run_cli(out: Path, *extra: str, cluster: Path = FLEET_CLUSTER, workload: Path = EXAMPLE_WORKLOAD) -> Path:
    code = main(["run", "--cluster", str(cluster), "--workload", str(workload), "--out", str(out), "--quiet",
                 *extra])
    assert code == 0
    return out


OUTPUT_FILES = ("requests.csv", "summary.json", "timeseries.csv", "timeseries_fleet.csv")


def outputs(out: Path, run_block: bool = False) -> tuple:
    """The bytes of each of OUTPUT_FILES, in that order (all deterministic; None if absent).

    summary.json's `run` block (provenance: how the inputs and options were given) is left out
    unless `run_block`, so runs of the same simulation given in different ways compare equal."""
    files = [(out / name).read_bytes() if (out / name).exists() else None for name in OUTPUT_FILES]
    i = OUTPUT_FILES.index("summary.json")
    if not run_block and files[i] is not None:
        summary = json.loads(files[i])
        summary.pop("run", None)
        files[i] = json.dumps(summary, indent=2).encode()
    return tuple(files)


def instance_of(out: Path) -> dict[int, int]:
    rows = (out / "requests.csv").read_text().splitlines()[1:]
    return {int(r.split(",")[1]): int(r.split(",")[0]) for r in rows}

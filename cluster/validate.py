"""Compare a simulated run with a real vLLM run of the same workload.

Real run layout: `requests.jsonl` (request_id, input_toks, output_toks, arrival_time [epoch s],
queued_ts, scheduled_ts, first_token_ts, last_token_ts [engine monotonic s]) + `meta.json`.
`queued_ts` is the arrival anchor (arrival_time is on another clock). TTFT = first − anchor;
TPOT = (last − first)/(output − 1) for output > 1; Latency = last − anchor. Distributions are
compared (Mean, Median, P90, P95, P99; linear-interpolated percentiles) and
diff% = (sim − real)/real·100.
"""
from __future__ import annotations

import csv
import os

import numpy as np

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.textfile import json_lines, text_lines

STATS = ("Mean", "Median", "P90", "P95", "P99")
METRICS = ("TTFT", "TPOT", "Latency")


def _stats(ms: np.ndarray) -> dict:
    """Mean and percentiles; NaN for no values (e.g. TPOT when every request has one output)."""
    if len(ms) == 0:
        return dict.fromkeys(STATS, float("nan"))
    p = np.percentile(ms, [50, 90, 95, 99])
    return {"Mean": float(ms.mean()), "Median": float(p[0]), "P90": float(p[1]), "P95": float(p[2]), "P99": float(p[3])}


def load_real(run_dir: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """TTFT / TPOT / Latency in ms from a real vLLM run directory (its first `limit` requests,
    in file order = workload order, when given: `validate --num-requests`)."""
    if limit is not None and limit < 1:
        raise InputError(f"--num-requests must be >= 1, got {limit}")
    path = os.path.join(run_dir, "requests.jsonl")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not found (expected a real vLLM run directory)")
    meta = os.path.join(run_dir, "meta.json")
    if not os.path.isfile(meta):
        raise InputError(f"{meta}: not found (expected a real vLLM run directory)")
    ttft, tpot, lat = [], [], []
    for where, r in json_lines(path, "real run requests"):
        if limit is not None and len(ttft) >= limit:
            break
        try:
            anchor, first, last = float(r["queued_ts"]), float(r["first_token_ts"]), float(r["last_token_ts"])
            out = int(r["output_toks"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: missing or bad field {exc}") from None
        ttft.append((first - anchor) * 1e3)
        lat.append((last - anchor) * 1e3)
        if out > 1:
            tpot.append((last - first) / (out - 1) * 1e3)
    if not ttft:
        raise InputError(f"{path}: no requests")
    return {"TTFT": np.array(ttft), "TPOT": np.array(tpot), "Latency": np.array(lat)}


def load_sim(out_dir: str) -> dict[str, np.ndarray]:
    """TTFT / TPOT / Latency in ms from a fleetsim output directory (requests.csv)."""
    path = os.path.join(out_dir, "requests.csv")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not found (expected a fleetsim run's --out directory, "
                         "run with --requests-detail full or no-itl)")
    csv.field_size_limit(1 << 30)
    ttft, tpot, lat = [], [], []
    reader = csv.DictReader(line for _, line in text_lines(path, "fleetsim requests.csv"))
    for lineno, r in enumerate(reader, 2):
        try:
            ttft.append(int(r["TTFT"]) / 1e6)
            lat.append(int(r["latency"]) / 1e6)
            if int(r["output"]) > 1:
                tpot.append(int(r["TPOT"]) / 1e6)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}:{lineno}: missing or bad field {exc}") from None
    if not ttft:
        raise InputError(f"{path}: no requests")
    return {"TTFT": np.array(ttft), "TPOT": np.array(tpot), "Latency": np.array(lat)}


def compare(real: dict, sim: dict) -> dict:
    """{"TTFT": {"Mean": {"real", "sim", "diff_pct"}, ...}, "TPOT": ..., "Latency": ...}."""
    out = {}
    for m in METRICS:
        rs, ss = _stats(real[m]), _stats(sim[m])
        out[m] = {k: {"real": rs[k], "sim": ss[k], "diff_pct": (ss[k] - rs[k]) / rs[k] * 100 if rs[k] else 0.0}
                  for k in STATS}
    return out


def format_table(result: dict) -> str:
    lines = [f"{'Metric':<16}{'vLLM':>12}{'Sim':>12}{'Diff%':>10}", "-" * 50]
    for m in METRICS:
        for k in STATS:
            c = result[m][k]
            lines.append(f"{m + ' ' + k:<16}{c['real']:>12.1f}{c['sim']:>12.1f}{c['diff_pct']:>+9.1f}%")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"

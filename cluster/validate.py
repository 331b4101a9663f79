"""Compare a simulated run with a real vLLM run of the same workload.

Real run layout: `requests.jsonl` (request_id, input_toks, output_toks, arrival_time [epoch s],
queued_ts, scheduled_ts, first_token_ts, last_token_ts [engine monotonic s]) + `meta.json`.
TTFT = first − anchor; TPOT = (last − first)/(output − 1) for output > 1; Latency = last −
anchor. Distributions are compared (Mean, Median, P90, P95, P99; linear-interpolated
percentiles) and diff% = (sim − real)/real·100.

The anchor (`real_anchor`) is like with like on both sides:
- `engine`: the real run's `queued_ts`, when the engine core took the request from its input
  queue, used when `arrival_time` is on another clock than the token times (the shared vLLM 0.19
  run: epoch against monotonic). The simulated side is measured from requests.csv's `queued`,
  the same moment in the simulation (after the front end, at the step boundary).
- `client`: the real run's `arrival_time`, when it is on the token times' clock (a client-side
  run: every first_token_ts − arrival_time within [0, 1 day]); the simulated side is measured
  from the client's send time, requests.csv's `arrival` (the front end included).
`meta.json` may say `"anchor": "engine"` or `"client"` to override the detection.

Both runs must be of the same workload (`same_workload`): the simulation's request ids are
0..N−1 (workload order) and request i has the input and output lengths of the real run's
request i (the one whose request_id ends in i, as vLLM's benchmark names them "bench-i", else
the i-th line). `--match all` (default) needs the same N; `--match prefix` compares a simulation of the
first N requests (e.g. `--num-requests N`) with the real run's first N.
`validate --sim-from-arrival` measures the simulated side from the client send time whatever
the real anchor: LLMServingSim's own comparison (its simulated arrival against the real
`queued_ts`), which leaves out the wait for the engine's next step boundary.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re

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


ANCHORS = {"engine": ("engine queued_ts", "requests.csv queued"),
           "client": ("client arrival_time", "requests.csv arrival (client send)")}
SAME_CLOCK_S = 86_400.0


def _real_rows(run_dir: str, limit: int | None):
    """(where, record) of the real run's requests (the first `limit`, in file order = workload
    order), and the path of its meta.json."""
    if limit is not None and limit < 1:
        raise InputError(f"--num-requests must be >= 1, got {limit}")
    path = os.path.join(run_dir, "requests.jsonl")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not found (expected a real vLLM run directory)")
    meta = os.path.join(run_dir, "meta.json")
    if not os.path.isfile(meta):
        raise InputError(f"{meta}: not found (expected a real vLLM run directory)")
    rows = []
    for where, r in json_lines(path, "real run requests"):
        if limit is not None and len(rows) >= limit:
            break
        rows.append((where, r))
    if not rows:
        raise InputError(f"{path}: no requests")
    return rows, meta


def _anchor(rows: list, meta: str) -> str:
    """`engine` or `client` (module docstring): meta.json's `anchor`, else whether arrival_time
    is on the token times' clock."""
    text = "".join(line for _, line in text_lines(meta, "real run meta.json"))
    try:
        doc = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise InputError(f"{meta}: malformed JSON ({exc.msg})") from None
    given = doc.get("anchor") if isinstance(doc, dict) else None
    if given is not None:
        if given not in ANCHORS:
            raise InputError(f"{meta}: anchor {given!r}: choose engine or client")
        return given
    try:
        gaps = [float(r["first_token_ts"]) - float(r["arrival_time"]) for _, r in rows]
    except (KeyError, TypeError, ValueError):
        return "engine"
    return "client" if all(0 <= g <= SAME_CLOCK_S for g in gaps) else "engine"


def load_real(run_dir: str, limit: int | None = None) -> dict:
    """TTFT / TPOT / Latency in ms from a real vLLM run directory, and under "anchor" the
    anchor they are measured from (module docstring)."""
    rows, meta = _real_rows(run_dir, limit)
    anchor = _anchor(rows, meta)
    field = "queued_ts" if anchor == "engine" else "arrival_time"
    ttft, tpot, lat, lengths = [], [], [], []
    for where, r in rows:
        try:
            start, first, last = float(r[field]), float(r["first_token_ts"]), float(r["last_token_ts"])
            out = int(r["output_toks"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: missing or bad field {exc}") from None
        if not all(math.isfinite(v) for v in (start, first, last)):
            raise InputError(f"{where}: {field}, first_token_ts and last_token_ts must be finite numbers, got "
                             f"{start}, {first}, {last}")
        ttft.append((first - start) * 1e3)
        lat.append((last - start) * 1e3)
        lengths.append((r.get("request_id"), r.get("input_toks"), out))
        if out > 1:
            tpot.append((last - first) / (out - 1) * 1e3)
    return {"TTFT": np.array(ttft), "TPOT": np.array(tpot), "Latency": np.array(lat), "anchor": anchor,
            "lengths": _in_workload_order(lengths), "where": os.path.join(run_dir, "requests.jsonl")}


def _in_workload_order(rows: list) -> list:
    """(input, output) of the real requests in workload order: by the number that ends each
    request_id ("bench-17" is request 17) when those are 0..N−1, else in file order."""
    nums = [re.search(r"(\d+)$", str(rid)) for rid, _, _ in rows]
    if all(nums) and sorted(int(m.group(1)) for m in nums) == list(range(len(rows))):
        order = sorted(range(len(rows)), key=lambda i: int(nums[i].group(1)))
        rows = [rows[i] for i in order]
    return [(inp, out) for _, inp, out in rows]


def load_sim(out_dir: str, anchor: str = "engine") -> dict[str, np.ndarray]:
    """TTFT / TPOT / Latency in ms from a fleetsim output directory (requests.csv), from the
    client's send time or (`engine`) from the `queued` column."""
    path = os.path.join(out_dir, "requests.csv")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not found (expected a fleetsim run's --out directory, "
                         "run with --requests-detail full or no-itl)")
    csv.field_size_limit(1 << 30)
    ttft, tpot, lat, lengths = [], [], [], {}
    engine = anchor == "engine"
    reader = csv.DictReader(line for _, line in text_lines(path, "fleetsim requests.csv"))
    if reader.fieldnames and "rejected" in reader.fieldnames:
        raise InputError(f"{path}: a run with admission control (requests.csv has a rejected column); validate "
                         "compares every request with the real run's, run the simulation without router.admission")
    for lineno, r in enumerate(reader, 2):
        try:
            shift = int(r["queued"]) - int(r["arrival"]) if engine else 0
            lengths[int(r["request id"])] = (int(r["input"]), int(r["output"]))
            ttft.append((int(r["TTFT"]) - shift) / 1e6)
            lat.append((int(r["latency"]) - shift) / 1e6)
            if int(r["output"]) > 1:
                tpot.append(int(r["TPOT"]) / 1e6)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}:{lineno}: missing or bad field {exc}") from None
    if not ttft:
        raise InputError(f"{path}: no requests")
    return {"TTFT": np.array(ttft), "TPOT": np.array(tpot), "Latency": np.array(lat), "lengths": lengths,
            "where": path}


MATCHES = ("all", "prefix")


def same_workload(real: dict, sim: dict, match: str = "all") -> int:
    """Check that `sim` simulated the real run's workload (module docstring); returns the number
    of requests to compare (with `prefix`, reload the real run with that limit)."""
    if match not in MATCHES:
        raise InputError(f"--match {match!r}: choose one of {', '.join(MATCHES)}")
    lengths, n_real = sim["lengths"], len(real["lengths"])
    n = len(lengths)
    if sorted(lengths) != list(range(n)):
        raise InputError(f"{sim['where']}: request ids are not 0..{n - 1} (a run with warm-up requests or a "
                         "subset of another workload cannot be compared request for request)")
    if n != n_real and not (match == "prefix" and n < n_real):
        hint = "; pass --match prefix to compare with the real run's first requests" if n < n_real else ""
        raise InputError(f"{sim['where']}: {n} requests, the real run {real['where']} has {n_real}{hint}")
    for i in range(n):
        if tuple(real["lengths"][i]) != lengths[i]:
            raise InputError(f"{sim['where']}: request {i} has {lengths[i][0]} input / {lengths[i][1]} output "
                             f"tokens, the real run's has {real['lengths'][i][0]} / {real['lengths'][i][1]}: not the "
                             "same workload")
    return n


def anchor_line(real_anchor: str, sim_anchor: str) -> str:
    """The line `validate` prints above its table."""
    return f"anchor: real {ANCHORS[real_anchor][0]}, sim {ANCHORS[sim_anchor][1]}\n"


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

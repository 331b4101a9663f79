"""trace.json (`fleetsim run --trace`): the traced instances' steps as a Chrome / Perfetto trace.

`TraceSpec` says what to trace: `instances` (indices; None = all) and a window [start, end) of
simulated time in ns (`--trace-window S:E` in seconds; open ends allowed). Each traced instance
gets a `instance/trace.py` StepTracer (local backend; the Ray backend refuses `--trace` for now).

The file is the Trace Event Format's JSON object form (`{"traceEvents": [...]}`), times in µs of
simulated time (ns / 1000, exact decimals), ordered by (instance, time):
- one process per traced instance (`pid` = instance index, named "instance N"), thread 0 "steps";
- one complete event (`ph: X`) per engine step that starts in the window, named after its batch
  ("prefill", "decode" or "mixed"), args: prefill_chunks [[tokens, context], ...], decodes,
  tokens, kv_blocks_used after the step, requests [[id, tokens], ...], ops (the cost model's
  per-op ns);
- each request a step of the window touched, once finished, as an async slice (`ph: b`/`e`, cat
  "request", id = request id) on its instance from arrival to its last token, with an instant
  event (`ph: n`) at its first token; args give the three times in ns (the same numbers as
  requests.csv's arrival, arrival + TTFT and end_time).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from fleetsim.cluster.errors import InputError


@dataclass(frozen=True)
class TraceSpec:
    instances: tuple | None = None
    start_ns: int = 0
    end_ns: int | None = None


def parse_trace_spec(instances: str | None, window: str | None) -> TraceSpec:
    """From `--trace-instances 0,3` and `--trace-window S:E` (seconds; either end may be empty)."""
    idx = None
    if instances:
        try:
            idx = tuple(sorted({int(x) for x in instances.split(",") if x.strip()}))
        except ValueError:
            raise InputError(f"--trace-instances {instances!r}: expected instance indices, e.g. 0,3") from None
        if not idx or idx[0] < 0:
            raise InputError(f"--trace-instances {instances!r}: expected instance indices >= 0, e.g. 0,3")
    start, end = 0, None
    if window:
        a, sep, b = window.partition(":")
        try:
            start = round(float(a) * 1e9) if a.strip() else 0
            end = round(float(b) * 1e9) if b.strip() else None
        except ValueError:
            start = -1
        if not sep or start < 0 or (end is not None and end <= start):
            raise InputError(f"--trace-window {window!r}: expected START:END in simulated seconds, 0 <= START < END "
                             f"(either may be left out), e.g. 10:12")
    return TraceSpec(idx, start, end)


def _us(ns: int) -> float | int:
    return ns // 1000 if ns % 1000 == 0 else ns / 1000


def _name(prefills, decodes) -> str:
    return "mixed" if prefills and decodes else "prefill" if prefills else "decode"


def trace_document(tracers: dict) -> dict:
    """The trace.json document of {instance index: StepTracer}."""
    events = []
    for idx in sorted(tracers):
        t = tracers[idx]
        events.append({"ph": "M", "pid": idx, "tid": 0, "name": "process_name", "args": {"name": f"instance {idx}"}})
        events.append({"ph": "M", "pid": idx, "tid": 0, "name": "thread_name", "args": {"name": "steps"}})
        for start, end, prefills, decodes, tokens, kv, ops, pairs in t.steps:
            events.append({"ph": "X", "pid": idx, "tid": 0, "name": _name(prefills, decodes), "ts": _us(start),
                           "dur": _us(end - start),
                           "args": {"prefill_chunks": [list(p) for p in prefills], "decodes": decodes, "tokens": tokens,
                                    "kv_blocks_used": kv, "requests": [list(p) for p in pairs],
                                    "ops": {k: ops[k] for k in sorted(ops)}}})
        for rid in sorted(t.requests):
            arrival, first, last = t.requests[rid]
            args = {"arrival_ns": arrival, "first_token_ns": first, "last_token_ns": last}
            base = {"pid": idx, "tid": 0, "cat": "request", "id": rid, "name": f"request {rid}"}
            events += [{**base, "ph": "b", "ts": _us(arrival), "args": args},
                       {**base, "ph": "n", "ts": _us(first), "name": "first token"},
                       {**base, "ph": "e", "ts": _us(last)}]
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def trace_text(tracers: dict) -> str:
    return json.dumps(trace_document(tracers), separators=(",", ":")) + "\n"

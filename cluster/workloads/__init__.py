"""Workloads: one loader per file format (registered by the name `--format` takes), synthetic
generators, and the closed-loop clients that decide when requests are sent.

`load_workload(path, ...)` reads any of them into a `Workload` (compact columns; `Request`s are
made as the router consumes them, see table.py):

- `synth:KEY=VALUE,...` or a workload YAML (`.yaml`/`.yml`, any case): a synthetic workload
  (synthetic.py);
- otherwise a trace file in the format its first non-blank line shows (formats.py; a UTF-8
  byte-order mark is ignored, the extension is not consulted), or the one `fmt` names:
  llmservingsim (fleetsim's JSONL), mooncake, azure, vidur, burstgpt; `csv` with `columns`.

Then, in this order: `start_s`/`duration_s` keep the requests arriving in that window of trace
time (seconds after the trace's first arrival for the traces with wall-clock stamps, after 0
otherwise) and shift it to start at 0; `num_requests` keeps the first N requests in file order
(of the window); `time_scale` multiplies arrival times (all formats but llmservingsim).
"""
from __future__ import annotations

import math
import os

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.workloads import azure, burstgpt, generic_csv, llmservingsim, mooncake, vidur  # noqa: F401 (register)
from fleetsim.cluster.workloads.formats import FORMATS, detect_format, get_format
from fleetsim.cluster.workloads.table import TableBuilder, Workload, check_time_scale

SYNTH_PREFIX = "synth:"


def is_synthetic(path: str) -> bool:
    return path.startswith(SYNTH_PREFIX) or os.path.splitext(path)[1].lower() in (".yaml", ".yml")


def _seconds(value, flag: str) -> int | None:
    if value is None:
        return None
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise InputError(f"{flag} must be a finite number of seconds >= 0, got {value}")
    return round(value * 1e9)


def load_workload(path: str, num_requests: int | None = None, time_scale: float = 1.0, fmt: str | None = None,
                  start_s: float | None = None, duration_s: float | None = None,
                  columns: str | None = None) -> Workload:
    """Read the workload at `path` (see the module doc)."""
    check_time_scale(time_scale)
    start, duration = _seconds(start_s, "--start"), _seconds(duration_s, "--duration")
    windowed = start is not None or duration is not None
    if num_requests is not None and num_requests < 1:
        raise InputError(f"--num-requests must be >= 1, got {num_requests}")
    if fmt is None and is_synthetic(path):
        from fleetsim.cluster.workloads import synthetic
        spec = synthetic.parse_cli(path[len(SYNTH_PREFIX):]) if path.startswith(SYNTH_PREFIX) \
            else synthetic.parse_yaml(path)
        workload, scalable = spec.generate(), True
    else:
        if fmt is None:
            fmt = "csv" if columns else detect_format(path)
        trace = get_format(fmt)
        if columns and fmt != "csv":
            raise InputError(f"--columns applies to --format csv, not {fmt}")
        builder = TableBuilder(path, None if windowed else num_requests)
        trace.read(path, builder, {"columns": columns})
        workload, scalable = builder.build(from_first=trace.from_first), trace.scalable
    if time_scale != 1.0 and not scalable:
        raise InputError(f"{path}: --time-scale does not apply to {fmt} workloads (their arrivals are exact ns)")
    if windowed:
        workload = workload.window(start or 0, duration)
        if not len(workload):
            raise InputError(f"{path}: no requests in the window --start {start_s} --duration {duration_s}")
    if num_requests is not None and len(workload) > num_requests:
        workload = workload.head(num_requests)
    return workload.scaled(time_scale)


__all__ = ["FORMATS", "Workload", "detect_format", "load_workload"]

"""`fleetsim compare`: the headline metrics of several runs side by side, with each run's difference
from the first (absolute, and relative in %), and figures overlaying them (plots.py: latency
CDFs, fleet throughput and queue over time, per-instance load balance).

A metric a run lacks (no SLO block, an undefined statistic) is empty; differences are given only
between numbers, and the relative one only when the first run's value is not 0.
"""
from __future__ import annotations

import csv
import io
import os

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.experiments.html_report import fmt
from fleetsim.cluster.experiments.spec import metric_value

HEADLINE = (("requests", "num_requests"), ("TTFT p50 ms", "ttft_ms.p50"), ("TTFT p99 ms", "ttft_ms.p99"),
            ("TPOT p50 ms", "tpot_ms.p50"), ("TPOT p99 ms", "tpot_ms.p99"), ("E2E p50 ms", "e2e_ms.p50"),
            ("E2E p99 ms", "e2e_ms.p99"), ("queueing p99 ms", "queueing_ms.p99"),
            ("requests/s", "throughput.requests_per_s"), ("output tokens/s", "throughput.output_tokens_per_s"),
            ("simulated s", "simulated_s"), ("preemptions", "preemptions"), ("prefix hit rate", "prefix_hit_rate"),
            ("goodput requests/s", "slo.goodput.requests_per_s"), ("SLO attainment", "slo.attainment.all"),
            ("SLOs hold", "slo.holds"), ("load state", "slo.load.state"))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_runs(folders: list[str], labels: list[str] | None):
    from fleetsim.cluster.experiments.plots import RunData
    if len(folders) < 2:
        raise InputError("compare: give at least two run folders")
    if labels is not None and len(labels) != len(folders):
        raise InputError(f"--labels: {len(labels)} names for {len(folders)} runs")
    return [RunData(f, labels[i] if labels else None) for i, f in enumerate(folders)]


def compare_rows(runs: list) -> tuple[list, list]:
    """(header, rows): metric, each run's value, then per later run its difference and % from the first."""
    header = ["metric", *[r.label for r in runs]]
    for r in runs[1:]:
        header += [f"{r.label} - {runs[0].label}", f"{r.label} vs {runs[0].label} %"]
    rows = []
    for name, path in HEADLINE:
        values = [metric_value(r.summary, path) for r in runs]
        if all(v is None for v in values):
            continue
        row = [name, *values]
        first = values[0]
        for v in values[1:]:
            if _number(v) and _number(first):
                row += [v - first, (v - first) / first * 100 if first else None]
            else:
                row += [None, None]
        rows.append(row)
    return header, rows


def format_table(header: list, rows: list) -> str:
    cells = [header] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in cells)


def figures(runs: list) -> dict:
    """{file name: PNG bytes} of the overlay figures."""
    from fleetsim.cluster.experiments import plots
    return {"latency_cdf.png": plots.png_bytes(plots.fig_latency_cdfs(runs)),
            "fleet_timeseries.png": plots.png_bytes(plots.fig_fleet_timeseries(runs)),
            "load_balance.png": plots.png_bytes(plots.fig_load_balance(runs))}


def save(out_dir: str, runs: list) -> None:
    """compare.csv (exact values) and the figures into `out_dir`."""
    from fleetsim.cluster.experiments.sweep import cell, write_atomic
    header, rows = compare_rows(runs)
    figs = figures(runs)
    os.makedirs(out_dir, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([[cell(v) for v in row] for row in rows])
    write_atomic(os.path.join(out_dir, "compare.csv"), buf.getvalue())
    from fleetsim.cluster.experiments.plots import write_pngs
    write_pngs(out_dir, figs)

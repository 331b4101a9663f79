"""`fleetsim report DIR`: one self-contained HTML page for a run, a sweep or a capacity folder.

The folder's kind is read from what it holds: sweep.json (a sweep), capacity.json (a capacity
search), summary.json (a run). The page has no external resource: inline CSS, figures embedded
as base64 PNGs (plots.py; matplotlib needed), tables as HTML tables with numbers to 4
significant digits (the same text as a sweep's summary.md).

- run: the headline metrics, the SLO block (when the run had SLOs), per-instance load; figures
  latency CDFs, time series, load balance.
- sweep: point counts, the results table (axes, status, metrics; errors of failed points), and per
  numeric metric a figure against the first axis, one line per value of the second.
- capacity: the table of answers, and per cluster its latency-versus-rate figure.
"""
from __future__ import annotations

import base64
import html
import json
import os

from fleetsim.cluster.errors import InputError

CSS = ("body{font-family:sans-serif;margin:2em;max-width:1300px}table{border-collapse:collapse;margin:1em 0;"
       "font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#eee}"
       "td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}"
       ".failed{color:#b00}")


def fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def table(header: list, rows: list) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>")
    return "\n".join(out) + "</table>"


def image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def page(title: str, body: list[str]) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n")


def kind(folder: str) -> str:
    for name, k in (("sweep.json", "sweep"), ("capacity.json", "capacity"), ("summary.json", "run")):
        if os.path.isfile(os.path.join(folder, name)):
            return k
    raise InputError(f"{folder}: not a run, sweep or capacity folder (no summary.json, sweep.json or capacity.json)")


def run_report(folder: str) -> str:
    from fleetsim.cluster.experiments import plots
    from fleetsim.cluster.experiments.compare import HEADLINE
    from fleetsim.cluster.experiments.spec import metric_value
    run = plots.RunData(folder)
    s = run.summary
    body = ["<h2>Headline metrics</h2>",
            table(["metric", "value"], [[n, metric_value(s, p)] for n, p in HEADLINE if metric_value(s, p) is not None])]
    slo = s.get("slo")
    if slo:
        rows = [[k, a["target"], a["value"], a["holds"]] for k, a in slo["aggregate"].items()]
        rows += [[f"per-request {k}", slo["targets"].get(k), v, None] for k, v in slo["attainment"].items()]
        body += ["<h2>SLOs</h2>", table(["SLO", "target", "value / attainment", "holds"], rows),
                 f"<p>load state: <b>{html.escape(slo['load']['state'])}</b>; goodput "
                 f"{fmt(slo['goodput']['requests_per_s'])} req/s; all SLOs hold: <b>{fmt(slo['holds'])}</b></p>"]
    inst = s.get("instances") or []
    if inst:
        keys = [k for k in inst[0] if k != "instance"]
        body += ["<h2>Instances</h2>", table(["instance", *keys], [[i["instance"], *(i[k] for k in keys)] for i in inst])]
    body += ["<h2>Figures</h2>"] + [image(png, name[:-4]) for name, png in plots.run_figures(run).items()]
    return page(f"fleetsim run {run.label}", body)


def sweep_report(folder: str) -> str:
    from fleetsim.cluster.experiments.plots import sweep_figures
    from fleetsim.cluster.experiments.sweep import load_sweep, results_rows
    meta, _ = load_sweep(folder)
    header, rows = results_rows(folder)
    status = header.index("status")
    counts = {k: sum(1 for r in rows if r[status] == k) for k in ("done", "failed", "pending")}
    body = [f"<p>{len(rows)} points: {counts['done']} done, {counts['failed']} failed, {counts['pending']} pending. "
            f"SPEC: {html.escape(meta['spec'])}</p>", "<h2>Results</h2>", table(header, rows), "<h2>Figures</h2>"]
    body += [image(png, alt) for alt, png in sweep_figures(header, rows).values()]
    return page(f"fleetsim sweep {os.path.basename(meta['spec'])}", body)


def capacity_report(folder: str) -> str:
    from fleetsim.cluster.experiments import plots
    from fleetsim.cluster.experiments.capacity import table_rows
    with open(os.path.join(folder, "capacity.json"), encoding="utf-8") as fh:
        results = json.load(fh)
    header, rows = table_rows(results)
    body = ["<h2>Capacity</h2>", table(header, rows)]
    for r in results:
        body += [f"<h3>{html.escape(r['label'])}: {html.escape(r['found'])}</h3>",
                 image(plots.png_bytes(plots.fig_capacity(r)), f"{r['label']} latency vs rate")]
    return page("fleetsim capacity", body)


def report(folder: str) -> str:
    """The HTML page of `folder` (module doc)."""
    return {"run": run_report, "sweep": sweep_report, "capacity": capacity_report}[kind(folder)](folder)

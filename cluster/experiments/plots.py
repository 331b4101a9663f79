"""Figures of runs, comparisons, sweeps and capacity searches (matplotlib, Agg backend).

matplotlib is the optional `plots` extra (`pip install 'fleetsim[plots]'`): about 40 MB with
its dependencies, which a simulation does not need, so the core install stays without it;
`need_matplotlib` turns its absence into one InputError line. Each `fig_*` function draws from
a run's own output files (read by `RunData`) or a sweep's / capacity search's tables, and
`png_bytes` renders a figure with no metadata, so the bytes depend only on the data (and the
matplotlib version).

- `fig_latency_cdfs(runs)`: empirical CDFs of TTFT, TPOT and E2E (ms) per request, one line per run.
- `fig_timeseries(run)`: running, waiting, KV use (%) and generated tokens/s per second, one thin
  line per instance (up to MAX_INSTANCE_LINES instances) and the fleet total (KV: the mean) thick.
- `fig_fleet_timeseries(runs)`: the fleet's generated tokens/s and waiting requests over time,
  one line per run (compare).
- `fig_load_balance(runs)`: requests routed to each instance and each instance's busy fraction.
- `fig_autoscaler(run)` (a run with an autoscaler: timeseries_fleet.csv has its columns): the
  instance counts (active, provisioning, draining, stacked) above the fleet's running + waiting
  requests, per second.
- `fig_sweep(header, rows, metric, x, line)`: a metric against one axis, a line per value of
  another (the other axes' first values are held, so each line is one slice of the sweep).
- `fig_capacity(result)`: every probe's TTFT and TPOT p99 against the offered rate (or, for a
  smallest-fleet search, the instance count), passing probes filled, failing hollow; the SLO
  targets as horizontal lines, the answer as a vertical line.
"""
from __future__ import annotations

import io
import json
import os

import numpy as np

from fleetsim.cluster.errors import InputError

MAX_INSTANCE_LINES = 16


def need_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise InputError("plots need matplotlib: pip install 'fleetsim[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    need_matplotlib().close(fig)
    return buf.getvalue()


class RunData:
    """A run's summary and the columns of its CSVs the figures use: from a run folder
    (`RunData(folder)`) or from a `Result` in memory (`RunData.from_texts`)."""

    def __init__(self, folder: str, label: str | None = None):
        path = os.path.join(folder, "summary.json")
        try:
            with open(path, encoding="utf-8") as fh:
                summary = json.load(fh)
        except FileNotFoundError:
            raise InputError(f"{folder}: not a run folder (no summary.json)") from None
        except ValueError as exc:
            raise InputError(f"{path}: unreadable: {exc}") from None

        def text(name):
            p = os.path.join(folder, name)
            if not os.path.isfile(p):
                return None
            with open(p, encoding="utf-8", newline="") as fh:
                return fh.read()
        self._fill(folder, label or os.path.basename(os.path.normpath(folder)), summary, text)

    @classmethod
    def from_texts(cls, summary: dict, text, label: str = "run") -> "RunData":
        """From a summary dict and `text(name)`: an output file's text, or None if not written."""
        run = cls.__new__(cls)
        run._fill(None, label, summary, text)
        return run

    def _fill(self, folder, label: str, summary: dict, text) -> None:
        from fleetsim.cluster.result import numpy_table
        self.folder, self.label, self.summary = folder, label, summary
        tables = {}
        for name in ("requests.csv", "timeseries.csv", "timeseries_fleet.csv"):
            t = text(name)
            tables[name] = None if t is None else numpy_table(t)
        self.requests, self.series, self.fleet = (tables["requests.csv"], tables["timeseries.csv"],
                                                  tables["timeseries_fleet.csv"])

    def latency_ms(self, column: str) -> np.ndarray:
        if self.requests is None or len(self.requests) == 0:
            return np.empty(0)
        v = np.asarray(self.requests[column], dtype=np.float64) / 1e6
        return v[np.isfinite(v)]


def _cdf(ax, values: np.ndarray, label: str) -> None:
    if len(values):
        x = np.sort(values)
        ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=label)


def fig_latency_cdfs(runs: list):
    plt = need_matplotlib()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (col, name) in zip(axes, (("TTFT", "TTFT"), ("TPOT", "TPOT"), ("latency", "E2E latency"))):
        for run in runs:
            _cdf(ax, run.latency_ms(col), run.label)
        ax.set_xlabel(f"{name} (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{name} CDF")
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_timeseries(run: RunData):
    plt = need_matplotlib()
    fig, axes = plt.subplots(2, 2, figsize=(12, 6.5), sharex=True)
    panels = (("running", "running requests"), ("waiting", "waiting requests"), ("kv_pct", "KV cache in use (%)"),
              ("generation_tokens", "generated tokens/s"))
    s, f = run.series, run.fleet
    instances = sorted(set(s["instance"].tolist())) if s is not None and len(s) else []
    for ax, (col, title) in zip(axes.flat, panels):
        if len(instances) <= MAX_INSTANCE_LINES:
            for i in instances:
                rows = s[s["instance"] == i]
                ax.plot(rows["second"], rows[col], lw=0.8, alpha=0.6, label=f"instance {i}")
        if f is not None and len(f):
            ax.plot(f["second"], f[col], color="black", lw=2, label="fleet mean" if col == "kv_pct" else "fleet total")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("simulated second")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        axes.flat[0].legend(handles[-MAX_INSTANCE_LINES - 1:], labels[-MAX_INSTANCE_LINES - 1:], fontsize=7, ncol=2)
    fig.suptitle(f"{run.label}: per-second time series ({len(instances)} instances)")
    fig.tight_layout()
    return fig


def fig_fleet_timeseries(runs: list):
    plt = need_matplotlib()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for run in runs:
        if run.fleet is not None and len(run.fleet):
            axes[0].plot(run.fleet["second"], run.fleet["generation_tokens"], label=run.label)
            axes[1].plot(run.fleet["second"], run.fleet["waiting"], label=run.label)
    for ax, title in zip(axes, ("fleet throughput (generated tokens/s)", "fleet queue (waiting requests)")):
        ax.set_title(title)
        ax.set_xlabel("simulated second")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_load_balance(runs: list):
    plt = need_matplotlib()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    width = 0.8 / max(1, len(runs))
    for k, run in enumerate(runs):
        inst = run.summary.get("instances") or []
        x = np.arange(len(inst)) + k * width
        axes[0].bar(x, [i["routed"] for i in inst], width, label=run.label)
        axes[1].bar(x, [i["busy_fraction"] for i in inst], width, label=run.label)
    n = max((len(r.summary.get("instances") or []) for r in runs), default=0)
    for ax, title in zip(axes, ("requests routed per instance", "busy fraction per instance")):
        ax.set_title(title)
        ax.set_xlabel("instance")
        step = max(1, n // 16)
        ax.set_xticks(np.arange(0, n, step) + width * (len(runs) - 1) / 2, [str(i) for i in range(0, n, step)])
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_autoscaler(run: RunData):
    plt = need_matplotlib()
    f = run.fleet
    fig, axes = plt.subplots(2, 1, figsize=(12, 5.5), sharex=True)
    axes[0].stackplot(f["second"], f["active"], f["provisioning"], f["draining"], step="pre",
                      labels=("active", "provisioning", "draining"))
    axes[0].set_title("instances (at the end of each second)")
    axes[0].legend(fontsize=8, loc="upper left")
    axes[1].plot(f["second"], np.asarray(f["running"]) + np.asarray(f["waiting"]), color="black")
    axes[1].set_title("fleet load (running + waiting requests)")
    axes[1].set_xlabel("simulated second")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run.label}: autoscaling")
    fig.tight_layout()
    return fig


RUN_FIGURES = ("latency_cdf.png", "timeseries.png", "load_balance.png")   # and autoscaler.png with an autoscaler


def run_figures(run: RunData, as_png: bool = True) -> dict:
    """{file name: PNG bytes} of one run's figures ({file name: Figure} unless `as_png`)."""
    figs = {"latency_cdf.png": fig_latency_cdfs([run]), "timeseries.png": fig_timeseries(run),
            "load_balance.png": fig_load_balance([run])}
    if run.fleet is not None and "active" in run.fleet.dtype.names:
        figs["autoscaler.png"] = fig_autoscaler(run)
    return {name: png_bytes(fig) for name, fig in figs.items()} if as_png else figs


def write_run_plots(folder: str) -> None:
    """`fleetsim run --plots`: the run's figures as PNGs in its folder."""
    write_pngs(folder, run_figures(RunData(folder)))


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def fig_sweep(header: list, rows: list, metric: str, x: str, line: str | None):
    """`metric` against axis `x`, one line per value of axis `line` (module doc)."""
    plt = need_matplotlib()
    axes_names = header[1:header.index("status")]
    mi, xi = header.index(metric), header.index(x)
    li = header.index(line) if line else None
    held = {a: rows[0][header.index(a)] for a in axes_names if a not in (x, line)} if rows else {}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    groups: dict = {}
    for r in rows:
        if r[header.index("status")] != "done" or any(r[header.index(a)] != v for a, v in held.items()):
            continue
        groups.setdefault(r[li] if li is not None else "", []).append((r[xi], _num(r[mi])))
    categorical = not all(isinstance(px, (int, float)) for pts in groups.values() for px, _ in pts)
    order = list(dict.fromkeys(px for pts in groups.values() for px, _ in pts))
    for key, pts in groups.items():
        pts = [(order.index(px) if categorical else px, py) for px, py in pts if py is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", label=f"{line}={key}" if line else metric)
    if categorical:
        ax.set_xticks(range(len(order)), [str(o) for o in order], rotation=20, fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    fixed = ", ".join(f"{a}={v}" for a, v in held.items())
    ax.set_title(f"{metric} vs {x}" + (f" ({fixed})" if fixed else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sweep_figures(header: list, rows: list, max_figures: int = 8) -> dict:
    """{file name: (title, PNG bytes)}: each numeric metric (up to `max_figures`) against the
    sweep's first axis, one line per value of its second."""
    axes = header[1:header.index("status")]
    metrics = header[header.index("status") + 1:-1]
    numeric = [m for m in dict.fromkeys(metrics) if any(_num(r[header.index(m)]) is not None for r in rows)]
    x, line = axes[0], axes[1] if len(axes) > 1 else None
    return {f"plot_{i:02d}_{m.replace('.', '_')}.png": (f"{m} vs {x}", png_bytes(fig_sweep(header, rows, m, x, line)))
            for i, m in enumerate(numeric[:max_figures])}


def write_pngs(out_dir: str, pngs: dict) -> None:
    """{name: PNG bytes} into `out_dir`, each written to a temporary name and renamed."""
    for name, data in pngs.items():
        tmp = os.path.join(out_dir, name + ".partial")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, os.path.join(out_dir, name))


def write_capacity_plots(out_dir: str, results: list) -> None:
    """`fleetsim capacity --plots`: capacity_<label>.png per cluster."""
    write_pngs(out_dir, {f"capacity_{r['label']}.png": png_bytes(fig_capacity(r)) for r in results})


def write_sweep_plots(out_dir: str) -> list[str]:
    """`fleetsim sweep --plots`: the metric-versus-axis figures as PNGs in the sweep folder."""
    from fleetsim.cluster.experiments.sweep import results_rows
    figs = sweep_figures(*results_rows(out_dir))
    write_pngs(out_dir, {name: data for name, (_, data) in figs.items()})
    return list(figs)


def fig_capacity(result: dict):
    """One cluster's capacity search (module doc)."""
    plt = need_matplotlib()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    by_rate = result["mode"] == "max_rate"
    xkey = "offered_rps" if by_rate else "instances"
    probes = sorted(result["probes"], key=lambda p: (p[xkey], p["instances"]))
    targets = result.get("slo") or {}
    for ax, metric in zip(axes, ("ttft", "tpot")):
        key = f"{metric}_p99_ms"
        ok = [(p[xkey], p[key]) for p in probes if p["holds"] and _num(p[key]) is not None]
        bad = [(p[xkey], p[key]) for p in probes if not p["holds"] and _num(p[key]) is not None]
        if ok:
            ax.scatter(*zip(*ok), color="tab:green", label="probe meets the SLOs, stable")
        if bad:
            ax.scatter(*zip(*bad), facecolors="none", edgecolors="tab:red", label="probe fails")
        if not ok and not bad:
            ax.text(0.5, 0.5, f"no {metric.upper()} values (e.g. one-token outputs)", transform=ax.transAxes,
                    ha="center", va="center", color="gray")
        for k, v in targets.items():
            if k.startswith(metric + "_") and k.endswith("_ms") and k != f"{metric}_ms":
                ax.axhline(v, color="tab:orange", ls="--", label=f"SLO {k} = {v:g}")
            elif k == f"{metric}_ms":
                ax.axhline(v, color="tab:purple", ls=":", label=f"per-request {k} = {v:g}")
        best = result.get("result")
        if best:
            label = f"capacity {best['offered_rps']:.3g} req/s" if by_rate else f"{best['instances']} instances"
            ax.axvline(best[xkey], color="black", lw=1, label=label)
        if not by_rate:
            from matplotlib.ticker import MaxNLocator
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("offered rate (req/s)" if by_rate else f"instances (at {result.get('target_rps', 0):.3g} req/s)")
        ax.set_ylabel(f"{metric.upper()} p99 (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{result['label']}: latency vs {'offered rate' if by_rate else 'fleet size'} ({result['mode']})")
    fig.tight_layout()
    return fig

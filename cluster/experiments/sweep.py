"""`fleetsim sweep`: run every point of a SPEC (experiments/spec.py), resumably, locally or on Ray.

The driver parses everything once: the SPEC, the base cluster document, the workload (once per
distinct `workload.num_requests`; pickled, so each point gets its own copy of the requests'
state) and every cost-model file the points' configs need (costmodel/files.py's parse-once
cache, warmed by loading each distinct instance's cost model). On Ray that parsed state goes into
the object store once (`ray.put`) and every point task receives the same references: a worker
installs the parsed files into its own cache and opens no config, table or workload file (each
point's record lists the input files its worker opened, `inputs_opened`, which is empty). Points
run in Ray tasks of one CPU each, running the local backend inside (one point = one process-local
simulation; Ray's parallelism is across points, so `--backend ray` inside a point is not offered).
A task takes a chunk of points, guided self-scheduling: each new task takes the pending points
divided by twice the CPU count (at least one), so a sweep of many small points pays Ray's
per-task cost (resolving the shared state, scheduling, returning) once per chunk, while the
last tasks, of one point each, keep both CPUs busy to the end.

Resumable by construction. DIR/points/NNNNNN.json holds one finished point (written to a
temporary name and renamed, so it is whole or absent): its axis values, its fully resolved
cluster document and options, the content hash of its inputs (the resolved config and options,
the workload file's bytes and options, the bytes of every cost-model file the sweep read, the
fleetsim version) and either the run's summary.json or the error that stopped it. A re-run
skips every point whose file exists with the same hash, runs the others, and refuses (InputError)
when a finished point's hash no longer matches, i.e. the SPEC, an input file or fleetsim
changed under it, unless `force` (then those points are recomputed). A failed point is recorded
and the sweep goes on; `retry_failed` runs failed points again. results.csv (one row per point
in point order: axes, status, the SPEC's metrics, error) and summary.md are rewritten from the
point files at the end, so they depend only on the points' results: a sweep killed and resumed
writes the same bytes as one that ran straight through, on either backend.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import io
import json
import os
import pickle
import sys

import numpy as np

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.experiments.spec import Point, SweepSpec, metric_value
from fleetsim.cluster.provenance import file_sha256
from fleetsim.costmodel import CostModelError, files

POINTS_DIR = "points"
SWEEP_JSON = "sweep.json"
INPUT_SUFFIXES = (".csv", ".yaml", ".yml", ".json", ".jsonl")
_opened: list = []
_hooked = False


def _watch_opens() -> None:
    """Record every input-like file this process opens from now on (an audit hook, once)."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True


def _audit(event, args):
    if event == "open" and args and isinstance(args[0], str) and args[0].endswith(INPUT_SUFFIXES):
        _opened.append(args[0])


def point_path(out_dir: str, index: int) -> str:
    return os.path.join(out_dir, POINTS_DIR, f"{index:06d}.json")


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def scale_arrivals(workload, rate_scale: float):
    """The workload with its arrival rate multiplied by `rate_scale` (arrival times divided)."""
    if rate_scale != 1.0:
        return workload.with_arrivals(np.round(workload.arrival / rate_scale))
    return workload


@dataclasses.dataclass
class Prepared:
    """Everything the points share, parsed once by the driver."""
    spec: SweepSpec
    points: list
    hashes: list            # per point
    workloads: dict         # num_requests -> pickled Workload
    early_errors: dict      # index -> error found while resolving the point's config
    files: dict             # costmodel/files.py cache entries


def prepare(spec: SweepSpec) -> Prepared:
    from fleetsim import __version__
    from fleetsim.cluster.config import config_from_doc
    from fleetsim.cluster.fleet import load_cost_model
    from fleetsim.cluster.workloads import load_workload

    points = spec.points()
    wopts = spec.workload_options
    workloads = {}
    for num in sorted({p.num_requests for p in points}, key=lambda n: (n is not None, n or 0)):
        wl = load_workload(spec.workload, num, wopts.get("time_scale", 1.0), wopts.get("format"))
        workloads[num] = pickle.dumps(wl, protocol=pickle.HIGHEST_PROTOCOL)
    early = {}
    for p in points:
        try:
            config = config_from_doc(p.cluster, spec.source, spec.cluster_dir)
            for s in dict.fromkeys(config.instances):
                load_cost_model(s, config.perf_root, config.models_root)
        except (InputError, CostModelError) as exc:
            early[p.index] = str(exc)
    tables = {path: file_sha256(path) for path in sorted(files.READS)}
    common = {"workload_sha256": file_sha256(spec.workload), "workload_options": wopts, "options": spec.options,
              "tables": tables, "fleetsim": __version__, "cluster_dir": spec.cluster_dir}
    hashes = []
    for p in points:
        doc = {**common, "cluster": p.cluster, "rate_scale": p.rate_scale, "num_requests": p.num_requests}
        hashes.append(hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest())
    return Prepared(spec, points, hashes, workloads, early, files.snapshot())


def compute_point(point: Point, shared: dict) -> dict:
    """Run one point (in the driver or a Ray worker) from the shared parsed state: its record."""
    from fleetsim.cluster.config import config_from_doc
    from fleetsim.cluster.simulation import simulate

    _watch_opens()
    files.install(shared["files"])
    del _opened[:]
    record = {"index": point.index, "axes": point.axes_dict}
    try:
        config = config_from_doc(point.cluster, shared["source"], shared["cluster_dir"])
        workload = scale_arrivals(pickle.loads(shared["workloads"][point.num_requests]), point.rate_scale)
        result = simulate(config, workload, **shared["options"])
        record.update(status="ok", summary=result.summary)
    except (InputError, CostModelError) as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:       # a bug in one point must not stop the sweep: record it
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0])
    record["inputs_opened"] = sorted(set(_opened))
    return record


def _ray_points(points: list, shared: dict) -> list:
    return [compute_point(p, shared) for p in points]


def _finish_record(record: dict, prep: Prepared) -> str:
    p = prep.points[record["index"]]
    full = {"index": p.index, "axes": p.axes_dict, "hash": prep.hashes[p.index], "status": record["status"],
            "error": record.get("error"), "rate_scale": p.rate_scale, "num_requests": p.num_requests,
            "cluster": p.cluster, "options": prep.spec.options, "inputs_opened": record.get("inputs_opened", []),
            "summary": record.get("summary")}
    return json.dumps(full, indent=1) + "\n"


def read_point(out_dir: str, index: int) -> dict | None:
    try:
        with open(point_path(out_dir, index), encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"status": "unreadable", "hash": None}


def existing_points(out_dir: str) -> dict:
    out = {}
    for path in sorted(glob.glob(os.path.join(out_dir, POINTS_DIR, "*.json"))):
        name = os.path.basename(path)[:-5]
        if name.isdigit():
            out[int(name)] = read_point(out_dir, int(name))
    return out


def check_resumable(prep: Prepared, out_dir: str, force: bool) -> dict:
    """The finished points that still match, {index: record}; stale ones refused or (force) removed."""
    found = existing_points(out_dir)
    stale = [i for i, rec in found.items() if i >= len(prep.points) or rec.get("hash") != prep.hashes[i]]
    if stale and not force:
        raise InputError(f"{out_dir}: {len(stale)} finished point(s) no longer match {prep.spec.source} "
                         f"(first: point {stale[0]}): the SPEC, an input file or fleetsim changed; "
                         f"--force recomputes them, or use a new --out")
    for i in stale:
        os.remove(point_path(out_dir, i))
        found.pop(i)
    return found


def run_sweep(spec: SweepSpec, out_dir: str, backend: str = "ray", ray_address: str | None = None,
              force: bool = False, retry_failed: bool = False, progress: bool = False) -> dict:
    """Run the sweep into `out_dir` (module doc); returns {points, ran, skipped, failed}."""
    if backend not in ("local", "ray"):
        raise InputError(f"--backend {backend!r}: choose local or ray")
    prep = prepare(spec)
    os.makedirs(os.path.join(out_dir, POINTS_DIR), exist_ok=True)
    for tmp in glob.glob(os.path.join(out_dir, POINTS_DIR, "*.tmp")):
        os.remove(tmp)                 # left by a killed run
    done = check_resumable(prep, out_dir, force)
    write_atomic(os.path.join(out_dir, SWEEP_JSON), json.dumps(
        {"spec": os.path.abspath(spec.source), "metrics": list(spec.metrics), "axes": [k for k, _ in spec.axes],
         "points": [{"index": p.index, "axes": p.axes_dict, "hash": h} for p, h in zip(prep.points, prep.hashes)]},
        indent=1) + "\n")
    pending = [p for p in prep.points
               if p.index not in done or (retry_failed and done[p.index].get("status") != "ok")]
    shared = {"files": prep.files, "workloads": prep.workloads, "options": spec.options, "source": spec.source,
              "cluster_dir": spec.cluster_dir}
    bar = _bar(len(pending), progress)
    ran = 0
    try:
        for record in _execute(pending, prep, shared, backend, ray_address):
            write_atomic(point_path(out_dir, record["index"]), _finish_record(record, prep))
            ran += 1
            bar.update(1)
    finally:
        bar.close()
    write_tables(out_dir)
    records = [read_point(out_dir, p.index) for p in prep.points]
    failed = sum(1 for r in records if r and r.get("status") != "ok")
    return {"points": len(prep.points), "ran": ran, "skipped": len(prep.points) - ran, "failed": failed}


def _execute(pending: list, prep: Prepared, shared: dict, backend: str, ray_address):
    """Yield each pending point's record as it finishes (points that failed while being resolved
    by the driver are recorded without running)."""
    runnable = []
    for p in pending:
        if p.index in prep.early_errors:
            yield {"index": p.index, "status": "failed", "error": prep.early_errors[p.index]}
        else:
            runnable.append(p)
    if backend == "local":
        for p in runnable:
            yield compute_point(p, shared)
        return
    from fleetsim.cluster.backends.ray_backend import start_ray
    ray, _ = start_ray(ray_address)
    task = ray.remote(num_cpus=1)(_ray_points)
    # the shared state is put once; every task gets the same reference (Ray resolves a
    # top-level reference argument from the object store, numpy tables zero-copy)
    ref = ray.put(shared)
    slots = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    futures, start = [], 0
    while futures or start < len(runnable):
        while start < len(runnable) and len(futures) < slots:
            size = max(1, (len(runnable) - start) // slots)
            futures.append(task.remote(runnable[start:start + size], ref))
            start += size
        ready, futures = ray.wait(futures, num_returns=1)
        yield from ray.get(ready[0])


def _bar(total: int, progress: bool):
    from fleetsim.cluster.progress import shown
    from tqdm import tqdm
    return tqdm(total=total, unit="point", desc="sweep", disable=not shown(progress, sys.stderr), file=sys.stderr,
                mininterval=0.2, smoothing=0.1)


def cell(value) -> str:
    """A results.csv cell: empty for None, true/false, repr of floats (exact, shortest), JSON for
    mappings and lists."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def load_sweep(out_dir: str) -> tuple[dict, list]:
    """(sweep.json, [point record or None per point])."""
    try:
        with open(os.path.join(out_dir, SWEEP_JSON), encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{out_dir}: not a sweep folder (no {SWEEP_JSON})") from None
    except ValueError as exc:
        raise InputError(f"{out_dir}/{SWEEP_JSON}: unreadable: {exc}") from None
    return meta, [read_point(out_dir, p["index"]) for p in meta["points"]]


def point_state(entry: dict, record: dict | None) -> str:
    if record is None or record.get("hash") != entry["hash"]:
        return "pending"
    return "done" if record.get("status") == "ok" else "failed"


def results_rows(out_dir: str) -> tuple[list, list]:
    """(header, rows) of results.csv, as Python values."""
    meta, records = load_sweep(out_dir)
    header = ["point", *meta["axes"], "status", *meta["metrics"], "error"]
    rows = []
    for entry, rec in zip(meta["points"], records):
        state = point_state(entry, rec)
        summary = (rec or {}).get("summary") or {}
        rows.append([entry["index"], *(entry["axes"][k] for k in meta["axes"]), state,
                     *(metric_value(summary, m) if state == "done" else None for m in meta["metrics"]),
                     (rec or {}).get("error") if state == "failed" else None])
    return header, rows


def write_tables(out_dir: str) -> None:
    header, rows = results_rows(out_dir)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([cell(v) for v in row])
    write_atomic(os.path.join(out_dir, "results.csv"), buf.getvalue())
    write_atomic(os.path.join(out_dir, "summary.md"), summary_md(out_dir, header, rows))


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return cell(value).replace("|", "\\|")


def summary_md(out_dir: str, header: list, rows: list) -> str:
    meta, _ = load_sweep(out_dir)
    counts = {s: sum(1 for r in rows if r[len(meta["axes"]) + 1] == s) for s in ("done", "failed", "pending")}
    lines = [f"# Sweep {os.path.basename(meta['spec'])}", "",
             f"{len(rows)} points: {counts['done']} done, {counts['failed']} failed, {counts['pending']} pending.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_short(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def status_lines(out_dir: str) -> list[str]:
    """`fleetsim sweep status DIR`: counts, then one line per failed and pending point."""
    meta, records = load_sweep(out_dir)
    states = [point_state(e, r) for e, r in zip(meta["points"], records)]
    lines = [f"{out_dir}: {len(states)} points: {states.count('done')} done, {states.count('failed')} failed, "
             f"{states.count('pending')} pending"]
    for entry, rec, state in zip(meta["points"], records, states):
        if state != "done":
            axes = ", ".join(f"{k}={cell(v)}" for k, v in entry["axes"].items())
            why = f": {rec.get('error')}" if state == "failed" else ""
            lines.append(f"  point {entry['index']} {state} ({axes}){why}")
    return lines


"""summary.json's `run` block: what produced a run, enough to run it again.

    run:
      fleetsim_version: "0.2.0"
      cluster:  {source, sha256, document, resolved}   # the file (or "dict") as parsed, and the
                                                       # resolved instances (identical ones grouped)
      workload: {path, bytes, sha256, requests}
      options:  {...}     # every RunOptions field that can change a result, defaults included
      seed: 0
      files: [requests.csv, summary.json, timeseries.csv]

Options in IF_GIVEN_OPTIONS (`slo`, `admission`, ...) appear only when given. Options that only choose where and how the run executes (backend, actors, instances per actor,
Ray address, progress, fast-forward, invariant level, memory limit) are left out: they do not change a byte of
the outputs (tested), so summary.json stays byte-identical across backends and packings.
Paths are recorded as given (a relative path is relative to the directory the run started in),
so the block is the same on every machine.

`fleetsim rerun SUMMARY --out DIR` (and `rerun_inputs`) rebuilds the cluster from `document`
and the options, checks that the workload file still has the recorded sha256, and runs again:
the outputs are byte-identical to the first run's.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from fleetsim.cluster.errors import InputError
from fleetsim.cluster.version import __version__

EXECUTION_OPTIONS = ("backend", "actors", "instances_per_actor", "ray_address", "progress", "fast_forward",
                     "check_invariants", "plots", "memory_limit")
# recorded only when given: unset, they add nothing to any output (the `slo` block comes only with
# SLOs; a YAML `slo:` is in the recorded document), so runs without them keep their bytes
IF_GIVEN_OPTIONS = ("slo", "admission", "trace", "trace_instances", "trace_window", "columns", "start", "duration", "clip_to_model", "max_concurrency", "request_rate",
                    "burstiness", "warmup_requests")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _jsonable(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _grouped(specs) -> list[dict]:
    """Consecutive identical instance specs as [{count, spec}] (a fleet of 1,024 is one entry)."""
    out: list[dict] = []
    for spec in specs:
        if out and out[-1]["_spec"] is spec:
            out[-1]["count"] += 1
        else:
            out.append({"count": 1, "_spec": spec})
    return [{"count": g["count"], **_jsonable(g["_spec"])} for g in out]


def run_block(config, workload_path: str | None, workload, options) -> dict:
    """The `run` block of a run of `workload` on `config` with RunOptions `options`."""
    source = config.source
    document = _jsonable(config.document) if config.document is not None else None
    if document is not None and config.sha256 is not None:
        for key in ("perf_root", "models_root"):      # resolved against the file's folder at load
            if isinstance(document, dict) and document.get(key):
                document[key] = getattr(config, key)
    wl = {"path": None, "bytes": None, "sha256": None, "requests": len(workload)}
    if workload_path is not None:
        wl["path"] = workload_path
        if not workload_path.startswith("synth:"):       # a synthetic spec is its own record
            wl.update(bytes=os.path.getsize(workload_path), sha256=file_sha256(workload_path))
    return {
        "fleetsim_version": __version__,
        "cluster": {"source": source, "sha256": config.sha256, "document": document,
                    "resolved": {"instances": _grouped(config.instances), "router": _jsonable(config.router)}},
        "workload": wl,
        "options": {f.name: _jsonable(getattr(options, f.name)) for f in dataclasses.fields(options)
                    if f.name not in EXECUTION_OPTIONS
                    and not (f.name in IF_GIVEN_OPTIONS and getattr(options, f.name) is None)},
        "seed": config.seed,
    }


def rerun_inputs(summary_path: str) -> tuple:
    """(ClusterConfig, workload path, options) recorded in a summary.json."""
    from fleetsim.cluster.config import config_from_doc

    try:
        with open(summary_path, encoding="utf-8") as fh:
            run = json.load(fh)["run"]
        cluster, wl, options = run["cluster"], run["workload"], dict(run["options"])
        document = cluster["document"]
    except OSError as exc:
        raise InputError(f"{summary_path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{summary_path}: not a fleetsim summary.json with a `run` block") from None
    if document is None:
        raise InputError(f"{summary_path}: the run's cluster was a Python object; it cannot be re-run from the file")
    if wl.get("path") is None:
        raise InputError(f"{summary_path}: the run's workload was a Python object; it cannot be re-run from the file")
    if not wl["path"].startswith("synth:"):          # a synthetic spec needs no file
        if not os.path.isfile(wl["path"]):
            raise InputError(f"{summary_path}: workload {wl['path']!r} not found (paths are relative to where the run "
                             f"started)")
        if file_sha256(wl["path"]) != wl["sha256"]:
            raise InputError(f"{summary_path}: workload {wl['path']!r} changed since the run (sha256 differs)")
    config = config_from_doc(document, cluster["source"], os.getcwd())
    return dataclasses.replace(config, sha256=cluster["sha256"]), wl["path"], options

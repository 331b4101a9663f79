"""A sweep's SPEC: the base experiment, its axes and how they combine into points.

SPEC.yaml::

    cluster: ../clusters/h100-llama8b.yaml   # path (relative to SPEC) or an inline cluster mapping
    workload: ../workloads/trace.jsonl        # path (relative to SPEC)
    workload_options: {num_requests: 200, format: mooncake, time_scale: 1.0}   # optional
    options: {slo: "ttft_p99_ms=2000", fast_forward: true}                   # run options, every point
    axes:                                     # key: values (a list, or a range)
      router.policy: [round_robin, least_loaded]
      instances: {from: 1, to: 16, times: 2}  # 1, 2, 4, 8, 16 (inclusive; `step: s` for arithmetic)
      workload.rate_scale: [0.5, 0.7, 0.9]
    combine: product                          # or zip (every axis the same length)
    metrics: [ttft_ms.p99, throughput.requests_per_s, slo.goodput.requests_per_s, slo.load.state]

An axis key is a dotted path into the cluster document (`router.policy`, `instances`, `seed`,
`engine.max_num_seqs`, `router.sync_interval_ms`, `slo.ttft_p99_ms`; missing mappings on the way
are created), or `workload.rate_scale` (arrival rate multiplied: every arrival time divided by
it; session think times are client behaviour and stay) / `workload.num_requests`. Points are
numbered in the order the product (the last axis fastest) or zip lists them. A metric is a dotted
path into a point's summary.json; the whole summary is kept in each point's file, so the metrics
can change between runs of the same sweep without recomputing anything.
"""
from __future__ import annotations

import copy
import itertools
import os
from dataclasses import dataclass

import yaml

from fleetsim.cluster.errors import InputError, is_finite_number, is_int
from fleetsim.cluster.textfile import text_lines

SPEC_KEYS = {"cluster", "workload", "workload_options", "options", "axes", "combine", "metrics"}
WORKLOAD_AXES = ("workload.rate_scale", "workload.num_requests")
WORKLOAD_OPTION_KEYS = {"num_requests", "format", "time_scale"}
DEFAULT_METRICS = ("num_requests", "ttft_ms.p99", "tpot_ms.p99", "e2e_ms.p99", "throughput.requests_per_s",
                   "throughput.output_tokens_per_s")
MAX_POINTS = 100_000


@dataclass(frozen=True)
class Point:
    index: int
    axes: tuple           # ((key, value), ...) in the SPEC's axis order
    cluster: dict         # the resolved cluster document
    rate_scale: float
    num_requests: int | None

    @property
    def axes_dict(self) -> dict:
        return dict(self.axes)


@dataclass(frozen=True)
class SweepSpec:
    source: str
    cluster_doc: dict
    cluster_dir: str      # relative roots in the cluster document are taken from here
    workload: str
    workload_options: dict
    options: dict
    axes: tuple           # ((key, [values]), ...)
    combine: str
    metrics: tuple

    def points(self) -> list[Point]:
        keys = [k for k, _ in self.axes]
        lists = [v for _, v in self.axes]
        combos = itertools.product(*lists) if self.combine == "product" else zip(*lists)
        out = []
        for i, values in enumerate(combos):
            doc = copy.deepcopy(self.cluster_doc)
            rate, num = 1.0, self.workload_options.get("num_requests")
            for key, value in zip(keys, values):
                if key == "workload.rate_scale":
                    rate = float(value)
                elif key == "workload.num_requests":
                    num = value
                else:
                    set_path(doc, key, value, self.source)
            out.append(Point(i, tuple(zip(keys, values)), doc, rate, num))
        return out


def set_path(doc: dict, key: str, value, where: str) -> None:
    parts = key.split(".")
    node = doc
    for j, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise InputError(f"{where}: axes: {key}: {'.'.join(parts[:j + 1])} is not a mapping in the cluster config")
        node = nxt
    node[parts[-1]] = value


def _values(key: str, doc, where: str) -> list:
    if isinstance(doc, list) and doc:
        return list(doc)
    if isinstance(doc, dict):
        unknown = sorted(set(doc) - {"from", "to", "step", "times"})
        start, stop = doc.get("from"), doc.get("to")
        step, times = doc.get("step"), doc.get("times")
        ok = not unknown and is_finite_number(start) and is_finite_number(stop) and start <= stop and \
            (step is None) != (times is None)
        ok = ok and (is_finite_number(step) and step > 0 if step is not None else
                     is_finite_number(times) and times > 1 and start > 0)
        if not ok:
            raise InputError(f"{where}: axes: {key}: a range is {{from: a, to: b, step: s > 0}} or "
                             f"{{from: a > 0, to: b, times: f > 1}} with a <= b")
        exact = all(is_int(x) for x in (start, stop, step if step is not None else times))
        vals, k = [], 0
        while True:
            v = start + k * step if step is not None else start * times ** k
            if v > stop * (1 + 1e-12):
                break
            vals.append(int(v) if exact else round(v, 12))
            k += 1
            if len(vals) > MAX_POINTS:
                raise InputError(f"{where}: axes: {key}: more than {MAX_POINTS} values")
        return vals
    raise InputError(f"{where}: axes: {key}: expected a non-empty list of values or a range mapping")


def _check_workload_axis(key: str, values: list, where: str) -> None:
    if key == "workload.rate_scale" and not all(is_finite_number(v) and v > 0 for v in values):
        raise InputError(f"{where}: axes: workload.rate_scale: every value must be a number > 0")
    if key == "workload.num_requests" and not all(is_int(v) and v >= 1 for v in values):
        raise InputError(f"{where}: axes: workload.num_requests: every value must be an integer >= 1")
    if key.startswith("workload.") and key not in WORKLOAD_AXES:
        raise InputError(f"{where}: axes: {key}: unknown workload axis; allowed: {', '.join(WORKLOAD_AXES)}")


def spec_from_doc(doc, where: str, base_dir: str) -> SweepSpec:
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(doc) - SPEC_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(SPEC_KEYS))}")
    for key in ("cluster", "workload", "axes"):
        if doc.get(key) is None:
            raise InputError(f"{where}: field {key!r} is required")
    cluster = doc["cluster"]
    if isinstance(cluster, str):
        path = os.path.join(base_dir, cluster)
        cluster_doc = _read_yaml(path, "cluster config")
        cluster_dir = os.path.dirname(os.path.abspath(path))
    elif isinstance(cluster, dict):
        cluster_doc, cluster_dir = cluster, base_dir
    else:
        raise InputError(f"{where}: 'cluster' must be a path or a mapping")
    if not isinstance(cluster_doc, dict):
        raise InputError(f"{where}: cluster: expected a mapping")
    if not isinstance(doc["workload"], str):
        raise InputError(f"{where}: 'workload' must be a path")
    wopts = doc.get("workload_options") or {}
    if not isinstance(wopts, dict) or set(wopts) - WORKLOAD_OPTION_KEYS:
        raise InputError(f"{where}: workload_options: a mapping of {', '.join(sorted(WORKLOAD_OPTION_KEYS))}")
    options = doc.get("options") or {}
    if not isinstance(options, dict):
        raise InputError(f"{where}: 'options' must be a mapping of run options")
    _check_options(options, where)
    axes_doc = doc["axes"]
    if not isinstance(axes_doc, dict) or not axes_doc:
        raise InputError(f"{where}: 'axes' must be a non-empty mapping of key: values")
    axes = []
    for key, values in axes_doc.items():
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise InputError(f"{where}: axes: {key!r} is not a dotted key")
        vals = _values(key, values, where)
        _check_workload_axis(key, vals, where)
        axes.append((key, vals))
    combine = doc.get("combine", "product")
    if combine not in ("product", "zip"):
        raise InputError(f"{where}: combine: {combine!r}: choose product or zip")
    if combine == "zip" and len({len(v) for _, v in axes}) > 1:
        lengths = ", ".join(f"{k} {len(v)}" for k, v in axes)
        raise InputError(f"{where}: combine: zip needs axes of one length, got {lengths}")
    count = 1
    for _, v in axes:
        count = count * len(v) if combine == "product" else len(v)
    if count > MAX_POINTS:
        raise InputError(f"{where}: {count} points; at most {MAX_POINTS}")
    metrics = doc.get("metrics", list(DEFAULT_METRICS))
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) and m for m in metrics):
        raise InputError(f"{where}: metrics: a non-empty list of dotted summary.json keys")
    return SweepSpec(where, cluster_doc, cluster_dir, os.path.join(base_dir, doc["workload"]), dict(wopts),
                     dict(options), tuple(axes), combine, tuple(metrics))


def _check_options(options: dict, where: str) -> None:
    from fleetsim.cluster.simulation import RunOptions
    import dataclasses
    allowed = {f.name for f in dataclasses.fields(RunOptions)} - SWEEP_OWNED
    bad = sorted(set(options) - allowed)
    if bad:
        raise InputError(f"{where}: options: {', '.join(bad)} cannot be set per sweep "
                         f"(the sweep owns backend, progress, Ray and workload loading); allowed: {', '.join(sorted(allowed))}")


SWEEP_OWNED = {"backend", "progress", "actors", "instances_per_actor", "ray_address", "num_requests", "time_scale",
               "format", "perf_root", "models_root"}


def _read_yaml(path: str, what: str):
    text = "".join(line for _, line in text_lines(path, what))
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None


def load_spec(path: str) -> SweepSpec:
    return spec_from_doc(_read_yaml(path, "sweep spec"), path, os.path.dirname(os.path.abspath(path)))


def metric_value(summary: dict, path: str):
    """The value at a dotted path of a summary (None when absent)."""
    node = summary
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node

"""Service-level objectives of a run: per-request attainment, goodput, aggregate SLOs, load state.

An SLO set (`--slo ttft_p99_ms=2000,tpot_p99_ms=100,ttft_ms=500` or `slo: {...}` in the cluster
YAML) mixes three kinds of keys:
- aggregate: `<metric>_<stat>_ms` with metric ttft / tpot / itl / e2e and stat mean / p50 / p90 /
  p95 / p99. It holds when the run's statistic (summary.json's `<metric>_ms.<stat>`, the very
  number printed there) is <= the target, or is undefined (null: the run has no such value, e.g.
  no TPOT when every output is one token).
- per request: `ttft_ms`, `tpot_ms`, `e2e_ms`. A request meets one when its own value is <= the
  threshold; a request with one output token has no TPOT and meets any `tpot_ms` (DistServe's
  convention). Attainment = the fraction of requests meeting each, and all of them.
- `attainment` (a fraction in (0, 1], default 0.9, DistServe's 90 %): the per-request SLOs hold
  when at least this fraction of requests meets every per-request threshold.
Goodput counts the requests that met every per-request threshold (all requests when none is
given) over the span throughput uses (first arrival to last completion): requests/s and their
output tokens/s.

With admission control (cluster/admission.py) the block also has `rejected`, the requests turned
away at the router: each counts as missing every per-request threshold, so attainment is met /
(finished + rejected); goodput's span and the load state stay those of the admitted requests (the
fleet never saw the others).

Load state (`load.state`), from each request's arrival and first-scheduled times; the waiting
queue W(t) = requests arrived before t and not scheduled by t (what an arrival at t finds ahead of
it; an arrival does not count itself):
- `overloaded`: when the last request arrived, W held more than OVERLOAD_FRACTION (5 %) of all
  requests and more than OVERLOAD_MIN (10): that many had arrived and never been served (not
  scheduled once), the fleet fell that far behind the offered load. (The floor keeps the few
  arrivals that wait for the running step to end from marking a short run overloaded.)
- `backlogged`: not overloaded, but the queue grows through the last part of the run: the last
  half of the arrival window cut into four equal quarters, the mean W seen by the arrivals in each
  rises strictly from quarter to quarter and ends >= 1 request.
- `stable`: neither.
`holds` (the whole set) = every aggregate SLO holds, the per-request SLOs hold, and the load state
is stable: what a capacity search asks of a rate.
"""
from __future__ import annotations

import numpy as np

from fleetsim.cluster.errors import InputError, is_finite_number
from fleetsim.cluster.metrics import ARRIVAL, END, OUTPUT, QUEUEING, TPOT, TTFT, E2E

AGG_METRICS = ("ttft", "tpot", "itl", "e2e")
AGG_STATS = ("mean", "p50", "p90", "p95", "p99")
PER_REQUEST = ("ttft_ms", "tpot_ms", "e2e_ms")
AGGREGATE = tuple(f"{m}_{s}_ms" for m in AGG_METRICS for s in AGG_STATS)
DEFAULT_ATTAINMENT = 0.9
OVERLOAD_FRACTION = 0.05
OVERLOAD_MIN = 10
QUARTERS = 4


def parse_slo(value, where: str = "--slo") -> dict:
    """An SLO set from `k=v,k=v` text or a mapping: {key: float}, checked (module doc)."""
    if value is None:
        return {}
    if isinstance(value, str):
        doc = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            key, sep, num = part.partition("=")
            if not sep:
                raise InputError(f"{where}: {part!r} is not key=value (e.g. ttft_p99_ms=2000)")
            try:
                doc[key.strip()] = float(num)
            except ValueError:
                raise InputError(f"{where}: {key.strip()}: {num.strip()!r} is not a number") from None
    elif isinstance(value, dict):
        doc = dict(value)
    else:
        raise InputError(f"{where}: expected key=value pairs or a mapping, got {type(value).__name__}")
    allowed = AGGREGATE + PER_REQUEST + ("attainment",)
    out = {}
    for key in sorted(doc):
        v = doc[key]
        if key not in allowed:
            raise InputError(f"{where}: unknown SLO {key!r}; allowed: <ttft|tpot|itl|e2e>_<mean|p50|p90|p95|p99>_ms, "
                             f"ttft_ms, tpot_ms, e2e_ms, attainment")
        if not is_finite_number(v) or v <= 0 or (key == "attainment" and v > 1):
            what = "a fraction in (0, 1]" if key == "attainment" else "a positive number of ms"
            raise InputError(f"{where}: {key} must be {what}, got {v!r}")
        out[key] = float(v)
    if not out:
        raise InputError(f"{where}: no SLO given")
    return out


def format_slo(slo: dict) -> str:
    """The `--slo` text of an SLO set (keys sorted)."""
    return ",".join(f"{k}={v:g}" for k, v in sorted(slo.items()))


class SloTracker:
    """Keeps the per-request columns the SLO block needs, batch by batch (metrics.py's layout)."""

    COLUMNS = (ARRIVAL, QUEUEING, END, TTFT, TPOT, E2E, OUTPUT)

    def __init__(self, slo: dict):
        self.slo = slo
        self._chunks: list[np.ndarray] = []

    def add(self, fixed: np.ndarray) -> None:
        if len(fixed):
            self._chunks.append(fixed[:, self.COLUMNS])

    def columns(self) -> dict:
        m = np.concatenate(self._chunks) if self._chunks else np.empty((0, len(self.COLUMNS)), dtype=np.int64)
        arrival, queueing, end, ttft, tpot, e2e, output = m.T
        return {"arrival": arrival, "scheduled": arrival + queueing, "end": end, "ttft": ttft, "tpot": tpot,
                "e2e": e2e, "output": output}

    def summary(self, run_summary: dict, rejected: int | None = None) -> dict:
        return slo_block(self.slo, self.columns(), run_summary, rejected)


def per_request_met(slo: dict, cols: dict) -> dict:
    """{key: bool array} for each per-request threshold given (ns values against ms thresholds)."""
    met = {}
    for key in PER_REQUEST:
        if key in slo:
            limit = slo[key] * 1e6
            values = cols[key[:-3]]
            ok = values <= limit
            if key == "tpot_ms":
                ok |= cols["output"] <= 1
            met[key] = ok
    return met


def load_state(arrival: np.ndarray, scheduled: np.ndarray) -> dict:
    """The load state of a run from its requests' arrival and first-scheduled times (module doc)."""
    n = len(arrival)
    if n == 0:
        return {"state": "stable", "unserved_at_last_arrival": 0, "queue_by_quarter": []}
    a = np.sort(arrival)
    s = np.sort(scheduled)
    last = int(a[-1])
    unserved = int(np.searchsorted(a, last, side="left") - np.searchsorted(s, last, side="right"))
    first = int(a[0])
    mid = first + (last - first) // 2
    tail = a[a >= mid]
    waiting = np.searchsorted(a, tail, side="left") - np.searchsorted(s, tail, side="right")
    edges = [mid + (last - mid) * q // QUARTERS for q in range(QUARTERS + 1)]
    quarters = []
    for q in range(QUARTERS):
        lo, hi = edges[q], edges[q + 1]
        sel = (tail >= lo) & ((tail < hi) if q < QUARTERS - 1 else (tail <= hi))
        quarters.append(float(waiting[sel].mean()) if sel.any() else None)
    if unserved > max(OVERLOAD_MIN, OVERLOAD_FRACTION * n):
        state = "overloaded"
    elif None not in quarters and all(x < y for x, y in zip(quarters, quarters[1:])) and quarters[-1] >= 1:
        state = "backlogged"
    else:
        state = "stable"
    return {"state": state, "unserved_at_last_arrival": unserved, "queue_by_quarter": quarters}


def slo_block(slo: dict, cols: dict, run_summary: dict, rejected: int | None = None) -> dict:
    """summary.json's `slo` block for the SLO set `slo`, the per-request columns (SloTracker) and
    the rest of the run's summary (for the aggregate statistics); `rejected`: the requests
    admission control turned away (None: no admission control, no `rejected` key)."""
    n = len(cols["arrival"])
    met = per_request_met(slo, cols)
    good = np.ones(n, dtype=bool)
    for ok in met.values():
        good &= ok
    span_s = max(1e-9, (int(cols["end"].max()) - int(cols["arrival"].min())) / 1e9) if n else 1e-9
    total = n + (rejected or 0)          # a rejected request met no SLO
    attainment = {k: int(ok.sum()) / total if total else 1.0 for k, ok in met.items()}
    attainment["all"] = int(good.sum()) / total if total else 1.0
    target = slo.get("attainment", DEFAULT_ATTAINMENT)
    aggregate = {}
    for key in AGGREGATE:
        if key in slo:
            metric, stat = key[:-3].rsplit("_", 1)
            value = run_summary[f"{metric}_ms"][stat]
            aggregate[key] = {"target": slo[key], "value": value, "holds": value is None or value <= slo[key]}
    per_request_holds = attainment["all"] >= target if met else True
    load = load_state(cols["arrival"], cols["scheduled"])
    holds = per_request_holds and all(a["holds"] for a in aggregate.values()) and load["state"] == "stable"
    block = {
        "targets": dict(slo),
        "attainment": attainment,
        "attainment_target": target,
        "per_request_holds": per_request_holds,
        "goodput": {"requests_per_s": int(good.sum()) / span_s,
                    "output_tokens_per_s": int(cols["output"][good].sum()) / span_s},
        "aggregate": aggregate,
        "load": load,
        "holds": holds,
    }
    if rejected is not None:
        block["rejected"] = rejected
    return block
